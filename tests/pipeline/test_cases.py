"""Every scenario folder under tests/cases/ (see its README) as one end-to-end test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import InProcess, load_log

CASES = Path(__file__).resolve().parents[1] / "cases"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "expected.json").is_file())


def test_there_are_cases_for_every_exit_code() -> None:
    codes = {json.loads((CASES / n / "expected.json").read_text())["exit_code"] for n in NAMES}
    assert codes == {0, 2, 3, 4, 5}


@pytest.mark.parametrize("name", NAMES)
def test_case(name: str, tmp_path: Path, cli: InProcess) -> None:
    case = tmp_path / name
    shutil.copytree(CASES / name, case)
    expected = json.loads((case / "expected.json").read_text())
    out = tmp_path / "out"
    proc = cli("run", "spec.json", "--out", out, *expected.get("args", []), cwd=case)
    assert proc.returncode == expected["exit_code"], proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    error_lines = [
        line for line in proc.stderr.splitlines() if line.startswith("cosmo-runner: error: ")
    ]
    for fragment in expected.get("stderr", []):
        assert any(fragment in line for line in error_lines), (fragment, proc.stderr)
    log = load_log(out)  # complete and valid against the published schema
    assert log["report"] == {"path": "report.html", "error": None}  # in every run directory
    assert (out / "report.html").is_file()
    assert log["status"] == expected["status"]
    assert log["exit_code"] == expected["exit_code"]
    assert log["environment"]["observed"]["packages"], "the snapshot is in every log"
    assert (out / "spec.json").read_bytes() == (case / "spec.json").read_bytes()
    if expected["exit_code"] == 0:
        assert log["error"] is None
    else:
        assert log["error"]["type"] == expected["error_type"]
        assert "Traceback" in log["error"]["traceback"]
    if expected["exit_code"] in (2, 3, 4):
        assert log["analyses"] == [], (
            "no analysis runs after a gate, spec, input or validator failure"
        )
    messages = [f["message"] for v in log["validators"] for f in v["findings"]]
    for message in expected.get("findings", []):
        assert message in messages
    warnings = [
        f["message"] for v in log["validators"] for f in v["findings"] if f["level"] == "warning"
    ]
    for message in expected.get("warnings", []):
        assert message in warnings
    statuses = {v["id"]: v["status"] for v in log["validators"]}
    for validator_id, status in expected.get("validator_status", {}).items():
        assert statuses[validator_id] == status, log["validators"]
    for analysis_id, k in expected.get("analysis_k", {}).items():
        result = json.loads((out / "results" / f"{analysis_id}.json").read_text())
        assert result["k"] == k
