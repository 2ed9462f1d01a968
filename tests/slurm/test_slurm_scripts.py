"""scripts/slurm/{up,down}.sh and the cluster they start.

Without a cluster (any machine): down.sh stops only what its pid files name and only when
that process is the daemon named (a stale, garbage or reused pid is never signalled), and is
a no-op without pid files. With the cluster of ``make slurm-up`` (marker ``slurm``): a batch
job and a job step run on the loopback node and report their exit codes, and ``up`` again is
a no-op that keeps the same daemons.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm.conftest import ROOT, SCRIPTS, slurm, slurm_conf

DAEMONS = {"slurmd.pid": "slurmd", "slurmctld.pid": "slurmctld", "munge/munged.pid": "munged"}


def script(name: str, root: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    env["COSMO_SLURM_ROOT"] = str(root)
    return subprocess.run(
        [str(SCRIPTS / name)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_down_without_a_cluster_is_a_no_op(tmp_path: Path) -> None:
    result = script("down.sh", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"[down.sh] no pid files under {tmp_path}; nothing to stop\n"
    assert script("cluster_answers.sh", tmp_path).returncode == 1


@pytest.mark.parametrize("content", ["", "not-a-pid\n", "12 34\n", "-1\n", "999999999\n"])
def test_down_removes_pid_files_of_dead_or_garbage_pids(tmp_path: Path, content: str) -> None:
    for rel in DAEMONS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    (tmp_path / "slurm-env").write_text("SLURM_CONF=x\n", encoding="utf-8")
    result = script("down.sh", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stopping" not in result.stderr
    assert [rel for rel in [*DAEMONS, "slurm-env"] if (tmp_path / rel).exists()] == []


def test_down_ends_job_processes_that_outlived_their_job_by_pid(tmp_path: Path) -> None:
    """A process of one of this cluster's jobs (its environment: a SLURM_JOB_ID and this
    cluster's SLURM_CONF) still running: TERM, then KILL when it ignores TERM. Processes of
    another cluster's job, or with the cluster's SLURM_CONF but no job, are left alone."""
    conf = str(tmp_path / "slurm.conf")
    ignore_term = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    started = {
        name: subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, **extra},
        )
        for name, code, extra in [
            ("job", "import time; time.sleep(60)", {"SLURM_JOB_ID": "7", "SLURM_CONF": conf}),
            ("stubborn", ignore_term, {"SLURM_JOB_ID": "8", "SLURM_CONF": conf}),
            ("other-cluster", "import time; time.sleep(60)",
             {"SLURM_JOB_ID": "7", "SLURM_CONF": conf + ".other"}),
            ("client", "import time; time.sleep(60)", {"SLURM_CONF": conf}),
        ]
    }  # fmt: skip
    try:
        env = {"COSMO_SLURM_JOB_WAIT": "1"}
        result = subprocess.run(
            [str(SCRIPTS / "down.sh")],
            env={**{k: v for k, v in os.environ.items() if k != "SLURM_CONF"}, **env,
                 "COSMO_SLURM_ROOT": str(tmp_path)},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        pids = f"{started['job'].pid} {started['stubborn'].pid} "
        assert result.stderr == (
            f"[down.sh] job processes outlived their jobs: {pids}; sending TERM\n"
            f"[down.sh] job processes still running after TERM: {started['stubborn'].pid} ; "
            "sending KILL\n"
            f"[down.sh] no pid files under {tmp_path}; nothing to stop\n"
        )
        assert started["job"].wait(timeout=10) == -15
        assert started["stubborn"].wait(timeout=10) == -9
        assert started["other-cluster"].poll() is None and started["client"].poll() is None
    finally:
        for proc in started.values():
            proc.kill()
            proc.wait()


def test_down_never_signals_a_process_that_is_not_the_daemon(tmp_path: Path) -> None:
    """A pid file whose pid now belongs to another process (pid reuse) leaves it alone."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for rel in DAEMONS:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(f"{other.pid}\n", encoding="utf-8")
        result = script("down.sh", tmp_path)
        assert result.returncode == 0, result.stderr
        assert "stopping" not in result.stderr
        assert other.poll() is None, "down.sh signalled a process that is not a Slurm daemon"
        assert [rel for rel in DAEMONS if (tmp_path / rel).exists()] == []
        assert script("cluster_answers.sh", tmp_path).returncode == 1
    finally:
        other.kill()
        other.wait(timeout=30)


def test_the_makefile_targets_run_the_scripts() -> None:
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "slurm-up", "slurm-down"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "COSMO_SLURM_ROOT=/tmp/cosmo-slurm scripts/slurm/up.sh",
        "COSMO_SLURM_ROOT=/tmp/cosmo-slurm scripts/slurm/down.sh",
    ]


@pytest.mark.slurm
def test_a_batch_job_runs_and_its_exit_code_comes_back(tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    done = slurm(
        "sbatch", "--wait", "--quiet", "--time=2", f"--output={out}",
        "--wrap", "echo ran-on $SLURMD_NODENAME",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    node = slurm("sinfo", "-h", "-N", "-o", "%N").stdout.strip()
    assert out.read_text(encoding="utf-8") == f"ran-on {node}\n"
    failed = slurm(
        "sbatch", "--wait", "--quiet", "--time=2", "--output=/dev/null", "--wrap", "exit 7"
    )
    assert failed.returncode == 7, failed.stderr


@pytest.mark.slurm
def test_a_job_step_runs_on_the_loopback_node() -> None:
    step = slurm("srun", "--nodes=1", "--ntasks=1", "--time=2", "printenv", "SLURM_JOB_PARTITION")
    assert (step.returncode, step.stdout) == (0, "debug\n"), step.stderr
    node = slurm("scontrol", "show", "node")
    assert node.returncode == 0, node.stderr
    assert "NodeAddr=127.0.0.1 " in node.stdout
    conf = slurm_conf()
    assert conf is not None
    assert "CommunicationParameters=NoInAddrAny" in Path(conf).read_text(encoding="utf-8")


@pytest.mark.slurm
def test_up_again_is_a_no_op_that_keeps_the_daemons() -> None:
    conf = slurm_conf()
    assert conf is not None
    root = Path(conf).parent
    before = {rel: (root / rel).read_text(encoding="utf-8") for rel in DAEMONS}
    again = script("up.sh", root)
    assert again.returncode == 0, again.stderr
    assert f"the Slurm under {root} already answers; nothing to do" in again.stderr
    assert {rel: (root / rel).read_text(encoding="utf-8") for rel in DAEMONS} == before
