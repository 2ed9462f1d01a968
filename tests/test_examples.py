"""Every folder of examples/ runs as documented: exit 0, a schema-valid log, every analysis
succeeded and its plots written; the binary MH example gives metafor's numbers
(tests/fixtures/metafor/stats/mh_peto.json, rtol 1e-10: closed forms)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_log, run_cli

EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/spec.json"))
MH = {c["id"]: c for c in json.loads(
    (ROOT / "tests/fixtures/metafor/stats/mh_peto.json").read_text())["cases"]}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name: str, tmp_path: Path) -> None:
    folder = tmp_path / name
    shutil.copytree(ROOT / "examples" / name, folder)
    proc = run_cli("run", folder / "spec.json", "--out", tmp_path / "out", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = load_log(tmp_path / "out")
    assert log["status"] == "succeeded"
    spec = json.loads((folder / "spec.json").read_text())
    for entry, record in zip(spec["analyses"], log["analyses"], strict=True):
        assert record["status"] == "succeeded", record
        assert len(record["plots"]) == 2 * len(entry.get("plots", []))
    if name == "binary-mh":
        results = tmp_path / "out" / "results"
        for analysis, case in (("mh-or", "yusuf1985-MH-OR"), ("peto-or", "yusuf1985-PETO-OR"),
                               ("mh-rd", "yusuf1985-MH-RD")):  # fmt: skip
            res = json.loads((results / f"{analysis}.json").read_text())
            fit = MH[case]["fit"]
            assert res["estimate"] == pytest.approx(fit["b"], rel=1e-10)
            assert res["Q"] == pytest.approx(fit["QE"], rel=1e-10)
            assert res["k_yi"] == fit["k_yi"]
