"""The in-process harness (tests/conftest.py): the same outcome as the real entry point, one
observation per distinct environment, nothing leaked into the next test."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, NOT_THIS_PYTHON, ROOT, InProcess, ReusedGate, load_log, run_cli
from tests.triage.conftest import validators_only_spec

CASES = ROOT / "tests" / "cases"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["missing-input", "broken-environment-beats-bad-spec"])
def test_in_process_and_subprocess_agree(name: str, tmp_path: Path, cli: InProcess) -> None:
    """Exit code, stdout's shape, every stderr line and the log's outcome, both ways."""
    case = tmp_path / name
    shutil.copytree(CASES / name, case)
    args = json.loads((case / "expected.json").read_text()).get("args", [])
    inside = cli("run", "spec.json", "--out", tmp_path / "a", *args, cwd=case)
    outside = run_cli("run", "spec.json", "--out", tmp_path / "b", *args, cwd=case)
    assert inside.returncode == outside.returncode != 0
    assert inside.stderr == outside.stderr
    assert (
        inside.stdout.replace(str(tmp_path / "a"), "OUT").splitlines()[1:]
        == (outside.stdout.replace(str(tmp_path / "b"), "OUT").splitlines()[1:])
    )  # the first line names the run id
    a, b = load_log(tmp_path / "a"), load_log(tmp_path / "b")
    assert (a["status"], a["exit_code"], a["error"]["type"]) == (
        b["status"],
        b["exit_code"],
        b["error"]["type"],
    )


def test_one_observation_per_distinct_environment(tmp_path: Path) -> None:
    gate = ReusedGate()
    cli = InProcess(gate)
    spec = validators_only_spec(tmp_path / "work")
    for n in range(3):
        proc = cli("validate", spec, "--out", tmp_path / f"v{n}")
        assert proc.returncode == 0, proc.stderr
    assert (gate.observed, gate.checked) == (1, 1)
    logs = [load_log(tmp_path / f"v{n}") for n in range(3)]
    assert len({log["environment"]["env_id"] for log in logs}) == 1
    assert len({log["run_id"] for log in logs}) == 3

    # another variable: a real, fresh observation that records it
    proc = cli("validate", spec, "--out", tmp_path / "tz", env={"TZ": "Pacific/Chatham"})
    assert proc.returncode == 0, proc.stderr
    assert gate.observed == 2
    assert load_log(tmp_path / "tz")["environment"]["observed"]["env_vars"]["TZ"] == (
        "Pacific/Chatham"
    )

    # another manifest: observed and checked afresh, and its verdict is its own (exit 3)
    data = json.loads((ROOT / "environment.manifest.json").read_text())
    data["python"]["specifier"] = NOT_THIS_PYTHON
    shutil.copy(ROOT / "requirements.lock.txt", tmp_path / "requirements.lock.txt")
    manifest = tmp_path / "environment.manifest.json"
    manifest.write_text(json.dumps(data))
    proc = cli("validate", spec, "--out", tmp_path / "m", "--manifest", manifest)
    assert proc.returncode == 3, proc.stderr
    assert (gate.observed, gate.checked) == (3, 3)
    # the same path with other bytes is another environment too
    data["python"]["specifier"] = ">=3.11"
    manifest.write_text(json.dumps(data))
    proc = cli("validate", spec, "--out", tmp_path / "m2", "--manifest", manifest)
    assert proc.returncode == 0, proc.stderr
    assert gate.observed == 4


def test_the_next_test_reuses_the_observation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pytest names each test in PYTEST_CURRENT_TEST: not a change of environment, and not
    in the snapshot either."""
    gate = ReusedGate()
    cli = InProcess(gate)
    spec = validators_only_spec(tmp_path / "work")
    for n, name in enumerate(["tests/a.py::test_a (call)", "tests/b.py::test_b (setup)"]):
        monkeypatch.setenv("PYTEST_CURRENT_TEST", name)
        assert cli("validate", spec, "--out", tmp_path / f"v{n}").returncode == 0
    assert (gate.observed, gate.checked) == (1, 1)
    observed = load_log(tmp_path / "v1")["environment"]["observed"]
    assert "PYTEST_CURRENT_TEST" not in json.dumps(observed)


def test_a_run_cannot_change_what_the_next_run_observes(tmp_path: Path) -> None:
    gate = ReusedGate()
    first = gate.observe(None, tmp_path)
    first.observed["packages"].append("planted==1")
    first.observed["python"]["version"] = "0.0"
    second = gate.observe(None, tmp_path)
    assert "planted==1" not in second.observed["packages"]
    assert second.observed["python"]["version"] != "0.0"
    assert gate.observed == 1


def test_nothing_leaks_out_of_an_in_process_call(tmp_path: Path, cli: InProcess) -> None:
    cwd, umask = os.getcwd(), os.umask(0o022)
    os.umask(umask)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    log_handlers = list(logging.getLogger().handlers)
    shutil.copytree(EXAMPLE, tmp_path / "bcg")
    proc = cli("validate", "spec.json", cwd=tmp_path / "bcg", env={"COSMO_TEST_MARK": "1"})
    assert proc.returncode == 0, proc.stderr
    assert "validator bcg-table: passed" in proc.stdout
    assert os.getcwd() == cwd
    assert "COSMO_TEST_MARK" not in os.environ
    assert os.umask(umask) == umask
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert logging.getLogger().handlers == log_handlers


def test_interpreter_start_variables_are_refused_in_process(cli: InProcess) -> None:
    with pytest.raises(AssertionError, match="PYTHONPATH needs a subprocess"):
        cli("--version", env={"PYTHONPATH": "/nowhere"})
