"""Moderators against metafor 3.8.1 (tests/fixtures/metafor/mods, written by
scripts/metafor/make_fixtures_mods.R under LC_COLLATE=C): categorical moderators, several
moderators, the omnibus test of a subset (btt, ``test_terms``), the common-tau2 subgroup
model and EE R2; then the moderator rule (meta/moderators.py) case by case.

Tolerances: rtol 1e-10 for the closed forms (EE, DL: the same arithmetic), 1e-8 for ML and
REML (the same Fisher scoring and stopping rule, as tests/meta/test_metafor_fixtures.py);
p-values and R2 10x that (R2 divides two tau2 estimates; p-values are steep tails). Models
with dat.bcg's ``year`` get 1e-8: years near 1950 beside the intercept make X'WX's condition
number 2.8e11 (3.7e3 without year), so the two solvers' rounding differs in the 10th digit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import InProcess

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import TESTS, analyse
from cosmo_runner.meta.diagnostics import SUBGROUP_MODELS
from cosmo_runner.meta.moderators import KINDS, ModeratorError, design
from cosmo_runner.schemas import load_schema
from cosmo_runner.spec import problems
from cosmo_runner.tables import Table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metafor" / "mods"
DATASETS = {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}
CASES = [(name, case) for name, fx in DATASETS.items() for case in fx["cases"]]
CASES_DIR = Path(__file__).resolve().parents[1] / "cases"
SUBGROUPS = [(name, case) for name, fx in DATASETS.items() for case in fx["subgroups"]]


def _list(value: Any) -> list[Any]:
    """jsonlite writes a vector of length 1 as a scalar."""
    return value if isinstance(value, list) else [value]


def _table(name: str) -> dict[str, list[str]]:
    return {key: [str(x) for x in values] for key, values in DATASETS[name]["data"].items()}


#: The controls of the fixtures (make_fixtures_mods.R's mx_controls): metafor's defaults,
#: passed explicitly so the comparison does not depend on this project's default, and the
#: tight one of make_fixtures.R.
CONTROLS = {
    "default": {"threshold": 1e-5, "maxiter": 100},
    "tight": {"threshold": 1e-10, "tol": 1e-10, "maxiter": 1000},
}


def _rtol(method: str, moderators: list[str] | None = None, control: str = "default") -> float:
    if control == "tight":  # as test_metafor_fixtures: both stop within 1e-10 of the root
        return 1e-7
    return 1e-8 if method in ("ML", "REML") or "year" in (moderators or []) else 1e-10


def _close(ours: Any, theirs: Any, rtol: float, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=rtol, atol=1e-12,
        err_msg=what,
    )  # fmt: skip


def test_fixtures_record_versions_and_cover_every_model_kind() -> None:
    for fx in DATASETS.values():
        assert fx["metafor_version"] == "3.8.1"
        assert fx["collate"] == "C"
        assert fx["generated_by"] == "scripts/metafor/make_fixtures_mods.R"
    seen = {(c["method"], c["test"]) for _, c in CASES}
    assert seen == {(m, t) for m in ("EE", "DL", "REML", "ML") for t in TESTS}
    terms = [t for _, c in CASES for t in c["fit"]["terms"]]
    assert any("[" in t for t in terms), "categorical moderators"
    assert any(len(c["moderators"]) >= 3 for _, c in CASES), "several moderators"
    assert any(c["test_terms"] for _, c in CASES), "test_terms (btt)"
    assert any("intrcpt" in (c["test_terms"] or []) for _, c in CASES), "btt with intercept"
    assert any(c.get("moderator_kinds") for _, c in CASES), "a declared kind"
    assert (
        {c["control"] for _, c in CASES}
        == {c["control"] for _, c in SUBGROUPS}
        == {"default", "tight"}
    )
    assert {(c["method"], c["test"]) for _, c in SUBGROUPS} >= {
        (m, t) for m in ("DL", "REML") for t in TESTS
    }


@pytest.mark.parametrize(("name", "case"), CASES, ids=[c["id"] for _, c in CASES])
def test_meta_regression_matches_metafor(name: str, case: dict[str, Any]) -> None:
    spec: dict[str, Any] = {
        "id": case["id"], "measure": "GEN", "method": case["method"], "test": case["test"],
        "moderators": case["moderators"], "columns": {"study": "author"},
        "control": CONTROLS[case["control"]],
    }  # fmt: skip
    if case["test_terms"]:
        spec["test_terms"] = case["test_terms"]
    if case.get("moderator_kinds"):
        spec["moderator_kinds"] = case["moderator_kinds"]
    res = analyse(spec, _table(name))
    ref, rtol = case["fit"], _rtol(case["method"], case["moderators"], case["control"])
    coefs = res["coefficients"]
    assert [c["term"] for c in coefs] == ref["terms"]
    for key, theirs in (("estimate", "b"), ("se", "se"), ("statistic", "zval")):
        _close([c[key] for c in coefs], ref[theirs], rtol, f"{case['id']} {key}")
    _close([c["pval"] for c in coefs], ref["pval"], rtol * 10, f"{case['id']} pval")
    # a bound near 0 (est - crit se cancels) is compared to rtol of its se
    se = np.asarray(ref["se"], dtype=float)
    for bound in ("ci_lb", "ci_ub"):
        ours, theirs = np.array([c[bound] for c in coefs]), np.asarray(ref[bound], dtype=float)
        assert np.all(np.abs(ours - theirs) <= rtol * (np.abs(theirs) + se)), (bound, ours)
    _close(res["moderator_tau2"], ref["tau2"], rtol, f"{case['id']} tau2")
    _close(res["moderator_I2"], ref["I2"], rtol, f"{case['id']} I2")
    _close(res["QE"], ref["QE"], rtol, f"{case['id']} QE")
    assert res["QE_df"] == ref["QE_df"]
    assert res["test_terms"] == _list(ref["btt"])
    _close(res["QM"], ref["QM"], rtol, f"{case['id']} QM")
    _close(res["QM_pval"], ref["QMp"], rtol * 10, f"{case['id']} QM_pval")
    assert res["QM_df"] == _list(ref["QM_df"])
    _close(res["R2"], ref["R2"], rtol * 10, f"{case['id']} R2")
    for warning in _list(case["warnings"]):
        assert warning in res["moderator_warnings"], (case["id"], warning)
    kinds = {m["column"]: m["kind"] for m in res["moderator_columns"]}
    assert set(kinds) == set(case["moderators"])


@pytest.mark.parametrize(("name", "case"), SUBGROUPS, ids=[c["id"] for _, c in SUBGROUPS])
def test_common_tau2_subgroups_match_metafor(name: str, case: dict[str, Any]) -> None:
    spec = {
        "id": case["id"], "measure": "GEN", "method": case["method"], "test": case["test"],
        "columns": {"study": "author", "subgroup": case["subgroup"]},
        "subgroup_model": "common_tau2", "control": CONTROLS[case["control"]],
    }  # fmt: skip
    res = analyse(spec, _table(name))
    rtol = _rtol(case["method"], control=case["control"])
    test = res["subgroup_test"]
    assert test["model"] == "common_tau2"
    _close(test["Q"], case["QM"], rtol, "QM")
    _close(test["pval"], case["QMp"], rtol * 10, "QMp")
    assert [test["df"], *([test["df2"]] if test["df2"] is not None else [])] == _list(case["QM_df"])
    for key, theirs in (("tau2", "tau2"), ("I2", "I2"), ("QE", "QE"), ("QE_pval", "QEp")):
        _close(test[key], case[theirs], rtol * 10, key)
    by_group = {g["group"]: g["common_tau2"] for g in res["subgroups"]}
    groups = _list(case["groups"])
    assert sorted(by_group) == groups
    for key in ("estimate", "se", "ci_lb", "ci_ub", "pval"):
        theirs = _list(case[key])
        _close([by_group[g][key] for g in groups], theirs, rtol * 10, key)


def test_the_default_subgroup_model_is_named() -> None:
    spec = {
        "id": "s", "measure": "GEN", "method": "REML",
        "columns": {"study": "author", "subgroup": "alloc"},
    }  # fmt: skip
    res = analyse(spec, _table("bcg"))
    assert res["subgroup_test"]["model"] == "separate_tau2"
    assert res["subgroup_test"]["df"] == 2
    assert res["subgroup_test"]["df2"] is None
    assert all("common_tau2" not in g for g in res["subgroups"])


# ------------------------------------------------------------------ the moderator rule


def _design(columns: dict[str, list[str]], names: list[str], **kw: Any) -> Any:
    table = Table.from_columns({"study": [f"s{i}" for i in range(6)], **columns}, name="t.csv")
    return design(table, names, np.arange(6), **kw)


def test_kinds_match_the_schema_enum() -> None:
    schema = load_schema("run_spec")
    assert tuple(schema["$defs"]["moderator_kinds"]["additionalProperties"]["enum"]) == KINDS


def test_levels_sort_by_code_point_and_the_first_is_the_reference() -> None:
    cells = ["b", "B", "a", "é", "Z", "a"]
    model = _design({"g": cells}, ["g"])
    (moderator,) = model.moderators
    assert moderator.kind == "categorical"
    assert moderator.levels == ("B", "Z", "a", "b", "é")  # R's sort under LC_COLLATE=C
    assert model.terms == ("intrcpt", "g[Z]", "g[a]", "g[b]", "g[é]")
    assert model.x[:, 2].tolist() == [0, 0, 1, 0, 0, 1]


def test_declared_categorical_numbers_sort_by_value() -> None:
    model = _design({"year": ["10", "9", "9", "10", "100", "9"]}, ["year"],
                    kinds={"year": "categorical"})  # fmt: skip
    (moderator,) = model.moderators
    assert moderator.levels == ("9", "10", "100")  # R's factor of a numeric column
    assert moderator.declared is True
    assert model.terms == ("intrcpt", "year[10]", "year[100]")


@pytest.mark.parametrize(
    ("cells", "kinds", "code", "message"),
    [
        (
            ["1", "2", "x", "4", "5", "6"],
            None,
            "not-a-number",
            "t.csv line 4 (study 's2'), column m: 'x' is not a number (a moderator column with a "
            'number in it is numeric; declare "moderator_kinds": {"m": "categorical"} to read '
            "its cells as levels)",
        ),
        (
            ["a", "b", "a", "b", "a", "b"],
            {"m": "numeric"},
            "not-a-number",
            "t.csv line 2 (study 's0'), column m: 'a' is not a number (the moderator is declared "
            '"numeric")',
        ),
        (
            ["1", "2", "", "4", "5", "6"],
            None,
            "empty-cell",
            "t.csv line 4 (study 's2'), column m: empty cell",
        ),
        (
            ["1", "2", "1e400", "4", "5", "6"],
            None,
            "not-finite",
            "t.csv line 4 (study 's2'), column m: '1e400' is not finite",
        ),
        (
            ["a", "a", "", "a", "b", "b"],
            None,
            "empty-cell",
            "t.csv line 4 (study 's2'), column m: empty cell (a level of the categorical "
            "moderator must be named)",
        ),
        (
            ["a"] * 6,
            None,
            "moderator-one-level",
            "t.csv, column m: the categorical moderator has one level ('a') among the 6 "
            "studies; it needs at least 2",
        ),
        (
            ["3", "3", "3", "3", "3", "3"],
            None,
            "moderator-rank",
            "t.csv, column m: the moderators make the model matrix rank-deficient: term 'm' is a "
            "linear combination of the terms before it (intrcpt) in these studies",
        ),
        (
            ["a", "b", "c", "d", "e", "f"],
            None,
            "too-many-terms",
            "t.csv, column m: the categorical moderator has 6 levels among 6 studies",
        ),
    ],
    ids=[
        "typo-in-numbers",
        "declared-numeric",
        "empty-number",
        "not-finite",
        "empty-level",
        "one-level",
        "constant",
        "level-per-study",
    ],
)
def test_every_odd_moderator_column_is_one_error_naming_it(
    cells: list[str], kinds: dict[str, str] | None, code: str, message: str
) -> None:
    with pytest.raises(ModeratorError) as caught:
        _design({"m": cells}, ["m"], kinds=kinds)
    assert caught.value.code == code
    assert caught.value.column == "m"
    assert caught.value.message.startswith(message), caught.value.message


def test_aliased_moderators_name_the_redundant_term() -> None:
    # x is 2 * the indicator of level b: redundant after g
    cols = {"g": ["a", "b", "a", "b", "a", "c"], "x": ["0", "2", "0", "2", "0", "0"]}
    with pytest.raises(ModeratorError) as caught:
        _design(cols, ["g", "x"])
    assert caught.value.column == "x"
    assert "term 'x' is a linear combination of the terms before it (intrcpt, g[b], g[c])" in (
        caught.value.message
    )
    # an independent numeric moderator is fine, in either order
    cols["x"] = ["1", "5", "2", "3", "8", "13"]
    assert _design(cols, ["x", "g"]).terms == ("intrcpt", "x", "g[b]", "g[c]")


def test_unknown_test_terms_name_the_model_terms() -> None:
    table = Table.from_columns({"g": ["a", "b", "a", "b"]}, name="t.csv")
    model = design(table, ["g"], np.arange(4))
    assert model.indices(["g[b]"], table) == (1,)
    assert model.indices(None, table) == (1,)
    with pytest.raises(ModeratorError, match=r"test_terms names 'g\[B\]', which is not a term"):
        model.indices(["g[B]"], table)


def test_analysis_records_kinds_and_rejects_a_mixed_column() -> None:
    table = _table("bcg")
    spec = {"id": "m", "measure": "GEN", "moderators": ["alloc", "year"],
            "moderator_kinds": {"year": "numeric"}}  # fmt: skip
    res = analyse(spec, table)
    assert res["moderator_columns"] == [
        {"column": "alloc", "kind": "categorical", "declared": False,
         "levels": ["alternate", "random", "systematic"], "reference": "alternate",
         "terms": ["alloc[random]", "alloc[systematic]"]},
        {"column": "year", "kind": "numeric", "declared": True, "levels": None,
         "reference": None, "terms": ["year"]},
    ]  # fmt: skip
    table["ablat"][3] = "north"
    with pytest.raises(AnalysisError) as caught:
        analyse(dict(spec, moderators=["ablat"], moderator_kinds={}), table)
    assert str(caught.value) == (
        "analysis 'm': table line 5, column ablat: 'north' is not "
        "a number (a moderator column with a number in it is numeric; declare "
        '"moderator_kinds": {"ablat": "categorical"} to read its cells as levels)'
    )


def test_a_run_with_categorical_moderators_and_common_tau2(tmp_path: Path, cli: InProcess) -> None:
    """End to end (tests/cases/moderator-categorical): the results hold metafor's btt test
    and the common-tau2 subgroup test, and report.html names that model. The case's spec
    gives metafor's default control (threshold 1e-5, maxiter 100), as its fixtures were
    made with it."""
    case = tmp_path / "case"
    shutil.copytree(CASES_DIR / "moderator-categorical", case)
    proc = cli("run", "spec.json", "--out", tmp_path / "out", cwd=case)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "out" / "results" / "mods.json").read_text())
    ref = {c["id"]: c for _, c in CASES}["bcg-alloc-ablat-REML-knha"]["fit"]
    assert res["test_terms"] == ["alloc[random]", "alloc[systematic]"]
    assert [c["term"] for c in res["coefficients"]] == ref["terms"]
    assert res["QM_df"] == [2, 9]
    assert res["QM"] == pytest.approx(0.6007278870264345, rel=1e-8)  # metafor: btt = 2:3
    sub = {c["id"]: c for _, c in SUBGROUPS}["bcg-alloc-common_tau2-REML-knha"]
    assert res["subgroup_test"]["model"] == "common_tau2"
    assert res["subgroup_test"]["Q"] == pytest.approx(sub["QM"], rel=1e-8)
    page = (tmp_path / "out" / "report.html").read_text()
    assert (
        "Test of subgroup differences (common &tau;&sup2;, metafor's moderator model): "
        "F 0.9662, df 2, 10, p 0.4134"
    ) in page
    # the moderators' kinds and levels and the tested terms are on the page too
    assert "alternate, random, systematic" in page
    assert "alloc[random], alloc[systematic]" in page


def _spec(**analysis: Any) -> dict[str, Any]:
    entry = {"id": "a", "input": "t", "measure": "GEN", **analysis}
    return {"spec_version": 1, "name": "t", "inputs": {"t": {"path": "t.csv"}}, "analyses": [entry]}


@pytest.mark.parametrize(
    ("analysis", "problem"),
    [
        (
            {"moderators": ["alloc"], "moderator_kinds": {"year": "categorical"}},
            "/analyses/0/moderator_kinds: 'year' is not one of the moderators (alloc)",
        ),
        (
            {"moderators": ["alloc"], "moderator_kinds": {"alloc": "factor"}},
            "/analyses/0/moderator_kinds/alloc: 'factor' is not one of ['numeric', 'categorical']",
        ),
        (
            {"test_terms": ["alloc[random]"]},
            "/analyses/0: 'moderators' is a dependency of 'test_terms'",
        ),
        (
            {"moderators": ["alloc"], "test_terms": ["aloc[random]"]},
            "/analyses/0/test_terms/0: 'aloc[random]' is not a term of the moderators (alloc): "
            "name intrcpt, a numeric moderator, or a level as column[level]",
        ),
        (
            {"subgroup_model": "common_tau2"},
            "/analyses/0/subgroup_model: needs a subgroup column (columns.subgroup)",
        ),
        (
            {"columns": {"subgroup": "g"}, "subgroup_model": "common"},
            "/analyses/0/subgroup_model: 'common' is not one of ['separate_tau2', 'common_tau2']",
        ),
    ],
    ids=[
        "kind-of-no-moderator",
        "unknown-kind",
        "terms-without-moderators",
        "term-of-no-moderator",
        "subgroup-model-without-subgroup",
        "unknown-subgroup-model",
    ],
)
def test_moderator_fields_of_a_spec_are_checked(analysis: dict[str, Any], problem: str) -> None:
    found = problems(_spec(**analysis))
    assert any(p.startswith(problem) for p in found), found


def test_valid_moderator_fields_pass_the_spec_checks() -> None:
    spec = _spec(
        moderators=["alloc", "ablat", "a[b]"], moderator_kinds={"alloc": "categorical"},
        test_terms=["intrcpt", "ablat", "alloc[random]", "a[b]"],
        columns={"subgroup": "g"}, subgroup_model="separate_tau2",
    )  # fmt: skip
    assert problems(spec) == []


def test_subgroup_models_match_the_schema_enum() -> None:
    schema = load_schema("run_spec")
    enum = schema["$defs"]["analysis"]["properties"]["subgroup_model"]["enum"]
    assert tuple(enum) == SUBGROUP_MODELS
