"""Meta-analysis: effect sizes, estimators, the model fit and its diagnostics (metafor semantics).

The package is lazy (PEP 562): importing it, or one of its light modules such as the measure
table :mod:`cosmo_runner.meta.measures` that the ``effect_table`` validator reads, imports
neither scipy nor the fit. A name below is imported from its module on first access
(``from cosmo_runner.meta import rma`` imports :mod:`cosmo_runner.meta.fit`, numpy and scipy
then). Plotting lives in :mod:`cosmo_runner.meta.plots` and is not exported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Each public name (``__all__``, spelled out for type checkers) and the module defining it.
_EXPORTS: dict[str, str] = {
    "RESULT_KEYS": "analysis",
    "analyse": "analysis",
    "confint_tau2": "diagnostics",
    "leave1out": "diagnostics",
    "regtest": "diagnostics",
    "subgroups": "diagnostics",
    "EffectSizes": "effects",
    "escalc": "effects",
    "ALGORITHMS": "fit",
    "METHODS": "fit",
    "TESTS": "fit",
    "Control": "fit",
    "RMAResult": "fit",
    "alpha_for_level": "fit",
    "rma": "fit",
}

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


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
