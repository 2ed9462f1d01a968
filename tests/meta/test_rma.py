"""rma: batch/scalar agreement, bad input, edge cases, convergence and the fallback."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import stdtr, stdtrit
from tests.meta.loglik import loglik
from tests.meta.metafor import METAFOR

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import METHODS, TESTS, rma
from cosmo_runner.schemas import load_schema

# dat.bcg log risk ratios (metafor escalc), used for the checked values of the notes
BCG_YI = np.array([
    -0.8893113339202054, -1.5853886572014306, -1.3480731482996933, -1.4415511900213054,
    -0.2175473222112956, -0.7861155858188640, -1.6208982235983918, 0.0119523335238405,
    -0.4694176487381494, -1.3713448034727844, -0.3393588283383906, 0.4459134005713787,
    -0.0173139482168798,
])  # fmt: skip
BCG_VI = np.array([
    0.3255847650039613, 0.1945811213981438, 0.4153679653679654, 0.0200100319022476,
    0.0512101721696309, 0.0069056184559088, 0.2230172475723152, 0.0039615792978177,
    0.0564342104632490, 0.0730247936130289, 0.0124122139715597, 0.5325058452001528,
    0.0714046596839863,
])  # fmt: skip

ARRAY_KEYS = (
    "estimate", "se", "statistic", "pval", "ci_lb", "ci_ub", "tau2", "tau2_se", "tau", "I2",
    "H2", "Q", "Q_pval", "pi_lb", "pi_ub", "vt",
)  # fmt: skip


def _random_sets(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.5, (n, k))
    y = rng.normal(0.3, np.sqrt(v + 0.1))
    return y, v


def test_checked_values_from_the_notes() -> None:
    ee = rma(BCG_YI, BCG_VI, method="EE")
    assert ee.estimate == pytest.approx(-0.430285, abs=1e-6)
    assert pytest.approx(152.2330, abs=1e-4) == ee.Q
    assert pytest.approx(92.1173, abs=1e-4) == ee.I2
    reml = rma(BCG_YI, BCG_VI, control=METAFOR)  # the notes' values: metafor's default
    assert reml.tau2 == pytest.approx(0.313243, abs=1e-6)
    assert (reml.ci_lb, reml.ci_ub) == pytest.approx((-1.066898, -0.362167), abs=1e-6)
    assert (reml.pi_lb, reml.pi_ub) == pytest.approx((-1.8667, 0.4376), abs=1e-4)
    assert reml.converged is True
    assert reml.iterations == 3
    assert reml.algorithm == "fisher-scoring"
    converged = rma(BCG_YI, BCG_VI)  # the default: |step| <= 1e-10, a few steps more
    assert converged.iterations == 6 and converged.converged is True
    assert converged.tau2 == pytest.approx(0.313243, abs=1e-6)
    knha = rma(BCG_YI, BCG_VI, test="knha")
    assert knha.se == pytest.approx(0.180792, abs=1e-6)
    assert knha.df == 12


def test_the_schema_test_enum_is_the_fit_s() -> None:
    schema = load_schema("run_spec")
    assert schema["$defs"]["analysis"]["properties"]["test"]["enum"] == list(TESTS)


@pytest.mark.parametrize("method", ["EE", "DL", "REML"])
def test_t_and_adhoc_as_metafor_defines_them(method: str) -> None:
    """t: the z fit's variance with t(k - 1) quantiles; adhoc: knha's s2w, but never below
    1; both t(k - 1), like knha. BCG (s2w > 1 for EE) and the zero-boundary set (s2w < 1)."""
    low_y, low_v = [0.10, 0.12, 0.09, 0.11, 0.10, 0.13], [0.02, 0.03, 0.025, 0.04, 0.01, 0.05]
    for y, v in [(BCG_YI, BCG_VI), (low_y, low_v)]:
        fits = {test: rma(y, v, method=method, test=test) for test in TESTS}
        k = len(y)
        z, t, knha, adhoc = fits["z"], fits["t"], fits["knha"], fits["adhoc"]
        assert z.df is None and t.df == knha.df == adhoc.df == k - 1
        assert t.se == z.se and t.statistic == z.statistic
        assert t.ci_ub - t.estimate == pytest.approx(stdtrit(k - 1, 0.975) * z.se, rel=1e-12)
        assert t.pval == pytest.approx(2 * stdtr(k - 1, -abs(z.statistic)), rel=1e-12)
        assert adhoc.se == pytest.approx(max(knha.se, z.se), rel=1e-12)
        assert t.pi_ub - t.estimate == pytest.approx(
            stdtrit(k - 1, 0.975) * math.sqrt(z.se**2 + z.tau2), rel=1e-12
        )
        knha_ee = [w for w in fits["adhoc"].warnings if "Knapp & Hartung" in w]
        assert bool(knha_ee) == (method == "EE") and not any("Knapp" in w for w in t.warnings)
    # the zero-boundary set: s2w < 1, so adhoc is t there and knha is narrower
    z, knha, adhoc = (rma(low_y, low_v, method=method, test=x) for x in ("z", "knha", "adhoc"))
    assert knha.se < z.se == adhoc.se


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("test", TESTS)
def test_batch_equals_scalar(method: str, test: str) -> None:
    y, v = _random_sets(40, 8, seed=3)
    batch = rma(y, v, method=method, test=test)
    assert batch.batch
    for i in range(y.shape[0]):
        one = rma(y[i], v[i], method=method, test=test)
        for key in ARRAY_KEYS:
            ours, theirs = getattr(batch, key)[i], getattr(one, key)
            if theirs is None:
                assert np.isnan(ours), key
            else:
                # summation order differs (einsum vs vecdot): a few ulps, more near tau2 = 0,
                # where Fisher scoring halves its way down to tau2 ~ 1e-12 and the two paths'
                # iterates differ by ~1e-17 (the step's rounding); tau = sqrt(tau2) turns an
                # absolute tau2 difference d into at most sqrt(d)
                atol = math.sqrt(1e-13) if key == "tau" else 1e-13
                assert ours == pytest.approx(theirs, rel=1e-9, abs=atol), (key, i)
        np.testing.assert_allclose(batch.weights[i], one.weights, rtol=1e-9)
        assert bool(batch.converged[i]) == one.converged
        if method in ("ML", "REML", "EB"):
            assert int(batch.iterations[i]) == one.iterations
        assert batch.algorithm[i] == one.algorithm
    assert batch.df == (None if test == "z" else 7.0)


def test_single_analysis_returns_python_scalars() -> None:
    res = rma(BCG_YI, BCG_VI)
    for key in ("estimate", "se", "tau2", "tau2_se", "I2", "Q_pval", "pi_lb"):
        assert type(getattr(res, key)) is float, key
    assert type(res.converged) is bool
    assert type(res.iterations) is int
    assert res.weights.shape == (13,)
    assert res.weights.sum() == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("yi", "vi", "message"),
    [
        ([0.1], [0.1], "at least 2 studies"),
        ([0.1, np.nan, 0.3], [0.1, 0.1, 0.1], "yi contains missing"),
        ([0.1, 0.2, 0.3], [0.1, np.inf, 0.1], "vi contains missing"),
        ([0.1, 0.2, 0.3], [0.1, 0.0, 0.1], "strictly positive"),
        ([0.1, 0.2, 0.3], [0.1, -0.2, 0.1], "strictly positive"),
        ([0.1, 0.2, 0.3], [0.1, 0.2], "shape"),
        ([[[0.1, 0.2]]], [[[0.1, 0.2]]], "1-D"),
    ],
)
def test_bad_input_is_a_clear_error(yi: object, vi: object, message: str) -> None:
    with pytest.raises(AnalysisError, match=message):
        rma(yi, vi)  # type: ignore[arg-type]


BAD_VALUES = [
    ("yi", np.nan, "yi contains missing"),
    ("yi", -np.inf, "yi contains missing"),
    ("vi", np.nan, "vi contains missing"),
    ("vi", np.inf, "vi contains missing"),
    ("vi", -np.inf, "vi contains missing"),
    ("vi", 0.0, "strictly positive"),
    ("vi", -0.0, "strictly positive"),
    ("vi", -0.2, "strictly positive"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
@pytest.mark.parametrize("shape", [(7,), (6000,), (30, 7)], ids=["small", "long", "batch"])
@pytest.mark.parametrize("method", ["DL", "REML", "PM"])
def test_bad_values_are_named_on_every_path(
    field: str, value: float, message: str, shape: tuple[int, ...], method: str
) -> None:
    """The value checks ride on the first pass of each fit path (scalar, long, batch):
    every kind of bad value is still named, with no numpy warning on the way."""
    y, v = np.full(shape, 0.3), np.full(shape, 0.1)
    (y if field == "yi" else v)[(-1,) * len(shape)] = value
    with np.errstate(all="raise"), pytest.raises(AnalysisError, match=message):
        rma(y, v, method=method)


@pytest.mark.parametrize("shape", [(5,), (6000,), (3, 5)], ids=["small", "long", "batch"])
def test_finite_input_that_overflows_is_a_clear_error(shape: tuple[int, ...]) -> None:
    v = np.full(shape, 0.1)
    v[..., 0] = 1e-320  # a subnormal variance: its weight 1/vi is inf
    with pytest.raises(AnalysisError, match="overflow double precision"):
        rma(np.full(shape, 0.3), v, method="DL")


@pytest.mark.parametrize("shape", [(12,), (6000,), (4, 12)], ids=["small", "long", "batch"])
def test_q_is_accurate_for_effects_with_a_large_common_offset(shape: tuple[int, ...]) -> None:
    """Q from ``sum w y^2 - mu sum w y`` cancels when the effects share a large offset; such
    rows are recomputed from residuals. Reference: residuals about a correctly rounded
    weighted mean, summed with ``math.fsum``."""
    import math

    rng = np.random.default_rng(5)
    v = rng.uniform(0.01, 0.5, shape)
    y = 1e4 + rng.normal(0.0, 0.3, shape)
    res = rma(y, v, method="EE")

    def exact_q(yr: np.ndarray, vr: np.ndarray) -> float:
        w = 1.0 / vr
        mu = math.fsum(w * yr) / math.fsum(w)
        return math.fsum(w * (yr - mu) ** 2)

    rows = [(y, v)] if y.ndim == 1 else list(zip(y, v, strict=True))
    qs = np.atleast_1d(res.Q)
    for (yr, vr), q in zip(rows, qs, strict=True):
        assert q == pytest.approx(exact_q(yr, vr), rel=1e-11)


@pytest.mark.parametrize("shape", [(7,), (6000,), (3, 7)], ids=["small", "long", "batch"])
def test_huge_effects_give_a_result_or_a_clear_error_never_nan(shape: tuple[int, ...]) -> None:
    v = np.full(shape, 0.1)
    try:  # sum w y^2 overflows; residuals give Q = 0 unless the mean rounds off 1e200
        same = rma(np.full(shape, 1e200), v, method="DL")
    except AnalysisError as exc:
        assert "overflow double precision" in str(exc)
    else:
        assert np.all(np.asarray(same.Q) == 0.0)
        assert np.all(np.asarray(same.estimate) == pytest.approx(1e200))
    spread = np.full(shape, 1e200)
    spread[..., 0] = -1e200  # sum w y^2 overflows
    with pytest.raises(AnalysisError, match="overflow double precision"):
        rma(spread, v, method="DL")
    tiny = np.full(shape, 0.1)
    tiny[..., 0] = 1e-200  # finite weight 1e200, but sum w^2 overflows
    with pytest.raises(AnalysisError, match="overflow double precision"):
        rma(np.full(shape, 0.3), tiny, method="DL")


@pytest.mark.parametrize("method", ["REML", "DL", "PM", "EE"])
def test_moderator_models_with_overflowing_values_are_clear_errors(method: str) -> None:
    y = np.array([1e200, -1e200, 1e200, 0.1, 0.2, 0.3])
    v = np.full(6, 0.1)
    with np.errstate(all="raise"), pytest.raises(AnalysisError, match="overflow double"):
        rma(y, v, mods=np.arange(6.0), method=method)
    tiny = np.array([1e-200, 0.1, 0.1, 0.1, 0.1, 0.1])
    with np.errstate(all="raise"), pytest.raises(AnalysisError, match="overflow double"):
        rma(np.linspace(0.0, 0.5, 6), tiny, mods=np.arange(6.0), method=method)
    big = np.array([1e300, 2e300, 0, 1, 2, 3])
    with (
        np.errstate(all="raise"),
        pytest.raises(AnalysisError, match=r"overflow double|double precision|full rank"),
    ):
        rma(np.linspace(0.0, 0.5, 6), v, mods=big, method=method)


DOMINANT_Y = np.array([0.0, 1.0, -1.0, 0.5, 2.0, -0.3])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("vmin", [1e-8, 1e-14, 1e-18], ids=["1e8", "1e14", "1e18"])
@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_one_dominant_variance_is_a_warned_result_or_a_clear_error(
    method: str, vmin: float, batch: bool
) -> None:
    """A variance ratio past metafor's 1e7 carries its warning; where the trace of P
    cancels away in double precision the fit is an error naming the ratio, never NaN,
    inf or a ZeroDivisionError."""
    v = np.array([vmin, 1.0, 1.2, 0.8, 1.1, 0.9])
    y = DOMINANT_Y
    if batch:
        y, v = np.vstack([y, y + 0.1, DOMINANT_Y]), np.vstack([v, v, np.full(6, 0.5)])
    try:
        with np.errstate(all="raise"):
            res = rma(y, v, method=method)
    except AnalysisError as exc:
        assert "double precision" in str(exc) and "max(vi) / min(vi)" in str(exc)
        if batch:
            assert "rows 0, 1)" in str(exc)  # the third analysis is fine
        return
    core = [res.estimate, res.se, res.tau2, res.ci_lb, res.ci_ub, res.Q, res.I2, res.H2]
    assert np.isfinite(np.asarray(core, dtype=float)).all()
    assert any(w.startswith("Ratio of largest to smallest") for w in res.warnings)
    if batch:
        assert any("in 2 of 3 analyses (rows 0, 1)" in w for w in res.warnings)


@pytest.mark.parametrize("vmin", [1e-12, 1e-16, 1e-18, 1e-30])
@pytest.mark.parametrize("batch", [False, True], ids=["one", "batch"])
def test_trace_of_p_does_not_cancel_with_one_dominant_weight(vmin: float, batch: bool) -> None:
    """vt = (k - 1) / tr(P) and DL's tau2 against exact rational arithmetic, where
    ``sum w - sum w^2 / sum w`` loses every digit in double precision."""
    from fractions import Fraction

    v = np.array([vmin, 1.0, 1.2, 0.8, 1.1, 0.9])
    w = [1 / Fraction(x) for x in v]
    sw, sw2 = sum(w), sum(x * x for x in w)
    ys = [Fraction(x) for x in DOMINANT_Y]
    mu = sum(a * b for a, b in zip(w, ys, strict=True)) / sw
    q = sum(a * (b - mu) ** 2 for a, b in zip(w, ys, strict=True))
    trp = sw - sw2 / sw
    res = rma(np.vstack([DOMINANT_Y] * 2) if batch else DOMINANT_Y,
              np.vstack([v] * 2) if batch else v, method="DL")  # fmt: skip
    assert np.asarray(res.vt) == pytest.approx(float(5 / trp), rel=1e-12)
    assert np.asarray(res.tau2) == pytest.approx(float(max((q - 5) / trp, 0)), rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_huge_variances_are_a_result_or_a_clear_error(method: str) -> None:
    v = np.full(6, 1e200)  # sum w^2 underflows to 0
    try:
        res = rma(DOMINANT_Y * 1e100, v, method=method)
    except AnalysisError as exc:
        assert "double precision" in str(exc)
    else:
        assert np.isfinite([res.estimate, res.se, res.tau2, res.Q]).all()


def test_an_empty_batch_is_a_clear_error() -> None:
    with pytest.raises(AnalysisError, match="no analyses"):
        rma(np.empty((0, 5)), np.empty((0, 5)))


@pytest.mark.parametrize("shape", [(12,), (6000,), (5, 12)], ids=["small", "long", "batch"])
def test_q_from_sums_keeps_13_digits_below_the_recompute_threshold(
    shape: tuple[int, ...],
) -> None:
    """An offset chosen so that ``sum w y^2 / Q`` is 60: Q comes from the sums (no
    recompute) and is still accurate to 5e-13 against fsum-based residuals."""
    import math

    # the threshold is the point of this test: it is not public (private module on purpose)
    from cosmo_runner.meta._intercept import Q_CANCEL

    rng = np.random.default_rng(8)
    v = rng.uniform(0.01, 0.5, shape)
    d = rng.normal(0.0, 1.0, shape) * np.sqrt(v)
    w = 1.0 / v
    sw = w.sum(axis=-1, keepdims=True)
    mu_d = (w * d).sum(axis=-1, keepdims=True) / sw
    q0 = (w * (d - mu_d) ** 2).sum(axis=-1, keepdims=True)
    # sum w y^2 = Q + sw mu^2: move each row's weighted mean to make the ratio 60
    y = d - mu_d + np.sqrt(59.0 * q0 / sw)
    res = rma(y, v, method="EE")
    rows = [(y, v)] if y.ndim == 1 else list(zip(y, v, strict=True))
    for (yr, vr), q in zip(rows, np.atleast_1d(res.Q), strict=True):
        w = 1.0 / vr
        ratio = math.fsum(w * yr * yr) / q
        assert ratio == pytest.approx(60.0) and ratio < Q_CANCEL  # the sums branch
        mu = math.fsum(w * yr) / math.fsum(w)
        assert q == pytest.approx(math.fsum(w * (yr - mu) ** 2), rel=5e-13)


def test_public_names_are_importable_from_the_package() -> None:
    import importlib

    meta = importlib.import_module("cosmo_runner.meta")
    fit = importlib.import_module("cosmo_runner.meta.fit")

    assert fit.FISHER in meta.ALGORITHMS
    assert meta.rma is fit.rma  # the function does not hide a module of its name
    assert meta.RMAResult.__module__ == meta.Control.__module__ == "cosmo_runner.meta"


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(AnalysisError, match="unknown method 'XX'"):
        rma(BCG_YI, BCG_VI, method="XX")
    with pytest.raises(AnalysisError, match=r"unknown test 'T' \(one of z, t, knha, adhoc\)"):
        rma(BCG_YI, BCG_VI, test="T")
    with pytest.raises(AnalysisError, match="level"):
        rma(BCG_YI, BCG_VI, level=0)
    with pytest.raises(AnalysisError, match="unknown control setting"):
        rma(BCG_YI, BCG_VI, control={"treshold": 1e-8})
    with pytest.raises(AnalysisError, match="mismatched lengths"):
        rma(BCG_YI, BCG_VI, mods=np.arange(5.0))
    with pytest.raises(AnalysisError, match="one analysis"):
        rma(np.tile(BCG_YI, (2, 1)), np.tile(BCG_VI, (2, 1)), mods=np.arange(13.0))


def test_level_accepts_percent_or_fraction() -> None:
    a, b = rma(BCG_YI, BCG_VI, level=90), rma(BCG_YI, BCG_VI, level=0.9)
    assert a.ci_lb == b.ci_lb
    assert a.level == pytest.approx(90.0)


@pytest.mark.parametrize("method", METHODS)
def test_all_identical_effects_give_a_documented_result(method: str) -> None:
    """Identical effects: tau2 = 0, Q = 0, I2 = 0 (metafor: NaN for EE), H2 = 1 (RE) or 0."""
    y = np.full(6, 0.4)
    v = np.array([0.1, 0.2, 0.05, 0.3, 0.1, 0.15])
    res = rma(y, v, method=method)
    assert res.tau2 == pytest.approx(0.0, abs=1e-30)  # SJ: 0 up to rounding of the mean
    assert pytest.approx(0.0, abs=1e-25) == res.Q
    assert pytest.approx(0.0, abs=1e-25) == res.I2
    assert res.estimate == pytest.approx(0.4)
    assert np.isfinite([res.se, res.ci_lb, res.ci_ub, res.pval]).all()
    knha = rma(y, v, method=method, test="knha")
    assert knha.se == 0.0  # metafor: s2w = 0 when the weighted RSS <= eps
    assert np.isinf(knha.statistic)


@pytest.mark.parametrize("method", METHODS)
def test_extreme_variance_ratios_stay_finite(method: str) -> None:
    rng = np.random.default_rng(11)
    v = np.geomspace(1e-12, 1e6, 15)
    y = rng.normal(0.0, 1.0, 15)
    res = rma(y, v, method=method)
    assert np.isfinite([res.estimate, res.se, res.tau2, res.I2, res.Q]).all()
    assert res.converged is True
    tiny_tau = rma(rng.normal(0, 1e-3, 10), np.full(10, 1e6), method=method)
    assert tiny_tau.tau2 == pytest.approx(0.0, abs=1e-12)  # SJ is positive by construction
    assert pytest.approx(0.0, abs=1e-12) == tiny_tau.I2


def test_convergence_is_reported_and_configurable() -> None:
    res = rma(BCG_YI, BCG_VI, control={"threshold": 1e-12})
    assert res.converged is True
    assert res.iterations > 3
    assert res.tau2 == pytest.approx(0.3132433, rel=1e-6)
    with pytest.raises(AnalysisError, match="did not converge"):
        rma(BCG_YI, BCG_VI, control={"maxiter": 1, "fallback": False})
    fb = rma(BCG_YI, BCG_VI, control={"maxiter": 1})
    assert fb.converged is False
    assert fb.algorithm == "bounded-optimisation fallback"
    assert fb.warnings and "did not converge" in fb.warnings[0]
    # the REML maximum (metafor with threshold 1e-10: 0.313243258136793)
    assert fb.tau2 == pytest.approx(0.313243258136793, rel=1e-10)


def test_eb_fallback_solves_the_pm_equation() -> None:
    eb = rma(BCG_YI, BCG_VI, method="EB", control={"maxiter": 1})
    pm = rma(BCG_YI, BCG_VI, method="PM")
    assert eb.algorithm == "root finding"
    assert eb.tau2 == pytest.approx(pm.tau2, rel=1e-10)


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_batch_fallback_reaches_the_likelihood_maximum(method: str) -> None:
    """~1% of random k = 20 sets make Fisher scoring oscillate; the fallback finds the max."""
    y, v = _random_sets(2000, 20, seed=5)
    res = rma(y, v, method=method)
    failed = np.flatnonzero(~res.converged)
    assert failed.size > 0, "the random design should include non-converging sets"
    assert set(res.algorithm[failed]) == {"bounded-optimisation fallback"}
    assert any("did not converge" in w for w in res.warnings)
    reml = method == "REML"
    for i in failed[:10]:
        yi, vi = y[i], v[i]

        def negll(t: float, yi: np.ndarray = yi, vi: np.ndarray = vi) -> float:
            return -loglik(t, yi, vi, reml)

        opt = minimize_scalar(negll, bounds=(0.0, 10.0), method="bounded", options={"xatol": 1e-12})
        ours = -negll(res.tau2[i])
        assert ours >= -opt.fun - 1e-12
        if ours <= -opt.fun + 1e-9:  # the same peak (minimize_scalar may find a lower one)
            assert res.tau2[i] == pytest.approx(opt.x, rel=1e-4, abs=1e-8)
        one = rma(y[i], v[i], method=method)
        assert one.tau2 == pytest.approx(res.tau2[i], rel=1e-12)
        assert one.converged is False


def test_meta_regression_matches_the_notes() -> None:
    ablat = np.array([44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33], dtype=float)
    # the notes' values: metafor's default control
    res = rma(BCG_YI, BCG_VI, mods=ablat, mod_names=["ablat"], control=METAFOR)
    assert res.terms == ("intrcpt", "ablat")
    assert res.estimate == pytest.approx([0.251464, -0.029102], abs=1e-6)
    assert res.se == pytest.approx([0.249104, 0.007196], abs=1e-6)
    assert res.tau2 == pytest.approx(0.076355, abs=1e-6)
    assert pytest.approx(75.6245, abs=1e-4) == res.R2
    assert (res.Q, res.Q_df) == (pytest.approx(30.7331, abs=1e-4), 11)
    assert pytest.approx(16.3571, abs=1e-4) == res.QM
    knha = rma(BCG_YI, BCG_VI, mods=ablat, test="knha", control=METAFOR)
    assert knha.statistic[1] == pytest.approx(-3.5483, abs=1e-4)
    assert pytest.approx(12.5905, abs=1e-4) == knha.QM
    assert knha.QM_df == (1, 11)
    assert knha.pi_lb is None


# A random k = 20 set (the benchmark's design) whose restricted likelihood is bimodal:
# metafor 3.8.1 returns tau2 = 0 (logLik -14.38909), a local maximum; the global one is
# tau2 = 0.0322755 (metafor's logLik at that tau2: -14.36002).
BIMODAL_YI = [
    1.0980396815806517, -0.606570482913533, -0.8900304131020089, 0.16056092134854405,
    0.2954374780455471, 1.0404344133049461, 0.5167833778857724, 0.05471911830226914,
    -0.0272269005464999, -0.5353702664588071, 0.5177084339292832, 0.4616016672403674,
    0.44420404600407376, 0.5299421876329555, 0.4513381695212177, 0.5072561922669669,
    0.3734946377646629, 0.259925950079001, 0.04648324196193437, 0.6041825199082023,
]  # fmt: skip
BIMODAL_VI = [
    0.20423268577330664, 0.3187486081158766, 0.1412885320403246, 0.2701369574950957,
    0.3727844462638909, 0.2575034079637104, 0.41586897713117793, 0.32601876747325165,
    0.38081987868514855, 0.3690358749976997, 0.08142497343542192, 0.47245567499400654,
    0.05154216939599653, 0.43362129944466227, 0.4198922351809356, 0.07405044262773074,
    0.013000321514200285, 0.4779490765010026, 0.1654106795511867, 0.1338057357725818,
]  # fmt: skip


def test_multimodal_likelihood_uses_the_global_maximum() -> None:
    res = rma(BIMODAL_YI, BIMODAL_VI)
    assert res.tau2 == pytest.approx(0.0322755, rel=1e-5)
    assert res.algorithm == "bounded-optimisation fallback"
    assert res.converged is True  # Fisher scoring converged, to the wrong (local) maximum
    assert any("multimodal" in w for w in res.warnings)
    gap = loglik(res.tau2, BIMODAL_YI, BIMODAL_VI) - loglik(0.0, BIMODAL_YI, BIMODAL_VI)
    assert gap == pytest.approx(-14.36002 - -14.38909, abs=1e-5)  # metafor's logLik
    metafor_like = rma(BIMODAL_YI, BIMODAL_VI, control={"global_check": False})
    assert metafor_like.tau2 == 0.0
    assert metafor_like.algorithm == "fisher-scoring"
    batch = rma(np.tile(BIMODAL_YI, (3, 1)), np.tile(BIMODAL_VI, (3, 1)))
    np.testing.assert_allclose(batch.tau2, res.tau2, rtol=1e-12)
    assert list(batch.algorithm) == ["bounded-optimisation fallback"] * 3


@pytest.mark.parametrize(
    "shape", [(1, 20), (409, 20), (410, 20), (10_000, 20), (10_001, 20), (3, 2000), (50, 7)]
)
def test_row_sums_in_blas_blocks_equal_numpy(shape: tuple[int, int]) -> None:
    # the BLAS-block row sums are a kernel, not API: tested where they live
    from cosmo_runner.meta._kernels import rsum

    a = np.random.default_rng(2).uniform(0.1, 10.0, shape)
    np.testing.assert_allclose(rsum(a), a.sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(rsum(a[:, ::2]), a[:, ::2].sum(axis=1), rtol=1e-14)
