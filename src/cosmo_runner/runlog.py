"""The JSON run log and the one atomic writer every output uses.

A log is written twice at least: with status ``running`` before any validator or
analysis starts (the environment snapshot already in it), and completed at the end with
``succeeded``, ``failed`` or ``interrupted``. Each write is atomic (temp file in the same
directory, fsync, rename), so a reader never sees a half-written log.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
LOG_NAME = "run_log.json"


def dumps(document: Any) -> bytes:
    """Canonical, human-readable JSON bytes (sorted keys, trailing newline, no NaN)."""
    return (json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file beside it, fsync, rename, fsync dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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


class RunLog:
    """The run log document and its file; every ``save`` is an atomic rewrite."""

    def __init__(self, path: Path | None, run_id: str, command: list[str], cwd: Path) -> None:
        """``path`` None: a dry run (``validate`` without ``--out``) that writes nothing."""
        self.path = path
        self._t0 = time.perf_counter()
        self._step_t0: dict[str, float] = {}
        self.doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_id,
            "status": "running",
            "exit_code": None,
            "command": command,
            "started_at": utc_now(),
            "finished_at": None,
            "duration_s": None,
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

    def start_step(self, name: str) -> None:
        self._step_t0[name] = time.perf_counter()

    def end_step(self, name: str) -> None:
        if name in self._step_t0:
            self.doc["timings"][name] = round(time.perf_counter() - self._step_t0.pop(name), 6)

    def save(self) -> None:
        if self.path is not None:
            write_atomic(self.path, dumps(self.doc))

    def finish(self, status: str, exit_code: int, error: dict[str, Any] | None = None) -> None:
        for name in list(self._step_t0):
            self.end_step(name)
        self.doc.update(
            status=status,
            exit_code=exit_code,
            error=error,
            finished_at=utc_now(),
            duration_s=round(time.perf_counter() - self._t0, 6),
        )
        self.save()
