"""The three fit paths -- one analysis (1-D), a batch (2-D rows) and the meta-regression
(an intercept-only model matrix, ``mods`` with 0 columns) -- agree on values AND warnings,
for every estimator and test, including the cases where a decision fires: the
variance-ratio warning, ll0check, the global check of a bimodal likelihood, the fallbacks
when Fisher scoring does not converge, identical effects and the EE + knha warning."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.meta.test_rma import BCG_VI, BCG_YI, BIMODAL_VI, BIMODAL_YI

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import METHODS, TESTS, RMAResult, rma

RNG = np.random.default_rng(20261201)
_V_RANDOM = RNG.uniform(0.01, 0.5, 12)

DATA: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any] | None]] = {
    "bcg": (BCG_YI, BCG_VI, None),
    "random": (RNG.normal(0.3, np.sqrt(_V_RANDOM + 0.1)), _V_RANDOM, None),
    "bimodal": (np.asarray(BIMODAL_YI), np.asarray(BIMODAL_VI), None),  # global check
    "bimodal-metafor": (np.asarray(BIMODAL_YI), np.asarray(BIMODAL_VI), {"global_check": False}),
    "varratio": (  # max(vi) / min(vi) = 1e8: metafor's warning
        np.array([0.0, 1.0, -1.0, 0.5, 2.0, -0.3]),
        np.array([1e-8, 1.0, 1.2, 0.8, 1.1, 0.9]),
        None,
    ),
    "not-converged": (BCG_YI, BCG_VI, {"maxiter": 1}),  # the fallbacks, with their warning
    "identical": (np.full(6, 0.4), np.array([0.1, 0.2, 0.05, 0.3, 0.1, 0.15]), None),
    "tau2-init": (BCG_YI, BCG_VI, {"tau2_init": 2.0, "threshold": 1e-9}),
}

VALUES = (
    "estimate", "se", "statistic", "pval", "ci_lb", "ci_ub", "tau2", "tau2_se", "tau", "I2",
    "H2", "Q", "Q_pval", "vt",
)  # fmt: skip


def _first(value: Any) -> Any:
    """The one analysis' value of a batch or meta-regression attribute."""
    if isinstance(value, np.ndarray):
        item = value.reshape(-1)[0]
        return item.item() if isinstance(item, np.generic) else item
    return value


def _paths(
    y: np.ndarray, v: np.ndarray, method: str, test: str, control: dict[str, Any] | None
) -> dict[str, RMAResult]:
    k = y.shape[0]
    return {
        "scalar": rma(y, v, method=method, test=test, control=control),
        "batch": rma(y[None, :], v[None, :], method=method, test=test, control=control),
        "metareg": rma(y, v, method=method, test=test, control=control, mods=np.empty((k, 0))),
    }


@pytest.mark.parametrize("data", DATA, ids=list(DATA))
@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("method", METHODS)
def test_scalar_batch_and_metaregression_agree(method: str, test: str, data: str) -> None:
    y, v, control = DATA[data]
    try:
        fits = _paths(y, v, method, test, control)
    except AnalysisError as exc:  # then every path fails with the same message
        for path in ("scalar", "batch", "metareg"):
            with pytest.raises(AnalysisError) as info:
                _paths(y, v, method, test, control)[path]
            assert info.value.message == exc.message, path
        return
    ref = fits["scalar"]
    # one fit, other summation orders (BLAS blocks, X'WX): a few ulps. With a variance
    # ratio of 1e8 the meta-regression's general tr P = sum w - tr((X'WX)^-1 X'W^2X)
    # loses ~8 digits to cancellation, where the intercept paths use the exact
    # sum_i w_i (sum w - w_i) / sum w: vt and what follows it (I2, H2, DL's tau2) agree to
    # 1e-6 there.
    loose = 1e-6 if data == "varratio" else 1e-9
    for path in ("batch", "metareg"):
        other = fits[path]
        assert other.warnings == ref.warnings, path
        assert _first(other.algorithm) == ref.algorithm, path
        assert bool(_first(other.converged)) == ref.converged, path
        # Fisher scoring takes the same steps; the root finder's count may differ by one
        # where rounding moves a bracket (its tolerance is machine precision either way)
        slack = 1 if ref.algorithm == "root finding" else 0
        assert abs(int(_first(other.iterations)) - ref.iterations) <= slack, path
        assert _first(other.df) == ref.df, path
        assert other.Q_df == ref.Q_df, path
        for key in VALUES:
            mine, theirs = _first(getattr(other, key)), getattr(ref, key)
            if theirs is None:
                assert mine is None or np.isnan(mine), (path, key)
            else:
                rel = loose if path == "metareg" else 1e-9
                assert mine == pytest.approx(theirs, rel=rel, abs=1e-12), (path, key)
        np.testing.assert_allclose(np.ravel(other.weights), ref.weights, rtol=1e-9)


@pytest.mark.parametrize("method", ["ML", "REML", "EB"])
def test_the_fallback_hint_is_the_same_on_every_path(method: str) -> None:
    """Without the fallback, non-convergence is one error text on every path, with the
    hint to enable it."""
    messages = set()
    for path in ("scalar", "batch", "metareg"):
        with pytest.raises(AnalysisError) as info:
            _paths(BCG_YI, BCG_VI, method, "z", {"maxiter": 1, "fallback": False})[path]
        messages.add(info.value.message)
    assert messages == {
        "rma: Fisher scoring algorithm did not converge; enable control fallback or "
        "increase maxiter"
    }


def test_the_fallback_warning_says_restricted_likelihood_for_reml() -> None:
    for path, fit in _paths(BCG_YI, BCG_VI, "REML", "z", {"maxiter": 1}).items():
        assert fit.warnings == (
            "Fisher scoring algorithm did not converge; used bounded maximisation of the "
            "restricted likelihood.",
        ), path
