"""The two bracketing root finders of meta._kernels agree: ``roots`` (vectorised,
Chandrupatla's method through scipy) and ``roots_one_by_one`` (Brent's method per row,
which the Q-profile interval of tau2 uses), on the generalised Q equation of the interval
and through ``solve_decreasing``'s zero and above-the-limit rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import chdtri

# private: the kernels are the unit under test (no public name reaches the finders)
from cosmo_runner.meta._intercept import Rows
from cosmo_runner.meta._kernels import roots, roots_one_by_one, solve_decreasing
from cosmo_runner.meta.diagnostics import confint_tau2

_RNG = np.random.default_rng(1414)


def _data(k: int, tau2: float) -> tuple[np.ndarray, np.ndarray]:
    v = _RNG.uniform(0.01, 0.5, k)
    return _RNG.normal(0.2, np.sqrt(v + tau2)), v


SETS = {f"k{k}-tau2-{t}": _data(k, t) for k in (3, 8, 25) for t in (0.0, 0.05, 1.0)}


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("xrtol", [4 * np.finfo(float).eps, 1e-20, 1e-6])
def test_both_finders_solve_the_q_profile_alike(name: str, xrtol: float) -> None:
    y, v = SETS[name]
    k = y.size
    problem = Rows(y[None, :], v[None, :])

    def q(t: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return problem.take(np.zeros(rows.size, dtype=np.intp)).at(t).rss

    # the 95% and 50% bounds; 0: even Q(upper) is above it (the root lies above the limit);
    # 1e12: Q(0) is below it (the root is 0)
    targets = np.array([*chdtri(k - 1, [0.025, 0.975, 0.25, 0.75]), 0.0, 1e12])
    upper = np.full(targets.size, 100.0)
    a = solve_decreasing(q, targets, upper, xrtol)
    b = solve_decreasing(q, targets, upper, xrtol, finder=roots_one_by_one)
    np.testing.assert_array_equal(a[3], b[3])  # too_low: the finder does not decide it
    # below 4 eps (1e-20) the vectorised finder may stop without reaching its tolerance;
    # brentq works to its least, 4 eps
    assert b[1].all()
    assert a[1].all() or xrtol < 4 * np.finfo(float).eps
    assert a[3].tolist() == [False] * 4 + [True, False]
    # both stop within max(xrtol, 4 eps) of the root, relative (brentq's least is 4 eps)
    tol = 4 * max(xrtol, 4 * np.finfo(float).eps) + 1e-300
    np.testing.assert_allclose(b[0], a[0], rtol=tol, atol=0)
    assert a[0][5] == b[0][5] == 0.0


def test_roots_one_by_one_is_a_root_finder() -> None:
    """On its own, with a known root per row."""
    want = np.array([0.5, 2.0, 1e-3])

    def f(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(want[rows] - x)

    x, ok, nit = roots_one_by_one(f, np.zeros(3), np.full(3, 10.0), 4 * np.finfo(float).eps)
    np.testing.assert_allclose(x, want, rtol=1e-15)
    assert ok.all() and (nit > 0).all()
    xv, _, _ = roots(f, np.zeros(3), np.full(3, 10.0), 4 * np.finfo(float).eps)
    np.testing.assert_allclose(x, xv, rtol=1e-15)


@pytest.mark.parametrize("name", SETS)
def test_the_interval_is_the_vectorised_finders(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    y, v = SETS[name]
    fast = confint_tau2(y, v)
    # private: which finder confint_tau2 passes is its implementation, swapped back here
    from cosmo_runner.meta import diagnostics

    monkeypatch.setattr(diagnostics, "roots_one_by_one", roots)
    slow = confint_tau2(y, v)
    for name_ in ("tau2_lb", "tau2_ub", "I2_lb", "I2_ub", "H2_lb", "H2_ub"):
        assert getattr(fast, name_) == pytest.approx(getattr(slow, name_), rel=1e-13, abs=0)
    assert (fast.lb_censored, fast.ub_censored, fast.converged) == (
        slow.lb_censored, slow.ub_censored, slow.converged,
    )  # fmt: skip
