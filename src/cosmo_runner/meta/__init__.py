"""Meta-analysis: effect sizes, estimators, the model fit and its diagnostics (metafor semantics).

Importing this package imports numpy and scipy (``import cosmo_runner`` alone does not);
plotting lives in :mod:`cosmo_runner.meta.plots` and is not imported here.
"""

from cosmo_runner.meta.analysis import RESULT_KEYS, analyse
from cosmo_runner.meta.diagnostics import confint_tau2, leave1out, regtest, subgroups
from cosmo_runner.meta.effects import EffectSizes, escalc
from cosmo_runner.meta.fit import (
    ALGORITHMS,
    METHODS,
    TESTS,
    Control,
    RMAResult,
    alpha_for_level,
    rma,
)

__all__ = [
    "ALGORITHMS",
    "METHODS",
    "RESULT_KEYS",
    "TESTS",
    "Control",
    "EffectSizes",
    "RMAResult",
    "alpha_for_level",
    "analyse",
    "confint_tau2",
    "escalc",
    "leave1out",
    "regtest",
    "rma",
    "subgroups",
]
