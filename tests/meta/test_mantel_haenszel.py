"""Mantel-Haenszel and Peto pooling against metafor 3.8 (rma.mh, rma.peto).

Fixtures: tests/fixtures/metafor/stats/mh_peto.json, from scripts/metafor/make_fixtures_stats.R.
Tolerance rtol 1e-10: closed forms, the same arithmetic (only the summation order differs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.mantel_haenszel import MEASURES_BY_METHOD, pool_tables

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "metafor" / "stats" / "mh_peto.json"
FX: dict[str, Any] = json.loads(FIXTURE.read_text())
CASES = {case["id"]: case for case in FX["cases"]}
RTOL = 1e-10


def _close(ours: Any, theirs: Any, what: str) -> None:
    ours_a = np.asarray(ours, dtype=float)
    theirs_a = np.asarray([np.nan if t is None else t for t in np.atleast_1d(theirs)], float)
    np.testing.assert_allclose(
        np.atleast_1d(ours_a), theirs_a, rtol=RTOL, atol=1e-14, err_msg=what, equal_nan=True
    )


def _pool(case: dict[str, Any]) -> Any:
    t = FX["tables"][case["dataset"]]
    return pool_tables(
        t["ai"], t["bi"], t["ci"], t["di"], method=case["method"], measure=case["measure"],
        level=case["level"], drop00=case["drop00"],
    )  # fmt: skip


def test_fixture_records_versions() -> None:
    assert FX["metafor_version"].startswith("3.8")
    assert FX["generated_by"] == "scripts/metafor/make_fixtures_stats.R"


def test_fixture_covers_every_method_measure_level_and_drop00() -> None:
    combos = {(c["method"], c["measure"], c["level"], c["drop00"]) for c in FX["cases"]}
    for method, measures in MEASURES_BY_METHOD.items():
        for measure in measures:
            for level in (95, 90):
                assert (method, measure, level, True) in combos
            assert (method, measure, 95, False) in combos
    # zero cells, double zeros and undefined estimates are all represented
    assert {"nielweise2007", "yusuf1985", "noevents1", "alldoublezero", "onetable"} <= set(
        FX["tables"]
    )


DEFINED = [cid for cid, c in CASES.items() if "error" not in c and c["fit"]["se"] not in (None, 0)]
UNDEFINED = [cid for cid in CASES if cid not in DEFINED]


@pytest.mark.parametrize("case_id", DEFINED)
def test_against_metafor(case_id: str) -> None:
    case = CASES[case_id]
    fit = case["fit"]
    res = _pool(case)
    for ours, key in (
        (res.estimate, "b"), (res.se, "se"), (res.statistic, "zval"), (res.pval, "pval"),
        (res.ci_lb, "ci_lb"), (res.ci_ub, "ci_ub"), (res.Q, "QE"), (res.Q_pval, "QEp"),
        (res.I2, "I2"), (res.H2, "H2"), (res.tau2, "tau2"), (res.weights, "weights"),
    ):  # fmt: skip
        _close(ours, fit[key], f"{case_id}: {key}")
    assert res.k == fit["k"]
    assert res.k_yi == fit["k_yi"]
    assert res.Q_df == max(fit["k_yi"] - 1, 0)
    # the individual outcomes behind Q (metafor keeps only those that exist)
    have = np.isfinite(res.yi)
    _close(res.yi[have], fit["yi"], f"{case_id}: yi")
    _close(res.vi[have], fit["vi"], f"{case_id}: vi")
    if "transformed" in case:
        _close(np.exp(res.estimate), case["transformed"]["pred"], f"{case_id}: exp(b)")


@pytest.mark.parametrize("case_id", UNDEFINED)
def test_undefined_estimates_are_errors_saying_why(case_id: str) -> None:
    case = CASES[case_id]
    with pytest.raises(AnalysisError) as info:
        _pool(case)
    message = info.value.message
    if case["method"] == "PETO":
        assert message == (
            "Peto's odds ratio undefined: one of the two outcomes never occurred in any of the "
            "tables"
        )
    elif case["measure"] == "OR":
        assert message.startswith("Mantel-Haenszel odds ratio undefined: sum(ai*di/ni)")
    elif case["measure"] == "RR":
        assert message.startswith("Mantel-Haenszel risk ratio undefined: no events")
    else:
        assert message.startswith("Mantel-Haenszel risk difference has a standard error of 0")


def test_batch_equals_one_at_a_time() -> None:
    """2-D counts (analyses x studies) give each row's scalar result."""
    rng = np.random.default_rng(5)
    n1 = rng.integers(20, 200, size=(50, 12)).astype(float)
    n2 = rng.integers(20, 200, size=(50, 12)).astype(float)
    a = rng.binomial(n1.astype(int), 0.1).astype(float)
    c = rng.binomial(n2.astype(int), 0.15).astype(float)
    a[:, 0] = 0.0  # zero cells in every analysis
    a[3, 1] = c[3, 1] = 0.0  # a double zero
    for method, measures in MEASURES_BY_METHOD.items():
        for measure in measures:
            batch = pool_tables(a, n1 - a, c, n2 - c, method=method, measure=measure)
            for row in (0, 3, 49):
                one = pool_tables(
                    a[row], n1[row] - a[row], c[row], n2[row] - c[row], method=method,
                    measure=measure,
                )  # fmt: skip
                for key in ("estimate", "se", "pval", "ci_lb", "ci_ub", "Q", "I2", "H2"):
                    np.testing.assert_allclose(
                        getattr(batch, key)[row], getattr(one, key), rtol=1e-13,
                        err_msg=f"{method} {measure} {key}",
                    )  # fmt: skip
                assert batch.k_yi[row] == one.k_yi
                np.testing.assert_allclose(batch.weights[row], one.weights, rtol=1e-13)


def test_batch_names_the_undefined_analysis() -> None:
    a = np.array([[1.0, 2.0], [0.0, 0.0]])
    b = np.full((2, 2), 10.0)
    with pytest.raises(AnalysisError) as info:
        pool_tables(a, b, a, b, method="MH", measure="RR")
    assert info.value.message.endswith("in every study) (analysis 1)")


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (([1, -1], [5, 5], [1, 1], [5, 5]), "2x2 cell counts must be finite and non-negative (row 2)"),
        (([1, np.nan], [5, 5], [1, 1], [5, 5]), "2x2 cell counts must be finite and non-negative (row 2)"),
        (([1, 0], [5, 0], [1, 1], [5, 5]), "each arm needs at least one participant (row 2)"),
        (([1, 2], [5, 5], [1], [5]), "2x2 counts ai, bi, ci, di must be 1-D or 2-D arrays of one shape"),
        (([], [], [], []), "need at least 1 study (table)"),
    ],
)  # fmt: skip
def test_bad_counts(cells: tuple[list[float], ...], message: str) -> None:
    with pytest.raises(AnalysisError) as info:
        pool_tables(*cells, method="MH", measure="OR")
    assert info.value.message == message


def test_places_name_the_study() -> None:
    with pytest.raises(AnalysisError) as info:
        pool_tables([1, -1], [5, 5], [1, 1], [5, 5], places=lambda j: f"t.csv line {j + 2}")
    assert info.value.message.endswith("(t.csv line 3)")


@pytest.mark.parametrize(
    ("method", "measure", "message"),
    [
        ("PETO", "RR", "method PETO applies to measure OR, not RR"),
        ("MH", "SMD", "method MH applies to measure OR, RR, RD, not SMD"),
        ("REML", "OR", "unknown 2x2 pooling method 'REML' (one of MH, PETO)"),
    ],
)
def test_method_and_measure_must_fit(method: str, measure: str, message: str) -> None:
    with pytest.raises(AnalysisError) as info:
        pool_tables([1, 2], [5, 5], [1, 1], [5, 5], method=method, measure=measure)
    assert info.value.message == message


def test_level_follows_metafor() -> None:
    t = FX["tables"]["bcg"]
    at_90 = pool_tables(t["ai"], t["bi"], t["ci"], t["di"], level=0.10)
    assert at_90.level == pytest.approx(90.0)
    _close(at_90.ci_lb, CASES["bcg-MH-OR-level90"]["fit"]["ci_lb"], "alpha 0.10")
    with pytest.raises(AnalysisError):
        pool_tables(t["ai"], t["bi"], t["ci"], t["di"], level=100)
