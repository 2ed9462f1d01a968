"""The batch fit's per-analysis statistics beyond the core (statistic, pval, tau, I2, H2,
pi_lb, pi_ub) are computed on first access: same numbers as the eager formulas."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr, ndtri, stdtr, stdtrit

from cosmo_runner.meta import METHODS, rma

LAZY = ("statistic", "pval", "tau", "I2", "H2", "pi_lb", "pi_ub")


def _data(seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.5, (60, 9))
    y = rng.normal(0.3, np.sqrt(v + 0.1))
    v[3], y[3] = 0.1, 0.2  # Q = 0
    return y, v


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("test", ["z", "knha"])
def test_lazy_batch_statistics_equal_the_eager_formulas(method: str, test: str) -> None:
    y, v = _data()
    fit = rma(y, v, method=method, test=test)
    k = y.shape[1]
    mu, se, tau2, q, vt = fit.estimate, fit.se, fit.tau2, fit.Q, fit.vt
    var_b = se * se if test == "z" else None
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = mu / se
    if test == "z":
        pval = 2.0 * ndtr(-np.abs(stat))
        crit = -ndtri(0.025)
    else:
        pval = 2.0 * stdtr(k - 1.0, -np.abs(stat))
        crit = -stdtrit(k - 1.0, 0.025)
    if method in ("EE", "FE"):
        with np.errstate(divide="ignore", invalid="ignore"):
            i2 = np.where(q > 0, np.maximum(0.0, 100.0 * ((q - (k - 1)) / q)), 0.0)
        h2 = q / (k - 1)
    else:
        i2 = 100.0 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1.0
    np.testing.assert_array_equal(fit.statistic, stat)
    np.testing.assert_allclose(fit.pval, pval, rtol=1e-15, atol=0)
    np.testing.assert_array_equal(fit.tau, np.sqrt(tau2))
    np.testing.assert_array_equal(fit.I2, i2)
    np.testing.assert_array_equal(fit.H2, h2)
    if var_b is not None:
        half_pi = crit * np.sqrt(var_b + tau2)
        np.testing.assert_allclose(fit.pi_lb, mu - half_pi, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(fit.pi_ub, mu + half_pi, rtol=1e-14, atol=1e-15)
    for name in LAZY:
        value = getattr(fit, name)
        assert isinstance(value, np.ndarray) and value.shape == (y.shape[0],), name
        assert value.dtype == np.float64, name
        assert getattr(fit, name) is value, name  # computed once, then cached


@pytest.mark.parametrize("method", ["DL", "REML", "PM"])
def test_lazy_statistics_keep_their_types(method: str) -> None:
    y, v = _data()
    one = rma(y[0], v[0], method=method)  # PM: one analysis through the batch path
    for name in LAZY:
        assert type(getattr(one, name)) is float, name
    mods = rma(y[0], v[0], method=method, mods=v[1])
    assert isinstance(mods.statistic, np.ndarray) and isinstance(mods.pval, np.ndarray)
    assert mods.pval.shape == (2,)
    for name in ("tau", "I2", "H2"):
        assert type(getattr(mods, name)) is float, name
    assert mods.pi_lb is None and mods.pi_ub is None


def test_a_plain_batch_fit_computes_no_statistics() -> None:
    # private on purpose: what the lazy store holds is the point (a public read computes it)
    y, v = _data()
    fit = rma(y, v, method="DL")
    assert not set(LAZY) & set(fit.lazy._values)
    assert fit.pval.shape == (60,)
    assert set(fit.lazy._values) == {"pval"}


@pytest.mark.parametrize("method", ["REML", "DL", "EE"])
def test_a_meta_regression_computes_r2_on_first_access_only(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R2 refits the model without moderators (EE: a weighted lm); Egger's test, a
    meta-regression on sei that never reads R2, must not pay for that (a 10^6-study table)."""
    from cosmo_runner.meta import _metareg, pubbias

    rng = np.random.default_rng(5)
    v = rng.uniform(0.01, 0.2, 30)
    y = rng.normal(0.2 + np.sqrt(v), 0.2)
    x = rng.normal(size=30)
    expected = rma(y, v, method=method, mods=x).R2
    assert expected is not None

    def refit(*args: object, **kwargs: object) -> float:
        raise AssertionError("R2 was computed")

    # the two private R2 paths, replaced so that computing R2 at all shows
    monkeypatch.setattr(_metareg, "_pseudo_r2", refit)
    monkeypatch.setattr(_metareg, "_ee_r2", refit)
    assert pubbias.egger_test(y, v, method=method).statistic != 0
    fit = rma(y, v, method=method, mods=x)
    with pytest.raises(AssertionError, match="R2 was computed"):
        _ = fit.R2
    monkeypatch.undo()
    again = rma(y, v, method=method, mods=x).R2
    assert again == expected
    assert rma(y, v, method=method).R2 is None  # no moderators: none
