"""`cosmo-runner runs`: listing, lost runs (kill -9, reused pid, stale heartbeat), batches,
malformed logs; `verify` and `env diff` say "lost"."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.cli import main
from cosmo_runner.runstate import LOST_AFTER_S, boot_id, liveness, process_start_ticks
from cosmo_runner.triage.runs import list_runs
from tests.conftest import EXAMPLE, InProcess, fake_dist, load_log
from tests.triage.conftest import validators_only_spec

SLOW_PLUGIN = """
import time

def sleepy(context):
    time.sleep(float(context.options.get("sleep", 0)))
    return []
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, cli: InProcess) -> Path:
    """One real, succeeded run (validators only) whose log the tests copy and edit."""
    base = tmp_path_factory.mktemp("finished")
    spec = validators_only_spec(base / "job")
    proc = cli("run", spec, "--out", base / "run")
    assert proc.returncode == 0, proc.stderr
    return base / "run"


@pytest.fixture
def make_run(finished_run: Path) -> Callable[..., Path]:
    """``make_run(parent, name, edit)``: a copy of the finished run, its log edited."""

    def make(parent: Path, name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        target = parent / name
        shutil.copytree(finished_run, target)
        if edit is not None:
            log = json.loads((target / "run_log.json").read_text(encoding="utf-8"))
            edit(log)
            (target / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
        return target

    return make


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _running(
    *, ago_s: float = 0.0, host: str | None = None, pid: int | None = None, ticks: int | None = None
) -> Callable[[dict[str, Any]], None]:
    """Edit a log into a `running` one with the given heartbeat age and writer."""

    def edit(log: dict[str, Any]) -> None:
        log.update(status="running", exit_code=None, finished_at=None, duration_s=None)
        log["updated_at"] = _stamp(datetime.now(UTC) - timedelta(seconds=ago_s))
        log["process"] = {
            "pid": pid if pid is not None else os.getpid(),
            "host": host if host is not None else socket.gethostname(),
            "boot_id": boot_id(),
            "start_ticks": ticks if ticks is not None else process_start_ticks(os.getpid()),
        }

    return edit


def _json_listing(capsys: pytest.CaptureFixture[str], *args: str | Path) -> list[dict[str, Any]]:
    assert main(["runs", *map(str, args), "--json"]) == 0
    listing: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return listing


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no such process now (pid reuse within the test is negligible)


# --------------------------------------------------------------------------- the rule


def test_live_writer_and_fresh_heartbeat_is_running(
    tmp_path: Path, make_run: Callable[..., Path]
) -> None:
    make_run(tmp_path, "live", _running())
    (entry,) = list_runs(tmp_path).entries
    assert (entry.status, entry.reason) == ("running", None)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda: _running(pid=_gone_pid()), "process {pid} on this host is gone"),
        (
            lambda: _running(ticks=(process_start_ticks(os.getpid()) or 0) + 1),
            "process {pid} on this host is gone (the pid now belongs to another process)",
        ),
    ],
    ids=["pid-gone", "pid-reused"],
)
def test_a_dead_writer_on_this_host_and_boot_is_lost(
    tmp_path: Path, make_run: Callable[..., Path], edit: Callable[[], Any], reason: str
) -> None:
    if boot_id() is None:
        pytest.skip("no /proc/sys/kernel/random/boot_id: the pid rule does not apply here")
    run = make_run(tmp_path, "dead", edit())
    before = (run / "run_log.json").read_bytes()
    (entry,) = list_runs(tmp_path).entries
    pid = json.loads(before)["process"]["pid"]
    assert (entry.status, entry.reason) == ("lost", reason.format(pid=pid))
    assert (run / "run_log.json").read_bytes() == before  # the log is not rewritten


@pytest.mark.parametrize("host", ["another-host", None], ids=["other-host", "this-host"])
def test_a_stale_heartbeat_is_lost_whatever_the_host(
    tmp_path: Path, make_run: Callable[..., Path], host: str | None
) -> None:
    make_run(tmp_path, "stale", _running(ago_s=LOST_AFTER_S + 60, host=host))
    make_run(tmp_path, "fresh", _running(ago_s=LOST_AFTER_S - 60, host="another-host"))
    fresh, stale = list_runs(tmp_path).entries
    assert (fresh.status, fresh.reason) == ("running", None)
    assert stale.status == "lost"
    assert stale.reason is not None and stale.reason.startswith("no heartbeat for 1")
    assert f"(limit {LOST_AFTER_S:.0f} s;" in stale.reason


def test_an_old_log_without_heartbeat_falls_back_to_started_at() -> None:
    old = {"status": "running", "started_at": "2020-01-01T00:00:00.000000Z"}
    assert liveness(old).lost
    assert liveness({"status": "running"}).reason == "the log records no heartbeat (updated_at)"
    assert liveness({"status": "failed"}).status == "failed"


# --------------------------------------------------------------------------- kill -9


def test_kill_9_mid_run_is_listed_lost_and_verify_and_env_diff_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: InProcess
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "cosmo_sleepy_plugin.py").write_text(SLOW_PLUGIN)
    fake_dist(
        site,
        "cosmo-sleepy-plugin",
        "0.1",
        entry_points="[cosmo_runner.validators]\nsleepy = cosmo_sleepy_plugin:sleepy\n",
    )
    spec = validators_only_spec(tmp_path / "job")
    data = json.loads(spec.read_text())
    data["validators"].append(
        {"id": "slow", "kind": "sleepy", "input": "bcg", "options": {"sleep": 300}}
    )
    spec.write_text(json.dumps(data))
    runs = tmp_path / "runs"
    out = runs / "victim"
    env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
    env["PYTHONPATH"] = str(site)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosmo_runner", "run", str(spec), "--out", str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # until the validators step has started (the inputs are logged)
            assert time.monotonic() < deadline, "the run never reached its validators"
            log_path = out / "run_log.json"
            if log_path.is_file() and json.loads(log_path.read_text()).get("inputs"):
                break
            time.sleep(0.1)
        (live,) = _json_listing(capsys, runs)
        assert (live["status"], live["path"], live["exit_code"]) == ("running", str(out), None)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    before = (out / "run_log.json").read_bytes()
    log = load_log(out)  # the last log written before the kill is complete and valid
    assert log["status"] == "running" and log["process"]["pid"] == proc.pid

    (entry,) = _json_listing(capsys, runs)
    assert entry["status"] == "lost" and entry["run_id"] == log["run_id"]
    assert entry["reason"] == f"process {proc.pid} on this host is gone"
    assert entry["spec_name"] == log["spec"]["name"]
    assert entry["env_id"] == log["environment"]["env_id"]

    assert main(["runs", str(runs)]) == 0
    text = capsys.readouterr().out
    assert f"lost: {out}: process {proc.pid} on this host is gone" in text
    assert "1 entry in" in text and ": 1 lost" in text

    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"cosmo-runner: error: {out / 'run_log.json'}: the run did not succeed (status lost, "
        f"exit None: process {proc.pid} on this host is gone); only a succeeded run can be verified"
    )
    proc_diff = cli("env", "diff", out, "current")
    assert f"(run log, status lost, env_id {log['environment']['env_id']})" in proc_diff.stdout
    assert (out / "run_log.json").read_bytes() == before  # nobody rewrote the log


# --------------------------------------------------------------------------- batches


def _batch(directory: Path, doc: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "batch_log.json").write_text(json.dumps(doc), encoding="utf-8")
    return directory


def test_a_batch_folder_is_one_entry_with_totals_and_lists_its_runs(
    tmp_path: Path, make_run: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    batch = runs / "batch-1"
    batch.mkdir(parents=True)
    make_run(batch, "a")
    make_run(batch, "b", lambda log: log.update(status="failed", exit_code=5))
    make_run(batch, "c", _running(ago_s=LOST_AFTER_S * 10, host="worker-7"))
    _batch(
        batch,
        {
            "batch_id": "batch-1",
            "status": "failed",
            "exit_code": 5,
            "started_at": "2026-12-01T08:00:00.000000Z",
            "runs": [{"path": "a"}, {"path": "b"}, {"path": "c"}, {"path": "never-started"}],
        },
    )
    make_run(runs, "single")
    (runs / "not-a-run").mkdir()  # neither log: skipped
    listed = _json_listing(capsys, runs)
    assert [(e["kind"], e["path"], e["status"]) for e in listed] == [
        ("batch", str(batch), "failed"),
        ("run", str(runs / "single"), "succeeded"),
    ]
    assert listed[0]["totals"] == {"failed": 1, "lost": 1, "succeeded": 1, "unreadable": 1}
    assert listed[0]["run_id"] == "batch-1" and listed[0]["exit_code"] == 5

    inside = _json_listing(capsys, batch)
    assert [(e["path"], e["status"]) for e in inside] == [
        (str(batch / "a"), "succeeded"),
        (str(batch / "b"), "failed"),
        (str(batch / "c"), "lost"),
        (str(batch / "never-started"), "unreadable"),
    ]
    assert inside[3]["reason"] == "no run_log.json"
    assert main(["runs", str(runs)]) == 0
    assert "failed (batch: 1 failed, 1 lost, 1 succeeded, 1 unreadable)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"status": "failed", "runs": []}, "/: 'batch_id' is a required property"),
        ({"batch_id": "b", "status": "done", "runs": []}, "/status: 'done' is not one of"),
        ({"batch_id": "b", "status": "failed", "runs": [{"run": "a"}]}, "/runs/0: 'path' is a"),
    ],
    ids=["no-id", "bad-status", "run-without-path"],
)
def test_a_malformed_batch_log_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any], problem: str
) -> None:
    batch = _batch(tmp_path / "runs" / "b1", doc)
    (entry,) = _json_listing(capsys, tmp_path / "runs")
    assert entry["status"] == "unreadable" and entry["kind"] == "batch"
    assert entry["reason"].startswith(f"batch_log.json: {problem}"), entry["reason"]
    assert main(["runs", str(batch)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cosmo-runner: error: {batch / 'batch_log.json'}: {problem}")
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- malformed logs


MALFORMED = [
    ("not-json", lambda p: p.write_text("{not json"), "not valid JSON: "),
    ("array", lambda p: p.write_text("[]"), "not a run log (not a JSON object)"),
    ("no-status", lambda p: _edit(p, lambda d: d.pop("status")), "/status: missing"),
    (
        "status-number",
        lambda p: _edit(p, lambda d: d.update(status=42)),
        "/status: expected string, got 42",
    ),
    (
        "status-unknown",
        lambda p: _edit(p, lambda d: d.update(status="done")),
        '/status: "done" is not one of running, succeeded, failed, interrupted',
    ),
    (
        "exit-code-string",
        lambda p: _edit(p, lambda d: d.update(exit_code="0")),
        '/exit_code: expected integer or null, got "0"',
    ),
    (
        "exit-code-bool",
        lambda p: _edit(p, lambda d: d.update(exit_code=True)),
        "/exit_code: expected integer or null, got true",
    ),
    (
        "environment-list",
        lambda p: _edit(p, lambda d: d.update(environment=[])),
        "/environment: expected object or null, got []",
    ),
    (
        "env-id-number",
        lambda p: _edit(p, lambda d: d["environment"].update(env_id=7)),
        "/environment/env_id: expected string or null, got 7",
    ),
    (
        "spec-name-number",
        lambda p: _edit(p, lambda d: d["spec"].update(name=3)),
        "/spec/name: expected string or null, got 3",
    ),
    (
        "process-string",
        lambda p: _edit(p, lambda d: d.update(process="pid 7")),
        '/process: expected object, got "pid 7"',
    ),
    ("no-run-id", lambda p: _edit(p, lambda d: d.pop("run_id")), "/run_id: missing"),
]


def _edit(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


@pytest.mark.parametrize(
    ("case", "problem"), [(m[:2], m[2]) for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_log_is_unreadable_in_a_listing_and_exit_2_alone(
    tmp_path: Path,
    make_run: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    case: tuple[str, Callable[[Path], None]],
    problem: str,
) -> None:
    runs = tmp_path / "runs"
    good = make_run(runs, "a-good")
    bad = make_run(runs, case[0])
    case[1](bad / "run_log.json")
    listed = _json_listing(capsys, runs)
    assert [(e["path"], e["status"]) for e in listed] == [
        (str(good), "succeeded"),
        (str(bad), "unreadable"),
    ]
    assert listed[1]["reason"].startswith(f"run_log.json: {problem}"), listed[1]["reason"]
    assert main(["runs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cosmo-runner: error: {bad / 'run_log.json'}: {problem}"), err
    assert err.count("\n") == 1


# --------------------------------------------------------------------------- DIR itself


def test_missing_or_odd_dir_exits_2_and_an_empty_one_lists_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", str(tmp_path / "nope")]) == 2
    assert (
        capsys.readouterr().err == f"cosmo-runner: error: {tmp_path / 'nope'}: no such directory\n"
    )
    (tmp_path / "file").write_text("")
    assert main(["runs", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"cosmo-runner: error: {tmp_path / 'file'}: not a directory\n"
    (tmp_path / "empty").mkdir()
    assert main(["runs", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out == f"no runs in {tmp_path / 'empty'}\n"
    assert _json_listing(capsys, tmp_path / "empty") == []


def test_default_dir_is_runs_in_the_working_directory(
    tmp_path: Path,
    make_run: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = make_run(tmp_path / "runs", "r1")
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert {"run_id", "path", "status", "exit_code"} <= set(entry)
    assert entry["path"] == "runs/r1" and entry["status"] == "succeeded" and entry["exit_code"] == 0
    assert entry["run_id"] == json.loads((run / "run_log.json").read_text())["run_id"]
    monkeypatch.chdir(EXAMPLE)  # no ./runs here
    assert main(["runs"]) == 2
    assert capsys.readouterr().err == "cosmo-runner: error: runs: no such directory\n"
