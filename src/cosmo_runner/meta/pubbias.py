"""Funnel-plot asymmetry: Begg's rank test, trim-and-fill, Egger's regression test (metafor's
``ranktest``, ``trimfill``, ``regtest``), on effects ``yi`` with sampling variances ``vi``.

- :func:`rank_test` (Begg & Mazumdar 1994), as ``ranktest``: Kendall's tau between the
  standardised effects ``(yi - theta) / sqrt(vi - 1/sum w)`` (``theta`` the equal-effects
  mean, whatever the model) and ``vi``. The p-value is exact, as ``cor.test(exact=TRUE)``,
  when there are no ties and ``k <= RANK_EXACT_MAX_K``; with ties it is the normal
  approximation with the tie-corrected variance (R: "Cannot compute exact p-value with
  ties"), and above the limit too (the exact distribution costs ~k^3; ``exact`` says which).
- :func:`trimfill` (Duval & Tweedie 2000), as ``trimfill``: the side of the missing studies
  from the sign of Egger's slope (the model with ``sqrt(vi)`` as moderator: negative ->
  ``right``), or given; estimator ``L0`` (default), ``R0`` or ``Q0``; iterate: fit the
  ``k - k0`` least extreme studies, rank ``|yi - beta|`` (ties by order), re-estimate ``k0``
  (rounded half to even, as R's ``round``), until ``k0`` repeats (at most ``maxiter``
  iterations); then the ``k0`` most extreme studies are mirrored about that ``beta`` and the
  model is refitted on the ``k + k0`` studies with its method, test and level (metafor's
  ``trimfill(fit, test = , level = )``; plain ``trimfill(fit)`` refits with z and 95%).
  ``k0 = 0`` returns the model itself, as metafor does.
- :func:`egger_test`, as ``regtest``: the predictor (``sei``, ``vi``, ``ni``, ``ninv``,
  ``sqrtni``, ``sqrtninv``) added to the intercept-only model, either as a moderator of the
  model (``model="rma"``: its method and test) or in a weighted least-squares regression with
  weights ``1/vi`` and a t test on ``k - 2`` df (``model="lm"``, Egger's original). The limit
  estimate (the intercept: the effect as the predictor goes to 0) exists for ``sei``, ``vi``,
  ``ninv`` and ``sqrtninv`` (metafor 3.8), not for ``ni`` and ``sqrtni``.

Each needs at least 3 studies; problems are :class:`~cosmo_runner.errors.AnalysisError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.special import stdtr, stdtrit

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.fit import Control, RMAResult, alpha_for_level, check_one_analysis, rma

__all__ = [
    "ESTIMATORS",
    "MODELS",
    "PREDICTORS",
    "RANK_EXACT_MAX_K",
    "EggerTest",
    "RankTest",
    "TrimFill",
    "egger_test",
    "rank_test",
    "trimfill",
]

FloatArray = NDArray[np.float64]

#: Egger's predictors (metafor ``regtest``), and the ones that have a limit estimate.
PREDICTORS = ("sei", "vi", "ni", "ninv", "sqrtni", "sqrtninv")
_LIMIT = ("sei", "vi", "ninv", "sqrtninv")
MODELS = ("rma", "lm")
ESTIMATORS = ("L0", "R0", "Q0")
SIDES = ("left", "right")

#: Above this k (or with ties) the rank test's p-value is the normal approximation.
RANK_EXACT_MAX_K = 250


@dataclass(frozen=True)
class RankTest:
    """Kendall's ``tau`` and its two-sided ``pval``; ``exact`` says how the p was computed."""

    tau: float
    pval: float
    exact: bool


def rank_test(yi: ArrayLike, vi: ArrayLike) -> RankTest:
    """Begg and Mazumdar's rank correlation test (metafor ``ranktest``)."""
    y, v = check_one_analysis(yi, vi, "rank test")
    w = 1.0 / v
    theta = float((w * y).sum() / w.sum())
    v_star = v - 1.0 / w.sum()
    y_star = (y - theta) / np.sqrt(v_star)
    ties = np.unique(y_star).size < y_star.size or np.unique(v).size < v.size
    exact = not ties and y.shape[0] <= RANK_EXACT_MAX_K
    res = stats.kendalltau(y_star, v, method="exact" if exact else "asymptotic")
    return RankTest(tau=float(res.statistic), pval=float(res.pvalue), exact=exact)


@dataclass(frozen=True)
class TrimFill:
    """Trim-and-fill: ``k0`` filled studies (``se_k0``; ``p_k0`` for R0, else None) on ``side``,
    the refitted model ``fit`` on the ``k + k0`` studies, and the filled effects."""

    k0: int
    se_k0: float
    p_k0: float | None
    side: str
    estimator: str
    fit: RMAResult
    filled_yi: FloatArray
    filled_vi: FloatArray


def _side(
    y: FloatArray, v: FloatArray, method: str, control: Control | Mapping[str, Any] | None
) -> str:
    fit = rma(y, v, method=method, mods=np.sqrt(v), mod_names=["sei"], control=control)
    return "right" if float(fit.estimate[1]) < 0 else "left"


# Long on purpose (PLR0912, PLR0915): Duval & Tweedie's iteration step for step as metafor's
# trimfill.rma reads (side, estimator L0/R0/Q0, refit, filled studies).
def trimfill(  # noqa: PLR0912, PLR0915
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    estimator: str = "L0",
    side: str | None = None,
    control: Control | Mapping[str, Any] | None = None,
    maxiter: int = 100,
    fit: RMAResult | None = None,
) -> TrimFill:
    """Duval and Tweedie's trim-and-fill (metafor ``trimfill``); see the module docstring.
    ``fit``: the model of ``yi``/``vi`` with this method, test, level and control, if the
    caller has it (returned for ``k0 = 0``)."""
    y0, v = check_one_analysis(yi, vi, "trim-and-fill")
    if estimator not in ESTIMATORS:
        raise AnalysisError(
            f"trim-and-fill: unknown estimator {estimator!r} (one of {', '.join(ESTIMATORS)})"
        )
    if side is None:
        side = _side(y0, v, method, control)
    elif side not in SIDES:
        raise AnalysisError(f"trim-and-fill: side must be 'left' or 'right', not {side!r}")
    flip = -1.0 if side == "right" else 1.0
    y = flip * y0
    order = np.argsort(y, kind="stable")
    ys, vs = y[order], v[order]
    k = ys.shape[0]
    k0, previous, iterations = 0, -1, 0
    beta = 0.0
    se_k0 = 0.0
    while k0 != previous:
        previous = k0
        iterations += 1
        if iterations > maxiter:
            raise AnalysisError("trim-and-fill did not converge")
        if k - k0 == 1:  # one study left: its own effect (metafor's rma.uni with k = 1)
            beta = float(ys[0])
        else:
            beta = float(rma(ys[: k - k0], vs[: k - k0], method=method, control=control).estimate)
        centred = ys - beta
        ranks = np.empty(k)
        ranks[np.argsort(np.abs(centred), kind="stable")] = np.arange(1, k + 1)
        signed = np.sign(centred) * ranks
        if estimator == "R0":
            negative = -signed[signed < 0]
            k0_raw = (k - (negative.max() if negative.size else 0.0)) - 1.0
            se_raw = float(np.sqrt(2.0 * max(0.0, k0_raw) + 2.0))
        else:
            sr = float(signed[signed > 0].sum())
            if estimator == "L0":
                k0_raw = (4.0 * sr - k * (k + 1)) / (2.0 * k - 1.0)
            else:
                disc = 2.0 * k**2 - 4.0 * sr + 0.25
                k0_raw = k - 0.5 - float(np.sqrt(disc)) if disc >= 0 else float("nan")
            var_sr = (
                k * (k + 1) * (2 * k + 1)
                + 10 * k0_raw**3
                + 27 * k0_raw**2
                + 17 * k0_raw
                - 18 * k * k0_raw**2
                - 18 * k * k0_raw
                + 6 * k**2 * k0_raw
            ) / 24.0
            root = float(np.sqrt(var_sr)) if var_sr >= 0 else float("nan")  # R: NaN
            if estimator == "L0":
                se_raw = 4.0 * root / (2.0 * k - 1.0)
            else:
                se_raw = (
                    2.0 * root / float(np.sqrt((k - 0.5) ** 2 - k0_raw * (2.0 * k - k0_raw - 1.0)))
                )  # fmt: skip
        if not np.isfinite(k0_raw):
            raise AnalysisError(
                f"trim-and-fill: the {estimator} estimate of k0 is undefined at k - k0 = "
                f"{k - k0} studies (metafor stops too)"
            )
        k0 = max(0, int(np.round(k0_raw)))
        se_k0 = se_raw if np.isnan(se_raw) else max(0.0, se_raw)  # R's max(0, NaN) is NaN
    p_k0 = None
    if estimator == "R0":  # metafor: 1 - sum(choose(m + 1, m + 1) 0.5^(m + 2)), m = -1..k0-1
        p_k0 = float(1.0 - (0.5 ** (np.arange(-1, k0) + 2.0)).sum())
    if k0 == 0:
        if fit is None:
            fit = rma(y0, v, method=method, test=test, level=level, control=control)
        empty = np.empty(0)
        return TrimFill(0, se_k0, p_k0, side, estimator, fit, empty, empty)
    # the k0 most extreme studies, mirrored about beta (on the original scale: 2 b - y)
    filled_y = flip * (2.0 * beta - ys[k - k0 :])
    filled_v = vs[k - k0 :].copy()
    filled = rma(
        np.concatenate([y0, filled_y]), np.concatenate([v, filled_v]), method=method,
        test=test, level=level, control=control,
    )  # fmt: skip
    return TrimFill(k0, se_k0, p_k0, side, estimator, filled, filled_y, filled_v)


@dataclass(frozen=True)
class EggerTest:
    """Egger's regression test: the predictor's ``statistic`` (z, or t with ``df``), ``pval``,
    and the limit estimate with its CI (None where the predictor has none)."""

    predictor: str
    model: str
    statistic: float
    df: int | None
    pval: float
    limit_estimate: float | None
    limit_ci_lb: float | None
    limit_ci_ub: float | None


def _predictor(name: str, v: FloatArray, ni: FloatArray | None) -> FloatArray:
    if name == "sei":
        return np.sqrt(v)
    if name == "vi":
        return v
    if ni is None:
        raise AnalysisError(f"Egger's test with predictor {name!r} needs the sample sizes ni")
    if not (np.isfinite(ni).all() and (ni > 0).all()):
        raise AnalysisError(f"Egger's test with predictor {name!r}: ni must be finite and > 0")
    return {"ni": ni, "ninv": 1.0 / ni, "sqrtni": np.sqrt(ni), "sqrtninv": 1.0 / np.sqrt(ni)}[name]


def egger_test(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    ni: ArrayLike | None = None,
    predictor: str = "sei",
    model: str = "rma",
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Control | Mapping[str, Any] | None = None,
) -> EggerTest:
    """Egger's regression test for funnel asymmetry (metafor ``regtest``)."""
    y, v = check_one_analysis(yi, vi, "Egger's test")
    if predictor not in PREDICTORS:
        raise AnalysisError(
            f"Egger's test: unknown predictor {predictor!r} (one of {', '.join(PREDICTORS)})"
        )
    if model not in MODELS:
        raise AnalysisError(f"Egger's test: model must be 'rma' or 'lm', not {model!r}")
    n = None if ni is None else np.asarray(ni, dtype=np.float64)
    if n is not None and n.shape != y.shape:
        raise AnalysisError("Egger's test: ni must have one value per study")
    x = _predictor(predictor, v, n)
    if float(np.ptp(x)) == 0.0:
        raise AnalysisError(
            f"Egger's test is undefined: the predictor {predictor} is the same for every study"
        )
    limit = predictor in _LIMIT
    if model == "rma":
        fit = rma(
            y, v, method=method, test=test, level=level, mods=x, mod_names=[predictor],
            control=control,
        )  # fmt: skip
        return EggerTest(
            predictor, model, float(fit.statistic[1]), None if fit.df is None else int(fit.df),
            float(fit.pval[1]),
            float(fit.estimate[0]) if limit else None,
            float(fit.ci_lb[0]) if limit else None,
            float(fit.ci_ub[0]) if limit else None,
        )  # fmt: skip
    # weighted least squares (R's lm with weights 1/vi): the residual variance scales vcov
    k = y.shape[0]
    design = np.column_stack([np.ones(k), x])
    sw = 1.0 / np.sqrt(v)
    coef, *_ = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)
    resid = (y - design @ coef) * sw
    df = k - 2
    sigma2 = float(resid @ resid) / df
    xtwx = (design * (1.0 / v)[:, None]).T @ design
    se = np.sqrt(np.diag(np.linalg.inv(xtwx)) * sigma2)
    t = coef / se
    pval = 2.0 * float(stdtr(df, -abs(float(t[1]))))
    crit = float(stdtrit(df, 1.0 - alpha_for_level(level) / 2.0))
    return EggerTest(
        predictor, model, float(t[1]), df, pval,
        float(coef[0]) if limit else None,
        float(coef[0] - crit * se[0]) if limit else None,
        float(coef[0] + crit * se[0]) if limit else None,
    )  # fmt: skip
