"""Forest and funnel plots: files, byte-identical re-renders, axes, special results.

The result dictionaries are built by hand in the shape ``analyse()`` returns, from the BCG
data (metafor's dat.bcg, log risk ratios) and metafor 3.8's REML fit of it (see
shared/metafor-notes.md), so these tests do not depend on the estimators.
"""

from __future__ import annotations

import copy
import hashlib
import math
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import pytest

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import plots

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


def bcg_result(measure: str = "RR") -> dict[str, Any]:
    """metafor: rma(yi, vi, data=escalc("RR", ...dat.bcg)), REML, z test."""
    est, se, tau2 = -0.714532, 0.179782, 0.313243
    return {
        "k": 13,
        "estimate": est,
        "se": se,
        "statistic": est / se,
        "df": None,
        "pval": 7.1e-5,
        "ci_lb": -1.066898,
        "ci_ub": -0.362167,
        "tau2": tau2,
        "tau2_se": 0.166,
        "tau": math.sqrt(tau2),
        "I2": 92.2214,
        "H2": 12.8558,
        "Q": 152.2330,
        "Q_df": 12,
        "Q_pval": 5.6e-26,
        "pi_lb": -1.8667,
        "pi_ub": 0.4376,
        "method": "REML",
        "test": "z",
        "level": 95,
        "measure": measure,
        "converged": True,
        "iterations": 5,
        "studies": [
            {"label": label, "yi": yi, "vi": vi, "weight_percent": w}
            for label, yi, vi, w in BCG_STUDIES
        ],
        "egger": {"statistic": -0.8033, "pval": 0.4218, "limit_estimate": -0.55},
        "transformed": {"estimate": math.exp(est), "ci_lb": 0.3441, "ci_ub": 0.6962},
    }


def regression_result() -> dict[str, Any]:
    """metafor: rma(yi, vi, mods = ~ ablat), REML: no single summary."""
    result = bcg_result()
    result.update(
        estimate=None,
        se=None,
        ci_lb=None,
        ci_ub=None,
        pi_lb=None,
        pi_ub=None,
        tau2=0.076355,
        I2=68.3931,
        QE=30.7331,
        QM=16.3571,
        QM_pval=5.2e-5,
        moderators=["ablat"],
        coefficients=[
            {"term": "intrcpt", "estimate": 0.251464, "se": 0.249104},
            {"term": "ablat", "estimate": -0.029102, "se": 0.007196},
        ],
    )
    return result


def subgroup_result() -> dict[str, Any]:
    """Two subgroups (by allocation, as in metafor's examples) and the overall model."""
    result = bcg_result()
    groups = []
    for name, rows in (("random", BCG_STUDIES[:7]), ("alternate/systematic", BCG_STUDIES[7:])):
        sub = bcg_result()
        sub.update(
            group=name,
            k=len(rows),
            studies=[
                {"label": label, "yi": yi, "vi": vi, "weight_percent": w}
                for label, yi, vi, w in rows
            ],
        )
        groups.append(sub)
    result["subgroups"] = groups
    result["subgroup_test"] = {"Q": 1.23, "df": 1, "pval": 0.267}
    return result


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def texts(fig: Any) -> list[str]:
    """Every text drawn in a figure (figure texts, axes texts, labels)."""
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts]
        out += [ax.get_xlabel(), ax.get_ylabel()]
    return out


def test_render_writes_png_and_svg_for_each_kind(tmp_path: Path) -> None:
    written = plots.render(bcg_result(), ["forest", "funnel"], tmp_path / "plots", "bcg-reml")
    names = [p.name for p in written]
    assert names == [
        "bcg-reml.forest.png",
        "bcg-reml.forest.svg",
        "bcg-reml.funnel.png",
        "bcg-reml.funnel.svg",
    ]
    for path in written:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in data[:1000]
    # No temporary files left behind by the atomic writes.
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(names)


def test_rerender_is_byte_identical_png_and_svg(tmp_path: Path) -> None:
    first = plots.render(bcg_result(), ["forest", "funnel"], tmp_path / "a", "bcg")
    second = plots.render(bcg_result(), ["forest", "funnel"], tmp_path / "b", "bcg")
    assert [sha(p) for p in first] == [sha(p) for p in second]
    # Re-rendering in place (overwriting) gives the same bytes too.
    again = plots.render(bcg_result(), ["forest", "funnel"], tmp_path / "a", "bcg")
    assert [sha(p) for p in again] == [sha(p) for p in second]


def test_outputs_carry_no_timestamp_or_software_version(tmp_path: Path) -> None:
    written = plots.render(bcg_result(), ["forest"], tmp_path, "bcg")
    png, svg = (p.read_bytes() for p in written)
    assert b"Software" not in png
    assert matplotlib.__version__.encode() not in png
    assert b"<dc:date>" not in svg
    assert b"<dc:creator>" not in svg
    assert matplotlib.__version__.encode() not in svg


def test_render_leaves_global_matplotlib_state_alone(tmp_path: Path) -> None:
    before = dict(matplotlib.rcParams)
    plots.render(bcg_result(), ["forest", "funnel"], tmp_path, "bcg")
    assert dict(matplotlib.rcParams) == before


def test_no_warnings(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for result in (bcg_result(), regression_result(), subgroup_result()):
            plots.render(result, ["forest", "funnel"], tmp_path, "x")


def test_ratio_measure_axis_is_log_scale_labelled_in_ratios() -> None:
    fig = plots._forest(bcg_result("RR"), "bcg")
    ax = next(a for a in fig.axes if a.axison)
    ticks = ax.get_xticks()
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "1" in labels
    assert ax.get_xlabel() == "Risk Ratio (log scale)"
    # Ticks sit at the logs of the ratios their labels show.
    for pos, label in zip(ticks, labels, strict=True):
        assert pos == pytest.approx(math.log(float(label.replace("\N{MINUS SIGN}", "-"))))
    # The estimate column is on the ratio scale: exp(-0.7145) = 0.49 [0.34, 0.70].
    assert "0.49 [0.34, 0.70]" in texts(fig)
    assert "[0.15, 1.55]" in texts(fig)  # the prediction interval, back-transformed


def test_difference_measure_axis_is_linear() -> None:
    fig = plots._forest(bcg_result("SMD"), "x")
    ax = next(a for a in fig.axes if a.axison)
    assert ax.get_xlabel() == "Standardized Mean Difference"
    assert "\N{MINUS SIGN}0.71 [\N{MINUS SIGN}1.07, \N{MINUS SIGN}0.36]" in texts(fig)


def test_correlation_axis_is_labelled_in_r() -> None:
    fig = plots._funnel(bcg_result("ZCOR"), "x")
    ax = fig.axes[0]
    labels = [float(t.get_text().replace("\N{MINUS SIGN}", "-")) for t in ax.get_xticklabels()]
    assert all(-1 < r < 1 for r in labels)
    for pos, r in zip(ax.get_xticks(), labels, strict=True):
        assert pos == pytest.approx(math.atanh(r))


def test_forest_has_heterogeneity_line_like_metafor() -> None:
    lines = texts(plots._forest(bcg_result(), "bcg"))
    het = next(t for t in lines if t.startswith("Heterogeneity"))
    assert "τ² = 0.313" in het
    assert "I² = 92.2%" in het
    assert "Q = 152.23, df = 12" in het
    assert "Random-effects model (REML)" in lines
    assert "Prediction interval" in lines


def test_funnel_is_inverted_with_zero_at_top() -> None:
    fig = plots._funnel(bcg_result(), "bcg")
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert top == 0.0
    assert bottom > max(math.sqrt(vi) for _, _, vi, _ in BCG_STUDIES)
    assert ax.get_ylabel() == "Standard Error"
    assert any("Egger" in t for t in texts(fig))


def test_meta_regression_renders_without_a_summary_diamond(tmp_path: Path) -> None:
    written = plots.render(regression_result(), ["forest", "funnel"], tmp_path, "ablat")
    assert len(written) == 4
    lines = texts(plots._forest(regression_result(), "ablat"))
    assert any("see coefficients" in t and "ablat" in t for t in lines)
    assert "Prediction interval" not in lines
    assert not any(t.startswith("Heterogeneity") for t in lines)


def test_subgroups_render_each_group_and_the_test(tmp_path: Path) -> None:
    written = plots.render(subgroup_result(), ["forest"], tmp_path, "sub")
    assert [p.suffix for p in written] == [".png", ".svg"]
    lines = texts(plots._forest(subgroup_result(), "sub"))
    assert "random" in lines
    assert "alternate/systematic" in lines
    assert any(t.startswith("Test for subgroup differences: Q = 1.23, df = 1") for t in lines)


def test_equal_effects_model_has_no_prediction_interval() -> None:
    result = bcg_result()
    result.update(method="EE", tau2=0.0)
    lines = texts(plots._forest(result, "ee"))
    assert "Common-effect model" in lines
    assert "Prediction interval" not in lines


def test_repeated_kinds_are_drawn_once(tmp_path: Path) -> None:
    written = plots.render(bcg_result(), ["funnel", "funnel"], tmp_path, "bcg")
    assert [p.name for p in written] == ["bcg.funnel.png", "bcg.funnel.svg"]


def test_unknown_kind_is_an_analysis_error(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="unknown plot kind 'radial'"):
        plots.render(bcg_result(), ["forest", "radial"], tmp_path, "bcg")
    assert list(tmp_path.iterdir()) == []


def test_result_without_studies_is_an_analysis_error(tmp_path: Path) -> None:
    result = bcg_result()
    result["studies"] = []
    with pytest.raises(AnalysisError, match="lists no studies"):
        plots.render(result, ["funnel"], tmp_path, "empty")


def test_non_finite_study_is_an_analysis_error(tmp_path: Path) -> None:
    result = copy.deepcopy(bcg_result())
    result["studies"][2]["vi"] = float("nan")
    with pytest.raises(AnalysisError, match="Rosenthal et al 1960"):
        plots.render(result, ["forest"], tmp_path, "bad")


def test_too_many_studies_for_a_forest_plot_is_an_analysis_error() -> None:
    result = bcg_result()
    result["studies"] = [
        {"label": str(i), "yi": 0.1, "vi": 0.1, "weight_percent": 0.01}
        for i in range(plots.MAX_FOREST_ROWS + 1)
    ]
    with pytest.raises(AnalysisError, match="funnel"):
        plots._forest(result, "big")


def test_subgroups_without_study_lists_get_one_diamond_each() -> None:
    """analyse() lists the studies once and gives each subgroup its fit (no study list)."""
    result = subgroup_result()
    for group in result["subgroups"]:
        del group["studies"]
    fig = plots._forest(result, "sub")
    lines = texts(fig)
    assert "random (k = 7)" in lines
    assert "alternate/systematic (k = 6)" in lines
    assert "Aronson 1948" in lines
    assert any(t.startswith("Test for subgroup differences") for t in lines)


def bcg_table() -> dict[str, list[str]]:
    import csv

    root = Path(__file__).resolve().parents[2]
    with (root / "examples" / "bcg" / "bcg.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    table = {key: [row[key] for row in rows] for key in rows[0]}
    table["latitude"] = ["high" if float(a) >= 30 else "low" for a in table["ablat"]]
    return table


@pytest.mark.parametrize(
    "extra",
    [{}, {"moderators": ["ablat"]}, {"columns_subgroup": "latitude"}, {"test": "knha"}],
    ids=["reml", "ablat", "subgroups", "knha"],
)
def test_renders_what_analyse_returns_for_bcg(tmp_path: Path, extra: dict[str, Any]) -> None:
    from cosmo_runner.meta.analysis import analyse

    columns = {"ai": "tpos", "bi": "tneg", "ci": "cpos", "di": "cneg", "study": "study"}
    if "columns_subgroup" in extra:
        columns["subgroup"] = extra.pop("columns_subgroup")
    spec = {"id": "bcg", "measure": "RR", "columns": columns, "method": "REML", **extra}
    result = analyse(spec, bcg_table())
    first = plots.render(result, ["forest", "funnel"], tmp_path / "a", "bcg")
    second = plots.render(result, ["forest", "funnel"], tmp_path / "b", "bcg")
    assert [sha(p) for p in first] == [sha(p) for p in second]
    lines = texts(plots._forest(result, "bcg"))
    assert "Comstock et al 1976" in lines
    if "moderators" in spec:
        assert any("see coefficients" in t for t in lines)
    elif spec.get("test") == "knha":
        assert "0.49 [0.33, 0.73]" in lines  # metafor knha CI [-1.1084, -0.3206], exp'd
    else:
        assert "0.49 [0.34, 0.70]" in lines  # metafor: exp(-0.7145) [exp(-1.0669), exp(-0.3622)]
