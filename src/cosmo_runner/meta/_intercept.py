"""Intercept-only models: the tau2 estimators and the fit, for a batch of analyses at once
(:func:`_fit_batch`, row-wise numpy) and for one analysis (:func:`_fit_single`, scalar
arithmetic, the fast path). The estimators and references are listed in
:mod:`cosmo_runner.meta.rma`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import chdtrc, ndtr, stdtr

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._model import (
    _CODE,
    _EPS,
    _GLOBAL_FRACS,
    ALGORITHMS,
    CLOSED,
    FALLBACK,
    FISHER,
    KNHA_EE_WARNING,
    LL0_WARNING,
    MULTIMODAL_WARNING,
    ROOT,
    VARRATIO_LIMIT,
    VARRATIO_WARNING,
    Control,
    FloatArray,
    _Lazy,
)
from cosmo_runner.meta._rowwise import (
    _SMALL_DOT,
    _TRP_CANCEL,
    _add,
    _bad_values,
    _crit_cached,
    _dot_long,
    _gls,
    _inv_plus,
    _loglik,
    _loglik_grid,
    _mad,
    _rdot,
    _roots,
    _rows_note,
    _rsum,
    _score,
    _scratch,
    _solve_q,
    _sum_long,
    _trace_p,
)


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
    wratio: float  # max(sum w) / min(w) over all rows: bounds each row's vi ratio

    @classmethod
    def of(cls, y: FloatArray, v: FloatArray) -> _EE:
        """The equal-effects fit of every row, and the value checks of :func:`_check_data`.

        Valid during the call only: ``w`` is a scratch buffer. ``Q`` comes from the sums
        ``sum w y^2 - mu sum w y`` (one pass fewer than residuals); its rounding error is
        about ``eps sum w y^2``, so a row where ``sum w y^2 > _Q_CANCEL * Q`` (relative error
        above ~1e-13; also ``Q`` near 0, identical effects) is recomputed from residuals.
        Sums that overflow (huge ``|yi|``, subnormal ``vi``) are an error, never a NaN.
        """
        shape = y.shape
        with np.errstate(all="ignore"):  # bad values are named below, not warned about
            w = np.divide(1.0, v, out=_scratch("ee.w", shape))
            wmin = float(np.minimum.reduce(w, axis=None))
            sw = _rsum(w)
            wy = np.multiply(w, y, out=_scratch("ee.wy", shape))
            swy = _rsum(wy)
            mu = swy / sw
            # min(w) > 0 rules out NaN, negative, -0.0 and +inf variances; a zero or
            # subnormal vi has an infinite weight and, like a non-finite yi, makes mu + sw
            # non-finite
            if not wmin > 0 or not np.isfinite(mu + sw).all():
                _bad_values(y, v)
            swyy = _rdot(wy, y)
            q = swyy - mu * swy
            sw2 = _rdot(w, w)
            redo = np.flatnonzero(~(q * _Q_CANCEL >= swyy))  # NaN (inf - inf) too
            if redo.size:
                ws, r = w[redo], y[redo] - mu[redo, None]
                q[redo] = _rdot(ws * r, r)
            if not np.isfinite(q + sw2).all():  # sum w y^2 or sum w^2 overflowed
                _bad_values(y, v)
        q = np.maximum(q, 0.0)
        trp = _trace_p(w, sw, sw2)
        # max(w) <= max(sum w): a bound on every row's vi ratio without another pass
        return cls(w=w, sw=sw, sw2=sw2, mu=mu, q=q, trp=trp, wratio=float(np.max(sw)) / wmin)


#: :meth:`_EE.of` recomputes Q from residuals where ``sum w y^2 > _Q_CANCEL * Q``.
_Q_CANCEL = 1e2


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


def _fit_batch(
    y: FloatArray, v: FloatArray, method: str, *, test: str, alpha: float, con: Control
) -> dict[str, Any]:
    """The intercept-only fit for every row of (analyses x studies) arrays.

    ``tau2_se`` and ``weights`` are returned as zero-argument callables (computed on demand).
    """
    n, k = y.shape
    ee = _EE.of(y, v)
    tau2, tau0, conv, iters, algorithm, warnings = _tau2_batch(y, v, ee, method, con)
    if ee.wratio >= VARRATIO_LIMIT:  # some row may reach metafor's limit: check each
        extreme = np.max(v, axis=1) / np.min(v, axis=1) >= VARRATIO_LIMIT
        if extreme.any():
            warnings.insert(0, VARRATIO_WARNING[:-1] + _rows_note(extreme, n) + ".")
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
                return np.where(q > 0, np.maximum(0.0, 100.0 * ((q - (k - 1)) / q)), 0.0)
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


#: Closed-form estimators: no Fisher scoring or root finding, so no batch machinery needed.
_CLOSED_FORM = frozenset({"EE", "FE", "DL", "HS", "HE", "SJ"})


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
        wmin = float(np.minimum.reduce(w0))
        if not wmin > 0:
            _bad_values(y, v)
        sw0 = float(add(w0))
        wy = np.multiply(w0, y)
        swy = float(add(wy))
        mu0 = swy / sw0  # sw0 > 0
        if not math.isfinite(mu0 + sw0):  # yi not finite, or the sums overflowed
            _bad_values(y, v)
        swyy = float(dot(wy, y))
        q = swyy - mu0 * swy
        if not q * _Q_CANCEL >= swyy:  # cancellation (or inf - inf): Q from residuals
            r0 = np.subtract(y, mu0, out=wy)
            q = float(dot(w0, np.square(r0, out=r0)))
        sw0_2 = float(dot(w0, w0))
        if not math.isfinite(q + sw0_2):
            _bad_values(y, v)
    q = max(q, 0.0)
    trp = sw0 - sw0_2 / sw0
    if not trp * _TRP_CANCEL >= sw0:  # one dominant weight: recompute without cancellation
        trp = float(_trace_p(w0[None, :], np.array([sw0]), np.array([sw0_2]))[0])
    vt = (k - 1) / trp
    warnings: list[str] = []
    # max(w) <= sum w: the exact ratio only when the bound reaches metafor's limit
    if sw0 / wmin >= VARRATIO_LIMIT and float(np.maximum.reduce(w0)) / wmin >= VARRATIO_LIMIT:
        warnings.append(VARRATIO_WARNING)
    tau0 = 0.0
    code = _CODE[CLOSED]
    conv, iters = True, 0
    if method in ("EE", "FE"):
        tau2 = 0.0
    elif method == "DL":
        tau2 = max((q - (k - 1)) / trp, 0.0)
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
        i2 = max(0.0, 100.0 * ((q - (k - 1)) / q)) if q > 0 else 0.0
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
