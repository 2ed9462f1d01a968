"""Environment gate speed: ``cosmo-runner smoke`` against the naive gate, and ``--help``.

Runs against the main environment (``.venv``, made by ``make venv``) through its own
interpreter and console script, from the repository root (where the manifest is):

- the naive gate, three processes in a row: ``python -c "import <every required import of
  environment.manifest.json>"``, then ``python -m pip freeze``, then ``python -m pip check``;
- ``cosmo-runner smoke``, which checks all of that and more in one process;
- ``cosmo-runner --help``, whose imports must stay light (no numpy, no scipy).

Interleaved (each repeat runs every command once, in rotating order), one untimed warm-up
each, median of the repeats. Targets: smoke ≤ 0.6x the naive gate; ``--help`` ≤ 150 ms.

Usage: ``python bench/bench_env.py [--venv .venv] [--repeats N]``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE_TARGET = 0.6
HELP_TARGET_S = 0.150
HEAVY = ("numpy", "scipy", "matplotlib", "jsonschema")


def run(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - start, proc.returncode


def heavy_imports_at_help(python: Path, script: Path) -> list[str]:
    """Top-level packages among HEAVY that ``cosmo-runner --help`` imports (-X importtime)."""
    proc = subprocess.run(
        [str(python), "-X", "importtime", str(script), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    found = set()
    for line in proc.stderr.splitlines():
        name = line.rsplit("|", 1)[-1].strip()
        top = name.split(".")[0]
        if top in HEAVY:
            found.add(top)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    python = args.venv / "bin" / "python"
    script = args.venv / "bin" / "cosmo-runner"
    if not script.exists():
        print(f"bench_env: {script} is missing; run `make venv` first", file=sys.stderr)
        return 2
    manifest = json.loads((ROOT / "environment.manifest.json").read_text(encoding="utf-8"))
    modules = manifest["imports"]["modules"]

    naive = [
        [str(python), "-c", "import " + ", ".join(modules)],
        [str(python), "-m", "pip", "freeze"],
        [str(python), "-m", "pip", "check"],
    ]
    smoke = [str(script), "smoke"]
    help_cmd = [str(script), "--help"]

    def run_naive() -> tuple[float, int]:
        total, worst = 0.0, 0
        for cmd in naive:
            seconds, code = run(cmd)
            total += seconds
            worst = max(worst, code)
        return total, worst

    def run_smoke() -> tuple[float, int]:
        return run(smoke)

    def run_help() -> tuple[float, int]:
        return run(help_cmd)

    jobs = {"naive gate": run_naive, "cosmo-runner smoke": run_smoke, "--help": run_help}
    samples: dict[str, list[float]] = {name: [] for name in jobs}
    codes: dict[str, set[int]] = {name: set() for name in jobs}
    names = list(jobs)
    for name in names:  # warm-up: page cache, .pyc files
        jobs[name]()
    for r in range(args.repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, code = jobs[name]()
            samples[name].append(seconds)
            codes[name].add(code)
    med = {name: statistics.median(s) for name, s in samples.items()}
    ratio = med["cosmo-runner smoke"] / med["naive gate"]
    heavy = heavy_imports_at_help(python, script)

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.0f} ms"

    def exits(name: str) -> str:
        return ", ".join(str(c) for c in sorted(codes[name]))

    smoke_ok = ratio <= SMOKE_TARGET
    help_ok = med["--help"] <= HELP_TARGET_S and not heavy
    lines = [
        "### Environment gate: `cosmo-runner smoke` vs the naive gate, and `--help`",
        "",
        f"Against `{args.venv.name}` from the repository root; interleaved, one warm-up each, "
        f"median of {args.repeats} (min–max in brackets). Naive gate = "
        f'`python -c "import {", ".join(modules)}"` + `python -m pip freeze` + '
        "`python -m pip check` (three processes).",
        "",
        "| command | median | range | exit code(s) | target | met |",
        "|---|---:|---:|---|---|---|",
        f"| naive gate (import + pip freeze + pip check) | {ms(med['naive gate'])} | "
        f"{ms(min(samples['naive gate']))}–{ms(max(samples['naive gate']))} | "
        f"{exits('naive gate')} | | |",
        f"| `cosmo-runner smoke` | {ms(med['cosmo-runner smoke'])} | "
        f"{ms(min(samples['cosmo-runner smoke']))}–{ms(max(samples['cosmo-runner smoke']))} | "
        f"{exits('cosmo-runner smoke')} | ≤ {SMOKE_TARGET}x naive | "
        f"{ratio:.2f}x {'✓' if smoke_ok else '✗'} |",
        f"| `cosmo-runner --help` | {ms(med['--help'])} | "
        f"{ms(min(samples['--help']))}–{ms(max(samples['--help']))} | {exits('--help')} | "
        f"≤ {HELP_TARGET_S * 1e3:.0f} ms, no numpy/scipy | {'✓' if help_ok else '✗'} |",
        "",
        "Heavy imports at `--help` (-X importtime): "
        + (", ".join(heavy) if heavy else "none (numpy, scipy, matplotlib, jsonschema not loaded)")
        + ".",
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
