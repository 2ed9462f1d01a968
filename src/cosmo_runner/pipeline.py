"""The run: out dir -> snapshot + first log -> smoke gate -> spec + inputs -> validators
-> analyses -> final log.

:func:`execute` never raises for a run that has a log: it completes the log and returns a
:class:`RunResult` carrying the error. Only an unusable output directory (not empty, in use
by another run, not writable, or no room for the first log and its reserve) raises
:class:`~cosmo_runner.errors.OutputDirError`, and then nothing is left behind.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
import traceback
from collections.abc import Callable, Mapping
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmo_runner import spec as spec_mod
from cosmo_runner.env.gate import Gate
from cosmo_runner.env.smoke import SmokeReport, start_import_probes
from cosmo_runner.errors import (
    EXIT_OK,
    CosmoError,
    EnvironmentGateError,
    FileError,
    Interrupted,
    OutputDirError,
    OutputWriteError,
    SpecError,
    StepError,
    ValidationFailed,
    ValidatorError,
    exit_code_for,
    shorten,
)
from cosmo_runner.interrupts import SignalGuard
from cosmo_runner.readfile import read_regular, shipped_files
from cosmo_runner.runlog import LOG_NAME, RunLog, file_record, write_atomic

if TYPE_CHECKING:  # numpy and the table code load when a run reaches its inputs
    from cosmo_runner.inputs import LoadedInput
    from cosmo_runner.tables import Table


@dataclass
class RunOptions:
    spec_path: Path
    out_dir: Path | None = None  # None: ./runs/<run_id>/ (run) or nothing written (validate)
    manifest: str | None = None
    strict: bool = False
    analyses: bool = True  # False: `validate`, the dry run
    write: bool = True  # False: `validate` without --out
    input_overrides: dict[str, Path] = field(default_factory=dict)
    spec_base: Path | None = None  # resolve the spec's relative paths here (verify's replay)
    command: list[str] = field(default_factory=list)
    cwd: Path | None = None
    #: test hook: called with (input id, path) once every input is read and hashed
    after_inputs: Callable[[str, Path], None] | None = None
    probe_all: bool = False  # True: import every required module in fresh interpreters (smoke)
    #: how the environment is observed and checked (cosmo_runner.env.gate; default: afresh;
    #: a batch worker's cosmo_runner.env.verified.VerifiedEnvironment: gated once, re-checked)
    gate: Gate = field(default_factory=Gate)
    #: files the run reads from these bytes instead of the disk (a batch without a shared
    #: file system: the client's paths and bytes; cosmo_runner.readfile.shipped_files)
    files: Mapping[str, bytes | str] | None = None


@dataclass
class RunResult:
    exit_code: int
    log: dict[str, Any]
    run_dir: Path | None
    error: BaseException | None
    smoke: SmokeReport | None = None

    @property
    def log_path(self) -> Path | None:
        return self.run_dir / LOG_NAME if self.run_dir else None


def new_run_id() -> str:
    """UTC time ``YYYYMMDDTHHMMSSZ`` plus a random suffix (unique across parallel processes)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


CLAIM_NAME = ".cosmo-runner-claim"


@dataclass(frozen=True)
class RunDir:
    """A run directory this process owns: ``created`` when it made the directory itself."""

    path: Path
    run_id: str
    created: bool

    def release(self) -> None:
        """Give the directory back, as found: the claim removed, a directory we made too."""
        (self.path / CLAIM_NAME).unlink(missing_ok=True)
        if self.created:
            with suppress(OSError):  # something else was put there meanwhile: leave it
                self.path.rmdir()


def _claim(directory: Path, run_id: str, created: bool) -> RunDir:
    """Claim ``directory`` with an exclusive claim file; of N racers exactly one wins."""
    claim = directory / CLAIM_NAME
    try:
        fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError as exc:
        raise OutputDirError(f"output directory is in use by another run: {directory}") from exc
    except OSError as exc:
        raise OutputDirError(
            f"output directory cannot be written: {directory}: {exc.strerror}"
        ) from exc
    os.close(fd)
    run_dir = RunDir(directory.resolve(), run_id, created)
    try:
        others = [p.name for p in directory.iterdir() if p.name != CLAIM_NAME]
    except OSError as exc:
        run_dir.release()
        raise OutputDirError(
            f"output directory cannot be read: {directory}: {exc.strerror}"
        ) from exc
    if others:  # filled between the emptiness check and the claim
        (directory / CLAIM_NAME).unlink(missing_ok=True)
        raise OutputDirError(f"output directory is not empty, refusing to overwrite: {directory}")
    return run_dir


def prepare_out_dir(out_dir: Path | None, cwd: Path) -> RunDir:
    """Create and claim the run directory; refuse an existing non-empty one (left untouched).

    ``--out DIR``: DIR is made with an exclusive ``mkdir`` or, when it exists and is empty,
    claimed with an exclusive claim file (:data:`CLAIM_NAME`, removed once the first log is
    written): of racing runs exactly one proceeds, the others get
    :class:`~cosmo_runner.errors.OutputDirError` (exit 2) and write nothing.
    ``None``: a new ``./runs/<run_id>/`` by exclusive ``mkdir``.
    """
    if out_dir is None:
        runs = cwd / "runs"
        for _ in range(20):
            run_id = new_run_id()
            candidate = runs / run_id
            try:
                runs.mkdir(parents=True, exist_ok=True)
                candidate.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputDirError(
                    f"cannot create the run directory {candidate}: {exc.strerror}"
                ) from exc
            return _claim(candidate, run_id, created=True)
        raise OutputDirError(f"could not find a free run directory under {runs}")
    run_id = new_run_id()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            out_dir.mkdir()
            created = True
        except FileExistsError:
            created = False
    except OSError as exc:  # a missing parent that cannot be made (a file in the way ...)
        raise OutputDirError(
            f"output directory cannot be written: {out_dir}: {exc.strerror}"
        ) from exc
    if not created:
        if not out_dir.is_dir():
            raise OutputDirError(f"output path exists and is not a directory: {out_dir}")
        try:
            non_empty = any(out_dir.iterdir())
        except OSError as exc:
            raise OutputDirError(
                f"output directory cannot be read: {out_dir}: {exc.strerror}"
            ) from exc
        if non_empty:
            raise OutputDirError(f"output directory is not empty, refusing to overwrite: {out_dir}")
    return _claim(out_dir, run_id, created)


def _error_record(error: BaseException) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": type(error).__name__,
        "message": str(error),
        "exit_code": exit_code_for(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    if isinstance(error, CosmoError):
        record.update(error.details())
    return record


def _short_error(error: BaseException) -> dict[str, Any]:
    """A validator's error in its log record: type and one-line message."""
    return {"type": type(error).__name__, "message": str(error)}


def _plugin_crash(entry: dict[str, Any], exc: BaseException) -> ValidatorError:
    error = ValidatorError(
        f"validator {entry['id']!r} (kind {entry['kind']!r}) raised {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


def execute(options: RunOptions, signals: SignalGuard | None = None) -> RunResult:
    """Run (or dry-run) a spec. See the module docstring for the order of steps.

    Signals follow :mod:`cosmo_runner.interrupts`: the first SIGINT/SIGTERM stops the run
    and decides its code; from the final log on, none can change it. ``signals`` is a guard
    the caller installed (the CLI keeps it closed while it prints); without one, the run
    installs its own and restores the previous handlers when it returns.
    """
    cwd = options.cwd or Path.cwd()
    claimed = prepare_out_dir(options.out_dir, cwd) if options.write else None
    run_dir = claimed.path if claimed else None
    run_id = claimed.run_id if claimed else new_run_id()
    log = RunLog(run_dir / LOG_NAME if run_dir else None, run_id, options.command, cwd)
    guard = signals or SignalGuard()
    installed = signals is None and guard.install()  # False off the main thread: no handlers
    shipped = shipped_files(options.files) if options.files is not None else nullcontext()
    try:
        with shipped:
            runner = _Runner(options, log, claimed, guard)
            try:
                error = _outcome(runner, guard)
            except _FirstLogDoesNotFit as exc:
                assert claimed is not None
                log.discard()
                claimed.release()
                raise exc.error from exc.__cause__
            error = runner.finish(error)  # no signal can interrupt this: the guard is closed
    finally:
        if installed:
            guard.restore()
    code = exit_code_for(error) if error else EXIT_OK
    return RunResult(code, log.doc, run_dir, error, runner.smoke)


class _FirstLogDoesNotFit(Exception):
    """Internal: the first log or its reserve could not be written (carries the exit-2 error)."""

    def __init__(self, error: OutputDirError) -> None:
        super().__init__(str(error))
        self.error = error


def _outcome(runner: _Runner, guard: SignalGuard) -> BaseException | None:
    """Run the steps; the error that ends the run (None: it succeeded). Closes the guard.

    After the inner ``finally`` the guard is closed or has fired, so no signal can raise
    any more: whatever is caught here is the run's outcome, and the first signal, even one
    a plugin swallowed, decides it.
    """
    error: BaseException | None = None
    try:
        try:
            runner.run()
        finally:
            guard.close()
    except _FirstLogDoesNotFit:
        raise  # no log exists: execute() removes the claim and raises the exit-2 error
    except CosmoError as exc:
        error = exc
    except KeyboardInterrupt:
        error = Interrupted(signal.SIGINT)
    except BaseException as exc:  # a bug, or a plugin's sys.exit(): the log still completes
        error = StepError(f"internal error in step {runner.step!r}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
    if guard.first is not None and not isinstance(error, Interrupted):
        interrupted = Interrupted(guard.first)
        interrupted.__context__ = error
        error = interrupted
    return error


class _Runner:
    def __init__(
        self, options: RunOptions, log: RunLog, claimed: RunDir | None, guard: SignalGuard
    ) -> None:
        self.options = options
        self.guard = guard
        self.log = log
        self.claimed = claimed
        self.run_dir = claimed.path if claimed else None
        self.step = "environment"
        self.smoke: SmokeReport | None = None
        self.drop_rows: dict[str, set[int]] = {}  # input id -> 0-based data rows to drop
        self.inputs: dict[str, LoadedInput] = {}

    def _begin(self, step: str) -> None:
        self.guard.check()  # a signal swallowed by the previous step stops the run here
        self.step = step
        self.log.start_step(step)

    def run(self) -> None:
        options, doc = self.options, self.log.doc
        doc["spec"] = {
            "path": str(options.spec_path),
            "resolved": str(options.spec_path.resolve()),
            "sha256": None,
            "name": None,
        }
        spec_bytes = self._read_spec()
        self._begin("environment")
        # run/validate probe only the imports no locked distribution vouches for
        imports = start_import_probes(options.manifest, options.cwd) if options.probe_all else None
        state = options.gate.observe(options.manifest, options.cwd)
        doc["environment"] = state.document()
        self.log.end_step("environment")
        self._start_log()  # the snapshot is on disk before anything else runs
        if spec_bytes is not None and self.run_dir is not None:
            write_atomic(self.run_dir / "spec.json", spec_bytes)  # kept even if invalid

        self._begin("smoke")
        self.smoke = options.gate.check(
            state, strict=options.strict, imports=imports, probe_all=options.probe_all
        )
        doc["smoke"] = self.smoke.as_dict()
        self.log.end_step("smoke")
        self.log.save()
        if not self.smoke.passed:
            raise EnvironmentGateError(self.smoke.failures)

        self._begin("spec")
        spec = spec_mod.load(options.spec_path, options.spec_base)
        doc["spec"].update(name=spec.data["name"])
        self._begin("inputs")
        spec = self._apply_overrides(spec)
        from cosmo_runner.inputs import load_inputs

        # each input is read once: these bytes are hashed, parsed and analysed
        self.inputs = load_inputs(spec.data["inputs"], spec.base, options.after_inputs)
        doc["inputs"] = [item.record() for item in self.inputs.values()]
        self.log.end_step("spec")
        self.log.end_step("inputs")
        self.log.save()

        self._begin("validators")
        self._run_validators(spec)
        self.log.end_step("validators")
        self.log.save()
        if options.analyses:
            self._begin("analyses")
            self._run_analyses(spec)
            self.log.end_step("analyses")

    def _read_spec(self) -> bytes | None:
        """The spec's bytes as given (its sha256 goes into the first log), None if unreadable."""
        try:  # never blocks on a FIFO, never reads /dev/zero without end
            raw = read_regular(self.options.spec_path, limit=spec_mod.MAX_SPEC_BYTES)
        except FileError:
            return None  # spec.load reports it
        import hashlib

        self.log.doc["spec"]["sha256"] = hashlib.sha256(raw).hexdigest()
        return raw

    def _start_log(self) -> None:
        """First log + reserve; when they do not fit there is no run (exit 2, nothing left)."""
        try:
            self.log.start()
        except OutputWriteError as exc:
            raise _FirstLogDoesNotFit(
                OutputDirError(f"no room for the run log in {self.run_dir}: {exc.reason}")
            ) from exc
        if self.claimed is not None:  # the log holds the directory from now on
            (self.claimed.path / CLAIM_NAME).unlink(missing_ok=True)

    def _apply_overrides(self, spec: spec_mod.Spec) -> spec_mod.Spec:
        if not self.options.input_overrides:
            return spec
        data = dict(spec.data)
        data["inputs"] = {key: dict(value) for key, value in spec.data["inputs"].items()}
        for key, path in self.options.input_overrides.items():
            if key not in data["inputs"]:
                from cosmo_runner.errors import UsageError

                raise UsageError(
                    f"--input {key}=...: the spec has no input {key!r} "
                    f"(inputs: {', '.join(sorted(data['inputs']))})"
                )
            data["inputs"][key]["path"] = str(path.resolve())
        return spec_mod.Spec(spec.path, spec.raw, data, spec.base_dir)

    def _run_validators(self, spec: spec_mod.Spec) -> None:
        from cosmo_runner import validators as registry

        records = self.log.doc["validators"]
        resolved = {entry["id"]: registry.resolve(entry["kind"]) for entry in spec.validators}
        unknown = [
            f"/validators/{i}/kind: unknown validator kind {shorten(repr(entry['kind']))} "
            f"(known: {', '.join(registry.known_kinds())})"
            for i, entry in enumerate(spec.validators)
            if resolved[entry["id"]] is None
        ]
        if unknown:
            raise SpecError(str(self.options.spec_path), unknown)
        errors: list[CosmoError] = []
        error_count = 0
        for entry in spec.validators:
            validator = resolved[entry["id"]]
            assert validator is not None  # unknown kinds were rejected above
            record: dict[str, Any] = {
                "id": entry["id"],
                "kind": entry["kind"],
                "input": entry["input"],
                "status": "running",
                "findings": [],
                "omitted": [],
                "dropped_lines": [],
                "error": None,
            }
            records.append(record)
            source = self.inputs[entry["input"]]
            context = registry.ValidatorContext(
                entry,
                source.resolved,
                spec.base,
                dict(entry.get("options", {})),
                source=source,
                analyses=tuple(a for a in spec.analyses if a["input"] == entry["input"]),
            )
            try:
                outcome = registry.run_validator(validator, context)
            except (Interrupted, KeyboardInterrupt) as exc:
                stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
                record.update(status="error", error=_short_error(stop))
                raise stop from None
            except BaseException as exc:
                # a table that cannot be parsed, a schema file that cannot be read (exit 2);
                # a plugin that raised (sys.exit too) or returned bad findings (exit 5): never
                # "passed"
                error = exc if isinstance(exc, CosmoError) else _plugin_crash(entry, exc)
                record.update(status="error", error=_short_error(error))
                errors.append(error)
                continue
            record["findings"] = [f.as_dict() for f in outcome.findings]
            record["omitted"] = outcome.omitted_records()
            if outcome.drop_rows:
                rows = sorted(outcome.drop_rows)
                record["dropped_lines"] = source.table().lines[rows].tolist()
                self.drop_rows.setdefault(entry["input"], set()).update(rows)
            error_count += outcome.errors
            if outcome.errors:
                record["status"] = "failed"
            elif outcome.total:
                record["status"] = "passed with warnings"
            else:
                record["status"] = "passed"
        if errors:
            raise errors[0]
        failed = [r for r in records if r["status"] == "failed"]
        if failed:
            problems = [
                f["message"] for r in failed for f in r["findings"] if f["level"] == "error"
            ]
            left_out = error_count - len(problems)
            if left_out:
                problems.append(f"(and {left_out} more error finding(s), counted in the log)")
            raise ValidationFailed([r["id"] for r in failed], problems, error_count)

    def _run_analyses(self, spec: spec_mod.Spec) -> None:
        import numpy as np

        records = self.log.doc["analyses"]
        failures: list[tuple[str, BaseException]] = []  # (analysis id, what it raised)
        assert self.run_dir is not None or not self.options.write
        tables: dict[str, Table] = {}
        for key in dict.fromkeys(entry["input"] for entry in spec.analyses):
            table = self.inputs[key].table()  # a TableError (exit 2) before any analysis
            drop = np.zeros(len(table), dtype=bool)
            drop[sorted(self.drop_rows.get(key, set()))] = True
            tables[key] = table.subset(~drop) if drop.any() else table
        for entry in spec.analyses:
            record: dict[str, Any] = {
                "id": entry["id"],
                "status": "running",
                "result": None,
                "plots": [],
                "summary": None,
                "error": None,
            }
            records.append(record)
            try:
                try:
                    try:
                        self._run_analysis(entry, tables[entry["input"]], record)
                    except OSError as exc:  # writing an output: a step error naming the file
                        raise OutputWriteError.from_os_error(exc) from exc
                except BaseException:  # no result or plot outlives its analysis' failure
                    self._remove_outputs(entry, record)
                    raise
                record["status"] = "succeeded"
            except Interrupted:
                record["status"] = "interrupted"
                raise
            except CosmoError as exc:
                record.update(
                    status="failed", error={"type": type(exc).__name__, "message": str(exc)}
                )
                failures.append((entry["id"], exc))
            except Exception as exc:
                record.update(status="failed", error=_error_record(exc))
                failures.append((entry["id"], exc))
            self.log.save()
        if failures:
            raise StepError.analyses(failures)

    def _remove_outputs(self, entry: dict[str, Any], record: dict[str, Any]) -> None:
        """Remove what a failed analysis wrote: no result or plot outlives its failure."""
        if self.run_dir is None:
            return
        from cosmo_runner.meta.plots import FORMATS

        paths = [self.run_dir / "results" / f"{entry['id']}.json"]
        paths += [
            self.run_dir / "plots" / f"{entry['id']}.{kind}.{fmt}"
            for kind in entry.get("plots", [])
            for fmt in FORMATS
        ]
        for path in paths:
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError):
                continue  # never written
            except OSError:
                continue  # cannot be removed: it stays, and the final log lists it in outputs
        record.update(result=None, plots=[])

    def _run_analysis(self, entry: dict[str, Any], table: Table, record: dict[str, Any]) -> None:
        from cosmo_runner.meta.analysis import analyse
        from cosmo_runner.meta.result_file import dumps_result

        timings = record.setdefault("timings", {})
        started = time.perf_counter()
        result = analyse(entry, table)
        timings["fit"] = round(time.perf_counter() - started, 6)
        record["summary"] = {
            k: result.get(k)
            for k in ("k", "estimate", "ci_lb", "ci_ub", "tau2", "I2", "pval", "method")
        }
        if result.get("transformed"):
            record["summary"]["transformed"] = result["transformed"]
        if result.get("coefficients"):
            record["summary"].update(
                coefficients=result["coefficients"],
                moderator_tau2=result.get("moderator_tau2"),
                R2=result.get("R2"),
            )
        if self.run_dir is None:
            return
        started = time.perf_counter()
        path = self.run_dir / "results" / f"{entry['id']}.json"
        write_atomic(path, dumps_result(result))
        record["result"] = file_record(path, self.run_dir)
        timings["write"] = round(time.perf_counter() - started, 6)
        if entry.get("plots"):
            from cosmo_runner.meta.plots import PlotData, render

            started = time.perf_counter()
            data = PlotData.from_result(result)
            written = render(data, entry["plots"], self.run_dir / "plots", entry["id"])
            record["plots"] = [file_record(p, self.run_dir) for p in written]
            timings["plots"] = round(time.perf_counter() - started, 6)

    def finish(self, error: BaseException | None) -> BaseException | None:
        """Write report.html and the final log; return the run's error (see _write_report)."""
        if self.claimed is not None:  # stopped before the first log: the final log holds it
            (self.claimed.path / CLAIM_NAME).unlink(missing_ok=True)
        if self.run_dir is not None:
            for sub in ("results", "plots"):
                with suppress(OSError):  # a full disk: the final log matters more
                    (self.run_dir / sub).mkdir(exist_ok=True)
            self.log.doc["outputs"] = [
                file_record(p, self.run_dir)
                for p in sorted((self.run_dir / "results").rglob("*"))
                + sorted((self.run_dir / "plots").rglob("*"))
                if p.is_file() and not p.name.startswith(".")
            ]
        outcome = error

        def report(doc: dict[str, Any]) -> None:
            nonlocal outcome
            problem = self._write_report(doc)
            if problem is not None and outcome is None:
                outcome = problem
                doc.update(
                    status="failed", exit_code=exit_code_for(problem), error=_error_record(problem)
                )

        if error is None:
            self.log.finish("succeeded", 0, before_write=report)
        else:
            status = "interrupted" if isinstance(error, Interrupted) else "failed"
            self.log.finish(status, exit_code_for(error), _error_record(error), report)
        return outcome

    def _write_report(self, doc: dict[str, Any]) -> CosmoError | None:
        """report.html from the completed log, before the final write; the problem, if any.

        A report that cannot be written never loses the run: the final log is still
        written and says why under ``report.error``. A run that had otherwise succeeded
        then fails with exit 5 (an output could not be written); a failed run keeps its
        own error and exit code. ``cosmo-runner report RUN`` writes the page again.
        """
        from cosmo_runner.share.report import REPORT_NAME

        assert self.run_dir is not None
        started = time.perf_counter()
        problem: CosmoError | None = None
        try:
            from cosmo_runner.share.report import write_run_report

            write_run_report(self.run_dir, doc)
        except OutputWriteError as exc:
            problem = exc
        except Exception as exc:  # a bug in the report: the run and its log still complete
            problem = StepError(f"internal error in step 'report': {type(exc).__name__}: {exc}")
            problem.__cause__ = exc
        doc["timings"]["report"] = round(time.perf_counter() - started, 6)
        doc["report"] = {
            "path": REPORT_NAME,
            "error": None if problem is None else _short_error(problem),
        }
        return problem
