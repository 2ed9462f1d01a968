"""The JSON run log and the one atomic writer every output uses.

A log is written twice at least: with status ``running`` before any validator or
analysis starts (the environment snapshot already in it), and completed at the end with
``succeeded``, ``failed`` or ``interrupted``. Each write is atomic (temp file in the same
directory, fsync, rename), so a reader never sees a half-written log.

The log records the writing process (``process``) and a heartbeat (``updated_at``),
refreshed at every save and by a daemon thread during long steps (see
:mod:`cosmo_runner.runstate` for how readers tell a lost run). Beside the log a hidden
reserve file (:data:`RESERVE_NAME`) holds disk space for the final log: at every save it
grows to the log's size plus :data:`RESERVE_EXTRA` (on a full disk that save fails, a step
error), and it is released just before the final write, so a disk that fills up during
the run cannot keep the log at ``running``.

Files are created with mode ``0666 & ~umask``, as ``open()`` would (not mkstemp's 0600).

Inside :func:`staged_writes` (a batch worker's private staging folder, which nobody reads
until the client commits it, durably, elsewhere: :func:`cosmo_runner.batch.ship.commit`),
writes stay atomic but are not fsynced, and a log is written only at its start and at its
end, with no heartbeat thread: a crash there loses only a run that is run again.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cosmo_runner.errors import OutputWriteError
from cosmo_runner.redact import redact_document
from cosmo_runner.runstate import HEARTBEAT_S, process_identity

#: The run log's format version (``schema_version``, 1, before it was renamed; see logread).
LOG_VERSION = 2
LOG_NAME = "run_log.json"
RESERVE_NAME = ".run_log.reserve"
RESERVE_EXTRA = 64 * 1024  # reserve = last saved log + this: room for the final log's additions
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DURABLE: ContextVar[bool] = ContextVar("cosmo_runner_durable", default=True)


@contextmanager
def staged_writes() -> Iterator[None]:
    """Within the block (this thread or task only): no fsync, a log saved at start and end."""
    token = _DURABLE.set(False)
    try:
        yield
    finally:
        _DURABLE.reset(token)


def durable_writes() -> bool:
    """False inside :func:`staged_writes`."""
    return _DURABLE.get()


def dumps(document: Any) -> bytes:
    """Canonical, human-readable JSON bytes (sorted keys, trailing newline, no NaN)."""
    return (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        pass  # not Linux: fall back to the set-and-restore below
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file beside it, fsync, rename, fsync dir
    (no fsync inside :func:`staged_writes`).

    The file gets mode ``0666 & ~umask`` and missing directories ``0777 & ~umask``. Any
    OSError is an :class:`~cosmo_runner.errors.OutputWriteError` naming ``path`` and the
    reason; no temp file is left behind and an existing ``path`` is unchanged.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            handle.write(data)
            handle.flush()
            if durable := _DURABLE.get():
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        if durable:
            fsync_dir(path.parent)
    except OSError as exc:
        raise OutputWriteError.from_os_error(exc, path) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """fsync a directory (its entries: a rename into it is on disk); OSError propagates."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` (or its cause) is "no space left" or "disk quota exceeded"."""
    cause = error.__cause__ if isinstance(error, OutputWriteError) else error
    return isinstance(cause, OSError) and cause.errno in _DISK_FULL


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_record(path: Path, root: Path) -> dict[str, Any]:
    """Path relative to ``root``, bytes and sha256 of an output file."""
    data = path.read_bytes()
    return {
        "path": path.relative_to(root).as_posix(),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


_UPDATED_AT = re.compile(rb'\n  "updated_at": "[^"]*"')


def _with_updated_at(data: bytes, stamp: str) -> bytes:
    """``data`` (an indented log) with its top-level ``updated_at`` set to ``stamp``."""
    return _UPDATED_AT.sub(f'\n  "updated_at": "{stamp}"'.encode(), data, count=1)


class RunLog:
    """The run log document and its file; every ``save`` is an atomic rewrite.

    :meth:`start` writes the first log and the reserve and starts the heartbeat;
    :meth:`save` rewrites the log after a step; :meth:`finish` stops the heartbeat,
    releases the reserve and writes the final log. One lock orders every write, and the
    heartbeat thread only rewrites the last saved bytes (never reads the live document).
    """

    def __init__(
        self,
        path: Path | None,
        run_id: str,
        command: list[str],
        cwd: Path,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        """``path`` None: a dry run (``validate`` without ``--out``) that writes nothing."""
        self.path = path
        self._t0 = time.perf_counter()
        self._step_t0: dict[str, float] = {}
        self._heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: bytes | None = None  # what is on disk now
        self._final = False
        self.started = False  # the first log and the reserve are on disk
        self.durable = _DURABLE.get()  # False: a staging folder (start and final log only)
        self.heartbeat_error: OutputWriteError | None = None
        started_at = utc_now()
        self.doc: dict[str, Any] = {
            "log_version": LOG_VERSION,
            "run_id": run_id,
            "status": "running",
            "exit_code": None,
            "command": command,
            "started_at": started_at,
            "updated_at": started_at,
            "finished_at": None,
            "duration_s": None,
            "process": process_identity(),
            "timings": {},
            "out_dir": str(path.parent if path else cwd),
            "environment": None,
            "smoke": None,
            "spec": None,
            "inputs": [],
            "validators": [],
            "analyses": [],
            "outputs": [],
            "error": None,
        }

    @property
    def reserve_path(self) -> Path | None:
        return self.path.parent / RESERVE_NAME if self.path is not None else None

    def start_step(self, name: str) -> None:
        self._step_t0[name] = time.perf_counter()

    def end_step(self, name: str) -> None:
        if name in self._step_t0:
            self.doc["timings"][name] = round(time.perf_counter() - self._step_t0.pop(name), 6)

    def start(self) -> None:
        """Write the first log, then the reserve, then start the heartbeat thread.

        Raises :class:`~cosmo_runner.errors.OutputWriteError` when either does not fit;
        then neither the log nor the reserve is left on disk.
        """
        if self.path is None:
            return
        try:
            self.save()
        except OutputWriteError:
            self.discard()
            raise
        self.started = True
        if not self.durable:
            return  # a staging folder: nobody reads it before the final log, no heartbeat
        self._thread = threading.Thread(target=self._beat, name="run-log-heartbeat", daemon=True)
        self._thread.start()

    def save(self) -> None:
        """Rewrite the log (heartbeat refreshed); an OSError is an ``OutputWriteError``."""
        if self.path is None:
            return
        with self._lock:
            if self._final or (self.started and not self.durable):
                return  # a staging folder keeps its document in memory until the final log
            self.doc["updated_at"] = utc_now()
            data = dumps(redact_document(self.doc))  # the last redaction pass
            write_atomic(self.path, data)
            self._last = data
            assert self.reserve_path is not None
            _grow_reserve(self.reserve_path, len(data) + RESERVE_EXTRA)

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            with self._lock:
                if self._final or self._last is None or self.path is None:
                    return
                data = _with_updated_at(self._last, utc_now())
                try:
                    write_atomic(self.path, data)
                except OutputWriteError as exc:  # the next save in the main thread reports it
                    self.heartbeat_error = exc
                    continue
                self._last = data

    @property
    def heartbeat_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop_heartbeat(self) -> None:
        """Stop the heartbeat thread and wait for it; no heartbeat write happens after this."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def finish(
        self,
        status: str,
        exit_code: int,
        error: dict[str, Any] | None = None,
        before_write: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """The final log. On a full disk, the reserve is released first and a compact
        (unindented) log is the fallback; only if that fails too does this raise.

        ``before_write`` is called with the completed document just before it is written,
        while the reserve still holds the final log's room (the pipeline writes
        ``report.html`` there and records the outcome in the document); it must not raise.
        """
        self.stop_heartbeat()
        for name in list(self._step_t0):
            self.end_step(name)
        finished_at = utc_now()
        self.doc.update(
            status=status,
            exit_code=exit_code,
            error=error,
            finished_at=finished_at,
            updated_at=finished_at,
            duration_s=round(time.perf_counter() - self._t0, 6),
        )
        if self.path is None:
            return
        if before_write is not None:
            before_write(self.doc)
        with self._lock:
            self._final = True
            assert self.reserve_path is not None
            self.reserve_path.unlink(missing_ok=True)
            final = redact_document(self.doc)  # the last redaction pass, as in save()
            try:
                write_atomic(self.path, dumps(final))
            except OutputWriteError as exc:
                if not disk_full(exc):
                    raise
                compact = json.dumps(final, sort_keys=True, allow_nan=False, separators=(",", ":"))
                write_atomic(self.path, compact.encode() + b"\n")

    def discard(self) -> None:
        """Remove what :meth:`start` wrote (the first log did not fit; no run happened)."""
        self.stop_heartbeat()
        with self._lock:
            self._final = True
            self._last = None
            for path in (self.path, self.reserve_path):
                if path is not None:
                    path.unlink(missing_ok=True)


def _grow_reserve(path: Path, size: int) -> None:
    """Make ``path`` at least ``size`` bytes, written (not sparse) so the space is really held.

    Grows by appending: when the disk is full, what was reserved before stays reserved.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            left = size - os.fstat(fd).st_size
            chunk = b"\0" * 65536
            while left > 0:
                left -= os.write(fd, chunk[: min(left, len(chunk))])
            if _DURABLE.get():
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputWriteError.from_os_error(exc, path) from exc
