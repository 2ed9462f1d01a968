"""``make bench``: every benchmark, printed side by side and written to ``bench/results.md``.

Runs in the bench environment (``.venv-bench``), each benchmark in its own process:

1. ``bench/bench_meta.py`` -- the meta-analysis engine against statsmodels and PyMARE;
   ``bench/bench_mh.py`` -- Mantel-Haenszel on 10 000 analyses x k = 20, vectorised, against
   statsmodels' ``StratifiedTable`` in a loop;
2. ``bench/bench_env.py`` -- ``cosmo-runner smoke`` against the naive gate, and ``--help``,
   against the main ``.venv``;
3. ``bench/bench_e2e.py`` -- ``cosmo-runner run`` of the BCG example against R's metafor
   doing the same job (``../shared/bench/bcg_job.R``), with where the time goes;
   ``bench/bench_probes.py`` -- ``smoke``, ``validate`` and ``run`` with every import probed
   in fresh interpreters against only the imports no locked distribution vouches for;
4. ``bench/bench_records.py`` -- the RECORD check of ``smoke`` cold and warm, and
   ``--deep``, against the main ``.venv``;
5. ``bench/bench_large.py`` -- ``cosmo-runner run`` on GEN tables of 10^5, 10^6 and 4*10^6
   studies (wall and CPU time, peak RSS) and ``validate`` on 10^6 invalid rows;
6. ``bench/bench_batch.py`` -- ``cosmo-runner batch`` of 1000 small specs on the local
   cluster against a shell loop of ``cosmo-runner run``, the engine's per-task overhead, and
   100 specs with plots, against the main ``.venv``;
7. the Docker build-time benchmark (``bench/*docker*``, cold build and source-only rebuild),
   only when a Docker engine answers (``$DOCKER_HOST`` or the one ``make docker-up``
   started); otherwise a visible "skipped: no engine".

Each benchmark prints a markdown section on stdout (progress on stderr); the sections are
echoed as they finish and collected into ``bench/results.md`` for the README. Exit status:
non-zero when a benchmark script itself failed (not when a target is missed: these are
measurements, not tests).

Usage: ``python bench/run_all.py [--quick] [--only meta,mh,env,e2e,probes,records,large,batch,docker]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results.md"


def section(cmd: list[str], title: str, heading: str) -> tuple[str, int]:
    """Run one benchmark; its stdout is the section (stderr streams to the terminal)."""
    print(f"\n==> {title}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
    out = proc.stdout.strip()
    if not out.startswith("#"):
        out = f"{heading}\n\n{out}".rstrip()
    out += "\n"
    if proc.returncode != 0:
        out += (
            f"\n**{title}: the benchmark failed (exit status {proc.returncode}); "
            "see the terminal output of `make bench`.**\n"
        )
    print(out, flush=True)
    return out, proc.returncode


def engine_answers() -> bool:
    """A Docker engine answers: the project's probe script, else ``docker info``."""
    probe = ROOT / "scripts" / "docker" / "engine_answers.sh"
    try:
        if probe.exists():
            cmd = ["bash", str(probe)]
        elif shutil.which("docker"):
            cmd = ["docker", "info"]
        else:
            return False
        return (
            subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=30, check=False).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_script() -> Path | None:
    found = sorted(p for p in BENCH.glob("*docker*") if p.suffix in {".py", ".sh"})
    return found[0] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budgets (a smoke run)")
    parser.add_argument(
        "--only",
        default="meta,mh,env,e2e,probes,records,large,batch,docker",
        help="comma-separated sections",
    )
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    python = sys.executable
    main_venv = ROOT / ".venv"

    load_before = os.getloadavg()[0]
    parts: list[str] = []
    status = 0
    venv_python = str(main_venv / "bin" / "python")
    venv_arg = ["--venv", str(main_venv)]
    quick_repeats = ["--repeats", "5"] if args.quick else []
    # name -> (interpreter, script, its arguments, progress title, section heading)
    sections = {
        "meta": (python, "bench_meta.py", ["--quick"] if args.quick else [],
                 "meta-analysis engine", "### Meta-analysis engine"),
        "mh": (python, "bench_mh.py", ["--quick"] if args.quick else [],
               "Mantel-Haenszel on many tables", "### Mantel-Haenszel on many tables"),
        "env": (python, "bench_env.py", venv_arg + quick_repeats,
                "environment gate", "### Environment gate"),
        "e2e": (python, "bench_e2e.py", venv_arg + quick_repeats, "end to end", "### End to end"),
        "probes": (python, "bench_probes.py", venv_arg + quick_repeats,
                   "import probes", "### Import probes"),
        "records": (venv_python, "bench_records.py",
                    ["--repeats", "5", "--deep-repeats", "1"] if args.quick else [],
                    "RECORD check", "### Installed files against RECORD"),
        "large": (python, "bench_large.py",
                  venv_arg + (["--sizes", "100000,1000000"] if args.quick else []),
                  "large tables", "### Large tables"),
        "batch": (venv_python, "bench_batch.py",
                  venv_arg + (["--specs", "200", "--plots", "20", "--sample", "5"]
                              if args.quick else []),
                  "batch", "### Batch"),
    }  # fmt: skip
    for name, (interpreter, script, extra, title, heading) in sections.items():
        if name in only:
            out, code = section([interpreter, str(BENCH / script), *extra], title, heading)
            parts.append(out)
            status |= code
    if "docker" in only:
        script = docker_script()
        title = "### Docker image build time"
        if script is None:
            text = f"{title}\n\nskipped: no Docker build benchmark script in bench/.\n"
            print(text, flush=True)
            parts.append(text)
        elif not engine_answers():
            text = (
                f"{title}\n\nskipped: no engine (no Docker engine answers at "
                f"DOCKER_HOST={os.environ.get('DOCKER_HOST', '') or '(unset)'}; "
                "`make docker-up` starts one).\n"
            )
            print(text, flush=True)
            parts.append(text)
        else:
            runner = ["bash"] if script.suffix == ".sh" else [str(main_venv / "bin" / "python")]
            out, code = section([*runner, str(script)], "docker build", title)
            parts.append(out)
            status |= code

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    threads = {k: v for k, v in os.environ.items() if k.endswith("_NUM_THREADS")}
    header = (
        "# Benchmarks (`make bench`)\n\n"
        f"Measured {stamp} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
        + (" (quick run: smaller budgets)" if args.quick else "")
        + f"; 1-minute load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} "
        "after (other work on the machine slows every column alike; the runs are "
        "interleaved so ratios stay comparable); BLAS threads: "
        + (", ".join(f"{k}={v}" for k, v in sorted(threads.items())) or "library defaults")
        + ".\n"
    )
    RESULTS.write_text(header + "\n" + "\n".join(parts), encoding="utf-8")
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
