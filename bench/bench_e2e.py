"""End to end: ``cosmo-runner run examples/bcg/spec.json`` against R's metafor doing the same job.

The anchor is ``../shared/bench/bcg_job.R``: log risk ratios, REML and DL fits with Q-profile
CIs, leave-one-out and Egger's test, the ablat meta-regression, and a forest and a funnel
plot per fit as PNG and SVG. cosmo-runner does that plus what every run does by default:
the environment snapshot, the smoke gate, the spec and input checks, the validators, the
results JSON and the run log.

Interleaved (each repeat runs both once, alternating which goes first), one untimed warm-up
each, median wall time of the repeats, each in a fresh output directory. The time of a
cosmo-runner run is split by the run log's step timings (``environment`` = the snapshot,
``smoke`` = the gate, ``analyses`` = fits + plots + writing) and, for the analyses, by the
per-analysis timings in the log when present. Target: cosmo-runner <= 1.0x R's wall time.
Skipped with a visible reason where ``Rscript`` or metafor is absent.

Usage: ``python bench/bench_e2e.py [--venv .venv] [--repeats N]``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R_JOB = ROOT.parent / "shared" / "bench" / "bcg_job.R"
EXAMPLE = ROOT / "examples" / "bcg"
TARGET = 1.0


def timed(cmd: list[str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start, proc.returncode


def r_available() -> str | None:
    """None when Rscript with metafor runs, else the reason to skip."""
    if shutil.which("Rscript") is None:
        return "Rscript is not installed (apt-get install r-base-core r-cran-metafor)"
    if not R_JOB.is_file():
        return f"{R_JOB} is missing"
    probe = subprocess.run(
        ["Rscript", "-e", "suppressMessages(library(metafor))"], capture_output=True, check=False
    )
    return None if probe.returncode == 0 else "R's metafor is not installed (r-cran-metafor)"


# Long on purpose (PLR0912, PLR0915): one benchmark read top to bottom: setup, interleaved timings,
# the tables.
def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912, PLR0915
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    script = args.venv / "bin" / "cosmo-runner"
    title = "### End to end: the BCG job, cosmo-runner against R's metafor"
    if not script.exists():
        print(f"bench_e2e: {script} is missing; run `make venv` first", file=sys.stderr)
        return 2
    skip = r_available()
    work = Path(tempfile.mkdtemp(prefix="cosmo-bench-e2e-"))
    try:
        job = work / "job"
        shutil.copytree(EXAMPLE, job)
        counter = iter(range(10**6))

        def run_cosmo() -> tuple[float, int]:
            return timed([str(script), "run", "spec.json", "--out", f"out-{next(counter)}"], job)

        def run_r() -> tuple[float, int]:
            return timed(["Rscript", str(R_JOB), "bcg.csv", f"r-{next(counter)}"], job)

        jobs = {"cosmo-runner run": run_cosmo}
        if skip is None:
            jobs["Rscript bcg_job.R"] = run_r
        samples: dict[str, list[float]] = {name: [] for name in jobs}
        codes: dict[str, set[int]] = {name: set() for name in jobs}
        for fn in jobs.values():  # warm-up: page cache, .pyc files, font caches
            fn()
        names = list(jobs)
        for r in range(args.repeats):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                seconds, code = jobs[name]()
                samples[name].append(seconds)
                codes[name].add(code)
        steps: dict[str, list[float]] = {}
        for log_path in sorted(job.glob("out-*/run_log.json")):
            log = json.loads(log_path.read_text(encoding="utf-8"))
            for step, seconds in (log.get("timings") or {}).items():
                steps.setdefault(step, []).append(float(seconds))
            for analysis in log.get("analyses") or []:
                for part, seconds in (analysis.get("timings") or {}).items():
                    steps.setdefault(f"analyses: {part}", []).append(float(seconds))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(s) for name, s in samples.items()}
    lines = [title, ""]
    lines.append(
        f"Interleaved, one warm-up each, median of {args.repeats} (min–max in brackets); "
        "wall time of the whole process, from a copy of examples/bcg."
    )
    lines += [
        "",
        "| command | median | range | exit code(s) | target | met |",
        "|---|---:|---:|---|---|---|",
    ]
    for name in names:
        ratio = ""
        if name == "cosmo-runner run" and "Rscript bcg_job.R" in med:
            value = med[name] / med["Rscript bcg_job.R"]
            ratio = f"{value:.2f}x R {'✓' if value <= TARGET else '✗'}"
        lines.append(
            f"| `{name}` | {med[name] * 1e3:.0f} ms | {min(samples[name]) * 1e3:.0f}–"
            f"{max(samples[name]) * 1e3:.0f} ms | {', '.join(map(str, sorted(codes[name])))} | "
            + ("≤ 1.0x R | " if name == "cosmo-runner run" else " | ")
            + f"{ratio} |"
        )
    if skip is not None:
        lines += ["", f"R skipped: {skip}."]
    lines += [
        "",
        "Where a cosmo-runner run's time goes (medians of the run logs' step timings):",
        "",
    ]
    lines += ["| step | median |", "|---|---:|"]
    for step, values in steps.items():
        lines.append(f"| {step} | {statistics.median(values) * 1e3:.0f} ms |")
    rest = med["cosmo-runner run"] - sum(
        statistics.median(v) for k, v in steps.items() if not k.startswith("analyses: ")
    )
    lines.append(
        f"| interpreter start, imports before the first step, exit | {rest * 1e3:.0f} ms |"
    )
    lines.append("")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
