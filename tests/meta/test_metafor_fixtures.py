"""cosmo_runner.meta against R's metafor 3.8 (fixtures from scripts/metafor/make_fixtures.R).

Tolerances (relative, with a tiny absolute floor for values at 0):

- closed-form estimators (EE, DL, HE, HS, SJ), Q, I2, H2, escalc: 1e-10 — the same
  arithmetic; only floating-point summation order differs.
- Fisher scoring (ML, REML, EB) with metafor's defaults: 1e-8 — the "default" cases are fitted
  with metafor's control (``METAFOR``: threshold 1e-5, maxiter 100): metafor's exact
  algorithm and stopping rule, so both stop at the same iterate.
- "tight" cases (metafor with threshold = tol = 1e-10, maxiter 1000) against our DEFAULT fit
  (threshold 1e-10, maxiter 200: the converged default): 1e-7; uniroot's tol = 1e-10 is
  absolute on tau2 and our root finder converges to machine precision, so tau2 near 1e-3 can
  differ by ~1e-7 relative.
- PM with metafor's defaults: uniroot stops with a bracket of tol = eps^0.25 = 1.22e-4, so
  its tau2 is only within 1.22e-4 (absolute) of the root; we compare tau2 at atol 1.3e-4 and
  check everything else against the tight PM fixture.
- Q-profile bounds with confint's default tol have the same uniroot error: tau2 bounds at
  atol 1.3e-4; the tight fixture checks all bounds (tau2, I2, H2) at 1e-7.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.meta.loglik import loglik

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import METHODS, TESTS, confint_tau2, escalc, leave1out, regtest, rma
from cosmo_runner.meta.measures import MEASURES, TRANSFORMS, Settings, lookup

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metafor"
#: metafor's default control: the "default" fixtures are checked with it (our default is
#: the converged one, threshold 1e-10, which the "tight" fixtures check)
METAFOR = {"threshold": 1e-5, "maxiter": 100}
UNIROOT_TOL = 1.3e-4
TIGHT_TOL = 1.5e-10  # the tight fixtures' uniroot tol (1e-10, absolute on tau2), with margin
#: Measures with fixtures for every method x test x control (the fit's own grid).
FULL_GRID = {
    "RR",
    "OR",
    "RD",
    "MD",
    "SMD",
    "ROM",
    "ZCOR",
    "GEN",
}  # metafor's default uniroot tol .Machine$double.eps^0.25 = 1.22e-4


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _all_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        fx = _load(path.name)
        for case in fx.get("cases", []):
            out.append((case["id"], fx, case))
    return out


CASES = _all_cases()


def _close(ours: Any, theirs: Any, rtol: float, what: str, atol: float = 1e-12) -> None:
    if theirs is None:
        assert ours is None or not np.isfinite(ours).all(), f"{what}: metafor has NA, we {ours}"
        return
    if isinstance(theirs, list) and not theirs:
        return  # metafor does not report it for this model (e.g. leave1out tau2 for EE)
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=rtol, atol=atol,
        err_msg=what,
    )  # fmt: skip


def _yi_vi(fx: dict[str, Any], measure: str) -> tuple[np.ndarray, np.ndarray]:
    es = fx["escalc"][measure]
    return np.asarray(es["yi"], dtype=float), np.asarray(es["vi"], dtype=float)


def _rtol(case: dict[str, Any]) -> float:
    if case["control"] == "tight":
        return 1e-7
    if case["method"] in ("ML", "REML", "EB"):
        return 1e-8
    return 1e-10


def test_fixtures_record_versions() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        fx = _load(path.name)
        assert fx["metafor_version"] == "3.8.1", path.name
        assert fx["R_version"].startswith("R version 4."), path.name
        assert fx["generated_by"] == "scripts/metafor/make_fixtures.R"


#: The tests of the measure grid; "t" and "adhoc" (added later) have their own fixtures
#: (tests-bcg, tests-boundary: every method, intercept-only and meta-regression).
GRID_TESTS = ("z", "knha")


def test_fixtures_cover_tests_t_and_adhoc() -> None:
    assert set(TESTS) == {*GRID_TESTS, "t", "adhoc"}
    for dataset, with_mods in [("tests-bcg", (False, True)), ("tests-boundary", (False,))]:
        fx = _load(f"{dataset}.json")
        got = {(c["method"], c["test"], c["control"], c["moderators"]) for c in fx["cases"]}
        want = {
            (method, test, control, mods)
            for method in METHODS
            for test in ("t", "adhoc")
            for control in ("default", "tight")
            for mods in with_mods
        }
        assert want <= got, (dataset, sorted(want - got))


def test_fixtures_cover_every_measure_method_and_test() -> None:
    seen = {(c["measure"], c["method"], c["test"], c["control"]) for _, _, c in CASES}
    # the fit does not depend on the measure: the full grid on the first measures, and
    # EE, DL and REML (each test and control) with predict's back-transform on every other
    for measure in set(MEASURES) - FULL_GRID:
        for method in ("EE", "DL", "REML"):
            for test in GRID_TESTS:
                for control in ("default", "tight"):
                    assert (measure, method, test, control) in seen, (measure, method, test)
        if lookup(measure).transform is not None:
            assert any(c["measure"] == measure and "transformed" in c for _, _, c in CASES)
    for measure in FULL_GRID:
        for method in METHODS:
            for test in GRID_TESTS:
                for control in ("default", "tight"):
                    assert (measure, method, test, control) in seen, (measure, method, test)
    computed = {m for path in FIXTURES.glob("*.json") for m in _load(path.name).get("escalc", {})}
    assert set(MEASURES) <= computed, "every measure of the table has escalc reference values"
    mods = {(c["method"], c["test"]) for _, _, c in CASES if c["moderators"]}
    assert mods == {(m, t) for m in METHODS for t in TESTS}
    names = {fx["dataset"] for _, fx, _ in CASES}
    assert {"bcg", "normand1999", "molloy2014", "hackshaw1998", "k2", "boundary", "k400"} <= names
    assert "curtis1998" in names
    assert {"varratio", "tau2huge", "tau2tiny"} <= names
    assert max(len(fx["data"]["yi"]) for _, fx, _ in CASES if "yi" in fx["data"]) >= 400
    parts = {"predict", "confint", "leave1out", "regtest", "transformed"}
    present = {key for _, _, c in CASES for key in c}
    assert parts <= present


ESCALC = [
    (path.stem, key)
    for path in sorted(FIXTURES.glob("*.json"))
    for key in _load(path.name).get("escalc", {})
]


@pytest.mark.parametrize(("dataset", "key"), ESCALC, ids=[f"{d}-{k}" for d, k in ESCALC])
def test_escalc_matches_metafor(dataset: str, key: str) -> None:
    """Every escalc of every fixture (``M-drop00``: with drop00=True; NA rows are dropped)."""
    fx = _load(f"{dataset}.json")
    measure, _, drop = key.partition("-")
    cols = {k: v for k, v in fx["data"].items() if k not in ("study", "ablat")}
    entry = lookup(measure)
    form = entry.form(cols)  # the first form the data has (GEN: yi, vi before a CI)
    settings = Settings(**fx.get("settings", {}))
    es = escalc(measure, drop00=bool(drop), settings=settings, **{k: cols[k] for k in form})
    ref = fx["escalc"][key]
    yi, vi = np.asarray(ref["yi"], dtype=float), np.asarray(ref["vi"], dtype=float)
    keep = np.isfinite(yi)
    np.testing.assert_allclose(es.yi, yi[keep], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(es.vi, vi[keep], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("measure", ["RR", "OR", "RD"])
@pytest.mark.parametrize("drop00", [False, True])
def test_escalc_zero_cells_match_metafor(measure: str, drop00: bool) -> None:
    fx = _load("zerocells.json")
    d = fx["data"]
    es = escalc(measure, ai=d["ai"], bi=d["bi"], ci=d["ci"], di=d["di"], drop00=drop00)
    ref = fx["escalc"][measure + ("-drop00" if drop00 else "")]
    ref_yi = np.asarray(ref["yi"], dtype=float)
    ref_vi = np.asarray(ref["vi"], dtype=float)
    keep = np.isfinite(ref_yi)  # metafor sets dropped studies to NA
    np.testing.assert_allclose(es.yi, ref_yi[keep], rtol=1e-12)
    np.testing.assert_allclose(es.vi, ref_vi[keep], rtol=1e-12)
    # studies 1 and 2 have a zero cell; 3 has no events and 4 only events in both arms
    assert es.dropped == ((2, 3) if drop00 else ())
    assert es.added_half == ((0, 1) if drop00 else (0, 1, 2, 3))


def _fit(fx: dict[str, Any], case: dict[str, Any]) -> Any:
    yi, vi = _yi_vi(fx, case["measure"])
    control = None if case["control"] == "tight" else METAFOR  # ours: the converged default
    mods = np.asarray(fx["data"]["ablat"], dtype=float) if case["moderators"] else None
    return rma(
        yi, vi, method=case["method"], test=case["test"], mods=mods, control=control
    )  # fmt: skip


@pytest.mark.parametrize(("case_id", "fx", "case"), CASES, ids=[c[0] for c in CASES])
def test_rma_matches_metafor(case_id: str, fx: dict[str, Any], case: dict[str, Any]) -> None:
    assert "error" not in case, case.get("error")
    res = _fit(fx, case)
    ref = case["rma"]
    rtol = _rtol(case)
    pm_default = case["method"] == "PM" and case["control"] == "default"
    if pm_default:
        # uniroot's tolerance: tau2 only (the rest is checked by the tight PM case)
        _close(res.tau2, ref["tau2"], 0.0, f"{case_id} tau2", atol=UNIROOT_TOL)
        return
    _close(res.estimate, ref["b"], rtol, f"{case_id} estimate")
    _close(res.se, ref["se"], rtol, f"{case_id} se")
    _close(res.statistic, ref["zval"], rtol, f"{case_id} statistic")
    _close(res.pval, ref["pval"], rtol * 10, f"{case_id} pval")
    _close(res.ci_lb, ref["ci_lb"], rtol, f"{case_id} ci_lb")
    _close(res.ci_ub, ref["ci_ub"], rtol, f"{case_id} ci_ub")
    _close(res.tau2, ref["tau2"], rtol, f"{case_id} tau2", atol=1e-10)
    _close(res.tau2_se, ref["se_tau2"], rtol, f"{case_id} tau2_se")
    _close(res.I2, ref["I2"], rtol, f"{case_id} I2", atol=1e-8)
    _close(res.H2, ref["H2"], rtol, f"{case_id} H2")
    _close(res.Q, ref["QE"], 1e-10, f"{case_id} Q")
    _close(res.Q_pval, ref["QEp"], 1e-9, f"{case_id} Q_pval")
    _close(res.weights, ref["weights"], rtol, f"{case_id} weights")
    _close(res.vt, ref["vt"], 1e-10, f"{case_id} vt")
    assert res.k == ref["k"]
    if case["test"] == "z":
        assert res.df is None
    else:  # t, knha, adhoc: t with k - p df
        assert res.df == ref["ddf"]
    knha_ee = case["method"] in ("EE", "FE") and case["test"] in ("knha", "adhoc")
    assert any("Knapp & Hartung" in w for w in res.warnings) == knha_ee
    # metafor's warnings (variance ratio, Knapp & Hartung with EE) are ours too
    theirs = case.get("warnings") or []
    for warning in [theirs] if isinstance(theirs, str) else theirs:
        assert warning in res.warnings, (case_id, warning)
    if case["moderators"]:
        _close(res.QM, ref["QM"], rtol, f"{case_id} QM")
        _close(res.QM_pval, ref["QMp"], rtol * 10, f"{case_id} QM_pval")
        assert list(res.QM_df) == [x for x in np.atleast_1d(ref["QMdf"]) if x is not None]
        # EE too: metafor 3.8's R2 of an EE model is the adjusted R2 of the weighted lm
        _close(res.R2, ref["R2"], rtol * 10, f"{case_id} R2", atol=1e-8)
        return
    pred = case["predict"]
    _close(res.pi_lb, pred["pi_lb"], rtol, f"{case_id} pi_lb")
    _close(res.pi_ub, pred["pi_ub"], rtol, f"{case_id} pi_ub")


DIAG_CASES = [c for c in CASES if not c[2]["moderators"]]


@pytest.mark.parametrize(("case_id", "fx", "case"), DIAG_CASES, ids=[c[0] for c in DIAG_CASES])
def test_diagnostics_match_metafor(case_id: str, fx: dict[str, Any], case: dict[str, Any]) -> None:
    yi, vi = _yi_vi(fx, case["measure"])
    method, test = case["method"], case["test"]
    control = None if case["control"] == "tight" else METAFOR  # ours: the converged default
    tight = case["control"] == "tight"
    pm_default = method == "PM" and not tight
    rtol = _rtol(case)
    if "confint" in case:
        ref = case["confint"]
        ci = confint_tau2(yi, vi, method=method, control=control)
        if tight:
            # uniroot's tol = 1e-10 is absolute on tau2; I2 = 100 tau2/(tau2 + vt) and
            # H2 = (tau2 + vt)/vt carry it as 100 tol/vt and tol/vt, which matters where the
            # variances are tiny (raw incidence rates: vt ~ 1e-5)
            vt = case["rma"]["vt"]
            _close([ci.tau2_lb, ci.tau2_ub], ref["tau2"][1:], 1e-7, f"{case_id} tau2_ci", 1e-9)
            _close([ci.I2_lb, ci.I2_ub], ref["I2"][1:], 1e-7, f"{case_id} I2_ci",
                   max(1e-7, 100 * TIGHT_TOL / vt))  # fmt: skip
            _close([ci.H2_lb, ci.H2_ub], ref["H2"][1:], 1e-7, f"{case_id} H2_ci", TIGHT_TOL / vt)
        else:
            _close([ci.tau2_lb, ci.tau2_ub], ref["tau2"][1:], 0.0, case_id, UNIROOT_TOL)
    elif method in ("EE", "FE"):
        with pytest.raises(AnalysisError, match="no heterogeneity"):
            confint_tau2(yi, vi, method=method)
    if "leave1out" in case and not pm_default:
        ref = case["leave1out"]
        l1o_control = control
        if fx["dataset"] == "nielweise2007" and not tight:
            # metafor's default stops 4 of these refits short of a single peak, which the
            # global check finishes (test_convergence.py); without it: metafor's refits
            l1o_control = {**METAFOR, "global_check": False}
        l1o = leave1out(yi, vi, method=method, test=test, control=l1o_control)
        for ours, theirs in [
            ("estimate", "estimate"), ("se", "se"), ("statistic", "zval"), ("ci_lb", "ci_lb"),
            ("ci_ub", "ci_ub"), ("Q", "Q"), ("tau2", "tau2"), ("I2", "I2"), ("H2", "H2"),
        ]:  # fmt: skip
            _close(getattr(l1o, ours), ref[theirs], rtol, f"{case_id} leave1out {ours}", 1e-9)
        _close(l1o.pval, ref["pval"], rtol * 10, f"{case_id} leave1out pval")
    if "regtest" in case and not pm_default:
        ref = case["regtest"]
        eg = regtest(yi, vi, method=method, test=test, control=control)
        _close(eg.statistic, ref["zval"], rtol, f"{case_id} egger statistic")
        _close(eg.pval, ref["pval"], rtol * 10, f"{case_id} egger pval")
        _close(eg.limit_estimate, ref["est"], rtol, f"{case_id} limit estimate")
        _close([eg.limit_ci_lb, eg.limit_ci_ub], [ref["ci_lb"], ref["ci_ub"]], rtol, case_id)
    if "transformed" in case and not pm_default:
        ref = case["transformed"]
        res = rma(yi, vi, method=method, test=test, control=control)
        named = case.get("transf")  # predict(transf=...) asked for by name, else the natural one
        transform = TRANSFORMS[named] if named else lookup(case["measure"]).transform
        assert transform is not None, f"{case_id}: metafor back-transforms, the table does not"
        targ = math.nan
        if transform.needs is not None:  # metafor's targs: the harmonic mean of ni (or ti)
            targ = 1.0 / np.mean(1.0 / np.asarray(fx["data"][transform.needs], dtype=float))

        def back(x: float) -> float:
            return float(transform.apply(np.array([x]), targ)[0])

        got = [back(res.estimate), back(res.ci_lb), back(res.ci_ub)]
        want = [ref["pred"], ref["ci_lb"], ref["ci_ub"]]
        if ref["pi_lb"] not in (None, []):  # metafor's predict gives no PI for EE models
            got += [back(res.pi_lb), back(res.pi_ub)]
            want += [ref["pi_lb"], ref["pi_ub"]]
        _close(got, want, rtol, f"{case_id} transformed")


def test_reml_fallback_finds_the_restricted_likelihood_maximum() -> None:
    """metafor stops with 'did not converge' on these sets; we fall back and report it."""
    fx = _load("nonconvergent.json")
    assert len(fx["sets"]) >= 1
    for s in fx["sets"]:
        assert "did not converge" in s["error"]
        res = rma(s["yi"], s["vi"], method="REML")
        assert res.converged is False
        assert res.algorithm == "bounded-optimisation fallback"
        assert any("did not converge" in w for w in res.warnings)
        # R's optimize() (tol 1e-12) on metafor's own restricted log-likelihood
        np.testing.assert_allclose(res.tau2, s["tau2_max"], rtol=1e-6)
        np.testing.assert_allclose(res.estimate, s["estimate"], rtol=1e-8)
        np.testing.assert_allclose(res.se, s["se"], rtol=1e-7)
        # and it is a true maximum: no neighbouring tau2 does better
        best = loglik(res.tau2, s["yi"], s["vi"])
        for t in (res.tau2 * (1 - 1e-4), res.tau2 * (1 + 1e-4), 0.0):
            assert loglik(t, s["yi"], s["vi"]) <= best
        with pytest.raises(AnalysisError, match="did not converge"):
            rma(s["yi"], s["vi"], method="REML", control={"fallback": False})
