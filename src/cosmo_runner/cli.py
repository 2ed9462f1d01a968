"""Command line: parse arguments, call ONE library function, print, map errors to exit codes.

Heavy libraries (numpy, scipy, matplotlib, jsonschema) are imported lazily by the
commands that need them, so ``cosmo-runner --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from cosmo_runner import __version__, redact
from cosmo_runner.env.gate import Gate
from cosmo_runner.errors import (
    EXIT_CRASH,
    EXIT_DIFFERENT,
    EXIT_ENVIRONMENT,
    EXIT_OK,
    EXIT_SAME,
    CosmoError,
    Interrupted,
    UsageError,
    exit_code_for,
)
from cosmo_runner.interrupts import SignalGuard
from cosmo_runner.redact import redact_document, redact_text

EPILOG = """exit codes: 0 ok; 2 usage error, invalid spec or input, unusable output directory;
3 environment gate failed; 4 validators found problems; 5 an analysis or step failed;
130/143 interrupted (SIGINT/SIGTERM); env diff: 0 same, 1 different, 2 error;
verify: 0 reproduced, 1 differs, 2 error, 3 the replay failed its smoke gate;
runs: 0 listed (lost runs too), 2 missing or unreadable DIR or a malformed single log;
report, export, env sbom: 0 written, 2 not a run folder, a malformed log or a bad option,
5 the file cannot be written;
batch: 6 some specs failed or were lost; scheduler, worker: 0 clean shutdown, 3 refused."""


class Console:
    """stdout and stderr that a closed pipe, a full disk or a bad descriptor cannot break.

    The exit code is the command's whatever happens to its output: a write that fails
    (EPIPE from ``| head``, ENOSPC from ``> /dev/full``, EBADF, EIO) marks that stream gone,
    points its descriptor at /dev/null (so the interpreter's final flush cannot fail either)
    and drops the rest of its output. A failure other than a reader that left (EPIPE) is
    said once on stderr, when stderr still works. The streams are looked up at each write
    (tests swap ``sys.stdout``); a closed descriptor at start (``2>&-``) is ``None`` there.
    """

    def __init__(self) -> None:
        self.gone: dict[str, str] = {}  # stream name -> why it stopped ("Broken pipe", ...)

    def out(self, text: str, *, redacted: bool = False) -> None:
        """Write to stdout; everything printed is redacted (cosmo_runner.redact) unless the
        caller already did it structurally (``redacted``: JSON from :func:`_json_text`)."""
        self._write("stdout", text if redacted else redact_text(text))

    def err(self, text: str) -> None:
        self._write("stderr", redact_text(text))

    def _write(self, name: str, text: str) -> None:
        if name in self.gone:
            return
        stream: TextIO | None = getattr(sys, name)
        if stream is None:
            self.gone[name] = "closed"
            return
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: "I/O operation on closed file"
            self._lost(name, stream, exc)

    def _lost(self, name: str, stream: TextIO, exc: BaseException) -> None:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        self.gone[name] = reason
        _silence(stream)
        if name == "stdout" and getattr(exc, "errno", None) != errno.EPIPE:
            self.err(f"cosmo-runner: warning: cannot write to stdout: {reason}\n")

    def flush(self) -> None:
        """Flush both streams now (nothing may be left for the interpreter to fail on)."""
        for name in ("stdout", "stderr"):
            stream: TextIO | None = getattr(sys, name)
            if stream is None or name in self.gone:
                continue
            try:
                stream.flush()
            except (OSError, ValueError) as exc:
                self._lost(name, stream, exc)


def _silence(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at /dev/null and drop what it still buffers."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return  # not a real file (a test's capture): nothing to flush at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    with contextlib.suppress(OSError, ValueError):  # a stream that is gone stays gone
        stream.flush()  # the pending bytes go to /dev/null now


def _reserve_std_fds() -> None:
    """Open /dev/null on a closed fd 0, 1 or 2, so no file we open later becomes "stdout"."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:  # lower descriptors are open, so this cannot happen; be safe
                os.dup2(opened, fd)
                os.close(opened)


class _Parser(argparse.ArgumentParser):
    """One-line usage errors; help and usage text written through a :class:`Console`."""

    def __init__(self, *args: Any, console: Console | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.console = console

    def error(self, message: str) -> Any:  # argparse exits 2 itself; keep our one-line format
        raise UsageError(f"{self.prog}: {message}")

    def _print_message(self, message: str, file: Any = None) -> None:
        if not message:
            return
        if self.console is None:
            super()._print_message(message, file)
        elif file is sys.stderr:
            self.console.err(message)
        else:
            self.console.out(message)


def _common(parser: argparse.ArgumentParser) -> None:
    """Options every command takes, before or after its arguments (``run spec --debug``)."""
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="also print tracebacks"
    )


def _add_env_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        metavar="PATH",
        help="environment manifest (default: $COSMO_MANIFEST, ./environment.manifest.json, "
        "then the installed copy)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="installed distributions that are not in the lock are errors",
    )


def build_parser(console: Console | None = None) -> argparse.ArgumentParser:
    """The command line. Every command takes ``--debug`` and its flags before or after its
    positional arguments (argparse interleaves them within a command)."""
    parser = _Parser(
        prog="cosmo-runner",
        description="Run JSON-specified validator and "
        "meta-analysis pipelines in an environment that cannot drift unnoticed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        console=console,
    )
    parser.add_argument("--version", action="version", version=f"cosmo-runner {__version__}")
    parser.add_argument("--debug", action="store_true", help="also print tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(group: Any, name: str, text: str) -> argparse.ArgumentParser:
        cmd: argparse.ArgumentParser = group.add_parser(name, help=text, console=console)
        _common(cmd)
        return cmd

    smoke = command(sub, "smoke", "confirm the environment against the manifest and lock")
    _add_env_options(smoke)
    smoke.add_argument("--json", action="store_true", help="print the snapshot and checks as JSON")
    smoke.add_argument("--pip-check", action="store_true", help="also run the real 'pip check'")
    smoke.add_argument(
        "--deep",
        action="store_true",
        help="also check every .pyc of a locked distribution against its source (slow when cold)",
    )

    for name, text in (
        ("run", "run a spec: validators, then analyses"),
        ("validate", "dry run: smoke gate, spec, inputs and validators; no analyses"),
    ):
        cmd = command(sub, name, text)
        cmd.add_argument("spec", type=Path, help="run spec (JSON)")
        cmd.add_argument(
            "--out",
            type=Path,
            metavar="DIR",
            help="run directory (must not exist or be empty)"
            + ("; default ./runs/<run_id>/" if name == "run" else "; default: write nothing"),
        )
        _add_env_options(cmd)

    env = command(sub, "env", "environment snapshots and diffs")
    env_sub = env.add_subparsers(dest="env_command", required=True, parser_class=_Parser)
    snap = command(env_sub, "snapshot", "print the environment snapshot as JSON")
    snap.add_argument("--manifest", metavar="PATH", help="environment manifest")
    diff = command(env_sub, "diff", "compare two environments (exit 0 same, 1 different, 2 error)")
    diff.add_argument("a", help="run directory, run_log.json, lock, manifest, or 'current'")
    diff.add_argument("b", help="run directory, run_log.json, lock, manifest, or 'current'")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.add_argument("--manifest", metavar="PATH", help="manifest for 'current'")
    sbom = command(env_sub, "sbom", "CycloneDX SBOM of the current environment (JSON)")
    sbom.add_argument("--manifest", metavar="PATH", help="environment manifest")
    sbom.add_argument(
        "--out", type=Path, metavar="FILE", help="write the SBOM to FILE (default: stdout)"
    )

    verify = command(
        sub,
        "verify",
        "replay a run and compare its outputs (0 reproduced, 1 differs, 2 error, 3 gate)",
    )
    verify.add_argument("run_dir", type=Path, help="run directory to replay")
    verify.add_argument(
        "--out", type=Path, metavar="DIR", help="replay directory (default: beside the original)"
    )
    verify.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="ID=PATH",
        help="read input ID from PATH instead of its recorded path",
    )
    verify.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="X",
        help="accept numeric differences in result JSON within relative tolerance X",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    _add_env_options(verify)

    runs = command(sub, "runs", "list runs under DIR (lost runs shown as lost; 0 listed, 2 error)")
    runs.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder of runs, one run folder, or a batch folder (default: ./runs)",
    )
    runs.add_argument("--json", action="store_true", help="a JSON array, one object per entry")

    report = command(
        sub, "report", "write RUN/report.html again from its log (0 done, 2 not a run, 5 write)"
    )
    report.add_argument("run_dir", type=Path, metavar="RUN", help="run directory")

    export = command(
        sub, "export", "export a run: an RO-Crate or a CycloneDX SBOM (0 done, 2 usage, 5 write)"
    )
    export.add_argument("run_dir", type=Path, metavar="RUN", help="run directory")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="what to write")
    export.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="cyclonedx: the SBOM file; ro-crate: the crate directory (or .zip with --zip)",
    )
    export.add_argument(
        "--zip", action="store_true", help="ro-crate: write the crate as one zip file at PATH"
    )
    _add_batch_commands(sub, command)
    return parser


EXPORT_FORMATS = ("ro-crate", "cyclonedx")


def _add_batch_commands(sub: Any, command: Any) -> None:
    batch = command(sub, "batch", "run many specs on Dask workers (0 ok, 6 some failed or lost)")
    batch.add_argument("specs", nargs="*", type=Path, metavar="SPEC", help="run spec files")
    batch.add_argument(
        "--from",
        dest="from_file",
        type=Path,
        metavar="FILE",
        help="file listing one spec path per line",
    )
    batch.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        required=True,
        help="batch folder: DIR/<spec key>/ per spec, DIR/batch_log.json",
    )
    batch.add_argument(
        "--cluster",
        default="local",
        metavar="local|slurm|ADDRESS",
        help="embedded LocalCluster (default), SLURMCluster, or a scheduler address",
    )
    batch.add_argument(
        "--workers", type=int, metavar="N", help="local: worker processes (default: one per CPU)"
    )
    batch.add_argument("--jobs", type=int, metavar="N", help="slurm: jobs (default 1)")
    batch.add_argument(
        "--expect-env-id",
        metavar="ID",
        help="env id every worker must have (default: the client's own)",
    )
    batch.add_argument(
        "--resume",
        action="store_true",
        help="continue in a non-empty DIR, reusing runs that still match",
    )
    batch.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="reschedule a task whose worker died N times, then 'lost' (default 2)",
    )
    batch.add_argument("--chunk", type=int, metavar="K", help="specs per task (default: automatic)")
    batch.add_argument(
        "--shared-fs", action="store_true", help="workers read the client's paths: ship no bytes"
    )
    batch.add_argument(
        "--worker-deadline",
        type=float,
        default=60.0,
        metavar="S",
        help="local, slurm: refuse a worker unverified after S seconds; any cluster: stop "
        "waiting after S seconds without an accepted worker (default 60)",
    )
    batch.add_argument("--manifest", metavar="PATH", help="environment manifest for the client")

    sched = command(sub, "scheduler", "a Dask scheduler that holds workers until their env matches")
    sched.add_argument("--host", default="127.0.0.1", metavar="H", help="default 127.0.0.1")
    sched.add_argument("--port", type=int, default=8786, metavar="P", help="default 8786")
    sched.add_argument(
        "--worker-deadline",
        type=float,
        default=60.0,
        metavar="S",
        help="refuse a worker unverified after S seconds (default 60)",
    )

    work = command(sub, "worker", "a gated Dask worker (exit 3 when refused or its gate fails)")
    work.add_argument("address", metavar="ADDRESS", help="scheduler address, tcp://host:port")
    work.add_argument("--nthreads", type=int, default=1, metavar="N", help="default 1")


def _json_text(document: Any) -> str:
    """The document as JSON, redacted as a document (print it with ``redacted=True``)."""
    return json.dumps(redact_document(document), indent=2, sort_keys=True) + "\n"


def cmd_smoke(args: argparse.Namespace, console: Console) -> int:
    from cosmo_runner.env.smoke import run_checks, start_import_probes
    from cosmo_runner.env.snapshot import capture
    from cosmo_runner.triage.report import smoke_summary

    imports = start_import_probes(args.manifest)  # runs while the snapshot is taken
    state = capture(args.manifest, deep=args.deep)
    report = run_checks(state, strict=args.strict, pip_check=args.pip_check, imports=imports)
    environment = state.document()
    if args.json:
        console.out(
            _json_text({"environment": environment, "smoke": report.as_dict()}), redacted=True
        )
    else:
        console.out(smoke_summary(environment, report) + "\n")
    return EXIT_OK if report.passed else EXIT_ENVIRONMENT


def cmd_run(
    args: argparse.Namespace,
    argv: list[str],
    console: Console,
    signals: SignalGuard,
    gate: Gate | None = None,
) -> int:
    from cosmo_runner.pipeline import RunOptions, execute
    from cosmo_runner.triage.report import run_summary

    dry = args.command == "validate"
    result = execute(
        RunOptions(
            spec_path=args.spec,
            out_dir=args.out,
            manifest=args.manifest,
            strict=args.strict,
            analyses=not dry,
            write=not dry or args.out is not None,
            command=["cosmo-runner", *argv],
            gate=gate or Gate(),
        ),
        signals=signals,
    )
    # the final log is written and the guard closed: signals from here on are ignored,
    # so the exit code stays the one in the log
    if result.smoke is not None and not result.smoke.passed:
        for message in result.smoke.failures:
            console.err(f"cosmo-runner: environment: {message}\n")
    console.out(run_summary(result.log, result.log_path) + "\n")
    if result.error is not None:
        _report_error(result.error, args.debug, console)
    return result.exit_code


def cmd_env(args: argparse.Namespace, console: Console) -> int:
    if args.env_command == "snapshot":
        from cosmo_runner.env.snapshot import capture

        console.out(_json_text({"environment": capture(args.manifest).document()}), redacted=True)
        return EXIT_OK
    if args.env_command == "sbom":
        return cmd_env_sbom(args, console)
    from cosmo_runner.env.diff import diff_sources
    from cosmo_runner.triage.report_diff import diff_table

    result = diff_sources(args.a, args.b, manifest=args.manifest)
    if args.json:
        console.out(_json_text(result.as_dict()), redacted=True)
    else:
        console.out(diff_table(result) + "\n")
    return EXIT_SAME if result.identical else EXIT_DIFFERENT


def cmd_env_sbom(args: argparse.Namespace, console: Console) -> int:
    from cosmo_runner.env.snapshot import capture
    from cosmo_runner.runlog import write_atomic
    from cosmo_runner.share.sbom import sbom_text

    text = sbom_text(capture(args.manifest).document())
    if args.out is None:
        console.out(text, redacted=True)
    else:
        write_atomic(args.out, text.encode("utf-8"))
        console.out(f"wrote {args.out}\n")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, console: Console, gate: Gate | None = None) -> int:
    from cosmo_runner.triage.report_diff import render_report
    from cosmo_runner.triage.verify import VerifyOptions, verify

    overrides: dict[str, Path] = {}
    for item in args.input:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UsageError(f"--input expects ID=PATH, got {item!r}")
        overrides[key] = Path(value)
    report = verify(
        VerifyOptions(
            run_dir=args.run_dir,
            out_dir=args.out,
            input_overrides=overrides,
            rtol=args.rtol,
            manifest=args.manifest,
            strict=args.strict,
            gate=gate or Gate(),
        )
    )
    if args.json:
        console.out(_json_text(report.as_dict()), redacted=True)
    else:
        console.out(render_report(report) + "\n")
    return int(report.exit_code)


def cmd_runs(args: argparse.Namespace, console: Console) -> int:
    from cosmo_runner.triage.report_runs import runs_table
    from cosmo_runner.triage.runs import list_runs

    listing = list_runs(args.dir)
    if args.json:
        console.out(_json_text([entry.as_dict() for entry in listing.entries]), redacted=True)
    else:
        console.out(runs_table(listing) + "\n")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    if args.format == "cyclonedx":
        if args.zip:
            raise UsageError("--zip applies to --format ro-crate only")
        from cosmo_runner.share.sbom import export_run_sbom

        written = export_run_sbom(args.run_dir, args.out)
    else:
        from cosmo_runner.share.crate import export_crate

        written = export_crate(args.run_dir, args.out, zip_=args.zip)
    console.out(f"wrote {written}\n")
    return EXIT_OK


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from cosmo_runner.share.report import rewrite_report

    console.out(f"wrote {rewrite_report(args.run_dir)}\n")
    return EXIT_OK


def cmd_batch(
    args: argparse.Namespace,
    argv: list[str],
    console: Console,
    signals: SignalGuard,
    gate: Gate | None = None,
) -> int:
    from cosmo_runner.batch.client import BatchOptions, run_batch
    from cosmo_runner.triage.report import batch_summary

    bar = _progress_bar(console)
    try:
        result = run_batch(
            BatchOptions(
                specs=args.specs,
                out_dir=args.out,
                from_file=args.from_file,
                cluster=args.cluster,
                workers=args.workers,
                jobs=args.jobs,
                expect_env_id=args.expect_env_id,
                resume=args.resume,
                retries=args.retries,
                chunk=args.chunk,
                shared_fs=args.shared_fs,
                manifest=args.manifest,
                command=["cosmo-runner", *argv],
                deadline=args.worker_deadline,
                progress=bar.update if bar is not None else None,
                gate=gate,
            ),
            signals=signals,
        )
    finally:
        if bar is not None:
            bar.close()
    console.out(batch_summary(result.log, result.log_path) + "\n")
    if result.error is not None:
        _report_error(result.error, args.debug, console)
    return result.exit_code


class _Bar:
    """One live line on a terminal (tqdm): done, failed, refused workers, specs/s, ETA."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, file=sys.stderr, unit="spec", dynamic_ncols=True)

    def update(self, counts: dict[str, int]) -> None:
        self.bar.total = counts["total"]
        self.bar.set_postfix(failed=counts["failed"], refused=counts["refused"], refresh=False)
        self.bar.update(counts["done"] - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(console: Console) -> _Bar | None:
    stream = sys.stderr
    if stream is None or "stderr" in console.gone or not stream.isatty():
        return None
    return _Bar()


def cmd_serve(args: argparse.Namespace, console: Console, signals: SignalGuard) -> int:
    from cosmo_runner.batch import serve

    def ready(address: str) -> None:
        console.out(f"cosmo-runner {args.command} at {address}\n")

    signals.restore()  # the server's event loop takes SIGINT/SIGTERM: both close it cleanly
    if args.command == "scheduler":
        return serve.scheduler(args.host, args.port, args.worker_deadline, ready)
    return serve.worker(args.address, args.nthreads, ready)


def _report_error(error: BaseException, debug: bool, console: Console) -> None:
    lines = error.lines() if isinstance(error, CosmoError) else [str(error)]
    for line in lines:
        console.err(f"cosmo-runner: error: {line}\n")
    if debug:
        console.err("".join(traceback.format_exception(error)))


def main(argv: list[str] | None = None, *, gate: Gate | None = None) -> int:
    """Entry point of ``cosmo-runner`` and ``python -m cosmo_runner``; returns the exit code.

    The exit code is decided by the command alone: output that cannot be written (see
    :class:`Console`) never changes it, and SIGINT/SIGTERM follow
    :mod:`cosmo_runner.interrupts` (the first decides; once the outcome is known, none
    changes it). Called without ``argv`` (as the program), SIGINT and SIGTERM stay ignored
    after it returns, so the process exits with the code it returned.

    ``gate``: how ``run``, ``validate``, ``verify`` and ``batch``'s client observe and check
    the environment (:class:`cosmo_runner.env.gate.Gate`; default: afresh at every run). A
    caller that runs many commands in one process may pass one that reuses a verified
    observation (a batch's workers always gate themselves).
    """
    as_program = argv is None  # the process's own entry point: it exits right after
    argv = list(sys.argv[1:] if argv is None else argv)
    # secrets on this command line are hidden like those on the process's own (redact)
    command_line = redact.command_line.set(tuple(argv))
    try:
        return _main(argv, as_program, gate)
    finally:
        redact.command_line.reset(command_line)


def _main(argv: list[str], as_program: bool, gate: Gate | None) -> int:
    _reserve_std_fds()
    console = Console()
    signals = SignalGuard()
    signals.install()
    try:
        try:
            code = _dispatch(argv, console, signals, gate)
        finally:
            signals.close()  # from here on no signal can raise
    except BaseException as exc:
        code = _failure(exc, "--debug" in argv, console)
    finally:
        console.flush()
        signals.restore(ignore=as_program)  # a program ignores signals until it has exited
    return code


def _failure(exc: BaseException, debug: bool, console: Console) -> int:
    """Report an error that reached :func:`main` and return its exit code."""
    if isinstance(exc, SystemExit):  # argparse's --help and --version
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    if isinstance(exc, KeyboardInterrupt):  # the guard was not installed (not main thread)
        exc = Interrupted(signal.SIGINT)
    if isinstance(exc, CosmoError):
        _report_error(exc, debug, console)
        return exit_code_for(exc)
    console.err(
        f"cosmo-runner: internal error (a bug, please report): {type(exc).__name__}: {exc}\n"
    )
    if debug:
        console.err("".join(traceback.format_exception(exc)))
    return EXIT_CRASH


def _dispatch(argv: list[str], console: Console, signals: SignalGuard, gate: Gate | None) -> int:
    args = build_parser(console).parse_args(argv)
    args.debug = getattr(args, "debug", False)
    if args.command == "smoke":
        return cmd_smoke(args, console)
    if args.command in ("run", "validate"):
        return cmd_run(args, argv, console, signals, gate)
    if args.command == "env":
        return cmd_env(args, console)
    if args.command == "runs":
        return cmd_runs(args, console)
    if args.command == "report":
        return cmd_report(args, console)
    if args.command == "export":
        return cmd_export(args, console)
    if args.command == "batch":
        return cmd_batch(args, argv, console, signals, gate)
    if args.command in ("scheduler", "worker"):
        return cmd_serve(args, console, signals)
    return cmd_verify(args, console, gate)
