"""Meta-analysis engine speed: cosmo-runner ``rma`` against statsmodels and PyMARE.

Runs in the bench environment (``make .venv-bench``: the peers come from
``requirements-bench.lock.txt``; cosmo-runner is installed there without deps). Every row
fits the SAME data with every implementation, interleaved (each repeat times every
implementation once, in rotating order), and reports the median of the repeats. A repeat
is the mean of ``number`` back-to-back calls, so that fast rows are timed well above the
clock's resolution.

Timed: the core fit as each library's user gets it -- estimate, se, tau2 and the 95% CI
(z test); turning each library's result into arrays for the agreement check is not timed:

- cosmo-runner: ``rma(yi, vi, method=...)`` -- 1-D for one analysis, 2-D (analyses x
  studies) for the batch; its result holds far more (Q, I2, H2, PI, convergence).
- statsmodels: ``combine_effects(yi, vi, method_re="dl")`` + ``conf_int()`` (DL only: it has
  no REML; one analysis per call, so the batch is a Python loop).
- PyMARE: ``DerSimonianLaird`` / ``VarianceBasedLikelihoodEstimator(method="REML")`` with
  ``small_sample_correction="wald"`` (the z test), ``fit`` on parallel data sets (studies x
  analyses), then se and CI from its covariance.

Agreement: estimate, se, tau2, ci_lb and ci_ub against each peer, as the largest
``|a - b| / max(1, |b|)``. statsmodels does not truncate DL's tau2 at 0, so it is compared
only where its tau2 >= 0. REML is timed twice per shape, each with its control given
explicitly (so a row's label is true whatever the project's default is; the header says which
control the default is): converged (Fisher scoring to |step| <= 1e-10, at most 200
iterations), held to 1e-6 like the DL rows -- the "PyMARE's precision" comparison; and
metafor's default stopping rule (|step| <= 1e-5, at most 100 iterations, so that results
equal metafor's), held to 1e-4 against PyMARE's bounded optimisation. Where that rule stops
short of the maximum (slow convergence near tau2 = 0), a note says by how much and which fit
has the higher restricted likelihood.

Each call is timed by the wall clock and by the CPU time of the calling thread
(``time.thread_time``); the ratio is given for both, and the header gives the 1-minute load
average before and after. Under load the CPU ratio is the steadier one. It is the calling
thread's on purpose: the process's CPU time (``process_time``) also counts BLAS helper
threads, which spin for a while after a call and so charge their spinning to whichever
implementation is timed next (on 2026-12-01 it showed PyMARE's DL k = 10 and cosmo-runner's
as equal in CPU while the wall clock said 8x). Work a BLAS hands to its helper threads (large
rows) is not in it, for any implementation.

Allocator state: glibc serves large arrays by mmap (fresh pages, page faults on every
call) until a large mmapped block is freed, which raises its mmap threshold for the rest of
the process. Which library happens to run first would then decide how fast the others are
(PyMARE's 10 000 x 20 DL fit: ~10 ms before, ~3 ms after). The benchmark frees one 16 MiB
array up front so that every implementation and every row runs in the same, fast state.

Usage: ``python bench/bench_meta.py [--quick] [--seed N]``; prints a markdown section.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from cosmo_runner.meta import Control, rma

Z95 = 1.959963984540054
TOL = 1e-6
TOL_REML_PYMARE = 1e-4
TARGET = 2.0
KEYS = ("estimate", "se", "tau2", "ci_lb", "ci_ub")
# The REML rows' controls, each given explicitly: (label, control, agreement asked of PyMARE).
REML_CONTROLS: list[tuple[str, dict[str, float], float]] = [
    ("converged", {"threshold": 1e-10, "maxiter": 200}, TOL),
    ("metafor's default", {"threshold": 1e-5, "maxiter": 100}, TOL_REML_PYMARE),
]


@dataclass(frozen=True)
class Case:
    name: str
    method: str  # "DL" or "REML"
    yi: np.ndarray  # (k,) or (analyses, k)
    vi: np.ndarray
    control: dict[str, float] | None = None  # cosmo-runner's rma control (None: its default)
    tol: float = TOL  # agreement asked of PyMARE


@dataclass
class Impl:
    """``fit`` is timed and returns the library's own result; ``extract`` (untimed) turns it
    into arrays for the agreement check."""

    name: str
    fit: Callable[[], Any]
    extract: Callable[[Any], dict[str, np.ndarray]]
    tol: float

    def values(self) -> dict[str, np.ndarray]:
        return self.extract(self.fit())


def make_data(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Heterogeneous effects: vi ~ U(0.01, 0.5), yi ~ N(0.3, vi + 0.1)."""
    vi = rng.uniform(0.01, 0.5, size=shape)
    yi = rng.normal(0.3, np.sqrt(vi + 0.1))
    return yi, vi


# --------------------------------------------------------------------------- implementations


def cosmo(case: Case) -> tuple[Callable[[], Any], Callable[[Any], dict[str, np.ndarray]]]:
    """The result object holds estimate, se, tau2, CI (and Q, I2, H2, PI, convergence)."""

    def fit() -> Any:
        return rma(case.yi, case.vi, method=case.method, test="z", level=95, control=case.control)

    def extract(r: Any) -> dict[str, np.ndarray]:
        out = {key: np.atleast_1d(np.asarray(getattr(r, key), dtype=float)) for key in KEYS}
        out["iterations"] = np.atleast_1d(np.asarray(r.iterations, dtype=float))
        return out

    return fit, extract


def statsmodels_dl(
    case: Case,
) -> tuple[Callable[[], Any], Callable[[Any], dict[str, np.ndarray]]]:
    """One ``combine_effects`` + ``conf_int`` per analysis (it is not vectorised)."""
    from statsmodels.stats.meta_analysis import combine_effects

    rows = list(zip(np.atleast_2d(case.yi), np.atleast_2d(case.vi), strict=True))

    def fit() -> Any:
        out = []
        for y, v in rows:
            res = combine_effects(y, v, method_re="dl", use_t=False)
            out.append((res, res.conf_int(use_t=False)[1]))  # random effects, scale 1
        return out

    def extract(fits: Any) -> dict[str, np.ndarray]:
        table = np.array(
            [(r.mean_effect_re, r.sd_eff_w_re, r.tau2, ci[0], ci[1]) for r, ci in fits]
        )
        return dict(zip(KEYS, table.T, strict=True))

    return fit, extract


def pymare_fit(case: Case) -> tuple[Callable[[], Any], Callable[[Any], dict[str, np.ndarray]]]:
    """Its estimators on parallel data sets (studies x analyses); se and CI from its
    covariance are part of the timed fit (PyMARE's fit does not compute them)."""
    from pymare.estimators import DerSimonianLaird, VarianceBasedLikelihoodEstimator

    y = np.atleast_2d(case.yi).T.copy()  # studies x analyses
    v = np.atleast_2d(case.vi).T.copy()
    x = np.ones((y.shape[0], 1))

    def fit() -> Any:
        if case.method == "DL":
            est = DerSimonianLaird(small_sample_correction="wald")
        else:
            est = VarianceBasedLikelihoodEstimator(method="REML", small_sample_correction="wald")
        est.fit(y, v, x)
        beta = est.params_["fe_params"][0]
        se = np.sqrt(est.params_["inv_cov"][0, 0])
        return beta, se, est.params_["tau2"], beta - Z95 * se, beta + Z95 * se

    def extract(out: Any) -> dict[str, np.ndarray]:
        beta, se, tau2, lb, ub = out
        return {"estimate": beta, "se": se, "tau2": np.ravel(tau2), "ci_lb": lb, "ci_ub": ub}

    return fit, extract


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], number: int) -> tuple[float, float]:
    """(wall, calling thread's CPU) seconds per call, the mean of ``number`` calls."""
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number, (time.thread_time() - cpu) / number


def measure(
    impls: list[Impl], *, min_repeats: int, budget_s: float
) -> tuple[dict[str, float], dict[str, float], int]:
    """Median wall and CPU seconds per call for each implementation, interleaved in rotating
    order, and the number of repeats."""
    numbers: dict[str, int] = {}
    first: dict[str, float] = {}
    for impl in impls:  # warm-up, and a calibration of calls per repeat
        t, _ = timed(impl.fit, 1)
        numbers[impl.name] = max(1, min(1000, int(0.02 / max(t, 1e-9))))
        first[impl.name] = t * numbers[impl.name]
    per_round = sum(first.values())
    repeats = max(min_repeats, min(51, int(budget_s / max(per_round, 1e-9))))
    wall: dict[str, list[float]] = {impl.name: [] for impl in impls}
    cpu: dict[str, list[float]] = {impl.name: [] for impl in impls}
    for r in range(repeats):
        shift = r % len(impls)
        for impl in impls[shift:] + impls[:shift]:
            w, c = timed(impl.fit, numbers[impl.name])
            wall[impl.name].append(w)
            cpu[impl.name].append(c)
    return (
        {name: statistics.median(s) for name, s in wall.items()},
        {name: statistics.median(s) for name, s in cpu.items()},
        repeats,
    )


def per_analysis_diff(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> np.ndarray:
    """Per analysis, the largest ``|a - b| / max(1, |b|)`` over KEYS."""
    diffs = [np.abs(ours[k] - theirs[k]) / np.maximum(1.0, np.abs(theirs[k])) for k in KEYS]
    return np.max(np.vstack(diffs), axis=0)


def reml_loglik(tau2: np.ndarray, yi: np.ndarray, vi: np.ndarray) -> np.ndarray:
    """Restricted log-likelihood of the intercept-only model (up to a constant), per analysis."""
    t = np.asarray(tau2)[:, None]
    w = 1.0 / (vi + t)
    mu = np.sum(w * yi, axis=1) / np.sum(w, axis=1)
    rss = np.sum(w * (yi - mu[:, None]) ** 2, axis=1)
    return np.asarray(
        -0.5 * (np.sum(np.log(vi + t), axis=1) + np.log(np.sum(w, axis=1)) + rss), dtype=float
    )


def agreement(case: Case, ours: dict[str, np.ndarray], impl: Impl) -> tuple[bool, str, list[str]]:
    """Cell text and footnotes for one peer."""
    theirs = impl.values()
    mask = np.ones_like(theirs["tau2"], dtype=bool)
    scope = ""
    if impl.name == "statsmodels":
        mask = theirs["tau2"] >= 0  # it does not truncate DL's tau2 at zero
        scope = f", {int(mask.sum())}/{mask.size} with its tau2 ≥ 0"
    diff = per_analysis_diff(ours, theirs)[mask]
    bad = diff > impl.tol
    notes: list[str] = []
    if not bad.any():
        return True, f"{impl.name} ✓ {diff.max():.0e}{scope}", notes
    within = diff[~bad]
    cell = (
        f"{impl.name} ✗ {int(bad.sum())}/{diff.size} > {impl.tol:.0e} "
        f"(others ≤ {within.max() if within.size else 0:.0e}){scope}"
    )
    if case.method == "REML":
        y2, v2 = np.atleast_2d(case.yi)[mask][bad], np.atleast_2d(case.vi)[mask][bad]
        ll_ours = reml_loglik(ours["tau2"][mask][bad], y2, v2)
        ll_peer = reml_loglik(theirs["tau2"][mask][bad], y2, v2)
        higher = int(np.sum(ll_peer > ll_ours + 1e-9))
        gain = float(np.max(ll_peer - ll_ours))
        at_zero = int(np.sum(ours["tau2"][mask][bad] == 0))
        iters = ours["iterations"][mask][bad]
        note = (
            f"{case.name}: {int(bad.sum())} of {diff.size} analyses differ from {impl.name} "
            f"by more than {impl.tol:.0e} (largest {diff.max():.1e}); in {higher} of them "
            f"{impl.name}'s tau2 has the higher restricted log-likelihood (by at most "
            f"{gain:.1e}). cosmo-runner took {int(iters.min())}-{int(iters.max())} Fisher "
            "scoring iterations there: near tau2 = 0 the iteration converges slowly and "
            "metafor's stopping rule (|step| <= 1e-5) ends it ~1e-4 short of the maximum, as "
            "metafor's own fit does; the converged row of the same data agrees with PyMARE."
        )
        if at_zero:
            note += (
                f" {at_zero} of them have cosmo-runner's tau2 = 0 (a local maximum on the "
                "boundary of a bimodal likelihood)."
            )
        notes.append(note)
    return False, cell, notes


# --------------------------------------------------------------------------- main


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def warm_allocator() -> None:
    """Free one 16 MiB array: glibc then keeps arrays up to that size on the heap (see the
    module docstring); a no-op elsewhere."""
    block = np.ones(2 * 1024 * 1024)
    del block


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20260401)
    parser.add_argument("--quick", action="store_true", help="smaller budget (a smoke run)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # peers' deprecation chatter must not skew the timing
    warm_allocator()
    rng = np.random.default_rng(args.seed)

    shapes = [
        ("k = 10", (10,)),
        ("k = 1 000", (1_000,)),
        ("k = 100 000", (100_000,)),
        ("10 000 analyses × k = 20", (10_000, 20)),
    ]
    data = {name: make_data(rng, shape) for name, shape in shapes}
    cases = [Case(f"DL {name}", "DL", *data[name]) for name, _ in shapes]
    for label, control, tol in REML_CONTROLS:
        cases += [
            Case(f"REML {label} {name}", "REML", *data[name], control=control, tol=tol)
            for name, _ in shapes
        ]
    default = Control()
    defaults = [
        label
        for label, control, _ in REML_CONTROLS
        if (control["threshold"], control["maxiter"]) == (default.threshold, default.maxiter)
    ]
    budget = 0.5 if args.quick else 3.0
    min_repeats = 5 if args.quick else 7
    load_before = os.getloadavg()[0]

    lines = [
        "### Meta-analysis engine: cosmo-runner vs statsmodels and PyMARE",
        "",
        f"Same data per row (seed {args.seed}; vi ~ U(0.01, 0.5), yi ~ N(0.3, vi + 0.1)), "
        f"interleaved, median of ≥{min_repeats} repeats (each the mean of n calls). "
        f"Python {platform.python_version()}, numpy {version('numpy')}, "
        f"scipy {version('scipy')}, statsmodels {version('statsmodels')}, "
        f"PyMARE {version('pymare')}; {platform.machine()}, {_cpus()} CPUs; allocator "
        "warmed up front (see bench_meta.py). "
        "Ratio = fastest peer / cosmo-runner (target ≥ 2x). Agreement: largest "
        "|Δ|/max(1,|peer|) over estimate, se, tau2, CI bounds (tolerance 1e-6; 1e-4 for "
        "REML at metafor's default stopping rule). REML controls, given explicitly: "
        "*converged* = threshold 1e-10, maxiter 200; *metafor's default* = threshold 1e-5, "
        f"maxiter 100. cosmo-runner's default control is threshold {default.threshold:g}, "
        f"maxiter {default.maxiter}"
        + (f' (the rows labelled "{defaults[0]}")' if defaults else " (neither set of rows)")
        + ". Times: wall clock per call (median); ratio = fastest peer / cosmo-runner by "
        "wall and by the calling thread's CPU time (steadier under load; see bench_meta.py).",
        "",
        "| row | cosmo-runner | statsmodels | PyMARE | ratio (wall) | ratio (CPU) | agreement |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    print("\n".join(lines[:3]), file=sys.stderr)
    all_met = True
    agree = {"strict": True, "metafor": True}  # 1e-6 rows; REML at metafor's stopping rule
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    footnotes: list[str] = []
    for case in cases:
        impls = [Impl("cosmo-runner", *cosmo(case), 0.0)]
        if case.method == "DL":
            impls.append(Impl("statsmodels", *statsmodels_dl(case), TOL))
        impls.append(Impl("PyMARE", *pymare_fit(case), case.tol))
        medians, cpus, repeats = measure(impls, min_repeats=min_repeats, budget_s=budget)
        ours = impls[0].values()
        cells = []
        for impl in impls[1:]:
            ok, cell, notes = agreement(case, ours, impl)
            group = "metafor" if case.tol == TOL_REML_PYMARE else "strict"
            agree[group] &= ok
            cells.append(cell)
            footnotes += notes
        peers = {name: t for name, t in medians.items() if name != "cosmo-runner"}
        fastest = min(peers.values())
        ratio = fastest / medians["cosmo-runner"]
        cpu_ratio = min(t for n, t in cpus.items() if n != "cosmo-runner") / cpus["cosmo-runner"]
        met = ratio >= TARGET
        all_met &= met
        row = (
            f"| {case.name} | {fmt_time(medians['cosmo-runner'])} | "
            f"{fmt_time(medians['statsmodels']) if 'statsmodels' in medians else 'n/a (no REML)'}"
            f" | {fmt_time(medians['PyMARE'])} | "
            f"{ratio:.1f}x {'✓' if met else '✗'} | {cpu_ratio:.1f}x | {'; '.join(cells)} |"
        )
        lines.append(row)
        print(row, f"(repeats {repeats})", file=sys.stderr)
    lines += ["", "Notes:", "", *[f"- {note}" for note in footnotes]]
    lines += [
        "",
        f"Target ≥ {TARGET:g}x (wall) in every row: {'met' if all_met else 'NOT met'}. "
        f"Agreement to 1e-6 in the DL and converged REML rows: "
        f"{'yes' if agree['strict'] else 'NO'}; "
        "REML at metafor's default stopping rule within 1e-4 of PyMARE: "
        f"{'yes' if agree['metafor'] else 'not everywhere (see the notes)'}.",
        "",
        f"Measured {started} by `python bench/bench_meta.py`; 1-minute load average "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after.",
        "",
    ]
    print("\n".join(lines))
    return 0


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
