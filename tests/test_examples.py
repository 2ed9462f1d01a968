"""Every folder of examples/ runs as documented: exit 0, a schema-valid log, every analysis
succeeded and its plots written; the examples give metafor's numbers: binary MH
(tests/fixtures/metafor/stats/mh_peto.json, rtol 1e-10: closed forms), proportions
(pritz1997.json's PLO and PFT with their back-transforms; mods/debruin2009.json's categorical
moderators, btt and common-tau2 subgroups) and hazard ratios from CIs (hrci.json, with exp).
REML is compared with the fixture of the control this project uses by default: metafor's
(threshold 1e-5, rtol 1e-8, the same stopping rule) or the tight one (rtol 1e-7)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.meta import Control
from tests.conftest import ROOT, InProcess, load_log

EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/spec.json"))
FIXTURES = ROOT / "tests/fixtures/metafor"
MH = {c["id"]: c for c in json.loads(
    (FIXTURES / "stats/mh_peto.json").read_text())["cases"]}  # fmt: skip


def _cases(name: str, key: str = "cases") -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in json.loads((FIXTURES / name).read_text())[key]}


def _suffix(method: str) -> tuple[str, float]:
    """The fixture id suffix and rtol for ``method`` at this project's default control."""
    if method not in ("ML", "REML"):
        return "", 1e-10
    return ("", 1e-8) if Control().threshold == 1e-5 else ("-tight", 1e-7)


def _check_proportions(results: Path) -> None:
    pritz = _cases("pritz1997.json")
    tail, rtol = _suffix("REML")
    for analysis, measure in (("pritz-plo", "PLO"), ("pritz-pft", "PFT")):
        res = json.loads((results / f"{analysis}.json").read_text())
        case = pritz[f"pritz1997-{measure}-REML-z{tail}"]
        assert res["estimate"] == pytest.approx(case["rma"]["b"], rel=rtol)
        assert res["tau2"] == pytest.approx(case["rma"]["tau2"], rel=rtol)
        back = case["transformed"]  # ilogit for PLO, ipft.hm (harmonic mean of ni) for PFT
        for ours, theirs in (("estimate", "pred"), ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"),
                             ("pi_lb", "pi_lb"), ("pi_ub", "pi_ub")):  # fmt: skip
            assert res["transformed"][ours] == pytest.approx(back[theirs], rel=rtol), ours
    mods = _cases("mods/debruin2009.json")
    res = json.loads((results / "debruin-moderators.json").read_text())
    fit = mods[f"debruin2009-ethnicity-patients-REML-z{tail}"]["fit"]
    assert [c["term"] for c in res["coefficients"]] == fit["terms"]
    assert [c["estimate"] for c in res["coefficients"]] == pytest.approx(fit["b"], rel=rtol)
    assert res["QM"] == pytest.approx(fit["QM"], rel=rtol)
    res = json.loads((results / "debruin-sens.json").read_text())
    fit = mods[f"debruin2009-sens-select-btt-REML-z{tail}"]["fit"]
    assert res["test_terms"] == ["sens[<400]"] == [fit["btt"]]
    assert res["moderator_columns"][0]["levels"] == ["400", "<400"]  # code point order
    assert res["QM"] == pytest.approx(fit["QM"], rel=rtol)
    res = json.loads((results / "debruin-subgroups.json").read_text())
    sub = _cases("mods/debruin2009.json", "subgroups")[
        f"debruin2009-patients-common_tau2-REML-z{tail}"
    ]
    assert res["subgroup_test"]["model"] == "common_tau2"
    assert res["subgroup_test"]["Q"] == pytest.approx(sub["QM"], rel=rtol)


def _check_hazard_ratios(results: Path) -> None:
    hrci = _cases("hrci.json")
    for analysis, method in (("hr-reml", "REML"), ("hr-dl", "DL")):
        tail, rtol = _suffix(method)
        res = json.loads((results / f"{analysis}.json").read_text())
        case = hrci[f"hrci-GEN-{method}-z{tail}"]
        assert res["estimate"] == pytest.approx(case["rma"]["b"], rel=rtol)
        assert res["tau2"] == pytest.approx(case["rma"]["tau2"], rel=rtol)
        back = case["transformed"]  # exp: the pooled hazard ratio
        for ours, theirs in (("estimate", "pred"), ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub")):
            assert res["transformed"][ours] == pytest.approx(back[theirs], rel=rtol), ours
        assert any("Trial H" in w and "asymmetric" in w for w in res["warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name: str, tmp_path: Path, cli: InProcess) -> None:
    folder = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, folder)
    # in process (the entry point itself is tests/test_cli.py's and the pipeline tests')
    proc = cli("run", folder / "spec.json", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = load_log(tmp_path / "out")
    assert log["status"] == "succeeded"
    spec = json.loads((folder / "spec.json").read_text())
    for entry, record in zip(spec["analyses"], log["analyses"], strict=True):
        assert record["status"] == "succeeded", record
        assert len(record["plots"]) == 2 * len(entry.get("plots", []))
    if name == "proportions":
        _check_proportions(tmp_path / "out" / "results")
    if name == "hazard-ratios":
        _check_hazard_ratios(tmp_path / "out" / "results")
    if name == "binary-mh":
        results = tmp_path / "out" / "results"
        for analysis, case in (("mh-or", "yusuf1985-MH-OR"), ("peto-or", "yusuf1985-PETO-OR"),
                               ("mh-rd", "yusuf1985-MH-RD")):  # fmt: skip
            res = json.loads((results / f"{analysis}.json").read_text())
            fit = MH[case]["fit"]
            assert res["estimate"] == pytest.approx(fit["b"], rel=1e-10)
            assert res["Q"] == pytest.approx(fit["QE"], rel=1e-10)
            assert res["k_yi"] == fit["k_yi"]
