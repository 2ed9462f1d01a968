"""The batch tests' shared cluster: one healthy embedded cluster per test module that asks.

Starting a ``LocalCluster`` costs seconds of CPU (each worker process imports Dask, numpy and
cosmo-runner and runs its own environment gate), so the tests that only need healthy gated
workers share one: :func:`shared_cluster` starts ``--cluster local``'s own cluster
(:func:`cosmo_runner.batch.client.local_cluster`, with the gate plugin and the batch's Dask
config) once per module and hands out its address, which those tests pass as
``--cluster ADDRESS``. Tests that kill, refuse or poison workers, and those about the local
cluster itself (its start, its environment variables, its ports, the Done-when scenario), start
their own through ``--cluster local``.

Safe next to another pytest-xdist worker: loopback, free ports, no fixed names; the tests
that use it carry ``xdist_group(SHARED_GROUP)`` so that one worker runs them all, on one
cluster.

:func:`forked_workers`: the embedded cluster's worker processes are forked from a warm fork
server (Dask's ``distributed.worker.multiprocessing-method: forkserver``, one server per pytest
process, with the modules a worker imports already imported) instead of spawned as fresh
interpreters; each still runs its own gate. The tests that kill or refuse workers, and the
shared cluster, start many. The Done-when scenario keeps Dask's default (spawn), as a user
runs it. The fork server is not this process's waited-for child: its own CPU and that of the
children it reaped are read from /proc and charged to the running test (tests/cputime.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import cputime

SHARED_GROUP = "batch-shared-cluster"
SHARED_WORKERS = 2
#: Dask's own monitors, slowed down for these tests: the event-loop tick (20 ms), the system
#: monitor (500 ms) and the nanny's memory monitor (100 ms) run in the scheduler, every nanny,
#: every worker and the client, and made an idle local cluster of two workers cost about
#: 0.08 s of CPU per second (0.006 with these; measured 2026-12-01): the tests' clusters idle
#: through every start, gate and poll. They only observe (no dashboard here); nothing a test
#: asserts depends on them. The batch's own settings (scheduler_config, WORKER_CONFIG) are
#: untouched.
QUIET_DASK = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}
#: the same, as the environment variables of the processes a test starts
QUIET_DASK_ENVIRONMENT = {
    "DASK_" + key.upper().replace(".", "__").replace("-", "_"): value
    for key, value in QUIET_DASK.items()
}


#: what a batch worker imports (distributed, its gate, the pipeline, a spec's validators and
#: analysis), imported once into the fork server its processes are forked from
FORKSERVER_PRELOAD = [
    "distributed",
    "cosmo_runner.batch.worker",
    "cosmo_runner.batch.scheduler",
    "cosmo_runner.pipeline",
    "cosmo_runner.inputs",
    "cosmo_runner.meta.analysis",
    "cosmo_runner.validators.effect_table",
    "cosmo_runner.validators.json_schema",
    "cosmo_runner.share.report",
]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers it when installed; --strict-markers needs it without xdist too
    config.addinivalue_line("markers", "xdist_group(name): run on one pytest-xdist worker")


@pytest.fixture(autouse=True)
def _quiet_dask() -> Iterator[None]:
    """:data:`QUIET_DASK` for every cluster a batch test starts in this process."""
    import dask

    # distributed's defaults go into dask's config when it is first imported: before the
    # block, or leaving the block would remove the whole "distributed" section it created
    import distributed  # noqa: F401

    with dask.config.set(QUIET_DASK):
        yield


def _forkserver_cpu() -> float:
    """CPU seconds of multiprocessing's fork server and of the children it has reaped (0: none
    runs). Its pid is multiprocessing's own record (CPython 3.11-3.13 keep it there)."""
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    if not isinstance(pid, int):
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])  # fields 14-17
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _forking() -> Iterator[None]:
    import multiprocessing

    import dask
    from distributed.utils import get_mp_context

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        get_mp_context()  # distributed names its preload once; ours replaces it
        multiprocessing.get_context("forkserver").set_forkserver_preload(FORKSERVER_PRELOAD)
        before = _forkserver_cpu()
        try:
            yield
        finally:
            cputime.charge(_forkserver_cpu() - before)


@pytest.fixture
def forked_workers() -> Iterator[None]:
    """The embedded cluster's workers forked from a warm fork server (module docstring)."""
    with _forking():
        yield


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[str]:
    """The address of a healthy gated cluster of :data:`SHARED_WORKERS` workers, for a module.

    Its workers are accepted by every batch that expects this environment's env id; a test
    using it must leave them alive and unrefused (no kills, no --expect-env-id).
    """
    import dask
    from distributed import Client

    from cosmo_runner.batch.client import local_cluster
    from cosmo_runner.batch.scheduler import GatePlugin, accepted_count, scheduler_config
    from cosmo_runner.batch.worker import WORKER_CONFIG

    environ = dict(os.environ)
    with _forking():
        try:  # the nannies set OMP_NUM_THREADS=1 ... in this process as they start workers
            with dask.config.set({**scheduler_config(), **WORKER_CONFIG, **QUIET_DASK}):
                cluster = local_cluster(SHARED_WORKERS, GatePlugin())
        finally:
            os.environ.clear()
            os.environ.update(environ)
    try:
        yield cluster.scheduler_address
        # the tests left every worker alive: none was lost or refused behind their backs
        with Client(cluster.scheduler_address, timeout=30) as client:
            counts = client.run_on_scheduler(accepted_count)
        assert set(counts) <= {"accepted", "held"}, counts  # held: no batch ran
        assert sum(counts.values()) == SHARED_WORKERS, counts
    finally:
        with _forking():  # the workers' CPU, reaped by the fork server as they exit
            cluster.close()
        os.environ.clear()
        os.environ.update(environ)
