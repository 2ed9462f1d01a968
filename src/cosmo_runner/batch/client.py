"""The batch: plan, gate the client, start or join a cluster, submit, collect, commit, log.

:func:`run_batch` never prints: progress goes to ``options.progress`` (the CLI draws it
with tqdm on a terminal). Order: spec list and keys (exit 2, nothing written) -> ``DIR``
claimed (a non-empty ``DIR`` needs ``--resume``; exit 2) -> first batch log -> the client's
own gate (exit 3) -> cluster -> at least one accepted worker (none: exit 3) -> specs,
``chunk`` per task, a bounded window in flight, collected with ``as_completed`` in batches;
each result is committed once and its future released -> final batch log.

A spec's exit codes 2, 3, 4 and 5 are its result (recorded, never retried). A task whose
worker died is rescheduled by Dask up to ``retries`` times; a chunk that ends so is split
and its specs retried one by one, and a spec whose own task ends so is run once more alone
(nothing else in flight), so only a spec that kills its workers itself ends ``lost``. Some
specs failed or lost: exit 6. Interrupted: 130/143, the log complete.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmo_runner.batch import plan as plan_mod
from cosmo_runner.batch import ship
from cosmo_runner.batch.log import BATCH_LOG_NAME, EVENTS_NAME, BatchLog
from cosmo_runner.errors import (
    EXIT_CRASH,
    EXIT_OK,
    CosmoError,
    EnvironmentGateError,
    Interrupted,
    OutputDirError,
    OutputWriteError,
    SomeSpecsFailed,
    StepError,
    UsageError,
    exit_code_for,
)
from cosmo_runner.interrupts import SignalGuard

if TYPE_CHECKING:
    from distributed import LocalCluster

    from cosmo_runner.batch.scheduler import GatePlugin
    from cosmo_runner.batch.worker import Outcome
    from cosmo_runner.env.gate import Gate

LOCK_NAME = ".batch.lock"
#: in-flight tasks per accepted worker thread (enough to keep workers busy, bounded memory)
WINDOW_PER_WORKER = 4
#: seconds between two looks at the cluster's accepted workers while specs are in flight
WATCH_S = 1.0
MAX_AUTO_CHUNK = 20


@dataclass
class BatchOptions:
    specs: list[Path]
    out_dir: Path
    from_file: Path | None = None
    cluster: str = "local"  # local, slurm, or a scheduler address
    workers: int | None = None  # local: processes (default: one per CPU)
    jobs: int | None = None  # slurm: jobs
    expect_env_id: str | None = None
    resume: bool = False
    retries: int = 2
    chunk: int | None = None  # specs per task (None: automatic)
    shared_fs: bool = False
    manifest: str | None = None
    command: list[str] = field(default_factory=list)
    deadline: float = 60.0  # seconds a worker may stay unverified (local and slurm)
    progress: Callable[[dict[str, int]], None] | None = None
    gate: Gate | None = None  # how the client gates itself (None: afresh; cli.main's gate)


@dataclass
class BatchResult:
    exit_code: int
    log: dict[str, Any]
    log_path: Path | None
    error: BaseException | None


def auto_chunk(total: int, slots: int) -> int:
    """About eight tasks per worker slot, at most :data:`MAX_AUTO_CHUNK` specs per task."""
    return max(1, min(MAX_AUTO_CHUNK, total // max(1, slots * 8)))


def local_cluster(workers: int, plugin: GatePlugin) -> LocalCluster:
    """The embedded cluster of ``--cluster local``: ``workers`` nanny-managed processes of one
    thread each on 127.0.0.1 (any free port, no dashboard), ``plugin`` on the scheduler, the
    gated worker preloaded. Dask's config (:func:`~.scheduler.scheduler_config`,
    :data:`~.worker.WORKER_CONFIG`) is the caller's to set, before the call: the nannies hand
    it to their workers. Public so that a test suite's long-lived cluster is this one."""
    from distributed import LocalCluster

    from cosmo_runner.batch.scheduler import SCHEDULER_HTTP

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
        scheduler_kwargs={"plugins": [plugin], **SCHEDULER_HTTP},
        preload=["cosmo_runner.batch.worker"],
        silence_logs=50,
    )


def _claim(out_dir: Path, resume: bool) -> int:
    """Create or check ``DIR`` and hold its lock (an fd kept open for the batch)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(
            f"output directory cannot be written: {out_dir}: {exc.strerror}"
        ) from exc
    if not out_dir.is_dir():
        raise OutputDirError(f"output path exists and is not a directory: {out_dir}")
    others = [p.name for p in out_dir.iterdir() if p.name != LOCK_NAME]
    if others and not resume:
        raise OutputDirError(
            f"output directory is not empty: {out_dir}; use --resume to continue the batch in it"
        )
    if others and not (out_dir / BATCH_LOG_NAME).is_file():
        raise OutputDirError(f"--resume: {out_dir} holds no {BATCH_LOG_NAME}: not a batch folder")
    try:
        fd = os.open(out_dir / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError as exc:
        raise OutputDirError(
            f"output directory cannot be written: {out_dir}: {exc.strerror}"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise OutputDirError(f"output directory is in use by another batch: {out_dir}") from exc
    return fd


def run_batch(options: BatchOptions, signals: SignalGuard | None = None) -> BatchResult:
    """Run the batch (see the module docstring); raises only before ``DIR`` has a log."""
    paths = plan_mod.spec_list(options.specs, options.from_file)
    planned = plan_mod.assign_keys(paths)
    if options.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if options.chunk is not None and options.chunk < 1:
        raise UsageError("--chunk must be 1 or more")
    out_dir = options.out_dir.absolute()
    lock_fd = _claim(out_dir, options.resume)
    batch_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
    log = BatchLog(out_dir, batch_id, options.command)
    log.doc["options"] = {
        "cluster": options.cluster,
        "workers": options.workers,
        "jobs": options.jobs,
        "resume": options.resume,
        "retries": options.retries,
        "chunk": options.chunk,
        "shared_fs": options.shared_fs,
    }
    log.add_specs(
        [
            {
                "spec": item.given,
                "key": item.key,
                "run_dir": None,
                "run_id": None,
                "status": "pending",
                "exit_code": None,
                "worker": None,
                "attempts": 0,
                "seconds": None,
                "env_id": None,
                "message": None,
            }
            for item in planned
        ]
    )
    error: BaseException | None = None
    runner = _Batch(options, log, planned, out_dir)
    try:
        log.start()
        try:
            runner.run()
        finally:
            if signals is not None:
                signals.close()  # the outcome is decided: the final log cannot be interrupted
    except Interrupted as exc:
        error = exc
    except KeyboardInterrupt:
        import signal

        error = Interrupted(signal.SIGINT)
    except Exception as exc:  # a CosmoError, or a bug: the batch log completes either way
        error = exc
    finally:
        runner.close()
    if signals is not None and signals.first is not None and not isinstance(error, Interrupted):
        error = Interrupted(signals.first)
    error = _finish(log, out_dir, error)
    os.close(lock_fd)
    return BatchResult(log.doc["exit_code"], log.doc, log.path, error)


def _finish(log: BatchLog, out_dir: Path, error: BaseException | None) -> BaseException | None:
    """The final batch log and page; the batch's error (None: every spec succeeded)."""
    if error is None:
        incomplete = [e for e in log.doc["specs"] if e["status"] not in ("succeeded", "reused")]
        if incomplete:
            error = SomeSpecsFailed(
                sum(e["status"] == "failed" for e in incomplete),
                sum(e["status"] == "lost" for e in incomplete),
                len(log.doc["specs"]),
            )
    code = exit_code_for(error) if error is not None else EXIT_OK
    status = (
        "succeeded"
        if error is None
        else "interrupted"
        if isinstance(error, Interrupted)
        else "failed"
    )
    record = None if error is None else {"type": type(error).__name__, "message": str(error)}
    outcome: BaseException | None = error

    def report(doc: dict[str, Any]) -> None:
        nonlocal outcome
        problem = _write_report(out_dir, doc)
        if problem is not None and outcome is None:  # as a run: exit 5, a failure keeps its own
            outcome = problem
            doc.update(
                status="failed",
                exit_code=exit_code_for(problem),
                error={"type": type(problem).__name__, "message": str(problem)},
            )

    log.finish(status, code, record, before_write=report)
    return outcome


def _write_report(out_dir: Path, doc: dict[str, Any]) -> CosmoError | None:
    """``DIR/report.html`` from the completed batch log, recorded in its ``report``; the
    problem, if any (the batch and its log complete either way; ``cosmo-runner report DIR``
    writes the page again)."""
    from cosmo_runner.share.report import REPORT_NAME, write_batch_report

    problem: CosmoError | None = None
    try:
        write_batch_report(out_dir, doc)
    except OutputWriteError as exc:
        problem = exc
    except Exception as exc:  # a bug in the report: the batch log still completes
        problem = StepError(f"internal error in step 'report': {type(exc).__name__}: {exc}")
        problem.__cause__ = exc
    error = None if problem is None else {"type": type(problem).__name__, "message": str(problem)}
    doc["report"] = {"path": REPORT_NAME, "error": error}
    return problem


class _Batch:
    def __init__(
        self, options: BatchOptions, log: BatchLog, planned: list[plan_mod.PlannedSpec], out: Path
    ) -> None:
        self.options = options
        self.log = log
        self.planned = planned
        self.out = out
        self.cluster: Any = None
        self.client: Any = None
        # a LocalCluster's nannies run in this process and set their workers' variables
        # (OMP_NUM_THREADS=1 ...) in os.environ: put it back when the cluster is closed
        self._environ = dict(os.environ)
        self.verified: Any = None
        self.expected: str | None = None
        self.futures: dict[Any, list[ship.Shipment]] = {}
        self.task_keys: dict[str, list[str]] = {}  # spec key -> the task keys that ran it
        # Specs whose own task ran out of retries while other tasks were on the cluster: Dask
        # charges a worker's death to every task processing there, not only the one running
        # (a small batch or a batch's tail is not queued on the scheduler), so each is run
        # once more alone, with nothing else in flight, before it can be called lost.
        self.suspects: list[ship.Shipment] = []
        self.alone: Any = None  # the future of the suspect running alone
        self.no_workers: str | None = None  # why the batch stopped waiting for workers
        self.counts = {"done": 0, "failed": 0, "refused": 0, "total": len(planned)}

    # -- steps ---------------------------------------------------------------------------
    def run(self) -> None:
        from cosmo_runner.env.verified import VerifiedEnvironment

        self.verified = VerifiedEnvironment.capture(self.options.manifest, gate=self.options.gate)
        self.log.doc["client_env_id"] = self.verified.env_id
        self.expected = self.options.expect_env_id or self.verified.env_id
        self.log.doc["expected_env_id"] = self.expected
        self.log.save(force=True)
        if not self.verified.smoke.passed:
            raise EnvironmentGateError(self.verified.smoke.failures)
        work = self._to_run()  # read lazily: 100 000 specs are never all in memory
        first = next(work, None)
        if first is None:
            return  # every spec reused: no cluster needed
        self._start_cluster()
        slots = self._wait_for_workers()
        chunk = self.options.chunk or auto_chunk(len(self.planned), slots)
        self._submit_all(_chunks(itertools.chain([first], work), chunk), slots)

    def _to_run(self) -> Iterator[ship.Shipment]:
        """The shipments to run; with ``--resume``, reusable run folders are recorded."""
        for item in self.planned:
            shipment = ship.prepare(item.key, item.path, ship=not self.options.shared_fs)
            target = self.out / item.key
            if self.options.resume and target.exists():
                assert self.expected is not None
                if shipment.spec_sha256 is not None and plan_mod.reusable(
                    target, shipment.spec_sha256, shipment.input_sha256, self.expected
                ):
                    self.log.record(
                        item.key,
                        status="reused",
                        exit_code=EXIT_OK,
                        run_dir=item.key,
                        run_id=_run_id(target),
                    )
                    self.counts["done"] += 1
                    continue
                ship.set_aside(self.out, item.key)
            yield shipment

    def _start_cluster(self) -> None:
        import dask
        from distributed import Client

        from cosmo_runner.batch.scheduler import GatePlugin, scheduler_config
        from cosmo_runner.batch.worker import WORKER_CONFIG, WORKER_ENVIRONMENT

        where = self.options.cluster
        # a LocalCluster's nannies hand this config to their workers
        dask.config.set({**scheduler_config(self.options.retries), **WORKER_CONFIG})
        # every worker is held until the cluster is up; then the expected env id decides (a
        # worker refused while a LocalCluster starts would fail the cluster's own start)
        plugin = GatePlugin(deadline=self.options.deadline)
        if where == "local":
            try:
                self.cluster = local_cluster(self.options.workers or os.cpu_count() or 1, plugin)
            except (OSError, RuntimeError) as exc:
                raise StepError(f"cannot start the local cluster: {exc}") from exc
            self.client = Client(self.cluster)
        elif where == "slurm":
            from dask_jobqueue.slurm import SLURMCluster

            # configured the Dask way (jobqueue.slurm.* config, DASK_JOBQUEUE__SLURM__*); the
            # gate preload is added, and no nanny: a refused worker's exit 3 ends its job
            extra = list(dask.config.get("jobqueue.slurm.worker-extra-args", None) or [])
            # The plugin goes in at construction, so that the scheduler starts it (installs
            # its hold on "running" and sees every registration); add_plugin() on the
            # running scheduler would never call its start().
            options = dict(dask.config.get("jobqueue.slurm.scheduler-options", None) or {})
            options["plugins"] = [*options.get("plugins", []), plugin]
            # The job's shell execs the worker, so the worker is the job's own process, which
            # Slurm signals and kills when the job is cancelled. Under the shell, the shell
            # died of the cancel's SIGTERM first, and the orphaned worker (no longer in the
            # job's process tree) outlived its job, retrying a closed scheduler.
            python = dask.config.get("jobqueue.slurm.python", None) or sys.executable
            prologue = list(dask.config.get("jobqueue.slurm.job-script-prologue", None) or [])
            prologue += [f"export {name}={value}" for name, value in WORKER_ENVIRONMENT.items()]
            self.cluster = SLURMCluster(
                python=f"exec {python}",
                job_script_prologue=prologue,
                worker_extra_args=[*extra, "--preload", "cosmo_runner.batch.worker", "--no-nanny"],
                scheduler_options=options,
            )
            self.cluster.scale(jobs=self.options.jobs or 1)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(where, timeout=30)
            except OSError as exc:
                raise UsageError(f"--cluster {where}: cannot reach the scheduler: {exc}") from exc
        from cosmo_runner.batch.scheduler import expect

        try:
            self.client.run_on_scheduler(expect, self.expected, self.options.retries)
        except RuntimeError as exc:
            raise UsageError(
                f"--cluster {where}: the scheduler runs without the cosmo-runner gate plugin "
                "(start it with 'cosmo-runner scheduler')"
            ) from exc
        self.log.doc["cluster"] = {
            "kind": where if where in ("local", "slurm") else "address",
            "address": self.client.scheduler.address,
        }
        self.log.event("cluster", address=self.client.scheduler.address)

    def _wait_for_workers(self) -> int:
        """Accepted worker threads, once at least one worker is accepted (none: exit 3)."""
        from cosmo_runner.batch.scheduler import accepted_count

        deadline = time.monotonic() + self.options.deadline + 30
        expected_local = self.options.workers or os.cpu_count() or 1
        while True:
            counts = self.client.run_on_scheduler(accepted_count)
            self.counts["refused"] = counts.get("refused", 0)
            self._progress()
            if counts.get("accepted", 0):
                time.sleep(0.2)  # let the other workers that are coming register too
                counts = self.client.run_on_scheduler(accepted_count)
                return int(counts.get("accepted", 1))
            settled = self.options.cluster == "local" and counts.get("refused", 0) >= expected_local
            if settled or time.monotonic() > deadline:
                self._record_workers()
                refused = [w for w in self.log.doc["workers"] if w["status"] == "refused"]
                why = f": {refused[0]['name']}: {refused[0]['reason']}" if refused else ""
                raise EnvironmentGateError(
                    [f"no worker passed the environment check ({len(refused)} refused){why}"]
                )
            time.sleep(0.2)

    def _submit_all(self, chunks: Iterator[list[ship.Shipment]], slots: int) -> None:
        """At most ``window`` tasks in flight; each collected result is committed, then its
        future released (a worker killed later cannot make Dask recompute it)."""
        from distributed import as_completed

        window = max(2, slots * WINDOW_PER_WORKER)
        done = as_completed()

        def top_up() -> None:
            if self.alone is not None:
                return  # a suspect runs alone: nothing else until it is done
            if self.suspects:
                if not self.futures:  # drained: the next suspect alone
                    self.alone = self._submit([self.suspects.pop(0)])
                    done.add(self.alone)
                return
            while len(self.futures) < window and (items := next(chunks, None)) is not None:
                done.add(self._submit(items))

        stop = threading.Event()
        watch = threading.Thread(
            target=self._watch_workers, args=(stop,), name="batch-workers", daemon=True
        )
        watch.start()
        try:
            top_up()
            for finished in done.batches():
                outcomes: list[Outcome] = []
                for future in finished:
                    # in self.futures until collected: its result may still have to come
                    # from a worker that is gone, and then the watchdog must cancel it too
                    items = self.futures[future]
                    outcomes += self._collect(future, items, done)
                    del self.futures[future]
                    if future is self.alone:
                        self.alone = None
                    future.release()
                self._commit(outcomes)
                if self.no_workers is None:
                    top_up()
        finally:
            stop.set()
        if self.no_workers is not None:  # what was never sent is lost too
            for item in self.planned:
                if self.log.spec(item.key)["status"] == "pending":
                    self._finish_spec(
                        item.key, status="lost", exit_code=None, message=self.no_workers
                    )

    def _watch_workers(self, stop: threading.Event) -> None:
        """No accepted worker for ``deadline`` seconds while specs are in flight (every
        worker died and none came back: a nanny that cannot restart its worker, Slurm jobs
        that ended): cancel what is in flight, so the batch ends with the specs not done
        recorded ``lost`` instead of waiting for a worker forever."""
        from cosmo_runner.batch.scheduler import accepted_count

        since: float | None = None
        while not stop.wait(WATCH_S):
            try:
                accepted = self.client.run_on_scheduler(accepted_count).get("accepted", 0)
            except Exception:  # the scheduler is gone: the futures fail on their own
                return
            if accepted or not self.futures:
                since = None
                continue
            since = time.monotonic() if since is None else since
            if time.monotonic() - since >= self.options.deadline:
                self.no_workers = (
                    f"no accepted worker on the cluster for {self.options.deadline:g} s "
                    "(--worker-deadline): the batch stopped waiting"
                )
                self.log.event("no-workers", reason=self.no_workers)
                self.client.cancel(list(self.futures))
                return

    def _submit(self, items: list[ship.Shipment]) -> Any:
        from cosmo_runner.batch.worker import run_specs

        staged = (
            [str(ship.staging_dir(self.out, item.key)) for item in items]
            if self.options.shared_fs
            else None
        )
        # one task group ("cosmo-spec"): large enough to be queued on the scheduler (root-ish),
        # so with a worker saturation of 1.0 a worker holds only the task it runs and a
        # worker's death makes no other task suspicious
        task_key = f"cosmo-spec-{secrets.token_hex(16)}"
        for item in items:
            self.task_keys.setdefault(item.key, []).append(task_key)
        future = self.client.submit(
            run_specs,
            items,
            staged,
            self.options.command,
            os.getcwd(),
            key=task_key,
            pure=False,
        )
        self.futures[future] = items
        return future

    def _collect(self, future: Any, items: list[ship.Shipment], done: Any) -> list[Outcome]:
        """The outcomes of a finished task (to commit); a lost or crashed task is recorded."""
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError

        try:
            outcomes = future.result()
        except FutureCancelledError:
            if self.no_workers is None:
                raise  # cancelled by nothing of ours: a bug
            return []  # recorded lost with the specs never sent
        except KilledWorker as exc:
            if len(items) > 1:  # find the spec that kills: retry the chunk's specs one by one
                for item in items:
                    done.add(self._submit([item]))
                return []
            if future is not self.alone:  # its workers' deaths may have been others' doing
                self.suspects.append(items[0])
                return []
            self._finish_spec(
                items[0].key,
                status="lost",
                exit_code=None,
                message=f"its task killed {self.options.retries + 1} worker(s) as it ran "
                f"alone on the cluster: {exc}",
            )
            return []
        except Exception as exc:  # the task raised: a bug in the worker code
            for item in items:
                self._finish_spec(
                    item.key,
                    status="failed",
                    exit_code=EXIT_CRASH,
                    message=f"the task raised {type(exc).__name__}: {exc}",
                )
            return []
        return list(outcomes)

    def _commit(self, outcomes: list[Outcome]) -> None:
        """Commit the run folders of one collection together (one durable commit), then
        record each: the batch log never lists a spec whose folder is not on disk."""
        results = [
            ship.Result(o.key, o.files, Path(o.staged) if o.staged else None) for o in outcomes
        ]
        for outcome, committed in zip(outcomes, ship.commit(self.out, results), strict=True):
            if committed:
                self._finish_spec(
                    outcome.key,
                    status="succeeded" if outcome.exit_code == EXIT_OK else "failed",
                    exit_code=outcome.exit_code,
                    worker=outcome.worker,
                    seconds=outcome.seconds,
                    message=outcome.message,
                    run_dir=outcome.key,
                    run_id=outcome.run_id,
                    env_id=outcome.env_id,
                )

    def _finish_spec(self, key: str, **fields: Any) -> None:
        fields.setdefault("attempts", len(self.task_keys.get(key, ())))
        self.log.record(key, **fields)
        self.counts["done"] += 1
        if fields["status"] != "succeeded":
            self.counts["failed"] += 1
        self._progress()

    def _progress(self) -> None:
        if self.options.progress is not None:
            self.options.progress(dict(self.counts))

    # -- the end ---------------------------------------------------------------------------
    def _record_workers(self) -> None:
        from cosmo_runner.batch.scheduler import task_tries, worker_table

        if self.client is None:
            return
        try:
            table = self.client.run_on_scheduler(worker_table)
        except Exception as exc:  # the scheduler is gone: the log says so
            self.log.event("workers-unknown", reason=f"{type(exc).__name__}: {exc}")
            return
        per_worker: dict[str, int] = {}
        for entry in self.log.doc["specs"]:
            if entry.get("worker") and entry["status"] in ("succeeded", "failed"):
                per_worker[entry["worker"]] = per_worker.get(entry["worker"], 0) + 1
        workers = []
        for entry in table:
            environment = entry.pop("environment", None)
            entry["specs"] = per_worker.get(entry["address"], 0)
            entry["env_diff"] = (
                self._env_diff(environment) if entry["status"] == "refused" else None
            )
            workers.append(entry)
        self.log.doc["workers"] = workers
        keys = sorted({k for ks in self.task_keys.values() for k in ks})
        try:  # a task rescheduled after its worker died started more than once
            tries = self.client.run_on_scheduler(task_tries, keys) if keys else {}
        except Exception:
            return
        for spec_key, task_keys in self.task_keys.items():
            started = sum(tries.get(k, 0) for k in task_keys)
            entry = self.log.spec(spec_key)
            entry["attempts"] = max(started, entry.get("attempts") or 0)

    def _env_diff(self, environment: Any) -> list[dict[str, Any]] | None:
        if not isinstance(environment, dict) or self.verified is None:
            return None
        from cosmo_runner.env.diff import diff, view_from_environment

        try:
            mine = view_from_environment(self.verified.document(), "client", "current")
            theirs = view_from_environment(environment, "worker", "snapshot")
        except UsageError:
            return None
        return [d.as_dict() for d in diff(mine, theirs).differences]

    def close(self) -> None:
        for future in list(self.futures):
            future.cancel()
        self.futures.clear()
        self._record_workers()
        try:
            for part in (self.client, self.cluster):
                if part is None:
                    continue
                try:
                    part.close()
                except Exception as exc:  # every result is committed: the log says, no crash
                    # (distributed's nanny can fail to kill a worker it is still restarting:
                    # "AssertionError: can only join a started process")
                    self.log.event(
                        "close-failed",
                        part=type(part).__name__,
                        reason=f"{type(exc).__name__}: {exc}",
                    )
        finally:
            if dict(os.environ) != self._environ:
                os.environ.clear()
                os.environ.update(self._environ)


def _chunks(items: Iterator[ship.Shipment], size: int) -> Iterator[list[ship.Shipment]]:
    while chunk := list(itertools.islice(items, size)):
        yield chunk


def _run_id(run_dir: Path) -> str | None:
    try:
        doc = json.loads((run_dir / "run_log.json").read_bytes())
    except (OSError, ValueError):
        return None
    return doc.get("run_id") if isinstance(doc, dict) else None


__all__ = ["EVENTS_NAME", "BatchOptions", "BatchResult", "local_cluster", "run_batch"]
