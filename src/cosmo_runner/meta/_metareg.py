"""Mixed-effects meta-regression (metafor's ``rma.uni`` with ``mods``; Viechtbauer 2005,
Raudenbush 2009): the data with its model matrix X for the decision layer
(:class:`Regression`), then weighted least squares for the coefficients, the coefficient
table, the omnibus test QM (F with the t tests: t, knha, adhoc), residual heterogeneity QE
and pseudo-R2.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import chdtrc, fdtrc, ndtr, stdtr

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._decisions import (
    VARRATIO_LIMIT,
    heterogeneity,
    knha_warning,
    reference_df,
    variance_factor,
    variance_warning,
)
from cosmo_runner.meta._estimators import Estimator
from cosmo_runner.meta._intercept import FixedEffects, fit_rows
from cosmo_runner.meta._kernels import crit, mad
from cosmo_runner.meta._result import ALGORITHMS, Control, FloatArray, Lazy, RMAResult

__all__ = ["Regression", "fit_regression", "omnibus"]


class WLS:
    """Weighted least squares pieces for a model matrix X (k x p), weights w and V."""

    def __init__(
        self, x: FloatArray, xx: FloatArray, y: FloatArray, v: FloatArray, w: FloatArray
    ) -> None:
        self.x, self.xx, self.v, self.w = x, xx, v, w
        self.xtwx = self._gram(w)
        if not np.isfinite(self.xtwx).all():
            raise OverflowError("X'WX is not finite")  # rma names the precision problem
        try:
            self.a: FloatArray = np.asarray(np.linalg.inv(self.xtwx), dtype=np.float64)
        except np.linalg.LinAlgError as exc:
            raise AnalysisError("rma: the model matrix is not of full rank") from exc
        self.beta = self.a @ ((w * y) @ x)
        self.r = y - x @ self.beta
        self.rss = float((w * self.r * self.r).sum())
        self.py = w * self.r

    def _gram(self, d: FloatArray) -> FloatArray:
        """``X' D X`` as one matrix-vector product with the column products ``xx``."""
        p = self.x.shape[1]
        return np.asarray((d @ self.xx).reshape(p, p))

    def _tr(self, d: FloatArray) -> float:
        """``tr((X'WX)^-1 X' D X)``"""
        return float(np.trace(self._b(d)))

    def _b(self, d: FloatArray) -> FloatArray:
        return np.asarray(self.a @ self._gram(d))

    @cached_property
    def _b2(self) -> FloatArray:  # (X'WX)^-1 X'W^2X, used by tr P, tr PP and tr PVP
        return self._b(self.w**2)

    @cached_property
    def sw(self) -> float:
        return float(self.w.sum())

    @cached_property
    def sw2(self) -> float:
        return float((self.w**2).sum())

    @cached_property
    def ypppy(self) -> float:
        return float((self.py * self.py).sum())

    @cached_property
    def trp(self) -> float:
        return self.sw - float(np.trace(self._b2))

    @cached_property
    def trpp(self) -> float:
        b2 = self._b2
        return self.sw2 - 2.0 * self._tr(self.w**3) + float(np.trace(b2 @ b2))

    def trpv(self) -> float:
        return float((self.w * self.v).sum()) - self._tr(self.w**2 * self.v)

    def trpvpv(self) -> float:
        w, v = self.w, self.v
        b = self._b(w**2 * v)
        return float((w * w * v * v).sum()) - 2.0 * self._tr(w**3 * v * v) + float(np.trace(b @ b))

    def trpvp(self) -> float:
        w, v = self.w, self.v
        b2, b = self._b2, self._b(w**2 * v)
        return float((w * w * v).sum()) - 2.0 * self._tr(w**3 * v) + float(np.trace(b2 @ b))

    def loglik(self, reml: bool) -> float:
        ll = -0.5 * (float(np.log(1.0 / self.w).sum()) + self.rss)
        if reml:
            ll -= 0.5 * float(np.linalg.slogdet(self.xtwx)[1])
        return ll


class RegressionAt:
    """The meta-regression at one tau2 per row (every row is the same analysis)."""

    def __init__(self, fits: list[WLS]) -> None:
        self.fits = fits

    def _each(self, name: str) -> FloatArray:
        return np.array([getattr(f, name) for f in self.fits], dtype=np.float64)

    def _call(self, name: str, *args: Any) -> FloatArray:
        return np.array([getattr(f, name)(*args) for f in self.fits], dtype=np.float64)

    sw = property(lambda self: self._each("sw"))
    sw2 = property(lambda self: self._each("sw2"))
    rss = property(lambda self: self._each("rss"))
    ypppy = property(lambda self: self._each("ypppy"))
    trp = property(lambda self: self._each("trp"))
    trpp = property(lambda self: self._each("trpp"))

    def trpv(self) -> FloatArray:
        return self._call("trpv")

    def trpvp(self) -> FloatArray:
        return self._call("trpvp")

    def trpvpv(self) -> FloatArray:
        return self._call("trpvpv")

    def loglik(self, reml: bool) -> FloatArray:
        return self._call("loglik", reml)


class Regression:
    """One meta-regression seen as ``n`` identical rows by the decision layer (see
    :class:`~._decisions.Problem`): the layer subsets and repeats rows, the data stay."""

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        v: FloatArray,
        n: int = 1,
        xx: FloatArray | None = None,
    ) -> None:
        self.x, self.y, self.v = x, y, v
        self.n = n
        self.k, self.p = x.shape
        # the products of every pair of columns, so that X'DX is one matrix-vector product
        self.xx = np.einsum("ki,kj->kij", x, x).reshape(self.k, -1) if xx is None else xx

    def wls(self, w: FloatArray) -> WLS:
        return WLS(self.x, self.xx, self.y, self.v, w)

    @cached_property
    def _fixed(self) -> WLS:
        return self.wls(1.0 / self.v)

    def _rows(self, value: float) -> FloatArray:
        return np.full(self.n, value)

    def fixed(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        fe = self._fixed
        return self._rows(max(fe.rss, 0.0)), self._rows(fe.sw), self._rows(fe.trp)

    def at(self, tau2: FloatArray) -> RegressionAt:
        return RegressionAt([self.wls(1.0 / (self.v + t)) for t in np.asarray(tau2).tolist()])

    def unweighted(self) -> RegressionAt:
        return RegressionAt([self.wls(np.ones(self.k))] * self.n)

    def var_y(self) -> FloatArray:
        return self._rows(float(np.var(self.y)))

    def spread(self) -> tuple[FloatArray, FloatArray]:
        return self._rows(float(mad(self.y))), self._rows(float(np.ptp(self.y)))

    def take(self, rows: NDArray[np.intp]) -> Regression:
        return Regression(self.x, self.y, self.v, n=int(np.asarray(rows).size), xx=self.xx)

    def loglik_grid(self, grid: FloatArray, reml: bool) -> FloatArray:
        return np.array([self.at(row).loglik(reml) for row in grid])

    def extreme_variances(self) -> NDArray[np.bool_]:
        ratio = float(self.v.max()) / float(self.v.min())
        return np.full(self.n, ratio >= VARRATIO_LIMIT)


def fit_regression(
    y: FloatArray,
    v: FloatArray,
    x: FloatArray,
    *,
    terms: tuple[str, ...],
    method: str,
    unit: Estimator,
    test: str,
    alpha: float,
    con: Control,
) -> RMAResult:
    """The mixed-effects model with model matrix ``x`` (its first column the intercept)."""
    k, p = x.shape
    FixedEffects.of(y[None, :], v[None, :])  # names bad values and overflowing sums
    if k <= p:
        raise AnalysisError(f"rma: need more studies (k = {k}) than model coefficients (p = {p})")
    problem = Regression(x, y, v)
    tfit = unit.fit(problem, con)
    tau2, tau0 = float(tfit.tau2[0]), float(tfit.tau0[0])
    warnings = [w for w in [variance_warning(problem.extreme_variances())] if w]
    warnings += tfit.warnings
    fit = problem.wls(1.0 / (v + tau2))
    vb = fit.a.copy()
    df = reference_df(test, k, p)
    warnings += [w for w in [knha_warning(method, test)] if w]
    factor = variance_factor(test, np.array(fit.rss), float(k - p))
    if factor is not None:
        vb = float(factor) * vb
    se = np.sqrt(np.diag(vb))
    beta = fit.beta
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = beta / se
    pval = 2.0 * (ndtr(-np.abs(stat)) if df is None else stdtr(df, -np.abs(stat)))
    qm, qm_df, qm_p, note = omnibus(beta, vb, df, range(1, p))
    warnings += [note] if note else []
    qe, _, trp_fe = (float(a[0]) for a in problem.fixed())
    vt = (k - p) / trp_fe
    i2, h2 = (
        float(a)
        for a in heterogeneity(
            unit.equal_effects, np.array(qe), k - p, np.array(tau2), np.array(vt)
        )
    )

    def r2() -> float | None:  # on first access: the pseudo-R2 refits the intercept-only model
        if p == 1:
            return None
        if unit.equal_effects:
            return _ee_r2(y, v, qe, p)
        return _pseudo_r2(y, v, method=method, unit=unit, tau2=tau2, con=con)

    half = crit(alpha, df) * se
    tau2_se = unit.se(problem, np.array([tau2]), np.array([tau0]))
    return RMAResult(
        k=k,
        estimate=beta,
        se=se,
        df=df,
        ci_lb=beta - half,
        ci_ub=beta + half,
        tau2=tau2,
        Q=qe,
        Q_df=k - p,
        method=method,
        test=test,
        level=100.0 * (1.0 - alpha),
        converged=bool(tfit.converged[0]),
        iterations=int(tfit.iterations[0]),
        warnings=tuple(warnings),
        lazy=Lazy(
            {
                "tau2_se": lambda: None if tau2_se is None else float(tau2_se[0]),
                "weights": lambda: np.asarray(100.0 * fit.w / fit.w.sum()),
                "Q_pval": lambda: float(chdtrc(k - p, qe)),
                "algorithm": lambda: ALGORITHMS[int(tfit.algorithm[0])],
                "R2": r2,
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
    )


def omnibus(
    beta: FloatArray, vb: FloatArray, df: float | None, btt: Iterable[int]
) -> tuple[float | None, tuple[int, ...] | None, float | None, str | None]:
    """QM, the Wald test that the coefficients ``btt`` (metafor's ``btt``; by default every
    one but the intercept) are all 0: chi-square with ``m = len(btt)`` df, or ``QM / m`` as
    F(m, df) when the test has residual df (t, knha, adhoc): statistic, df, p-value and a warning
    (None when there is nothing to say). All None for an empty ``btt``."""
    index = np.asarray(list(btt), dtype=np.intp)
    m = int(index.size)
    if m == 0:
        return None, None, None, None
    b1 = beta[index]
    note = None
    try:
        qm = float(b1 @ np.linalg.solve(vb[np.ix_(index, index)], b1))
    except np.linalg.LinAlgError:
        # metafor: QM is NA when vb cannot be inverted (e.g. s2w = 0 under knha)
        qm = float("nan")
        note = "QM is undefined: the moderators' covariance matrix is singular."
    if df is None:
        return qm, (m,), float(chdtrc(m, qm)), note
    return qm / m, (m, int(df)), float(fdtrc(m, int(df), qm / m)), note


def _ee_r2(y: FloatArray, v: FloatArray, qe: float, p: int) -> float:
    """R2 of an equal-effects meta-regression as metafor 3.8 reports it: the adjusted R2 of
    the weighted least-squares regression ``lm(yi ~ X, weights = 1/vi)`` in percent,
    ``max(0, 100 (1 - (QE / Q0) (k - 1) / (k - p)))`` with ``Q0`` the intercept-only
    model's Q (the weighted total sum of squares); 0 when every ``yi`` is the same."""
    k = int(y.shape[0])
    w = 1.0 / v
    q0 = float((w * (y - float((w * y).sum() / w.sum())) ** 2).sum())
    if float(np.var(y)) == 0.0 or q0 == 0.0:
        return 0.0
    return max(0.0, 100.0 * (1.0 - (qe / q0) * float(k - 1) / float(k - p)))


def _pseudo_r2(
    y: FloatArray, v: FloatArray, *, method: str, unit: Estimator, tau2: float, con: Control
) -> float:
    """Raudenbush (2009): the share of the intercept-only model's tau2 the moderators
    account for, ``max(0, 100 (tau2_RE - tau2) / tau2_RE)`` (0 where tau2_RE = 0)."""
    base = fit_rows(y[None, :], v[None, :], method, unit, test="z", alpha=0.05, con=con)
    tau2_re = float(base["tau2"][0])
    return 0.0 if tau2_re == 0 else max(0.0, 100.0 * (tau2_re - tau2) / tau2_re)
