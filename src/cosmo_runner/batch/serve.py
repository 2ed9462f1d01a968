"""``cosmo-runner scheduler`` and ``cosmo-runner worker``: the long-running cluster processes.

:func:`scheduler` runs a Dask scheduler with the gate plugin (:mod:`.scheduler`);
:func:`worker` runs one gated Dask worker without a nanny, so a refused worker, or one
whose own gate failed, leaves with exit 3, and a killed one is not restarted behind the
batch's back. Both serve until SIGINT or SIGTERM (then close cleanly: 0) or, for a worker,
until the scheduler closes it (0) or goes away.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from cosmo_runner.errors import UsageError

Ready = Callable[[str], None]


async def _serve_until_signal(server: Any, ready: Ready | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if ready is not None:
            ready(server.address)
        finished: Awaitable[Any] = server.finished()
        waiters = [asyncio.ensure_future(finished), asyncio.ensure_future(stop.wait())]
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        await server.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def scheduler(host: str, port: int, deadline: float, ready: Ready | None = None) -> int:
    """Serve a gated scheduler on ``host:port`` (0: any free port); 0 once stopped."""
    import dask
    from distributed import Scheduler

    from cosmo_runner.batch.scheduler import SCHEDULER_HTTP, GatePlugin, scheduler_config

    dask.config.set(scheduler_config())

    async def serve() -> None:
        server = Scheduler(
            host=host, port=port, plugins=[GatePlugin(deadline=deadline)], **SCHEDULER_HTTP
        )
        try:
            await server
        except OSError as exc:
            raise UsageError(
                f"scheduler: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        await _serve_until_signal(server, ready)

    asyncio.run(serve())
    return 0


def worker(address: str, nthreads: int, ready: Ready | None = None) -> int:
    """One gated worker of the scheduler at ``address``; 0 once closed cleanly."""
    from distributed import Worker

    if nthreads < 1:
        raise UsageError("worker: --nthreads must be 1 or more")

    import dask

    from cosmo_runner.batch.worker import WORKER_CONFIG

    async def serve() -> None:
        with dask.config.set(WORKER_CONFIG):  # read by the Worker as it is made
            server = Worker(address, nthreads=nthreads, preload=["cosmo_runner.batch.worker"])
        try:
            await asyncio.wait_for(server.start(), 120)
        except (OSError, TimeoutError) as exc:
            raise UsageError(f"worker: cannot reach the scheduler at {address}: {exc}") from exc
        await _serve_until_signal(server, ready)

    asyncio.run(serve())
    return 0
