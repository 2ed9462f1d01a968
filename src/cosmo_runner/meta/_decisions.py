"""The fit-decision layer: every decision of a fit, written once for every path.

A fit path (one analysis, a batch of analyses, a meta-regression) shows its data to this
layer as a :class:`Problem`: the model's weighted pieces at any tau2, for every row
(analysis). Everything else is decided here, on arrays over rows, whatever the shape:
Fisher scoring and its step halving, the fallbacks when it does not converge (bounded
maximisation of the likelihood, or the PM equation for EB), ``ll0check``, the global
check for a higher likelihood peak, the variance-ratio warning, Knapp-Hartung scaling,
I2/H2 and every warning text. The paths differ only in how they compute the pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._kernels import roots, rows_note, solve_decreasing
from cosmo_runner.meta._result import (
    ALGORITHM_CODE,
    EPS,
    FALLBACK,
    FISHER,
    ROOT,
    Control,
    FloatArray,
    RowsWarning,
)

__all__ = [
    "KNHA_EE_WARNING",
    "LL0_WARNING",
    "MULTIMODAL_WARNING",
    "PM_ABOVE_LIMIT",
    "STOPPED_EARLY_WARNING",
    "VARRATIO_LIMIT",
    "VARRATIO_WARNING",
    "Problem",
    "Tau2Fit",
    "Weighted",
    "fisher_codes",
    "fisher_scoring",
    "heterogeneity",
    "knha_factor",
    "knha_warning",
    "likelihood_checks",
    "maximise_likelihood",
    "not_converged",
    "reference_df",
    "scaled_test",
    "score",
    "solve_pm",
    "variance_factor",
    "variance_warning",
]

KNHA_EE_WARNING = "Knapp & Hartung method is not meant to be used in the context of {} models."
#: metafor's warning when max(vi) / min(vi) >= 1 / evtol (evtol = 1e-7)
VARRATIO_WARNING = (
    "Ratio of largest to smallest sampling variance extremely large. May not be able to "
    "obtain stable results."
)
VARRATIO_LIMIT = 1e7
LL0_WARNING = (
    "Fisher scoring algorithm may have gotten stuck at a local maximum{}; setting tau^2 = 0 "
    "(the likelihood at tau^2 = 0 is higher)."
)
MULTIMODAL_WARNING = (
    "The {} likelihood is multimodal: Fisher scoring stopped at a local maximum{}; "
    "used the global maximum found by bounded maximisation."
)
STOPPED_EARLY_WARNING = (
    "Fisher scoring stopped short of the {} likelihood maximum{} (|step| <= threshold "
    "{:g} on a flat likelihood; it has one peak there); finished by bounded maximisation."
)

#: where, between the stop t0 and the higher maximum t1, the global check looks for a valley
#: (the profile evidence of a second peak): t0 + (t1 - t0) f for these f, geometric from
#: both ends (a local maximum at tau2 = 0 can have its valley at 1e-4 of the way: egger2001
#: without LIMIT-2, ML) and linear in the middle
_VALLEY_FRACS = np.unique(
    np.concatenate(
        [np.geomspace(1e-7, 0.5, 24), 1.0 - np.geomspace(1e-7, 0.5, 24), np.linspace(0, 1, 26)]
    )
)[1:-1]

#: tau2 values (times var(yi)) at which the global check evaluates the likelihood
_GLOBAL_FRACS = np.array([0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5])
#: the bounded maximisation's grid: 0 and 121 geometric points from 1e-12 to 1 (times the
#: upper limit), fine enough that a peak is bracketed by its neighbours
_GRID = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 121)])


class Weighted(Protocol):
    """The model at ``w = 1 / (v + tau2)``, row-wise (one value per row): ``P`` is
    ``W - W X (X' W X)^-1 X' W`` and ``V = diag(v)``."""

    @property
    def sw(self) -> FloatArray: ...  # sum w
    @property
    def sw2(self) -> FloatArray: ...  # sum w^2
    @property
    def rss(self) -> FloatArray: ...  # y'Py, the generalised Q
    @property
    def ypppy(self) -> FloatArray: ...  # y'PPy
    @property
    def trp(self) -> FloatArray: ...  # tr P
    @property
    def trpp(self) -> FloatArray: ...  # tr PP
    def trpv(self) -> FloatArray: ...  # tr PV
    def trpvp(self) -> FloatArray: ...  # tr PVP
    def trpvpv(self) -> FloatArray: ...  # tr PVPV
    def loglik(self, reml: bool) -> FloatArray: ...  # (restricted) log-likelihood + const


class Problem(Protocol):
    """What the decisions see of the data: ``n`` rows of ``k`` studies and ``p``
    coefficients; ``k`` is an int array over rows where rows have different lengths
    (:class:`~._intercept.Ragged`), and every use of it is row-wise arithmetic. A
    :class:`Weighted` is valid until the next :meth:`at` call (it may use per-thread work
    arrays)."""

    n: int
    k: int | NDArray[np.intp]
    p: int

    def at(self, tau2: FloatArray) -> Weighted: ...
    def unweighted(self) -> Weighted: ...  # w = 1 (ordinary least squares)
    def fixed(self) -> tuple[FloatArray, FloatArray, FloatArray]: ...  # Q, sum w, tr P at tau2 0
    def var_y(self) -> FloatArray: ...  # sum (y - mean y)^2 / k
    def spread(self) -> tuple[FloatArray, FloatArray]: ...  # R's mad(y), range of y
    def take(self, rows: NDArray[np.intp]) -> Problem: ...
    def loglik_grid(self, grid: FloatArray, reml: bool) -> FloatArray: ...  # rows x points
    def extreme_variances(self) -> NDArray[np.bool_]: ...  # max vi / min vi >= VARRATIO_LIMIT


@dataclass
class Tau2Fit:
    """An estimator's answer for every row: tau2, the SJ start ``tau0`` (0 elsewhere),
    convergence, iterations, the algorithm codes (into ``ALGORITHMS``) and warnings."""

    tau2: FloatArray
    tau0: FloatArray
    converged: NDArray[np.bool_]
    iterations: NDArray[np.int_]
    algorithm: NDArray[np.int8]
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def closed(cls, tau2: FloatArray, tau0: FloatArray | None = None) -> Tau2Fit:
        n = tau2.shape[0]
        return cls(
            tau2=tau2,
            tau0=np.zeros(n) if tau0 is None else tau0,
            converged=np.ones(n, dtype=bool),
            iterations=np.zeros(n, dtype=np.int_),
            algorithm=np.zeros(n, dtype=np.int8),
        )


Step = Callable[[Weighted, Problem], FloatArray]


def fisher_scoring(
    problem: Problem, step: Step, start: FloatArray, con: Control
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_]]:
    """metafor's Fisher scoring, masked over rows: take ``step``, halve it while
    ``tau2 + step < 0``, stop when ``|step| <= threshold``; more than ``maxiter``
    iterations is a failure (as in metafor). Returns tau2, converged, iterations."""
    n = problem.n
    tau2 = start.copy()
    conv = np.zeros(n, dtype=bool)
    iters = np.zeros(n, dtype=np.int_)
    active = np.arange(n)
    prob, t = problem, start.copy()
    for it in range(1, con.maxiter + 2):
        adj = step(prob.at(t), prob)
        if con.stepadj != 1.0:
            adj = adj * con.stepadj
        adj[np.isnan(adj)] = 0.0
        if np.isinf(adj).any():  # sum w^2 or tr PP underflowed: rma names the precision
            raise OverflowError("the Fisher scoring step is not finite")
        new = t + _halved(t, adj)
        change = np.abs(t - new)
        t = new
        iters[active] = it
        if it > con.maxiter:
            tau2[active] = t
            break
        done = change <= con.threshold
        if done.any():
            tau2[active[done]] = t[done]
            conv[active[done]] = True
            keep = np.flatnonzero(~done)
            if keep.size == 0:
                break
            prob, active, t = prob.take(keep), active[keep], t[keep]
    return tau2, conv, iters


def _halved(t: FloatArray, adj: FloatArray) -> FloatArray:
    """metafor's step halving: the fewest halvings that keep ``t + adj >= 0`` (a step from
    ``t = 0`` that would go negative is 0)."""
    neg = t + adj < 0.0
    if not neg.any():
        return adj
    pos = neg & (t > 0)
    adj = np.where(neg & ~pos, 0.0, adj)
    if pos.any():
        halvings = np.ceil(np.log2(-adj[pos] / t[pos]))
        adj[pos] = np.ldexp(adj[pos], -halvings.astype(np.int_))
        still = pos & (t + adj < 0)
        while still.any():
            adj[still] = adj[still] / 2.0
            still = still & (t + adj < 0)
    return adj


def score(problem: Problem, tau2: FloatArray, reml: bool) -> FloatArray:
    """Twice the derivative of the (restricted) log-likelihood in tau2, row-wise."""
    at = problem.at(tau2)
    return at.ypppy - (at.trp if reml else at.sw)


def maximise_likelihood(
    problem: Problem, reml: bool, con: Control
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Bounded maximisation of the (restricted) likelihood over tau2 >= 0, row-wise.

    A geometric grid (plus 0) up to ``max(100, 10 * range(y)^2)`` locates the global
    maximum; the score is then solved inside the bracketing grid cell (Chandrupatla's
    method), or tau2 = 0 where the maximum is at the boundary. Returns tau2 and success.
    """
    n = problem.n
    upper = np.maximum(100.0, 10.0 * problem.spread()[1] ** 2)
    grid = upper[:, None] * _GRID[None, :]
    best = np.argmax(problem.loglik_grid(grid, reml), axis=1)
    tau2 = np.zeros(n)
    ok = np.ones(n, dtype=bool)
    at_zero = np.flatnonzero(best == 0)
    if at_zero.size:  # maximum at the boundary: tau2 = 0 if the score there is not positive
        s0 = score(problem.take(at_zero), np.zeros(at_zero.size), reml)
        best[at_zero] = np.where(s0 <= 0, 0, 1)
    idx = np.flatnonzero(best > 0)
    if idx.size == 0:
        return tau2, ok
    sub = problem.take(idx)
    lo = grid[idx, best[idx] - 1]
    hi = grid[idx, np.minimum(best[idx] + 1, _GRID.size - 1)]
    root = grid[idx, best[idx]].copy()
    success = np.zeros(idx.size, dtype=bool)
    valid = np.flatnonzero((score(sub, lo, reml) > 0) & (score(sub, hi, reml) < 0))
    if valid.size:
        inner = sub.take(valid)

        def f(x: FloatArray, row: NDArray[np.intp]) -> FloatArray:
            return score(inner.take(row), x, reml)

        r_sub, s_sub, _ = roots(f, lo[valid], hi[valid], con.xrtol)
        root[valid] = r_sub
        success[valid] = s_sub
    tau2[idx] = root
    ok[idx] = success
    return tau2, ok


def solve_pm(
    problem: Problem, con: Control
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_], NDArray[np.bool_]]:
    """The root of the generalised ``Q(tau2) = k - p`` on ``[0, max(100, 10 mad(y)^2)]``
    (metafor's ``tau2.max``), row-wise: tau2, success, iterations, root above the limit."""
    upper = np.maximum(100.0, 10.0 * problem.spread()[0] ** 2)

    def rss(t: FloatArray, rows: NDArray[np.intp]) -> FloatArray:
        return problem.take(rows).at(t).rss

    target = np.zeros(problem.n) + (problem.k - problem.p)  # per row where k is
    return solve_decreasing(rss, target, upper, con.xrtol)


PM_ABOVE_LIMIT = "rma: PM root lies above tau2.max = max(100, 10 mad(yi)^2)"


def not_converged(problem: Problem, fit: Tau2Fit, method: str, con: Control) -> None:
    """Where Fisher scoring did not converge: the fallback (with a warning) or an error.

    ML and REML maximise the likelihood by bounded maximisation; EB solves the
    equivalent PM equation. Without ``control.fallback`` it is an error with the hint.
    """
    failed = ~fit.converged
    if not failed.any():
        return
    n = problem.n
    note = rows_note(failed, n)
    idx = np.flatnonzero(failed)
    if not con.fallback:
        raise AnalysisError(
            "rma: Fisher scoring algorithm did not converge"
            + note
            + "; enable control fallback or increase maxiter"
        )
    sub = problem.take(idx)
    if method == "EB":
        t_fb, ok, _, too_low = solve_pm(sub, con)
        ok &= ~too_low
        code = ALGORITHM_CODE[ROOT]
        what = "solved the equivalent PM equation by root finding"
    else:
        t_fb, ok = maximise_likelihood(sub, method == "REML", con)
        code = ALGORITHM_CODE[FALLBACK]
        what = f"used bounded maximisation of the {_likelihood(method == 'REML')}"
    if not ok.all():
        raise AnalysisError("rma: Fisher scoring did not converge and the fallback failed" + note)
    fit.tau2[idx] = t_fb
    fit.algorithm[idx] = code
    fit.warnings.append(
        RowsWarning(f"Fisher scoring algorithm did not converge{{}}; {what}.", idx, n)
    )


def _likelihood(reml: bool) -> str:
    return "restricted likelihood" if reml else "likelihood"


def likelihood_checks(problem: Problem, fit: Tau2Fit, reml: bool, con: Control) -> None:
    """ML and REML after Fisher scoring, in place: metafor's ``ll0check`` (tau2 = 0 where
    the likelihood there is higher, with metafor's warning), then, with
    ``control.global_check``, the global maximum where a higher peak exists."""
    n = problem.n
    conv = fit.converged
    tau2 = fit.tau2
    if con.ll0check:
        idx = np.flatnonzero(conv & (tau2 > con.threshold))
        if idx.size:
            sub = problem.take(idx)
            ll_t = sub.at(tau2[idx]).loglik(reml)
            ll_0 = sub.at(np.zeros(idx.size)).loglik(reml)
            stuck = idx[ll_0 - ll_t > con.tol]
            if stuck.size:
                tau2[stuck] = 0.0
                fit.warnings.append(RowsWarning(LL0_WARNING, stuck, n))
    if con.global_check and conv.any():
        _global_check(problem, fit, reml, con)


def _global_check(problem: Problem, fit: Tau2Fit, reml: bool, con: Control) -> None:
    """Where the (restricted) likelihood is higher somewhere than where Fisher scoring
    stopped, move to its maximum, in place, and say why by the profile between the two:

    - a point between them with a lower likelihood than the stop (a valley) is the
      evidence of a second, higher peak: Fisher scoring stopped at a local maximum, and the
      warning says the likelihood is multimodal;
    - without one, the likelihood rises all the way (one peak): Fisher scoring stopped early
      on a flat likelihood (its threshold is absolute), and the note says so.
    """
    n = problem.n
    idx = np.flatnonzero(fit.converged)
    sub = problem if idx.size == n else problem.take(idx)
    s2 = sub.var_y()
    t_est = fit.tau2[idx]
    ll_est = sub.at(t_est).loglik(reml)
    best = np.full(idx.size, -np.inf)
    for frac in _GLOBAL_FRACS:  # a few points: one pass over the rows each
        np.maximum(best, sub.at(s2 * frac).loglik(reml), out=best)
    better = np.flatnonzero(best > ll_est + con.tol)
    if better.size == 0:
        return
    peaks = sub.take(better)
    t_glob, ok = maximise_likelihood(peaks, reml, con)
    gain = ok & (peaks.at(t_glob).loglik(reml) > ll_est[better])
    if not gain.any():
        return
    rows = better[gain]
    valley = _valley(
        peaks.take(np.flatnonzero(gain)), t_est[rows], t_glob[gain], ll_est[rows], reml
    )
    use = idx[rows]
    fit.tau2[use] = t_glob[gain]
    fit.algorithm[use] = ALGORITHM_CODE[FALLBACK]
    kind = "restricted" if reml else "ML"
    if valley.any():
        fit.warnings.append(RowsWarning(MULTIMODAL_WARNING.format(kind, "{}"), use[valley], n))
    if not valley.all():
        early = STOPPED_EARLY_WARNING.format(kind, "{}", con.threshold)
        fit.warnings.append(RowsWarning(early, use[~valley], n))


def _valley(
    problem: Problem, t_est: FloatArray, t_glob: FloatArray, ll_est: FloatArray, reml: bool
) -> NDArray[np.bool_]:
    """Per row: is the likelihood lower than at ``t_est`` somewhere strictly between
    ``t_est`` and ``t_glob`` (by more than its rounding)? A single peak rises all the way
    from ``t_est`` to ``t_glob`` (tau2 -> log-likelihood is then monotone between them)."""
    grid = t_est[:, None] + (t_glob - t_est)[:, None] * _VALLEY_FRACS[None, :]
    lowest = np.min(problem.loglik_grid(grid, reml), axis=1)
    margin = 1e3 * EPS * np.maximum(1.0, np.abs(ll_est))
    return np.asarray(lowest < ll_est - margin)


def fisher_codes(n: int) -> NDArray[np.int8]:
    """Algorithm codes saying "fisher-scoring" for ``n`` rows."""
    return np.full(n, ALGORITHM_CODE[FISHER], dtype=np.int8)


def variance_warning(extreme: NDArray[np.bool_]) -> str | None:
    """metafor's warning where ``max(vi) / min(vi) >= 1e7``, naming the rows of a batch."""
    if not extreme.any():
        return None
    return RowsWarning(VARRATIO_WARNING[:-1] + "{}.", np.flatnonzero(extreme), extreme.shape[0])


#: tests whose reference distribution is t with ``k - p`` df (F for the omnibus test)
_T_TESTS = ("t", "knha", "adhoc")
#: tests that scale the coefficients' variance by the weighted residual variance s2w
_SCALED_TESTS = ("knha", "adhoc")


def reference_df(test: str, k: Any, p: int) -> Any:
    """The t (and F denominator) df of ``test``: ``k - p`` for t, knha and adhoc, None for z
    (metafor's ``ddf``); a float, or a float array over rows where ``k`` is one."""
    if test not in _T_TESTS:
        return None
    return (k - p).astype(np.float64) if isinstance(k, np.ndarray) else float(k - p)


def scaled_test(test: str) -> bool:
    """Whether ``test`` scales the coefficients' variance (knha, adhoc): the fit then needs
    the residual sum of squares at the model's weights."""
    return test in _SCALED_TESTS


def knha_warning(method: str, test: str) -> str | None:
    """Knapp-Hartung (knha, adhoc) is computed for EE models too, with metafor's warning."""
    if test in _SCALED_TESTS and method in ("EE", "FE"):
        return KNHA_EE_WARNING.format(method)
    return None


def knha_factor(rss: FloatArray, df: Any) -> FloatArray:
    """Knapp & Hartung (2003): the variance of the coefficients is scaled by the weighted
    residual variance ``s2w = y'Py / (k - p)``, taken as 0 where ``y'Py <= eps`` (metafor)."""
    return np.where(rss <= EPS, 0.0, rss / df)


def variance_factor(test: str, rss: FloatArray, df: Any) -> FloatArray | None:
    """The factor s2w on the coefficients' variance, as metafor 3.8.1 applies it: knha's
    :func:`knha_factor`; adhoc's the same truncated below at 1 (``s2w[s2w < 1] <- 1``);
    None (a factor of 1) for z and t."""
    if test == "knha":
        return knha_factor(rss, df)
    if test == "adhoc":
        return np.maximum(knha_factor(rss, df), 1.0)
    return None


def heterogeneity(
    equal_effects: bool, q: FloatArray, df: Any, tau2: FloatArray, vt: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """I2 (percent) and H2 (Higgins & Thompson 2002) exactly as metafor computes them:
    Q-based for EE models (``I2 = 100 max(0, (Q - df) / Q)``, 0 where Q = 0;
    ``H2 = Q / df``), tau2-based otherwise (``I2 = 100 tau2 / (tau2 + vt)``,
    ``H2 = tau2 / vt + 1``) with the typical sampling variance ``vt = df / tr P``."""
    if equal_effects:
        with np.errstate(divide="ignore", invalid="ignore"):
            i2 = np.where(q > 0, np.maximum(0.0, 100.0 * ((q - df) / q)), 0.0)
        return i2, np.asarray(q / df)
    return np.asarray(100.0 * tau2 / (vt + tau2)), np.asarray(tau2 / vt + 1.0)
