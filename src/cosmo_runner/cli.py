"""Command line: parse arguments, call ONE library function, print, map errors to exit codes.

Heavy libraries (numpy, scipy, matplotlib, jsonschema) are imported lazily by the
commands that need them, so ``cosmo-runner --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from cosmo_runner import __version__
from cosmo_runner.errors import (
    EXIT_CRASH,
    CosmoError,
    SpecError,
    UsageError,
    ValidationFailed,
    exit_code_for,
)

EPILOG = """exit codes: 0 ok; 2 usage error, invalid spec or input, unusable output directory;
3 environment gate failed; 4 validators found problems; 5 an analysis or step failed;
130/143 interrupted (SIGINT/SIGTERM); env diff: 0 same, 1 different, 2 error;
verify: 0 reproduced, 1 differs, 2 error, 3 the replay failed its smoke gate;
runs: 0 listed (lost runs too), 2 missing or unreadable DIR or a malformed single log."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 itself; keep our one-line format
        raise UsageError(f"{self.prog}: {message}")


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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cosmo-runner",
        description="Run JSON-specified validator and "
        "meta-analysis pipelines in an environment that cannot drift unnoticed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cosmo-runner {__version__}")
    parser.add_argument("--debug", action="store_true", help="also print tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    smoke = sub.add_parser("smoke", help="confirm the environment against the manifest and lock")
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
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("spec", type=Path, help="run spec (JSON)")
        cmd.add_argument(
            "--out",
            type=Path,
            metavar="DIR",
            help="run directory (must not exist or be empty)"
            + ("; default ./runs/<run_id>/" if name == "run" else "; default: write nothing"),
        )
        _add_env_options(cmd)

    env = sub.add_parser("env", help="environment snapshots and diffs")
    env_sub = env.add_subparsers(dest="env_command", required=True, parser_class=_Parser)
    snap = env_sub.add_parser("snapshot", help="print the environment snapshot as JSON")
    snap.add_argument("--manifest", metavar="PATH", help="environment manifest")
    diff = env_sub.add_parser(
        "diff", help="compare two environments (exit 0 same, 1 different, 2 error)"
    )
    diff.add_argument("a", help="run directory, run_log.json, lock, manifest, or 'current'")
    diff.add_argument("b", help="run directory, run_log.json, lock, manifest, or 'current'")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.add_argument("--manifest", metavar="PATH", help="manifest for 'current'")

    verify = sub.add_parser(
        "verify",
        help="replay a run and compare its outputs (0 reproduced, 1 differs, 2 error, 3 gate)",
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

    runs = sub.add_parser(
        "runs", help="list runs under DIR (lost runs shown as lost; 0 listed, 2 error)"
    )
    runs.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=Path("runs"),
        metavar="DIR",
        help="folder of runs, one run folder, or a batch folder (default: ./runs)",
    )
    runs.add_argument("--json", action="store_true", help="a JSON array, one object per entry")
    return parser


def _print_json(document: Any, stream: TextIO) -> None:
    stream.write(json.dumps(document, indent=2, sort_keys=True) + "\n")


def cmd_smoke(args: argparse.Namespace) -> int:
    from cosmo_runner.env.smoke import run_checks, start_import_probes
    from cosmo_runner.env.snapshot import capture
    from cosmo_runner.report import smoke_summary

    imports = start_import_probes(args.manifest)  # runs while the snapshot is taken
    state = capture(args.manifest, deep=args.deep)
    report = run_checks(state, strict=args.strict, pip_check=args.pip_check, imports=imports)
    environment = state.document()
    if args.json:
        _print_json({"environment": environment, "smoke": report.as_dict()}, sys.stdout)
    else:
        print(smoke_summary(environment, report))
    return 0 if report.passed else 3


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:
    from cosmo_runner.pipeline import RunOptions, execute
    from cosmo_runner.report import run_summary

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
        )
    )
    if result.smoke is not None and not result.smoke.passed:
        for message in result.smoke.failures:
            print(f"cosmo-runner: environment: {message}", file=sys.stderr)
    print(run_summary(result.log, result.log_path))
    if result.error is not None:
        _report_error(result.error, args.debug)
    return result.exit_code


def cmd_env(args: argparse.Namespace) -> int:
    if args.env_command == "snapshot":
        from cosmo_runner.env.snapshot import capture

        _print_json({"environment": capture(args.manifest).document()}, sys.stdout)
        return 0
    from cosmo_runner.env.diff import diff_sources
    from cosmo_runner.report_diff import diff_table

    result = diff_sources(args.a, args.b, manifest=args.manifest)
    if args.json:
        _print_json(result.as_dict(), sys.stdout)
    else:
        print(diff_table(result))
    return 0 if result.identical else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from cosmo_runner.report_diff import render_report
    from cosmo_runner.verify import VerifyOptions, verify

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
        )
    )
    if args.json:
        _print_json(report.as_dict(), sys.stdout)
    else:
        print(render_report(report))
    return int(report.exit_code)


def cmd_runs(args: argparse.Namespace) -> int:
    from cosmo_runner.triage.report_runs import runs_table
    from cosmo_runner.triage.runs import list_runs

    listing = list_runs(args.dir)
    if args.json:
        _print_json([entry.as_dict() for entry in listing.entries], sys.stdout)
    else:
        print(runs_table(listing))
    return 0


def _report_error(error: BaseException, debug: bool) -> None:
    if isinstance(error, SpecError):
        lines = [f"{error.path}: {p}" for p in error.problems]
    elif isinstance(error, ValidationFailed):
        lines = [str(error).split("; first: ")[0], *error.problems]
    else:
        lines = [str(error)]
    for line in lines:
        print(f"cosmo-runner: error: {line}", file=sys.stderr)
    if debug:
        traceback.print_exception(error, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cosmo-runner`` and ``python -m cosmo_runner``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if args.command == "smoke":
            return cmd_smoke(args)
        if args.command in ("run", "validate"):
            return cmd_run(args, argv)
        if args.command == "env":
            return cmd_env(args)
        if args.command == "runs":
            return cmd_runs(args)
        return cmd_verify(args)
    except CosmoError as exc:
        _report_error(exc, debug)
        return exit_code_for(exc)
    except BrokenPipeError:  # `cosmo-runner smoke | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("cosmo-runner: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print(
            f"cosmo-runner: internal error (a bug, please report): {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        if debug:
            traceback.print_exc()
        return EXIT_CRASH
