"""Installed files against RECORD: what ``cosmo-runner smoke`` spends on it, cold and warm.

Runs :func:`cosmo_runner.env.records.verify` for every distribution of the runtime lock in
a fresh interpreter of the main environment (``.venv``) per sample, the way ``smoke`` does:

- cold: an empty ``$COSMO_CACHE_DIR``, so every file is read and hashed. Cache-cold, page
  cache warm: the OS page cache is not dropped (that needs root and disturbs everyone else
  on the machine), so this measures hashing, not the disk;
- warm: the cache that cold run wrote (every file is still stat()ed);
- deep cold / deep warm: the same with the bytecode check (``smoke --deep``).

Interleaved, median of the repeats (deep: fewer, it is slow). Wall time and the process's
CPU time are both reported: on a shared machine the CPU time is the steadier figure.
Targets: cold ≤ 5 ms per MB of installed files; warm ≤ 80 ms for the whole runtime lock;
a deep cold run above 2 s keeps the bytecode check behind ``--deep``.

Usage: ``python bench/bench_records.py [--venv .venv] [--repeats N]``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLD_MS_PER_MB = 5.0
WARM_MS = 80.0
DEEP_LIMIT_S = 2.0

PROBE = """
import json, sys, time
from importlib import metadata
from pathlib import Path
from cosmo_runner.env import records
from cosmo_runner.env.lock import read_lock
pins = read_lock(Path(sys.argv[1])).pins
dists = {}
for d in metadata.distributions():
    if d.metadata["Name"]:
        dists.setdefault(records.normalize(d.metadata["Name"]), d)
cpu = time.process_time()
r = records.verify(pins, dists, cache=Path(sys.argv[2]), deep=sys.argv[3] == "deep")
cpu = time.process_time() - cpu
print(json.dumps({"seconds": r.seconds, "cpu": cpu, "files": r.files, "bytes": r.bytes,
                  "hits": r.cache["hits"], "problems": len(r.problems),
                  "pyc": (r.bytecode or {}).get("checked", 0)}))
"""


def sample(python: Path, cache: Path, mode: str) -> dict[str, float]:
    proc = subprocess.run(
        [str(python), "-c", PROBE, str(ROOT / "requirements.lock.txt"), str(cache), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--deep-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    python = args.venv / "bin" / "python"
    if not python.exists():
        print(f"bench_records: {python} is missing; run `make venv` first", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    samples: dict[str, list[dict[str, float]]] = {
        "cold": [],
        "warm": [],
        "deep cold": [],
        "deep warm": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-records-") as tmp:
        for r in range(max(args.repeats, args.deep_repeats)):
            for mode, repeats in (("plain", args.repeats), ("deep", args.deep_repeats)):
                if r >= repeats:
                    continue
                cache = Path(tmp) / f"{mode}-{r}"
                label = "deep " if mode == "deep" else ""
                samples[f"{label}cold"].append(sample(python, cache, mode))
                samples[f"{label}warm"].append(sample(python, cache, mode))
                print(f"bench_records: repeat {r + 1} {mode} done", file=sys.stderr)
    load_after = os.getloadavg()[0]
    first = samples["cold"][0]
    mb = first["bytes"] / 1e6

    def med(name: str, key: str) -> float:
        return statistics.median(s[key] for s in samples[name])

    def span(name: str) -> str:
        values = [s["seconds"] for s in samples[name]]
        if max(values) >= 10:
            return f"{min(values):.1f}–{max(values):.1f} s"
        return f"{min(values) * 1e3:.0f}–{max(values) * 1e3:.0f} ms"

    cold_per_mb = med("cold", "seconds") * 1e3 / mb
    cold_cpu_per_mb = med("cold", "cpu") * 1e3 / mb
    warm_ms = med("warm", "seconds") * 1e3
    warm_cpu = med("warm", "cpu") * 1e3
    deep_cold = med("deep cold", "seconds")
    rows = [
        (
            "cold (empty cache)",
            f"{med('cold', 'seconds') * 1e3:.0f} ms = {cold_per_mb:.2f} ms/MB",
            span("cold"),
            f"{cold_cpu_per_mb:.2f} ms/MB",
            f"≤ {COLD_MS_PER_MB:g} ms/MB",
            "✓" if cold_per_mb <= COLD_MS_PER_MB else "✗",
        ),
        (
            "warm (cache written by the cold run)",
            f"{warm_ms:.0f} ms",
            span("warm"),
            f"{warm_cpu:.0f} ms",
            f"≤ {WARM_MS:g} ms",
            "✓" if warm_ms <= WARM_MS else f"✗ (CPU {'✓' if warm_cpu <= WARM_MS else '✗'})",
        ),
        (
            f"`--deep` cold (+ {int(first_deep_pyc(samples))} .pyc recompiled)",
            f"{deep_cold:.1f} s",
            span("deep cold"),
            f"{med('deep cold', 'cpu'):.1f} s",
            f"> {DEEP_LIMIT_S:g} s: behind `--deep`",
            "✓ `--deep`" if deep_cold > DEEP_LIMIT_S else "could be default",
        ),
        (
            "`--deep` warm",
            f"{med('deep warm', 'seconds') * 1e3:.0f} ms",
            span("deep warm"),
            f"{med('deep warm', 'cpu') * 1e3:.0f} ms",
            "",
            "",
        ),
    ]
    problems = sum(s["problems"] for values in samples.values() for s in values)
    lines = [
        "### Installed files against RECORD (part of `cosmo-runner smoke`)",
        "",
        f"Every distribution of the runtime lock: {int(first['files'])} files, {mb:.0f} MB, in "
        f"`{args.venv.name}`; a fresh interpreter per sample, interleaved, median of "
        f"{args.repeats} ({args.deep_repeats} for `--deep`). Cold = empty `$COSMO_CACHE_DIR`, "
        "cache-cold but page-cache warm (the OS page cache is not dropped on a shared machine). "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after "
        f"(2 CPUs shared); CPU = the process's CPU time. Problems found: {problems}.",
        "",
        "| run | median (wall) | range | median CPU | target | met |",
        "|---|---:|---:|---:|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
    ]
    print("\n".join(lines))
    return 0


def first_deep_pyc(samples: dict[str, list[dict[str, float]]]) -> float:
    return samples["deep cold"][0]["pyc"] if samples["deep cold"] else 0.0


if __name__ == "__main__":
    raise SystemExit(main())
