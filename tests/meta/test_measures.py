"""The measure table: one definition read by escalc, the validator, the analysis, the plots
and the schema; every value rule applied the same way by the validator and by escalc."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosmo_runner.errors import AnalysisError, UnknownMeasureError
from cosmo_runner.meta import escalc
from cosmo_runner.meta.analysis import analyse
from cosmo_runner.meta.measures import MEASURES, TRANSFORMS, Settings, lookup
from cosmo_runner.schemas import load_schema
from cosmo_runner.tables import parse_csv
from cosmo_runner.validators.effect_table import check_table, required_args

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metafor"

#: Three valid studies per measure (the first form of each).
VALID: dict[str, dict[str, list[float]]] = {
    "RR": {"ai": [4, 6, 3], "bi": [119, 300, 50], "ci": [11, 29, 5], "di": [128, 274, 60]},
    "MD": {
        "m1i": [10.0, 12.0, 9.5], "sd1i": [2.0, 0.0, 1.5], "n1i": [20, 30, 25],
        "m2i": [9.0, 11.0, 9.0], "sd2i": [2.5, 2.0, 1.0], "n2i": [22, 28, 24],
    },
    "ZCOR": {"ri": [0.3, -0.1, 0.5], "ni": [50, 40, 60]},
    "PR": {"xi": [4, 0, 12], "ni": [20, 15, 12]},
    "IR": {"xi": [4, 0, 12], "ti": [120.5, 80.0, 300.0]},
    "IRR": {"x1i": [4, 0, 12], "t1i": [120.5, 80.0, 300.0], "x2i": [6, 3, 0],
            "t2i": [110.0, 90.0, 280.0]},
    "MN": {"mi": [-1.5, 0.2, 3.0], "sdi": [1.0, 0.5, 2.0], "ni": [10, 12, 8]},
    "GEN": {"yi": [0.1, 0.4, -0.2], "vi": [0.04, 0.02, 0.05]},
}  # fmt: skip
for _name in ("OR", "RD"):
    VALID[_name] = VALID["RR"]
for _name in ("SMD", "ROM", "SMDH"):
    VALID[_name] = VALID["MD"]
for _name in ("PLN", "PLO", "PAS", "PFT"):
    VALID[_name] = VALID["PR"]
for _name in ("IRLN", "IRS", "IRFT"):
    VALID[_name] = VALID["IR"]
VALID["IRD"] = VALID["IRR"]
VALID["MNLN"] = {**VALID["MN"], "mi": [1.5, 0.2, 3.0], "sdi": [1.0, 0.5, 2.0]}
VALID["COR"] = VALID["UCOR"] = VALID["ZCOR"]
# GEN with a CI: "GEN+ci" on the analysis scale, "GEN+log" hazard ratios (input_scale log)
VALID["GEN+ci"] = {"yi": [-0.2, 0.1, 0.3], "lower": [-0.5, -0.1, 0.0], "upper": [0.1, 0.3, 0.6]}
VALID["GEN+log"] = {"yi": [0.8, 1.1, 0.6], "lower": [0.6, 0.9, 0.4], "upper": [1.07, 1.34, 0.9]}

#: (measure, changed columns, the finding code): study 2 (row index 1) breaks one rule.
BROKEN: list[tuple[str, dict[str, list[float]], str]] = [
    ("RR", {"ai": [4, 2.5, 3]}, "not-a-count"),
    ("OR", {"bi": [119, -1, 50]}, "negative-count"),
    ("RD", {"ci": [11, 0, 5], "di": [128, 0, 60]}, "empty-arm"),
    ("RR", {"bi": [], "di": [], "n1i": [123, 5, 53], "n2i": [139, 303, 65]}, "events-exceed-size"),
    ("OR", {"bi": [], "di": [], "n1i": [123, 0, 53], "n2i": [139, 303, 65]}, "not-positive-count"),
    ("MD", {"sd1i": [2.0, -1.0, 1.5]}, "negative-sd"),
    ("MD", {"n2i": [22, 2.5, 24]}, "not-a-count"),
    ("MD", {"sd1i": [2.0, 0.0, 1.5], "sd2i": [2.5, 0.0, 1.0]}, "variance-not-positive"),
    ("SMD", {"n1i": [20, 1, 25], "n2i": [22, 2, 24]}, "smd-n"),
    ("SMD", {"sd1i": [2.0, 0.0, 1.5], "sd2i": [2.5, 0.0, 1.0]}, "smd-sd"),
    ("ROM", {"m1i": [10.0, -12.0, 9.5]}, "rom-ratio"),
    ("ROM", {"m2i": [9.0, 0.0, 9.0]}, "effect-not-finite"),
    ("ZCOR", {"ri": [0.3, 1.0, 0.5]}, "out-of-range"),
    ("ZCOR", {"ni": [50, 3, 60]}, "zcor-n"),
    ("ZCOR", {"ni": [50, -4, 60]}, "not-positive-count"),
    ("GEN", {"vi": [0.04, 0.0, 0.05]}, "not-positive"),
    ("GEN", {"vi": [], "sei": [0.2, -0.1, 0.3]}, "not-positive"),
    ("SMDH", {"n1i": [20, 1, 25]}, "smdh-n"),
    ("SMDH", {"sd1i": [2.0, 0.0, 1.5], "sd2i": [2.5, 0.0, 1.0]}, "smdh-sd"),
    ("PR", {"xi": [4, 16, 12]}, "events-exceed-size"),
    ("PLO", {"xi": [4, -1, 12]}, "negative-count"),
    ("PAS", {"ni": [], "mi": [16, 0.5, 0]}, "not-a-count"),
    ("PFT", {"ni": [], "mi": [16, -2, 0]}, "negative-count"),
    ("PLN", {"xi": [4, 0, 12], "ni": [], "mi": [16, 0, 0]}, "empty-arm"),
    ("IRLN", {"ti": [120.5, 0.0, 300.0]}, "not-positive"),
    ("IRS", {"xi": [4, 1.5, 12]}, "not-a-count"),
    ("IRD", {"t2i": [110.0, -90.0, 280.0]}, "not-positive"),
    ("IRR", {"x2i": [6, -3, 0]}, "negative-count"),
    ("MN", {"sdi": [1.0, -0.5, 2.0]}, "negative-sd"),
    ("MN", {"ni": [10, 0, 8]}, "not-positive-count"),
    ("MNLN", {"mi": [1.5, 0.0, 3.0]}, "mnln-mean"),
    ("COR", {"ni": [50, 1, 60]}, "cor-n"),
    ("UCOR", {"ni": [50, 4, 60]}, "ucor-n"),
    ("MN", {"sdi": [1.0, 0.0, 2.0]}, "variance-not-positive"),
    ("GEN+log", {"lower": [0.6, -0.9, 0.4]}, "not-positive-ratio"),
    ("GEN+log", {"yi": [0.8, 0.0, 0.6]}, "not-positive-ratio"),
    ("GEN+ci", {"lower": [-0.5, 0.3, 0.0]}, "ci-order"),
    ("GEN+ci", {"yi": [-0.2, 0.35, 0.3]}, "ci-outside"),
    ("GEN+log", {"lower": [0.6, 1.1, 0.4], "upper": [1.07, 1.1, 0.9]}, "ci-order"),
]


def _measure(key: str) -> tuple[str, Settings]:
    """``"GEN+log"`` -> GEN read with input_scale log; ``"GEN+ci"`` -> GEN (a linear CI)."""
    name, _, how = key.partition("+")
    return name, Settings(input_scale="log") if how == "log" else Settings()


#: Codes of the checks that follow the rules (the computed effects), in every measure.
COMPUTED = {"effect-not-finite", "variance-not-positive"}


def _columns(measure: str, change: dict[str, list[float]]) -> dict[str, list[float]]:
    cols = {**VALID[measure], **change}
    return {name: values for name, values in cols.items() if values}


def _csv(cols: dict[str, list[float]]) -> Any:
    names = ["study", *cols]
    rows = [",".join([f"S{i + 1}", *(repr(cols[c][i]) for c in cols)]) for i in range(3)]
    return parse_csv(("\n".join([",".join(names), *rows]) + "\n").encode(), Path("t.csv"))


def test_the_schema_enum_is_the_table() -> None:
    schema = load_schema("run_spec")
    assert schema["$defs"]["measure"]["enum"] == list(MEASURES)


def test_every_entry_is_complete() -> None:
    for name, entry in MEASURES.items():
        assert entry.name == name
        assert entry.forms and all(entry.forms), name
        assert entry.axis in ("ratio", "r", "linear"), name
        assert entry.reference, f"{name}: the formula's source is cited"
        if entry.axis != "linear":
            assert entry.transform is not None, f"{name}: a {entry.axis} axis needs its units"
        if entry.back is not None:
            assert entry.back in TRANSFORMS, name


@pytest.mark.parametrize(
    ("measure", "change", "code"), BROKEN, ids=[f"{m}-{c}" for m, _, c in BROKEN]
)
def test_validator_and_escalc_apply_the_same_rule(
    measure: str, change: dict[str, list[float]], code: str
) -> None:
    cols = _columns(measure, change)
    name, settings = _measure(measure)
    outcome = check_table(_csv(cols), name, {}, "error", settings=settings)
    errors = [f for f in outcome.findings if f.level == "error"]
    assert [(f.code, f.location["line"] if f.location else None) for f in errors] == [(code, 3)]
    assert errors[0].message.startswith("t.csv line 3 (study 'S2')")
    with pytest.raises(AnalysisError, match=r"\(row 2\)$"):
        escalc(name, settings=settings, **cols)  # type: ignore[arg-type]
    # the valid table passes both
    valid = check_table(_csv(VALID[measure]), name, {}, "error", settings=settings)
    assert valid.findings == []
    assert escalc(name, settings=settings, **VALID[measure]).k == 3  # type: ignore[arg-type]


def test_every_rule_of_the_table_is_tested() -> None:
    codes = {rule.code for entry in MEASURES.values() for f in entry.forms
             for how in (Settings(), Settings(input_scale="log"))
             for rule in entry.rules_for(f, how)}  # fmt: skip
    tested = {code for _, _, code in BROKEN}
    assert codes <= tested
    assert tested - codes <= COMPUTED
    assert "variance-not-positive" in tested


def test_messages_name_the_cell_or_the_row() -> None:
    outcome = check_table(_csv(_columns("MD", {"sd1i": [2.0, -1.0, 1.5]})), "MD", {}, "error")
    assert (
        outcome.findings[0].message == "t.csv line 3 (study 'S2'), column sd1i: -1.0 must be >= 0"
    )
    zero = _columns("MD", {"sd1i": [2.0, 0.0, 1.5], "sd2i": [2.5, 0.0, 1.0]})
    (finding,) = check_table(_csv(zero), "MD", {}, "error").findings
    assert finding.message == (
        "t.csv line 3 (study 'S2'): the MD sampling variance is 0 (m1i 12, sd1i 0, n1i 30, "
        "m2i 11, sd2i 0, n2i 28); it must be > 0"
    )
    with pytest.raises(
        AnalysisError, match=r"^escalc: the MD sampling variance is not > 0 \(row 2\)$"
    ):
        escalc("MD", **zero)  # type: ignore[arg-type]
    arm = _columns("RD", {"ci": [11, 0, 5], "di": [128, 0, 60]})
    (finding,) = check_table(_csv(arm), "RD", {}, "error").findings
    assert finding.message == (
        "t.csv line 3 (study 'S2'): each arm needs at least one participant (ci 0, di 0)"
    )


def test_one_standard_deviation_of_zero_is_valid_as_in_metafor() -> None:
    # metafor's escalc accepts sd >= 0; the study's vi is still > 0 through the other arm
    assert VALID["MD"]["sd1i"][1] == 0.0
    es = escalc("MD", **VALID["MD"])  # type: ignore[arg-type]
    assert es.vi[1] == pytest.approx(2.0**2 / 28)


@pytest.mark.parametrize("name", ["XYZ", "", None, "rom "])
def test_an_unknown_measure_is_a_clear_error_everywhere(name: Any) -> None:
    known = ", ".join(MEASURES)
    message = f"unknown measure {str(name)!r} (one of {known})"
    with pytest.raises(UnknownMeasureError) as info:
        lookup(name)
    assert info.value.message == message
    assert info.value.measure == str(name)
    assert info.value.known == tuple(MEASURES)
    with pytest.raises(UnknownMeasureError, match="unknown measure"):
        escalc(name, yi=[1.0, 2.0], vi=[1.0, 1.0])
    with pytest.raises(UnknownMeasureError, match="unknown measure"):
        check_table(_csv(VALID["GEN"]), name, {}, "error")
    with pytest.raises(UnknownMeasureError, match="unknown measure"):
        required_args(name, {}, ["yi", "vi"])
    with pytest.raises(AnalysisError, match=f"^analysis 'a': {re.escape(message)}$"):
        analyse({"id": "a", "measure": name}, {"yi": ["1", "2"], "vi": ["1", "1"]})
    from cosmo_runner.meta.plots import PlotData

    with pytest.raises(UnknownMeasureError, match="unknown measure"):
        PlotData.from_result({"id": "x", "measure": name, "studies": [{"yi": 0.1, "vi": 0.1}]})


def test_lookup_takes_any_case() -> None:
    assert lookup("rom") is MEASURES["ROM"]


def test_the_forms_and_their_alternatives() -> None:
    rr = MEASURES["RR"]
    assert rr.form({"ai", "n1i", "ci", "n2i"}) == ("ai", "n1i", "ci", "n2i")
    assert rr.form({"ai", "bi", "ci", "di", "n1i", "n2i"}) == ("ai", "bi", "ci", "di")
    assert rr.form({"ai", "ci", "n1i"}) == ("ai", "bi", "ci", "di")  # first form: names di
    assert rr.alternatives("bi") == (("n1i",),)
    assert MEASURES["GEN"].alternatives("vi") == (("sei",), ("lower", "upper"))
    assert MEASURES["GEN"].instead("vi") == " (or 'sei', or 'lower' and 'upper')"
    assert MEASURES["GEN"].alternatives("lower") == (("vi",), ("sei",))
    assert MEASURES["ZCOR"].instead("ri") == ""
    assert required_args("GEN", {"sei": "se"}, ["yi", "se"]) == ["yi", "sei"]


def test_rom_through_analyse_matches_metafor() -> None:
    """ROM end to end (dat.curtis1998, REML, z): yi/vi, fit and exp back-transform."""
    fx = json.loads((FIXTURES / "curtis1998.json").read_text())
    table = {k: [repr(float(x)) if k != "study" else x for x in v] for k, v in fx["data"].items()}
    res = analyse({"id": "rom", "measure": "ROM"}, table)
    case = next(c for c in fx["cases"] if c["id"] == "curtis1998-ROM-REML-z-tight")
    np.testing.assert_allclose([s["yi"] for s in res["studies"]], fx["escalc"]["ROM"]["yi"],
                               rtol=1e-12)  # fmt: skip
    # the converged default against metafor's tight fit (threshold 1e-10): rtol 1e-7, the
    # tight fixtures' tolerance (test_metafor_fixtures.py)
    np.testing.assert_allclose([res["estimate"], res["tau2"]],
                               [case["rma"]["b"], case["rma"]["tau2"]], rtol=1e-7)  # fmt: skip
    t = case["transformed"]
    got = res["transformed"]
    np.testing.assert_allclose(
        [got["estimate"], got["ci_lb"], got["ci_ub"], got["pi_lb"], got["pi_ub"]],
        [t["pred"], t["ci_lb"], t["ci_ub"], t["pi_lb"], t["pi_ub"]],
        rtol=1e-7,  # the tight fixtures' tolerance
    )


@pytest.mark.parametrize("measure", list(MEASURES))
def test_plot_axes_come_from_the_table(measure: str) -> None:
    from cosmo_runner.meta.plots import PlotData, layout

    result = analyse({"id": "p", "measure": "GEN"}, {"yi": ["0.1", "0.3", "-0.2"],
                                                   "vi": ["0.04", "0.02", "0.05"]})  # fmt: skip
    result["measure"] = measure
    lay = layout.forest(PlotData.from_result(result), "p")
    assert lay.axis.label == MEASURES[measure].axis_label
    assert lay.axis.kind == MEASURES[measure].axis


def test_the_schema_transf_enum_is_the_table() -> None:
    schema = load_schema("run_spec")
    assert schema["$defs"]["transf"]["enum"] == list(TRANSFORMS)
    analysis = schema["$defs"]["analysis"]["properties"]
    assert analysis["transf"] == {"$ref": "#/$defs/transf"}


def _fixture_case(name: str, case_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    fx = json.loads((FIXTURES / name).read_text())
    return fx, next(c for c in fx["cases"] if c["id"] == case_id)


def _table(fx: dict[str, Any], *args: str) -> dict[str, list[str]]:
    data = fx["data"]
    out = {arg: [repr(float(x)) for x in data[arg]] for arg in args}
    out["study"] = list(data["study"])
    return out


@pytest.mark.parametrize(
    ("measure", "transf"), [("PFT", "ipft.hm"), ("PLO", "ilogit"), ("PAS", "iarcsin")]
)
def test_proportions_back_transform_by_default_as_metafor(measure: str, transf: str) -> None:
    """pritz1997, REML, z: the natural back-transform; PFT with the harmonic mean of ni."""
    fx, case = _fixture_case("pritz1997.json", f"pritz1997-{measure}-REML-z-tight")
    assert MEASURES[measure].back == transf
    res = analyse({"id": "p", "measure": measure}, _table(fx, "xi", "ni"))
    t, got = case["transformed"], res["transformed"]
    np.testing.assert_allclose(
        [got["estimate"], got["ci_lb"], got["ci_ub"], got["pi_lb"], got["pi_ub"]],
        [t["pred"], t["ci_lb"], t["ci_ub"], t["pi_lb"], t["pi_ub"]],
        rtol=1e-7,  # the converged default against metafor's tight fit (threshold 1e-10)
    )
    # studies 5 and 8 have xi = ni: PLO adds 1/2 there (metafor's to="only0"), PFT does not
    assert res["added_half"] == (["Tanabe et al.", "Hadeishi et al."] if measure == "PLO" else [])


def test_non_events_mi_stand_in_for_ni() -> None:
    xi, ni = [4, 0, 12, 7], [20, 15, 12, 9]
    by_n = escalc("PLO", xi=xi, ni=ni)
    by_m = escalc("PLO", xi=xi, mi=[n - x for x, n in zip(xi, ni, strict=True)])
    np.testing.assert_array_equal(by_n.yi, by_m.yi)
    np.testing.assert_array_equal(by_n.vi, by_m.vi)
    assert by_m.added_half == (1, 2)
    np.testing.assert_array_equal(by_m.sizes["ni"], ni)


def test_an_analysis_transf_overrides_the_natural_one() -> None:
    table = {"yi": ["-0.2", "0.1", "0.3"], "vi": ["0.04", "0.02", "0.05"]}
    plain = analyse({"id": "g", "measure": "GEN"}, table)
    assert plain["transformed"] is None
    hr = analyse({"id": "g", "measure": "GEN", "transf": "exp"}, table)
    assert hr["transformed"]["estimate"] == pytest.approx(np.exp(plain["estimate"]), rel=1e-15)
    assert hr["transformed"]["pi_ub"] == pytest.approx(np.exp(plain["pi_ub"]), rel=1e-15)
    with pytest.raises(AnalysisError, match=r"^analysis 'g': unknown transf 'sqrt' \(one of exp,"):
        analyse({"id": "g", "measure": "GEN", "transf": "sqrt"}, table)


def test_a_transf_that_needs_ni_reads_it_or_says_which_column_is_missing() -> None:
    fx, case = _fixture_case("pritz1997.json", "pritz1997-PFT-REML-z")
    pft = escalc("PFT", xi=fx["data"]["xi"], ni=fx["data"]["ni"])
    table = {
        "yi": [repr(float(y)) for y in pft.yi],
        "vi": [repr(float(v)) for v in pft.vi],
        "n": [str(n) for n in fx["data"]["ni"]],
    }
    spec = {"id": "g", "measure": "GEN", "transf": "ipft.hm", "columns": {"ni": "n"}}
    got = analyse(spec, table)["transformed"]
    np.testing.assert_allclose(got["estimate"], case["transformed"]["pred"], rtol=1e-8)
    with pytest.raises(AnalysisError) as info:
        analyse({**spec, "columns": {}}, table)
    assert info.value.message == (
        "analysis 'g': transf 'ipft.hm' needs 'ni' (the harmonic mean of the studies' ni): "
        "column 'ni' is not in the input"
    )
    bad = {**table, "n": ["0", *table["n"][1:]]}
    with pytest.raises(AnalysisError, match=r"table line 2, column n \(ni\): must be > 0"):
        analyse(spec, bad)


def test_hazard_ratios_with_cis_match_metafor_and_name_the_asymmetric_one() -> None:
    """GEN from HRs and 95% CIs (input_scale log, transf exp): yi, sei, fit and exp'd PI."""
    fx, case = _fixture_case("hrci.json", "hrci-GEN-REML-z-tight")
    table = _table(fx, "yi", "lower", "upper")
    spec = {"id": "hr", "measure": "GEN", "input_scale": "log", "transf": "exp"}
    res = analyse(spec, table)
    np.testing.assert_allclose([s["vi"] for s in res["studies"]], fx["escalc"]["GEN"]["vi"],
                               rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(res["estimate"], case["rma"]["b"], rtol=1e-7)
    t, got = case["transformed"], res["transformed"]
    np.testing.assert_allclose(
        [got["estimate"], got["ci_lb"], got["ci_ub"], got["pi_lb"], got["pi_ub"]],
        [t["pred"], t["ci_lb"], t["ci_ub"], t["pi_lb"], t["pi_ub"]],
        rtol=1e-7,  # the tight fixtures' tolerance
    )
    note = (
        "table line 9 (study 'Trial H'): the 95% CI is asymmetric on the analysis scale "
        "(yi - lower 0.5051, upper - yi 0.727, more than 10% apart); sei is taken from its "
        "full width"
    )
    assert res["warnings"][0] == note
    assert not any("Trial A" in w for w in res["warnings"])
    # the validator says the same, as a warning finding with its place
    outcome = check_table(
        _csv_rows(table), "GEN", {}, "error", settings=Settings(input_scale="log")
    )
    (finding,) = outcome.findings
    assert (finding.level, finding.code) == ("warning", "asymmetric-ci")
    assert finding.message == note.replace("table line 9", "t.csv line 9")


def test_the_ci_level_sets_z_and_linear_cis_need_no_input_scale() -> None:
    fx, _ = _fixture_case("hrci90.json", "hrci90-GEN-REML-z")
    d = fx["data"]
    es = escalc("GEN", yi=d["yi"], lower=d["lower"], upper=d["upper"],
                settings=Settings(ci_level=90, input_scale="log"))  # fmt: skip
    np.testing.assert_allclose(es.vi, fx["escalc"]["GEN"]["vi"], rtol=1e-12)
    logs = {k: np.log(d[k]).tolist() for k in ("yi", "lower", "upper")}
    linear = escalc("GEN", settings=Settings(ci_level=90), **logs)
    np.testing.assert_allclose(linear.vi, es.vi, rtol=1e-12)
    np.testing.assert_allclose(linear.yi, es.yi, rtol=1e-15)


def test_the_validator_reads_input_scale_from_the_analyses_of_its_input() -> None:
    # private on purpose: _settings is the one place the validator takes GEN's settings from
    # the analyses that read its input; testing it through validate would need a table whose
    # findings differ between the scales for each precedence rule checked here
    from cosmo_runner.validators.effect_table import _settings

    spec = {"measure": "GEN"}
    assert _settings(spec, [{"measure": "GEN", "input_scale": "log", "ci_level": 90}]) == (
        Settings(ci_level=90.0, input_scale="log")
    )
    assert _settings({**spec, "ci_level": 99}, [{"measure": "GEN", "ci_level": 90}]) == (
        Settings(ci_level=99.0)
    )
    assert _settings(spec, [{"measure": "RR", "input_scale": "log"}]) == Settings()


def _csv_rows(table: dict[str, list[str]]) -> Any:
    names = list(table)
    rows = [",".join(table[n][i] for n in names) for i in range(len(table[names[0]]))]
    return parse_csv(("\n".join([",".join(names), *rows]) + "\n").encode(), Path("t.csv"))
