"""``cosmo-runner batch --cluster slurm`` on the single-node Slurm of ``make slurm-up``.

The cluster is configured the Dask way only, with ``DASK_JOBQUEUE__SLURM__*`` variables (no
code, no config file): one core and 1 GB per job, partition ``debug``, the workers' Python
from a venv, and interface ``lo``, so the scheduler and every worker listen on 127.0.0.1.
Each Slurm job runs one gated Dask worker (the project's preload, no nanny). The client is
the real entry point in a subprocess: the workers are Slurm jobs, other processes anyway.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.batch.helpers import batch_log, by_key, committed
from tests.batch.specgen import generate_specs
from tests.conftest import ROOT, load_log
from tests.envcopy import VenvCopy
from tests.slurm.conftest import leftover_job_processes, slurm, slurm_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(900)]


def jobqueue_env(tmp_path: Path, python: Path | str) -> dict[str, str]:
    """The Slurm cluster's Dask configuration, as environment variables."""
    logs = tmp_path / "slurm-logs"
    env = slurm_env()
    env.pop("COSMO_MANIFEST", None)
    env.update(
        {
            "DASK_JOBQUEUE__SLURM__CORES": "1",
            "DASK_JOBQUEUE__SLURM__PROCESSES": "1",
            "DASK_JOBQUEUE__SLURM__MEMORY": "1GB",
            "DASK_JOBQUEUE__SLURM__QUEUE": "debug",
            "DASK_JOBQUEUE__SLURM__WALLTIME": "00:20:00",
            "DASK_JOBQUEUE__SLURM__PYTHON": str(python),
            "DASK_JOBQUEUE__SLURM__INTERFACE": "lo",
            "DASK_JOBQUEUE__SLURM__LOG_DIRECTORY": str(logs),
            # the scheduler's HTTP endpoint on loopback too, on a free port
            "DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS": '{"dashboard_address": "127.0.0.1:0"}',
            # the jobs' own scratch space under the test's folder
            "DASK_JOBQUEUE__SLURM__LOCAL_DIRECTORY": str(tmp_path / "worker-scratch"),
        }
    )
    return env


def batch(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosmo_runner", "batch", *map(str, args)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def our_jobs(timeout: float = 90.0) -> list[str]:
    """Jobs still known to the cluster (pending, running or completing) after waiting up to
    ``timeout`` s for them to end: a cancelled job is COMPLETING while its worker (the job's
    own process, exec'd by the job script) shuts down, up to Slurm's KillWait (30 s)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = slurm("squeue", "-h", "-o", "%i %j %T")
        assert listed.returncode == 0, listed.stderr
        jobs = listed.stdout.splitlines()
        if not jobs or time.monotonic() > deadline:
            return jobs
        time.sleep(0.5)


def worker_logs(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in (tmp_path / "slurm-logs").glob("*"))


def test_a_batch_runs_on_slurm_workers_on_loopback(tmp_path: Path) -> None:
    specs = generate_specs(tmp_path / "specs", 6, seed=11)
    out = tmp_path / "out"
    result = batch(
        jobqueue_env(tmp_path, sys.executable), *specs, "--cluster", "slurm", "--jobs", "1",
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr + worker_logs(tmp_path)
    doc = batch_log(out)
    assert doc["status"] == "succeeded" and doc["exit_code"] == 0
    assert doc["cluster"]["kind"] == "slurm"
    assert doc["cluster"]["address"].startswith("tcp://127.0.0.1:")
    [worker] = doc["workers"]
    assert worker["status"] == "accepted", worker
    assert worker["address"].startswith("tcp://127.0.0.1:")
    assert worker["name"].startswith("SLURMCluster-")
    assert worker["env_id"] == doc["expected_env_id"] == doc["client_env_id"]
    assert worker["specs"] == 6
    entries = by_key(doc)
    assert committed(out) == sorted(entries) == sorted(p.stem for p in specs)
    for key, entry in entries.items():
        assert (entry["status"], entry["exit_code"], entry["worker"]) == (
            "succeeded", 0, worker["address"],
        ), entry  # fmt: skip
        log: dict[str, Any] = load_log(out / key)
        assert log["status"] == "succeeded"
        assert log["environment"]["env_id"] == doc["expected_env_id"]
        assert json.loads((out / key / "results" / "fit.json").read_text())["k"] == 20
    # the worker really ran as a Slurm job, registered over loopback; the job is gone
    logs = worker_logs(tmp_path)
    assert "Registered to:      tcp://127.0.0.1:" in logs, logs[-3000:]
    assert our_jobs() == []
    assert leftover_job_processes() == {}  # the job's processes ended with it


def test_a_drifted_venv_on_the_node_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    """The workers' Python is a venv copy with jsonschema at another version: its own gate
    fails, it is refused with its env diff, no spec runs, the batch exits 3."""
    drifted = VenvCopy(tmp_path / "drifted-venv")
    drifted.set_version("jsonschema", "4.25.1")
    specs = generate_specs(tmp_path / "specs", 3, seed=12)
    out = tmp_path / "out"
    result = batch(
        jobqueue_env(tmp_path, drifted.python), *specs, "--cluster", "slurm", "--jobs", "1",
        "--worker-deadline", "5", "--out", out,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr + worker_logs(tmp_path)
    assert result.stderr.splitlines()[-1] == (
        "cosmo-runner: error: environment gate failed: no worker passed the environment "
        "check (1 refused): SLURMCluster-0: its own environment gate failed: jsonschema: "
        "lock 4.26.0, installed 4.25.1"
    ), result.stderr
    doc = batch_log(out)
    assert doc["exit_code"] == 3
    [worker] = doc["workers"]
    assert worker["status"] == "refused" and worker["specs"] == 0
    assert worker["env_id"] != doc["expected_env_id"]
    assert {"section": "packages", "key": "jsonschema", "a": "4.26.0", "b": "4.25.1",
            "change": "changed"} in worker["env_diff"]  # fmt: skip
    assert committed(out) == []
    assert {e["status"] for e in doc["specs"]} <= {"interrupted"}
    assert our_jobs() == []
    # no dask_worker of the drifted venv outlives its job (one once outlived make slurm-down)
    assert leftover_job_processes() == {}
