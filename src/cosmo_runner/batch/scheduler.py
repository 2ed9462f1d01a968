"""The scheduler plugin: no worker gets a task before its environment report is accepted.

A worker registers with its report (:mod:`.worker`, in the registration's ``extra``). The
plugin holds **every** worker: the worker's own "running" status message is intercepted
until the plugin accepts it, so the scheduler never counts it as running and never gives
it work (a ``WorkerPlugin.setup`` would run too late). A held worker is

- **accepted** once an expected env id is set (:func:`expect`, by the batch client) and its
  report passed its gate with that env id;
- **refused** when its gate failed, its env id differs, or it sent no report within
  ``deadline`` seconds of registering (unverified: started without the gate). A refused
  worker is told to exit 3 (:data:`~.worker.REFUSE_HANDLER`) and closed.

A worker that leaves after being accepted is ``lost``. :func:`worker_table` is what the
batch log lists, with each refused worker's environment snapshot (the client diffs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from cosmo_runner.batch.worker import REFUSE_HANDLER, REPORT_KEY

PLUGIN_NAME = "cosmo-runner-gate"
DEFAULT_DEADLINE_S = 60.0
#: a worker gets a new task only when it has a free thread: when it dies, only the tasks it
#: was running count against their ``allowed-failures``, never ones merely queued there
WORKER_SATURATION = 1.0
DEFAULT_RETRIES = 2

# Scheduler options for every scheduler the project starts (local, cosmo-runner scheduler): no
# dashboard (bokeh is not locked), and the HTTP routes distributed always serves (/health,
# /metrics) on a free loopback port. Its default, 8787 on every interface, clashes with any
# other scheduler on the host ("Port 8787 is already in use", a warning) and is not loopback.
SCHEDULER_HTTP: dict[str, Any] = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}


def scheduler_config(retries: int = DEFAULT_RETRIES) -> dict[str, Any]:
    """The Dask config of a batch's scheduler (local, Slurm, ``cosmo-runner scheduler``)."""
    return {
        "distributed.scheduler.allowed-failures": retries,
        "distributed.scheduler.worker-saturation": WORKER_SATURATION,
    }


@dataclass
class WorkerRecord:
    name: str
    address: str
    registered: float
    report: dict[str, Any] | None
    status: str = "held"  # held, accepted, refused, lost
    reason: str | None = None
    tries: int = 0

    def as_dict(self, *, with_environment: bool) -> dict[str, Any]:
        report = self.report or {}
        entry = {
            "name": self.name,
            "address": self.address,
            "env_id": report.get("env_id"),
            "status": self.status,
            "reason": self.reason,
        }
        if with_environment:
            entry["environment"] = report.get("environment")
        return entry


@dataclass
class GatePlugin(SchedulerPlugin):
    """See the module docstring. ``expected``: the env id to accept (None: hold everyone)."""

    expected: str | None = None
    deadline: float = DEFAULT_DEADLINE_S
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    tries: dict[str, int] = field(default_factory=dict)  # task key -> times it started
    name: str = PLUGIN_NAME

    def __post_init__(self) -> None:
        self.scheduler: Any = None
        self._original: Any = None
        self._wants_running: set[str] = set()
        self._watch: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self._original = scheduler.stream_handlers["worker-status-change"]
        scheduler.stream_handlers["worker-status-change"] = self._status_change
        self._watch = asyncio.ensure_future(self._deadlines())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch

    def _status_change(self, status: Any, worker: Any, stimulus_id: str) -> None:
        address = worker if isinstance(worker, str) else worker.address
        record = self.workers.get(address)
        name = status if isinstance(status, str) else status.name
        if record is not None and record.status != "accepted" and name == "running":
            self._wants_running.add(address)  # held: it runs once accepted
            return
        self._original(status=status, worker=worker, stimulus_id=stimulus_id)

    def add_worker(self, scheduler: Any, worker: str) -> None:
        state = scheduler.workers[worker]
        report = (state.extra or {}).get(REPORT_KEY)
        self.workers[worker] = WorkerRecord(
            str(state.name), worker, time.monotonic(), report if isinstance(report, dict) else None
        )
        if state in scheduler.running:  # registered as running already: take it back
            self._hold(state)
        self._decide(worker)

    def _hold(self, state: Any) -> None:
        from distributed.core import Status

        self._wants_running.add(state.address)
        state.status = Status.paused
        self.scheduler.running.discard(state)
        self.scheduler.idle.pop(state.address, None)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        record = self.workers.get(worker)
        if record is not None and record.status in ("accepted", "held"):
            record.status = "lost" if record.status == "accepted" else "refused"
            if record.reason is None:
                record.reason = (
                    "left the cluster during the batch"
                    if record.status == "lost"
                    else "left before its environment was accepted"
                )
        self._wants_running.discard(worker)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish == "processing":
            self.tries[str(key)] = self.tries.get(str(key), 0) + 1

    def set_expected(self, env_id: str) -> None:
        self.expected = env_id
        for address in list(self.workers):
            self._decide(address)

    def _decide(self, address: str) -> None:
        record = self.workers[address]
        if record.status not in ("held", "accepted") or self.scheduler is None:
            return
        report = record.report
        if report is None:  # unverified: refused at its deadline
            record.reason = "held: no environment report (started without the gate?)"
            return
        if not report.get("passed"):
            failures = report.get("failures") or ["environment check failed"]
            self._refuse(record, f"its own environment gate failed: {failures[0]}")
        elif self.expected is None:
            record.reason = "held: no batch has set the expected env id yet"
        elif report.get("env_id") != self.expected:
            self._refuse(
                record, f"env id {report.get('env_id')} differs from the expected {self.expected}"
            )
        elif record.status == "held":
            record.status = "accepted"
            record.reason = None
            if address in self._wants_running:
                self._wants_running.discard(address)
                self._original(
                    status="running", worker=address, stimulus_id=f"cosmo-accept-{time.time()}"
                )

    def _refuse(self, record: WorkerRecord, reason: str) -> None:
        record.status = "refused"
        record.reason = reason
        self._wants_running.discard(record.address)
        task = asyncio.ensure_future(self._close(record.address, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, address: str, reason: str) -> None:
        with contextlib.suppress(Exception):  # an ungated worker has no such handler
            await asyncio.wait_for(
                self.scheduler.rpc(address).__getattr__(REFUSE_HANDLER)(reason=reason), 5
            )
        with contextlib.suppress(Exception):
            await self.scheduler.remove_worker(
                address, stimulus_id=f"cosmo-refuse-{time.time()}", close=True
            )

    async def _deadlines(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for record in list(self.workers.values()):
                if (
                    record.status == "held"
                    and record.report is None
                    and now - record.registered > self.deadline
                ):
                    self._refuse(
                        record,
                        f"unverified: no environment report within {self.deadline:g} s "
                        "(started without the cosmo-runner gate)",
                    )

    def table(self, *, with_environment: bool = True) -> list[dict[str, Any]]:
        return [r.as_dict(with_environment=with_environment) for r in self.workers.values()]


def plugin_of(dask_scheduler: Any) -> GatePlugin:
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, GatePlugin):
        raise RuntimeError("the scheduler runs without the cosmo-runner gate plugin")
    return plugin


def expect(env_id: str, allowed_failures: int | None = None, dask_scheduler: Any = None) -> bool:
    """(run_on_scheduler) Set the expected env id (and the retries of killed tasks)."""
    plugin = plugin_of(dask_scheduler)
    if allowed_failures is not None:
        dask_scheduler.allowed_failures = allowed_failures
    dask_scheduler.WORKER_SATURATION = WORKER_SATURATION
    plugin.set_expected(env_id)
    return True


def worker_table(dask_scheduler: Any = None) -> list[dict[str, Any]]:
    """(run_on_scheduler) Every worker the plugin saw, with its status and snapshot."""
    return plugin_of(dask_scheduler).table()


def accepted_count(dask_scheduler: Any = None) -> dict[str, int]:
    """(run_on_scheduler) Workers per status."""
    counts: dict[str, int] = {}
    for record in plugin_of(dask_scheduler).workers.values():
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def task_tries(keys: list[str], dask_scheduler: Any = None) -> dict[str, int]:
    """(run_on_scheduler) How often each task key started (1 = no retry)."""
    tries = plugin_of(dask_scheduler).tries
    return {key: tries.get(key, 0) for key in keys}


def dask_setup(scheduler: Any) -> None:
    """Scheduler preload (``dask scheduler --preload cosmo_runner.batch.scheduler``)."""
    scheduler.add_plugin(GatePlugin())
