"""Plots: the strict PlotData converter, the pure layout (no matplotlib), and the drawing.

Three layers, tested through their public functions:

- ``PlotData.from_result`` reads what ``analyse()`` returns (or its results JSON) and fails
  with a ``PlotDataError`` naming the key for every way a result can be short or odd;
- ``layout.<kind>`` decides every text, limit, tick and mark, checked here on plain data;
- ``plots.draw`` / ``plots.render`` draw a layout as PNG and SVG, byte-reproducibly.

The hand-built result has the shape ``analyse()`` returns, from the BCG data (metafor's
dat.bcg, log risk ratios) and metafor 3.8's REML fit of it (see shared/metafor-notes.md), so
the layout tests do not depend on the estimators; the others use ``analyse()`` itself.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ROOT, InProcess, load_log

from cosmo_runner.errors import AnalysisError, PlotDataError, UnknownMeasureError
from cosmo_runner.meta import plots
from cosmo_runner.meta.plots import PlotData, layout
from cosmo_runner.meta.plots.layout import Diamond, PredictionBar, StudyMark

# (label, yi = log RR, vi, weight % in the REML model)
BCG_STUDIES = [
    ("Aronson 1948", -0.889311, 0.325585, 5.06),
    ("Ferguson & Simes 1949", -1.585389, 0.194581, 6.36),
    ("Rosenthal et al 1960", -1.348073, 0.415368, 4.44),
    ("Hart & Sutherland 1977", -1.441551, 0.020010, 9.70),
    ("Frimodt-Moller et al 1973", -0.217547, 0.051210, 8.87),
    ("Stein & Aronson 1953", -0.786116, 0.006906, 10.10),
    ("Vandiviere et al 1973", -1.620898, 0.223017, 6.03),
    ("TPT Madras 1980", 0.011952, 0.003962, 10.19),
    ("Coetzee & Berjak 1968", -0.469418, 0.056434, 8.74),
    ("Rosenthal et al 1961", -1.371345, 0.073025, 8.37),
    ("Comstock et al 1974", -0.339359, 0.012412, 9.93),
    ("Comstock & Webster 1969", 0.445913, 0.532506, 3.82),
    ("Comstock et al 1976", -0.017314, 0.071405, 8.40),
]
COLUMNS = {"ai": "tpos", "bi": "tneg", "ci": "cpos", "di": "cneg", "study": "study"}


def bcg_result(measure: str = "RR", **changes: Any) -> dict[str, Any]:
    """metafor: rma(yi, vi, data=escalc("RR", ...dat.bcg)), REML, z test."""
    est, se, tau2 = -0.714532, 0.179782, 0.313243
    result = {
        "id": "bcg",
        "measure": measure,
        "k": 13,
        "estimate": est,
        "se": se,
        "statistic": est / se,
        "df": None,
        "pval": 7.1e-5,
        "ci_lb": -1.066898,
        "ci_ub": -0.362167,
        "tau2": tau2,
        "I2": 92.2214,
        "Q": 152.2330,
        "Q_df": 12,
        "Q_pval": 5.6e-26,
        "pi_lb": -1.8667,
        "pi_ub": 0.4376,
        "method": "REML",
        "test": "z",
        "level": 95.0,
        "studies": [
            {"label": label, "yi": yi, "vi": vi, "weight_percent": w}
            for label, yi, vi, w in BCG_STUDIES
        ],
        "egger": {"statistic": -0.8033, "df": None, "pval": 0.4218},
        "trimfill": None,
        "cumulative": None,
        "leave_one_out": None,
    }
    result.update(changes)
    return result


def bcg_table() -> dict[str, list[str]]:
    with (ROOT / "examples" / "bcg" / "bcg.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    table = {key: [row[key] for row in rows] for key in rows[0]}
    table["latitude"] = ["high" if float(a) >= 30 else "low" for a in table["ablat"]]
    return table


@cache
def _analysed(extra: str) -> str:
    from cosmo_runner.meta.analysis import analyse
    from cosmo_runner.meta.result_file import dumps_result

    spec = {"id": "bcg", "measure": "RR", "columns": COLUMNS, "method": "REML"}
    spec.update(json.loads(extra))
    return dumps_result(analyse(spec, bcg_table()))


def analysed(**extra: Any) -> dict[str, Any]:
    """``analyse()`` of BCG with ``extra`` spec keys, as its results JSON reads back."""
    result: dict[str, Any] = json.loads(_analysed(json.dumps(extra, sort_keys=True)))
    return result


def yusuf_mh() -> dict[str, Any]:
    """examples/binary-mh's Mantel-Haenszel OR: three double-zero trials without an outcome."""
    from cosmo_runner.meta.analysis import analyse

    spec = json.loads((ROOT / "examples" / "binary-mh" / "spec.json").read_text())
    entry = next(a for a in spec["analyses"] if a["id"] == "mh-or")
    with (ROOT / "examples" / "binary-mh" / "yusuf1985.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return analyse(entry, {key: [row[key] for row in rows] for key in rows[0]})


def data(result: dict[str, Any]) -> PlotData:
    return PlotData.from_result(result)


def texts(lay: Any) -> list[str]:
    """Every text of a layout."""
    out = []
    for name in ("texts", "footer", "notes"):
        out += [t.text for t in getattr(lay, name, ())]
    for name in ("title",):
        if hasattr(lay, name):
            out.append(getattr(lay, name).text)
    out += [step[0] for step in getattr(lay, "steps", ())]
    out += [step[4] for step in getattr(lay, "steps", ())]
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- PlotData


def test_the_results_json_and_the_in_memory_result_give_the_same_plot_data() -> None:
    from cosmo_runner.meta.analysis import analyse

    for extra in ({}, {"moderators": ["ablat"]}, {"columns": {**COLUMNS, "subgroup": "latitude"}}):
        spec = {"id": "bcg", "measure": "RR", "columns": COLUMNS, "method": "REML", **extra}
        in_memory = analyse(spec, bcg_table())  # studies as numpy columns (Records)
        assert data(in_memory) == data(analysed(**extra))
    assert data(yusuf_mh()) == data(json.loads(json.dumps(yusuf_mh())))


def test_plot_data_holds_what_the_analysis_computed() -> None:
    d = data(analysed(funnel_contours=[99, 90, 95], moderators=["ablat"]))
    assert d.analysis_id == "bcg" and d.measure.name == "RR" and d.level == 95.0
    assert [s.label for s in d.studies][:2] == ["Aronson 1948", "Ferguson & Simes 1949"]
    assert d.fit.k == 13 and d.fit.method == "REML" and d.fit.Q_df == 12
    assert d.funnel_contours == (90.0, 95.0, 99.0)
    assert d.regression is not None and d.regression.terms == ("ablat",)
    assert d.regression.QM_df == (1,)
    assert d.subgroups == () and d.subgroup_test is None
    assert d.leave_one_out is not None and len(d.leave_one_out) == 13
    assert d.cumulative is not None and len(d.cumulative) == 13


def test_double_zero_studies_have_no_outcome_and_no_refit_row() -> None:
    result = yusuf_mh()
    d = data(result)
    assert len(d.without_outcome) == 3
    assert len(d.studies) == len(result["studies"]) - 3
    assert d.leave_one_out is not None and len(d.leave_one_out) == len(d.studies)


def _drop(result: dict[str, Any], pointer: str) -> None:
    *path, last = pointer.strip("/").split("/")
    block: Any = result
    for part in path:
        block = block[int(part)] if isinstance(block, list) else block[part]
    del block[last]


def _set(result: dict[str, Any], pointer: str, value: Any) -> None:
    *path, last = pointer.strip("/").split("/")
    block: Any = result
    for part in path:
        block = block[int(part)] if isinstance(block, list) else block[part]
    block[int(last) if isinstance(block, list) else last] = value


# Every key the plots read, in each block analyse() writes (the subgroup and moderator keys
# only with subgroups and moderators).
REQUIRED = [
    *(f"/{k}" for k in ("measure", "level", "studies", "egger", "trimfill", "cumulative")),
    *(f"/{k}" for k in ("leave_one_out", "k", "method", "test", "estimate", "ci_lb", "ci_ub")),
    *(f"/{k}" for k in ("pi_lb", "pi_ub", "statistic", "df", "pval", "tau2", "I2", "Q")),
    "/Q_df",
    "/Q_pval",
    "/studies/3/label",
    "/studies/3/yi",
    "/studies/3/vi",
    "/studies/3/weight_percent",
    "/egger/statistic",
    "/egger/df",
    "/egger/pval",
    "/trimfill/side",
    "/trimfill/estimate",
    "/trimfill/filled",
    "/cumulative/2/label",
    "/cumulative/2/ci_lb",
    "/leave_one_out/4/estimate",
    "/leave_one_out/4/se",
]
REQUIRED_MODS = [
    "/coefficients/1/term",
    *(f"/{k}" for k in ("QM", "QM_df", "QM_pval", "QE", "QE_df", "QE_pval", "R2")),
    "/moderator_tau2",
    "/moderator_I2",
    "/test_terms",
]
REQUIRED_SUBGROUPS = ["/subgroup_test", "/subgroup_test/Q", "/subgroup_test/df"]
REQUIRED_SUBGROUPS += ["/subgroup_test/model", "/subgroup_test/df2"]
REQUIRED_SUBGROUPS += ["/subgroup_test/pval", "/subgroups/1/group", "/subgroups/1/studies"]
REQUIRED_SUBGROUPS += ["/subgroups/1/estimate", "/subgroups/0/Q_df", "/subgroups/1/studies/0/vi"]


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [({}, p) for p in REQUIRED]
    + [({"moderators": ["ablat"]}, p) for p in REQUIRED_MODS]
    + [({"columns": {**COLUMNS, "subgroup": "latitude"}}, p) for p in REQUIRED_SUBGROUPS],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_missing_key_is_a_plot_data_error_naming_it(extra: dict[str, Any], pointer: str) -> None:
    result = analysed(**extra)
    if pointer.startswith("/trimfill/"):
        assert result["trimfill"] is not None
    _drop(result, pointer)
    with pytest.raises(PlotDataError) as info:
        data(result)
    assert info.value.pointer == pointer
    assert info.value.analysis_id == "bcg"
    assert info.value.message == f"analysis 'bcg': cannot plot the result: {pointer} is missing"


def test_a_result_without_an_id_names_no_analysis() -> None:
    result = bcg_result()
    del result["id"]
    with pytest.raises(PlotDataError) as info:
        data(result)
    assert info.value.message == "cannot plot the result: /id is missing"
    assert info.value.analysis_id is None


@pytest.mark.parametrize(
    ("pointer", "value", "problem"),
    [
        ("/studies/2/yi", "0.5", "is not a number: '0.5'"),
        ("/studies/2/vi", True, "is not a number: True"),
        ("/estimate", [1.0], "is not a number: [1.0]"),
        ("/Q_df", 12.5, "is not an integer: 12.5"),
        ("/k", "13", "is not an integer: '13'"),
        ("/method", None, "is not a string: None"),
        ("/test", "wald", "is not one of z, t, knha, adhoc or null: 'wald'"),
        ("/test", 3, "is not one of z, t, knha, adhoc or null: 3"),
        ("/studies/2/label", 7, "is not a string: 7"),
        ("/studies", {"0": {}}, "is not a list"),
        ("/studies", "abc", "is not a list"),
        ("/studies/2", [1, 2], "is not an object"),
        ("/egger", 0.5, "is not an object"),
        ("/level", 100, "is not a confidence level in (0, 100): 100.0"),
        ("/level", None, "is not a confidence level in (0, 100): None"),
        ("/funnel_contours", [95, 0], None),
        ("/leave_one_out", [{"estimate": 0.1, "se": 0.1}], "has 1 rows for 13 studies"),
    ],
)
def test_a_value_of_the_wrong_type_is_a_plot_data_error(
    pointer: str, value: Any, problem: str | None
) -> None:
    result = bcg_result()
    _set(result, pointer, value)
    with pytest.raises(PlotDataError) as info:
        data(result)
    if problem is None:  # a bad list element: named by its own pointer
        pointer, problem = "/funnel_contours/1", "is not a level in (0, 100): 0.0"
    assert (info.value.pointer, info.value.problem) == (pointer, problem)
    assert info.value.message == f"analysis 'bcg': cannot plot the result: {pointer} {problem}"


def test_integral_floats_count_as_integers() -> None:
    # analyse() writes Egger's df as 11.0 under Knapp-Hartung (a float from the fit)
    d = data(analysed(test="knha"))
    assert d.egger is not None and d.egger.df == 11


@pytest.mark.parametrize("studies", [[], None])
def test_a_result_without_studies_is_an_analysis_error(studies: Any) -> None:
    with pytest.raises(AnalysisError) as info:
        data(bcg_result(studies=studies))
    assert info.value.message == "plots for 'bcg': the result lists no studies"


@pytest.mark.parametrize(("key", "value"), [("vi", None), ("vi", 0.0), ("vi", -1.0), ("yi", None)])
def test_a_study_without_finite_yi_and_positive_vi_is_an_analysis_error(
    key: str, value: Any
) -> None:
    result = bcg_result()
    result["studies"][2][key] = value
    with pytest.raises(AnalysisError) as info:
        data(result)
    assert info.value.message == (
        "plots for 'bcg': study 'Rosenthal et al 1960' has no finite yi and positive vi"
    )


def test_an_unknown_measure_is_an_unknown_measure_error() -> None:
    with pytest.raises(UnknownMeasureError, match="unknown measure 'XYZ'"):
        data(bcg_result("XYZ"))


# --------------------------------------------------------------------------- pure layout

LAYOUT_SCRIPT = """
import json, sys
from cosmo_runner.meta.plots import PlotData, layout
result = json.loads(sys.stdin.read())
for kind in ("forest", "funnel", "cumulative", "baujat"):
    layout.of_kind(PlotData.from_result(result), kind, "bcg")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")))
"""


def test_layout_imports_no_matplotlib() -> None:
    # a fresh interpreter: this one has matplotlib loaded by the drawing tests
    result = analysed(funnel_contours=[90, 95])
    proc = subprocess.run(
        [sys.executable, "-c", LAYOUT_SCRIPT],
        input=json.dumps(result),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_forest_rows_texts_and_marks() -> None:
    lay = layout.forest(data(bcg_result()), "bcg")
    lines = texts(lay)
    assert lines[:3] == ["Study", "Weight", "Risk Ratio [95% CI]"]
    assert "0.49 [0.34, 0.70]" in lines  # exp(-0.7145) [exp(-1.0669), exp(-0.3622)]
    assert "[0.15, 1.55]" in lines  # the prediction interval, back-transformed
    assert "Random-effects model (REML)" in lines and "Prediction interval" in lines
    assert "100.0%" in lines  # the summary's weight: all its studies
    het = next(t for t in lines if t.startswith("Heterogeneity"))
    assert het == "Heterogeneity: τ² = 0.313; I² = 92.2%; Q = 152.23, df = 12, p < 0.0001"
    assert "Test for overall effect (Wald): z = \N{MINUS SIGN}3.97, p < 0.0001" in lines
    kinds = [type(m) for m in lay.marks]
    assert kinds == [StudyMark] * 13 + [Diamond, PredictionBar]
    assert [m.y for m in lay.marks] == [-1.0 * j for j in range(1, 14)] + [-14.5, -15.5]
    diamond = lay.marks[13]
    assert isinstance(diamond, Diamond)
    assert (diamond.estimate, diamond.lb, diamond.ub) == (-0.714532, -1.066898, -0.362167)
    assert len(lay.rules) == 2  # under the header and above the summary


def test_forest_squares_grow_with_weight_and_wide_cis_end_in_arrows() -> None:
    result = bcg_result()
    result["studies"][0].update(yi=0.2, vi=9.0)  # a CI far wider than everything else
    lay = layout.forest(data(result), "bcg")
    squares = [m for m in lay.marks if isinstance(m, StudyMark)]
    weights = [w for *_, w in BCG_STUDIES]
    order = sorted(range(13), key=lambda i: weights[i])
    assert [squares[i].size for i in order] == sorted(s.size for s in squares)
    assert max(s.size for s in squares) == 10.0  # 3 + 7 points at the largest weight
    assert squares[0].arrows == (True, True)
    assert squares[7].arrows == (False, False)  # TPT Madras 1980, the narrowest CI
    assert all(s.clip_lo <= s.yi <= s.clip_hi for s in squares)  # every estimate is shown
    assert lay.axis.lo < squares[0].clip_lo and squares[0].clip_hi < lay.axis.hi


def test_ratio_axis_ticks_sit_at_the_logs_of_their_labels() -> None:
    axis = layout.forest(data(bcg_result("RR")), "bcg").axis
    assert axis.label == "Risk Ratio (log scale)" and axis.kind == "ratio"
    assert axis.ticks is not None and "1" in [t.label for t in axis.ticks]
    for tick in axis.ticks:
        assert tick.position == pytest.approx(math.log(float(tick.label)))


def test_a_narrow_ratio_axis_leaves_its_ticks_to_matplotlib() -> None:
    studies = [
        {"label": str(i), "yi": 0.01 * i, "vi": 1e-4, "weight_percent": 25.0} for i in range(4)
    ]
    narrow = bcg_result(studies=studies, estimate=0.015, ci_lb=0.005, ci_ub=0.025)
    narrow.update(pi_lb=0.0, pi_ub=0.03)
    axis = layout.funnel(data(narrow), "n").axis
    assert math.exp(axis.hi) / math.exp(axis.lo) < 1.2
    assert axis.ticks is None and axis.kind == "ratio"
    drawn = dict(plots.draw(data(narrow), ["funnel"], "n"))  # matplotlib picks them
    assert drawn["n.funnel.png"].startswith(b"\x89PNG")


def test_difference_axis_is_linear_and_texts_use_the_minus_sign() -> None:
    lay = layout.forest(data(bcg_result("SMD")), "x")
    assert lay.axis.label == "Standardized Mean Difference" and lay.axis.ticks is None
    assert "\N{MINUS SIGN}0.71 [\N{MINUS SIGN}1.07, \N{MINUS SIGN}0.36]" in texts(lay)


def test_correlation_axis_is_labelled_in_r() -> None:
    axis = layout.funnel(data(bcg_result("ZCOR")), "x").axis
    assert axis.ticks is not None
    for tick in axis.ticks:
        r = float(tick.label.replace("\N{MINUS SIGN}", "-"))
        assert -1 < r < 1 and tick.position == pytest.approx(math.atanh(r))


def test_equal_effects_model_has_no_prediction_interval() -> None:
    lay = layout.forest(data(bcg_result(method="EE", tau2=0.0)), "ee")
    lines = texts(lay)
    assert "Common-effect model" in lines and "Prediction interval" not in lines
    assert not any(isinstance(m, PredictionBar) for m in lay.marks)
    assert not any("τ²" in t for t in lines)


def test_meta_regression_has_no_summary_and_says_why() -> None:
    lay = layout.forest(data(analysed(moderators=["ablat"])), "ablat")
    lines = texts(lay)
    assert not any(isinstance(m, Diamond | PredictionBar) for m in lay.marks)
    assert lines[-3].startswith(
        "Mixed-effects meta-regression on ablat (REML): no single summary; see coefficients"
    )
    assert lines[-2].startswith("Residual heterogeneity: τ² = 0.076; I² = 68.4%; QE = 30.73")
    assert lines[-1].startswith("Test of moderators: QM(1) = 16.36, p < 0.0001; R² = 75.6%")
    funnel = layout.funnel(data(analysed(moderators=["ablat"])), "ablat")
    assert "centred on the model without moderators" in texts(funnel)


def test_knha_meta_regression_tests_moderators_with_f() -> None:
    lines = texts(layout.forest(data(analysed(moderators=["ablat"], test="knha")), "ablat"))
    assert lines[-1].startswith("Test of moderators: F(1, 11) = ")


def test_subgroups_get_a_block_each_and_the_test_of_differences() -> None:
    lay = layout.forest(data(analysed(columns={**COLUMNS, "subgroup": "latitude"})), "sub")
    lines = texts(lay)
    bold = [t.text for t in lay.texts if t.bold]
    assert "high" in bold and "low" in bold
    assert "RE model (REML) for subgroup (k = 8)" in lines  # ablat >= 30
    assert "RE model (REML) for subgroup (k = 5)" in lines
    notes = [t for t in lay.texts if t.text.startswith("Heterogeneity")]
    assert len(notes) == 2 and all(t.color == layout.GREY for t in notes)
    assert "Test for subgroup differences: Q = 3.52, df = 1, p = 0.060" in lines
    diamonds = [m for m in lay.marks if isinstance(m, Diamond)]
    assert len(diamonds) == 3
    assert len(lay.rules) == 1  # no rule above the summaries of a grouped plot


def test_double_zero_studies_are_named_in_the_forest_footer() -> None:
    lines = texts(layout.forest(data(yusuf_mh()), "mh"))
    note = next(t for t in lines if t.startswith("Not shown"))
    assert note.startswith(
        "Not shown: 3 double-zero studies without an individual outcome "
        "(in the Mantel-Haenszel estimate, not in Q): "
    )
    assert "Common-effect model (Mantel-Haenszel)" in lines
    assert any(t.startswith("Test for overall effect (Mantel-Haenszel): z = ") for t in lines)


def test_too_many_studies_for_a_forest_plot_is_an_analysis_error() -> None:
    many = [
        {"label": str(i), "yi": 0.1, "vi": 0.1, "weight_percent": 0.01}
        for i in range(layout.MAX_FOREST_ROWS + 1)
    ]
    with pytest.raises(AnalysisError) as info:
        layout.forest(data(bcg_result(studies=many)), "big")
    assert info.value.message == (
        "forest plot for 'big': 2001 studies are more than the 2000 a forest plot can show "
        "legibly; request a funnel plot"
    )


def test_funnel_points_region_and_notes() -> None:
    d = data(bcg_result())
    lay = layout.funnel(d, "bcg")
    assert lay.points == tuple((s.yi, s.sei) for s in d.studies)
    assert lay.se_max == pytest.approx(max(s.sei for s in d.studies) * 1.05)
    assert lay.center == -0.714532 and lay.contours == () and lay.hollow == ()
    assert lay.region == pytest.approx(1.959964 * lay.se_max)
    assert texts(lay) == [
        "95% pseudo-confidence region",
        "Egger's test: z = \N{MINUS SIGN}0.80, p = 0.42",
    ]
    assert lay.axis.lo < -1.620898 and lay.axis.hi > 0.445913


def test_contour_enhanced_funnel_with_filled_studies_hollow() -> None:
    result = analysed(funnel_contours=[90, 95, 99])
    lay = layout.funnel(data(result), "bcg")
    assert result["trimfill"]["k0"] > 0
    assert len(lay.hollow) == result["trimfill"]["k0"]
    assert len(lay.points) == 13
    assert [shade for _, shade in lay.contours] == list(reversed(layout.CONTOUR_SHADES[:3]))
    assert lay.background == layout.CONTOUR_SHADES[3] and lay.region is None
    widths = [w for w, _ in lay.contours]
    assert widths == sorted(widths, reverse=True)  # outermost first, drawn under the others
    lines = texts(lay)
    assert lines[0] == (
        "Contours around 0: white: p > 0.1, dark grey: p 0.05-0.1, grey: p 0.01-0.05, "
        "light grey: p < 0.01"
    )
    side = result["trimfill"]["side"]
    assert any(
        t.startswith(f"Trim-and-fill: {len(lay.hollow)} filled on the {side}") for t in lines
    )


def test_cumulative_rows_add_one_study_each() -> None:
    result = analysed(cumulative_by="year")
    lay = layout.cumulative(data(result), "bcg")
    labels = [step[0] for step in lay.steps]
    assert labels[0] == result["cumulative"][0]["label"]
    assert labels[1:] == ["+ " + row["label"] for row in result["cumulative"][1:]]
    assert lay.title.text.startswith("Cumulative meta-analysis (Random-effects model (REML))")


def test_cumulative_and_baujat_refuse_without_their_data() -> None:
    d = data(yusuf_mh())
    with pytest.raises(AnalysisError) as info:
        layout.cumulative(d, "mh")
    assert info.value.message == (
        "cumulative plot for 'mh': the result has no cumulative meta-analysis (see its warnings)"
    )
    with pytest.raises(AnalysisError) as info:
        layout.baujat(data(bcg_result()), "bcg")
    assert info.value.message == (
        "baujat plot for 'bcg': the result has no leave-one-out refits (see its warnings)"
    )


def test_baujat_points_are_residual_against_influence() -> None:
    result = analysed()
    lay = layout.baujat(data(result), "bcg")
    mu, tau2 = result["estimate"], result["tau2"]
    study, refit = result["studies"][3], result["leave_one_out"][3]
    label, x, y = lay.points[3]
    assert label == study["label"]
    assert x == pytest.approx((study["yi"] - mu) ** 2 / (tau2 + study["vi"]))
    assert y == pytest.approx((refit["estimate"] - mu) ** 2 / refit["se"] ** 2)
    assert lay.x_max == pytest.approx(max(p[1] for p in lay.points) * 1.15)


def test_baujat_skips_double_zero_studies() -> None:
    lay = layout.baujat(data(yusuf_mh()), "mh")
    assert len(lay.points) == len(data(yusuf_mh()).studies)


def test_unknown_kind_is_an_analysis_error(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError) as info:
        plots.render(data(bcg_result()), ["forest", "radial"], tmp_path, "bcg")
    assert info.value.message == (
        "unknown plot kind 'radial' for 'bcg'; known kinds: forest, funnel, cumulative, baujat"
    )
    assert list(tmp_path.iterdir()) == []


def test_kinds_tests_and_subgroup_models_are_the_run_spec_schemas() -> None:
    from cosmo_runner.meta import TESTS
    from cosmo_runner.meta.plots.data import SUBGROUP_MODELS
    from cosmo_runner.schemas import load_schema

    analysis = load_schema("run_spec")["$defs"]["analysis"]["properties"]
    assert tuple(analysis["plots"]["items"]["enum"]) == plots.KINDS
    assert tuple(analysis["subgroup_model"]["enum"]) == SUBGROUP_MODELS
    assert tuple(layout.TEST_NAMES) == TESTS  # every test has its name in the plots


@pytest.mark.parametrize(
    ("test", "model", "overall"),
    [
        ("z", "Random-effects model (REML)", "Test for overall effect (Wald): z = "),
        ("t", "Random-effects model (REML), t distribution", "(Wald-type t): t(12) = "),
        ("knha", "Random-effects model (REML), Knapp-Hartung", "(Knapp-Hartung): t(12) = "),
        ("adhoc", "Random-effects model (REML), KH ad hoc", "(Knapp-Hartung, ad hoc): t(12) = "),
    ],
)
def test_the_test_is_named_with_the_summary_and_its_test(
    test: str, model: str, overall: str
) -> None:
    lay = layout.forest(data(analysed(test=test)), "bcg")
    lines = texts(lay)
    assert model in lines
    assert any(t.startswith("Test for overall effect (") and overall in t for t in lines)
    assert lay.footer[1].text.startswith("Test for overall effect")


def test_subgroups_under_a_common_tau2_test_with_metafors_qm() -> None:
    columns = {**COLUMNS, "subgroup": "latitude"}
    lines = texts(layout.forest(data(analysed(columns=columns, subgroup_model="common_tau2",
                                              test="knha")), "sub"))  # fmt: skip
    assert "Test for subgroup differences (common τ²): F(1, 11) = 2.34, p = 0.15" in lines
    lines = texts(layout.forest(data(analysed(columns=columns, subgroup_model="common_tau2")),
                                "sub"))  # fmt: skip
    test = next(t for t in lines if t.startswith("Test for subgroup differences"))
    assert test.startswith("Test for subgroup differences (common τ²): QM(1) = ")


def test_the_test_of_moderators_names_its_terms_when_not_all() -> None:
    lines = texts(layout.forest(data(analysed(moderators=["ablat", "year"])), "m"))
    assert lines[-1].startswith("Test of moderators: QM(2) = ")
    lines = texts(layout.forest(data(analysed(moderators=["ablat", "year"],
                                              test_terms=["year"])), "m"))  # fmt: skip
    assert lines[-1].startswith("Test of moderators (year): QM(1) = ")


# --------------------------------------------------------------------------- drawing


def test_render_writes_png_and_svg_for_each_kind(tmp_path: Path) -> None:
    written = plots.render(data(bcg_result()), ["forest", "funnel"], tmp_path / "p", "bcg-reml")
    names = [p.name for p in written]
    assert names == [
        "bcg-reml.forest.png",
        "bcg-reml.forest.svg",
        "bcg-reml.funnel.png",
        "bcg-reml.funnel.svg",
    ]
    for path in written:
        content = path.read_bytes()
        if path.suffix == ".png":
            assert content.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in content[:1000]
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == sorted(names)


def test_a_kind_that_cannot_be_drawn_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="no cumulative meta-analysis"):
        plots.render(data(yusuf_mh()), ["forest", "cumulative"], tmp_path, "mh")
    assert list(tmp_path.iterdir()) == []


# Each kind of each of these results is drawn once, by the ``drawn`` fixture, and again by the
# redraw test.
REDRAWN = {
    "reml": {},
    "ablat": {"moderators": ["ablat"]},
    "subgroups": {"columns": {**COLUMNS, "subgroup": "latitude"}},
    "knha-contours": {"test": "knha", "funnel_contours": [95], "cumulative_by": "year"},
}


@dataclasses.dataclass(frozen=True)
class Drawn:
    rendered: dict[str, list[Path]]  # REDRAWN's results, every kind, as files
    drawn: list[tuple[str, int]]  # (what, how many images) of the other results drawn
    rc_before: dict[str, Any]  # matplotlib.rcParams before the first drawing
    rc_after: dict[str, Any]  # ... and after the last


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> Drawn:
    """Every kind drawn once for several results (REDRAWN's, rendered to files, and more in
    memory), with every warning an error; the tests below inspect what it drew."""
    import matplotlib

    base = tmp_path_factory.mktemp("drawn")
    before = dict(matplotlib.rcParams)
    others = [
        # contours change the funnel alone: the other kinds are REDRAWN["reml"]'s
        ("contours", analysed(funnel_contours=[90, 95, 99]), ("funnel",)),
        ("ZCOR", bcg_result("ZCOR"), ("forest", "funnel")),
        ("mh", yusuf_mh(), ("forest", "funnel", "baujat")),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rendered = {
            name: plots.render(data(analysed(**extra)), plots.KINDS, base / name, "bcg")
            for name, extra in REDRAWN.items()
        }
        images = [(name, len(plots.draw(data(r), kinds, name))) for name, r, kinds in others]
    return Drawn(rendered, images, before, dict(matplotlib.rcParams))


@pytest.mark.parametrize("name", REDRAWN)
def test_every_kind_redraws_byte_identically(drawn: Drawn, tmp_path: Path, name: str) -> None:
    first = drawn.rendered[name]
    assert [p.name for p in first] == [f"bcg.{k}.{e}" for k in plots.KINDS for e in ("png", "svg")]
    digests = [sha(p) for p in first]
    assert len(set(digests)) == len(digests)
    copy = tmp_path / "a"
    copy.mkdir()
    for path in first:
        (copy / path.name).write_bytes(path.read_bytes())
    d = data(analysed(**REDRAWN[name]))
    again = plots.render(d, plots.KINDS, copy, "bcg")  # drawn again, overwriting in place
    assert [sha(p) for p in again] == digests
    assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in first)


def test_outputs_carry_no_timestamp_or_software_version(tmp_path: Path) -> None:
    import matplotlib

    png, svg = (p.read_bytes() for p in plots.render(data(bcg_result()), ["forest"], tmp_path, "b"))
    assert b"Software" not in png
    assert matplotlib.__version__.encode() not in png
    assert b"<dc:date>" not in svg
    assert b"<dc:creator>" not in svg
    assert matplotlib.__version__.encode() not in svg


def test_drawing_leaves_global_matplotlib_state_alone_and_warns_nothing(drawn: Drawn) -> None:
    import matplotlib

    # every warning was an error while ``drawn`` drew: it got here, so none was raised
    assert {name: len(files) for name, files in drawn.rendered.items()} == {
        name: 2 * len(plots.KINDS) for name in REDRAWN
    }
    assert drawn.drawn == [("contours", 2), ("ZCOR", 4), ("mh", 6)]
    assert drawn.rc_after == drawn.rc_before
    assert dict(matplotlib.rcParams) == drawn.rc_before


def test_repeated_kinds_are_drawn_once(tmp_path: Path) -> None:
    written = plots.render(data(bcg_result()), ["funnel", "funnel"], tmp_path, "bcg")
    assert [p.name for p in written] == ["bcg.funnel.png", "bcg.funnel.svg"]


def test_a_result_the_plots_cannot_read_fails_the_run_with_exit_5(
    example: Path, tmp_path: Path, cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosmo_runner.meta import analysis

    real = analysis.analyse

    def without_egger(spec: Any, table: Any) -> dict[str, Any]:
        result = real(spec, table)
        del result["egger"]
        return result

    monkeypatch.setattr(analysis, "analyse", without_egger)
    out = tmp_path / "run"
    proc = cli("run", example, "--out", out)
    assert proc.returncode == 5
    assert proc.stderr == (  # bcg-dl fails the same way
        "cosmo-runner: error: analysis 'bcg-reml': cannot plot the result: /egger is missing "
        "(and 1 more)\n"
    )
    log = load_log(out)
    record = next(a for a in log["analyses"] if a["id"] == "bcg-reml")
    assert record["status"] == "failed" and record["plots"] == [] and record["result"] is None
    assert record["error"] == {
        "type": "PlotDataError",
        "message": "analysis 'bcg-reml': cannot plot the result: /egger is missing",
    }
    assert not (out / "plots" / "bcg-reml.forest.png").exists()
    assert not (out / "results" / "bcg-reml.json").exists()


def test_hand_built_results_stay_complete() -> None:
    """The hand-built result above reads like analyse()'s: every key it has is one analyse
    writes, so the layout tests run on the shape the pipeline passes."""
    from cosmo_runner.meta.analysis import RESULT_KEYS

    assert set(bcg_result()) <= set(RESULT_KEYS)
    assert {p.split("/")[1] for p in REQUIRED} <= set(bcg_result())  # and all the plots read
