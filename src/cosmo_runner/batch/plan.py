"""The spec list of a batch: which specs, under which keys, and what ``--resume`` reuses.

Pure planning, no Dask: :func:`spec_list` reads the arguments and ``--from FILE``;
:func:`assign_keys` derives each spec's key (its run folder ``DIR/<key>/``) from its path;
:func:`reusable` decides whether a committed run folder still stands for a spec.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError, UsageError
from cosmo_runner.readfile import MiB, read_regular

#: ``--from FILE`` may list this many bytes of paths (about 300 000 typical paths).
MAX_LIST_BYTES = 64 * MiB
MAX_KEY_LENGTH = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class PlannedSpec:
    """One spec of the batch: the path as given, resolved, and its key."""

    given: str
    path: Path
    key: str


def spec_list(specs: list[Path], from_file: Path | None) -> list[Path]:
    """The arguments, then the paths of ``from_file`` (one per line; blank lines and lines
    starting with ``#`` skipped; relative paths resolve against the file's folder)."""
    paths = list(specs)
    if from_file is not None:
        try:
            raw = read_regular(from_file, limit=MAX_LIST_BYTES)
        except FileError as exc:
            raise UsageError(f"--from {exc}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"--from {from_file}: not UTF-8 text (byte {exc.start})") from exc
        for line in text.splitlines():
            entry = line.strip()
            if entry and not entry.startswith("#"):
                paths.append(from_file.parent / entry)
    if not paths:
        raise UsageError("batch: no specs given (pass SPEC... or --from FILE)")
    return paths


def _readable(relative: Path) -> str:
    parts = [_UNSAFE.sub("_", part) for part in relative.with_suffix("").parts]
    key = "__".join(p for p in parts if p) or "spec"
    if key.startswith("."):
        key = "_" + key
    return key[:MAX_KEY_LENGTH]


def assign_keys(paths: list[Path]) -> list[PlannedSpec]:
    """Keys from the paths relative to their common folder (``a/b.json`` -> ``a__b``).

    Characters outside ``A-Za-z0-9._+-`` become ``_``; a key two different paths would
    share gets ``-`` and 8 hex digits of its path's sha256. A spec listed twice (the same
    resolved path) is a usage error naming it.
    """
    resolved = [p.resolve() for p in paths]
    seen: dict[Path, str] = {}
    for given, path in zip(paths, resolved, strict=True):
        if path in seen:
            raise UsageError(f"batch: spec listed twice: {given} (also as {seen[path]})")
        seen[path] = str(given)
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    keys = [_readable(p.relative_to(common)) for p in resolved]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    planned = []
    for given, path, readable in zip(paths, resolved, keys, strict=True):
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        key = f"{readable}-{digest}" if counts[readable] > 1 else readable
        planned.append(PlannedSpec(str(given), path, key))
    return planned


def run_fingerprint(log: dict[str, Any]) -> tuple[Any, Any, Any] | None:
    """(spec sha256, {input id: sha256}, env id) of a succeeded run log, else None."""
    if log.get("status") != "succeeded":
        return None
    try:
        spec_sha = log["spec"]["sha256"]
        inputs = {item["id"]: item["sha256"] for item in log.get("inputs") or []}
        env_id = log["environment"]["env_id"]
    except (KeyError, TypeError):
        return None
    return spec_sha, inputs, env_id


def reusable(run_dir: Path, spec_sha256: str, inputs: dict[str, str], env_id: str) -> bool:
    """Whether the committed ``run_dir`` succeeded with this spec, these inputs and env id."""
    try:
        log = json.loads((run_dir / "run_log.json").read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(log, dict):
        return False
    return run_fingerprint(log) == (spec_sha256, inputs, env_id)
