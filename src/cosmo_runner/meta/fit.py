"""Random- and equal-effects meta-analysis and meta-regression (metafor's ``rma.uni``).

The model is ``y_i = x_i' beta + u_i + e_i`` with ``e_i ~ N(0, v_i)`` and ``u_i ~ N(0, tau2)``
(Viechtbauer 2005, 2010). ``tau2`` is estimated by one of

- ``EE`` (alias ``FE``): ``tau2 = 0``;
- ``DL``: DerSimonian & Laird (1986) method of moments;
- ``HE``: Hedges (1983) / Hedges & Olkin (1985) unweighted method of moments;
- ``HS``: Hunter & Schmidt (2004);
- ``SJ``: Sidik & Jonkman (2005), one step from ``var(y) (k-1)/k``;
- ``ML``, ``REML``: (restricted) maximum likelihood by Fisher scoring (Viechtbauer 2005) from
  the ``HE`` start, with metafor's step halving and stopping rule (``|step| <= threshold``);
- ``EB``: empirical Bayes (Morris 1983; Berkey et al. 1995), metafor's iteration;
- ``PM``: Paule & Mandel (1982), the root of the generalised ``Q(tau2) = k - p``.

Beyond metafor: where Fisher scoring stops at a local maximum of a multimodal likelihood, or
short of a single flat peak (``Control.global_check``, which tells the two apart by the
profile between them), or does not converge (it can oscillate), the fit uses a bounded
maximisation of the (restricted) log-likelihood, a grid bracket followed by a root of the
score with :func:`scipy.optimize.elementwise.find_root` (Chandrupatla's bracketing method,
vectorised over analyses); ``algorithm`` and ``warnings`` say so. ``EB`` falls back to the
equivalent ``PM`` equation. A failure that remains raises
:class:`~cosmo_runner.errors.AnalysisError`.

Tests, as metafor 3.8.1: ``"z"`` (normal); ``"t"`` (t with ``k - p`` df, the variance as for
z); ``"knha"`` (Knapp & Hartung 2003: the variance scaled by the weighted residual variance
s2w, t with ``k - p`` df; also computed for EE, with metafor's warning); ``"adhoc"`` (knha
with s2w truncated below at 1, Knapp & Hartung's ad hoc improvement). The t tests give an F
omnibus test of the moderators and t-based prediction intervals.
Heterogeneity: ``Q`` (Cochran), and ``I2``/``H2`` (Higgins & Thompson 2002), tau2-based for
random-effects models and Q-based for EE, exactly as metafor computes them.

Batches: ``yi`` and ``vi`` may be 2-D (analyses x studies); every intercept-only method is
then fitted for all analyses at once (iterations loop, analyses do not), and the result's
attributes are arrays over analyses. With ``lengths`` the rows differ in length (row i is
its first ``lengths[i]`` studies; the cumulative meta-analysis fits its prefixes so).

Where things live: one unit per estimator in :mod:`._estimators`; every decision of a fit
(Fisher scoring, fallbacks, ll0check, the global check, Knapp-Hartung, I2/H2, warnings) in
:mod:`._decisions`; the data as rows of analyses in :mod:`._intercept`, with a model matrix
in :mod:`._metareg`. The paths differ only in array shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._decisions import KNHA_EE_WARNING, LL0_WARNING, MULTIMODAL_WARNING
from cosmo_runner.meta._estimators import METHODS, FixedPiecesEstimator, estimator
from cosmo_runner.meta._intercept import fit_rows, fit_scalar
from cosmo_runner.meta._kernels import check_data, rows_note
from cosmo_runner.meta._metareg import fit_regression
from cosmo_runner.meta._result import (
    ALGORITHMS,
    CLOSED,
    FALLBACK,
    FISHER,
    ROOT,
    TESTS,
    Control,
    FloatArray,
    Lazy,
    RMAResult,
    alpha_for_level,
)

__all__ = [
    "ALGORITHMS",
    "CLOSED",
    "FALLBACK",
    "FISHER",
    "KNHA_EE_WARNING",
    "LL0_WARNING",
    "METHODS",
    "MULTIMODAL_WARNING",
    "ROOT",
    "TESTS",
    "Control",
    "RMAResult",
    "alpha_for_level",
    "check_one_analysis",
    "rma",
]

# documented (repr, help, pickles) where users import them: the package
Control.__module__ = RMAResult.__module__ = "cosmo_runner.meta"


def _precision_message(v: FloatArray, rows: str) -> str:
    ratio = float(np.nanmax(v)) / float(np.nanmin(v))  # NaN: the padding of ragged rows
    return (
        f"rma: the fit is not finite in double precision{rows} (max(vi) / min(vi) = "
        f"{ratio:.3g}): the variance ratio or the scale of yi and vi is too extreme; "
        "rescale yi and vi or check the study with the extreme variance"
    )


def _check_finite(res: RMAResult, v: FloatArray) -> None:
    """The core of every fit is finite and ``vt > 0`` (trace of P not cancelled away), or
    the fit is an error naming the analyses: never a NaN or inf result."""
    core = [res.estimate, res.se, res.tau2, res.ci_lb, res.ci_ub, res.Q, res.vt]
    if res.batch:
        # quick pass: the CI bounds are finite when estimate and se are; min(vt) is NaN
        # if any vt is
        add = np.add.reduce
        total = add(res.estimate) + add(res.se) + add(res.tau2) + add(res.Q) + add(res.vt)
        if math.isfinite(float(total)) and float(np.min(res.vt)) > 0:
            return
        good = np.asarray(res.vt) > 0
        for value in core:
            good &= np.isfinite(value)
        if not good.all():
            rows = np.flatnonzero(~good)
            raise AnalysisError(_precision_message(v[rows], rows_note(~good, good.size)))
        return
    finite = all(
        math.isfinite(value) if isinstance(value, float) else bool(np.isfinite(value).all())
        for value in core
    )
    if not (finite and float(res.vt) > 0):
        raise AnalysisError(_precision_message(v, ""))


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (tuple, Lazy)):
        return value
    if isinstance(value, np.ndarray):
        item = value[0]
        return item.item() if isinstance(item, np.generic) else item
    return value


def rma(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    mods: ArrayLike | None = None,
    mod_names: Sequence[str] | None = None,
    control: Mapping[str, Any] | Control | None = None,
    lengths: ArrayLike | None = None,
) -> RMAResult:
    """Fit the equal-, random- or mixed-effects model (metafor ``rma.uni``).

    ``yi``, ``vi``: effect sizes and sampling variances, 1-D (one analysis) or 2-D
    (analyses x studies, intercept-only models only). ``mods``: an n x p moderator matrix
    (1-D for one moderator; n x 0 for the intercept-only model as a meta-regression); an
    intercept is added. ``mod_names`` name its columns. ``control``: see :class:`Control`.
    ``lengths`` (2-D intercept-only only): row i is its first ``lengths[i]`` studies (at
    least 2), the cells after them are ignored; ``k``, ``df`` and ``Q_df`` are then arrays
    over rows. Raises :class:`~cosmo_runner.errors.AnalysisError` on invalid input or a
    numerical failure.
    """
    m, unit = estimator(method)
    if test not in TESTS:
        raise AnalysisError(f"rma: unknown test {test!r} (one of {', '.join(TESTS)})")
    alpha = alpha_for_level(level)
    con = Control.from_mapping(control)
    try:
        y = np.asarray(yi, dtype=np.float64)
        v = np.asarray(vi, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError("rma: yi and vi must be numeric") from exc
    # intercept-only fits check the values in their first pass (FixedEffects.of, fit_scalar)
    check_data(y, v, values=mods is not None)
    rows = None if lengths is None else _lengths(y, lengths, mods)
    try:
        with np.errstate(all="ignore"):  # a fit that leaves double precision fails below
            if mods is not None:
                x, terms = _model_matrix(y, mods, mod_names)
                res = fit_regression(
                    y, v, x, terms=terms, method=m, unit=unit, test=test, alpha=alpha, con=con
                )
            elif rows is not None:
                y, v = _cut(y, rows), _cut(v, rows)  # the ignored cells, as NaN for messages
                out = fit_rows(y, v, m, unit, test=test, alpha=alpha, con=con, lengths=rows)
                res = RMAResult(method=m, test=test, level=100.0 * (1.0 - alpha), **out)
            else:
                res = _fit_intercept(y, v, m, unit, test=test, alpha=alpha, con=con)
    except (ZeroDivisionError, OverflowError) as exc:
        raise AnalysisError(_precision_message(v, "")) from exc
    _check_finite(res, v)
    return res


def _lengths(y: FloatArray, lengths: ArrayLike, mods: ArrayLike | None) -> NDArray[np.intp]:
    """``lengths`` as row lengths of the 2-D ``y`` (whole numbers from 2 to its width)."""
    if mods is not None or y.ndim != 2:
        raise AnalysisError("rma: lengths is for 2-D yi and vi without moderators")
    try:
        raw = np.asarray(lengths, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError("rma: lengths must be numeric") from exc
    n, width = y.shape
    if raw.shape != (n,):
        raise AnalysisError(f"rma: lengths needs one entry per row ({n}), got shape {raw.shape}")
    if not (np.all(raw == np.round(raw)) and np.all(raw >= 2) and np.all(raw <= width)):
        raise AnalysisError(f"rma: lengths must be whole numbers from 2 to {width} (the width)")
    return raw.astype(np.intp)


def _cut(a: FloatArray, lengths: NDArray[np.intp]) -> FloatArray:
    """A copy of the 2-D ``a`` with NaN after each row's length."""
    keep = np.arange(a.shape[1])[None, :] < lengths[:, None]
    return np.where(keep, a, np.nan)


def check_one_analysis(
    yi: ArrayLike, vi: ArrayLike, what: str, min_k: int = 3
) -> tuple[FloatArray, FloatArray]:
    """The input check of the diagnostics that refit one analysis (publication bias,
    cumulative, influence): numeric 1-D ``yi`` and ``vi`` of one length, at least ``min_k``
    studies, finite ``yi`` and finite ``vi > 0``; else an :class:`AnalysisError` led by
    ``what``."""
    try:
        y = np.asarray(yi, dtype=np.float64)
        v = np.asarray(vi, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{what}: yi and vi must be numeric") from exc
    if y.ndim != 1 or y.shape != v.shape:
        raise AnalysisError(f"{what}: yi and vi must be 1-D arrays of one length")
    if y.shape[0] < min_k:
        raise AnalysisError(f"{what}: needs at least {min_k} studies, got k = {y.shape[0]}")
    if not (np.isfinite(y).all() and np.isfinite(v).all() and (v > 0).all()):
        raise AnalysisError(f"{what}: yi must be finite and vi finite and > 0")
    return y, v


def _model_matrix(
    y: FloatArray, mods: ArrayLike, mod_names: Sequence[str] | None
) -> tuple[FloatArray, tuple[str, ...]]:
    """The intercept and the moderators as the model matrix, and the term names."""
    if y.ndim != 1:
        raise AnalysisError("rma: moderators are supported for one analysis (1-D yi) only")
    try:
        xm = np.asarray(mods, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError("rma: moderators must be numeric") from exc
    if xm.ndim == 1:
        xm = xm[:, None]
    if xm.ndim != 2 or xm.shape[0] != y.shape[0]:
        raise AnalysisError(
            f"rma: moderator matrix has {xm.shape[0]} rows for {y.shape[0]} studies "
            "(mismatched lengths)"
        )
    if not np.isfinite(xm).all():
        raise AnalysisError("rma: moderators contain missing or non-finite values")
    names = (
        tuple(mod_names)
        if mod_names is not None
        else tuple(f"mod{j + 1}" for j in range(xm.shape[1]))
    )
    if len(names) != xm.shape[1]:
        raise AnalysisError("rma: mod_names does not match the moderator columns")
    return np.column_stack([np.ones(y.shape[0]), xm]), ("intrcpt", *names)


def _fit_intercept(
    y: FloatArray, v: FloatArray, m: str, unit: Any, *, test: str, alpha: float, con: Control
) -> RMAResult:
    level_pct = 100.0 * (1.0 - alpha)
    single = y.ndim == 1
    if single and isinstance(unit, FixedPiecesEstimator):
        # the DL bench rows (k = 10, 1 000, 100 000): one analysis in scalar arithmetic
        fast = fit_scalar(y, v, m, unit, test=test, alpha=alpha)
        return RMAResult._make(method=m, test=test, level=level_pct, **fast)
    y2 = y[None, :] if single else np.ascontiguousarray(y)
    v2 = v[None, :] if single else np.ascontiguousarray(v)
    out = fit_rows(y2, v2, m, unit, test=test, alpha=alpha, con=con)
    if single:
        out["lazy"].single = True
        # one conversion for all the (1,)-shaped float arrays, then the rest one by one
        keys = [key for key, val in out.items() if isinstance(val, np.ndarray)]
        floats = [key for key in keys if out[key].dtype == np.float64]
        values = np.concatenate([out[key] for key in floats]).tolist()
        out.update(zip(floats, values, strict=True))
        out.update((key, _scalar(out[key])) for key in keys if key not in floats)
    return RMAResult(method=m, test=test, level=level_pct, **out)
