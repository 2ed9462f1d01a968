"""Shipping, the in-process task and the commit, without Dask (the task called directly)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from cosmo_runner.batch import ship, worker
from cosmo_runner.env.verified import VerifiedEnvironment, fingerprint
from cosmo_runner.schemas import validate_against
from tests.batch.specgen import generate_specs


@pytest.fixture(scope="module")
def verified() -> VerifiedEnvironment:
    state = VerifiedEnvironment.capture()
    assert state.smoke.passed, state.smoke.failures
    return state


def _run(
    shipment: ship.Shipment, tmp_path: Path, verified: VerifiedEnvironment | None
) -> worker.Outcome:
    return worker.run_one(
        shipment,
        staged=None,
        command=["cosmo-runner", "batch"],
        cwd=tmp_path,
        verified=verified,
        address="w1",
    )


def _log(outcome: worker.Outcome) -> dict[str, object]:
    assert outcome.files is not None
    log = json.loads(outcome.files["run_log.json"])
    assert validate_against("run_log", log) == []
    assert isinstance(log, dict)
    return log


def test_the_worker_reads_the_shipped_bytes_under_the_clients_paths(
    tmp_path: Path, verified: VerifiedEnvironment
) -> None:
    (spec,) = generate_specs(tmp_path / "client", 1)
    data = spec.with_suffix(".csv")
    shipment = ship.prepare("sim", spec, ship=True)
    expected_csv = data.read_bytes()
    shutil.rmtree(tmp_path / "client")  # the worker cannot see the client's files
    outcome = _run(shipment, tmp_path, verified)
    assert (outcome.exit_code, outcome.status, outcome.message) == (0, "succeeded", None)
    log = _log(outcome)
    assert log["spec"] == {  # type: ignore[comparison-overlap]
        "path": str(spec),
        "resolved": str(spec),
        "sha256": shipment.spec_sha256,
        "name": "sim-0",
    }
    inputs = log["inputs"]
    assert isinstance(inputs, list)
    assert inputs[0]["resolved"] == str(data)
    assert inputs[0]["sha256"] == shipment.input_sha256["d"]
    assert outcome.files is not None and "results/fit.json" in outcome.files
    assert shipment.files is not None and shipment.files[str(data)] == expected_csv
    checks = {c["name"]: c for c in log["smoke"]["checks"]}  # type: ignore[index]
    assert checks["recheck"]["status"] == "ok"


def test_bytes_that_do_not_match_their_sha256_are_not_run(
    tmp_path: Path, verified: VerifiedEnvironment
) -> None:
    (spec,) = generate_specs(tmp_path, 1)
    shipment = ship.prepare("sim", spec, ship=True)
    assert shipment.files is not None
    shipment.files[str(spec.with_suffix(".csv"))] = b"study,yi,vi\ns1,1,1\n"
    outcome = _run(shipment, tmp_path, verified)
    assert (outcome.exit_code, outcome.status, outcome.files) == (5, "failed", None)
    assert outcome.message == (
        f"shipped bytes differ from their sha256: {spec.with_suffix('.csv')}"
    )


def test_an_input_the_client_could_not_read_fails_with_the_clients_reason(
    tmp_path: Path, verified: VerifiedEnvironment
) -> None:
    (spec,) = generate_specs(tmp_path, 1)
    spec.with_suffix(".csv").unlink()
    outcome = _run(ship.prepare("sim", spec, ship=True), tmp_path, verified)
    assert (outcome.exit_code, outcome.status) == (2, "failed")
    assert outcome.message == f"input 'd': {spec.with_suffix('.csv')}: file not found"
    assert _log(outcome)["status"] == "failed"


def test_a_file_that_was_not_shipped_is_unreadable_on_the_worker(
    tmp_path: Path, verified: VerifiedEnvironment
) -> None:
    (spec,) = generate_specs(tmp_path, 1)
    shipment = ship.prepare("sim", spec, ship=True)
    assert shipment.files is not None
    del shipment.files[str(spec.with_suffix(".csv"))]
    outcome = _run(shipment, tmp_path, verified)
    assert outcome.exit_code == 2
    assert outcome.message == (
        f"input 'd': {spec.with_suffix('.csv')}: cannot read: not shipped to this worker "
        "(use --shared-fs to read here)"
    )


def test_a_distribution_installed_mid_batch_fails_the_next_spec_with_exit_3(
    tmp_path: Path, verified: VerifiedEnvironment
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    watched = dataclasses.replace(verified, baseline=fingerprint([*sys.path, str(site)]))
    (spec,) = generate_specs(tmp_path / "specs", 1)
    (site / "jsonschema-9.9.dist-info").mkdir()
    outcome = _run(ship.prepare("sim", spec, ship=True), tmp_path, watched)
    assert (outcome.exit_code, outcome.status) == (3, "failed")
    assert outcome.message == (
        "environment gate failed: installed distributions changed since this process's gate: "
        f"{site}/jsonschema-9.9.dist-info: added"
    )


def test_a_worker_without_the_gate_runs_nothing(tmp_path: Path) -> None:
    (spec,) = generate_specs(tmp_path, 1)
    outcome = _run(ship.prepare("sim", spec, ship=True), tmp_path, None)
    assert (outcome.exit_code, outcome.status, outcome.files) == (3, "failed", None)
    assert outcome.message == "no environment gate ran in this worker"


def _fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the path of every fsync (through the descriptor's /proc link)."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_a_key_is_committed_once_even_when_its_task_ran_twice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    first = ship.Result("k", {"run_log.json": b"first", "results/r.json": b"1"})
    assert ship.commit(out, [first]) == [True]
    assert ship.commit(out, [ship.Result("k", {"run_log.json": b"second"})]) == [False]
    # twice in one lot: the first wins
    twice = [ship.Result("j", {"run_log.json": b"a"}), ship.Result("j", {"run_log.json": b"b"})]
    assert ship.commit(out, twice) == [True, False]
    assert (out / "k" / "run_log.json").read_bytes() == b"first"
    assert (out / "k" / "results" / "r.json").read_bytes() == b"1"
    assert (out / "j" / "run_log.json").read_bytes() == b"a"
    assert list((out / ship.STAGING).iterdir()) == []  # the duplicates were removed


def test_a_commit_syncs_every_file_and_folder_before_the_rename_and_dir_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    synced = _fsynced(monkeypatch)
    renamed: list[tuple[int, str]] = []  # (fsyncs seen when renamed, target)
    real_rename = os.rename

    def rename(src: str | Path, dst: str | Path) -> None:
        renamed.append((len(synced), str(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    shared = ship.staging_dir(out, "b")  # --shared-fs: the worker wrote it, unsynced
    (shared / "results").mkdir(parents=True)
    (shared / "run_log.json").write_bytes(b"{}")
    (shared / "results" / "r.json").write_bytes(b"2")
    lot = [
        ship.Result("a", {"run_log.json": b"{}", "results/r.json": b"1"}),
        ship.Result("b", staged=shared),
    ]
    assert ship.commit(out, lot) == [True, True]
    names = {str(out / k / rel) for k in "ab" for rel in ("", "results", "run_log.json")}
    names |= {str(out / k / "results" / "r.json") for k in "ab"}
    names = {n.rstrip("/") for n in names}
    # every file and folder was synced under its staging name, before any rename
    assert len(renamed) == 2 and all(seen == len(synced) - 1 for seen, _ in renamed)
    assert synced[-1] == str(out)  # DIR once, after the renames
    relocated = set()
    for path in synced[:-1]:
        head, _, tail = path.removeprefix(f"{out}/{ship.STAGING}/").partition("/")
        relocated.add(str(out / head.split(".", 1)[0] / tail).rstrip("/"))
    assert relocated == names
    assert (out / "b" / "results" / "r.json").read_bytes() == b"2"


def test_a_commit_that_cannot_sync_raises_naming_the_file_and_renames_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from cosmo_runner.errors import OutputWriteError, exit_code_for

    out = tmp_path / "out"
    out.mkdir()

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("r.json"):
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    lot = [ship.Result("a", {"run_log.json": b"{}", "results/r.json": b"1"})]
    with pytest.raises(OutputWriteError) as caught:
        ship.commit(out, lot)
    assert caught.value.path.startswith(f"{out}/{ship.STAGING}/a.")
    assert caught.value.path.endswith("/results/r.json")
    assert str(caught.value).endswith(": input/output error")
    assert exit_code_for(caught.value) == 5
    assert not (out / "a").exists()


@pytest.mark.parametrize("staged", [True, False], ids=["staging-folder", "run"])
def test_a_staged_run_is_not_synced_and_writes_its_log_at_start_and_end(
    tmp_path: Path, verified: VerifiedEnvironment, monkeypatch: pytest.MonkeyPatch, staged: bool
) -> None:
    import threading
    from contextlib import nullcontext

    from cosmo_runner import runlog
    from cosmo_runner.pipeline import RunOptions, execute

    synced = _fsynced(monkeypatch)
    log_writes: list[bytes] = []
    real_write = runlog.write_atomic

    def write(path: Path, data: bytes) -> None:
        if path.name == "run_log.json":
            log_writes.append(data)
        real_write(path, data)

    monkeypatch.setattr(runlog, "write_atomic", write)
    threads = threading.active_count()
    (spec,) = generate_specs(tmp_path / "specs", 1)
    with runlog.staged_writes() if staged else nullcontext():
        result = execute(RunOptions(spec_path=spec, out_dir=tmp_path / "run", gate=verified))
    assert result.exit_code == 0
    if staged:
        assert (len(log_writes), synced) == (2, [])
        assert json.loads(log_writes[0])["status"] == "running"
        assert threading.active_count() == threads  # no heartbeat thread was started
    else:
        assert len(log_writes) > 2 and str(tmp_path / "run") in synced
        assert any(p.startswith(str(tmp_path / "run" / ".run_log.json.")) for p in synced)
    assert runlog.durable_writes()  # the block ended: writes are durable again
    final = json.loads((tmp_path / "run" / "run_log.json").read_bytes())
    assert final["status"] == "succeeded" and validate_against("run_log", final) == []
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "plots", "report.html", "results", "run_log.json", "spec.json",
    ]  # fmt: skip


def test_the_statuses_a_failed_gate_waits_out_are_distributeds() -> None:
    from distributed.core import Status

    names = {status.name for status in Status}
    assert worker._NOT_REGISTERED | worker._CLOSING | {"running", "paused"} == names
    assert not worker._NOT_REGISTERED & worker._CLOSING


@pytest.mark.parametrize(
    ("statuses", "slept"),
    [
        (["starting", "running"], [0.05, worker.FAILED_GATE_GRACE_S]),  # registered: listed
        (["starting", "closing"], [0.05]),  # its job was cancelled meanwhile: exit at once
    ],
    ids=["registered", "closed-meanwhile"],
)
def test_a_worker_whose_gate_failed_exits_3_after_registering_or_at_once_when_closed(
    monkeypatch: pytest.MonkeyPatch, statuses: list[str], slept: list[float]
) -> None:
    import asyncio
    import types

    seen = iter(statuses)
    fake = types.SimpleNamespace(status=types.SimpleNamespace(name=next(seen)))
    naps: list[float] = []
    exits: list[int] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        fake.status.name = next(seen, fake.status.name)

    monkeypatch.setattr(worker.asyncio, "sleep", sleep)
    monkeypatch.setattr(worker.os, "_exit", exits.append)
    asyncio.run(worker._exit_after_registration(fake))
    assert (naps, exits) == (slept, [3])


def test_a_slurm_jobs_environment_sets_the_workers_dask_config() -> None:
    import dask

    collected = dask.config.collect_env(worker.WORKER_ENVIRONMENT)
    with dask.config.set(collected):
        from_env = {key: dask.config.get(key) for key in worker.WORKER_CONFIG}
    assert from_env == worker.WORKER_CONFIG
