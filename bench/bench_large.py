"""Large tables: ``cosmo-runner run`` on GEN tables of 10^5, 10^6 and 4*10^6 studies.

Each table (``study,yi,vi``, seeded, ~26 bytes a row) is checked by an ``effect_table``
validator and fitted with REML, no plots; the last row is ``cosmo-runner validate`` on a table
of 10^6 rows whose every cell is invalid (``x``, ``-1``): the capped findings path. Each run
is a fresh ``cosmo-runner`` process, started by a helper process of its own so that
``resource.getrusage(RUSAGE_CHILDREN)`` is that run's: peak RSS (``ru_maxrss``) and CPU time
(user + system, of the run and the import probes it starts); wall time is measured around
it. On a shared machine the CPU time is what the wall time would be on an idle one (the run
is single-threaded). The step timings come from the run log.

Targets (issue 11): 10^6 studies <= 10 s and <= 1 GB peak; the 4*10^6 row within 5x the
time and 5x the memory of the 10^6 row.

Usage: ``python bench/bench_large.py [--venv .venv] [--sizes 100000,1000000,4000000]``;
prints a markdown section. ``--one SPEC OUT`` is the helper mode (one measured run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100_000, 1_000_000, 4_000_000)
TIME_TARGET_S = 10.0
RSS_TARGET_MB = 1024.0
GROWTH = 5.0


def write_table(path: Path, n: int, *, invalid: bool = False) -> None:
    rng = np.random.default_rng(n)
    with path.open("w", encoding="ascii", newline="") as handle:
        handle.write("study,yi,vi\n")
        for start in range(0, n, 100_000):
            stop = min(n, start + 100_000)
            if invalid:
                rows = [f"s{i},x,-1\n" for i in range(start, stop)]
            else:
                yi = rng.normal(0.3, 0.2, stop - start)
                vi = rng.uniform(0.01, 0.1, stop - start)
                rows = [
                    f"s{i},{y:.6f},{v:.6f}\n"
                    for i, y, v in zip(range(start, stop), yi.tolist(), vi.tolist(), strict=True)
                ]
            handle.write("".join(rows))


def write_spec(folder: Path, table: str) -> Path:
    spec = {
        "spec_version": 1,
        "name": "large",
        "inputs": {"t": {"path": table}},
        "validators": [{"id": "table", "kind": "effect_table", "input": "t", "measure": "GEN"}],
        "analyses": [{"id": "fit", "input": "t", "measure": "GEN", "method": "REML"}],
    }
    path = folder / f"{table}.spec.json"
    path.write_text(json.dumps(spec))
    return path


def one(cosmo: str, command: str, spec: Path, out: Path) -> None:
    """Helper mode: one run; prints wall time, exit code and the child's peak RSS."""
    start = time.perf_counter()
    cmd = [cosmo, command, str(spec), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    row = {"wall": wall, "cpu": cpu, "rss_mb": usage.ru_maxrss / 1024, "code": proc.returncode}
    print(json.dumps(row))


def measure(venv: Path, command: str, spec: Path, out: Path) -> dict[str, object]:
    cosmo = str(venv / "bin" / "cosmo-runner")
    helper = [sys.executable, __file__, "--one", cosmo, command, str(spec), str(out)]
    proc = subprocess.run(helper, capture_output=True, text=True, check=True)
    row: dict[str, object] = json.loads(proc.stdout)
    log = json.loads((out / "run_log.json").read_text())
    row["timings"] = log["timings"]
    results = out / "results" / "fit.json"
    row["results_mb"] = results.stat().st_size / 1e6 if results.is_file() else 0.0
    validators = log["validators"]
    row["findings"] = sum(len(v["findings"]) for v in validators)
    row["omitted"] = sum(o["count"] for v in validators for o in v.get("omitted", []))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--one", nargs=4, metavar=("COSMO", "COMMAND", "SPEC", "OUT"))
    args = parser.parse_args(argv)
    if args.one:
        one(args.one[0], args.one[1], Path(args.one[2]), Path(args.one[3]))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows: list[tuple[str, dict[str, object]]] = []
    with tempfile.TemporaryDirectory(prefix="cosmo-bench-large-") as tmp:
        folder = Path(tmp)
        for n in sizes:
            print(f"bench_large: {n} studies", file=sys.stderr, flush=True)
            write_table(folder / f"gen{n}.csv", n)
            spec = write_spec(folder, f"gen{n}.csv")
            rows.append(
                (f"{n:,} studies, `run`", measure(args.venv, "run", spec, folder / f"out{n}"))
            )
            (folder / f"gen{n}.csv").unlink()
        n = 1_000_000
        print(f"bench_large: {n} invalid rows", file=sys.stderr, flush=True)
        write_table(folder / "bad.csv", n, invalid=True)
        spec = write_spec(folder, "bad.csv")
        rows.append(
            (
                f"{n:,} rows all invalid, `validate`",
                measure(args.venv, "validate", spec, folder / "outbad"),
            )
        )

    load = os.getloadavg()[0]
    lines = [
        "### Large tables: `cosmo-runner run`, GEN, REML, no plots",
        "",
        f"A fresh process per row; peak RSS of that process; 1-minute load average {load:.1f} "
        f"at the end. Targets: 10^6 studies <= {TIME_TARGET_S:.0f} s and <= 1 GB; "
        f"4*10^6 <= {GROWTH:.0f}x the 10^6 row in time and memory.",
        "",
        "| table | exit | wall | CPU | peak RSS | parse + validate | analyses | results JSON "
        "| findings kept / counted |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    by_n: dict[str, dict[str, object]] = {}
    for label, row in rows:
        timings = row["timings"]
        assert isinstance(timings, dict)
        by_n[label] = row
        lines.append(
            f"| {label} | {row['code']} | {row['wall']:.1f} s | {row['cpu']:.1f} s | "
            f"{row['rss_mb']:.0f} MB | "
            f"{timings.get('validators', 0):.1f} s | {timings.get('analyses', 0):.1f} s | "
            f"{row['results_mb']:.0f} MB | {row['findings']} / {row['omitted']} |"
        )
    million = next((r for label, r in rows if label.startswith("1,000,000 studies")), None)
    four = next((r for label, r in rows if label.startswith("4,000,000 studies")), None)
    verdict = []
    if million is not None:
        wall, rss = float(million["wall"]), float(million["rss_mb"])  # type: ignore[arg-type]
        cpu = float(million["cpu"])  # type: ignore[arg-type]
        verdict.append(
            f"10^6: {wall:.1f} s wall ({'within' if wall <= TIME_TARGET_S else 'MISSES'} "
            f"{TIME_TARGET_S:.0f} s), {cpu:.1f} s CPU "
            f"({'within' if cpu <= TIME_TARGET_S else 'MISSES'}), {rss:.0f} MB "
            f"({'within' if rss <= RSS_TARGET_MB else 'MISSES'} 1 GB)"
        )
        if four is not None:
            c_ratio = float(four["cpu"]) / cpu  # type: ignore[arg-type]
            verdict.append(f"4*10^6 / 10^6 CPU time {c_ratio:.1f}x")
            t_ratio = float(four["wall"]) / wall  # type: ignore[arg-type]
            m_ratio = float(four["rss_mb"]) / rss  # type: ignore[arg-type]
            ok = t_ratio <= GROWTH and m_ratio <= GROWTH
            verdict.append(
                f"wall time {t_ratio:.1f}x, memory {m_ratio:.1f}x: "
                f"{'within' if ok else 'MISSES'} the {GROWTH:.0f}x target"
            )
    lines += ["", "; ".join(verdict) + "." if verdict else ""]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
