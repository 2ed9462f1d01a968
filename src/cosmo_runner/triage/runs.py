"""``cosmo-runner runs [DIR]``: the runs under a folder, a dead ``running`` run shown ``lost``.

What DIR may be:

- a folder of runs (default ``./runs``): every sub-folder holding a ``run_log.json`` is a
  run, every one holding a ``batch_log.json`` is one batch entry with totals over its runs;
  other sub-folders and files are not runs and are skipped;
- a run folder (it holds ``run_log.json``): that run alone; a malformed log is then an
  error naming the field (exit 2) rather than an ``unreadable`` entry;
- a batch folder (it holds ``batch_log.json``, schema ``schemas/batch_log.schema.json``):
  the batch's run folders.

A run log that cannot be read, is not JSON or has a field of the wrong type is listed with
status ``unreadable`` and the reason. Liveness is decided by
:func:`cosmo_runner.runstate.liveness`; nothing here writes a file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cosmo_runner.errors import UsageError
from cosmo_runner.runlog import LOG_NAME
from cosmo_runner.runstate import liveness

BATCH_LOG_NAME = "batch_log.json"
RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")


@dataclass(frozen=True)
class RunEntry:
    """One line of the listing: a run, or a batch with ``totals`` over its runs."""

    path: str
    kind: str  # "run" or "batch"
    status: str  # a run status, "lost" or "unreadable"
    run_id: str | None = None
    exit_code: int | None = None
    started_at: str | None = None
    updated_at: str | None = None
    env_id: str | None = None
    spec_name: str | None = None
    reason: str | None = None  # why lost or unreadable
    totals: dict[str, int] | None = None  # batches: runs per status

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "exit_code": self.exit_code,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "env_id": self.env_id,
            "spec_name": self.spec_name,
            "reason": self.reason,
            "totals": self.totals,
        }


@dataclass(frozen=True)
class RunListing:
    directory: str
    entries: list[RunEntry] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.status for e in self.entries).items()))


class MalformedLog(Exception):
    """Internal: a log field ``pointer`` is missing or of the wrong type."""

    def __init__(self, pointer: str, problem: str) -> None:
        self.pointer = pointer
        self.problem = problem
        self.text = f"{pointer}: {problem}" if pointer else problem
        super().__init__(self.text)


_JSON_TYPE = {str: "string", int: "integer", dict: "object"}


def _typed(doc: dict[str, Any], key: str, types: tuple[type, ...], nullable: bool) -> Any:
    if key not in doc:
        raise MalformedLog(f"/{key}", "missing")
    value = doc[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        wanted = " or ".join(_JSON_TYPE[t] for t in types) + (" or null" if nullable else "")
        raise MalformedLog(f"/{key}", f"expected {wanted}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise MalformedLog("", f"cannot read: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedLog("", f"not valid JSON: {exc}") from exc


def _run_entry(run_dir: Path, shown: str, now: datetime | None) -> RunEntry:
    """The entry of one run folder; raises :class:`MalformedLog` for a bad log."""
    doc = _read_json(run_dir / LOG_NAME)
    if not isinstance(doc, dict):
        raise MalformedLog("", "not a run log (not a JSON object)")
    run_id = _typed(doc, "run_id", (str,), nullable=False)
    status = _typed(doc, "status", (str,), nullable=False)
    if status not in RUN_STATUSES:
        raise MalformedLog("/status", f"{_short(status)} is not one of {', '.join(RUN_STATUSES)}")
    exit_code = _typed(doc, "exit_code", (int,), nullable=True)
    started_at = _typed(doc, "started_at", (str,), nullable=False)
    updated_at = doc.get("updated_at") if isinstance(doc.get("updated_at"), str) else None
    environment = _typed(doc, "environment", (dict,), nullable=True) or {}
    env_id = environment.get("env_id")
    if env_id is not None and not isinstance(env_id, str):
        raise MalformedLog("/environment/env_id", f"expected string or null, got {_short(env_id)}")
    spec = _typed(doc, "spec", (dict,), nullable=True) or {}
    spec_name = spec.get("name")
    if spec_name is not None and not isinstance(spec_name, str):
        raise MalformedLog("/spec/name", f"expected string or null, got {_short(spec_name)}")
    if "process" in doc and not isinstance(doc["process"], dict):
        raise MalformedLog("/process", f"expected object, got {_short(doc['process'])}")
    state = liveness(doc, now)
    return RunEntry(
        shown,
        "run",
        state.status,
        run_id,
        exit_code,
        started_at,
        updated_at,
        env_id,
        spec_name,
        state.reason,
    )


def _unreadable(shown: str, kind: str, problem: MalformedLog, log_name: str) -> RunEntry:
    return RunEntry(shown, kind, "unreadable", reason=f"{log_name}: {problem.text}")


def _listed_run(run_dir: Path, shown: str, now: datetime | None) -> RunEntry:
    if not (run_dir / LOG_NAME).is_file():
        return RunEntry(shown, "run", "unreadable", reason=f"no {LOG_NAME}")
    try:
        return _run_entry(run_dir, shown, now)
    except MalformedLog as problem:
        return _unreadable(shown, "run", problem, LOG_NAME)


def _batch_doc(batch_dir: Path) -> dict[str, Any]:
    from cosmo_runner.schemas import validate_against

    doc = _read_json(batch_dir / BATCH_LOG_NAME)
    problems = validate_against("batch_log", doc)
    if problems:
        pointer, _, message = problems[0].partition(": ")
        raise MalformedLog(pointer, message)
    assert isinstance(doc, dict)
    return doc


def _batch_runs(
    batch_dir: Path, doc: dict[str, Any], shown: str, now: datetime | None
) -> list[RunEntry]:
    return [
        _listed_run(batch_dir / item["path"], str(Path(shown) / item["path"]), now)
        for item in doc["runs"]
    ]


def _batch_entry(batch_dir: Path, shown: str, now: datetime | None) -> RunEntry:
    try:
        doc = _batch_doc(batch_dir)
    except MalformedLog as problem:
        return _unreadable(shown, "batch", problem, BATCH_LOG_NAME)
    runs = _batch_runs(batch_dir, doc, shown, now)
    state = liveness(doc, now)
    return RunEntry(
        shown,
        "batch",
        state.status,
        doc["batch_id"],
        doc.get("exit_code") if isinstance(doc.get("exit_code"), int) else None,
        doc.get("started_at") if isinstance(doc.get("started_at"), str) else None,
        doc.get("updated_at") if isinstance(doc.get("updated_at"), str) else None,
        reason=state.reason,
        totals=dict(sorted(Counter(r.status for r in runs).items())),
    )


def list_runs(directory: Path, now: datetime | None = None) -> RunListing:
    """The listing of ``directory`` (see the module docstring).

    Raises :class:`~cosmo_runner.errors.UsageError` (exit 2) when ``directory`` is missing,
    not a folder or unreadable, and for a malformed log when ``directory`` is one run or
    one batch.
    """
    shown = str(directory)
    if not directory.exists():
        raise UsageError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    if (directory / LOG_NAME).is_file():
        try:
            return RunListing(shown, [_run_entry(directory, shown, now)])
        except MalformedLog as problem:
            raise UsageError(f"{directory / LOG_NAME}: {problem.text}") from problem
    if (directory / BATCH_LOG_NAME).is_file():
        try:
            doc = _batch_doc(directory)
        except MalformedLog as problem:
            raise UsageError(f"{directory / BATCH_LOG_NAME}: {problem.text}") from problem
        return RunListing(shown, _batch_runs(directory, doc, shown, now))
    try:
        children = sorted(p for p in directory.iterdir() if p.is_dir())
    except OSError as exc:
        raise UsageError(f"{directory}: cannot read: {exc.strerror}") from exc
    entries: list[RunEntry] = []
    for child in children:
        if (child / LOG_NAME).is_file():
            entries.append(_listed_run(child, str(directory / child.name), now))
        elif (child / BATCH_LOG_NAME).is_file():
            entries.append(_batch_entry(child, str(directory / child.name), now))
    return RunListing(shown, entries)
