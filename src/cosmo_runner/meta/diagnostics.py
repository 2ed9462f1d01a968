"""Diagnostics computed on demand, never by a plain fit (metafor's ``confint``,
``leave1out``, ``regtest``), and subgroup analyses.

- :func:`confint_tau2`: Q-profile confidence interval for tau2 (Viechtbauer 2007), with the
  I2 and H2 bounds by the same transforms, as metafor's ``confint.rma.uni``.
- :func:`leave1out`: the model refitted without each study in turn, all refits in one
  vectorised batch.
- :func:`regtest`: Egger's regression test for funnel-plot asymmetry (Egger et al. 1997;
  Sterne & Egger 2005) as metafor's ``regtest`` default: the same model with the standard
  error ``sei`` as moderator; the intercept is the limit estimate (``sei -> 0``); it is
  :func:`~cosmo_runner.meta.pubbias.egger_test` with those defaults.
- :func:`subgroups`: one fit per subgroup and the test of subgroup differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtrc, chdtri, ndtr, stdtr

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._decisions import heterogeneity
from cosmo_runner.meta._intercept import Rows
from cosmo_runner.meta._kernels import check_data, crit, roots_one_by_one, solve_decreasing
from cosmo_runner.meta._result import RowsWarning
from cosmo_runner.meta.fit import Control, RMAResult, alpha_for_level, rma
from cosmo_runner.meta.pubbias import EggerTest, egger_test

__all__ = [
    "SUBGROUP_MODELS",
    "CommonTau2",
    "EggerTest",
    "LeaveOneOut",
    "SubgroupAnalysis",
    "Tau2Interval",
    "confint_tau2",
    "leave1out",
    "regtest",
    "subgroups",
]

FloatArray = NDArray[np.float64]


def _data(yi: ArrayLike, vi: ArrayLike, min_k: int = 2) -> tuple[FloatArray, FloatArray]:
    try:
        y = np.asarray(yi, dtype=np.float64)
        v = np.asarray(vi, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError("yi and vi must be numeric") from exc
    check_data(y, v, min_k=min_k)
    if y.ndim != 1:
        raise AnalysisError("diagnostics take one analysis (1-D yi and vi)")
    return y, v


@dataclass(frozen=True)
class Tau2Interval:
    """Q-profile confidence intervals for tau2, tau, I2 and H2 (point estimates included).

    ``lb_censored``/``ub_censored`` mark bounds that lie above the search limit ``tau2.max``
    and are reported at it (metafor prints them as ``>tau2.max``).
    """

    level: float
    tau2: float
    tau2_lb: float
    tau2_ub: float
    tau_lb: float
    tau_ub: float
    I2: float
    I2_lb: float
    I2_ub: float
    H2: float
    H2_lb: float
    H2_ub: float
    lb_censored: bool
    ub_censored: bool
    converged: bool


def confint_tau2(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    level: float = 95,
    control: Mapping[str, Any] | Control | None = None,
    fit: RMAResult | None = None,
) -> Tau2Interval:
    """Q-profile confidence interval for tau2 (Viechtbauer 2007), metafor's ``confint``.

    The bounds solve ``Q(tau2) = chi2_{k-1}`` quantiles (the upper quantile gives the lower
    bound), searched on ``[0, max(100, 10 tau2_hat)]`` with ``tau2_hat`` from the model fit
    (``method``; pass ``fit`` to reuse one). A bound is 0 where even ``Q(0)`` is below its
    quantile. I2 and H2 bounds follow from ``I2 = 100 tau2/(tau2 + vt)``, ``H2 = tau2/vt + 1``.
    EE models have no heterogeneity term: an :class:`AnalysisError`, as in metafor.
    """
    y, v = _data(yi, vi)
    con = Control.from_mapping(control)
    if fit is None:
        fit = rma(y, v, method=method, level=level, control=con)
    if fit.method in ("EE", "FE"):
        raise AnalysisError("confint: the EE model has no heterogeneity term (tau2 = 0)")
    k = y.shape[0]
    alpha = alpha_for_level(level)
    crit_u = float(chdtri(k - 1, alpha / 2.0))  # upper quantile -> lower bound
    crit_l = float(chdtri(k - 1, 1.0 - alpha / 2.0))  # lower quantile -> upper bound
    tau2_hat = float(fit.tau2)
    upper = max(100.0, 10.0 * tau2_hat)
    problem = Rows(y[None, :], v[None, :])

    def generalised_q(t: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
        return problem.take(np.zeros(rows.size, dtype=np.intp)).at(t).rss

    targets = np.array([crit_u, crit_l])
    roots, ok, _, too_low = solve_decreasing(
        generalised_q, targets, np.full(2, upper), con.xrtol, finder=roots_one_by_one
    )
    lb, ub = float(roots[0]), float(roots[1])
    lb_cens = ub_cens = False
    if too_low[1]:
        ub, ub_cens = upper, True
    if too_low[0]:
        lb, lb_cens = upper, True
    vt = np.full(2, float(fit.vt))
    i2, h2 = heterogeneity(False, np.zeros(2), k - 1.0, np.array([lb, ub]), vt)

    return Tau2Interval(
        level=100.0 * (1.0 - alpha),
        tau2=tau2_hat,
        tau2_lb=lb,
        tau2_ub=ub,
        tau_lb=float(np.sqrt(lb)),
        tau_ub=float(np.sqrt(ub)),
        I2=float(fit.I2),
        I2_lb=float(i2[0]),
        I2_ub=float(i2[1]),
        H2=float(fit.H2),
        H2_lb=float(h2[0]),
        H2_ub=float(h2[1]),
        lb_censored=lb_cens,
        ub_censored=ub_cens,
        converged=bool(ok.all()),
    )


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out refits: arrays over the omitted study (index i = study i left out)."""

    estimate: FloatArray
    se: FloatArray
    statistic: FloatArray
    pval: FloatArray
    ci_lb: FloatArray
    ci_ub: FloatArray
    Q: FloatArray
    Q_pval: FloatArray
    tau2: FloatArray
    I2: FloatArray
    H2: FloatArray
    converged: NDArray[np.bool_]
    warnings: tuple[str, ...]


def leave1out(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Mapping[str, Any] | Control | None = None,
    chunk_elements: int = 4_000_000,
) -> LeaveOneOut:
    """Refit the model leaving out each study in turn (metafor ``leave1out``); needs k >= 3.

    The k refits run as batches of the vectorised :func:`rma` (at most ``chunk_elements``
    numbers per batch, so memory stays bounded for large k).
    """
    y, v = _data(yi, vi, min_k=3)
    k = y.shape[0]
    others = np.array([[j for j in range(k) if j != i] for i in range(k)], dtype=np.intp)
    per_chunk = max(1, chunk_elements // (k - 1))
    parts: list[RMAResult] = []
    starts = range(0, k, per_chunk)
    for start in starts:
        idx = others[start : start + per_chunk]
        parts.append(rma(y[idx], v[idx], method=method, test=test, level=level, control=control))

    def cat(name: str) -> Any:
        return np.concatenate([np.asarray(getattr(p, name)) for p in parts])

    # a warning about some refits names them by the study each leaves out (RowsWarning)
    warnings = RowsWarning.merged(
        [(start, p.warnings) for start, p in zip(starts, parts, strict=True)], k
    )
    return LeaveOneOut(
        estimate=cat("estimate"),
        se=cat("se"),
        statistic=cat("statistic"),
        pval=cat("pval"),
        ci_lb=cat("ci_lb"),
        ci_ub=cat("ci_ub"),
        Q=cat("Q"),
        Q_pval=cat("Q_pval"),
        tau2=cat("tau2"),
        I2=cat("I2"),
        H2=cat("H2"),
        converged=cat("converged").astype(bool),
        warnings=warnings,
    )


def regtest(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Mapping[str, Any] | Control | None = None,
) -> EggerTest:
    """Egger's regression test with metafor ``regtest``'s defaults (``model="rma"``,
    ``predictor="sei"``), fitted with the same method and test as the model; needs k >= 3.
    The one implementation is :func:`~cosmo_runner.meta.pubbias.egger_test` (every
    predictor and model)."""
    return egger_test(yi, vi, method=method, test=test, level=level, control=control)


#: The subgroup models: each group its own tau2 and the Q-between test on the group
#: estimates (the default), or metafor's moderator model with one tau2 for all groups.
SUBGROUP_MODELS = ("separate_tau2", "common_tau2")


@dataclass(frozen=True)
class CommonTau2:
    """metafor's subgroup model with one tau2: ``rma(yi, vi, mods = ~ factor(group))``.

    ``tau2``, ``I2`` and ``QE`` (``QE_df`` = k - G) are the model's residual heterogeneity;
    ``estimate`` ... ``ci_ub`` are the group means under the common tau2 (those of
    ``mods = ~ 0 + factor(group)``), in the order of :attr:`SubgroupAnalysis.groups`.
    """

    tau2: float
    I2: float
    QE: float
    QE_df: int
    QE_pval: float
    estimate: FloatArray
    se: FloatArray
    statistic: FloatArray
    pval: FloatArray
    ci_lb: FloatArray
    ci_ub: FloatArray
    fit: RMAResult


@dataclass(frozen=True)
class SubgroupAnalysis:
    """Per-group fits and the test of subgroup differences (``Q``, ``df``, ``pval``).

    ``model`` is one of :data:`SUBGROUP_MODELS`. For ``common_tau2``, ``Q`` is metafor's QM
    of the group factor: chi-square with ``df = G - 1``, or with t, knha, adhoc the F statistic with
    ``df`` and ``df2 = k - G``; ``common`` holds that model.
    """

    groups: tuple[str, ...]
    fits: tuple[RMAResult, ...]
    Q: float
    df: int
    pval: float
    model: str = "separate_tau2"
    df2: int | None = None
    common: CommonTau2 | None = None


def subgroups(
    yi: ArrayLike,
    vi: ArrayLike,
    groups: Sequence[str],
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Mapping[str, Any] | Control | None = None,
    model: str = "separate_tau2",
) -> SubgroupAnalysis:
    """Fit the model within each subgroup and test for subgroup differences.

    Each group gets its own fit (its own tau2). With ``model="separate_tau2"`` (the default)
    the test of subgroup differences is the one most users expect (RevMan, the ``meta``
    package's default without a common tau2; in metafor: an EE model on the subgroup
    estimates): ``Q_between = sum_g (b_g - b)^2 / se_g^2`` with ``b`` the inverse-variance
    weighted mean of the subgroup estimates ``b_g``, chi-square with ``G - 1`` df. With
    ``model="common_tau2"`` it is metafor's ``QM`` of the meta-regression on the group factor
    (one tau2 for all groups; :class:`CommonTau2`). Groups appear in order of first
    appearance; each needs at least 2 studies, and there must be at least 2 groups.
    """
    if model not in SUBGROUP_MODELS:
        raise AnalysisError(
            f"subgroups: unknown model {model!r} (one of {', '.join(SUBGROUP_MODELS)})"
        )
    y, v = _data(yi, vi)
    labels = [str(g) for g in groups]
    if len(labels) != y.shape[0]:
        raise AnalysisError(
            f"subgroups: {len(labels)} group labels for {y.shape[0]} studies (mismatched lengths)"
        )
    order = tuple(dict.fromkeys(labels))
    if len(order) < 2:
        raise AnalysisError("subgroups: need at least 2 subgroups")
    fits: list[RMAResult] = []
    lab = np.array(labels, dtype=object)
    for g in order:
        mask = lab == g
        if int(mask.sum()) < 2:
            raise AnalysisError(f"subgroups: subgroup {g!r} has fewer than 2 studies")
        try:
            fits.append(
                rma(y[mask], v[mask], method=method, test=test, level=level, control=control)
            )
        except AnalysisError as exc:
            raise AnalysisError(f"subgroup {g!r}: {exc.message}") from exc
    if model == "common_tau2":
        common = _common_tau2(
            y, v, lab, order, method=method, test=test, level=level, control=control
        )
        qm, qm_df, qm_p = common.fit.QM, common.fit.QM_df or (), common.fit.QM_pval
        return SubgroupAnalysis(
            groups=order,
            fits=tuple(fits),
            Q=float("nan") if qm is None else float(qm),
            df=int(qm_df[0]),
            pval=float("nan") if qm_p is None else float(qm_p),
            model=model,
            df2=int(qm_df[1]) if len(qm_df) > 1 else None,
            common=common,
        )
    est = np.array([float(f.estimate) for f in fits])
    se = np.array([float(f.se) for f in fits])
    if not np.all(se > 0):
        raise AnalysisError("subgroups: a subgroup estimate has a zero standard error")
    w = 1.0 / se**2
    mean = float((w * est).sum() / w.sum())
    q = float((w * (est - mean) ** 2).sum())
    df = len(order) - 1
    return SubgroupAnalysis(groups=order, fits=tuple(fits), Q=q, df=df, pval=float(chdtrc(df, q)))


def _common_tau2(
    y: FloatArray,
    v: FloatArray,
    lab: NDArray[np.object_],
    order: tuple[str, ...],
    *,
    method: str,
    test: str,
    level: float,
    control: Mapping[str, Any] | Control | None,
) -> CommonTau2:
    """The meta-regression on the group factor (reference: the first group by code point,
    as R's factor under LC_COLLATE=C; QM does not depend on it) and each group's mean."""
    levels = sorted(order)
    x = np.column_stack([lab == g for g in levels[1:]]).astype(np.float64)
    try:
        fit = rma(
            y, v, method=method, test=test, level=level, mods=x,
            mod_names=[f"group[{g}]" for g in levels[1:]], control=control,
        )  # fmt: skip
    except AnalysisError as exc:
        raise AnalysisError(f"subgroups (common tau2): {exc.message}") from exc
    assert fit.vb is not None  # a meta-regression has the coefficients' covariance
    # group g's mean is intrcpt + its term: L beta, with covariance L vb L'
    contrast = np.zeros((len(order), len(levels)))
    contrast[:, 0] = 1.0
    for i, g in enumerate(order):
        j = levels.index(g)
        if j:
            contrast[i, j] = 1.0
    beta = np.asarray(fit.estimate, dtype=np.float64)
    est = contrast @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", contrast, fit.vb, contrast))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    pval = 2.0 * (ndtr(-np.abs(stat)) if fit.df is None else stdtr(fit.df, -np.abs(stat)))
    half = crit(alpha_for_level(level), fit.df) * se
    return CommonTau2(
        tau2=float(fit.tau2),
        I2=float(fit.I2),
        QE=float(fit.Q),
        QE_df=int(fit.Q_df),
        QE_pval=float(fit.Q_pval),
        estimate=est,
        se=se,
        statistic=stat,
        pval=np.asarray(pval, dtype=np.float64),
        ci_lb=est - half,
        ci_ub=est + half,
        fit=fit,
    )
