"""What travels between client and worker, and the client's exactly-once commit.

No shared file system is assumed. The client reads each spec and the files it names (its
inputs, and the schema files of ``jsonschema`` validators) and ships their bytes with their
sha256, under the client's absolute paths; a file it cannot read travels as the client's
one-line reason. The worker checks every hash, runs the spec in a private staging folder
reading those bytes (:func:`cosmo_runner.readfile.shipped_files`, so the run log records
the client's paths and ``verify`` works on the client) and sends the run folder back as
``{relative path: bytes}``. With ``--shared-fs`` nothing is shipped: the worker reads the
paths itself and writes the run folder into the client's staging folder.

:func:`commit` makes a run folder appear at ``DIR/<key>/`` atomically (written under
``DIR/.staging/`` first, then renamed). A second result for a committed key (a task that
ran twice) is dropped: every spec is committed exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError
from cosmo_runner.readfile import read_regular
from cosmo_runner.spec import MAX_SPEC_BYTES

STAGING = ".staging"
REPLACED = ".replaced"


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


def commit(out_dir: Path, key: str, files: dict[str, bytes] | None, staged: Path | None) -> bool:
    """Make ``DIR/<key>/`` from shipped ``files`` or a ``staged`` folder (``--shared-fs``).

    True when committed; False when ``key`` was committed before (the duplicate is removed).
    """
    target = out_dir / key
    if staged is None:
        staged = staging_dir(out_dir, key)
        for relative, content in (files or {}).items():
            path = staged / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    try:
        os.rename(staged, target)  # atomic; fails when target exists and is not empty
    except OSError:
        if target.exists():
            shutil.rmtree(staged, ignore_errors=True)
            return False
        raise
    return True


def set_aside(out_dir: Path, key: str) -> Path | None:
    """Move an old ``DIR/<key>/`` that ``--resume`` cannot reuse to ``DIR/.replaced/``."""
    target = out_dir / key
    if not target.exists():
        return None
    aside = out_dir / REPLACED / f"{key}.{secrets.token_hex(4)}"
    aside.parent.mkdir(parents=True, exist_ok=True)
    os.rename(target, aside)
    return aside
