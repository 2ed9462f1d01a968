"""One unit per tau2 estimator (PyMARE's habit), each citing its source.

Every unit fits any :class:`~._decisions.Problem` -- one analysis, a batch of analyses or
a meta-regression -- through the same row-wise arrays, with ``k - p`` residual degrees of
freedom. A unit has :meth:`Estimator.fit` (tau2 for every row) and :meth:`Estimator.se`
(metafor's standard error of tau2). Adding an estimator means adding a unit here and its
name to :data:`ESTIMATORS`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._decisions import (
    PM_ABOVE_LIMIT,
    Problem,
    Tau2Fit,
    Weighted,
    fisher_codes,
    fisher_scoring,
    likelihood_checks,
    not_converged,
    solve_pm,
)
from cosmo_runner.meta._kernels import rows_note
from cosmo_runner.meta._result import ALGORITHM_CODE, ROOT, Control, FloatArray

__all__ = ["ESTIMATORS", "METHODS", "Estimator", "estimator"]


def _nonneg(x: Any) -> Any:
    """``max(x, 0)`` for a float or row-wise for an array."""
    return np.maximum(x, 0.0) if isinstance(x, np.ndarray) else max(x, 0.0)


class Estimator:
    """A tau2 estimator. ``equal_effects``: tau2 is 0 by definition (no heterogeneity)."""

    name: ClassVar[str]
    equal_effects: ClassVar[bool] = False

    def fit(self, problem: Problem, con: Control) -> Tau2Fit:
        raise NotImplementedError

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        """metafor's standard error of tau2 at the estimate."""
        raise NotImplementedError


class FixedPiecesEstimator(Estimator):
    """A closed form in the equal-effects pieces (Q, sum w, tr P) alone; the scalar fast
    path calls :meth:`from_fixed` with floats."""

    def from_fixed(self, q: Any, sw: Any, trp: Any, k: Any, p: int) -> Any:
        raise NotImplementedError

    def fit(self, problem: Problem, con: Control) -> Tau2Fit:
        q, sw, trp = problem.fixed()
        return Tau2Fit.closed(self.from_fixed(q, sw, trp, problem.k, problem.p))


class EqualEffects(FixedPiecesEstimator):
    """EE (alias FE): the equal-effects model, tau2 = 0 (Hedges & Olkin 1985)."""

    name = "EE"
    equal_effects = True

    def from_fixed(self, q: Any, sw: Any, trp: Any, k: Any, p: int) -> Any:
        return q * 0.0

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return None


def _moment_se(problem: Problem, tau2: FloatArray, denom: FloatArray) -> FloatArray:
    """The standard error of a moment estimator in Q at ``w = 1/v`` (metafor)."""
    at = problem.at(np.zeros(problem.n))
    df = problem.k - problem.p
    var = 2.0 * df + 4.0 * tau2 * at.trp + 2.0 * tau2 * tau2 * at.trpp
    return np.asarray(np.sqrt(var / denom))


class DerSimonianLaird(FixedPiecesEstimator):
    """DL: DerSimonian & Laird (1986), ``max(0, (Q - (k - p)) / tr P)`` at ``w = 1/v``."""

    name = "DL"

    def from_fixed(self, q: Any, sw: Any, trp: Any, k: Any, p: int) -> Any:
        return _nonneg((q - (k - p)) / trp)

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return _moment_se(problem, tau2, problem.fixed()[2] ** 2)


class HunterSchmidt(FixedPiecesEstimator):
    """HS: Hunter & Schmidt (2004), ``max(0, (Q - k) / sum w)`` at ``w = 1/v``."""

    name = "HS"

    def from_fixed(self, q: Any, sw: Any, trp: Any, k: Any, p: int) -> Any:
        return _nonneg((q - k) / sw)

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return _moment_se(problem, tau2, problem.fixed()[1] ** 2)


class Hedges(Estimator):
    """HE: Hedges (1983), Hedges & Olkin (1985), unweighted method of moments:
    ``max(0, (RSS_ols - tr(P_ols V)) / (k - p))``."""

    name = "HE"

    @staticmethod
    def raw(problem: Problem) -> FloatArray:
        """The estimate before truncation at 0 (also the ML/REML/EB start)."""
        ols = problem.unweighted()
        return (ols.rss - ols.trpv()) / (problem.k - problem.p)

    def fit(self, problem: Problem, con: Control) -> Tau2Fit:
        return Tau2Fit.closed(np.maximum(self.raw(problem), 0.0))

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        ols = problem.unweighted()
        df = problem.k - problem.p
        var = 2.0 * ols.trpvpv() + 4.0 * tau2 * ols.trpv() + 2.0 * tau2 * tau2 * df
        return np.asarray(np.sqrt(var) / df)


class SidikJonkman(Estimator):
    """SJ: Sidik & Jonkman (2005), one step from ``tau0 = var(y) (k-1)/k`` (or
    ``control.tau2_init``): ``tau0 * y'P(tau0)y / (k - p)``."""

    name = "SJ"

    def fit(self, problem: Problem, con: Control) -> Tau2Fit:
        tau0 = _start(problem, con, problem.var_y())
        tau2 = tau0 * problem.at(tau0).rss / (problem.k - problem.p)
        return Tau2Fit.closed(np.maximum(tau2, 0.0), tau0)

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        at = problem.at(tau0)
        var = 2.0 * at.trpvpv() + 4.0 * tau2 * at.trpvp() + 2.0 * tau2 * tau2 * at.trpp
        return np.asarray(tau0 / (problem.k - problem.p) * np.sqrt(var))


def _start(problem: Problem, con: Control, default: FloatArray) -> FloatArray:
    return default if con.tau2_init is None else np.full(problem.n, float(con.tau2_init))


def _q_based_se(problem: Problem, tau2: FloatArray) -> FloatArray:
    k = problem.k
    return np.asarray(np.sqrt(2.0 * k * k / (k - problem.p) / problem.at(tau2).sw ** 2))


class PauleMandel(Estimator):
    """PM: Paule & Mandel (1982), the root of the generalised ``Q(tau2) = k - p``
    (0 where ``Q(0) < k - p``), by Chandrupatla's bracketing method to machine precision."""

    name = "PM"

    def fit(self, problem: Problem, con: Control) -> Tau2Fit:
        n = problem.n
        tau2, ok, nit, too_low = solve_pm(problem, con)
        if too_low.any():
            raise AnalysisError(PM_ABOVE_LIMIT + rows_note(too_low, n))
        if not ok.all():
            raise AnalysisError("rma: PM root finding failed" + rows_note(~ok, n))
        out = Tau2Fit.closed(tau2)
        out.iterations = nit
        out.algorithm[:] = ALGORITHM_CODE[ROOT]
        return out

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return _q_based_se(problem, tau2)


class FisherScoringEstimator(Estimator):
    """Fisher scoring (Viechtbauer 2005) from the HE start truncated at 0 (or
    ``control.tau2_init``), with the layer's fallback where it does not converge."""

    def step(self, at: Weighted, problem: Problem) -> FloatArray:
        raise NotImplementedError

    def fit(self, problem: Problem, con: Control) -> Tau2Fit:
        start = _start(problem, con, np.maximum(Hedges.raw(problem), 0.0))
        tau2, conv, iters = fisher_scoring(problem, self.step, start, con)
        out = Tau2Fit(tau2, np.zeros(problem.n), conv, iters, fisher_codes(problem.n))
        not_converged(problem, out, self.name, con)
        self.checks(problem, out, con)
        out.tau2 = np.maximum(out.tau2, 0.0)
        return out

    def checks(self, problem: Problem, fit: Tau2Fit, con: Control) -> None:
        """Checks after convergence (none by default)."""


class MaximumLikelihood(FisherScoringEstimator):
    """ML: maximum likelihood (Hardy & Thompson 1996; Viechtbauer 2005); Fisher step
    ``(y'PPy - sum w) / sum w^2``."""

    name = "ML"

    def step(self, at: Weighted, problem: Problem) -> FloatArray:
        return (at.ypppy - at.sw) / at.sw2

    def checks(self, problem: Problem, fit: Tau2Fit, con: Control) -> None:
        likelihood_checks(problem, fit, False, con)

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return np.asarray(np.sqrt(2.0 / problem.at(tau2).sw2))


class RestrictedML(FisherScoringEstimator):
    """REML: restricted maximum likelihood (Raudenbush & Bryk 1985; Viechtbauer 2005);
    Fisher step ``(y'PPy - tr P) / tr PP``."""

    name = "REML"

    def step(self, at: Weighted, problem: Problem) -> FloatArray:
        return (at.ypppy - at.trp) / at.trpp

    def checks(self, problem: Problem, fit: Tau2Fit, con: Control) -> None:
        likelihood_checks(problem, fit, True, con)

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return np.asarray(np.sqrt(2.0 / problem.at(tau2).trpp))


class EmpiricalBayes(FisherScoringEstimator):
    """EB: empirical Bayes (Morris 1983; Berkey et al. 1995), metafor's iteration
    ``(y'Py k / (k - p) - k) / sum w``; its fallback solves the equivalent PM equation."""

    name = "EB"

    def step(self, at: Weighted, problem: Problem) -> FloatArray:
        k = problem.k
        return (at.rss * k / (k - problem.p) - k) / at.sw

    def se(self, problem: Problem, tau2: FloatArray, tau0: FloatArray) -> FloatArray | None:
        return _q_based_se(problem, tau2)


#: Every method name the engine has, and its unit (FE is metafor's alias of EE).
ESTIMATORS: dict[str, Estimator] = {
    "EE": EqualEffects(),
    "FE": EqualEffects(),
    "DL": DerSimonianLaird(),
    "HE": Hedges(),
    "HS": HunterSchmidt(),
    "SJ": SidikJonkman(),
    "ML": MaximumLikelihood(),
    "REML": RestrictedML(),
    "EB": EmpiricalBayes(),
    "PM": PauleMandel(),
}

METHODS = tuple(ESTIMATORS)


def estimator(method: str) -> tuple[str, Estimator]:
    """The canonical (upper-case) method name and its unit; unknown names are an error."""
    m = str(method).upper()
    unit = ESTIMATORS.get(m)
    if unit is None:
        raise AnalysisError(f"rma: unknown method {method!r} (one of {', '.join(METHODS)})")
    return m, unit
