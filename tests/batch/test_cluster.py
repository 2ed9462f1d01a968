"""A cluster of our own processes: ``cosmo-runner scheduler``, gated ``cosmo-runner worker``s,
a drifted worker (a venv copy with jsonschema at another version) and one started without
the gate; one good worker is killed with SIGKILL in mid-batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmo_runner.batch.client import BatchOptions, run_batch
from tests.batch.conftest import QUIET_DASK_ENVIRONMENT
from tests.batch.helpers import K, batch_log, by_key, committed, events
from tests.batch.specgen import generate_specs
from tests.envcopy import ONE_AT_A_TIME, VenvCopy
from tests.gates import ReusedGate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEADLINE_S = 3  # the ungated worker is refused this long after it registered


class Processes:
    """Processes this test started; every one is stopped by its pid at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full = {k: v for k, v in os.environ.items() if k not in ("COSMO_MANIFEST", "PYTHONPATH")}
        full.update(QUIET_DASK_ENVIRONMENT)
        full.update(env or {})
        proc = subprocess.Popen(
            [str(a) for a in args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=full,
            cwd="/",
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def _first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def _counts(address: str) -> dict[str, int]:
    from distributed import Client

    from cosmo_runner.batch.scheduler import accepted_count

    with Client(address, timeout=30) as client:
        counts: dict[str, int] = client.run_on_scheduler(accepted_count)
    return counts


def _wait_for(address: str, wanted: dict[str, int], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = _counts(address)
        if counts == wanted:
            return
        time.sleep(0.5)
    raise AssertionError(f"workers {counts}, wanted {wanted}")


@ONE_AT_A_TIME  # its venv copy (tests/envcopy.py)
def test_drifted_and_ungated_workers_run_nothing_and_a_killed_worker_costs_nothing(  # noqa: PLR0915 - one scenario: cluster, batch, every worker's fate, shutdown
    tmp_path: Path, processes: Processes, reused_gate: ReusedGate
) -> None:
    drifted_venv = VenvCopy(tmp_path / "drifted-venv")
    drifted_venv.set_version("jsonschema", "4.25.1")
    scheduler = processes.start(
        sys.executable, "-m", "cosmo_runner", "scheduler", "--port", "0",
        "--worker-deadline", str(DEADLINE_S),
    )  # fmt: skip
    line = _first_line(scheduler)
    assert line.startswith("cosmo-runner scheduler at tcp://127.0.0.1:"), line
    address = line.rsplit(" ", 1)[1]
    worker = (sys.executable, "-m", "cosmo_runner", "worker", address)
    good = [processes.start(*worker), processes.start(*worker)]
    drifted = processes.start(drifted_venv.python, "-m", "cosmo_runner", "worker", address)
    ungated = processes.start(
        sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny",
        "--nthreads", "1",
    )  # fmt: skip
    # before any batch: the good workers are held, the drifted one (its gate failed) and the
    # ungated one (after the deadline) are refused
    _wait_for(address, {"held": 2, "refused": 2})
    assert drifted.wait(timeout=60) == 3

    specs = generate_specs(tmp_path / "specs", 40, seed=5, k=K)
    out = tmp_path / "out"
    killed: list[int] = []

    def progress(counts: dict[str, int]) -> None:
        if counts["done"] >= 8 and not killed:
            killed.append(counts["done"])
            os.kill(good[0].pid, signal.SIGKILL)

    result = run_batch(
        BatchOptions(
            specs=specs,
            out_dir=out,
            cluster=address,
            chunk=1,
            progress=progress,
            gate=reused_gate,
        )
    )
    assert killed and good[0].wait(timeout=30) == -signal.SIGKILL
    assert result.exit_code == 0, result.error
    doc = batch_log(out)
    specs_by_key = by_key(doc)
    assert {e["status"] for e in specs_by_key.values()} == {"succeeded"}
    assert {e["env_id"] for e in specs_by_key.values()} == {doc["expected_env_id"]}
    assert doc["expected_env_id"] == doc["client_env_id"]
    assert committed(out) == sorted(p.stem for p in specs)
    spec_events = [e["key"] for e in events(out) if e["event"] == "spec"]
    assert sorted(spec_events) == sorted(p.stem for p in specs)  # each committed once
    assert not list((out / ".staging").iterdir()) if (out / ".staging").exists() else True

    workers = {w["address"]: w for w in doc["workers"]}
    statuses = sorted(w["status"] for w in workers.values())
    assert statuses == ["accepted", "lost", "refused", "refused"]
    refused = [w for w in workers.values() if w["status"] == "refused"]
    gate_failed = next(w for w in refused if w["env_id"] is not None)
    unverified = next(w for w in refused if w["env_id"] is None)
    assert gate_failed["reason"] == (
        "its own environment gate failed: jsonschema: lock 4.26.0, installed 4.25.1"
    )
    assert gate_failed["env_id"] != doc["expected_env_id"]
    assert {"section": "packages", "key": "jsonschema", "a": "4.26.0", "b": "4.25.1",
            "change": "changed"} in gate_failed["env_diff"]  # fmt: skip
    assert unverified["reason"] == (
        f"unverified: no environment report within {DEADLINE_S} s "
        "(started without the cosmo-runner gate)"
    )
    assert gate_failed["specs"] == unverified["specs"] == 0
    ran = {e["worker"] for e in specs_by_key.values()}
    accepted_or_lost = {a for a, w in workers.items() if w["status"] in ("accepted", "lost")}
    assert ran <= accepted_or_lost
    assert sum(w["specs"] for w in workers.values()) == 40
    assert ungated.wait(timeout=60) is not None

    # the survivors: a clean shutdown on SIGTERM is exit 0
    good[1].send_signal(signal.SIGTERM)
    assert good[1].wait(timeout=60) == 0
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=60) == 0
    with (out / "batch_log.json").open(encoding="utf-8") as handle:
        assert json.load(handle)["status"] == "succeeded"


def test_a_batch_whose_last_worker_died_stops_waiting_and_records_the_rest_lost(
    tmp_path: Path, processes: Processes, reused_gate: ReusedGate
) -> None:
    """The one worker (no nanny: nothing restarts it) is killed after the first commits: no
    accepted worker is left, and after ``deadline`` seconds the batch ends, exit 6, every
    spec not committed recorded ``lost`` with the reason, instead of waiting forever."""
    scheduler = processes.start(sys.executable, "-m", "cosmo_runner", "scheduler", "--port", "0")
    address = _first_line(scheduler).rsplit(" ", 1)[1]
    worker = processes.start(sys.executable, "-m", "cosmo_runner", "worker", address)
    _wait_for(address, {"held": 1})
    specs = generate_specs(tmp_path / "specs", 30, seed=8, k=K)
    out = tmp_path / "out"
    killed: list[int] = []

    def progress(counts: dict[str, int]) -> None:
        if counts["done"] >= 3 and not killed:
            killed.append(counts["done"])
            os.kill(worker.pid, signal.SIGKILL)

    options = BatchOptions(specs=specs, out_dir=out, cluster=address, chunk=1, deadline=2,
                           progress=progress, gate=reused_gate)  # fmt: skip
    result = run_batch(options)
    assert killed and worker.wait(timeout=30) == -signal.SIGKILL
    assert result.exit_code == 6, result.error
    doc = batch_log(out)
    entries = by_key(doc)
    done = sorted(k for k, e in entries.items() if e["status"] == "succeeded")
    lost = sorted(k for k, e in entries.items() if e["status"] == "lost")
    assert len(done) >= 3 and sorted(done + lost) == sorted(p.stem for p in specs)
    assert committed(out) == done
    reason = (
        "no accepted worker on the cluster for 2 s (--worker-deadline): the batch stopped waiting"
    )
    assert {entries[k]["message"] for k in lost} == {reason}
    assert {entries[k]["exit_code"] for k in lost} == {None}
    assert [e["reason"] for e in events(out) if e["event"] == "no-workers"] == [reason]
    assert str(result.error) == (
        f"{len(lost)} of 30 specs did not succeed (0 failed, {len(lost)} lost); "
        "each one's exit code is in the batch log"
    )
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(timeout=60) == 0
