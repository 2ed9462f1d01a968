"""Cumulative meta-analysis and influence diagnostics against metafor 3.8 (cumul, influence).

Fixtures: tests/fixtures/metafor/stats/influence.json (scripts/metafor/make_fixtures_stats.R),
metafor's default control, which we reproduce exactly (threshold 1e-5, no global check).
rtol 1e-10 for EE and DL (closed forms); 1e-7 for ML and REML: the same Fisher scoring, but
the diagnostics difference nearby fits (mu - mu_(-i)), which costs a digit or two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.influence import cumulative, influence

FX: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures/metafor/stats/influence.json").read_text()
)
CASES = {case["id"]: case for case in FX["cases"]}
METAFOR = {"threshold": 1e-5, "maxiter": 100, "global_check": False}


def _rtol(case: dict[str, Any]) -> float:
    return 1e-7 if case["method"] in ("ML", "REML") else 1e-10


def _close(ours: Any, theirs: Any, rtol: float, what: str) -> None:
    theirs_a = np.asarray([np.nan if t is None else t for t in theirs], dtype=float)
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), theirs_a, rtol=rtol, atol=1e-12, err_msg=what,
        equal_nan=True,
    )  # fmt: skip


def test_fixture_covers_every_method_kind_and_test() -> None:
    assert FX["metafor_version"].startswith("3.8")
    assert {c["method"] for c in FX["cases"]} == {"EE", "DL", "ML", "REML"}
    assert {c["test"] for c in FX["cases"]} == {"z", "knha"}
    assert any("cumul_by" in c for c in FX["cases"])
    assert any(any(c["influence"]["inf"]) for c in FX["cases"])


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_cumulative(case_id: str) -> None:
    case = CASES[case_id]
    s = FX["sets"][case["dataset"]]
    res = cumulative(s["yi"], s["vi"], method=case["method"], test=case["test"], control=METAFOR)
    ref = case["cumul"]
    rtol = _rtol(case)
    for key in ("estimate", "se", "pval", "ci_lb", "ci_ub", "Q", "I2"):
        _close(getattr(res, key), ref[key], rtol, f"{case_id}: {key}")
    if case["method"] == "EE":
        assert np.isnan(res.tau2).all()
    else:
        _close(res.tau2, ref["tau2"], rtol, f"{case_id}: tau2")
    if "cumul_by" in case:
        by = case["cumul_by"]
        res = cumulative(
            s["yi"], s["vi"], order=by["values"], method=case["method"], test=case["test"],
            control=METAFOR,
        )  # fmt: skip
        assert [s["study"][i] for i in res.order] == by["slab"]
        for key in ("estimate", "ci_lb", "ci_ub", "I2"):
            _close(getattr(res, key), by[key], rtol, f"{case_id} by year: {key}")


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_influence(case_id: str) -> None:
    case = CASES[case_id]
    s = FX["sets"][case["dataset"]]
    res = influence(s["yi"], s["vi"], method=case["method"], test=case["test"], control=METAFOR)
    ref = case["influence"]
    rtol = _rtol(case)
    for ours, key in (
        ("rstudent", "rstudent"), ("dffits", "dffits"), ("cook_d", "cook_d"),
        ("cov_r", "cov_r"), ("tau2_del", "tau2_del"), ("QE_del", "QE_del"), ("hat", "hat"),
        ("weight", "weight"), ("dfbetas", "dfbs"),
    ):  # fmt: skip
        _close(getattr(res, ours), ref[key], rtol, f"{case_id}: {key}")
    assert res.influential.tolist() == ref["inf"]


def test_small_and_mismatched_input() -> None:
    with pytest.raises(AnalysisError) as info:
        influence([0.1, 0.2], [0.1, 0.1])
    assert info.value.message == "influence diagnostics: needs at least 3 studies, got k = 2"
    # the one input check of the refitting diagnostics (meta.fit.check_one_analysis): the
    # stricter one that publication bias had, for influence and cumulative too
    bad = {
        "nan yi": ([0.1, float("nan"), 0.3], [0.1, 0.1, 0.1]),
        "zero vi": ([0.1, 0.2, 0.3], [0.1, 0.0, 0.1]),
        "inf vi": ([0.1, 0.2, 0.3], [0.1, float("inf"), 0.1]),
    }
    for yi, vi in bad.values():
        for func, what in ((influence, "influence diagnostics"),
                           (cumulative, "cumulative meta-analysis")):  # fmt: skip
            with pytest.raises(AnalysisError) as info:
                func(yi, vi)
            assert info.value.message == f"{what}: yi must be finite and vi finite and > 0"
    with pytest.raises(AnalysisError) as info:
        influence(["a", "b", "c"], [0.1, 0.1, 0.1])
    assert info.value.message == "influence diagnostics: yi and vi must be numeric"
    with pytest.raises(AnalysisError) as info:
        influence([0.1, 0.2, 0.3], [0.1, 0.1])
    assert info.value.message == "influence diagnostics: yi and vi must be 1-D arrays of one length"
    with pytest.raises(AnalysisError) as info:
        cumulative([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], order=[1, 2])
    assert info.value.message == "cumulative meta-analysis: one sort key per study is needed"


def test_text_keys_sort_by_code_point_and_ties_keep_data_order() -> None:
    res = cumulative([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.1, 0.3], order=["b", "B", "a", "b"])
    assert res.order.tolist() == [1, 2, 0, 3]  # 'B' < 'a' < 'b' by code point; ties stable
