"""What an analysis computes once and hands on: influence reuses the model and its
leave-one-out refits, trim-and-fill with k0 = 0 the model. The values are exactly those
computed afresh, and an analysis hands on the fit of its own method, test, level and
control (a wrong one would change the values below)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cosmo_runner.meta import analyse, rma
from cosmo_runner.meta.diagnostics import leave1out
from cosmo_runner.meta.influence import influence
from cosmo_runner.meta.pubbias import trimfill

_RNG = np.random.default_rng(1412)
_VI = _RNG.uniform(0.01, 0.3, 12)
YI = _RNG.normal(0.3, np.sqrt(_VI + 0.08))
VI = _VI

FITS = [
    ("REML", "z", None, 95),
    ("ML", "knha", {"threshold": 1e-5, "maxiter": 100}, 90),
    ("DL", "adhoc", None, 95),
    ("EE", "t", None, 80),
    ("PM", "z", None, 99),
    ("REML", "t", {"maxiter": 1}, 95),  # the fallback, and its warning in every refit
]
INFLUENCE = ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "QE_del", "hat", "weight",
             "dfbetas", "influential")  # fmt: skip


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


@pytest.mark.parametrize(("method", "test", "control", "level"), FITS)
def test_influence_with_the_model_and_its_refits_is_influence_afresh(
    method: str, test: str, control: dict[str, Any] | None, level: float
) -> None:
    fit = {"method": method, "test": test, "control": control, "level": level}
    afresh = influence(YI, VI, **fit)
    reused = influence(YI, VI, fit=rma(YI, VI, **fit), refits=leave1out(YI, VI, **fit), **fit)
    assert reused.warnings == afresh.warnings
    for name in INFLUENCE:
        np.testing.assert_array_equal(getattr(reused, name), getattr(afresh, name), name)


@pytest.mark.parametrize(("method", "test", "control", "level"), FITS)
def test_an_analysis_hands_on_its_own_model(
    method: str, test: str, control: dict[str, Any] | None, level: float
) -> None:
    spec: dict[str, Any] = {
        "id": "a", "input": "d", "measure": "GEN", "method": method, "test": test,
        "level": level, "columns": {"yi": "yi", "vi": "vi", "study": "study"},
        "trimfill": {"side": "left"},
    }  # fmt: skip
    if control is not None:
        spec["control"] = control
    table = {
        "study": [f"s{i}" for i in range(YI.size)],
        "yi": [repr(float(y)) for y in YI],
        "vi": [repr(float(v)) for v in VI],
    }
    res = analyse(spec, table)
    fit = {"method": method, "test": test, "control": control, "level": level}
    ref = influence(YI, VI, **fit)
    for i, row in enumerate(res["influence"]):
        for name in INFLUENCE:
            value = getattr(ref, name)[i]
            assert row[name] == (bool(value) if name == "influential" else _num(value)), name
    tf = trimfill(YI, VI, side="left", **fit)
    assert res["trimfill"]["k0"] == tf.k0
    for name in ("estimate", "se", "ci_lb", "ci_ub", "tau2"):
        assert res["trimfill"][name] == _num(getattr(tf.fit, name)), name


@pytest.mark.parametrize("side", ["left", "right"])
def test_trimfill_with_the_model_is_trimfill_afresh(side: str) -> None:
    # one side fills nothing here (k0 = 0: the model itself), the other fills studies
    model = rma(YI, VI, method="REML")
    afresh = trimfill(YI, VI, side=side)
    reused = trimfill(YI, VI, side=side, fit=model)
    assert (reused.k0, reused.se_k0, reused.side) == (afresh.k0, afresh.se_k0, afresh.side)
    np.testing.assert_array_equal(reused.filled_yi, afresh.filled_yi)
    for name in ("estimate", "se", "ci_lb", "ci_ub", "tau2", "Q", "warnings"):
        assert getattr(reused.fit, name) == getattr(afresh.fit, name), name
    assert (reused.fit is model) == (afresh.k0 == 0)


def test_both_trimfill_sides_are_exercised() -> None:
    assert {trimfill(YI, VI, side=s).k0 == 0 for s in ("left", "right")} == {True, False}
