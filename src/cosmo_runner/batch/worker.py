"""The gated Dask worker: gate and snapshot once, report in the registration, run specs.

``cosmo_runner.batch.worker`` is a Dask preload (``--preload``, or ``preload=`` of a
``LocalCluster``): :func:`dask_setup` runs before the worker registers with the scheduler,
observes and gates the environment once (:class:`~cosmo_runner.env.verified.VerifiedEnvironment`)
and puts the report (env id, verdict, failures, snapshot) into the registration, so the
scheduler plugin (:mod:`.scheduler`) decides atomically with the registration. A worker whose
own gate fails still registers, so the batch can list it, and exits 3 right after. A worker
the plugin refuses gets :data:`REFUSE_HANDLER` and exits 3 too.

:func:`run_specs` is the task: each spec runs in process through the normal pipeline, with
the verified state (a ~1 ms re-check before each spec instead of a new gate), in a private
staging folder; no signal handlers are installed (tasks run off the main thread).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmo_runner.batch.ship import Shipment, mismatches, pack
from cosmo_runner.env.verified import VerifiedEnvironment
from cosmo_runner.errors import EXIT_ENVIRONMENT, EXIT_STEP
from cosmo_runner.runlog import staged_writes

#: The Dask config of every batch worker (local, Slurm, ``cosmo-runner worker``): no
#: statistical profiler. It samples the task thread's stack 100 times a second for a
#: dashboard there is none of; on small specs that was about 5 ms of CPU per spec.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False}
#: the same, as the environment variables a Slurm job's script exports
WORKER_ENVIRONMENT = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
REPORT_KEY = "cosmo_runner"
REFUSE_HANDLER = "cosmo_runner_refuse"
#: seconds a worker whose own gate failed stays registered (so it is listed) before exit 3
FAILED_GATE_GRACE_S = 2.0
#: distributed's worker statuses (distributed.core.Status names) before it is registered,
#: and once it is being closed
_NOT_REGISTERED = frozenset({"undefined", "created", "init", "starting"})
_CLOSING = frozenset(
    {"stopping", "stopped", "closing", "closing_gracefully", "closed", "failed", "dont_reply"}
)


def report(verified: VerifiedEnvironment) -> dict[str, Any]:
    """The environment report a worker registers with (JSON-ready)."""
    return {
        "env_id": verified.env_id,
        "passed": verified.smoke.passed,
        "failures": verified.smoke.failures,
        "environment": verified.document(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def dask_setup(worker: Any) -> None:
    """Preload: gate once, report in the registration, exit 3 later if the gate failed."""
    verified = VerifiedEnvironment.capture(os.environ.get("COSMO_MANIFEST") or None)
    worker.extensions[REPORT_KEY] = verified  # what run_specs finds through get_worker()
    document = report(verified)
    worker.startup_information[REPORT_KEY] = lambda _worker: document
    worker.handlers[REFUSE_HANDLER] = _refused
    if not verified.smoke.passed:
        worker.loop.add_callback(_exit_after_registration, worker)


async def _exit_after_registration(worker: Any) -> None:
    """Exit 3 once the worker has registered and stayed :data:`FAILED_GATE_GRACE_S` (so the
    batch lists it); at once when it is being closed meanwhile (a cancelled Slurm job: a
    worker that waited out its grace there outlived its job)."""
    deadline = time.monotonic() + 60
    while worker.status.name in _NOT_REGISTERED and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if worker.status.name not in _CLOSING:
        await asyncio.sleep(FAILED_GATE_GRACE_S)
    os._exit(EXIT_ENVIRONMENT)


async def _refused(reason: str = "") -> None:
    """The scheduler refused this worker: leave at once with exit 3, before the scheduler's
    close could end it with 0 (the scheduler expects no reply)."""
    os._exit(EXIT_ENVIRONMENT)


@dataclass
class Outcome:
    """What a task sends back for one spec."""

    key: str
    exit_code: int
    status: str
    seconds: float
    worker: str
    env_id: str | None
    files: dict[str, bytes] | None = None  # the run folder (shipped mode)
    staged: str | None = None  # where the run folder was written (--shared-fs)
    message: str | None = None  # the one-line error of a failed spec
    run_id: str | None = None


def _this_worker() -> tuple[str, VerifiedEnvironment | None]:
    """The worker's address and verified environment (None: no gate ran there)."""
    from distributed import get_worker

    current = get_worker()
    verified = current.extensions.get(REPORT_KEY)
    return str(current.address), verified if isinstance(verified, VerifiedEnvironment) else None


def run_specs(
    shipments: list[Shipment], staged: list[str] | None, command: list[str], cwd: str
) -> list[Outcome]:
    """The task: run each spec in process (``staged``: the run folders, ``--shared-fs``)."""
    address, verified = _this_worker()
    return [
        run_one(
            item,
            staged=Path(staged[i]) if staged else None,
            command=command,
            cwd=Path(cwd),
            verified=verified,
            address=address,
        )
        for i, item in enumerate(shipments)
    ]


def run_one(
    shipment: Shipment,
    *,
    staged: Path | None,
    command: list[str],
    cwd: Path,
    verified: VerifiedEnvironment | None,
    address: str,
) -> Outcome:
    """One spec through the normal pipeline, in process, with the worker's verified state."""
    from cosmo_runner.pipeline import RunOptions, execute

    started = time.perf_counter()
    if verified is None or not verified.smoke.passed:
        why = "no environment gate ran in this worker" if verified is None else "gate failed"
        return Outcome(shipment.key, EXIT_ENVIRONMENT, "failed", 0.0, address, None, message=why)
    bad = mismatches(shipment)
    if bad:
        return Outcome(
            shipment.key,
            EXIT_STEP,
            "failed",
            time.perf_counter() - started,
            address,
            verified.env_id,
            message=f"shipped bytes differ from their sha256: {bad[0]}",
        )
    private = None if staged is not None else Path(tempfile.mkdtemp(prefix="cosmo-batch-"))
    run_dir = staged if staged is not None else Path(private or ".") / shipment.key
    try:
        # a staging folder, committed durably by the client (cosmo_runner.batch.ship.commit)
        with staged_writes():
            result = execute(
                RunOptions(
                    spec_path=Path(shipment.spec_path),
                    out_dir=run_dir,
                    command=command,
                    cwd=cwd,
                    gate=verified,
                    files=shipment.files,
                )
            )
        files = pack(run_dir) if private is not None else None
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
    status = str(result.log.get("status"))
    message = str(result.error) if result.error is not None else None
    return Outcome(
        shipment.key,
        result.exit_code,
        status,
        round(time.perf_counter() - started, 6),
        address,
        verified.env_id,
        files=files,
        staged=str(staged) if staged is not None else None,
        message=message,
        run_id=result.log.get("run_id"),
    )
