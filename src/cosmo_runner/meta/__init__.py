"""Meta-analysis: effect sizes, estimators, the model fit and its diagnostics (metafor semantics)."""

from cosmo_runner.meta.effects import EffectSizes, escalc
from cosmo_runner.meta.rma import Control, RMAResult, rma

__all__ = ["Control", "EffectSizes", "RMAResult", "escalc", "rma"]
