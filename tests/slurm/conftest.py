"""Slurm tests against the single-node cluster of ``make slurm-up`` (scripts/slurm/).

The cluster is found the way Slurm's own clients find one: ``$SLURM_CONF`` when set, else
the ``SLURM_CONF=...`` line that ``make slurm-up`` wrote to ``$COSMO_SLURM_ROOT/slurm-env``
(/tmp/cosmo-slurm). No cluster whose node takes work: tests marked ``slurm`` are skipped
with the reason, except with ``CI=true``, where they fail (.ci/run starts one).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.docker.conftest import in_ci

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "slurm"
SLURM_ROOT = Path(os.environ.get("COSMO_SLURM_ROOT", "/tmp/cosmo-slurm"))
READY_STATES = {"idle", "mix", "alloc", "comp"}  # comp: completing a job, still takes work


def slurm_conf() -> str | None:
    """The slurm.conf to use: ``$SLURM_CONF``, else the one ``make slurm-up`` wrote down."""
    if os.environ.get("SLURM_CONF"):
        return os.environ["SLURM_CONF"]
    envfile = SLURM_ROOT / "slurm-env"
    if envfile.is_file():
        for line in envfile.read_text(encoding="utf-8").splitlines():
            if line.startswith("SLURM_CONF="):
                return line.removeprefix("SLURM_CONF=").strip() or None
    return None


def slurm_env() -> dict[str, str]:
    """This process's environment with the cluster's SLURM_CONF (the only thing it needs)."""
    env = dict(os.environ)
    conf = slurm_conf()
    if conf:
        env["SLURM_CONF"] = conf
    return env


def _job_processes(conf: str) -> dict[int, str]:
    """pid -> command line of live processes of this cluster's jobs (their environment holds
    a SLURM_JOB_ID and this SLURM_CONF; scripts/slurm/common.sh job_pids is the same rule)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text(errors="replace")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if stat.rpartition(") ")[2][:1] in ("Z", "X"):
            continue  # dead, not yet reaped
        if f"SLURM_CONF={conf}".encode() in environ and any(
            v.startswith(b"SLURM_JOB_ID=") for v in environ
        ):
            found[int(entry.name)] = cmdline.strip()
    return found


def leftover_job_processes(timeout: float = 30.0) -> dict[int, str]:
    """Wait up to ``timeout`` s for every process of this cluster's jobs to end; those still
    running are killed by pid (nothing outlives the test) and returned (pid -> command)."""
    conf = slurm_conf()
    assert conf is not None
    deadline = time.monotonic() + timeout
    while (left := _job_processes(conf)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return left


def _cluster_problem() -> str | None:
    """None when a Slurm node takes work, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (make slurm-up installs and starts it)"
    conf = slurm_conf()
    if conf is None:
        return f"no SLURM_CONF and no {SLURM_ROOT / 'slurm-env'} (make slurm-up starts a cluster)"
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"],
            env=slurm_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"sinfo timed out (SLURM_CONF={conf})"
    states = set(result.stdout.split())
    if result.returncode != 0 or not states & READY_STATES:
        detail = result.stderr.strip().splitlines()[-1:] or [f"node states {sorted(states)}"]
        return f"no Slurm node takes work (SLURM_CONF={conf}: {detail[0]}; make slurm-up)"
    return None


_PROBLEM: list[str | None] = []


def cluster_problem() -> str | None:
    if not _PROBLEM:
        _PROBLEM.append(_cluster_problem())
    return _PROBLEM[0]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture: skip slurm tests without a cluster, with the reason; fail them
    instead when CI=true."""
    if item.get_closest_marker("slurm") is None:
        return
    problem = cluster_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but {problem}: slurm tests must run in CI", pytrace=False)
    pytest.skip(problem)


def slurm(
    *args: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A Slurm client command (sbatch, srun, scontrol...) against the cluster."""
    return subprocess.run(
        list(args),
        env=slurm_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
