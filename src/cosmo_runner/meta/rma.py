"""Random- and equal-effects meta-analysis and meta-regression (metafor's ``rma.uni``).

The model is ``y_i = x_i' beta + u_i + e_i`` with ``e_i ~ N(0, v_i)`` and ``u_i ~ N(0, tau2)``
(Viechtbauer 2005, 2010). ``tau2`` is estimated by one of

- ``EE`` (alias ``FE``): ``tau2 = 0``;
- ``DL``: DerSimonian & Laird (1986) method of moments;
- ``HE``: Hedges (1983) / Hedges & Olkin (1985) unweighted method of moments;
- ``HS``: Hunter & Schmidt (2004);
- ``SJ``: Sidik & Jonkman (2005), one step from ``var(y) (k-1)/k``;
- ``ML``, ``REML``: (restricted) maximum likelihood by Fisher scoring (Viechtbauer 2005) from
  the ``HE`` start, with metafor's step halving and stopping rule (``|step| <= threshold``);
- ``EB``: empirical Bayes (Morris 1983; Berkey et al. 1995), metafor's iteration;
- ``PM``: Paule & Mandel (1982), the root of the generalised ``Q(tau2) = k - p``.

Beyond metafor: where Fisher scoring stops at a local maximum of a multimodal likelihood
(``Control.global_check``), or does not converge (it can oscillate), the fit uses a bounded
maximisation of the (restricted) log-likelihood, a grid bracket followed by a root of the
score with :func:`scipy.optimize.elementwise.find_root` (Chandrupatla's bracketing method,
vectorised over analyses); ``algorithm`` and ``warnings`` say so. ``EB`` falls back to the
equivalent ``PM`` equation. A failure that remains raises
:class:`~cosmo_runner.errors.AnalysisError`.

Tests: ``"z"`` (normal) or ``"knha"`` (Knapp & Hartung 2003: the variance scaled by the
weighted residual variance, t with ``k - p`` df; also computed for EE, with metafor's warning).
Heterogeneity: ``Q`` (Cochran), and ``I2``/``H2`` (Higgins & Thompson 2002), tau2-based for
random-effects models and Q-based for EE, exactly as metafor computes them.

Batches: ``yi`` and ``vi`` may be 2-D (analyses x studies); every intercept-only method is
then fitted for all analyses at once (iterations loop, analyses do not), and the result's
attributes are arrays over analyses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtrc, fdtrc, ndtr, ndtri, stdtr, stdtrit

from cosmo_runner.errors import AnalysisError

__all__ = ["METHODS", "TESTS", "Control", "RMAResult", "rma"]

FloatArray = NDArray[np.float64]
#: A float for one analysis, a float array over analyses for a batch.
Num = Any

METHODS = ("EE", "FE", "DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")
TESTS = ("z", "knha")

FISHER = "fisher-scoring"
FALLBACK = "bounded-optimisation fallback"
CLOSED = "closed form"
ROOT = "root finding"
#: ``algorithm`` values; batches keep small integer codes into this tuple until asked.
ALGORITHMS = (CLOSED, FISHER, FALLBACK, ROOT)
_CODE = {name: code for code, name in enumerate(ALGORITHMS)}

KNHA_EE_WARNING = "Knapp & Hartung method is not meant to be used in the context of {} models."
LL0_WARNING = (
    "Fisher scoring algorithm may have gotten stuck at a local maximum{}; setting tau^2 = 0 "
    "(the likelihood at tau^2 = 0 is higher)."
)
_EPS = float(np.finfo(np.float64).eps)
#: tau2 values (times var(yi)) at which ``global_check`` evaluates the likelihood
_GLOBAL_FRACS = np.array([0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.5])
MULTIMODAL_WARNING = (
    "The {} likelihood is multimodal: Fisher scoring stopped at a local maximum{}; "
    "used the global maximum found by bounded maximisation."
)


@dataclass(frozen=True)
class Control:
    """Algorithm settings (metafor's ``control`` list; defaults are metafor 3.8's).

    ``threshold`` and ``maxiter`` govern Fisher scoring (ML, REML, EB): stop when the step is
    at most ``threshold``, give up after ``maxiter`` iterations. ``tol`` is the tolerance of
    the likelihood check at tau2 = 0 (``ll0check``). ``stepadj`` scales every step.
    ``tau2_init`` replaces the HE start. ``fallback`` enables the bounded maximisation when
    Fisher scoring does not converge. ``global_check`` (ML, REML; beyond metafor) compares
    the converged estimate with the likelihood at a few tau2 values spread over
    ``(0.05 .. 2.5) var(yi)``; where one is higher by more than ``tol`` the likelihood is
    multimodal and Fisher scoring stopped at a local maximum, so the global maximum is found
    by the bounded maximisation (with a warning). ``global_check=False`` gives metafor's
    result exactly. (Intercept-only models; meta-regressions follow metafor.) Root finding (PM, the fallback, Q-profile intervals)
    always converges to machine precision (relative ``xrtol``), which is where metafor's
    ``uniroot`` (tol ~1.2e-4) is headed.
    """

    threshold: float = 1e-5
    maxiter: int = 100
    tol: float = _EPS**0.25
    stepadj: float = 1.0
    tau2_init: float | None = None
    ll0check: bool = True
    fallback: bool = True
    global_check: bool = True
    xrtol: float = 4 * _EPS

    @classmethod
    def from_mapping(cls, control: Mapping[str, Any] | Control | None) -> Control:
        """Build from a mapping with any of the field names (unknown keys are an error)."""
        if control is None:
            return _DEFAULT_CONTROL
        if isinstance(control, Control):
            return control
        unknown = sorted(set(control) - set(cls.__dataclass_fields__))
        if unknown:
            raise AnalysisError(f"rma: unknown control setting(s): {', '.join(unknown)}")
        return cls(**dict(control))


class _Lazy:
    """Results a plain fit does not pay for: computed on first access, then cached.

    For one analysis (``single``) arrays are reduced to their only element; for a batch an
    undefined value (``None``) becomes an all-``nan`` array of ``rows``.
    """

    def __init__(
        self,
        funcs: Mapping[str, Callable[[], Any]],
        single: bool = False,
        rows: int | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        self._funcs = dict(funcs)
        # already computed values (taken as they are, not reduced or filled)
        self._values: dict[str, Any] = {} if values is None else values
        self.single = single
        self.rows = rows

    def get(self, name: str) -> Any:
        if name not in self._values:
            value = self._funcs[name]()
            if value is None and not self.single and self.rows is not None:
                value = np.full(self.rows, np.nan)  # undefined for every analysis
            if self.single and isinstance(value, np.ndarray):
                value = value[0]
                if isinstance(value, np.generic):
                    value = value.item()
            self._values[name] = value
        return self._values[name]


_DEFAULT_CONTROL = Control()


@dataclass(frozen=True)
class RMAResult:
    """The fitted model; attribute names follow metafor and the JSON result keys.

    For one analysis the numbers are floats (``None`` where undefined, e.g. ``df`` for the
    z-test or ``tau2_se`` for EE); for a batch they are arrays over analyses (``nan`` where
    undefined for every analysis). With moderators, ``estimate``, ``se``, ``statistic``,
    ``pval``, ``ci_lb`` and ``ci_ub`` are arrays over the model terms (``terms``, the
    intercept first), ``Q`` is the residual heterogeneity statistic QE, ``QM`` the omnibus
    test of the moderators (an F statistic with ``test="knha"``) and ``R2`` the pseudo-R2
    (Raudenbush 2009) against the intercept-only model; ``pi_lb``/``pi_ub`` are ``None``.
    ``weights`` are the model's weights in percent.

    ``tau2_se``, ``weights``, ``Q_pval`` and ``algorithm`` are computed on first access (a
    plain fit does not pay for them) from the arrays passed to :func:`rma`: do not modify
    those arrays in place before reading them. For a batch, ``statistic``, ``pval``,
    ``tau``, ``I2``, ``H2``, ``pi_lb`` and ``pi_ub`` are also computed on first access (from
    per-analysis results kept by the fit, not from the inputs).
    """

    k: int
    estimate: Num
    se: Num
    df: Num
    ci_lb: Num
    ci_ub: Num
    tau2: Num
    Q: Num
    Q_df: int
    method: str
    test: str
    level: float
    converged: Num
    iterations: Num
    warnings: tuple[str, ...]
    lazy: _Lazy = field(repr=False, compare=False)
    vt: Num = None
    terms: tuple[str, ...] | None = None
    vb: FloatArray | None = None
    QM: Num = None
    QM_df: tuple[int, ...] | None = None
    QM_pval: Num = None
    R2: Num = None

    @classmethod
    def _make(cls, **values: Any) -> RMAResult:
        """Construct without the generated ``__init__`` (30-odd ``object.__setattr__`` calls
        are a fifth of a small fit); same fields and defaults."""
        self = object.__new__(cls)
        self.__dict__.update(_RESULT_DEFAULTS)
        self.__dict__.update(values)
        return self

    @property
    def statistic(self) -> Num:
        """Test statistic of the estimate (z, or t with ``test="knha"``)."""
        return self.lazy.get("statistic")

    @property
    def pval(self) -> Num:
        """Two-sided p-value of the estimate."""
        return self.lazy.get("pval")

    @property
    def tau(self) -> Num:
        """Square root of tau2."""
        return self.lazy.get("tau")

    @property
    def I2(self) -> Num:
        """I2 (percent): share of the total variability due to heterogeneity."""
        return self.lazy.get("I2")

    @property
    def H2(self) -> Num:
        """H2: total variability over sampling variability."""
        return self.lazy.get("H2")

    @property
    def pi_lb(self) -> Num:
        """Lower bound of the prediction interval (None with moderators)."""
        return self.lazy.get("pi_lb")

    @property
    def pi_ub(self) -> Num:
        """Upper bound of the prediction interval (None with moderators)."""
        return self.lazy.get("pi_ub")

    @property
    def tau2_se(self) -> Num:
        """Standard error of tau2 as metafor computes it per estimator (None/nan for EE)."""
        return self.lazy.get("tau2_se")

    @property
    def Q_pval(self) -> Num:
        """p-value of the Q test (chi-square with Q_df df, survival function)."""
        return self.lazy.get("Q_pval")

    @property
    def algorithm(self) -> Any:
        """How tau2 was found: one of :data:`ALGORITHMS` (an array of them for a batch)."""
        return self.lazy.get("algorithm")

    @property
    def weights(self) -> FloatArray:
        """The model's weights in percent (per study; analyses x studies for a batch)."""
        out: FloatArray = self.lazy.get("weights")
        return out

    @property
    def batch(self) -> bool:
        """True when the fit covers several analyses (array attributes)."""
        return isinstance(self.tau2, np.ndarray) and self.terms is None


_RESULT_DEFAULTS = {
    f.name: f.default
    for f in RMAResult.__dataclass_fields__.values()
    if f.default is not dataclasses.MISSING
}


# --------------------------------------------------------------------------- helpers


def _canonical_method(method: str) -> str:
    m = str(method).upper()
    if m not in METHODS:
        raise AnalysisError(f"rma: unknown method {method!r} (one of {', '.join(METHODS)})")
    return m


def _alpha(level: float) -> float:
    lev = float(level)
    if lev > 1:
        lev = lev / 100.0
    if not 0 < lev < 1:
        raise AnalysisError(f"rma: level must be in (0, 100), got {level!r}")
    return 1.0 - lev


def _check_data(y: FloatArray, v: FloatArray, min_k: int = 2, *, values: bool = True) -> None:
    """Shapes and ``k``; with ``values``, also finite ``yi`` and finite, positive ``vi``.

    Intercept-only fits skip the value checks here: :meth:`_EE.of` and :func:`_fit_single`
    confirm them from their own first pass over the data (``1/vi`` finite and positive, the
    weighted mean finite) and call this function again only to name a failure.
    """
    if y.shape != v.shape:
        raise AnalysisError(f"rma: yi has shape {y.shape} but vi has shape {v.shape}")
    if y.ndim not in (1, 2):
        raise AnalysisError("rma: yi and vi must be 1-D (one analysis) or 2-D (analyses x studies)")
    k = y.shape[-1]
    if k < min_k:
        raise AnalysisError(f"rma: need at least {min_k} studies, got k = {k}")
    if not values:
        return
    # reductions first (no temporaries); the element-wise check only to confirm a failure
    if y.size <= _SMALL_DOT:
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


def _bad_values(y: FloatArray, v: FloatArray) -> NoReturn:
    """Raise for data whose equal-effects sums are not finite: name the bad input, or say
    that finite inputs overflowed."""
    _check_data(y, v)
    raise AnalysisError(
        "rma: yi / vi overflow double precision (extreme effect sizes or variance ratio)"
    )


def _mad(y: FloatArray) -> FloatArray:
    """R's ``mad`` (constant 1.4826) along the last axis."""
    med = np.median(y, axis=-1, keepdims=True)
    out: FloatArray = 1.4826 * np.median(np.abs(y - med), axis=-1)
    return out


def _roots(
    func: Callable[[FloatArray, FloatArray], FloatArray],
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


def _solve_q(
    y: FloatArray, v: FloatArray, target: FloatArray, upper: FloatArray, xrtol: float
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_], NDArray[np.bool_]]:
    """Solve ``Q(tau2) = target`` for tau2 in [0, upper], row-wise (Q is decreasing).

    Returns tau2 (0 where ``Q(0) < target``), success, iterations and ``too_low`` (rows
    where even ``Q(upper) > target``: the root lies above ``upper``).
    """
    n = y.shape[0]
    tau2 = np.zeros(n)
    ok = np.ones(n, dtype=bool)
    nit = np.zeros(n, dtype=np.int_)
    q0 = _qgen(np.zeros(n), y, v)
    qu = _qgen(upper, y, v)
    too_low = qu > target
    solve = (q0 >= target) & ~too_low
    if solve.any():
        idx = np.flatnonzero(solve)
        ys, vs, ts = y[idx], v[idx], target[idx]

        def f(x: FloatArray, row: FloatArray) -> FloatArray:
            out: FloatArray = _qgen(x, ys[row], vs[row]) - ts[row]
            return out

        root, success, its = _roots(f, np.zeros(idx.size), upper[idx], xrtol)
        tau2[idx] = np.maximum(root, 0.0)
        ok[idx] = success
        nit[idx] = its
    return tau2, ok, nit, too_low


# ------------------------------------------------------------ intercept-only estimators


#: Elements per BLAS call in :func:`_rsum`: below OpenBLAS's size for threading a matrix-
#: vector product (2304 x GEMM_MULTITHREAD_THRESHOLD = 9216 by default), so every call stays
#: on the calling thread.
_GEMV_BLOCK = 8192


@functools.lru_cache(maxsize=16)
def _ones(k: int) -> FloatArray:
    ones = np.ones(k)
    ones.flags.writeable = False
    return ones


def _rsum(a: FloatArray) -> FloatArray:
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


def _rdot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise dot products ``sum(a * b, axis=1)`` without the temporary (no BLAS)."""
    return np.asarray(np.einsum("ij,ij->i", a, b))


_SCRATCH = threading.local()
_SCRATCH_MAX = 1 << 19  # elements (4 MB) per buffer; larger work arrays are not kept


def _scratch(name: str, shape: tuple[int, ...]) -> FloatArray:
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


def _inv_plus(v: FloatArray, t: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """``1 / (v + t)`` row-wise, on one array (``1.0 / (v + t)`` hits a slow numpy path)."""
    s = np.add(v, t[:, None], out=out)
    np.divide(1.0, s, out=s)
    return s


def _gls(
    y: FloatArray, w: FloatArray, out: FloatArray | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Sum of weights, weighted mean and residuals, row-wise."""
    sw = _rsum(w)
    mu = _rdot(w, y) / sw
    return sw, mu, np.subtract(y, mu[:, None], out=out)


def _qgen(t: FloatArray, y: FloatArray, v: FloatArray) -> FloatArray:
    """Generalised Q statistic ``sum w (y - mu_w)^2`` with ``w = 1/(v + t)``, row-wise."""
    w = _inv_plus(v, t)
    _, _, r = _gls(y, w)
    return _rdot(w * r, r)


def _loglik(t: FloatArray, y: FloatArray, v: FloatArray, reml: bool) -> FloatArray:
    """(Restricted) log-likelihood of the intercept-only model up to a constant, row-wise."""
    shape = y.shape
    s = np.add(v, t[:, None], out=_scratch("ll.s", shape))
    w = np.divide(1.0, s, out=_scratch("ll.w", shape))
    sw, _, r = _gls(y, w, out=_scratch("ll.r", shape))
    q = _rdot(np.multiply(w, r, out=w), r)
    ll = -0.5 * (_rsum(np.log(s, out=s)) + q)
    if reml:
        ll = ll - 0.5 * np.log(sw)
    return np.asarray(ll)


def _loglik_grid(grid: FloatArray, y: FloatArray, v: FloatArray, reml: bool) -> FloatArray:
    """:func:`_loglik` at every tau2 of ``grid`` (rows x points), in blocks of rows."""
    n, g = grid.shape
    k = y.shape[1]
    out = np.empty((n, g))
    step = max(1, (1 << 22) // (g * k))
    for a in range(0, n, step):
        b = min(n, a + step)
        s = v[a:b, None, :] + grid[a:b, :, None]
        w = 1.0 / s
        sw = w.sum(axis=2)
        mu = np.einsum("rgk,rk->rg", w, y[a:b]) / sw
        r = y[a:b, None, :] - mu[:, :, None]
        ll = -0.5 * (np.log(s).sum(axis=2) + np.einsum("rgk,rgk,rgk->rg", w, r, r))
        if reml:
            ll -= 0.5 * np.log(sw)
        out[a:b] = ll
    return out


def _score(t: FloatArray, y: FloatArray, v: FloatArray, reml: bool) -> FloatArray:
    """Twice the derivative of the (restricted) log-likelihood in tau2, row-wise."""
    w = _inv_plus(v, t)
    sw, _, r = _gls(y, w)
    wr = w * r
    ypppy = _rdot(wr, wr)
    if reml:
        return np.asarray(ypppy - (sw - _rdot(w, w) / sw))
    return np.asarray(ypppy - sw)


def _fisher(
    y: FloatArray, v: FloatArray, method: str, start: FloatArray, con: Control
) -> tuple[FloatArray, NDArray[np.bool_], NDArray[np.int_]]:
    """metafor's Fisher scoring for ML, REML and EB, masked over analyses.

    Each iteration takes ``adj`` = (REML) ``(y'PPy - tr P) / tr(PP)``, (ML)
    ``(y'PPy - sum w) / sum w^2`` or (EB) ``(y'Py k/(k-1) - k) / sum w``, halves it while
    ``tau2 + adj < 0`` and stops when ``|adj| <= threshold``; more than ``maxiter``
    iterations is a failure (as in metafor).
    """
    n, k = y.shape
    tau2 = start.copy()
    conv = np.zeros(n, dtype=bool)
    iters = np.zeros(n, dtype=np.int_)
    active = np.arange(n)
    ya, va, t = y, v, start.copy()
    # work arrays reused by every iteration (fresh large temporaries cost page faults)
    wbuf, rbuf, pbuf = (_scratch(f"fisher.{x}", y.shape) for x in "wrp")
    for it in range(1, con.maxiter + 2):
        m = ya.shape[0]
        w, r, wr = wbuf[:m], rbuf[:m], pbuf[:m]
        np.add(va, t[:, None], out=w)
        np.divide(1.0, w, out=w)
        sw = _rsum(w)
        np.subtract(ya, (_rdot(w, ya) / sw)[:, None], out=r)
        np.multiply(w, r, out=wr)
        if method == "EB":
            adj = (_rdot(wr, r) * k / (k - 1) - k) / sw
        else:
            ypppy = _rdot(wr, wr)
            sw2 = _rdot(w, w)
            if method == "ML":
                adj = (ypppy - sw) / sw2
            else:
                np.multiply(w, w, out=r)
                sw3 = _rdot(r, w)
                tr_p = sw - sw2 / sw
                tr_pp = sw2 - 2.0 * sw3 / sw + (sw2 / sw) ** 2
                adj = (ypppy - tr_p) / tr_pp
        if con.stepadj != 1.0:
            adj = adj * con.stepadj
        adj[np.isnan(adj)] = 0.0
        new = t + adj
        neg = new < 0.0
        if neg.any():
            # step halving: the smallest number of halvings that keeps tau2 >= 0
            pos = neg & (t > 0)
            adj = np.where(neg & ~pos, 0.0, adj)
            if pos.any():
                halvings = np.ceil(np.log2(-adj[pos] / t[pos]))
                adj[pos] = np.ldexp(adj[pos], -halvings.astype(np.int_))
                still = pos & (t + adj < 0)
                while still.any():
                    adj[still] = adj[still] / 2.0
                    still = still & (t + adj < 0)
            new = t + adj
        change = np.abs(t - new)
        t = new
        iters[active] = it
        if it > con.maxiter:
            tau2[active] = t
            break
        done = change <= con.threshold
        if done.any():
            tau2[active[done]] = t[done]
            conv[active[done]] = True
            keep = ~done
            if not keep.any():
                break
            # compact the still-active rows into reused buffers (ping-pong, no page faults)
            m2 = int(keep.sum())
            side = it % 2
            ya = np.compress(keep, ya, axis=0, out=_scratch(f"fisher.y{side}", y.shape)[:m2])
            va = np.compress(keep, va, axis=0, out=_scratch(f"fisher.v{side}", y.shape)[:m2])
            active, t = active[keep], t[keep]
    return tau2, conv, iters


def _fallback_ml(
    y: FloatArray, v: FloatArray, reml: bool, con: Control
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Bounded maximisation of the (restricted) likelihood over tau2 >= 0, row-wise.

    A geometric grid (plus 0) up to ``max(100, 10 * range(y)^2)`` locates the global
    maximum; the score is then solved inside the bracketing grid cell (or tau2 = 0 where
    the maximum is at the boundary).
    """
    n = y.shape[0]
    spread = np.ptp(y, axis=1)
    upper = np.maximum(100.0, 10.0 * spread**2)
    frac = np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 121)])
    grid = upper[:, None] * frac[None, :]
    ll = _loglik_grid(grid, y, v, reml)
    best = np.argmax(ll, axis=1)
    rows = np.arange(n)
    tau2 = np.zeros(n)
    ok = np.ones(n, dtype=bool)
    at_zero = best == 0
    if at_zero.any():
        # maximum at the boundary: tau2 = 0 if the score there is not positive
        s0 = _score(np.zeros(int(at_zero.sum())), y[at_zero], v[at_zero], reml)
        best[at_zero] = np.where(s0 <= 0, 0, 1)
    interior = best > 0
    if interior.any():
        idx = rows[interior]
        lo = grid[idx, best[idx] - 1]
        hi = grid[idx, np.minimum(best[idx] + 1, frac.size - 1)]
        ys, vs = y[idx], v[idx]
        valid = (_score(lo, ys, vs, reml) > 0) & (_score(hi, ys, vs, reml) < 0)
        root = grid[idx, best[idx]].copy()
        success = np.zeros(idx.size, dtype=bool)
        if valid.any():
            sub = np.flatnonzero(valid)
            ysub, vsub = ys[sub], vs[sub]

            def fsub(x: FloatArray, row: FloatArray) -> FloatArray:
                return _score(x, ysub[row], vsub[row], reml)

            r_sub, s_sub, _ = _roots(fsub, lo[sub], hi[sub], con.xrtol)
            root[sub] = r_sub
            success[sub] = s_sub
        tau2[idx] = root
        ok[idx] = success
    return tau2, ok


@dataclass
class _EE:
    """Equal-effects pieces shared by the estimators and the heterogeneity statistics."""

    w: FloatArray
    sw: FloatArray
    sw2: FloatArray
    mu: FloatArray
    q: FloatArray
    trp: FloatArray  # trace of P = W - w w'/sum w: sum w - sum w^2 / sum w

    @classmethod
    def of(cls, y: FloatArray, v: FloatArray) -> _EE:
        """The equal-effects fit of every row, and the value checks of :func:`_check_data`.

        Valid during the call only: ``w`` is a scratch buffer. ``Q`` comes from the sums
        ``sum w y^2 - mu sum w y`` (one pass fewer than residuals); a row where that
        difference cancels more than :data:`_Q_CANCEL` of ``sum w y^2`` (its relative
        rounding error could exceed ~1e-13) is recomputed from residuals, as are rows with
        ``Q`` near 0 (identical effects).
        """
        shape = y.shape
        with np.errstate(all="ignore"):  # bad values are named below, not warned about
            w = np.divide(1.0, v, out=_scratch("ee.w", shape))
            wmin = float(np.minimum.reduce(w, axis=None))
            sw = _rsum(w)
            wy = np.multiply(w, y, out=_scratch("ee.wy", shape))
            swy = _rsum(wy)
            mu = swy / sw
            # w > 0 everywhere <=> vi positive and not +inf (nan fails the comparison);
            # then mu + sw is finite unless yi is not or the sums overflowed
            if not wmin > 0 or not np.isfinite(mu + sw).all():
                _bad_values(y, v)
            swyy = _rdot(wy, y)
            q = swyy - mu * swy
        sw2 = _rdot(w, w)
        redo = np.flatnonzero(q * _Q_CANCEL < swyy)
        if redo.size:
            ws, r = w[redo], y[redo] - mu[redo, None]
            q[redo] = _rdot(ws * r, r)
        q = np.maximum(q, 0.0)
        return cls(w=w, sw=sw, sw2=sw2, mu=mu, q=q, trp=sw - sw2 / sw)


#: :meth:`_EE.of` recomputes Q from residuals where ``sum w y^2 > _Q_CANCEL * Q``.
_Q_CANCEL = 1e3


def _tau2_batch(
    y: FloatArray, v: FloatArray, ee: _EE, method: str, con: Control
) -> tuple[FloatArray, FloatArray, NDArray[np.bool_], NDArray[np.int_], NDArray[Any], list[str]]:
    """Estimate tau2 for every row; returns tau2, the SJ start, convergence, iterations,
    the algorithm code per row and warnings."""
    n, k = y.shape
    warnings: list[str] = []
    conv = np.ones(n, dtype=bool)
    iters = np.zeros(n, dtype=np.int_)
    algorithm = np.zeros(n, dtype=np.int8)  # codes into ALGORITHMS
    tau0 = np.zeros(n)
    if method in ("EE", "FE"):
        return np.zeros(n), tau0, conv, iters, algorithm, warnings
    if method == "DL":
        tau2 = (ee.q - (k - 1)) / ee.trp
        return np.maximum(tau2, 0.0), tau0, conv, iters, algorithm, warnings
    if method == "HS":
        return np.maximum((ee.q - k) / ee.sw, 0.0), tau0, conv, iters, algorithm, warnings
    ybar = _rsum(y) / k
    ym = np.subtract(y, ybar[:, None], out=_scratch("tau.ym", y.shape))
    if method == "SJ":
        tau0 = _rdot(ym, ym) / k
        if con.tau2_init is not None:
            tau0 = np.full(n, float(con.tau2_init))
        w = _inv_plus(v, tau0, out=_scratch("tau.w", y.shape))
        _, _, r = _gls(y, w, out=_scratch("tau.r", y.shape))
        tau2 = tau0 * _rdot(np.multiply(w, r, out=w), r) / (k - 1)
        return np.maximum(tau2, 0.0), tau0, conv, iters, algorithm, warnings
    if method == "PM":
        upper = np.maximum(100.0, 10.0 * _mad(y) ** 2)
        tau2, ok, nit, too_low = _solve_q(y, v, np.full(n, k - 1.0), upper, con.xrtol)
        algorithm[:] = _CODE[ROOT]
        if too_low.any():
            raise AnalysisError(
                "rma: PM root lies above tau2.max = max(100, 10 mad(yi)^2)" + _rows_note(too_low, n)
            )
        if not ok.all():
            raise AnalysisError("rma: PM root finding failed" + _rows_note(~ok, n))
        return tau2, tau0, conv, nit, algorithm, warnings
    # HE, and the start for ML / REML / EB
    he = _rdot(ym, ym) / (k - 1) - _rsum(v) / k
    if method == "HE":
        return np.maximum(he, 0.0), tau0, conv, iters, algorithm, warnings
    start = np.maximum(he, 0.0) if con.tau2_init is None else np.full(n, float(con.tau2_init))
    tau2, conv, iters = _fisher(y, v, method, start, con)
    algorithm[:] = _CODE[FISHER]
    failed = ~conv
    if failed.any():
        note = _rows_note(failed, n)
        if not con.fallback:
            raise AnalysisError(
                "rma: Fisher scoring algorithm did not converge"
                + note
                + "; enable control fallback or increase maxiter"
            )
        idx = np.flatnonzero(failed)
        if method == "EB":
            upper = np.maximum(100.0, 10.0 * _mad(y[idx]) ** 2)
            t_fb, ok, _, too_low = _solve_q(
                y[idx], v[idx], np.full(idx.size, k - 1.0), upper, con.xrtol
            )
            ok &= ~too_low
            algorithm[idx] = _CODE[ROOT]
            what = "solved the equivalent PM equation by root finding"
        else:
            t_fb, ok = _fallback_ml(y[idx], v[idx], method == "REML", con)
            algorithm[idx] = _CODE[FALLBACK]
            what = "used bounded maximisation of the " + (
                "restricted likelihood" if method == "REML" else "likelihood"
            )
        if not ok.all():
            raise AnalysisError(
                "rma: Fisher scoring did not converge and the fallback failed"
                + _rows_note(failed, n)
            )
        tau2[idx] = t_fb
        warnings.append(f"Fisher scoring algorithm did not converge{note}; {what}.")
    if method in ("ML", "REML") and con.ll0check:
        check = conv & (tau2 > con.threshold)
        if check.any():
            idx = np.flatnonzero(check)
            reml = method == "REML"
            ll_t = _loglik(tau2[idx], y[idx], v[idx], reml)
            ll_0 = _loglik(np.zeros(idx.size), y[idx], v[idx], reml)
            stuck = ll_0 - ll_t > con.tol
            if stuck.any():
                tau2[idx[stuck]] = 0.0
                mask = np.zeros(n, dtype=bool)
                mask[idx[stuck]] = True
                warnings.append(LL0_WARNING.format(_rows_note(mask, n)))
    if method in ("ML", "REML") and con.global_check and conv.any():
        _global_check(
            y, v, ym=ym, tau2=tau2, conv=conv, algorithm=algorithm, warnings=warnings,
            reml=method == "REML", con=con,
        )  # fmt: skip
    return np.maximum(tau2, 0.0), tau0, conv, iters, algorithm, warnings


def _global_check(
    y: FloatArray,
    v: FloatArray,
    *,
    ym: FloatArray,
    tau2: FloatArray,
    conv: NDArray[np.bool_],
    algorithm: NDArray[np.int8],
    warnings: list[str],
    reml: bool,
    con: Control,
) -> None:
    """Replace local maxima of the (restricted) likelihood by the global one, in place."""
    n, k = y.shape
    idx = np.flatnonzero(conv)
    whole = idx.size == n
    yb, vb = (y, v) if whole else (y[idx], v[idx])
    s2 = (_rdot(ym, ym) / k) if whole else (_rdot(ym[idx], ym[idx]) / k)
    ll_est = _loglik(tau2[idx], yb, vb, reml)
    best = np.full(idx.size, -np.inf)
    for frac in _GLOBAL_FRACS:
        np.maximum(best, _loglik(s2 * frac, yb, vb, reml), out=best)
    better = best > ll_est + con.tol
    if not better.any():
        return
    rows = idx[better]
    t_glob, ok = _fallback_ml(y[rows], v[rows], reml, con)
    gain = _loglik(t_glob, y[rows], v[rows], reml) > ll_est[better]
    use = rows[ok & gain]
    if use.size == 0:
        return
    tau2[use] = t_glob[ok & gain]
    algorithm[use] = _CODE[FALLBACK]
    mask = np.zeros(n, dtype=bool)
    mask[use] = True
    kind = "restricted" if reml else "ML"

    warnings.append(MULTIMODAL_WARNING.format(kind, _rows_note(mask, n)))


def _rows_note(mask: NDArray[np.bool_], n: int) -> str:
    if n == 1:
        return ""
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(int(i)) for i in rows[:5])
    more = ", ..." if rows.size > 5 else ""
    return f" in {rows.size} of {n} analyses (rows {shown}{more})"


def _ptraces(w: FloatArray, v: FloatArray | None = None) -> dict[str, FloatArray]:
    """Traces for ``P = W - w w'/sum w`` (intercept-only), row-wise; with ``V = diag(v)``."""
    sw = _rsum(w)
    w2 = w * w
    sw2 = _rsum(w2)
    sw3 = _rdot(w2, w)
    out = {"trP": sw - sw2 / sw, "trPP": sw2 - 2.0 * sw3 / sw + (sw2 / sw) ** 2, "sw": sw}
    if v is not None:
        w2v = _rdot(w2, v)
        out["trPV"] = _rdot(w, v) - w2v / sw
        out["trPVPV"] = _rdot(w2, v * v) - 2.0 * _rdot(w2 * w, v * v) / sw + (w2v / sw) ** 2
        out["trPVP"] = w2v - 2.0 * _rdot(w2 * w, v) / sw + sw2 * w2v / sw**2
    return out


def _tau2_se(
    method: str,
    k: int,
    v: FloatArray,
    *,
    tau2: FloatArray,
    tau0: FloatArray,
    w: FloatArray,
    sw: FloatArray,
) -> FloatArray | None:
    """metafor's standard error of tau2 for each estimator (``None`` for EE)."""
    t = tau2
    df = k - 1.0
    if method in ("EE", "FE"):
        return None
    if method == "ML":
        return np.asarray(np.sqrt(2.0 / _rdot(w, w)))
    if method == "REML":
        return np.asarray(np.sqrt(2.0 / _ptraces(w)["trPP"]))
    if method in ("EB", "PM"):
        return np.asarray(np.sqrt(2.0 * k * k / df / sw**2))
    if method in ("DL", "HS"):
        tr = _ptraces(1.0 / v)
        var = 2.0 * df + 4.0 * t * tr["trP"] + 2.0 * t * t * tr["trPP"]
        denom = tr["trP"] ** 2 if method == "DL" else tr["sw"] ** 2
        return np.asarray(np.sqrt(var / denom))
    if method == "HE":
        tr = _ptraces(np.ones_like(v), v)
        var = 2.0 * tr["trPVPV"] + 4.0 * t * tr["trPV"] + 2.0 * t * t * df
        return np.asarray(np.sqrt(var) / df)
    # SJ
    tr = _ptraces(_inv_plus(v, tau0), v)
    var = 2.0 * tr["trPVPV"] + 4.0 * t * tr["trPVP"] + 2.0 * t * t * tr["trPP"]
    return np.asarray(tau0 / df * np.sqrt(var))


def _crit(alpha: float, df: float | None) -> float:
    if df is None:
        return float(-ndtri(alpha / 2.0))
    return float(-stdtrit(df, alpha / 2.0))


def _fit_batch(
    y: FloatArray, v: FloatArray, method: str, *, test: str, alpha: float, con: Control
) -> dict[str, Any]:
    """The intercept-only fit for every row of (analyses x studies) arrays.

    ``tau2_se`` and ``weights`` are returned as zero-argument callables (computed on demand).
    """
    k = y.shape[1]
    ee = _EE.of(y, v)
    tau2, tau0, conv, iters, algorithm, warnings = _tau2_batch(y, v, ee, method, con)
    q = ee.q
    vt = (k - 1) / ee.trp
    is_ee = method in ("EE", "FE")
    if is_ee:
        w, sw, mu = ee.w, ee.sw, ee.mu
    else:
        w = _inv_plus(v, tau2, out=_scratch("fit.w", y.shape))
        sw = _rsum(w)
        mu = _rdot(w, y) / sw
    var_b = 1.0 / sw
    df: float | None = None
    if test == "knha":
        if is_ee:
            warnings.append(KNHA_EE_WARNING.format(method))
        if is_ee:
            rss = q
        else:
            r = np.subtract(y, mu[:, None], out=_scratch("ee.r", y.shape))
            rss = _rdot(np.multiply(w, r, out=_scratch("ee.wr", y.shape)), r)
        s2w = np.where(rss <= _EPS, 0.0, rss / (k - 1))
        var_b = s2w * var_b
        df = float(k - 1)
    se = np.sqrt(var_b)
    crit = _crit_cached(alpha, df)
    half = crit * se

    # computed on demand from the inputs (the work arrays above are reused by later calls)
    def model_weights() -> tuple[FloatArray, FloatArray]:
        wm = _inv_plus(v, np.zeros_like(tau2) if is_ee else tau2)
        return wm, _rsum(wm)

    def tau2_se() -> FloatArray | None:
        wm, swm = model_weights()
        return _tau2_se(method, k, v, tau2=tau2, tau0=tau0, w=wm, sw=swm)

    def weights() -> FloatArray:
        wm, swm = model_weights()
        return np.asarray(100.0 * wm / swm[:, None])

    def q_pval() -> FloatArray:
        return np.asarray(chdtrc(k - 1, q))

    # per-analysis statistics beyond the core fit, from the small arrays above
    def statistic() -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(mu / se)

    def pval() -> FloatArray:
        abs_stat = np.abs(statistic())  # not lazy.get: reduced to a float for one analysis
        return np.asarray(2.0 * (ndtr(-abs_stat) if df is None else stdtr(df, -abs_stat)))

    def i2() -> FloatArray:
        if is_ee:
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(q > 0, np.maximum(0.0, 100.0 * (q - (k - 1)) / q), 0.0)
        return np.asarray(100.0 * tau2 / (vt + tau2))

    def h2() -> FloatArray:
        return np.asarray(q / (k - 1) if is_ee else tau2 / vt + 1.0)

    def half_pi() -> FloatArray:
        return np.asarray(crit * np.sqrt(var_b + tau2))

    lazy = _Lazy(
        {
            "tau2_se": tau2_se,
            "weights": weights,
            "Q_pval": q_pval,
            "algorithm": lambda: np.array(ALGORITHMS, dtype=object)[algorithm],
            "statistic": statistic,
            "pval": pval,
            "tau": lambda: np.sqrt(tau2),
            "I2": i2,
            "H2": h2,
            "pi_lb": lambda: mu - half_pi(),
            "pi_ub": lambda: mu + half_pi(),
        },
        rows=y.shape[0],
    )
    return {
        "k": k,
        "estimate": mu,
        "se": se,
        "df": df,
        "ci_lb": mu - half,
        "ci_ub": mu + half,
        "tau2": tau2,
        "Q": q,
        "Q_df": k - 1,
        "converged": conv,
        "iterations": iters,
        "warnings": tuple(warnings),
        "vt": vt,
        "lazy": lazy,
    }


#: Up to this k one analysis takes the scalar path with plain np.dot (BLAS stays
#: single-threaded at this size). Larger k: the closed-form estimators stay on the scalar
#: path with :func:`_dot_long`; the iterative ones take the row-wise batch path.
_SMALL_DOT = 4096
_add = np.add.reduce  # the C reduction without ndarray.sum's Python wrapper
#: Closed-form estimators: no Fisher scoring or root finding, so no batch machinery needed.
_CLOSED_FORM = frozenset({"EE", "FE", "DL", "HS", "HE", "SJ"})
#: Chunk length for :func:`_dot_long`; OpenBLAS's ddot starts threads above n = 10 000.
_DOT_CHUNK = 10_000


def _dot_long(a: FloatArray, b: FloatArray) -> float:
    """``a @ b`` for long 1-D vectors as single-threaded BLAS dots over chunks.

    One BLAS ``ddot`` over more than 10 000 elements runs on OpenBLAS's threads: quicker on
    an idle machine (~12 vs ~35 µs at k = 100 000 on 2 cores) but twice the CPU time, and
    the threads spin and stall when other work holds the cores (see :func:`_rsum`).
    ``einsum`` stays single-threaded but is ~1.5x slower than these chunks.
    """
    k = a.shape[0]
    dot = np.dot
    total = 0.0
    for i in range(0, k, _DOT_CHUNK):
        j = i + _DOT_CHUNK
        total += float(dot(a[i:j], b[i:j]))
    return total


def _sum_long(a: FloatArray) -> float:
    """Sum of a long 1-D vector (``einsum``: faster than ``np.add.reduce`` at this size)."""
    return float(np.einsum("i->", a))


@functools.lru_cache(maxsize=64)
def _crit_cached(alpha: float, df: float | None) -> float:
    return _crit(alpha, df)


def _fit_single(
    y: FloatArray, v: FloatArray, method: str, *, test: str, alpha: float, con: Control
) -> dict[str, Any] | None:
    """The intercept-only fit of ONE analysis with scalar arithmetic (the fast path: any
    method but PM for k <= ``_SMALL_DOT``, the closed-form estimators for any k).

    Same numbers as :func:`_fit_batch` (tested); returns ``None`` where the batch machinery
    is needed (PM, Fisher scoring that does not converge), so the caller uses that instead.
    """
    k = y.shape[0]
    if method == "PM":
        return None
    if k <= _SMALL_DOT:
        dot: Callable[[FloatArray, FloatArray], Any] = np.dot
        add: Callable[[FloatArray], Any] = _add
    elif method in _CLOSED_FORM:
        dot, add = _dot_long, _sum_long
    else:
        return None
    # the equal-effects fit and the value checks together, as in _EE.of
    with np.errstate(all="ignore"):
        w0 = np.divide(1.0, v)
        if not float(np.minimum.reduce(w0)) > 0:
            _bad_values(y, v)
        sw0 = float(add(w0))
        wy = np.multiply(w0, y)
        swy = float(add(wy))
        mu0 = swy / sw0  # sw0 > 0
        if not math.isfinite(mu0 + sw0):  # yi not finite, or the sums overflowed
            _bad_values(y, v)
        swyy = float(dot(wy, y))
    q = swyy - mu0 * swy
    if q * _Q_CANCEL < swyy:  # cancellation: Q from residuals
        r0 = np.subtract(y, mu0, out=wy)
        q = float(dot(w0, np.square(r0, out=r0)))
    q = max(q, 0.0)
    sw0_2 = float(dot(w0, w0))
    vt = (k - 1) / (sw0 - sw0_2 / sw0)
    warnings: list[str] = []
    tau0 = 0.0
    code = _CODE[CLOSED]
    conv, iters = True, 0
    if method in ("EE", "FE"):
        tau2 = 0.0
    elif method == "DL":
        tau2 = max((q - (k - 1)) / (sw0 - sw0_2 / sw0), 0.0)
    elif method == "HS":
        tau2 = max((q - k) / sw0, 0.0)
    else:
        ym = y - float(add(y)) / k
        ss = float(dot(ym, ym))
        if method == "SJ":
            tau0 = ss / k if con.tau2_init is None else float(con.tau2_init)
            w = 1.0 / (v + tau0)
            r = y - float(dot(w, y)) / float(add(w))
            tau2 = max(tau0 * float(dot(w * r, r)) / (k - 1), 0.0)
        else:
            he = ss / (k - 1) - float(add(v)) / k
            if method == "HE":
                tau2 = max(he, 0.0)
            else:
                start = max(he, 0.0) if con.tau2_init is None else float(con.tau2_init)
                found = _fisher_single(y, v, method, start, con)
                if found is None:
                    return None
                tau2, iters = found
                code = _CODE[FISHER]
                if method in ("ML", "REML") and con.ll0check and tau2 > con.threshold:
                    reml = method == "REML"
                    y2, v2 = y[None, :], v[None, :]
                    pair = _loglik(np.array([tau2]), y2, v2, reml)[0]
                    if float(_loglik(np.zeros(1), y2, v2, reml)[0]) - float(pair) > con.tol:
                        tau2 = 0.0
                        warnings.append(LL0_WARNING.format(""))
                if method in ("ML", "REML") and con.global_check:
                    reml = method == "REML"
                    y2, v2 = y[None, :], v[None, :]
                    at = _loglik(np.array([tau2]), y2, v2, reml)[0]
                    grid = _loglik_grid((ss / k) * _GLOBAL_FRACS[None, :], y2, v2, reml)
                    if float(grid.max()) > float(at) + con.tol:
                        return None  # multimodal: the batch path finds the global maximum
    is_ee = method in ("EE", "FE")
    if is_ee:
        sw, mu = sw0, mu0
        i2 = max(0.0, 100.0 * (q - (k - 1)) / q) if q > 0 else 0.0
        h2 = q / (k - 1)
    else:
        w = 1.0 / (v + tau2) if k <= _SMALL_DOT else _inv_plus(v[None, :], np.array([tau2]))[0]
        sw = float(add(w))
        mu = float(dot(w, y)) / sw
        i2 = 100.0 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1.0
    var_b = 1.0 / sw
    df: float | None = None
    if test == "knha":
        if is_ee:
            warnings.append(KNHA_EE_WARNING.format(method))
            rss = q
        else:
            r = y - mu
            rss = float(dot(w * r, r))
        var_b = (0.0 if rss <= _EPS else rss / (k - 1)) * var_b
        df = float(k - 1)
    se = math.sqrt(var_b)
    stat = mu / se if se > 0 else (math.copysign(math.inf, mu) if mu != 0 else math.nan)
    tail = ndtr(-abs(stat)) if df is None else stdtr(df, -abs(stat))
    pval = 2.0 * float(tail)
    crit = _crit_cached(alpha, df)
    half = crit * se
    half_pi = crit * math.sqrt(var_b + tau2)

    def model_weights() -> tuple[FloatArray, FloatArray]:
        wm = _inv_plus(v[None, :], np.array([0.0 if is_ee else tau2]))
        return wm, _rsum(wm)

    def tau2_se() -> FloatArray | None:
        wm, swm = model_weights()
        t2, t0 = np.array([tau2]), np.array([tau0])
        return _tau2_se(method, k, v[None, :], tau2=t2, tau0=t0, w=wm, sw=swm)

    def weights() -> FloatArray:
        wm, swm = model_weights()
        return np.asarray(100.0 * wm / swm[:, None])

    lazy = _Lazy(
        {
            "tau2_se": tau2_se,
            "weights": weights,
            "Q_pval": lambda: float(chdtrc(k - 1, q)),
            "algorithm": lambda: ALGORITHMS[code],
        },
        single=True,
        values={
            "statistic": stat,
            "pval": pval,
            "tau": math.sqrt(tau2),
            "I2": i2,
            "H2": h2,
            "pi_lb": mu - half_pi,
            "pi_ub": mu + half_pi,
        },
    )
    return {
        "k": k,
        "estimate": mu,
        "se": se,
        "df": df,
        "ci_lb": mu - half,
        "ci_ub": mu + half,
        "tau2": tau2,
        "Q": q,
        "Q_df": k - 1,
        "converged": conv,
        "iterations": iters,
        "warnings": tuple(warnings),
        "vt": vt,
        "lazy": lazy,
    }


def _fisher_single(
    y: FloatArray, v: FloatArray, method: str, start: float, con: Control
) -> tuple[float, int] | None:
    """:func:`_fisher` for one analysis; ``None`` when it does not converge."""
    k = y.shape[0]
    t = start
    dot = np.dot
    for it in range(1, con.maxiter + 2):
        w = 1.0 / (v + t)
        sw = float(_add(w))
        r = y - float(dot(w, y)) / sw
        wr = w * r
        if method == "EB":
            adj = (float(dot(wr, r)) * k / (k - 1) - k) / sw
        else:
            ypppy = float(dot(wr, wr))
            sw2 = float(dot(w, w))
            if method == "ML":
                adj = (ypppy - sw) / sw2
            else:
                sw3 = float(dot(w * w, w))
                adj = (ypppy - (sw - sw2 / sw)) / (sw2 - 2.0 * sw3 / sw + (sw2 / sw) ** 2)
        adj *= con.stepadj
        if math.isnan(adj):
            adj = 0.0
        if t + adj < 0.0:
            if t > 0.0:
                adj = math.ldexp(adj, -math.ceil(math.log2(-adj / t)))
                while t + adj < 0.0:
                    adj /= 2.0
            else:
                adj = 0.0
        new = t + adj
        change = abs(t - new)
        t = new
        if it > con.maxiter:
            return None
        if change <= con.threshold:
            return max(t, 0.0), it
    return None


# --------------------------------------------------------------------- meta-regression


class _WLS:
    """Weighted least squares pieces for a model matrix X (k x p) and weights w."""

    def __init__(self, x: FloatArray, y: FloatArray, w: FloatArray) -> None:
        self.x, self.w = x, w
        xtw = x.T * w
        try:
            self.a = np.linalg.inv(xtw @ x)
        except np.linalg.LinAlgError as exc:
            raise AnalysisError("rma: the model matrix is not of full rank") from exc
        self.beta = self.a @ (xtw @ y)
        self.r = y - x @ self.beta
        self.rss = float((w * self.r * self.r).sum())
        self.py = w * self.r

    def gram(self, d: FloatArray) -> FloatArray:
        return np.asarray((self.x.T * d) @ self.x)

    def tr_p(self) -> float:
        return float(self.w.sum() - np.trace(self.a @ self.gram(self.w**2)))

    def tr_pp(self) -> float:
        w = self.w
        b2 = self.a @ self.gram(w**2)
        return float((w * w).sum() - 2.0 * np.trace(self.a @ self.gram(w**3)) + np.trace(b2 @ b2))

    def tr_pv(self, v: FloatArray) -> float:
        return float((self.w * v).sum() - np.trace(self.a @ self.gram(self.w**2 * v)))

    def tr_pvpv(self, v: FloatArray) -> float:
        w = self.w
        b = self.a @ self.gram(w**2 * v)
        return float(
            (w * w * v * v).sum()
            - 2.0 * np.trace(self.a @ self.gram(w**3 * v * v))
            + np.trace(b @ b)
        )

    def tr_pvp(self, v: FloatArray) -> float:
        w = self.w
        b2 = self.a @ self.gram(w**2)
        b = self.a @ self.gram(w**2 * v)
        return float(
            (w * w * v).sum() - 2.0 * np.trace(self.a @ self.gram(w**3 * v)) + np.trace(b2 @ b)
        )


def _loglik_x(t: float, x: FloatArray, y: FloatArray, v: FloatArray, reml: bool) -> float:
    s = v + t
    fit = _WLS(x, y, 1.0 / s)
    ll = -0.5 * (float(np.log(s).sum()) + fit.rss)
    if reml:
        ll -= 0.5 * float(np.linalg.slogdet(np.linalg.inv(fit.a))[1])
    return ll


def _score_x(t: float, x: FloatArray, y: FloatArray, v: FloatArray, reml: bool) -> float:
    fit = _WLS(x, y, 1.0 / (v + t))
    ypppy = float((fit.py * fit.py).sum())
    return ypppy - (fit.tr_p() if reml else float(fit.w.sum()))


def _qgen_x(t: float, x: FloatArray, y: FloatArray, v: FloatArray) -> float:
    return _WLS(x, y, 1.0 / (v + t)).rss


def _brentq(f: Callable[[float], float], lo: float, hi: float, xrtol: float) -> float:
    from scipy.optimize import brentq

    return float(brentq(f, lo, hi, xtol=1e-300, rtol=max(xrtol, 4 * _EPS), maxiter=500))


def _tau2_x(
    x: FloatArray, y: FloatArray, v: FloatArray, method: str, con: Control
) -> tuple[float, float, bool, int, str, list[str]]:
    """tau2 for a meta-regression (one analysis), metafor's estimators with general P."""
    k, p = x.shape
    warnings: list[str] = []
    if method in ("EE", "FE"):
        return 0.0, 0.0, True, 0, CLOSED, warnings
    if method in ("DL", "HS"):
        fit = _WLS(x, y, 1.0 / v)
        if method == "DL":
            t = (fit.rss - (k - p)) / fit.tr_p()
        else:
            t = (fit.rss - k) / float(fit.w.sum())
        return max(t, 0.0), 0.0, True, 0, CLOSED, warnings
    if method == "SJ":
        tau0 = float(np.var(y)) if con.tau2_init is None else float(con.tau2_init)
        fit = _WLS(x, y, 1.0 / (v + tau0))
        return max(tau0 * fit.rss / (k - p), 0.0), tau0, True, 0, CLOSED, warnings

    def q_root(upper: float) -> float:
        target = float(k - p)
        if _qgen_x(0.0, x, y, v) < target:
            return 0.0
        if _qgen_x(upper, x, y, v) > target:
            raise AnalysisError("rma: PM root lies above tau2.max = max(100, 10 mad(yi)^2)")
        return _brentq(lambda t: _qgen_x(t, x, y, v) - target, 0.0, upper, con.xrtol)

    upper_pm = max(100.0, 10.0 * float(_mad(y)) ** 2)
    if method == "PM":
        return q_root(upper_pm), 0.0, True, 0, ROOT, warnings
    ols = _WLS(x, y, np.ones(k))
    he = (float((ols.r**2).sum()) - ols.tr_pv(v)) / (k - p)
    if method == "HE":
        return max(he, 0.0), 0.0, True, 0, CLOSED, warnings
    t = max(he, 0.0) if con.tau2_init is None else float(con.tau2_init)
    conv = False
    it = 0
    for it in range(1, con.maxiter + 2):
        fit = _WLS(x, y, 1.0 / (v + t))
        sw = float(fit.w.sum())
        if method == "EB":
            adj = (fit.rss * k / (k - p) - k) / sw
        else:
            ypppy = float((fit.py * fit.py).sum())
            if method == "ML":
                adj = (ypppy - sw) / float((fit.w**2).sum())
            else:
                adj = (ypppy - fit.tr_p()) / fit.tr_pp()
        adj *= con.stepadj
        if np.isnan(adj):
            adj = 0.0
        if t + adj < 0:
            if t <= 0:
                adj = 0.0
            else:
                while t + adj < 0:
                    adj /= 2.0
        change = abs(adj)
        t = t + adj
        if it > con.maxiter:
            break
        if change <= con.threshold:
            conv = True
            break
    algorithm = FISHER
    if not conv:
        if not con.fallback:
            raise AnalysisError("rma: Fisher scoring algorithm did not converge")
        if method == "EB":
            t = q_root(upper_pm)
            algorithm = ROOT
            what = "solved the equivalent PM equation by root finding"
        else:
            t = _fallback_x(x, y, v, method == "REML", con)
            algorithm = FALLBACK
            what = "used bounded maximisation of the likelihood"
        warnings.append(f"Fisher scoring algorithm did not converge; {what}.")
    elif method in ("ML", "REML") and con.ll0check and t > con.threshold:
        reml = method == "REML"
        if _loglik_x(0.0, x, y, v, reml) - _loglik_x(t, x, y, v, reml) > con.tol:
            t = 0.0
            warnings.append(LL0_WARNING.format(""))
    return max(t, 0.0), 0.0, conv, it, algorithm, warnings


def _fallback_x(x: FloatArray, y: FloatArray, v: FloatArray, reml: bool, con: Control) -> float:
    upper = max(100.0, 10.0 * float(np.ptp(y)) ** 2)
    grid = upper * np.concatenate([[0.0], np.geomspace(1e-12, 1.0, 161)])
    ll = np.array([_loglik_x(float(g), x, y, v, reml) for g in grid])
    best = int(np.argmax(ll))
    if best == 0 and _score_x(0.0, x, y, v, reml) <= 0:
        return 0.0
    best = max(best, 1)
    lo, hi = float(grid[best - 1]), float(grid[min(best + 1, grid.size - 1)])

    def f(t: float) -> float:
        return _score_x(t, x, y, v, reml)

    if f(lo) > 0 > f(hi):
        return _brentq(f, lo, hi, con.xrtol)
    raise AnalysisError("rma: bounded maximisation of the likelihood found no interior maximum")


def _fit_mods(
    y: FloatArray,
    v: FloatArray,
    x: FloatArray,
    *,
    terms: tuple[str, ...],
    method: str,
    test: str,
    alpha: float,
    con: Control,
) -> RMAResult:
    k, p = x.shape
    if k <= p:
        raise AnalysisError(f"rma: need more studies (k = {k}) than model coefficients (p = {p})")
    tau2, tau0, conv, iters, algorithm, warnings = _tau2_x(x, y, v, method, con)
    is_ee = method in ("EE", "FE")
    fit = _WLS(x, y, 1.0 / (v + tau2))
    vb = fit.a.copy()
    df: float | None = None
    if test == "knha":
        if is_ee:
            warnings.append(KNHA_EE_WARNING.format(method))
        s2w = 0.0 if fit.rss <= _EPS else fit.rss / (k - p)
        vb = s2w * vb
        df = float(k - p)
    se = np.sqrt(np.diag(vb))
    beta = fit.beta
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = beta / se
    crit = _crit(alpha, df)
    m = p - 1
    b1 = beta[1:]
    try:
        qm = float(b1 @ np.linalg.solve(vb[1:, 1:], b1))
    except np.linalg.LinAlgError:
        # metafor: QM is NA when vb cannot be inverted (e.g. s2w = 0 under knha)
        qm = float("nan")
        warnings.append("QM is undefined: the moderators' covariance matrix is singular.")
    if df is None:
        pval = 2.0 * ndtr(-np.abs(stat))
        qm_df: tuple[int, ...] = (m,)
        qm_p = float(chdtrc(m, qm))
    else:
        pval = 2.0 * stdtr(df, -np.abs(stat))
        qm = qm / m
        qm_df = (m, k - p)
        qm_p = float(fdtrc(m, k - p, qm))
    fe = _WLS(x, y, 1.0 / v)
    qe = max(fe.rss, 0.0)
    vt = (k - p) / fe.tr_p()
    if is_ee:
        i2 = max(0.0, 100.0 * (qe - (k - p)) / qe) if qe > 0 else 0.0
        h2 = qe / (k - p)
        r2: float | None = None
    else:
        i2 = 100.0 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1.0
        base = _fit_batch(y[None, :], v[None, :], method, test=test, alpha=alpha, con=con)
        tau2_re = float(base["tau2"][0])
        r2 = 0.0 if tau2_re == 0 else max(0.0, 100.0 * (tau2_re - tau2) / tau2_re)
    tau2_se = _tau2_se_x(method, x, y, v, tau2=tau2, tau0=tau0, fit=fit)
    return RMAResult(
        k=k,
        estimate=beta,
        se=se,
        df=df,
        ci_lb=beta - crit * se,
        ci_ub=beta + crit * se,
        tau2=tau2,
        Q=qe,
        Q_df=k - p,
        method=method,
        test=test,
        level=100.0 * (1.0 - alpha),
        converged=conv,
        iterations=iters,
        warnings=tuple(warnings),
        lazy=_Lazy(
            {
                "tau2_se": lambda: tau2_se,
                "weights": lambda: np.asarray(100.0 * fit.w / fit.w.sum()),
                "Q_pval": lambda: float(chdtrc(k - p, qe)),
                "algorithm": lambda: algorithm,
            },
            values={
                "statistic": stat,
                "pval": np.asarray(pval),
                "tau": float(np.sqrt(tau2)),
                "I2": i2,
                "H2": h2,
                "pi_lb": None,
                "pi_ub": None,
            },
        ),
        vt=vt,
        terms=terms,
        vb=np.asarray(vb, dtype=np.float64),
        QM=qm,
        QM_df=qm_df,
        QM_pval=qm_p,
        R2=r2,
    )


def _tau2_se_x(
    method: str,
    x: FloatArray,
    y: FloatArray,
    v: FloatArray,
    *,
    tau2: float,
    tau0: float,
    fit: _WLS,
) -> float | None:
    k, p = x.shape
    t = tau2
    df = float(k - p)
    if method in ("EE", "FE"):
        return None
    if method == "ML":
        return float(np.sqrt(2.0 / (fit.w**2).sum()))
    if method == "REML":
        return float(np.sqrt(2.0 / fit.tr_pp()))
    if method in ("EB", "PM"):
        return float(np.sqrt(2.0 * k * k / df / float(fit.w.sum()) ** 2))
    if method in ("DL", "HS"):
        fe = _WLS(x, y, 1.0 / v)
        var = 2.0 * df + 4.0 * t * fe.tr_p() + 2.0 * t * t * fe.tr_pp()
        denom = fe.tr_p() ** 2 if method == "DL" else float(fe.w.sum()) ** 2
        return float(np.sqrt(var / denom))
    if method == "HE":
        ols = _WLS(x, y, np.ones(k))
        var = 2.0 * ols.tr_pvpv(v) + 4.0 * t * ols.tr_pv(v) + 2.0 * t * t * df
        return float(np.sqrt(var) / df)
    sj = _WLS(x, y, 1.0 / (v + tau0))
    var = 2.0 * sj.tr_pvpv(v) + 4.0 * t * sj.tr_pvp(v) + 2.0 * t * t * sj.tr_pp()
    return float(tau0 / df * np.sqrt(var))


# --------------------------------------------------------------------------- public API


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, (tuple, _Lazy)):
        return value
    if isinstance(value, np.ndarray):
        item = value[0]
        return item.item() if isinstance(item, np.generic) else item
    return value


def rma(
    yi: ArrayLike,
    vi: ArrayLike,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    mods: ArrayLike | None = None,
    mod_names: Sequence[str] | None = None,
    control: Mapping[str, Any] | Control | None = None,
) -> RMAResult:
    """Fit the equal-, random- or mixed-effects model (metafor ``rma.uni``).

    ``yi``, ``vi``: effect sizes and sampling variances, 1-D (one analysis) or 2-D
    (analyses x studies, intercept-only models only). ``mods``: an n x p moderator matrix
    (1-D for one moderator); an intercept is added. ``mod_names`` name its columns.
    ``control``: see :class:`Control`. Raises :class:`~cosmo_runner.errors.AnalysisError`
    on invalid input or a numerical failure.
    """
    m = _canonical_method(method)
    if test not in TESTS:
        raise AnalysisError(f"rma: unknown test {test!r} (one of {', '.join(TESTS)})")
    alpha = _alpha(level)
    con = Control.from_mapping(control)
    try:
        y = np.asarray(yi, dtype=np.float64)
        v = np.asarray(vi, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError("rma: yi and vi must be numeric") from exc
    # intercept-only fits check the values in their first pass (_EE.of, _fit_single)
    _check_data(y, v, values=mods is not None)
    if mods is not None:
        if y.ndim != 1:
            raise AnalysisError("rma: moderators are supported for one analysis (1-D yi) only")
        try:
            xm = np.asarray(mods, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise AnalysisError("rma: moderators must be numeric") from exc
        if xm.ndim == 1:
            xm = xm[:, None]
        if xm.ndim != 2 or xm.shape[0] != y.shape[0]:
            raise AnalysisError(
                f"rma: moderator matrix has {xm.shape[0]} rows for {y.shape[0]} studies "
                "(mismatched lengths)"
            )
        if not np.isfinite(xm).all():
            raise AnalysisError("rma: moderators contain missing or non-finite values")
        names = (
            tuple(mod_names)
            if mod_names is not None
            else tuple(f"mod{j + 1}" for j in range(xm.shape[1]))
        )
        if len(names) != xm.shape[1]:
            raise AnalysisError("rma: mod_names does not match the moderator columns")
        x = np.column_stack([np.ones(y.shape[0]), xm])
        return _fit_mods(
            y, v, x, terms=("intrcpt", *names), method=m, test=test, alpha=alpha, con=con
        )
    single = y.ndim == 1
    level_pct = 100.0 * (1.0 - alpha)
    if single:
        fast = _fit_single(y, v, m, test=test, alpha=alpha, con=con)
        if fast is not None:
            return RMAResult._make(method=m, test=test, level=level_pct, **fast)
    y2 = y[None, :] if single else np.ascontiguousarray(y)
    v2 = v[None, :] if single else np.ascontiguousarray(v)
    out = _fit_batch(y2, v2, m, test=test, alpha=alpha, con=con)
    if single:
        out["lazy"].single = True
        # one conversion for all the (1,)-shaped float arrays, then the rest one by one
        keys = [key for key, val in out.items() if isinstance(val, np.ndarray)]
        floats = [key for key in keys if out[key].dtype == np.float64]
        values = np.concatenate([out[key] for key in floats]).tolist()
        out.update(zip(floats, values, strict=True))
        out.update((key, _scalar(out[key])) for key in keys if key not in floats)
    return RMAResult(method=m, test=test, level=level_pct, **out)
