"""Mantel-Haenszel on many 2x2 tables: cosmo-runner's vectorised ``pool_tables`` against
statsmodels' ``StratifiedTable`` in a loop (there is no Python peer for MH over many tables).

Same data for both (seed 20261201): 10 000 analyses x k = 20 studies, arms of 20-200
participants, event risks 5-30%, a zero cell in about one study in six. Timed, as each
library's user gets it:

- cosmo-runner: ``pool_tables(ai, bi, ci, di, method="MH", measure="OR")`` on the 2-D counts
  (analyses x studies): estimate, se, CI, z, p, Cochran's Q on the individual outcomes, I2,
  H2 and the weights, for all analyses at once;
- statsmodels: per analysis, ``StratifiedTable(tables)`` and its ``logodds_pooled``,
  ``logodds_pooled_se`` and ``logodds_pooled_confint()`` (the MH log odds ratio with the
  Robins-Breslow-Greenland variance; no Q).

Interleaved repeats, medians; agreement as the largest ``|a - b| / max(1, |b|)`` over the
estimate, se and CI bounds. Also timed without a peer: PETO and MH RR / RD on the same data.

Usage: ``python bench/bench_mh.py [--quick]``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from importlib.metadata import version

import numpy as np

from cosmo_runner.meta.mantel_haenszel import pool_tables

TARGET = 2.0


def data(analyses: int, k: int, seed: int = 20261201) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    n1 = rng.integers(20, 201, size=(analyses, k)).astype(float)
    n2 = rng.integers(20, 201, size=(analyses, k)).astype(float)
    p1 = rng.uniform(0.05, 0.3, size=(analyses, k))
    p2 = rng.uniform(0.05, 0.3, size=(analyses, k))
    a = rng.binomial(n1.astype(int), p1).astype(float)
    c = rng.binomial(n2.astype(int), p2).astype(float)
    zero = rng.random((analyses, k)) < 1 / 6
    a[zero] = 0.0
    return a, n1 - a, c, n2 - c


def time_call(fn: object, number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - start) / number


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    analyses, k = (1000, 20) if args.quick else (10_000, 20)
    repeats = 3 if args.quick else 5
    a, b, c, d = data(analyses, k)

    from statsmodels.stats.contingency_tables import StratifiedTable

    def ours() -> object:
        return pool_tables(a, b, c, d, method="MH", measure="OR")

    def peer() -> list[tuple[float, float, float, float]]:
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(analyses):
                tables = np.stack([np.stack([a[i], b[i]]), np.stack([c[i], d[i]])])
                st = StratifiedTable(tables)
                lo, hi = st.logodds_pooled_confint()
                out.append((st.logodds_pooled, st.logodds_pooled_se, lo, hi))
        return out

    times: dict[str, list[float]] = {"cosmo": [], "statsmodels": []}
    ours()
    for r in range(repeats):
        order = [("cosmo", ours, 3), ("statsmodels", peer, 1)]
        if r % 2:
            order.reverse()
        for name, fn, number in order:
            times[name].append(time_call(fn, number))
    res = ours()
    ref = np.array(peer())
    mine = np.column_stack([res.estimate, res.se, res.ci_lb, res.ci_ub])  # type: ignore[attr-defined]
    agree = float((np.abs(mine - ref) / np.maximum(1.0, np.abs(ref))).max())

    extra = {}
    for label, method, measure in (("PETO", "PETO", "OR"), ("MH RR", "MH", "RR"),
                                   ("MH RD", "MH", "RD")):  # fmt: skip
        extra[label] = statistics.median(
            time_call(lambda m=method, s=measure: pool_tables(a, b, c, d, method=m, measure=s), 3)
            for _ in range(repeats)
        )
    ours_t = statistics.median(times["cosmo"])
    peer_t = statistics.median(times["statsmodels"])
    ratio = peer_t / ours_t

    def fmt(t: float) -> str:
        return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"

    print("### Mantel-Haenszel on many tables: cosmo-runner vs statsmodels' StratifiedTable\n")
    print(
        f"{analyses} analyses x k = {k} (seed 20261201), interleaved, median of {repeats}. "
        f"Python {platform.python_version()}, numpy {np.__version__}, statsmodels "
        f"{version('statsmodels')}; {platform.machine()}. Ratio = statsmodels / cosmo-runner "
        f"(target >= {TARGET:g}x). Agreement: largest |a - b| / max(1, |b|) over estimate, se "
        "and CI bounds.\n"
    )
    print("| row | cosmo-runner | statsmodels (loop) | ratio | agreement |")
    print("|---|---:|---:|---:|---|")
    ok = "✓" if ratio >= TARGET else "✗"
    good = "✓" if agree <= 1e-10 else "✗"
    print(
        f"| MH OR {analyses} x {k} | {fmt(ours_t)} | {fmt(peer_t)} | {ratio:.0f}x {ok} | "
        f"{good} {agree:.0e} |"
    )
    for label, t in extra.items():
        print(f"| {label} {analyses} x {k} | {fmt(t)} | n/a (no peer) | | |")
    print(
        "\ncosmo-runner's MH row also computes Cochran's Q on the individual outcomes, I2, H2 "
        "and the weights, which StratifiedTable does not."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
