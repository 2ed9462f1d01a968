"""What travels between client and worker, and the client's exactly-once commit.

No shared file system is assumed. The client reads each spec and the files it names (its
inputs, and the schema files of ``jsonschema`` validators) and ships their bytes with their
sha256, under the client's absolute paths; a file it cannot read travels as the client's
one-line reason. The worker checks every hash, runs the spec in a private staging folder
reading those bytes (:func:`cosmo_runner.readfile.shipped_files`, so the run log records
the client's paths and ``verify`` works on the client) and sends the run folder back as
``{relative path: bytes}``. With ``--shared-fs`` nothing is shipped: the worker reads the
paths itself and writes the run folder into the client's staging folder.

:func:`commit` makes run folders appear at ``DIR/<key>/`` atomically and durably: each is
written under ``DIR/.staging/`` first (the worker wrote its own copy without fsync, see
:func:`cosmo_runner.runlog.staged_writes`), then every file and folder of the lot is
fsynced (side by side in threads, so the journal commits are shared), each folder renamed,
and ``DIR`` fsynced once. A second result for a committed key (a task that ran twice) is
dropped: every spec is committed exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError, OutputWriteError
from cosmo_runner.readfile import read_regular
from cosmo_runner.runlog import fsync_dir
from cosmo_runner.spec import MAX_SPEC_BYTES

STAGING = ".staging"
REPLACED = ".replaced"
FSYNC_THREADS = 8


@dataclass
class Shipment:
    """One spec for a worker. ``files`` (client path -> bytes or the reason it could not be
    read) is None with ``--shared-fs``; ``digests`` holds the sha256 of every shipped file."""

    key: str
    spec_path: str
    spec_sha256: str | None
    input_sha256: dict[str, str] = field(default_factory=dict)  # input id -> sha256
    files: dict[str, bytes | str] | None = None
    digests: dict[str, str] = field(default_factory=dict)


def _read(path: Path, limit: int | None = None) -> bytes | str:
    try:
        return read_regular(path, limit=limit)
    except FileError as exc:
        return exc.problems[0] if exc.problems else "cannot read"


def _named_files(spec_dir: Path, data: Any) -> tuple[dict[str, Path], list[Path]]:
    """(input id -> path, schema files) named by a parsed spec; nothing for a bad spec."""
    inputs: dict[str, Path] = {}
    schemas: list[Path] = []
    if not isinstance(data, dict):
        return inputs, schemas
    named_inputs, validators = data.get("inputs"), data.get("validators")
    if isinstance(named_inputs, dict):
        for key, entry in named_inputs.items():
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                inputs[str(key)] = (spec_dir / entry["path"]).resolve()
    if isinstance(validators, list):
        for entry in validators:
            if isinstance(entry, dict) and isinstance(entry.get("schema"), str):
                schemas.append((spec_dir / entry["schema"]).resolve())
    return inputs, schemas


def prepare(key: str, spec_path: Path, *, ship: bool) -> Shipment:
    """Read the spec and the files it names (once each) into a :class:`Shipment`."""
    spec_bytes = _read(spec_path, MAX_SPEC_BYTES)
    shipment = Shipment(key, str(spec_path), None)
    files: dict[str, bytes | str] = {str(spec_path): spec_bytes}
    if isinstance(spec_bytes, bytes):
        shipment.spec_sha256 = hashlib.sha256(spec_bytes).hexdigest()
        try:
            data = json.loads(spec_bytes)
        except (ValueError, RecursionError):
            data = None  # the worker's pipeline reports it, naming the spec
        inputs, schemas = _named_files(spec_path.parent, data)
        for input_id, path in inputs.items():
            content = files.get(str(path))
            if content is None:
                content = files[str(path)] = _read(path)
            if isinstance(content, bytes):
                shipment.input_sha256[input_id] = hashlib.sha256(content).hexdigest()
        for path in schemas:
            if str(path) not in files:
                files[str(path)] = _read(path)
    if ship:
        shipment.files = files
        shipment.digests = {
            name: hashlib.sha256(content).hexdigest()
            for name, content in files.items()
            if isinstance(content, bytes)
        }
    return shipment


def mismatches(shipment: Shipment) -> list[str]:
    """Shipped files whose bytes do not match their sha256 (checked on the worker)."""
    if shipment.files is None:
        return []
    return sorted(
        name
        for name, content in shipment.files.items()
        if isinstance(content, bytes)
        and hashlib.sha256(content).hexdigest() != shipment.digests.get(name)
    )


def pack(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run folder, by its path relative to the folder."""
    return {
        path.relative_to(run_dir).as_posix(): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file()
    }


def staging_dir(out_dir: Path, key: str) -> Path:
    """A new private folder under ``DIR/.staging/`` for one result of ``key``."""
    return out_dir / STAGING / f"{key}.{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Result:
    """One run folder to commit: shipped ``files`` ({relative path: bytes}), or a folder the
    worker wrote under ``DIR/.staging/`` (``staged``, ``--shared-fs``)."""

    key: str
    files: dict[str, bytes] | None = None
    staged: Path | None = None


def _fsync_path(path: Path) -> None:
    try:
        if path.is_dir():
            fsync_dir(path)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputWriteError.from_os_error(exc, path) from exc


def _write_staged(out_dir: Path, result: Result) -> Path:
    """The folder of ``result`` under ``DIR/.staging/`` (written there from shipped files)."""
    if result.staged is not None:
        return result.staged
    staged = staging_dir(out_dir, result.key)
    path = staged
    try:
        staged.mkdir(parents=True)
        for relative, content in (result.files or {}).items():
            path = staged / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    except OSError as exc:
        shutil.rmtree(staged, ignore_errors=True)
        raise OutputWriteError.from_os_error(exc, path) from exc
    return staged


def commit(out_dir: Path, results: Sequence[Result]) -> list[bool]:
    """Make ``DIR/<key>/`` of each result, durably (see the module docstring).

    One flag per result: True when committed now, False when its key was committed before
    (the duplicate is removed). A file or folder that cannot be written or synced (a full
    disk) raises :class:`~cosmo_runner.errors.OutputWriteError` naming it, before any folder
    of the lot is renamed into place.
    """
    folders = [_write_staged(out_dir, result) for result in results]
    paths = [path for folder in folders for path in (folder, *folder.rglob("*"))]
    if paths:
        with ThreadPoolExecutor(min(FSYNC_THREADS, len(paths))) as pool:
            list(pool.map(_fsync_path, paths))  # re-raises the first OSError
    committed: list[bool] = []
    for result, staged in zip(results, folders, strict=True):
        target = out_dir / result.key
        try:
            os.rename(staged, target)  # atomic; fails when target exists and is not empty
        except OSError as exc:
            if not target.exists():
                raise OutputWriteError.from_os_error(exc, target) from exc
            shutil.rmtree(staged, ignore_errors=True)
            committed.append(False)
            continue
        committed.append(True)
    if any(committed):
        _fsync_path(out_dir)
    return committed


def set_aside(out_dir: Path, key: str) -> Path | None:
    """Move an old ``DIR/<key>/`` that ``--resume`` cannot reuse to ``DIR/.replaced/``."""
    target = out_dir / key
    if not target.exists():
        return None
    aside = out_dir / REPLACED / f"{key}.{secrets.token_hex(4)}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.rename(target, aside)
    return aside
