"""Cumulative meta-analysis and case-deletion diagnostics (metafor's ``cumul`` and
``influence`` for intercept-only ``rma.uni`` fits; Viechtbauer & Cheung 2010).

- :func:`cumulative`: the model refitted on the first 1, 2, ..., k studies in the given
  order (metafor ``cumul(fit, order=)``: a stable sort, so ties keep the data order). The
  first row is the single study itself, as metafor's ``rma.uni`` with k = 1 gives it (its
  effect and standard error, a z interval, tau2 = 0, Q = 0, I2 = 0).
- :func:`influence`: for each study i, from the fit without it (``leave1out``'s refits):
  ``rstudent`` ``(yi - mu_(-i)) / sqrt(s2w_(-i) (vi + tau2_(-i)) + se_(-i)^2)``, ``dffits``
  ``(mu - mu_(-i)) / sqrt(s2w_(-i) h_i (tau2_(-i) + vi))``, ``cook_d``
  ``(mu - mu_(-i))^2 / se^2``, ``cov_r`` ``se_(-i)^2 / se^2``, ``tau2_del``, ``QE_del``,
  ``hat`` ``h_i = w_i / sum w`` and ``weight`` (percent), where ``s2w`` is the Knapp-Hartung
  factor of the refit (1 for the z and t tests; at least 1 for adhoc). ``dfbetas``
  ``(mu - mu_(-i)) / sqrt(s2w_(-i) vb_del)`` with ``vb_del = 1 / sum_j 1/(vj + tau2_(-i))`` over all k studies. A study is
  ``influential`` by metafor's rule: ``|dffits| > 3 sqrt(p / (k - p))``, or the chi-square(1)
  cdf of ``cook_d`` above 0.5, or ``hat > 3 p / k``, or ``|dfbetas| > 1`` (p = 1).

Both need at least 3 studies here (influence: every refit needs 2). The cumulative fits of
the first 2, ..., k studies are one batched fit of ragged rows (``rma(..., lengths=)``; in
chunks at large k), as leave-one-out's k refits are one batch of k - 1 studies each. Large
k: each costs k refits; the caller applies the documented cap (``analysis.LEAVE1OUT_MAX_K``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtr, ndtr, ndtri

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._decisions import scaled_test, variance_factor
from cosmo_runner.meta._result import RowsWarning
from cosmo_runner.meta.diagnostics import LeaveOneOut, leave1out
from cosmo_runner.meta.fit import Control, RMAResult, alpha_for_level, check_one_analysis, rma

__all__ = ["Cumulative", "Influence", "cumulative", "influence"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Cumulative:
    """Row j: the fit of the first j + 1 studies of ``order`` (indices into the input)."""

    order: NDArray[np.intp]
    estimate: FloatArray
    se: FloatArray
    pval: FloatArray
    ci_lb: FloatArray
    ci_ub: FloatArray
    Q: FloatArray
    tau2: FloatArray
    I2: FloatArray
    warnings: tuple[str, ...]


def cumulative(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    order: ArrayLike | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Control | Mapping[str, Any] | None = None,
) -> Cumulative:
    """metafor's ``cumul``: ``order`` holds sort keys (numbers or strings, ascending, stable;
    strings by code point), default the data order."""
    y, v = check_one_analysis(yi, vi, "cumulative meta-analysis")
    k = y.shape[0]
    if order is None:
        idx = np.arange(k)
    else:
        keys = np.asarray(order)
        if keys.shape != (k,):
            raise AnalysisError("cumulative meta-analysis: one sort key per study is needed")
        idx = np.argsort(keys, kind="stable")
    ys, vs = y[idx], v[idx]
    cols = {name: np.empty(k) for name in ("estimate", "se", "pval", "ci_lb", "ci_ub", "Q")}
    tau2 = np.empty(k)
    i2 = np.empty(k)
    crit = float(ndtri(1.0 - alpha_for_level(level) / 2.0))
    se1 = float(np.sqrt(vs[0]))
    cols["estimate"][0], cols["se"][0] = ys[0], se1
    cols["pval"][0] = 2.0 * float(ndtr(-abs(ys[0] / se1)))
    cols["ci_lb"][0], cols["ci_ub"][0] = ys[0] - crit * se1, ys[0] + crit * se1
    cols["Q"][0], tau2[0], i2[0] = 0.0, 0.0, 0.0
    try:
        warnings = _prefixes(ys, vs, cols, tau2, i2, method=method, test=test, level=level,
                             control=control)  # fmt: skip
    except AnalysisError:
        # the error of the first prefix that fails, as that prefix's own fit words it
        warnings = []
        for j in range(1, k):
            fit = rma(ys[: j + 1], vs[: j + 1], method=method, test=test, level=level,
                      control=control)  # fmt: skip
            for name, column in cols.items():
                column[j] = float(getattr(fit, name))
            tau2[j], i2[j] = float(fit.tau2), float(fit.I2)
            warnings.extend(f"first {j + 1} studies: {w}" for w in fit.warnings)
    if str(method).upper() in ("EE", "FE"):
        tau2[:] = np.nan  # no heterogeneity term (metafor reports none)
    return Cumulative(order=idx, tau2=tau2, I2=i2, warnings=tuple(warnings), **cols)


#: Numbers per batch of prefix fits (bounded memory at large k, as leave1out's chunks).
_CHUNK_ELEMENTS = 4_000_000


def _prefixes(
    ys: FloatArray,
    vs: FloatArray,
    cols: dict[str, FloatArray],
    tau2: FloatArray,
    i2: FloatArray,
    **fit: Any,
) -> list[str]:
    """Rows 1 .. k-1 of the cumulative table, in place: the fits of the first 2, 3, ..., k
    studies as batches of ragged rows (one :func:`rma` with ``lengths`` per chunk, not k - 1
    fits); returns the warnings, each prefix's own in its order (``first j studies: ...``).
    """
    k = ys.shape[0]
    per: list[list[str]] = [[] for _ in range(k)]
    start = 1  # row j fits the first j + 1 studies
    while start < k:
        stop = start + 1
        while stop < k and (stop - start + 1) * (stop + 1) <= _CHUNK_ELEMENTS:
            stop += 1
        width = stop  # the longest prefix of the chunk: rows start .. stop-1
        lengths = np.arange(start + 1, stop + 1)
        shape = (lengths.size, width)
        res = rma(np.broadcast_to(ys[:width], shape), np.broadcast_to(vs[:width], shape),
                  lengths=lengths, **fit)  # fmt: skip
        for name, column in cols.items():
            column[start:stop] = getattr(res, name)
        tau2[start:stop], i2[start:stop] = res.tau2, res.I2
        for w in res.warnings:  # a RowsWarning names its rows; a plain text is every row's
            rows = w.rows if isinstance(w, RowsWarning) else range(lengths.size)
            text = w.template.format("") if isinstance(w, RowsWarning) else str(w)
            for r in rows:
                per[start + r].append(text)
        start = stop
    return [f"first {j + 1} studies: {w}" for j in range(1, k) for w in per[j]]


@dataclass(frozen=True)
class Influence:
    """Case-deletion diagnostics per study (input order); see the module docstring."""

    rstudent: FloatArray
    dffits: FloatArray
    cook_d: FloatArray
    cov_r: FloatArray
    tau2_del: FloatArray
    QE_del: FloatArray
    hat: FloatArray
    weight: FloatArray
    dfbetas: FloatArray
    influential: NDArray[np.bool_]
    warnings: tuple[str, ...]


def influence(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Control | Mapping[str, Any] | None = None,
    fit: RMAResult | None = None,
    refits: LeaveOneOut | None = None,
) -> Influence:
    """metafor's ``influence`` for an intercept-only model (``p = 1``). ``fit`` and
    ``refits``: the model and its :func:`~.diagnostics.leave1out`, if the caller has them
    (with the same data, method, test, level and control), to be reused."""
    y, v = check_one_analysis(yi, vi, "influence diagnostics")
    k = y.shape[0]
    full = rma(y, v, method=method, test=test, level=level, control=control) if fit is None else fit
    mu, vb = float(full.estimate), float(full.se) ** 2
    tau2 = 0.0 if str(method).upper() in ("EE", "FE") else float(full.tau2)
    w = 1.0 / (v + tau2)
    hat = w / w.sum()
    l1o = (
        leave1out(y, v, method=method, test=test, level=level, control=control)
        if refits is None
        else refits
    )
    mu_del, se_del = np.asarray(l1o.estimate), np.asarray(l1o.se)
    tau2_del = np.asarray(l1o.tau2) if l1o.tau2 is not None else np.zeros(k)
    tau2_del = np.nan_to_num(tau2_del, nan=0.0) if str(method).upper() in ("EE", "FE") else tau2_del
    s2w = np.ones(k)
    if scaled_test(test):
        # the refit's Knapp-Hartung factor: sum w (y - mu)^2 / (k - 2) over the other studies
        wd = 1.0 / (v[None, :] + tau2_del[:, None])
        resid2 = wd * (y[None, :] - mu_del[:, None]) ** 2
        others = ~np.eye(k, dtype=bool)
        rss_del = np.where(others, resid2, 0.0).sum(axis=1)
        s2w = np.asarray(variance_factor(test, rss_del, k - 2.0))
    resid = y - mu_del
    resid[np.abs(resid) < 100 * np.finfo(float).eps] = 0.0
    rstudent = resid / np.sqrt(v * s2w + se_del**2 + tau2_del * s2w)
    dfb = mu - mu_del
    dffits = dfb / np.sqrt(s2w * hat * (tau2_del + v))
    vb_del = 1.0 / (1.0 / (v[None, :] + tau2_del[:, None])).sum(axis=1)
    dfbetas = dfb / np.sqrt(s2w * vb_del)
    cook_d = dfb**2 / vb
    cov_r = se_del**2 / vb
    p = 1
    influential = (
        (np.abs(dffits) > 3.0 * np.sqrt(p / (k - p)))
        | (chdtr(1, cook_d) > 0.5)
        | (hat > 3.0 * p / k)
        | (np.abs(dfbetas) > 1.0)
    )
    return Influence(
        rstudent=rstudent,
        dffits=dffits,
        cook_d=cook_d,
        cov_r=cov_r,
        tau2_del=tau2_del,
        QE_del=np.asarray(l1o.Q),
        hat=hat,
        weight=100.0 * hat,
        dfbetas=dfbetas,
        influential=influential & np.isfinite(dffits),
        warnings=tuple(l1o.warnings),
    )
