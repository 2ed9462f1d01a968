"""Verify a finished run by replaying it and comparing every output.

Plan, act, compare: check the recorded inputs (missing or changed -> :class:`InputError`,
exit 2), replay the run's spec copy in a new run directory with every input read from its
recorded resolved path (``--input ID=PATH`` remaps one), then compare the original run's
outputs on disk with the replay's by sha256. Result JSON that differs is compared field by
field; ``rtol`` accepts numeric differences within a relative tolerance.

Exit codes: 0 reproduced (or within rtol), 1 differs, 2 error, 3 the replay's environment
failed the smoke gate (the report then carries the env diff original -> current).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmo_runner.env.diff import EnvDiff, diff, view_from_environment
from cosmo_runner.env.gate import Gate
from cosmo_runner.env.lock import sha256_file
from cosmo_runner.errors import (
    EXIT_DIFFERS,
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_REPRODUCED,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    CosmoError,
    InputError,
    UsageError,
)
from cosmo_runner.logread import log_version, read_document, read_run_log, result_version
from cosmo_runner.runstate import liveness

REPRODUCED = "reproduced"
WITHIN_RTOL = "reproduced within rtol"
DIFFERS = "differs"
GATE_FAILED = "replay failed the environment gate"
REPLAY_ERROR = "replay could not run"
INTERRUPTED = "replay interrupted"


@dataclass(frozen=True)
class VerifyOptions:
    run_dir: Path
    out_dir: Path | None = None  # None: <run_dir>.verify-<replay run_id> beside the original
    input_overrides: dict[str, Path] = field(default_factory=dict)
    rtol: float | None = None
    manifest: str | None = None
    strict: bool = False
    command: list[str] = field(default_factory=list)
    gate: Gate = field(default_factory=Gate)  # how the replay observes and checks (env.gate)


@dataclass(frozen=True)
class FieldDiff:
    """One differing leaf of a result JSON, at its JSON pointer."""

    pointer: str
    original: Any
    replay: Any

    @property
    def numeric(self) -> bool:
        return _is_number(self.original) and _is_number(self.replay)

    @property
    def abs_diff(self) -> float | None:
        return abs(float(self.replay) - float(self.original)) if self.numeric else None

    @property
    def rel_diff(self) -> float | None:
        """|replay - original| / |original| (inf when the original is 0 and the replay not)."""
        if self.abs_diff is None:
            return None
        if self.abs_diff == 0:
            return 0.0
        reference = abs(float(self.original))
        return self.abs_diff / reference if reference else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "pointer": self.pointer,
            "original": self.original,
            "replay": self.replay,
            "abs_diff": _json_float(self.abs_diff),
            "rel_diff": _json_float(self.rel_diff),
        }


@dataclass(frozen=True)
class OutputComparison:
    """One output file: original (on disk now, and as recorded) against the replay."""

    path: str
    status: str  # "equal", "differs", "within rtol", "accepted", "missing in replay", ...
    original_sha256: str | None
    replay_sha256: str | None
    recorded_sha256: str | None
    fields: list[FieldDiff] = field(default_factory=list)
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("equal", "within rtol", "accepted")

    @property
    def max_abs(self) -> FieldDiff | None:
        numeric = [f for f in self.fields if f.numeric]
        return max(numeric, key=lambda f: f.abs_diff or 0.0) if numeric else None

    @property
    def max_rel(self) -> FieldDiff | None:
        numeric = [f for f in self.fields if f.numeric]
        return max(numeric, key=lambda f: f.rel_diff or 0.0) if numeric else None

    @property
    def tampered(self) -> bool:
        """The original file no longer has the sha256 its run log recorded."""
        return (
            self.recorded_sha256 is not None
            and self.original_sha256 is not None
            and self.recorded_sha256 != self.original_sha256
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "original_sha256": self.original_sha256,
            "replay_sha256": self.replay_sha256,
            "recorded_sha256": self.recorded_sha256,
            "changed_since_run": self.tampered,
            "fields": [f.as_dict() for f in self.fields],
            "max_abs": self.max_abs.as_dict() if self.max_abs else None,
            "max_rel": self.max_rel.as_dict() if self.max_rel else None,
            "note": self.note,
        }


@dataclass(frozen=True)
class VersionDiff:
    """A format version that differs between the original run and the replay."""

    field: str  # "log_version" or "result_version"
    path: str  # the file it is in, relative to the run directory
    original: int  # 0: absent (written before versions were recorded)
    replay: int

    def describe(self) -> str:
        return f"{self.field} {_version(self.original)} vs {_version(self.replay)} ({self.path})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "path": self.path,
            "original": self.original,
            "replay": self.replay,
        }


def _version(value: int) -> str:
    return str(value) if value else "0 (absent)"


@dataclass(frozen=True)
class VerifyReport:
    run_dir: Path
    replay_dir: Path
    run_id: str
    replay_run_id: str | None
    outcome: str
    exit_code: int
    rtol: float | None
    outputs: list[OutputComparison]
    env_diff: EnvDiff | None
    replay_exit_code: int | None = None
    replay_error: str | None = None
    smoke_failures: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    versions: list[VersionDiff] = field(default_factory=list)

    @property
    def differing(self) -> list[OutputComparison]:
        return [o for o in self.outputs if not o.ok]

    def largest(self) -> tuple[FieldDiff | None, FieldDiff | None]:
        """The field with the largest absolute and the one with the largest relative difference."""
        fields = [f for o in self.outputs for f in o.fields if f.numeric]
        if not fields:
            return None, None
        return (
            max(fields, key=lambda f: f.abs_diff or 0.0),
            max(fields, key=lambda f: f.rel_diff or 0.0),
        )

    def as_dict(self) -> dict[str, Any]:
        max_abs, max_rel = self.largest()
        return {
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "run_dir": str(self.run_dir),
            "run_id": self.run_id,
            "replay_dir": str(self.replay_dir),
            "replay_run_id": self.replay_run_id,
            "replay_exit_code": self.replay_exit_code,
            "replay_error": self.replay_error,
            "smoke_failures": self.smoke_failures,
            "hints": self.hints,
            "rtol": self.rtol,
            "outputs": [o.as_dict() for o in self.outputs],
            "differing": [o.path for o in self.differing],
            "max_abs": max_abs.as_dict() if max_abs else None,
            "max_rel": max_rel.as_dict() if max_rel else None,
            "env_diff": self.env_diff.as_dict() if self.env_diff else None,
            "versions": [v.as_dict() for v in self.versions],
        }


def _original_spec_dir(log: dict[str, Any]) -> Path | None:
    """The folder of the spec the original run read: its relative paths (schemas) resolve there."""
    resolved = (log.get("spec") or {}).get("resolved")
    return Path(resolved).parent if resolved else None


def verify(options: VerifyOptions) -> VerifyReport:
    """Replay the run in ``options.run_dir`` and compare its outputs. See the module docstring."""
    if options.rtol is not None and not (options.rtol >= 0 and math.isfinite(options.rtol)):
        raise UsageError(f"--rtol must be a finite number >= 0, got {options.rtol}")
    run_dir = options.run_dir
    log = load_run_log(run_dir)
    spec_copy = _check_spec_copy(run_dir, log)
    overrides = check_inputs(log, options.input_overrides)
    replay_dir = options.out_dir or _default_replay_dir(run_dir)

    from cosmo_runner.pipeline import RunOptions, execute

    result = execute(
        RunOptions(
            spec_path=spec_copy,
            spec_base=_original_spec_dir(log),
            out_dir=replay_dir,
            manifest=options.manifest,
            strict=options.strict,
            input_overrides=overrides,
            command=options.command or ["cosmo-runner", "verify", str(run_dir)],
            gate=options.gate,
        )
    )
    replay_log = result.log
    env_diff = _env_diff(log, replay_log, run_dir, result.run_dir or replay_dir)
    common: dict[str, Any] = {
        "run_dir": run_dir,
        "replay_dir": result.run_dir or replay_dir,
        "run_id": str(log.get("run_id")),
        "replay_run_id": replay_log.get("run_id"),
        "rtol": options.rtol,
        "env_diff": env_diff,
        "replay_exit_code": result.exit_code,
        "replay_error": str(result.error) if result.error is not None else None,
        "versions": compare_versions(run_dir, log, result.run_dir or replay_dir, replay_log),
    }
    if result.smoke is not None and not result.smoke.passed:
        return VerifyReport(
            outcome=GATE_FAILED,
            exit_code=EXIT_ENVIRONMENT,
            outputs=[],
            smoke_failures=result.smoke.failures,
            hints=_manifest_hint(log, replay_log),
            **common,
        )
    if result.exit_code in (EXIT_SIGINT, EXIT_SIGTERM):
        return VerifyReport(outcome=INTERRUPTED, exit_code=result.exit_code, outputs=[], **common)
    if result.exit_code == EXIT_USAGE:
        return VerifyReport(outcome=REPLAY_ERROR, exit_code=EXIT_USAGE, outputs=[], **common)
    outputs = compare_outputs(
        run_dir, log, result.run_dir or replay_dir, replay_log, rtol=options.rtol
    )
    failed_replay = result.exit_code != EXIT_OK
    if failed_replay or any(not o.ok for o in outputs):
        outcome, code = DIFFERS, EXIT_DIFFERS
    elif any(o.status != "equal" for o in outputs):
        outcome, code = WITHIN_RTOL, EXIT_REPRODUCED
    else:
        outcome, code = REPRODUCED, EXIT_REPRODUCED
    return VerifyReport(outcome=outcome, exit_code=code, outputs=outputs, **common)


# ---------------------------------------------------------------- before the replay


def load_run_log(run_dir: Path) -> dict[str, Any]:
    """The run log of a finished, succeeded run; anything else is a :class:`UsageError`.

    A malformed log (not JSON, truncated, a list, a field missing or of the wrong type) is
    a :class:`~cosmo_runner.errors.FileError` naming the file and the field's JSON pointer
    (:func:`cosmo_runner.logread.read_run_log`).
    """
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run directory")
    path = run_dir / "run_log.json"
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"{run_dir}: not a run directory (no run_log.json)")
    log = read_run_log(path)
    if log["status"] != "succeeded":
        state = liveness(log)
        why = f": {state.reason}" if state.reason else ""
        raise UsageError(
            f"{path}: the run did not succeed (status {state.status}, exit "
            f"{log.get('exit_code')}{why}); only a succeeded run can be verified"
        )
    return log


def _check_spec_copy(run_dir: Path, log: dict[str, Any]) -> Path:
    spec_copy = run_dir / "spec.json"
    if not spec_copy.is_file():
        raise InputError(f"{spec_copy}: the run's spec copy is missing")
    recorded = (log.get("spec") or {}).get("sha256")
    actual = sha256_file(spec_copy)
    if recorded and actual != recorded:
        raise InputError(
            f"{spec_copy}: sha256 {actual} differs from the recorded {recorded} "
            "(the spec copy was changed after the run)"
        )
    return spec_copy


def check_inputs(log: dict[str, Any], overrides: dict[str, Path]) -> dict[str, Path]:
    """Every recorded input, at its recorded resolved path or its override, exists and has
    the recorded sha256. Returns the absolute path of every input for the replay.

    Raises :class:`InputError` (exit 2) naming the file, or :class:`UsageError` for an
    override of an input the run did not have.
    """
    recorded = {str(item["id"]): item for item in log.get("inputs") or []}
    unknown = sorted(set(overrides) - set(recorded))
    if unknown:
        raise UsageError(
            f"--input {unknown[0]}=...: the run has no input {unknown[0]!r} "
            f"(inputs: {', '.join(sorted(recorded)) or 'none'})"
        )
    paths: dict[str, Path] = {}
    for key, item in recorded.items():
        path = (overrides[key] if key in overrides else Path(item["resolved"])).absolute()
        if not path.is_file():
            raise InputError(f"input {key!r}: file not found: {path}")
        actual = sha256_file(path)
        if actual != item["sha256"]:
            raise InputError(
                f"input {key!r}: {path}: sha256 {actual} differs from the recorded "
                f"{item['sha256']} (the input changed since the run)"
            )
        paths[key] = path
    return paths


def _default_replay_dir(run_dir: Path) -> Path:
    from cosmo_runner.pipeline import new_run_id

    resolved = run_dir.resolve()
    return resolved.parent / f"{resolved.name}.verify-{new_run_id()}"


# ---------------------------------------------------------------- after the replay


def _env_diff(
    log: dict[str, Any], replay_log: dict[str, Any], run_dir: Path, replay_dir: Path
) -> EnvDiff | None:
    env_a, env_b = log.get("environment"), replay_log.get("environment")
    if not isinstance(env_a, dict) or not isinstance(env_b, dict):
        return None
    return diff(
        view_from_environment(env_a, str(run_dir), "run log"),
        view_from_environment(env_b, str(replay_dir), "replay"),
    )


def _manifest_hint(log: dict[str, Any], replay_log: dict[str, Any]) -> list[str]:
    """When the replay's gate used another manifest than the original run, say which."""
    original = ((log.get("environment") or {}).get("manifest") or {}).get("path")
    replay = ((replay_log.get("environment") or {}).get("manifest") or {}).get("path")
    if not original or original == replay or not Path(original).is_file():
        return []
    return [f"the original run used the manifest {original}; pass --manifest {original} to use it"]


def compare_versions(
    run_dir: Path, log: dict[str, Any], replay_dir: Path, replay_log: dict[str, Any]
) -> list[VersionDiff]:
    """The format versions (run log, each result both runs have) that differ."""
    found = []
    if log_version(log) != log_version(replay_log):
        found.append(
            VersionDiff("log_version", "run_log.json", log_version(log), log_version(replay_log))
        )
    recorded = {str(o["path"]) for o in log.get("outputs") or []}
    replayed = {str(o["path"]) for o in replay_log.get("outputs") or []}
    for path in sorted(recorded & replayed):
        if not (path.startswith("results/") and path.endswith(".json")):
            continue
        original, replay = _result_version(run_dir / path), _result_version(replay_dir / path)
        if original is not None and replay is not None and original != replay:
            found.append(VersionDiff("result_version", path, original, replay))
    return found


def _result_version(path: Path) -> int | None:
    """The result file's version; None when it cannot be read (compared elsewhere). A
    malformed ``result_version`` in a file that reads is a FileError (exit 2) naming it."""
    try:
        document = read_document(path)
    except CosmoError:
        return None
    return result_version(document, path)


def compare_outputs(
    run_dir: Path,
    log: dict[str, Any],
    replay_dir: Path,
    replay_log: dict[str, Any],
    *,
    rtol: float | None = None,
) -> list[OutputComparison]:
    """Every output of either run: the original's file on disk against the replay's.

    Result JSON that differs is compared field by field. With ``rtol``, a result whose
    every difference is numeric and within it is "within rtol", and a plot of that same
    analysis is "accepted" (plots are drawn from the result, so they change with it).
    """
    recorded = {str(o["path"]): o.get("sha256") for o in log.get("outputs") or []}
    replayed = {str(o["path"]): o.get("sha256") for o in replay_log.get("outputs") or []}
    comparisons: dict[str, OutputComparison] = {}
    fields: list[FieldDiff]
    for path in sorted(set(recorded) | set(replayed)):
        original_file = run_dir / path
        original_sha = sha256_file(original_file) if original_file.is_file() else None
        replay_sha = replayed.get(path)
        rec_sha = recorded.get(path)
        if path not in replayed:
            status, fields = "missing in replay", []
        elif original_sha is None:
            status = "missing in original" if path in recorded else "not in the original run"
            fields = []
        elif original_sha == replay_sha:
            status, fields = "equal", []
        else:
            fields = (
                compare_json(original_file, replay_dir / path) if path.endswith(".json") else []
            )
            within = (
                rtol is not None
                and bool(fields)
                and all(
                    f.numeric and (f.abs_diff or 0.0) <= rtol * abs(float(f.original))
                    for f in fields
                )
            )
            status = "within rtol" if within else "differs"
        comparisons[path] = OutputComparison(
            path, status, original_sha, replay_sha, rec_sha, fields
        )
    if rtol is not None:
        _accept_plots_of_results_within_rtol(comparisons, log)
    return list(comparisons.values())


def _accept_plots_of_results_within_rtol(
    comparisons: dict[str, OutputComparison], log: dict[str, Any]
) -> None:
    for analysis in log.get("analyses") or []:
        result_path = str((analysis.get("result") or {}).get("path"))
        result = comparisons.get(result_path)
        if result is None or result.status != "within rtol":
            continue
        for plot in analysis.get("plots") or []:
            current = comparisons.get(str(plot.get("path")))
            if current is None or current.status != "differs":
                continue
            comparisons[current.path] = OutputComparison(
                current.path,
                "accepted",
                current.original_sha256,
                current.replay_sha256,
                current.recorded_sha256,
                note=f"plot of {result_path}, which is within rtol",
            )


def compare_json(original: Path, replay: Path) -> list[FieldDiff]:
    """The differing leaves of two JSON documents, by JSON pointer (empty if not JSON)."""
    try:
        a = json.loads(original.read_bytes())
        b = json.loads(replay.read_bytes())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return []
    return list(_walk(a, b, ""))


def _walk(a: Any, b: Any, pointer: str) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            child = f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"
            yield from _walk(a.get(key), b.get(key), child)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _walk(x, y, f"{pointer}/{index}")
    elif a != b or (type(a) is not type(b) and not (_is_number(a) and _is_number(b))):
        yield FieldDiff(pointer or "/", a, b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_float(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return "inf"
