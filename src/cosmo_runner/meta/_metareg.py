"""Mixed-effects meta-regression (metafor's ``rma.uni`` with ``mods``; Viechtbauer 2005,
Raudenbush 2009): weighted least squares for the coefficients, tau2 by the same estimators
as the intercept-only model (generalised to ``k - p``), the coefficient table, the omnibus
test QM (F with knha), residual heterogeneity QE and pseudo-R2.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import chdtrc, fdtrc, ndtr, stdtr

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._intercept import _EE, _fit_batch
from cosmo_runner.meta._model import (
    _EPS,
    CLOSED,
    FALLBACK,
    FISHER,
    KNHA_EE_WARNING,
    LL0_WARNING,
    ROOT,
    VARRATIO_LIMIT,
    VARRATIO_WARNING,
    Control,
    FloatArray,
    RMAResult,
    _Lazy,
)
from cosmo_runner.meta._rowwise import _crit, _mad


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
        q0, qu = _qgen_x(0.0, x, y, v), _qgen_x(upper, x, y, v)
        if not np.isfinite([q0, qu]).all():
            raise OverflowError("generalised Q is not finite")  # rma names the problem
        if q0 < target:
            return 0.0
        if qu > target:
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


def _fit_mods(y: FloatArray, v: FloatArray, x: FloatArray, **options: Any) -> RMAResult:
    """:func:`_fit_mods_core` after the intercept-only first pass over ``yi`` and ``vi``,
    whose checks name bad values and overflowing sums (``rma`` checks the result)."""
    _EE.of(y[None, :], v[None, :])
    return _fit_mods_core(y, v, x, **options)


def _fit_mods_core(
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
    if float(v.max()) / float(v.min()) >= VARRATIO_LIMIT:
        warnings.insert(0, VARRATIO_WARNING)
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
        i2 = max(0.0, 100.0 * ((qe - (k - p)) / qe)) if qe > 0 else 0.0
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
