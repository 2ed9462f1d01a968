"""Pooling 2x2 tables directly: Mantel-Haenszel and Peto (metafor's ``rma.mh``, ``rma.peto``).

:func:`pool_tables` pools the counts ``ai, bi, ci, di`` of k studies (events and non-events
in group 1, then group 2) with

- ``method="MH"`` (Mantel & Haenszel 1959; Greenland & Robins 1985) for ``measure`` ``OR``
  (log odds ratio; variance of Robins, Breslow & Greenland 1986), ``RR`` (log risk ratio) or
  ``RD`` (risk difference; Sato, Greenland & Robins 1989);
- ``method="PETO"`` (Yusuf et al. 1985) for ``OR``: ``sum(ai - Ei) / sum(Vi)``.

Both are equal-effects methods: ``tau2`` is 0 and there is no choice of ``test`` (always z).

metafor's defaults, which this module follows exactly (its ``add``, ``to`` and ``drop00``
each hold two values: one for the individual outcomes, one for the pooling):

- the pooled estimate uses the raw counts (``add[2] = 0``): a zero cell gets no correction;
- each study's individual outcome ``yi``/``vi`` (what the forest plot shows and Q is
  computed on) is escalc's, with 1/2 added to every cell of a table with a zero cell
  (``add[1] = 1/2, to[1] = "only0"``); RD's variance is the large-sample one;
- a double-zero study (no events, or only events, in both groups) has no individual outcome
  (``drop00[1] = TRUE``), so it is out of Q, whose df are ``k_yi - 1``, but its table stays
  in the pooled sums (``drop00[2] = FALSE``). ``drop00=False`` here is metafor's
  ``drop00=FALSE``: the double-zero studies' corrected outcomes enter Q too;
- Q (Cochran's, ``QE``): MH: ``sum (yi - estimate)^2 / vi`` over the individual outcomes;
  Peto: ``sum (ai - Ei)^2 / Vi - (sum (ai - Ei))^2 / sum Vi`` over the tables with
  ``Vi > 0`` (raw counts). ``I2 = max(0, 100 (Q - df) / Q)`` and ``H2 = Q / df`` with
  ``df = k_yi - 1``; with fewer than two individual outcomes (Peto: fewer than two tables with
  ``Vi > 0``) ``Q_pval = 1, I2 = 0, H2 = 1`` as metafor reports them;
- weights (percent): MH OR ``bi ci / ni``, RR ``ci n1i / ni``, RD ``n1i n2i / ni``; Peto
  ``Vi``, each over its sum (raw counts).

Where the pooled estimate is undefined (MH OR: ``sum ai di / ni`` or ``sum bi ci / ni`` is
0; MH RR: no events in one group; MH RD: a standard error of 0; Peto: one outcome never
occurs) metafor returns NA or stops; here it is an :class:`~cosmo_runner.errors.AnalysisError`
saying why, never a NaN.

Batches: the counts may be 2-D (analyses x studies); everything is computed for all
analyses at once (no Python loop) and the result's attributes are arrays over analyses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtrc, ndtr, ndtri

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.fit import alpha_for_level

__all__ = [
    "MEASURES_BY_METHOD",
    "METHODS",
    "UNDEFINED",
    "PooledTables",
    "leave1out_tables",
    "pool_tables",
]

FloatArray = NDArray[np.float64]

#: The methods that pool 2x2 tables, and the measures each applies to.
MEASURES_BY_METHOD: dict[str, tuple[str, ...]] = {"MH": ("OR", "RR", "RD"), "PETO": ("OR",)}
METHODS = tuple(MEASURES_BY_METHOD)


@dataclass(frozen=True)
class PooledTables:
    """The result of :func:`pool_tables` (scalars for one analysis, arrays for a batch).

    ``k`` is the number of tables, ``k_yi`` the number with an individual outcome; ``Q_df``
    is ``max(k_yi - 1, 0)``. ``yi``, ``vi`` hold the individual outcomes (NaN for a study
    without one) and ``weights`` the percentage weights, both per study. ``undefined`` is
    true where the estimate is undefined (only :func:`leave1out_tables` returns such rows:
    NaN, as metafor's NA; :data:`UNDEFINED` says why).
    """

    method: str
    measure: str
    level: float
    k: int
    k_yi: Any
    estimate: Any
    se: Any
    statistic: Any
    pval: Any
    ci_lb: Any
    ci_ub: Any
    Q: Any
    Q_df: Any
    Q_pval: Any
    I2: Any
    H2: Any
    yi: FloatArray
    vi: FloatArray
    weights: FloatArray
    undefined: Any = False
    tau2: float = 0.0


Places = Callable[[int], str]


def _row(j: int, places: Places | None) -> str:
    return places(j) if places is not None else f"row {j + 1}"


def _cells(
    ai: ArrayLike, bi: ArrayLike, ci: ArrayLike, di: ArrayLike, places: Places | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    arrays = [np.asarray(x, dtype=np.float64) for x in (ai, bi, ci, di)]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays) or arrays[0].ndim not in (1, 2):
        raise AnalysisError("2x2 counts ai, bi, ci, di must be 1-D or 2-D arrays of one shape")
    if shape[-1] < 1:
        raise AnalysisError("need at least 1 study (table)")
    cells = np.stack(arrays)
    bad = ~(np.isfinite(cells) & (cells >= 0)).all(axis=0)
    empty_arm = (arrays[0] + arrays[1] <= 0) | (arrays[2] + arrays[3] <= 0)
    for mask, problem in (
        (bad, "2x2 cell counts must be finite and non-negative"),
        (empty_arm, "each arm needs at least one participant"),
    ):
        if bool(mask.any()):
            flat = int(np.flatnonzero(mask.reshape(-1))[0])
            where = np.unravel_index(flat, shape)
            place = _row(int(where[-1]), places)
            prefix = f"analysis {int(where[0])}, " if len(shape) == 2 else ""
            raise AnalysisError(f"{problem} ({prefix}{place})")
    return arrays[0], arrays[1], arrays[2], arrays[3]


Cells = tuple[FloatArray, FloatArray, FloatArray, FloatArray]


def _individual(
    method: str, measure: str, cells: Cells, *, drop00: bool
) -> tuple[FloatArray, FloatArray]:
    """Each study's outcome as metafor's escalc computes it for the method (NaN: none)."""
    a, b, c, d = cells
    none = ((a == 0) & (c == 0)) | ((b == 0) & (d == 0))
    half = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    add = np.where(half, 0.5, 0.0)
    a, b, c, d = a + add, b + add, c + add, d + add
    n1, n2 = a + b, c + d
    if method == "PETO":
        n = n1 + n2
        xt, yt = a + c, b + d
        v = xt * yt * (n1 / n) * (n2 / n) / (n - 1.0)
        yi = (a - xt * n1 / n) / v
        vi = 1.0 / v
    elif measure == "OR":
        yi = np.log(a / b) - np.log(c / d)
        vi = 1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d
    elif measure == "RR":
        yi = np.log(a / n1) - np.log(c / n2)
        vi = 1.0 / a - 1.0 / n1 + 1.0 / c - 1.0 / n2
    else:
        p1, p2 = a / n1, c / n2
        yi = p1 - p2
        vi = p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2
    if drop00:
        yi = np.where(none, np.nan, yi)
        vi = np.where(none, np.nan, vi)
    return yi, vi


#: Why each pooled estimate can be undefined (one reason per method and measure).
UNDEFINED = {
    ("MH", "OR"): "Mantel-Haenszel odds ratio undefined: sum(ai*di/ni) or sum(bi*ci/ni) is 0 "
    "(no study has events in one group together with non-events in the other)",
    ("MH", "RR"): "Mantel-Haenszel risk ratio undefined: no events in one of the groups (ai or "
    "ci is 0 in every study)",
    ("MH", "RD"): "Mantel-Haenszel risk difference has a standard error of 0 (no events, or "
    "only events, in every study)",
    ("PETO", "OR"): "Peto's odds ratio undefined: one of the two outcomes never occurred in any "
    "of the tables",
}


def _mh(
    measure: str, a: FloatArray, b: FloatArray, c: FloatArray, d: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """MH estimate, its se, the per-study weights (raw counts, sums over the last axis) and
    where the estimate is undefined."""
    n1, n2 = a + b, c + d
    n = n1 + n2
    if measure == "OR":
        p, q = (a + d) / n, (b + c) / n
        r, s = a * d / n, b * c / n
        big_r, big_s = r.sum(axis=-1), s.sum(axis=-1)
        undefined = (big_r == 0) | (big_s == 0)
        est = np.log(big_r / big_s)
        var = 0.5 * (
            (p * r).sum(axis=-1) / big_r**2
            + (p * s + q * r).sum(axis=-1) / (big_r * big_s)
            + (q * s).sum(axis=-1) / big_s**2
        )
        weight = s
    elif measure == "RR":
        undefined = (a.sum(axis=-1) == 0) | (c.sum(axis=-1) == 0)
        big_r = (a * (n2 / n)).sum(axis=-1)
        big_s = (c * (n1 / n)).sum(axis=-1)
        est = np.log(big_r / big_s)
        var = ((n1 / n) * (n2 / n) * (a + c) - (a / n) * c).sum(axis=-1) / (big_r * big_s)
        weight = c * n1 / n
    else:
        den = (n1 * (n2 / n)).sum(axis=-1)
        est = (a * (n2 / n) - c * (n1 / n)).sum(axis=-1) / den
        lin = c * (n1 / n) ** 2 - a * (n2 / n) ** 2 + (n1 / n) * (n2 / n) * (n2 - n1) / 2
        num = est * lin.sum(axis=-1) + (a * (n2 - c) / n + c * (n1 - a) / n).sum(axis=-1) / 2
        var = num / den**2
        undefined = ~(var > 0)
        weight = n1 * n2 / n
    undef = np.asarray(undefined)
    return np.where(undef, np.nan, est), np.where(undef, np.nan, np.sqrt(var)), weight, undef


def pool_tables(
    ai: ArrayLike,
    bi: ArrayLike,
    ci: ArrayLike,
    di: ArrayLike,
    *,
    method: str = "MH",
    measure: str = "OR",
    level: float = 95,
    drop00: bool = True,
    places: Places | None = None,
) -> PooledTables:
    """Pool 2x2 tables by Mantel-Haenszel or Peto; see the module docstring for the rules.

    ``places(j)`` names study ``j`` (0-based) in messages about bad counts (default
    ``row j+1``). Raises :class:`~cosmo_runner.errors.AnalysisError` for an unknown method or
    measure, bad counts, a bad ``level`` or an undefined estimate (naming the analysis of a
    batch).
    """
    method, measure, alpha = _check(method, measure, level)
    a, b, c, d = _cells(ai, bi, ci, di, places)
    res = _pool((a, b, c, d), method=method, measure=measure, alpha=alpha, drop00=drop00)
    undefined = np.atleast_1d(res.undefined)
    if bool(undefined.any()):
        why = UNDEFINED[(method, measure)]
        if a.ndim == 2:
            why += f" (analysis {int(np.flatnonzero(undefined)[0])})"
        raise AnalysisError(why)
    return res


def leave1out_tables(
    ai: ArrayLike,
    bi: ArrayLike,
    ci: ArrayLike,
    di: ArrayLike,
    *,
    method: str = "MH",
    measure: str = "OR",
    level: float = 95,
    drop00: bool = True,
) -> PooledTables:
    """metafor's ``leave1out`` for ``rma.mh`` / ``rma.peto``: row ``i`` pools every table but
    the i-th (one batch of k analyses of k - 1 tables; needs k >= 2). Where the estimate is
    undefined without some table its row is NaN, as metafor's NA, and ``undefined`` marks it
    (:data:`UNDEFINED` says why).
    """
    method, measure, alpha = _check(method, measure, level)
    a, b, c, d = _cells(ai, bi, ci, di, None)
    if a.ndim != 1 or a.shape[0] < 2:
        raise AnalysisError("leave-one-out needs the counts of at least 2 studies (1-D)")
    k = a.shape[0]
    keep = ~np.eye(k, dtype=bool)
    a2, b2, c2, d2 = (x[None, :].repeat(k, axis=0)[keep].reshape(k, k - 1) for x in (a, b, c, d))
    return _pool((a2, b2, c2, d2), method=method, measure=measure, alpha=alpha, drop00=drop00)


def _check(method: str, measure: str, level: float) -> tuple[str, str, float]:
    method = str(method).upper()
    measure = str(measure).upper()
    if method not in MEASURES_BY_METHOD:
        raise AnalysisError(f"unknown 2x2 pooling method {method!r} (one of {', '.join(METHODS)})")
    if measure not in MEASURES_BY_METHOD[method]:
        allowed = ", ".join(MEASURES_BY_METHOD[method])
        raise AnalysisError(f"method {method} applies to measure {allowed}, not {measure}")
    return method, measure, alpha_for_level(level)


def _pool(cells: Cells, *, method: str, measure: str, alpha: float, drop00: bool) -> PooledTables:
    single = cells[0].ndim == 1
    a2, b2, c2, d2 = (np.atleast_2d(x) for x in cells)
    yi, vi = _individual(method, measure, (a2, b2, c2, d2), drop00=drop00)
    has = np.isfinite(yi)
    k_yi = has.sum(axis=-1)
    df = np.maximum(k_yi - 1, 0)

    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "PETO":
            n1, n2 = a2 + b2, c2 + d2
            n = n1 + n2
            xt, yt = a2 + c2, b2 + d2
            e = xt * n1 / n
            v = xt * yt * (n1 / n) * (n2 / n) / (n - 1.0)
            sum_v = v.sum(axis=-1)
            undefined = sum_v == 0
            sum_v = np.where(undefined, np.nan, sum_v)
            o_e = a2 - e
            est = o_e.sum(axis=-1) / sum_v
            se = np.sqrt(1.0 / sum_v)
            pos = v > 0
            q = np.where(pos, o_e**2 / np.where(pos, v, 1.0), 0.0).sum(axis=-1)
            q = np.maximum(0.0, q - o_e.sum(axis=-1) ** 2 / sum_v)
            enough = pos.sum(axis=-1) > 1
            weight = v
        else:
            est, se, weight, undefined = _mh(measure, a2, b2, c2, d2)
            resid = np.where(has, yi - est[:, None], 0.0)
            q = np.maximum(0.0, np.where(has, resid**2 / np.where(has, vi, 1.0), 0.0).sum(-1))
            enough = k_yi > 1
            q = np.where(enough, q, 0.0)  # metafor: QE = 0 with fewer than two outcomes
        q = np.where(undefined, np.nan, q)
        crit = float(ndtri(1.0 - alpha / 2.0))
        z = est / se
        pval = 2.0 * ndtr(-np.abs(z))
        q_pval = np.where(enough, chdtrc(np.maximum(df, 1), q), 1.0)
        i2 = np.where(enough & (q > 0), np.maximum(0.0, 100.0 * (q - df) / q), 0.0)
        h2 = np.where(enough, q / np.maximum(df, 1), 1.0)
        i2, h2, q_pval = (np.where(undefined, np.nan, x) for x in (i2, h2, q_pval))
        weights = 100.0 * weight / weight.sum(axis=-1, keepdims=True)

    def out(x: Any) -> Any:
        arr = np.asarray(x)
        if single:
            value = arr.reshape(-1)[0]
            return (
                bool(value)
                if arr.dtype.kind == "b"
                else int(value)
                if arr.dtype.kind in "iu"
                else float(value)
            )
        return arr

    return PooledTables(
        method=method,
        measure=measure,
        level=100.0 * (1.0 - alpha),
        k=int(a2.shape[-1]),
        k_yi=out(k_yi),
        estimate=out(est),
        se=out(se),
        statistic=out(z),
        pval=out(pval),
        ci_lb=out(est - crit * se),
        ci_ub=out(est + crit * se),
        Q=out(q),
        Q_df=out(df),
        Q_pval=out(q_pval),
        I2=out(i2),
        H2=out(h2),
        yi=yi[0] if single else yi,
        vi=vi[0] if single else vi,
        weights=weights[0] if single else weights,
        undefined=out(undefined),
    )
