"""Do ``run`` and ``validate`` still need fresh-interpreter import probes? Measured.

Since import origins (env/origins.py) and the locked distributions' RECORDs are checked in
the process that runs the pipeline, a required import that a locked distribution installs is
vouched for without importing it; only the others need a probe. This times each command both
ways through one driver that differs only in the option (``probe_all``):

- ``smoke``: ``run_checks(probe_all=True)`` (what ``cosmo-runner smoke`` does) against
  ``probe_all=False``;
- ``validate examples/bcg/spec.json`` and ``run examples/bcg/spec.json --out DIR``:
  ``RunOptions(probe_all=True)`` against the default (``False``).

Each timing is a whole process (interpreter start to exit) against the main ``.venv``, from
the repository root; interleaved in rotating order, one untimed warm-up round, median of the
repeats (min-max in brackets).

Usage: ``python bench/bench_probes.py [--venv .venv] [--repeats N]``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "bcg" / "spec.json"

# One shot in the measured interpreter: COMMAND PROBE_ALL [OUT]; exits with the command's code.
DRIVER = """
import sys
from pathlib import Path
command, probe_all = sys.argv[1], sys.argv[2] == "all"
if command == "smoke":
    from cosmo_runner.env.smoke import run_checks, start_import_probes
    from cosmo_runner.env.snapshot import capture
    imports = start_import_probes() if probe_all else None
    report = run_checks(capture(), imports=imports, probe_all=probe_all)
    sys.exit(0 if report.passed else 3)
from cosmo_runner.pipeline import RunOptions, execute
dry = command == "validate"
result = execute(RunOptions(
    spec_path=Path(sys.argv[4]), out_dir=None if dry else Path(sys.argv[3]),
    analyses=not dry, write=not dry, probe_all=probe_all,
))
sys.exit(result.exit_code)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    python = args.venv / "bin" / "python"
    if not python.exists():
        print(f"bench_probes: {python} is missing; run `make venv` first", file=sys.stderr)
        return 2
    rows = [(c, p) for c in ("smoke", "validate", "run") for p in ("all", "vouched")]
    times: dict[tuple[str, str], list[float]] = {row: [] for row in rows}
    scratch = Path(tempfile.mkdtemp(prefix="bench-probes-"))
    try:
        for repeat in range(args.repeats + 1):
            shift = repeat % len(rows)
            for command, probes in rows[shift:] + rows[:shift]:
                out = scratch / f"{command}-{probes}-{repeat}"
                cmd = [str(python), "-c", DRIVER, command, probes, str(out), str(SPEC)]
                start = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
                elapsed = time.perf_counter() - start
                if proc.returncode != 0:
                    print(f"bench_probes: {command} ({probes}) exited {proc.returncode}:")
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                if repeat:
                    times[(command, probes)].append(elapsed)
                print(f"  {command} {probes}: {elapsed * 1000:.0f} ms", file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report(times, args.repeats))
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def report(times: dict[tuple[str, str], list[float]], repeats: int) -> str:
    lines = [
        "### Import probes: needed by `run` and `validate`?",
        "",
        f"Whole processes against `.venv` from the repository root; interleaved, one warm-up "
        f"round, median of {repeats} (min–max); 1-minute load average {os.getloadavg()[0]:.1f} "
        "at the end. *All probes*: every required import in fresh interpreters (what "
        "`cosmo-runner smoke` does). *Vouched*: only the required imports that no locked "
        "distribution installs are probed (none in this environment); the others are vouched "
        "for in-process by their origin and their distribution's RECORD (the default of "
        "`run` and `validate`).",
        "",
        "| command | all probes | vouched (no probe here) | saved |",
        "|---|---:|---:|---:|",
    ]
    saved = {}
    for command in ("smoke", "validate", "run"):
        every, vouched = times[(command, "all")], times[(command, "vouched")]
        a, v = statistics.median(every), statistics.median(vouched)
        saved[command] = f"{_ms(a - v)} ({(a - v) / a:.0%})"
        lines.append(
            f"| `{command}` | {_ms(a)} ({_ms(min(every))}–{_ms(max(every))}) | "
            f"{_ms(v)} ({_ms(min(vouched))}–{_ms(max(vouched))}) | {saved[command]} |"
        )
    lines += [
        "",
        "Choice: `run` and `validate` probe only the required imports that no locked "
        "distribution installs; here that saves "
        f"{saved['validate']} of `validate` and {saved['run']} of `run` (medians). What the "
        "probes would add is caught in-process before any step: a shadow (origins), a deleted "
        "or edited file (RECORD), a foreign or editable install (WHEEL, direct_url.json). "
        "What only a fresh import shows (a missing system library, an import that hangs on "
        "the machine's state) is left to `cosmo-runner smoke`, which `make run`, CI and the "
        "container entrypoint run first, with the timeout; in `run` such an import fails its "
        "step (exit 5) instead of the gate.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
