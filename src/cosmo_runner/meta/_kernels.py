"""Numerical kernels over (analyses x studies) arrays, shared by every fit path.

Input checks, row sums and dot products (no BLAS threads), per-thread scratch buffers, the
trace of P without cancellation, critical values, a vectorised bracketing root finder and
the solver of a decreasing equation in tau2. Batches are 2-D arrays; one analysis is a row.
No statistical decision is made here (those are in :mod:`._decisions`).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri, stdtrit

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._result import FloatArray, rows_text

__all__ = [
    "SMALL_DOT",
    "TRP_CANCEL",
    "add_reduce",
    "bad_values",
    "check_data",
    "crit",
    "dot_long",
    "inv_plus",
    "mad",
    "ptp",
    "rdot",
    "roots",
    "roots_one_by_one",
    "rows_note",
    "rsum",
    "scratch",
    "solve_decreasing",
    "sum_long",
    "trace_p",
]


def check_data(y: FloatArray, v: FloatArray, min_k: int = 2, *, values: bool = True) -> None:
    """Shapes and ``k``; with ``values``, also finite ``yi`` and finite, positive ``vi``.

    Intercept-only fits skip the value checks here: :meth:`_EE.of` and :func:`_fit_single`
    confirm them from their own first pass over the data (every ``1/vi`` positive, the
    weighted mean and the sums finite) and call this function again only to name a failure.
    """
    if y.shape != v.shape:
        raise AnalysisError(f"rma: yi has shape {y.shape} but vi has shape {v.shape}")
    if y.ndim not in (1, 2):
        raise AnalysisError("rma: yi and vi must be 1-D (one analysis) or 2-D (analyses x studies)")
    if y.ndim == 2 and y.shape[0] == 0:
        raise AnalysisError("rma: no analyses (the 2-D yi and vi have 0 rows)")
    k = y.shape[-1]
    if k < min_k:
        raise AnalysisError(f"rma: need at least {min_k} studies, got k = {k}")
    if not values:
        return
    # reductions first (no temporaries); the element-wise check only to confirm a failure
    if y.size <= SMALL_DOT:
        total = np.add.reduce(y, axis=None)
    else:  # einsum is ~1.5x faster on long arrays, but its Python wrapper costs ~1 µs
        total = np.einsum("ij->" if y.ndim == 2 else "i->", y)
    if not math.isfinite(float(total)) and not np.isfinite(y).all():
        raise AnalysisError("rma: yi contains missing or non-finite values")
    vmin = float(np.minimum.reduce(v, axis=None))
    vmax = float(np.maximum.reduce(v, axis=None))
    if not math.isfinite(vmin) or math.isinf(vmax):
        raise AnalysisError("rma: vi contains missing or non-finite values")
    if vmin <= 0:
        raise AnalysisError("rma: vi must be strictly positive (found a zero or negative variance)")


def bad_values(y: FloatArray, v: FloatArray) -> NoReturn:
    """Raise for data whose equal-effects sums are not finite: name the bad input, or say
    that finite inputs overflowed."""
    check_data(y, v)
    raise AnalysisError(
        "rma: yi / vi overflow double precision (extreme effect sizes or variance ratio)"
    )


def mad(y: FloatArray, *, padded: bool = False) -> FloatArray:
    """R's ``mad`` (constant 1.4826) along the last axis; ``padded``: NaN cells are padding
    (rows of different lengths), left out."""
    median = np.nanmedian if padded else np.median
    med = median(y, axis=-1, keepdims=True)
    out: FloatArray = 1.4826 * median(np.abs(y - med), axis=-1)
    return out


def ptp(y: FloatArray, *, padded: bool = False) -> FloatArray:
    """The range ``max - min`` along the last axis; ``padded``: NaN cells left out."""
    if padded:
        return np.asarray(np.nanmax(y, axis=-1) - np.nanmin(y, axis=-1))
    return np.asarray(np.ptp(y, axis=-1))


def roots(
    func: Callable[[FloatArray, NDArray[np.intp]], FloatArray],
    lo: FloatArray,
    hi: FloatArray,
    xrtol: float,
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_]]:
    """Vectorised bracketing root finder (Chandrupatla, via scipy) for ``func(x, row) = 0``.

    ``func`` receives the abscissae and the (float) row indices they belong to.
    """
    from scipy.optimize.elementwise import find_root

    rows = np.arange(lo.shape[0], dtype=np.float64)

    def f(x: FloatArray, row: FloatArray) -> FloatArray:
        return func(np.asarray(x, dtype=np.float64), np.asarray(row).astype(np.intp))

    res = find_root(f, (lo, hi), args=(rows,), tolerances={"xrtol": xrtol}, maxiter=200)
    return (
        np.asarray(res.x, dtype=np.float64),
        np.asarray(res.success, dtype=bool),
        np.asarray(res.nit, dtype=np.int_),
    )


#: brentq's smallest relative tolerance (scipy raises below it)
_BRENTQ_RTOL = 4 * float(np.finfo(np.float64).eps)


def roots_one_by_one(
    func: Callable[[FloatArray, NDArray[np.intp]], FloatArray],
    lo: FloatArray,
    hi: FloatArray,
    xrtol: float,
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_]]:
    """:func:`roots` for a few rows, each by Brent's method (scipy's ``brentq``, in C): the
    vectorised finder's own work is ~0.3 ms per iteration, Brent's ~10 us, so the Q-profile
    interval's two roots cost 0.7 instead of 6 ms (issue 14's batch bench row: one per
    small spec). Relative tolerance ``max(xrtol, 4 eps)`` (brentq's least); the roots agree
    with :func:`roots`' to a few ulps, iteration counts differ (callers that report them
    use :func:`roots`)."""
    from scipy.optimize import brentq

    n = lo.shape[0]
    x, ok, nit = np.empty(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int_)
    for i in range(n):
        row = np.array([i], dtype=np.intp)

        def f(t: float, row: NDArray[np.intp] = row) -> float:
            return float(func(np.array([t]), row)[0])

        x[i], res = brentq(
            f, float(lo[i]), float(hi[i]), xtol=float(np.finfo(np.float64).tiny),
            rtol=max(xrtol, _BRENTQ_RTOL), full_output=True, disp=False,
        )  # fmt: skip
        ok[i], nit[i] = res.converged, res.iterations
    return x, ok, nit


def solve_decreasing(
    func: Callable[[FloatArray, NDArray[np.intp]], FloatArray],
    target: FloatArray,
    upper: FloatArray,
    xrtol: float,
    finder: Callable[..., tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_]]] | None = None,
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_], NDArray[np.bool_]]:
    """Solve ``func(tau2, rows) = target`` for tau2 in [0, upper], row-wise, where ``func``
    decreases in tau2 (the generalised Q statistic) and gets the rows it is evaluated for.

    Returns tau2 (0 where ``func(0) < target``), success, iterations and ``too_low`` (rows
    where even ``func(upper) > target``: the root lies above ``upper``). ``finder``: the
    bracketing root finder, :func:`roots` (the default) or :func:`roots_one_by_one`.
    """
    n = target.shape[0]
    every = np.arange(n)
    tau2 = np.zeros(n)
    ok = np.ones(n, dtype=bool)
    nit = np.zeros(n, dtype=np.int_)
    q0 = func(np.zeros(n), every)
    qu = func(upper, every)
    too_low = qu > target
    solve = (q0 >= target) & ~too_low
    if solve.any():
        idx = np.flatnonzero(solve)

        def f(x: FloatArray, row: NDArray[np.intp]) -> FloatArray:
            out: FloatArray = func(x, idx[row]) - target[idx[row]]
            return out

        root, success, its = (finder or roots)(f, np.zeros(idx.size), upper[idx], xrtol)
        tau2[idx] = np.maximum(root, 0.0)
        ok[idx] = success
        nit[idx] = its
    return tau2, ok, nit, too_low


#: Elements per BLAS call in :func:`rsum`: below OpenBLAS's size for threading a matrix-
#: vector product (2304 x GEMM_MULTITHREAD_THRESHOLD = 9216 by default), so every call stays
#: on the calling thread.
_GEMV_BLOCK = 8192


@functools.lru_cache(maxsize=16)
def _ones(k: int) -> FloatArray:
    ones = np.ones(k)
    ones.flags.writeable = False
    return ones


def rsum(a: FloatArray) -> FloatArray:
    """Row sums, as BLAS matrix-vector products with a vector of ones over blocks of rows.

    ~2x faster than ``einsum`` on short rows (k = 20: 37 vs 73 µs for 10 000 rows) and
    ~8x faster than ``sum(axis=1)``. Each block is one ``gemv`` under OpenBLAS's threading
    size, so no BLAS threads start (they spin and stall when other work holds the cores);
    ``np.matvec`` loops over the blocks in C. Long rows and non-contiguous arrays: ``einsum``.
    """
    n, k = a.shape
    rows = _GEMV_BLOCK // k
    if rows < 8 or not a.flags.c_contiguous:
        return np.asarray(np.einsum("ij->i", a))
    ones = _ones(k)
    if n <= rows:
        return np.asarray(np.matvec(a, ones))
    m = n - n % rows
    out = np.empty(n)
    np.matvec(a[:m].reshape(-1, rows, k), ones, out=out[:m].reshape(-1, rows))
    if m < n:
        np.matvec(a[m:], ones, out=out[m:])
    return out


def rdot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise dot products ``sum(a * b, axis=1)`` without the temporary (no BLAS)."""
    return np.asarray(np.einsum("ij,ij->i", a, b))


_SCRATCH = threading.local()


_SCRATCH_MAX = 1 << 19  # elements (4 MB) per buffer; larger work arrays are not kept


def scratch(name: str, shape: tuple[int, ...]) -> FloatArray:
    """A per-thread work array reused across calls.

    Fresh multi-megabyte temporaries cost more in page faults than the arithmetic on them;
    reusing a few named buffers keeps a plain fit cheap. Only for values that never leave
    the call (results and lazily computed values use fresh arrays).
    """
    size = 1
    for dim in shape:
        size *= dim
    if size > _SCRATCH_MAX:
        return np.empty(shape)
    bufs: dict[str, FloatArray] | None = getattr(_SCRATCH, "bufs", None)
    if bufs is None:
        bufs = _SCRATCH.bufs = {}
    arr = bufs.get(name)
    if arr is None or arr.shape != shape:
        arr = bufs[name] = np.empty(shape)
    return arr


def inv_plus(v: FloatArray, t: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """``1 / (v + t)`` row-wise, on one array (``1.0 / (v + t)`` hits a slow numpy path)."""
    s = np.add(v, t[:, None], out=out)
    np.divide(1.0, s, out=s)
    return s


#: :func:`trace_p` recomputes rows where ``sum w > TRP_CANCEL * tr(P)``.
TRP_CANCEL = 1e5


def trace_p(w: FloatArray, sw: FloatArray, sw2: FloatArray) -> FloatArray:
    """Row-wise trace of ``P = W - w w' / sum w`` of the intercept-only model (metafor's
    ``trP``), ``sum w - sum w^2 / sum w``.

    When one weight dominates a row (variance ratios beyond ~1e10) that difference cancels:
    its error is about ``eps sum w``. Such rows are recomputed without cancellation as
    ``(sum_{i != d} w_i (sum w - w_i) + w_d sum_{i != d} w_i) / sum w``, ``d`` the largest
    weight, so DL's tau2, ``vt``, I2 and H2 stay accurate where metafor's own ``trP`` does
    not (metafor warns above a variance ratio of 1e7).
    """
    trp = sw - sw2 / sw
    fine = trp * TRP_CANCEL >= sw
    if not fine.all():
        redo = np.flatnonzero(~fine)
        rest = w[redo]  # a copy
        rows = np.arange(redo.size)
        top = np.argmax(rest, axis=1)
        w_top = rest[rows, top].copy()
        rest[rows, top] = 0.0
        s_rest = rest.sum(axis=1)
        total = w_top + s_rest
        other = np.einsum("ij,ij->i", rest, total[:, None] - rest)
        trp[redo] = (other + w_top * s_rest) / total
    return trp


def rows_note(mask: NDArray[np.bool_], n: int) -> str:
    """:func:`~._result.rows_text` of the rows where ``mask`` holds."""
    return rows_text(np.flatnonzero(mask).tolist(), n)


#: Up to this k one analysis takes the scalar path with plain np.dot (BLAS stays
#: single-threaded at this size). Larger k: the closed-form estimators stay on the scalar
#: path with :func:`dot_long`; the iterative ones take the row-wise batch path.
SMALL_DOT = 4096


add_reduce = np.add.reduce  # the C reduction without ndarray.sum's Python wrapper


#: Chunk length for :func:`dot_long`; OpenBLAS's ddot starts threads above n = 10 000.
_DOT_CHUNK = 10_000


def dot_long(a: FloatArray, b: FloatArray) -> float:
    """``a @ b`` for long 1-D vectors as single-threaded BLAS dots over chunks.

    One BLAS ``ddot`` over more than 10 000 elements runs on OpenBLAS's threads: quicker on
    an idle machine (~12 vs ~35 µs at k = 100 000 on 2 cores) but twice the CPU time, and
    the threads spin and stall when other work holds the cores (see :func:`rsum`).
    ``einsum`` stays single-threaded but is ~1.5x slower than these chunks.
    """
    k = a.shape[0]
    dot = np.dot
    total = 0.0
    for i in range(0, k, _DOT_CHUNK):
        j = i + _DOT_CHUNK
        total += float(dot(a[i:j], b[i:j]))
    return total


def sum_long(a: FloatArray) -> float:
    """Sum of a long 1-D vector (``einsum``: faster than ``np.add.reduce`` at this size)."""
    return float(np.einsum("i->", a))


def crit(alpha: float, df: Any) -> Any:
    """The two-sided critical value at ``alpha``: normal (``df`` None) or t with ``df``
    (a float, or an array over rows of different lengths: then an array)."""
    if isinstance(df, np.ndarray):
        return np.asarray(-stdtrit(df, alpha / 2.0))
    return _crit(alpha, df)


@functools.lru_cache(maxsize=64)
def _crit(alpha: float, df: float | None) -> float:
    if df is None:
        return float(-ndtri(alpha / 2.0))
    return float(-stdtrit(df, alpha / 2.0))
