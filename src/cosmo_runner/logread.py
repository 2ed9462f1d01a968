"""Reading recorded documents back: run logs and environments, as ``verify``, ``env diff``
and ``runs`` take them, hand-edited or truncated as they may be.

A log is read like any file a user names (:mod:`cosmo_runner.readfile`: a regular file,
at most :data:`MAX_LOG_BYTES`, strict JSON), must be a JSON object, and the fields readers
use are checked before anything reads them: the top-level fields against their own
definitions in ``run_log.schema.json``, the environment against :data:`ENVIRONMENT_SHAPE`
(only what the readers use, so a log written before a fact was added still reads). Every
problem raises :class:`~cosmo_runner.errors.FileError` (exit 2) naming the file and each
field by its JSON pointer, e.g. ``run_log.json: /inputs/0/sha256: 5 is not of type
'string'``; never a KeyError, a TypeError or exit 1.

Versions: :func:`log_version` (``log_version``; ``schema_version`` in version-1 logs; 0 when
neither is there) and :func:`result_version` (0 when absent; malformed is a FileError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError, shorten
from cosmo_runner.readfile import MiB, parse_json, read_regular
from cosmo_runner.schemas import load_schema, problems_against

#: Logs (and snapshots, results) larger than this are refused unread.
MAX_LOG_BYTES = 256 * MiB
#: Real logs nest about 8 levels deep (manifest content in the environment).
MAX_LOG_DEPTH = 64

#: Top-level run-log fields that readers use, checked against run_log.schema.json.
READ_FIELDS = ("run_id", "status", "exit_code", "spec", "inputs", "outputs", "analyses", "smoke")
#: Fields a run log must have to be read at all.
REQUIRED_FIELDS = ("run_id", "status")

_TEXT = {"type": ["string", "null"]}
#: What ``env diff`` and ``verify`` read of an environment section.
ENVIRONMENT_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["observed"],
    "properties": {
        "env_id": _TEXT,
        "expected": {"type": ["object", "null"]},
        "lock": {"type": ["object", "null"]},
        "manifest": {"type": ["object", "null"]},
        "observed": {
            "type": "object",
            "required": ["python"],
            "properties": {
                "python": {
                    "type": "object",
                    "properties": {
                        "version_short": _TEXT,
                        "implementation": _TEXT,
                        "executable": _TEXT,
                    },
                },
                "platform": _TEXT,
                "machine": _TEXT,
                "os_family": _TEXT,
                "libc": _TEXT,
                "packages": {"type": ["array", "null"], "items": {"type": "string"}},
                "env_vars": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "string"},
                },
                "blas": {"type": ["object", "null"]},
                "runner": {
                    "type": ["object", "null"],
                    "properties": {"version": _TEXT, "git_commit": _TEXT},
                },
            },
        },
    },
}


def read_document(path: Path) -> Any:
    """Strict JSON from the regular file ``path`` (see the module docstring for the caps)."""
    return parse_json(read_regular(path, limit=MAX_LOG_BYTES), str(path), max_depth=MAX_LOG_DEPTH)


def _reader_schema(fields: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    full = load_schema("run_log")
    properties = {k: full["properties"][k] for k in fields if k in full["properties"]}
    properties["environment"] = {"oneOf": [{"type": "null"}, ENVIRONMENT_SHAPE]}
    for key in ("log_version", "schema_version"):
        properties[key] = {"type": "integer", "minimum": 0}
    return {
        "$schema": full["$schema"],
        "type": "object",
        "required": list(required),
        "properties": properties,
        "$defs": full.get("$defs", {}),
    }


def check_run_log(
    document: Any,
    path: Path,
    *,
    fields: tuple[str, ...] = READ_FIELDS,
    required: tuple[str, ...] = REQUIRED_FIELDS,
) -> dict[str, Any]:
    """``document`` as a run log a reader can use, or :class:`FileError` naming every field.

    ``fields``: the top-level fields this reader uses (checked when present; the
    environment and the versions always are); ``required``: those it cannot do without.
    """
    if not isinstance(document, dict):
        raise FileError(
            str(path),
            [f"not a cosmo-runner run log (a JSON {_json_type(document)}, not an object)"],
        )
    problems = problems_against(_reader_schema(fields, required), document)
    if problems:
        raise FileError(str(path), problems)
    return document


def read_run_log(path: Path) -> dict[str, Any]:
    """The run log at ``path``, read and checked (see the module docstring)."""
    return check_run_log(read_document(path), path)


def check_environment(environment: Any, path: Path, pointer: str = "/environment") -> None:
    """An environment section (of a log or a snapshot) readers can use, or :class:`FileError`."""
    problems = problems_against(ENVIRONMENT_SHAPE, environment)
    if problems:
        raise FileError(str(path), [_under(pointer, p) for p in problems])


def _under(pointer: str, problem: str) -> str:
    where, _, message = problem.partition(": ")
    return f"{pointer}{'' if where == '/' else where}: {message}"


def log_version(log: dict[str, Any]) -> int:
    """The log's format version: ``log_version``, else ``schema_version`` (its name in
    version-1 logs), else 0 (a log from before versions were recorded)."""
    for key in ("log_version", "schema_version"):
        value = log.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def result_version(result: Any, path: Path | str = "results") -> int:
    """A results JSON's ``result_version``; 0 when absent (written before it was recorded).

    A value that is there but not a whole number >= 0 (a string, a bool, a fraction, null)
    is :class:`FileError` naming ``path`` and the field, never read as "absent"."""
    if not isinstance(result, dict) or "result_version" not in result:
        return 0
    value = result["result_version"]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise FileError(
        str(path),
        [f"/result_version: {shorten(repr(value))} is not a format version (a whole number >= 0)"],
    )


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__
