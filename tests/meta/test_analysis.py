"""analyse(): the pipeline's interface, on the BCG example and on bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.meta.metafor import METAFOR

from cosmo_runner.errors import AnalysisError, StepError
from cosmo_runner.meta import RESULT_KEYS, analyse, subgroups
from cosmo_runner.meta.analysis import CORE_KEYS
from cosmo_runner.meta.result_file import Records, dumps_result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metafor"


def _bcg_table() -> dict[str, list[str]]:
    data = json.loads((FIXTURES / "bcg.json").read_text())["data"]
    table = {
        "trial": [str(s) for s in data["study"]],
        "tpos": [str(x) for x in data["ai"]],
        "tneg": [str(x) for x in data["bi"]],
        "cpos": [str(x) for x in data["ci"]],
        "cneg": [str(x) for x in data["di"]],
        "ablat": [str(x) for x in data["ablat"]],
    }
    table["zone"] = ["far" if float(a) > 33 else "near" for a in table["ablat"]]
    return table


BCG_SPEC: dict[str, Any] = {
    "id": "bcg",
    "input": "bcg",
    "measure": "RR",
    "columns": {"ai": "tpos", "bi": "tneg", "ci": "cpos", "di": "cneg", "study": "trial"},
}


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Records):  # per-study columns: plain once listed, as written
        return _plain(value.tolist())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def test_bcg_result_has_every_key_and_metafor_values() -> None:
    res = analyse(BCG_SPEC, _bcg_table())
    for key in (*CORE_KEYS, "measure", "studies", "tau2_ci", "I2_ci", "H2_ci"):
        assert key in res, key
    for key in ("leave_one_out", "egger", "transformed"):
        assert res[key] is not None, key
    assert set(res) <= set(RESULT_KEYS)
    assert _plain(res)
    json.loads(dumps_result(res))  # the results file's writer takes it (no NaN)
    assert res["k"] == 13
    assert res["df"] is None
    assert res["estimate"] == pytest.approx(-0.714532, abs=1e-6)
    assert res["tau2"] == pytest.approx(0.313243, abs=1e-6)
    assert res["H2"] == pytest.approx(12.8558, abs=1e-4)
    assert (res["tau2_ci"]["lb"], res["tau2_ci"]["ub"]) == pytest.approx((0.1197, 1.1115), abs=1e-4)
    # the notes quote confint with uniroot's default tol (1.2e-4 on tau2, ~3e-3 on I2 here);
    # the tight comparison is in test_metafor_fixtures
    assert (res["I2_ci"]["lb"], res["I2_ci"]["ub"]) == pytest.approx((81.9177, 97.6781), abs=5e-3)
    assert res["egger"]["statistic"] == pytest.approx(-0.8033, abs=1e-4)
    assert res["egger"]["pval"] == pytest.approx(0.4218, abs=1e-4)
    assert res["transformed"]["estimate"] == pytest.approx(math.exp(res["estimate"]))
    assert res["transformed"]["pi_ub"] == pytest.approx(math.exp(res["pi_ub"]))
    assert res["studies"][0]["label"] == "Aronson 1948"
    assert sum(s["weight_percent"] for s in res["studies"]) == pytest.approx(100.0)
    assert len(res["leave_one_out"]) == 13
    assert res["leave_one_out"][0]["label"] == "Aronson 1948"
    assert res["algorithm"] == "fisher-scoring"
    assert res["converged"] is True


def test_results_are_deterministic() -> None:
    a = dumps_result(analyse(BCG_SPEC, _bcg_table()))
    b = dumps_result(analyse(BCG_SPEC, _bcg_table()))
    assert a == b


def test_moderators_knha_and_subgroups() -> None:
    # the notes' values are metafor's at its default control
    spec = dict(BCG_SPEC, moderators=["ablat"], test="knha", control=METAFOR)
    spec["columns"] = dict(BCG_SPEC["columns"], subgroup="zone")
    res = analyse(spec, _bcg_table())
    assert _plain(res)
    ablat = res["coefficients"][1]
    assert [c["term"] for c in res["coefficients"]] == ["intrcpt", "ablat"]
    assert ablat["se"] == pytest.approx(0.008202, abs=1e-6)
    assert ablat["statistic"] == pytest.approx(-3.5483, abs=1e-4)
    assert res["QM"] == pytest.approx(12.5905, abs=1e-4)
    assert res["QM_df"] == [1, 11]
    assert res["QE"] == pytest.approx(30.7331, abs=1e-4)
    assert res["QE_df"] == 11
    assert res["R2"] == pytest.approx(75.6245, abs=1e-4)
    assert res["moderator_converged"] is True
    assert res["moderator_iterations"] > 0
    assert res["moderator_algorithm"] == "fisher-scoring"
    groups = [g["group"] for g in res["subgroups"]]
    assert groups == ["far", "near"]
    assert all(set(CORE_KEYS) <= set(g) for g in res["subgroups"])
    far = res["subgroups"][0]
    assert len(far["studies"]) == far["k"]
    assert sum(s["weight_percent"] for s in far["studies"]) == pytest.approx(100.0)
    assert sum(g["k"] for g in res["subgroups"]) == res["k"]
    # the test of subgroup differences: Q between on the subgroup estimates
    est = np.array([g["estimate"] for g in res["subgroups"]])
    w = 1.0 / np.array([g["se"] for g in res["subgroups"]]) ** 2
    q = float((w * (est - (w * est).sum() / w.sum()) ** 2).sum())
    assert res["subgroup_test"]["Q"] == pytest.approx(q, rel=1e-12)
    assert res["subgroup_test"]["df"] == 1


@pytest.mark.parametrize("test", ["t", "adhoc"])
def test_tests_t_and_adhoc_in_a_spec(test: str) -> None:
    """A spec's ``test`` reaches the fit, its moderator model and its diagnostics: t(k - p)
    everywhere, an F test of the moderators (metafor's tests-bcg fixture values; its tight
    cases, which the converged default reproduces at the tight fixtures' rtol 1e-7)."""
    fx = json.loads((FIXTURES / "tests-bcg.json").read_text())
    ref = {c["id"]: c for c in fx["cases"]}
    res = analyse(dict(BCG_SPEC, test=test), _bcg_table())
    case = ref[f"bcg-RR-REML-{test}-tight"]
    assert res["test"] == test and res["df"] == 12
    assert res["se"] == pytest.approx(case["rma"]["se"], rel=1e-7)
    assert res["pi_lb"] == pytest.approx(case["predict"]["pi_lb"], rel=1e-7)
    l1o = [row["pval"] for row in res["leave_one_out"]]
    assert l1o == pytest.approx(case["leave1out"]["pval"], rel=1e-7)
    mods = analyse(dict(BCG_SPEC, test=test, moderators=["ablat"]), _bcg_table())
    case = ref[f"bcg-RR-ablat-REML-{test}-tight"]
    assert mods["QM_df"] == [1, 11]
    assert mods["QM"] == pytest.approx(case["rma"]["QM"], rel=1e-7)
    assert mods["coefficients"][1]["se"] == pytest.approx(case["rma"]["se"][1], rel=1e-7)


def test_same_named_columns_and_n1i_alternative() -> None:
    t = _bcg_table()
    table = {"ai": t["tpos"], "ci": t["cpos"]}
    table["n1i"] = [str(int(a) + int(b)) for a, b in zip(t["tpos"], t["tneg"], strict=True)]
    table["n2i"] = [str(int(a) + int(b)) for a, b in zip(t["cpos"], t["cneg"], strict=True)]
    res = analyse({"id": "alt", "input": "x", "measure": "RR", "method": "DL"}, table)
    assert res["tau2"] == pytest.approx(0.308760, abs=1e-6)
    assert res["studies"][0]["label"] == "Study 1"


def test_ee_has_no_heterogeneity_interval_and_k2_has_no_diagnostics() -> None:
    res = analyse(dict(BCG_SPEC, method="EE", test="knha"), _bcg_table())
    assert res["tau2_ci"] is None
    assert res["tau2_se"] is None
    assert any("Knapp & Hartung" in w for w in res["warnings"])
    table = {"yi": ["0.2", "0.9"], "vi": ["0.04", "0.09"]}
    k2 = analyse({"id": "k2", "input": "x", "measure": "GEN"}, table)
    assert k2["leave_one_out"] is None
    assert k2["egger"] is None
    assert k2["transformed"] is None
    assert _plain(k2)


def test_identical_effects_with_knha_report_null_not_nan() -> None:
    table = {"yi": ["0.3"] * 4, "vi": ["0.1", "0.2", "0.3", "0.4"]}
    res = analyse({"id": "same", "input": "x", "measure": "GEN", "test": "knha"}, table)
    assert res["se"] == 0.0
    assert res["statistic"] is None
    assert any("standard error is 0" in w for w in res["warnings"])
    assert res["egger"] is None  # all sei differ, but s2w = 0 makes the test undefined
    assert any("Egger" in w for w in res["warnings"])
    json.loads(dumps_result(res))  # the results file's writer takes it (no NaN)


def test_drop00_lists_dropped_studies() -> None:
    table = {
        "ai": ["0", "3", "5", "2"], "bi": ["10", "7", "5", "8"],
        "ci": ["0", "1", "4", "0"], "di": ["10", "9", "6", "10"],
        "study": ["A", "B", "C", "D"],
    }  # fmt: skip
    res = analyse({"id": "d", "input": "x", "measure": "OR", "drop00": True}, table)
    assert res["dropped_studies"] == ["A"]
    assert res["added_half"] == ["D"]
    assert res["k"] == 3
    kept = analyse({"id": "d", "input": "x", "measure": "OR"}, table)
    assert kept["k"] == 4
    assert kept["added_half"] == ["A", "D"]


@pytest.mark.parametrize(
    ("spec", "table", "message"),
    [
        ({"measure": "RR"}, {"ai": ["1"], "bi": ["2"], "ci": ["1"]}, "needs 'di'"),
        (
            {"measure": "GEN"},
            {"yi": ["0.1", "x"], "vi": ["1", "1"]},
            "table line 3, column yi \\(yi\\): 'x' is not a number",
        ),
        (
            {"measure": "GEN", "columns": {"study": "s"}},
            {"yi": ["0.1", "0.2"], "vi": ["1", "1_0"], "s": ["A", "B"]},
            "table line 3 \\(study 'B'\\), column vi \\(vi\\): '1_0' is not a number",
        ),
        ({"measure": "GEN"}, {"yi": ["0.1", "0.2"], "vi": ["1", "nan"]}, "'nan' is not a number"),
        ({"measure": "GEN"}, {"yi": ["0.1"], "vi": ["1"]}, "at least 2 studies"),
        (
            {"measure": "GEN"},
            {"yi": ["0.1", "0.2"], "vi": ["1", "-1"]},
            "vi -1 must be > 0 \\(table line 3\\)",
        ),
        ({"measure": "GEN"}, {"yi": ["0.1", "0.2"], "vi": ["1", "1e999"]}, "not finite"),
        (
            {"measure": "RR", "columns": {"study": "s"}},
            {
                "ai": ["1", "0"],
                "bi": ["2", "0"],
                "ci": ["1", "1"],
                "di": ["1", "1"],
                "s": ["A", "B"],
            },
            "each arm needs at least one participant \\(table line 3 \\(study 'B'\\)\\)",
        ),
        (
            {"measure": "GEN", "moderators": ["x"]},
            {"yi": ["1", "2"], "vi": ["1", "1"]},
            "moderator column 'x'",
        ),
        (
            {"measure": "GEN", "columns": {"subgroup": "g"}},
            {"yi": ["1", "2", "3"], "vi": ["1", "1", "1"], "g": ["a", "a", "b"]},
            "fewer than 2",
        ),
        (
            {"measure": "GEN", "method": "XX"},
            {"yi": ["1", "2"], "vi": ["1", "1"]},
            "unknown method",
        ),
    ],
)
def test_errors_name_the_analysis(
    spec: dict[str, Any], table: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(AnalysisError, match=message) as info:
        analyse({"id": "a1", "input": "x", **spec}, table)
    assert str(info.value).startswith("analysis 'a1': ")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, StepError)
    assert info.value.exit_code == 5


def test_subgroups_need_two_groups() -> None:
    with pytest.raises(AnalysisError, match="at least 2 subgroups"):
        subgroups([0.1, 0.2], [1.0, 1.0], ["a", "a"])


def test_importing_cosmo_runner_does_not_import_numpy() -> None:
    code = "import sys, cosmo_runner; assert 'numpy' not in sys.modules, 'numpy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, cosmo_runner.meta; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_leave_one_out_is_skipped_above_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    import cosmo_runner.meta.analysis as analysis_mod

    monkeypatch.setattr(analysis_mod, "LEAVE1OUT_MAX_K", 5)
    rng = np.random.default_rng(2)
    table = {"yi": [str(x) for x in rng.normal(size=8)], "vi": ["0.1"] * 4 + ["0.2"] * 4}
    res = analyse({"id": "big", "input": "x", "measure": "GEN", "method": "DL"}, table)
    assert res["leave_one_out"] is None
    assert any("leave-one-out not computed: k = 8 > 5" in w for w in res["warnings"])
    assert res["egger"] is not None


def test_an_escalc_error_after_a_dropped_row_names_the_file_line() -> None:
    """The rows a validator drops keep their file lines in the analysis's messages.

    (The validator applies the same rules, so in a run this empty arm is its finding; here
    the analysis meets it alone, as a library caller without a validator would.)
    """
    from cosmo_runner.tables import parse_csv

    text = "study,ai,bi,ci,di\nA,4,119,11,128\nB,,300,29,274\nC,0,0,248,12619\nD,3,228,11,209\n"
    table = parse_csv(text.encode(), Path("bcg.csv"))
    kept = table.subset(np.array([True, False, True, True]))
    with pytest.raises(AnalysisError) as info:
        analyse({"id": "reml", "measure": "RR"}, kept)
    assert info.value.message == (
        "analysis 'reml': escalc: each arm needs at least one participant "
        "(bcg.csv line 4 (study 'C'))"
    )
