"""An independent (restricted) log-likelihood of the intercept-only model, for tests that
check a fit reached a maximum (plain numpy, none of the engine's kernels)."""

from __future__ import annotations

import numpy as np


def loglik(tau2: float, yi: object, vi: object, reml: bool = True) -> float:
    """-1/2 (sum log(v + tau2) + Q(tau2) [+ log sum w]) for one analysis (constant dropped)."""
    y = np.asarray(yi, dtype=float)
    s = np.asarray(vi, dtype=float) + tau2
    w = 1.0 / s
    mu = float((w * y).sum() / w.sum())
    ll = -0.5 * (float(np.log(s).sum()) + float((w * (y - mu) ** 2).sum()))
    return ll - 0.5 * float(np.log(w.sum())) if reml else ll
