"""Where everything goes: the pure layout of each plot kind, from :class:`PlotData`.

Each function here turns the plot data into a frozen layout -- figure size, axes rectangles,
axis limits and ticks, every text, which marks are drawn and which of them hollow -- with
plain arithmetic and no matplotlib (tests/meta/test_plots.py checks that importing and
running this module imports no matplotlib). :mod:`cosmo_runner.meta.plots.drawing` draws a
layout as it is. Lengths are in inches, positions in figure fractions or in the data
coordinates named at each field; effects are on the model scale (log RR, Fisher's z).

The one choice left to drawing: an axis whose ``ticks`` are ``None`` gets matplotlib's
``MaxNLocator`` (see :data:`NICE_STEPS`) -- a linear axis always, a ratio or correlation axis
when too few round ratios or correlations fall inside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.measures import Transform
from cosmo_runner.meta.plots.data import TABLE_METHODS, Fit, PlotData, Study

__all__ = [
    "CONTOUR_SHADES",
    "FONT_SIZE",
    "GREY",
    "INK",
    "KINDS",
    "MAX_FOREST_ROWS",
    "NICE_STEPS",
    "TEST_NAMES",
    "BaujatLayout",
    "CumulativeLayout",
    "Diamond",
    "EffectAxis",
    "ForestLayout",
    "FunnelLayout",
    "Layout",
    "PredictionBar",
    "Rule",
    "StudyMark",
    "Text",
    "Tick",
    "baujat",
    "cumulative",
    "forest",
    "funnel",
    "of_kind",
]

#: Above this many rows a forest plot is no longer legible; ask for a funnel plot instead.
MAX_FOREST_ROWS = 2000
#: ``MaxNLocator``'s steps wherever matplotlib picks the ticks.
NICE_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)

FONT_SIZE = 9.0
INK = "#000000"
GREY = "#555555"
#: Shades of a contour-enhanced funnel, innermost first (metafor's white, gray55, gray75 ...).
CONTOUR_SHADES = ("#ffffff", "#8c8c8c", "#bfbfbf", "#e0e0e0", "#f0f0f0")
_SHADE_NAMES = ("white", "dark grey", "grey", "light grey", "lightest grey")

_ROW_IN = 0.24  # height of one forest-plot row in inches
_CHAR_IN = 0.62 * FONT_SIZE / 72.0  # generous width of one character of DejaVu Sans
_MAX_LABEL = 48  # longer study labels are shortened with an ellipsis

Rect = tuple[float, float, float, float]  # left, bottom, width, height in figure fractions


# --------------------------------------------------------------------------- layout types


@dataclass(frozen=True)
class Tick:
    position: float  # model scale
    label: str


@dataclass(frozen=True)
class EffectAxis:
    """An effect axis from ``lo`` to ``hi`` (model scale); ``kind`` is the measure's axis
    ("ratio": log scale labelled in ratios, "r": Fisher's z labelled in correlations, or
    "linear"). ``ticks`` ``None``: matplotlib's ``MaxNLocator`` picks them -- on the model
    scale for a linear axis (nbins 7), in ratios or correlations otherwise (nbins 5)."""

    lo: float
    hi: float
    label: str
    kind: str
    ticks: tuple[Tick, ...] | None


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    ha: str = "left"
    va: str = "center"
    bold: bool = False
    size: float = FONT_SIZE
    color: str = INK


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the text columns (inches, row units)."""

    x0: float
    x1: float
    y: float
    linewidth: float


@dataclass(frozen=True)
class StudyMark:
    """A study's square (side ``size`` in points, area proportional to its weight) and CI from
    ``lb`` to ``ub``; where the CI leaves ``[clip_lo, clip_hi]`` it ends in an arrow."""

    y: float
    yi: float
    lb: float
    ub: float
    clip_lo: float
    clip_hi: float
    size: float

    @property
    def arrows(self) -> tuple[bool, bool]:
        """Whether the left and the right end are arrows."""
        return self.lb < self.clip_lo, self.ub > self.clip_hi


@dataclass(frozen=True)
class Diamond:
    y: float
    estimate: float
    lb: float
    ub: float
    half_height: float


@dataclass(frozen=True)
class PredictionBar:
    """The prediction interval as whiskers, with the estimate marked."""

    y: float
    estimate: float
    lb: float
    ub: float


@dataclass(frozen=True)
class ForestLayout:
    """``texts`` are in the text columns' coordinates (x in inches from the left edge, y in
    rows: -1, -2, ... from the top); ``marks`` on the plot axes (x: effect, y: rows), drawn in
    order; ``footer`` in figure fractions."""

    width: float
    height: float
    plot_rect: Rect
    text_rect: Rect
    y_range: tuple[float, float]  # bottom, top
    axis: EffectAxis
    null: float
    texts: tuple[Text, ...]
    rules: tuple[Rule, ...]
    marks: tuple[StudyMark | Diamond | PredictionBar, ...]
    footer: tuple[Text, ...]


@dataclass(frozen=True)
class FunnelLayout:
    """Points are ``(x, se)``; ``hollow`` are trim-and-fill's filled studies. With contours,
    ``contours`` are ``(half width at se_max, shade)`` from the outermost in, on a
    ``background`` of the shade outside them, with a line at 0; without, ``region`` is the
    half width of the pseudo-confidence region around ``center``. ``notes`` in figure
    fractions, above the axes."""

    rect: Rect
    se_max: float
    background: str
    contours: tuple[tuple[float, str], ...]
    center: float | None
    region: float | None
    points: tuple[tuple[float, float], ...]
    hollow: tuple[tuple[float, float], ...]
    axis: EffectAxis
    notes: tuple[Text, ...]


@dataclass(frozen=True)
class CumulativeLayout:
    """Row ``j`` (1, 2, ...) is ``steps[j - 1]``: label, estimate, CI and its text."""

    width: float
    height: float
    rect: Rect
    steps: tuple[tuple[str, float, float, float, str], ...]
    axis: EffectAxis
    null: float
    title: Text


@dataclass(frozen=True)
class BaujatLayout:
    """``points`` are ``(label, squared Pearson residual, influence)``."""

    rect: Rect
    points: tuple[tuple[str, float, float], ...]
    x_max: float
    y_max: float
    title: Text


Layout = ForestLayout | FunnelLayout | CumulativeLayout | BaujatLayout


# --------------------------------------------------------------------------- scale and text


@dataclass(frozen=True)
class _Scale:
    """How effects are shown: the measure's name, axis kind and label (the measure table's)."""

    name: str
    axis: str  # "ratio" (log scale, ratio labels), "r" (z scale, r labels) or "linear"
    axis_label: str
    transform: Transform | None  # the axis labels' units (metafor's atransf); None: linear

    null = 0.0

    def back(self, x: float) -> float:
        if self.transform is None:
            return x
        return float(self.transform.apply(np.array([x]))[0])


def _scale(data: PlotData) -> _Scale:
    entry = data.measure
    shown = None if entry.axis == "linear" else entry.transform
    return _Scale(entry.label, entry.axis, entry.axis_label, shown)


def _crit(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 200.0)


def _num(x: float, digits: int = 2) -> str:
    text = f"{x:.{digits}f}"
    if text.startswith("-") and float(text) == 0:
        text = text[1:]
    return text.replace("-", "\N{MINUS SIGN}")


def _pval(p: float | None) -> str:
    if p is None:
        return "p = n/a"
    if p < 0.0001:
        return "p < 0.0001"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _est_ci(scale: _Scale, est: float, lb: float, ub: float) -> str:
    b = scale.back
    return f"{_num(b(est))} [{_num(b(lb))}, {_num(b(ub))}]"


def _tau2(tau2: float) -> str:
    return f"τ² = {_num(tau2, 4 if tau2 < 0.01 else 3)}"


def _model_name(fit: Fit, *, short: bool = False) -> str:
    method = fit.method.upper()
    pooled = TABLE_METHODS.get(method)
    if pooled is not None:
        return f"CE model ({method})" if short else f"Common-effect model ({pooled})"
    if method in {"EE", "FE"}:
        return "CE model" if short else "Common-effect model"
    name = "RE model" if short else "Random-effects model"
    return f"{name} ({fit.method})"


#: Each test of the fit (``cosmo_runner.meta.TESTS``; a test checks): its name in the test for
#: the overall effect, and what the summary's label adds (its CI is not the z test's).
TEST_NAMES = {
    "z": ("Wald", ""),
    "t": ("Wald-type t", ", t distribution"),
    "knha": ("Knapp-Hartung", ", Knapp-Hartung"),
    "adhoc": ("Knapp-Hartung, ad hoc", ", KH ad hoc"),  # short: labels over 48 characters are cut
}


def _model_label(fit: Fit) -> str:
    return _model_name(fit) + ("" if fit.test is None else TEST_NAMES[fit.test][1])


def _heterogeneity(fit: Fit) -> str:
    parts = []
    if fit.tau2 is not None and not fit.common_effect:
        parts.append(_tau2(fit.tau2))
    if fit.I2 is not None:
        parts.append(f"I² = {fit.I2:.1f}%")
    if fit.Q is not None:
        parts.append(f"Q = {_num(fit.Q)}, df = {fit.Q_df:.0f}, {_pval(fit.Q_pval)}")
    return "Heterogeneity: " + "; ".join(parts) if parts else ""


def _overall_test(fit: Fit) -> str:
    if fit.statistic is None:
        return ""
    name = f"t({fit.df:.0f})" if fit.df is not None else "z"
    pooled = TABLE_METHODS.get(fit.method.upper())
    label = pooled if pooled is not None or fit.test is None else TEST_NAMES[fit.test][0]
    return f"Test for overall effect ({label}): {name} = {_num(fit.statistic)}, {_pval(fit.pval)}"


def _regression_note(data: PlotData) -> list[str]:
    reg = data.regression
    assert reg is not None
    names = ", ".join(reg.terms)
    head = "Mixed-effects meta-regression"
    head += f" on {names}" if names else ""
    head += f" ({data.fit.method})"
    lines = [head + ": no single summary; see coefficients in the result"]
    parts = []
    # analyse() keeps the core keys for the model without moderators and gives the
    # residual heterogeneity of the meta-regression as moderator_tau2 / moderator_I2.
    if reg.tau2 is not None and data.fit.method.upper() not in {"EE", "FE"}:
        parts.append(_tau2(reg.tau2))
    if reg.I2 is not None:
        parts.append(f"I² = {reg.I2:.1f}%")
    if reg.QE is not None:
        parts.append(f"QE = {_num(reg.QE)}, df = {reg.QE_df:.0f}, {_pval(reg.QE_pval)}")
    if parts:
        lines.append("Residual heterogeneity: " + "; ".join(parts))
    parts = []
    if reg.QM is not None:
        df = reg.QM_df
        name = f"F({df[0]:.0f}, {df[1]:.0f})" if len(df) == 2 else f"QM({df[0]:.0f})"
        parts.append(f"{name} = {_num(reg.QM)}, {_pval(reg.QM_pval)}")
    if reg.R2 is not None:
        parts.append(f"R² = {reg.R2:.1f}%")
    if parts:
        # which terms QM tests, when not all of them (metafor's btt)
        of = "" if reg.test_terms == reg.terms else f" ({', '.join(reg.test_terms)})"
        lines.append(f"Test of moderators{of}: " + "; ".join(parts))
    return lines


def _subgroup_test(data: PlotData) -> str:
    """Q-between, or under a common tau2 metafor's QM of the group factor (F with df2)."""
    test = data.subgroup_test
    if test is None or test.Q is None:
        return ""
    if test.model == "separate_tau2":
        stat = f"Q = {_num(test.Q)}, df = {test.df:.0f}"
        return f"Test for subgroup differences: {stat}, {_pval(test.pval)}"
    name = f"F({test.df:.0f}, {test.df2:.0f})" if test.df2 is not None else f"QM({test.df:.0f})"
    return f"Test for subgroup differences (common τ²): {name} = {_num(test.Q)}, {_pval(test.pval)}"


# --------------------------------------------------------------------------- axes


def ratio_ticks(lo: float, hi: float) -> list[float] | None:
    """Round ratios whose logs lie in ``[lo, hi]`` (1-2-5, then decades, then finer), 3 to 8
    of them; ``None`` when no such set fits (matplotlib then picks them)."""
    r_lo, r_hi = math.exp(lo), math.exp(hi)
    decades = range(math.floor(math.log10(r_lo)) - 1, math.ceil(math.log10(r_hi)) + 2)
    for mantissas in ((1.0, 2.0, 5.0), (1.0,), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)):
        ticks = [m * 10.0**d for d in decades for m in mantissas]
        ticks = [t for t in ticks if r_lo <= t * (1 + 1e-12) and t <= r_hi * (1 + 1e-12)]
        if 3 <= len(ticks) <= 8:
            return [float(f"{t:.6g}") for t in ticks]
    return None


def r_ticks(lo: float, hi: float) -> list[float] | None:
    """Correlations whose Fisher z lie in ``[lo, hi]``, at least 1/8 of the axis apart, 3 or
    more; ``None`` when fewer fit (matplotlib then picks them)."""
    preferred = [0.0, 0.5, 0.9, 0.99, 0.999, 0.8, 0.2, 0.4, 0.6, 0.7, 0.3, 0.1, 0.95]
    gap = (hi - lo) / 8.0
    chosen: list[float] = []
    for r in preferred:
        for t in dict.fromkeys((r, -r)):
            z = math.atanh(t)
            if lo <= z <= hi and all(abs(z - math.atanh(c)) >= gap for c in chosen):
                chosen.append(t)
    return sorted(chosen) if len(chosen) >= 3 else None


def tick_label(value: float) -> str:
    return f"{value:g}".replace("-", "\N{MINUS SIGN}")


def _effect_axis(scale: _Scale, lo: float, hi: float) -> EffectAxis:
    ticks: tuple[Tick, ...] | None = None
    if scale.axis == "ratio":
        ratios = ratio_ticks(lo, hi)
        if ratios is not None:
            ticks = tuple(Tick(math.log(t), tick_label(t)) for t in ratios)
    elif scale.axis == "r":
        rs = r_ticks(lo, hi)
        if rs is not None:
            ticks = tuple(Tick(math.atanh(t), tick_label(round(t, 6))) for t in rs)
    return EffectAxis(lo, hi, scale.axis_label, scale.axis, ticks)


# --------------------------------------------------------------------------- forest plot


@dataclass(frozen=True)
class _Summary:
    """A diamond: a model's estimate and CI, with its prediction interval where it has one."""

    label: str
    estimate: float
    ci_lb: float
    ci_ub: float
    pi_lb: float | None
    pi_ub: float | None


@dataclass(frozen=True)
class _Row:
    y: float
    kind: str  # "study", "summary", "pi", "group", "note"
    label: str
    study: Study | None = None
    summary: _Summary | None = None
    bold: bool = False


def _summary(fit: Fit, label: str) -> _Summary | None:
    if fit.estimate is None or fit.ci_lb is None or fit.ci_ub is None:
        return None
    pi_lb, pi_ub = fit.pi_lb, fit.pi_ub
    if pi_lb is None or pi_ub is None or fit.common_effect:
        pi_lb = pi_ub = None
    return _Summary(label, fit.estimate, fit.ci_lb, fit.ci_ub, pi_lb, pi_ub)


def _forest_rows(data: PlotData) -> tuple[list[_Row], list[str]]:
    """Rows from top to bottom (y = -1, -2, ...) and the footer lines."""
    rows: list[_Row] = []
    footer: list[str] = []
    y = 0.0

    def add(kind: str, label: str, **kw: object) -> None:
        nonlocal y
        y -= 1.0
        rows.append(_Row(y, kind, label, **kw))  # type: ignore[arg-type]

    def add_summary(summary: _Summary | None) -> None:
        if summary is not None:
            add("summary", summary.label, summary=summary, bold=True)
            if summary.pi_lb is not None:
                add("pi", "Prediction interval", summary=summary)

    if data.subgroups:
        for group in data.subgroups:
            add("group", group.name, bold=True)
            for study in group.studies:
                add("study", study.label, study=study)
            model = _model_name(group.fit, short=True)
            add_summary(_summary(group.fit, f"{model} for subgroup (k = {group.fit.k})"))
            het = _heterogeneity(group.fit)
            if het:
                add("note", het)
            y -= 0.5
    else:
        for study in data.studies:
            add("study", study.label, study=study)
        y -= 0.5
        without = data.without_outcome
        if without:
            footer.append(
                f"Not shown: {len(without)} double-zero "
                f"{'study' if len(without) == 1 else 'studies'} without an individual outcome "
                f"(in the {TABLE_METHODS[data.fit.method.upper()]} estimate, not in Q): "
                + ", ".join(without)
            )

    if data.regression is not None:
        footer[:0] = _regression_note(data)
    else:
        add_summary(_summary(data.fit, _model_label(data.fit)))
        lines = [_heterogeneity(data.fit), _overall_test(data.fit), _subgroup_test(data)]
        footer[:0] = [line for line in lines if line]
    return rows, footer


def _summary_weight(rows: Sequence[_Row], index: int) -> str:
    """Weight text of a summary row: the sum of the weights of the studies it pools
    (blank for the overall summary under subgroups: its weights are not the rows above)."""
    total = 0.0
    for row in reversed(rows[:index]):
        if row.kind == "summary":
            return ""
        if row.kind == "group":
            break
        if row.study is not None and row.study.weight is not None:
            total += row.study.weight
    return f"{total:.1f}%"


def _forest_limits(rows: Sequence[_Row], crit: float) -> tuple[float, float, float, float]:
    """Axis limits ``(lo, hi)`` plus the span that must be covered ``(core_lo, core_hi)``.

    The axis covers the null, every estimate, every summary CI and PI, and the study CIs
    unless one would stretch the axis by more than half the span of all that on either
    side; such CIs end in an arrow (as RevMan and metafor's ``alim`` do).
    """
    core: list[float] = [0.0]
    wide: list[float] = []
    for row in rows:
        if row.study is not None:
            s = row.study
            core.append(s.yi)
            wide += [s.yi - crit * s.sei, s.yi + crit * s.sei]
        if row.summary is not None:
            m = row.summary
            core += [m.ci_lb, m.ci_ub]
            if m.pi_lb is not None and m.pi_ub is not None:
                core += [m.pi_lb, m.pi_ub]
    c_lo, c_hi = min(core), max(core)
    span = max(c_hi - c_lo, 0.5)
    lo = max(min([*wide, c_lo]), c_lo - 0.5 * span)
    hi = min(max([*wide, c_hi]), c_hi + 0.5 * span)
    pad = 0.04 * (hi - lo)
    return lo - pad, hi + pad, lo, hi


def _short(label: str) -> str:
    return label if len(label) <= _MAX_LABEL else label[: _MAX_LABEL - 1] + "…"


def _column_texts(
    rows: Sequence[_Row], scale: _Scale, crit: float, show_weights: bool
) -> dict[int, tuple[str, str]]:
    """Each row's weight and ``estimate [CI]`` texts, by row index."""
    columns: dict[int, tuple[str, str]] = {}
    for i, row in enumerate(rows):
        if row.study is not None:
            s = row.study
            weight = f"{s.weight:.1f}%" if s.weight is not None else ""
            columns[i] = (weight, _est_ci(scale, s.yi, s.yi - crit * s.sei, s.yi + crit * s.sei))
        elif row.kind == "summary" and row.summary is not None:
            m = row.summary
            columns[i] = (
                _summary_weight(rows, i) if show_weights else "",
                _est_ci(scale, m.estimate, m.ci_lb, m.ci_ub),
            )
        elif row.kind == "pi" and row.summary is not None:
            pi_lb, pi_ub = row.summary.pi_lb, row.summary.pi_ub
            if pi_lb is not None and pi_ub is not None:
                columns[i] = ("", f"[{_num(scale.back(pi_lb))}, {_num(scale.back(pi_ub))}]")
    return columns


@dataclass(frozen=True)
class _Columns:
    """x (inches) of the label column's left edge, the weight column's right edge and the
    estimate column's right edge; the rules run from ``label`` to ``right``."""

    label: float
    weight: float
    right: float


def _body(
    rows: Sequence[_Row],
    columns: dict[int, tuple[str, str]],
    at: _Columns,
    crit: float,
    clip: tuple[float, float],
) -> tuple[list[Text], list[Rule], list[StudyMark | Diamond | PredictionBar]]:
    """The rows' texts, the rule above the summary and the marks, top to bottom."""
    grouped = any(row.kind == "group" for row in rows)
    texts: list[Text] = []
    rules: list[Rule] = []
    marks: list[StudyMark | Diamond | PredictionBar] = []
    weights = [r.study.weight for r in rows if r.study is not None and r.study.weight is not None]
    w_max = max(weights) if weights else 1.0
    for i, row in enumerate(rows):
        weight_txt, est_txt = columns.get(i, ("", ""))
        x = at.label + (0.12 if (row.kind in {"study", "note"} and grouped) else 0.0)
        if row.kind == "note":  # a subgroup's heterogeneity, small and grey, under its diamond
            texts.append(Text(x, row.y, row.label, size=FONT_SIZE - 1.5, color=GREY))
            continue
        texts.append(Text(x, row.y, _short(row.label), bold=row.bold))
        if weight_txt:
            texts.append(Text(at.weight, row.y, weight_txt, ha="right", bold=row.bold))
        if est_txt:
            texts.append(Text(at.right, row.y, est_txt, ha="right", bold=row.bold))
        if row.study is not None:
            s = row.study
            rel = (s.weight / w_max) if s.weight is not None and w_max > 0 else 0.5
            size = 3.0 + 7.0 * math.sqrt(max(rel, 0.0))  # side in points, area ∝ weight
            lb, ub = s.yi - crit * s.sei, s.yi + crit * s.sei
            marks.append(StudyMark(row.y, s.yi, lb, ub, clip[0], clip[1], size))
        elif row.kind == "summary" and row.summary is not None:
            m = row.summary
            if not grouped and not rules:  # a rule above the (first) summary
                rules.append(Rule(at.label, at.right, row.y + 0.75, 0.6))
            marks.append(Diamond(row.y, m.estimate, m.ci_lb, m.ci_ub, 0.36))
        elif row.kind == "pi" and row.summary is not None:
            m = row.summary
            if m.pi_lb is not None and m.pi_ub is not None:
                marks.append(PredictionBar(row.y, m.estimate, m.pi_lb, m.pi_ub))
    return texts, rules, marks


def forest(data: PlotData, stem: str) -> ForestLayout:
    """The forest plot (Lewis & Clarke 2001; metafor ``forest.rma``); see the package doc.

    Raises :class:`~cosmo_runner.errors.AnalysisError` above :data:`MAX_FOREST_ROWS` studies.
    """
    scale = _scale(data)
    crit = _crit(data.level)
    rows, footer = _forest_rows(data)
    n_studies = sum(row.kind == "study" for row in rows)
    if n_studies > MAX_FOREST_ROWS:
        raise AnalysisError(
            f"forest plot for {stem!r}: {n_studies} studies are more than the "
            f"{MAX_FOREST_ROWS} a forest plot can show legibly; request a funnel plot"
        )
    show_weights = any(row.study is not None and row.study.weight is not None for row in rows)
    lo, hi, clip_lo, clip_hi = _forest_limits(rows, crit)

    # Column texts, to size the columns.
    est_head = f"{scale.name} [{data.level:g}% CI]"
    columns = _column_texts(rows, scale, crit, show_weights)
    label_chars = max(
        [len("Study")] + [len(r.label) + (1 if r.bold else 0) for r in rows if r.kind != "note"]
    )
    est_chars = max([len(est_head)] + [len(t[1]) for t in columns.values()])

    # Geometry in inches.
    margin = 0.15
    label_w = min(label_chars, _MAX_LABEL) * _CHAR_IN + 0.15
    plot_w = 3.4
    weight_w = 0.75 if show_weights else 0.0
    est_w = est_chars * _CHAR_IN * 0.95 + 0.1
    width = margin + label_w + plot_w + 0.15 + weight_w + est_w + margin
    footer_chars = max([len(line) for line in footer] + [0])
    extra = footer_chars * _CHAR_IN * 0.92 + 2 * margin - width
    if extra > 0:  # a long footer line widens the plot area, not the gaps
        plot_w += extra
        width += extra
    footer_h = 0.17 * len(footer) + 0.1
    axis_h = 0.55
    header_h = 0.45
    y_top = -0.3  # data coordinates of the body's top (rows are at y = -1, -2, ...)
    y_bottom = rows[-1].y - 0.9
    body_h = (y_top - y_bottom) * _ROW_IN
    height = margin + header_h + body_h + axis_h + footer_h + margin
    body_bottom = (margin + footer_h + axis_h) / height
    body_frac = body_h / height
    x_plot = margin + label_w
    at = _Columns(margin, x_plot + plot_w + 0.15 + weight_w - 0.1, width - margin)

    # Header, then the rows top to bottom.
    header_y = y_top + 0.5 * header_h / _ROW_IN
    texts = [Text(at.label, header_y, "Study", bold=True)]
    if show_weights:
        texts.append(Text(at.weight, header_y, "Weight", ha="right", bold=True))
    texts.append(Text(at.right, header_y, est_head, ha="right", bold=True))
    body, rules, marks = _body(rows, columns, at, crit, (clip_lo, clip_hi))

    # Footer: model and heterogeneity, left-aligned under the axis.
    footer_texts = tuple(
        Text(
            margin / width,
            (margin + footer_h - 0.12 - 0.17 * j) / height,
            line,
            size=FONT_SIZE - 0.5,
        )
        for j, line in enumerate(footer)
    )
    return ForestLayout(
        width=width,
        height=height,
        plot_rect=(x_plot / width, body_bottom, plot_w / width, body_frac),
        text_rect=(0.0, body_bottom, 1.0, body_frac),
        y_range=(y_bottom, y_top),
        axis=_effect_axis(scale, lo, hi),
        null=scale.null,
        texts=(*texts, *body),
        rules=(Rule(at.label, at.right, y_top + 0.1, 0.8), *rules),
        marks=tuple(marks),
        footer=footer_texts,
    )


# --------------------------------------------------------------------------- funnel plot


def contour_legend(levels: Sequence[float]) -> list[tuple[str, str]]:
    """(shade name, p range) from the innermost region outwards."""
    alphas = [round(1.0 - lv / 100.0, 6) for lv in levels]
    names = _SHADE_NAMES
    out = [(names[0], f"> {alphas[0]:g}")]
    for j in range(1, len(alphas)):
        out.append((names[min(j, len(names) - 1)], f"{alphas[j]:g}-{alphas[j - 1]:g}"))
    out.append((names[min(len(alphas), len(names) - 1)], f"< {alphas[-1]:g}"))
    return out


def funnel(data: PlotData, stem: str) -> FunnelLayout:
    """The funnel plot (Sterne & Egger 2001; metafor ``funnel.rma``), contour-enhanced with
    ``funnel_contours`` (Peters et al. 2008); see the package doc."""
    scale = _scale(data)
    crit = _crit(data.level)
    xs = [s.yi for s in data.studies]
    ses = [s.sei for s in data.studies]
    tf = data.trimfill
    filled = [(yi, math.sqrt(vi)) for yi, vi in tf.filled] if tf is not None else []
    contours = data.funnel_contours
    # With moderators, analyse() keeps the model without moderators in the core keys: the
    # funnel is drawn around its estimate.
    center = data.fit.estimate
    se_max = max([*ses, *(se for _, se in filled)]) * 1.05

    notes = []
    if data.regression is not None:
        notes.append(
            "centred on the model without moderators"
            if center is not None
            else "meta-regression: observed effects, no pooled estimate"
        )
    egger = data.egger
    if egger is not None and egger.statistic is not None:
        name = f"t({egger.df:.0f})" if egger.df is not None else "z"
        notes.append(f"Egger's test: {name} = {_num(egger.statistic)}, {_pval(egger.pval)}")
    if filled and tf is not None:
        est = tf.estimate
        notes.append(
            f"Trim-and-fill: {len(filled)} filled on the {tf.side} (hollow)"
            + (f"; estimate {_num(scale.back(est))}" if est is not None else "")
        )
    if contours:
        label = "Contours around 0: " + ", ".join(
            f"{shade}: p {rng}" for shade, rng in contour_legend(contours)
        )
    else:
        label = f"{data.level:g}% pseudo-confidence region" if center is not None else ""
    if label:
        notes.insert(0, label)
    top = 0.975 - 0.045 * len(notes)

    half = crit * se_max
    all_x = [*xs, *(x for x, _ in filled)]
    if contours:
        widest = _crit(contours[-1]) * se_max
        lo, hi = min([*all_x, -widest]), max([*all_x, widest])
    elif center is not None:
        lo = min([*all_x, center - half])
        hi = max([*all_x, center + half])
    else:
        lo, hi = min(all_x), max(all_x)
    pad = 0.06 * max(hi - lo, 0.2)
    shades = CONTOUR_SHADES
    return FunnelLayout(
        rect=(0.14, 0.12, 0.82, top - 0.12),
        se_max=se_max,
        background=shades[min(len(contours), len(shades) - 1)] if contours else "#d9d9d9",
        contours=tuple(
            (_crit(lv) * se_max, shades[j]) for j, lv in reversed(list(enumerate(contours)))
        ),
        center=center,
        region=half if center is not None and not contours else None,
        points=tuple(zip(xs, ses, strict=True)),
        hollow=tuple(filled),
        axis=_effect_axis(scale, lo - pad, hi + pad),
        notes=tuple(
            Text(0.96, 0.995 - 0.045 * j, note, ha="right", va="top", size=FONT_SIZE - 1)
            for j, note in enumerate(notes)
        ),
    )


# --------------------------------------------------------------------------- cumulative, Baujat


def cumulative(data: PlotData, stem: str) -> CumulativeLayout:
    """Cumulative forest plot: each row the estimate and CI with the studies up to it
    (metafor's ``forest(cumul(fit))``)."""
    if not data.cumulative:
        raise AnalysisError(
            f"cumulative plot for {stem!r}: the result has no cumulative meta-analysis "
            "(see its warnings)"
        )
    scale = _scale(data)
    steps = []
    for step in data.cumulative:
        est, lb, ub = step.estimate, step.ci_lb, step.ci_ub
        if est is None or lb is None or ub is None:
            raise AnalysisError(f"cumulative plot for {stem!r}: row {step.label!r} has no CI")
        steps.append((step.label, est, lb, ub, _est_ci(scale, est, lb, ub)))
    n = len(steps)
    label_w = min(max(len(s[0]) for s in steps) + 2, _MAX_LABEL) * _CHAR_IN + 0.3
    # each row after the first adds the study named
    steps = [(("+ " if j else "") + s[0], *s[1:]) for j, s in enumerate(steps)]
    if n > MAX_FOREST_ROWS:
        raise AnalysisError(
            f"cumulative plot for {stem!r}: {n} rows are more than {MAX_FOREST_ROWS}"
        )
    text_w = max(len(t) for t in [*(s[4] for s in steps), "xx [95% CI]"]) * _CHAR_IN + 0.3
    width, height = label_w + 3.4 + text_w + 0.3, 0.9 + _ROW_IN * (n + 1) + 0.6
    bottom, top = 0.6 / height, 1.0 - 0.5 / height
    lo = min([0.0, *(s[2] for s in steps)])
    hi = max([0.0, *(s[3] for s in steps)])
    pad = 0.05 * max(hi - lo, 0.2)
    title = (
        f"Cumulative meta-analysis ({_model_name(data.fit)}), {data.level:g}% CI; "
        "each row adds the study named"
    )
    return CumulativeLayout(
        width=width,
        height=height,
        rect=(label_w / width, bottom, 3.4 / width, top - bottom),
        steps=tuple(steps),
        axis=_effect_axis(scale, lo - pad, hi + pad),
        null=scale.null,
        title=Text(0.01, 1.0 - 0.2 / height, title, va="top"),
    )


def baujat(data: PlotData, stem: str) -> BaujatLayout:
    """Baujat plot (Baujat et al. 2002; metafor's ``baujat``): each study's squared Pearson
    residual ``(yi - mu)^2 / (tau2 + vi)`` against its influence on the pooled estimate,
    ``(mu_(-i) - mu)^2 / se_(-i)^2``, from the result's leave-one-out refits."""
    mu, tau2 = data.fit.estimate, data.fit.tau2 or 0.0
    if not data.leave_one_out or mu is None:
        raise AnalysisError(
            f"baujat plot for {stem!r}: the result has no leave-one-out refits (see its warnings)"
        )
    points = []
    for s, refit in zip(data.studies, data.leave_one_out, strict=True):
        est, se = refit.estimate, refit.se
        if est is None or se is None or se <= 0:
            continue  # no refit without it
        points.append(
            (s.label[:_MAX_LABEL], (s.yi - mu) ** 2 / (tau2 + s.vi), (est - mu) ** 2 / se**2)
        )
    if not points:
        raise AnalysisError(f"baujat plot for {stem!r}: no study has an outcome and a refit")
    x_max, y_max = max(p[1] for p in points), max(p[2] for p in points)
    return BaujatLayout(
        rect=(0.12, 0.12, 0.66, 0.78),
        points=tuple(points),
        x_max=x_max * 1.15 if x_max > 0 else 1.0,
        y_max=y_max * 1.15 if y_max > 0 else 1.0,
        title=Text(
            0.96,
            0.975,
            f"Baujat plot ({_model_name(data.fit)})",
            ha="right",
            va="top",
            size=FONT_SIZE - 1,
        ),
    )


_LAYOUTS: dict[str, Callable[[PlotData, str], Layout]] = {
    "forest": forest,
    "funnel": funnel,
    "cumulative": cumulative,
    "baujat": baujat,
}
#: The plot kinds an analysis may request (the run spec schema's enum; a test checks).
KINDS = tuple(_LAYOUTS)


def of_kind(data: PlotData, kind: str, stem: str) -> Layout:
    """The layout of one plot ``kind`` of ``data`` (``stem`` names it in errors)."""
    if kind not in _LAYOUTS:
        raise AnalysisError(
            f"unknown plot kind {kind!r} for {stem!r}; known kinds: {', '.join(KINDS)}"
        )
    return _LAYOUTS[kind](data, stem)
