"""Intercept-only models: the data as rows (analyses x studies) for the decision layer
(:class:`Rows`; rows of different lengths: :class:`Ragged`), the row-wise fit
(:func:`fit_rows`) and the scalar fast path for one analysis with a closed-form estimator
(:func:`fit_scalar`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import chdtrc, ndtr, stdtr

from cosmo_runner.meta._decisions import (
    VARRATIO_LIMIT,
    VARRATIO_WARNING,
    heterogeneity,
    knha_warning,
    reference_df,
    scaled_test,
    variance_factor,
    variance_warning,
)
from cosmo_runner.meta._estimators import Estimator, FixedPiecesEstimator
from cosmo_runner.meta._kernels import (
    SMALL_DOT,
    TRP_CANCEL,
    add_reduce,
    bad_values,
    crit,
    dot_long,
    inv_plus,
    mad,
    ptp,
    rdot,
    rsum,
    scratch,
    sum_long,
    trace_p,
)
from cosmo_runner.meta._result import ALGORITHMS, Control, FloatArray, Lazy

__all__ = ["Q_CANCEL", "Ragged", "Rows", "fit_rows", "fit_scalar"]


@dataclass
class FixedEffects:
    """Equal-effects pieces of every row: sums, mean, Q, tr P (at ``w = 1/v``)."""

    sw: FloatArray
    mu: FloatArray
    q: FloatArray
    trp: FloatArray  # trace of P = W - w w'/sum w: sum w - sum w^2 / sum w
    wratio: float  # max(sum w) / min(w) over all rows: bounds each row's vi ratio

    @classmethod
    def of(cls, y: FloatArray, v: FloatArray, mask: FloatArray | None = None) -> FixedEffects:
        """The equal-effects fit of every row, and the value checks of ``check_data``;
        ``mask`` (1 for a study, 0 for padding) gives the padding weight 0.

        ``Q`` comes from the sums ``sum w y^2 - mu sum w y`` (one pass fewer than
        residuals); its rounding error is about ``eps sum w y^2``, so a row where
        ``sum w y^2 > Q_CANCEL * Q`` (relative error above ~1e-13; also ``Q`` near 0,
        identical effects) is recomputed from residuals. Sums that overflow (huge ``|yi|``,
        subnormal ``vi``) are an error, never a NaN.
        """
        shape = y.shape
        with np.errstate(all="ignore"):  # bad values are named below, not warned about
            w = np.divide(1.0, v, out=scratch("ee.w", shape))
            # with padding (v = 1, weight 1 before the mask) min(w) is still a lower bound
            # of every row's smallest weight: wratio stays a bound
            wmin = float(np.minimum.reduce(w, axis=None))
            if mask is not None:
                np.multiply(w, mask, out=w)
            sw = rsum(w)
            wy = np.multiply(w, y, out=scratch("ee.wy", shape))
            swy = rsum(wy)
            mu = swy / sw
            # min(w) > 0 rules out NaN, negative, -0.0 and +inf variances; a zero or
            # subnormal vi has an infinite weight and, like a non-finite yi, makes mu + sw
            # non-finite
            if not wmin > 0 or not np.isfinite(mu + sw).all():
                bad_values(y, v)
            swyy = rdot(wy, y)
            q = swyy - mu * swy
            sw2 = rdot(w, w)
            redo = np.flatnonzero(~(q * Q_CANCEL >= swyy))  # NaN (inf - inf) too
            if redo.size:
                ws, r = w[redo], y[redo] - mu[redo, None]
                q[redo] = rdot(ws * r, r)
            if not np.isfinite(q + sw2).all():  # sum w y^2 or sum w^2 overflowed
                bad_values(y, v)
        q = np.maximum(q, 0.0)
        trp = trace_p(w, sw, sw2)
        # max(w) <= max(sum w): a bound on every row's vi ratio without another pass
        return cls(sw=sw, mu=mu, q=q, trp=trp, wratio=float(np.max(sw)) / wmin)


#: Elements of the (rows x points x studies) arrays :meth:`Rows.loglik_grid` builds at once.
_GRID_BLOCK = 1 << 22

#: :meth:`FixedEffects.of` recomputes Q from residuals where ``sum w y^2 > Q_CANCEL * Q``.
Q_CANCEL = 1e2


class RowsAt:
    """The intercept-only model at weights ``w`` (``1/(v + tau2)``), row-wise.

    Valid until the next :meth:`Rows.at` in this thread (work arrays are reused). ``mask``:
    padding cells of ragged rows (weight 0 in ``w`` already), left out of the likelihood."""

    def __init__(
        self,
        y: FloatArray,
        v: FloatArray,
        w: FloatArray,
        t: FloatArray | None,
        mask: FloatArray | None = None,
    ):
        self.y, self.v, self.w, self.t, self.mask = y, v, w, t, mask
        self.sw = rsum(w)
        self.mu = rdot(w, y) / self.sw

    @cached_property
    def r(self) -> FloatArray:
        return np.subtract(self.y, self.mu[:, None], out=scratch("at.r", self.y.shape))

    @cached_property
    def _wr(self) -> FloatArray:
        return np.multiply(self.w, self.r, out=scratch("at.wr", self.y.shape))

    @cached_property
    def _w2(self) -> FloatArray:
        return np.multiply(self.w, self.w, out=scratch("at.w2", self.y.shape))

    @cached_property
    def rss(self) -> FloatArray:
        return rdot(self._wr, self.r)

    @cached_property
    def ypppy(self) -> FloatArray:
        return rdot(self._wr, self._wr)

    @cached_property
    def sw2(self) -> FloatArray:
        return rdot(self.w, self.w)

    @cached_property
    def trp(self) -> FloatArray:
        return self.sw - self.sw2 / self.sw

    @cached_property
    def trpp(self) -> FloatArray:
        sw, sw2 = self.sw, self.sw2
        return sw2 - 2.0 * rdot(self._w2, self.w) / sw + (sw2 / sw) ** 2

    @cached_property
    def _w2v(self) -> FloatArray:
        return rdot(self._w2, self.v)

    def trpv(self) -> FloatArray:
        return rdot(self.w, self.v) - self._w2v / self.sw

    def trpvp(self) -> FloatArray:
        sw = self.sw
        w3v = rdot(self._w2 * self.w, self.v)
        return self._w2v - 2.0 * w3v / sw + self.sw2 * self._w2v / sw**2

    def trpvpv(self) -> FloatArray:
        sw, vv = self.sw, self.v * self.v
        return rdot(self._w2, vv) - 2.0 * rdot(self._w2 * self.w, vv) / sw + (self._w2v / sw) ** 2

    def loglik(self, reml: bool) -> FloatArray:
        assert self.t is not None, "the unweighted model has no likelihood"
        s = np.add(self.v, self.t[:, None], out=scratch("at.s", self.y.shape))
        np.log(s, out=s)
        if self.mask is not None:
            np.multiply(s, self.mask, out=s)
        ll = -0.5 * (rsum(s) + self.rss)
        return np.asarray(ll - 0.5 * np.log(self.sw) if reml else ll)


class Rows:
    """Intercept-only models of ``n`` analyses (rows) of ``k`` studies, for the decision
    layer (see :class:`~._decisions.Problem`)."""

    p = 1
    k: int | NDArray[np.intp]
    #: 1 for a study, 0 for padding (:class:`Ragged`); None: every cell is a study
    mask: FloatArray | None = None

    def __init__(self, y: FloatArray, v: FloatArray) -> None:
        self.y, self.v = y, v
        self.n, self.k = y.shape

    @cached_property
    def fe(self) -> FixedEffects:
        return FixedEffects.of(self.y, self.v)

    def fixed(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return self.fe.q, self.fe.sw, self.fe.trp

    def at(self, tau2: FloatArray) -> RowsAt:
        w = inv_plus(self.v, tau2, out=scratch("at.w", self.y.shape))
        return RowsAt(self.y, self.v, w, tau2)

    def unweighted(self) -> RowsAt:
        return RowsAt(self.y, self.v, np.ones(self.y.shape), None)

    def var_y(self) -> FloatArray:
        ym = np.subtract(self.y, (rsum(self.y) / self.k)[:, None])
        return np.asarray(rdot(ym, ym) / self.k)

    def spread(self) -> tuple[FloatArray, FloatArray]:
        return mad(self.y), ptp(self.y)

    def take(self, rows: NDArray[np.intp]) -> Rows:
        if self.n == 1:  # one analysis seen several times (root finding): no copies
            shape = (int(np.asarray(rows).size), self.y.shape[1])
            return Rows(np.broadcast_to(self.y, shape), np.broadcast_to(self.v, shape))
        return Rows(self.y[rows], self.v[rows])

    def loglik_grid(self, grid: FloatArray, reml: bool) -> FloatArray:
        """The log-likelihood at every tau2 of ``grid`` (rows x points), in blocks of rows."""
        n, g = grid.shape
        y, v, mask = self.y, self.v, self.mask
        width = y.shape[1]
        out = np.empty((n, g))
        if g * width > _GRID_BLOCK:  # long rows: one tau2 at a time (bounded memory)
            for j in range(g):
                out[:, j] = self.at(np.ascontiguousarray(grid[:, j])).loglik(reml)
            return out
        step = max(1, _GRID_BLOCK // (g * width))
        for a in range(0, n, step):
            b = min(n, a + step)
            s = v[a:b, None, :] + grid[a:b, :, None]
            w = 1.0 / s
            logs = np.log(s)
            if mask is not None:  # padding: weight 0, no log-determinant term
                w *= mask[a:b, None, :]
                logs *= mask[a:b, None, :]
            sw = w.sum(axis=2)
            mu = np.einsum("rgk,rk->rg", w, y[a:b]) / sw
            r = y[a:b, None, :] - mu[:, :, None]
            ll = -0.5 * (logs.sum(axis=2) + np.einsum("rgk,rgk,rgk->rg", w, r, r))
            if reml:
                ll -= 0.5 * np.log(sw)
            out[a:b] = ll
        return out

    def extreme_variances(self) -> NDArray[np.bool_]:
        if self.fe.wratio < VARRATIO_LIMIT:  # the bound: no row reaches metafor's limit
            return np.zeros(self.n, dtype=bool)
        return np.asarray(np.max(self.v, axis=1) / np.min(self.v, axis=1) >= VARRATIO_LIMIT)


class Ragged(Rows):
    """Rows of different lengths: row i holds its first ``k[i]`` studies, then padding
    (``y = 0``, ``v = 1``) that weighs 0 in every sum (``mask``), is left out of the
    log-likelihood, the spread (mad, range), ``var(y)`` and the variance ratio, and ``k``
    (per row) gives every df (Q, t, Knapp-Hartung, I2/H2). A cumulative meta-analysis fits
    its prefixes as one batch this way."""

    mask: FloatArray
    k: NDArray[np.intp]

    def __init__(self, y: FloatArray, v: FloatArray, mask: FloatArray, k: NDArray[np.intp]) -> None:
        super().__init__(y, v)
        self.mask, self.k = mask, k

    @classmethod
    def pad(cls, y: FloatArray, v: FloatArray, lengths: NDArray[np.intp]) -> Ragged:
        """The rows of ``y``/``v`` cut at ``lengths``; whatever lies beyond is replaced."""
        keep = np.arange(y.shape[1])[None, :] < lengths[:, None]
        return cls(np.where(keep, y, 0.0), np.where(keep, v, 1.0), keep.astype(np.float64), lengths)

    @cached_property
    def fe(self) -> FixedEffects:
        return FixedEffects.of(self.y, self.v, self.mask)

    def at(self, tau2: FloatArray) -> RowsAt:
        w = inv_plus(self.v, tau2, out=scratch("at.w", self.y.shape))
        np.multiply(w, self.mask, out=w)
        return RowsAt(self.y, self.v, w, tau2, self.mask)

    def unweighted(self) -> RowsAt:
        return RowsAt(self.y, self.v, self.mask, None, self.mask)

    def var_y(self) -> FloatArray:
        ym = np.subtract(self.y, (rsum(self.y) / self.k)[:, None])
        ym *= self.mask
        return np.asarray(rdot(ym, ym) / self.k)

    def spread(self) -> tuple[FloatArray, FloatArray]:
        yn = np.where(self.mask > 0, self.y, np.nan)
        return mad(yn, padded=True), ptp(yn, padded=True)

    def take(self, rows: NDArray[np.intp]) -> Ragged:
        if self.n == 1:  # one analysis seen several times (root finding): no copies
            shape = (int(np.asarray(rows).size), self.y.shape[1])

            def wide(a: Any) -> Any:
                return np.broadcast_to(a, shape)

            k = np.broadcast_to(self.k, shape[:1])
            return Ragged(wide(self.y), wide(self.v), wide(self.mask), k)
        return Ragged(self.y[rows], self.v[rows], self.mask[rows], self.k[rows])

    def extreme_variances(self) -> NDArray[np.bool_]:
        if self.fe.wratio < VARRATIO_LIMIT:  # the bound: no row reaches metafor's limit
            return np.zeros(self.n, dtype=bool)
        keep = self.mask > 0
        vmax = np.max(self.v, axis=1, where=keep, initial=-np.inf)
        vmin = np.min(self.v, axis=1, where=keep, initial=np.inf)
        return np.asarray(vmax / vmin >= VARRATIO_LIMIT)


def fit_rows(
    y: FloatArray,
    v: FloatArray,
    method: str,
    unit: Estimator,
    *,
    test: str,
    alpha: float,
    con: Control,
    lengths: NDArray[np.intp] | None = None,
) -> dict[str, Any]:
    """The intercept-only fit of every row of (analyses x studies) arrays; with ``lengths``,
    row i is its first ``lengths[i]`` studies (:class:`Ragged`; ``k``, ``df`` and ``Q_df``
    are then arrays over rows).

    ``tau2_se``, ``weights`` and the per-analysis statistics are computed on demand."""
    problem = Rows(y, v) if lengths is None else Ragged.pad(y, v, lengths)
    k = problem.k
    fe = problem.fe  # the value checks first
    tfit = unit.fit(problem, con)
    tau2 = tfit.tau2
    warnings = [w for w in [variance_warning(problem.extreme_variances())] if w]
    warnings += tfit.warnings
    q, vt = fe.q, (k - 1) / fe.trp
    is_ee = unit.equal_effects
    if is_ee:
        sw, mu, rss = fe.sw, fe.mu, q
    else:
        at = problem.at(tau2)
        sw, mu = at.sw, at.mu
        rss = at.rss if scaled_test(test) else q
    var_b = 1.0 / sw
    df = reference_df(test, k, 1)
    warnings += [w for w in [knha_warning(method, test)] if w]
    factor = variance_factor(test, rss, k - 1.0)
    if factor is not None:
        var_b = factor * var_b
    se = np.sqrt(var_b)
    half = crit(alpha, df) * se
    lazy = _lazy(problem, unit, tfit.tau0, tau2=tau2, mu=mu, se=se, var_b=var_b, q=q, vt=vt,
                 df=df, alpha=alpha, algorithm=tfit.algorithm)  # fmt: skip
    return _fields(
        k=k, mu=mu, se=se, df=df, half=half, tau2=tau2, q=q, converged=tfit.converged,
        iterations=tfit.iterations, warnings=warnings, vt=vt, lazy=lazy,
    )  # fmt: skip


def _fields(
    *,
    k: Any,
    mu: Any,
    se: Any,
    df: float | None,
    half: Any,
    tau2: Any,
    q: Any,
    converged: Any,
    iterations: Any,
    warnings: list[str],
    vt: Any,
    lazy: Lazy,
) -> dict[str, Any]:
    """The intercept-only fit's :class:`RMAResult` fields, for the row-wise and the scalar
    path alike (arrays over rows, or floats): the CI is ``mu -+ half``."""
    return {
        "k": k,
        "estimate": mu,
        "se": se,
        "df": df,
        "ci_lb": mu - half,
        "ci_ub": mu + half,
        "tau2": tau2,
        "Q": q,
        "Q_df": k - 1,
        "converged": converged,
        "iterations": iterations,
        "warnings": tuple(warnings),
        "vt": vt,
        "lazy": lazy,
    }


def _lazy(
    problem: Rows,
    unit: Estimator,
    tau0: FloatArray,
    *,
    tau2: FloatArray,
    mu: FloatArray,
    se: FloatArray,
    var_b: FloatArray,
    q: FloatArray,
    vt: FloatArray,
    df: float | None,
    alpha: float,
    algorithm: NDArray[np.int8],
) -> Lazy:
    """What a plain fit does not pay for, from the inputs and the small per-row results."""
    k = problem.k
    is_ee = unit.equal_effects

    def weights() -> FloatArray:
        wm = inv_plus(problem.v, np.zeros_like(tau2) if is_ee else tau2)
        if problem.mask is not None:
            wm *= problem.mask
        return np.asarray(100.0 * wm / rsum(wm)[:, None])

    def statistic() -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(mu / se)

    def pval() -> FloatArray:
        abs_stat = np.abs(statistic())  # not lazy.get: reduced to a float for one analysis
        return np.asarray(2.0 * (ndtr(-abs_stat) if df is None else stdtr(df, -abs_stat)))

    def half_pi() -> FloatArray:
        return np.asarray(crit(alpha, df) * np.sqrt(var_b + tau2))

    return Lazy(
        {
            "tau2_se": lambda: unit.se(problem, tau2, tau0),
            "weights": weights,
            "Q_pval": lambda: np.asarray(chdtrc(k - 1, q)),
            "algorithm": lambda: np.array(ALGORITHMS, dtype=object)[algorithm],
            "statistic": statistic,
            "pval": pval,
            "tau": lambda: np.sqrt(tau2),
            "I2": lambda: heterogeneity(is_ee, q, k - 1.0, tau2, vt)[0],
            "H2": lambda: heterogeneity(is_ee, q, k - 1.0, tau2, vt)[1],
            "pi_lb": lambda: mu - half_pi(),
            "pi_ub": lambda: mu + half_pi(),
        },
        rows=problem.n,
    )


# the DL bench rows (k = 10, 1 000, 100 000) need a one-analysis fit without row-wise
# arrays: the 2-D path's numpy calls cost ~3x the arithmetic there (long on purpose, PLR0915:
# the whole scalar fit in one frame is that fast path)
def fit_scalar(  # noqa: PLR0915
    y: FloatArray,
    v: FloatArray,
    method: str,
    unit: FixedPiecesEstimator,
    *,
    test: str,
    alpha: float,
) -> dict[str, Any]:
    """The intercept-only fit of ONE analysis with a closed form in the equal-effects
    pieces (EE, DL, HS), in scalar arithmetic; the same decisions as :func:`fit_rows`
    (the agreement test checks values and warnings)."""
    k = y.shape[0]
    small = k <= SMALL_DOT
    dot: Callable[[FloatArray, FloatArray], Any] = np.dot if small else dot_long
    add: Callable[[FloatArray], Any] = add_reduce if small else sum_long
    # the equal-effects fit and the value checks together, as in FixedEffects.of
    with np.errstate(all="ignore"):
        w0 = np.divide(1.0, v)
        wmin = float(np.minimum.reduce(w0))
        if not wmin > 0:
            bad_values(y, v)
        sw0 = float(add(w0))
        wy = np.multiply(w0, y)
        swy = float(add(wy))
        mu0 = swy / sw0  # sw0 > 0
        if not math.isfinite(mu0 + sw0):  # yi not finite, or the sums overflowed
            bad_values(y, v)
        swyy = float(dot(wy, y))
        q = swyy - mu0 * swy
        if not q * Q_CANCEL >= swyy:  # cancellation (or inf - inf): Q from residuals
            r0 = np.subtract(y, mu0, out=wy)
            q = float(dot(w0, np.square(r0, out=r0)))
        sw0_2 = float(dot(w0, w0))
        if not math.isfinite(q + sw0_2):
            bad_values(y, v)
    q = max(q, 0.0)
    trp = sw0 - sw0_2 / sw0
    if not trp * TRP_CANCEL >= sw0:  # one dominant weight: recompute without cancellation
        trp = float(trace_p(w0[None, :], np.array([sw0]), np.array([sw0_2]))[0])
    vt = (k - 1) / trp
    # max(w) <= sum w: the exact ratio only when the bound reaches metafor's limit
    extreme = sw0 / wmin >= VARRATIO_LIMIT and float(np.max(w0)) / wmin >= VARRATIO_LIMIT
    warnings = [VARRATIO_WARNING] if extreme else []  # variance_warning's text for one row
    tau2 = float(unit.from_fixed(q, sw0, trp, k, 1))
    if unit.equal_effects:
        sw, mu, rss = sw0, mu0, q
    else:
        w = 1.0 / (v + tau2) if small else inv_plus(v[None, :], np.array([tau2]))[0]
        sw = float(add(w))
        mu = float(dot(w, y)) / sw
        rss = q
        if scaled_test(test):
            r = y - mu
            rss = float(dot(w * r, r))
    var_b = 1.0 / sw
    df = reference_df(test, k, 1)
    warnings += [w for w in [knha_warning(method, test)] if w]
    factor = variance_factor(test, np.array(rss), k - 1.0)
    if factor is not None:
        var_b = float(factor) * var_b
    se = math.sqrt(var_b)
    stat = mu / se if se > 0 else (math.copysign(math.inf, mu) if mu != 0 else math.nan)
    tail = ndtr(-abs(stat)) if df is None else stdtr(df, -abs(stat))
    cv = crit(alpha, df)
    half = cv * se
    half_pi = cv * math.sqrt(var_b + tau2)
    y2, v2 = y[None, :], v[None, :]

    def i2h2() -> tuple[FloatArray, FloatArray]:
        t2 = np.array([tau2])
        return heterogeneity(unit.equal_effects, np.array([q]), k - 1.0, t2, np.array([vt]))

    def weights() -> FloatArray:
        wm = inv_plus(v2, np.array([tau2]))
        return np.asarray(100.0 * wm / rsum(wm)[:, None])

    lazy = Lazy(
        {
            "tau2_se": lambda: unit.se(Rows(y2, v2), np.array([tau2]), np.zeros(1)),
            "weights": weights,
            "Q_pval": lambda: float(chdtrc(k - 1, q)),
            "algorithm": lambda: ALGORITHMS[0],
            "I2": lambda: i2h2()[0],
            "H2": lambda: i2h2()[1],
        },
        single=True,
        values={
            "statistic": stat,
            "pval": 2.0 * float(tail),
            "tau": math.sqrt(tau2),
            "pi_lb": mu - half_pi,
            "pi_ub": mu + half_pi,
        },
    )
    return _fields(
        k=k, mu=mu, se=se, df=df, half=half, tau2=tau2, q=q, converged=True, iterations=0,
        warnings=warnings, vt=vt, lazy=lazy,
    )  # fmt: skip
