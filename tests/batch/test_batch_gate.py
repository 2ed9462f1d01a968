"""Exit 3: the client's own gate fails, or no worker matches the expected env id."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from tests.batch.helpers import K, batch, batch_log, committed
from tests.batch.specgen import generate_specs
from tests.gates import ReusedGate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_the_clients_own_gate_failing_is_exit_3_with_a_complete_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    specs = generate_specs(tmp_path / "specs", 3, k=K)
    out = tmp_path / "out"
    missing = tmp_path / "no-manifest.json"
    code, _, err = batch(capsys, reused_gate, *specs, "--out", out, "--manifest", missing)
    assert code == 3
    (line,) = err.splitlines()
    assert line.startswith("cosmo-runner: error: environment gate failed: "), line
    assert str(missing) in line
    doc = batch_log(out)
    assert (doc["status"], doc["exit_code"], doc["cluster"]) == ("failed", 3, None)
    assert {e["status"] for e in doc["specs"]} == {"interrupted"}  # never ran
    assert committed(out) == []
    assert doc["report"] == {"path": "report.html", "error": None}
    assert (out / "report.html").is_file()
    # a page that cannot be written is recorded, and a failed batch keeps its own exit code
    (out / "report.html").unlink()
    (out / "report.html").mkdir()
    code, _, err = batch(
        capsys, reused_gate, *specs, "--out", out, "--manifest", missing, "--resume"
    )
    assert (code, err) == (3, f"{line}\n")
    doc = batch_log(out)
    assert (doc["status"], doc["exit_code"], doc["error"]["type"]) == (
        "failed",
        3,
        "EnvironmentGateError",
    )
    assert doc["report"]["error"]["type"] == "OutputWriteError"
    assert doc["report"]["error"]["message"].startswith(f"cannot write {out / 'report.html'}: ")


@pytest.mark.usefixtures("forked_workers")
def test_no_worker_with_the_expected_env_id_is_exit_3_and_lists_them_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    specs = generate_specs(tmp_path / "specs", 3, k=K)
    out = tmp_path / "out"
    code, _, err = batch(
        capsys,
        reused_gate,
        *specs,
        "--out",
        out,
        "--workers",
        "2",
        "--expect-env-id",
        "0123456789abcdef",
    )
    assert code == 3
    doc = batch_log(out)
    workers = doc["workers"]
    assert len(workers) >= 2 and {w["status"] for w in workers} == {"refused"}
    reason = f"env id {doc['client_env_id']} differs from the expected 0123456789abcdef"
    assert {w["reason"] for w in workers} == {reason}
    assert {w["specs"] for w in workers} == {0}
    # nannies restart refused local workers: the count in the message is the one at the time
    assert re.fullmatch(
        r"cosmo-runner: error: environment gate failed: no worker passed the environment check "
        rf"\(\d+ refused\): {re.escape(workers[0]['name'])}: {re.escape(reason)}\n",
        err,
    ), err
    assert doc["expected_env_id"] == "0123456789abcdef"
    assert committed(out) == []


def test_the_client_gates_itself_through_mains_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cli.main(gate=...)`` reaches the batch's client, as it reaches a run (the suite's
    session-reused gate relies on it); the verdict is the gate's."""
    from cosmo_runner.env.gate import Gate
    from cosmo_runner.env.smoke import Check, SmokeReport

    class Refusing(Gate):
        def __init__(self) -> None:
            self.seen: list[Any] = []  # the manifest of each snapshot checked

        def check(self, state: Any, **options: Any) -> SmokeReport:
            self.seen.append(state.manifest_path)
            report = super().check(state, **options)
            refusal = Check("test", "error", "refused by the test's gate")
            return dataclasses.replace(report, checks=[*report.checks, refusal])

    specs = generate_specs(tmp_path / "specs", 1, k=K)
    gate = Refusing()
    code, _, err = batch(capsys, gate, *specs, "--out", tmp_path / "out")
    assert len(gate.seen) == 1
    assert (code, err) == (
        3,
        "cosmo-runner: error: environment gate failed: refused by the test's gate\n",
    )
    assert batch_log(tmp_path / "out")["cluster"] is None  # no worker was started
