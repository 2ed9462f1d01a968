"""Rank test, trim-and-fill and Egger's test against metafor 3.8 (ranktest, trimfill, regtest).

Fixtures: tests/fixtures/metafor/stats/pubbias.json (scripts/metafor/make_fixtures_stats.R),
fitted with metafor's default control; we pass the control that reproduces it exactly
(threshold 1e-5, at most 100 iterations, no global check). Tolerances: rtol 1e-10 for EE and
DL (closed forms), 1e-8 for ML and REML (the same Fisher scoring and stopping rule).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.pubbias import (
    ESTIMATORS,
    MODELS,
    PREDICTORS,
    egger_test,
    rank_test,
    trimfill,
)

FX: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures/metafor/stats/pubbias.json").read_text()
)
CASES = {case["id"]: case for case in FX["cases"]}
METAFOR = {"threshold": 1e-5, "maxiter": 100, "global_check": False}


def _rtol(case: dict[str, Any]) -> float:
    return 1e-8 if case["method"] in ("ML", "REML") else 1e-10


def _close(ours: Any, theirs: Any, rtol: float, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=rtol, atol=1e-13,
        err_msg=what,
    )  # fmt: skip


def _set(case: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = FX["sets"][case["dataset"]]
    return data


def test_fixture_covers_every_estimator_side_predictor_and_model() -> None:
    assert FX["metafor_version"].startswith("3.8")
    for case in FX["cases"]:
        assert set(case["trimfill"]) == {f"{e}-{s}" for e in ESTIMATORS for s in
                                         ("auto", "left", "right")}  # fmt: skip
    keys = set().union(*(case["regtest"] for case in FX["cases"]))
    assert keys == {f"{m}-{p}" for m in MODELS for p in PREDICTORS}
    assert {c["method"] for c in FX["cases"]} == {"EE", "DL", "ML", "REML"}
    assert {c["test"] for c in FX["cases"]} == {"z", "knha"}
    sides = {c["trimfill"]["L0-auto"]["side"] for c in FX["cases"]}
    assert sides == {"left", "right"}
    assert any(c["trimfill"]["L0-auto"]["k0"] > 0 for c in FX["cases"])


@pytest.mark.parametrize("name", sorted(FX["sets"]))
def test_rank_test(name: str) -> None:
    s = FX["sets"][name]
    case = next(c for c in FX["cases"] if c["dataset"] == name)
    res = rank_test(s["yi"], s["vi"])
    _close(res.tau, case["ranktest"]["tau"], 1e-12, "tau")
    _close(res.pval, case["ranktest"]["pval"], 1e-9, "pval")
    assert res.exact == (not case["ranktest"]["warnings"])  # R: no exact p with ties


@pytest.mark.parametrize("case_id", sorted(CASES))
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("side", ["auto", "left", "right"])
def test_trimfill(case_id: str, estimator: str, side: str) -> None:
    case = CASES[case_id]
    s = _set(case)
    ref = case["trimfill"][f"{estimator}-{side}"]
    if "error" in ref:  # metafor stops ("missing value where TRUE/FALSE needed": k0 is NaN)
        with pytest.raises(AnalysisError) as info:
            trimfill(
                s["yi"], s["vi"], method=case["method"], estimator=estimator,
                side=None if side == "auto" else side, control=METAFOR,
            )  # fmt: skip
        assert info.value.message.startswith(f"trim-and-fill: the {estimator} estimate of k0")
        return
    res = trimfill(
        s["yi"], s["vi"], method=case["method"], test=case["test"], level=case["level"],
        estimator=estimator, side=None if side == "auto" else side, control=METAFOR,
    )  # fmt: skip
    rtol = _rtol(case)
    assert (res.k0, res.side) == (ref["k0"], ref["side"])
    if ref["se_k0"] is None:  # metafor: sqrt of a negative variance, NaN
        assert np.isnan(res.se_k0)
    else:
        _close(res.se_k0, ref["se_k0"], 1e-10, "se_k0")
    if estimator == "R0":
        _close(res.p_k0, ref["p_k0"], 1e-12, "p_k0")
    else:
        assert res.p_k0 is None and ref["p_k0"] is None
    fit = res.fit
    for ours, key in (
        (fit.estimate, "b"), (fit.se, "se"), (fit.statistic, "zval"), (fit.pval, "pval"),
        (fit.ci_lb, "ci_lb"), (fit.ci_ub, "ci_ub"), (fit.tau2, "tau2"), (fit.Q, "QE"),
    ):  # fmt: skip
        _close(ours, ref[key], rtol, f"{case_id} {estimator}-{side}: {key}")
    assert fit.k == ref["k"]
    _close(res.filled_yi, ref["filled_yi"], 1e-10, "filled yi")
    _close(res.filled_vi, ref["filled_vi"], 1e-12, "filled vi")


@pytest.mark.parametrize("case_id", sorted(CASES))
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("predictor", PREDICTORS)
def test_egger(case_id: str, model: str, predictor: str) -> None:
    case = CASES[case_id]
    s = _set(case)
    ref = case["regtest"].get(f"{model}-{predictor}")
    if ref is None:  # no sample sizes in this data set
        with pytest.raises(AnalysisError) as info:
            egger_test(s["yi"], s["vi"], predictor=predictor, model=model)
        assert info.value.message == (
            f"Egger's test with predictor {predictor!r} needs the sample sizes ni"
        )
        return
    res = egger_test(
        s["yi"], s["vi"], ni=s["ni"], predictor=predictor, model=model, method=case["method"],
        test=case["test"], level=case["level"], control=METAFOR,
    )  # fmt: skip
    rtol = _rtol(case)
    _close(res.statistic, ref["zval"], rtol, "statistic")
    _close(res.pval, ref["pval"], rtol, "pval")
    assert res.df == (None if ref["ddf"] is None else int(ref["ddf"]))
    assert res.df is None or type(res.df) is int  # an int in the results JSON, 11 not 11.0
    if ref["est"] is None:
        assert res.limit_estimate is None and res.limit_ci_lb is None
    else:
        _close(res.limit_estimate, ref["est"], rtol, "limit estimate")
        _close(res.limit_ci_lb, ref["ci_lb"], rtol, "limit ci_lb")
        _close(res.limit_ci_ub, ref["ci_ub"], rtol, "limit ci_ub")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rank_test([1.0, 2.0], [1.0, 1.0]), "rank test: needs at least 3 studies, got k = 2"),
        (lambda: trimfill([1, 2, 3], [1, 1, 0]), "trim-and-fill: yi must be finite and vi finite and > 0"),
        (lambda: trimfill([1, 2, 3], [1, 2, 3], estimator="X"), "trim-and-fill: unknown estimator 'X' (one of L0, R0, Q0)"),
        (lambda: trimfill([1, 2, 3], [1, 2, 3], side="up"), "trim-and-fill: side must be 'left' or 'right', not 'up'"),
        (lambda: egger_test([1, 2, 3], [1, 1, 1]), "Egger's test is undefined: the predictor sei is the same for every study"),
        (lambda: egger_test([1, 2, 3], [1, 2, 3], predictor="n"), "Egger's test: unknown predictor 'n' (one of sei, vi, ni, ninv, sqrtni, sqrtninv)"),
        (lambda: egger_test([1, 2, 3], [1, 2, 3], model="glm"), "Egger's test: model must be 'rma' or 'lm', not 'glm'"),
        (lambda: egger_test([1, 2, 3], [1, 2, 3], predictor="ni", ni=[10, 0, 5]), "Egger's test with predictor 'ni': ni must be finite and > 0"),
    ],
)  # fmt: skip
def test_bad_input(call: Any, message: str) -> None:
    with pytest.raises(AnalysisError) as info:
        call()
    assert info.value.message == message


def test_rank_test_beyond_the_exact_limit_is_asymptotic() -> None:
    rng = np.random.default_rng(3)
    v = rng.uniform(0.01, 0.5, 400)
    y = rng.normal(0, np.sqrt(v))
    res = rank_test(y, v)
    assert not res.exact
    assert 0.0 <= res.pval <= 1.0 and -1.0 <= res.tau <= 1.0
