"""Shipping, the in-process task and the commit, without Dask (the task called directly)."""

from __future__ import annotations

import dataclasses
import json
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


def test_a_key_is_committed_once_even_when_its_task_ran_twice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    assert ship.commit(out, "k", {"run_log.json": b"first", "results/r.json": b"1"}, None)
    assert not ship.commit(out, "k", {"run_log.json": b"second"}, None)
    assert (out / "k" / "run_log.json").read_bytes() == b"first"
    assert (out / "k" / "results" / "r.json").read_bytes() == b"1"
    assert list((out / ship.STAGING).iterdir()) == []  # the duplicate was removed
