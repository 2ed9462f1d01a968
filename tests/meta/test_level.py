"""`level` as metafor reads it: >= 1 a percentage, (0.5, 1) a coverage, <= 0.5 an alpha."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import alpha_for_level, confint_tau2, rma

YI = np.array([-0.89, -1.59, -1.35, -1.44, -0.22, -0.79, -1.62, 0.01, -0.47, -1.37])
VI = np.array([0.33, 0.19, 0.42, 0.02, 0.05, 0.01, 0.22, 0.01, 0.06, 0.27])


@pytest.mark.parametrize(
    ("level", "alpha"),
    [
        (95, 0.05),
        (99.9, 0.001),
        (50, 0.5),
        (1, 0.99),  # metafor: a 1% interval, not an error
        (1.0, 0.99),
        (0.95, 0.05),  # a coverage
        (0.51, 0.49),
        (0.5, 0.5),  # an alpha from here down
        (0.05, 0.05),  # metafor: a 95% interval
        (0.01, 0.01),
        (1e-9, 1e-9),
    ],
)
def test_alpha_follows_metafor(level: float, alpha: float) -> None:
    assert alpha_for_level(level) == pytest.approx(alpha, rel=1e-12)


@pytest.mark.parametrize("level", [0, -1, 100, 100.0001, 1e300, math.nan, math.inf, -math.inf])
def test_levels_outside_0_100_are_errors(level: float) -> None:
    with pytest.raises(AnalysisError, match=r"rma: level must be in \(0, 100\), got "):
        alpha_for_level(level)
    with pytest.raises(AnalysisError):
        rma(YI, VI, level=level)


@pytest.mark.parametrize("method", ["DL", "REML"])
@pytest.mark.parametrize(("same", "as_percent"), [(0.05, 95), (0.95, 95), (0.1, 90), (1, 1)])
def test_every_spelling_of_a_level_gives_one_fit(
    method: str, same: float, as_percent: float
) -> None:
    a = rma(YI, VI, method=method, level=same)
    b = rma(YI, VI, method=method, level=as_percent)
    # 0.95 -> 1 - 0.95 is one ulp off 0.05 (in R too); the alpha spellings are exact
    rel = 1e-13 if 0.5 < same < 1 else 0.0
    assert [a.ci_lb, a.ci_ub, a.pi_lb, a.pi_ub] == pytest.approx(
        [b.ci_lb, b.ci_ub, b.pi_lb, b.pi_ub], rel=rel, abs=0.0
    )
    assert a.level == b.level == pytest.approx(as_percent, rel=1e-12)  # recorded as a percentage


def test_a_1_percent_interval_has_the_width_metafor_gives() -> None:
    fit = rma(YI, VI, method="DL", level=1)
    half = float(norm.ppf(0.5 + 0.01 / 2))
    assert fit.ci_ub - fit.ci_lb == pytest.approx(2 * half * fit.se, rel=1e-10)


def test_the_q_profile_interval_reads_level_the_same_way() -> None:
    a = confint_tau2(YI, VI, method="REML", level=0.05)
    b = confint_tau2(YI, VI, method="REML", level=95)
    assert (a.tau2_lb, a.tau2_ub, a.level) == (b.tau2_lb, b.tau2_ub, b.level)
    assert b.level == 95.0
