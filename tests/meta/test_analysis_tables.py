"""analyse() with method MH / PETO: result keys, metafor's values, what is null and why.

Values from tests/fixtures/metafor/stats/mh_peto.json (metafor 3.8 rma.mh / rma.peto,
leave1out, regtest); rtol 1e-10 for the closed forms, 1e-8 for Egger (a weighted
least-squares fit by another route than metafor's).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmo_runner import spec as spec_module
from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import RESULT_KEYS, analyse
from cosmo_runner.meta.analysis import CORE_KEYS
from cosmo_runner.meta.mantel_haenszel import MEASURES_BY_METHOD

FX: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures/metafor/stats/mh_peto.json").read_text()
)
CASES = {case["id"]: case for case in FX["cases"]}


def _table(name: str) -> dict[str, list[str]]:
    t = FX["tables"][name]
    return {
        "study": [str(s) for s in t["study"]],
        **{cell: [str(int(x)) for x in t[cell]] for cell in ("ai", "bi", "ci", "di")},
    }


def _spec(method: str, measure: str, **extra: Any) -> dict[str, Any]:
    return {"id": "a", "input": "t", "measure": measure, "method": method, **extra}


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


PAIRS = [(m, s) for m, measures in MEASURES_BY_METHOD.items() for s in measures]


@pytest.mark.parametrize("dataset", ["bcg", "nielweise2007", "yusuf1985"])
@pytest.mark.parametrize(("method", "measure"), PAIRS)
def test_matches_metafor(dataset: str, method: str, measure: str) -> None:
    case = CASES[f"{dataset}-{method}-{measure}"]
    fit = case["fit"]
    res = analyse(_spec(method, measure), _table(dataset))
    assert set(res) <= set(RESULT_KEYS)
    for key in CORE_KEYS:
        assert key in res, key
    assert _plain(res)
    for ours, theirs in (
        ("estimate", "b"), ("se", "se"), ("statistic", "zval"), ("pval", "pval"),
        ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"), ("Q", "QE"), ("Q_pval", "QEp"), ("I2", "I2"),
        ("H2", "H2"),
    ):  # fmt: skip
        assert res[ours] == pytest.approx(fit[theirs], rel=1e-10, abs=1e-14), ours
    assert (res["k"], res["k_yi"], res["Q_df"]) == (fit["k"], fit["k_yi"], fit["k_yi"] - 1)
    assert (res["method"], res["test"], res["df"], res["tau2"]) == (method, None, None, 0.0)
    assert res["algorithm"] == {"MH": "Mantel-Haenszel", "PETO": "Peto"}[method]
    assert res["pi_lb"] is None and res["pi_ub"] is None
    assert res["tau2_ci"] is None and res["I2_ci"] is None
    weights = [s["weight_percent"] for s in res["studies"]]
    np.testing.assert_allclose(weights, fit["weights"], rtol=1e-10)
    yi = [s["yi"] for s in res["studies"] if s["yi"] is not None]
    np.testing.assert_allclose(yi, fit["yi"], rtol=1e-10)
    l1o = case["leave1out"]
    for key in ("estimate", "se", "pval", "ci_lb", "ci_ub", "Q", "I2"):
        np.testing.assert_allclose(
            [row[key] for row in res["leave_one_out"]], l1o[key], rtol=1e-10, atol=1e-14,
            err_msg=key,
        )  # fmt: skip
    rt = case["regtest"]
    assert res["egger"]["statistic"] == pytest.approx(rt["zval"], rel=1e-8)
    assert res["egger"]["pval"] == pytest.approx(rt["pval"], rel=1e-8)
    assert res["egger"]["limit_estimate"] == pytest.approx(rt["est"], rel=1e-8)
    if measure in ("OR", "RR"):
        tr = case["transformed"]
        assert res["transformed"]["estimate"] == pytest.approx(tr["pred"], rel=1e-10)
        assert res["transformed"]["ci_lb"] == pytest.approx(tr["ci_lb"], rel=1e-10)
    else:
        assert res["transformed"] is None


def test_double_zero_studies_have_no_outcome_and_are_named() -> None:
    res = analyse(_spec("MH", "OR"), _table("yusuf1985"))
    none = [s["label"] for s in res["studies"] if s["yi"] is None]
    assert none == ["Pitt 1.12", "Hutton 1.15", "Yusuf 2.2"]
    assert all(s["vi"] is None for s in res["studies"] if s["yi"] is None)
    assert res["dropped_studies"] == []
    assert res["warnings"][0] == (
        "3 double-zero studies have no individual outcome (out of Q, df = k_yi - 1; kept in "
        "the Mantel-Haenszel sums): 'Pitt 1.12', 'Hutton 1.15', 'Yusuf 2.2'"
    )
    assert "Gupta 1.17" in res["added_half"] and "Pitt 1.12" not in res["added_half"]


def test_drop00_false_keeps_the_corrected_outcomes_in_q() -> None:
    res = analyse(_spec("MH", "RD", drop00=False), _table("yusuf1985"))
    fit = CASES["yusuf1985-MH-RD-keep00"]["fit"]
    assert res["k_yi"] == fit["k_yi"] == 21
    assert res["Q"] == pytest.approx(fit["QE"], rel=1e-10)
    assert res["estimate"] == pytest.approx(fit["b"], rel=1e-10)


def test_undefined_leave_one_out_rows_are_null_with_a_reason() -> None:
    # noevents1 by RD is defined; by PETO too; its MH RR is not (no events in group 1)
    with pytest.raises(AnalysisError) as info:
        analyse(_spec("MH", "RR"), _table("noevents1"))
    assert info.value.message == (
        "analysis 'a': Mantel-Haenszel risk ratio undefined: no events in one of the groups "
        "(ai or ci is 0 in every study)"
    )
    table = _table("bcg")
    table["ai"] = ["0"] * 12 + ["5"]  # only the last study has events in group 1
    res = analyse(_spec("MH", "RR"), table)
    rows = res["leave_one_out"]
    assert rows[-1]["estimate"] is None and rows[0]["estimate"] is not None
    last = table["study"][-1]
    assert f"leave-one-out without {last!r}: Mantel-Haenszel risk ratio undefined" in "\n".join(
        res["warnings"]
    )


def test_n1i_n2i_columns_work_as_for_escalc() -> None:
    t = FX["tables"]["bcg"]
    table = {
        "study": t["study"],
        "ai": [str(int(x)) for x in t["ai"]],
        "n1i": [str(int(a + b)) for a, b in zip(t["ai"], t["bi"], strict=True)],
        "ci": [str(int(x)) for x in t["ci"]],
        "n2i": [str(int(c + d)) for c, d in zip(t["ci"], t["di"], strict=True)],
    }
    res = analyse(_spec("PETO", "OR"), table)
    assert res["estimate"] == pytest.approx(CASES["bcg-PETO-OR"]["fit"]["b"], rel=1e-10)


def test_bad_counts_name_the_study() -> None:
    table = _table("bcg")
    table["ai"][2] = "-1"
    with pytest.raises(AnalysisError) as info:
        analyse(_spec("MH", "OR"), table)
    assert info.value.message == (
        "analysis 'a': 2x2 cell counts must be finite and non-negative (table line 4 (study "
        f"{table['study'][2]!r}))"
    )


def test_spec_rules_for_table_methods() -> None:
    assert spec_module.TABLE_METHODS == MEASURES_BY_METHOD
    base = {
        "spec_version": 1,
        "name": "mh-rules",
        "inputs": {"t": {"path": "t.csv"}},
        "analyses": [
            _spec("PETO", "RR", test="z"),
            _spec("MH", "OR", moderators=["x"], columns={"subgroup": "g"}),
            _spec("MH", "SMD"),
        ],
    }
    for i, entry in enumerate(base["analyses"]):
        entry["id"] = f"a{i}"
    assert spec_module.problems(base) == [
        "/analyses/0/measure: method PETO pools 2x2 tables of OR, not 'RR'",
        "/analyses/0/test: method PETO takes no test (always a z statistic, as metafor's "
        "rma.mh and rma.peto)",
        "/analyses/1/moderators: method MH fits no moderators (use an inverse-variance method "
        "such as REML)",
        "/analyses/1/columns/subgroup: method MH has no subgroup analysis here (use an "
        "inverse-variance method)",
        "/analyses/2/measure: method MH pools 2x2 tables of OR, RR, RD, not 'SMD'",
    ]
