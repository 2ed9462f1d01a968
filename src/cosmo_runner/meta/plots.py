"""Forest and funnel plots of a meta-analysis result, as metafor's ``forest()`` and ``funnel()``.

:func:`render` takes the result dictionary that :func:`cosmo_runner.meta.analysis.analyse`
returns (the JSON written to ``results/<id>.json``) and writes ``<stem>.<kind>.png`` and
``<stem>.<kind>.svg`` for each requested kind (``"forest"``, ``"funnel"``).

- **Forest plot** (Lewis & Clarke 2001; metafor ``forest.rma``): one row per study with its
  label, its estimate and confidence interval (a square whose area is proportional to the
  study's weight; a CI reaching far past the rest ends in an arrow), its weight in percent
  and ``estimate [CI]`` as text; the summary diamond with the prediction interval drawn as
  whiskers on its own row beneath it; a dashed reference line at the null; a footer with
  the heterogeneity statistics (tau², I², Q, p) and the test of the overall effect. Names and
  axes come from the measure table (:mod:`cosmo_runner.meta.measures`): ratio
  measures (e.g. RR, OR) are drawn on the log scale with the axis labelled in ratio units
  (metafor's ``atransf=exp``), ZCOR with the axis labelled in correlations
  (``atransf=transf.ztor``); the text columns use the same scale.
  Meta-regressions (a result with ``coefficients``) have no single summary: the studies are
  shown and the footer says "no single summary; see coefficients", with the residual
  heterogeneity and the test of moderators. Subgroups: a diamond per subgroup with its
  heterogeneity under it (a block of studies per group when the subgroup entries list their
  ``studies``), the overall diamond, and the test of subgroup differences.
- **Funnel plot** (Sterne & Egger 2001; metafor ``funnel.rma``): estimates against their
  standard errors (inverted axis, 0 at the top), a vertical line at the pooled estimate and
  the pseudo-confidence region ``estimate ± z · SE`` (white triangle on grey, as metafor),
  with Egger's regression test above the plot when the result has it. With moderators it
  is centred on the model without moderators (the core keys of the result), and says so.
  Trim-and-fill's filled studies (``trimfill.filled``) are drawn hollow; with
  ``funnel_contours`` (e.g. ``[90, 95, 99]``) it is contour-enhanced (Peters et al. 2008;
  metafor ``funnel(level=, refline=0)``): shaded significance regions around 0, the lines at
  0 and at the estimate, and the shades' p ranges noted above the plot.
- **Cumulative forest plot** (``"cumulative"``; metafor ``forest(cumul(fit))``): one row per
  step of ``cumulative``, the estimate and CI with the studies up to and including it.
- **Baujat plot** (``"baujat"``; Baujat et al. 2002, metafor ``baujat``): each study's
  squared Pearson residual ``(yi - mu)^2 / (tau2 + vi)`` against its influence on the pooled
  estimate ``(mu_(-i) - mu)^2 / se_(-i)^2`` (from ``leave_one_out``), with the study labels.

The output is byte-identical when the same result is rendered again: the figure is built on
a :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot state machine), with
fonts shipped with matplotlib (DejaVu Sans), all style settings fixed in a local
``rc_context``, PNG metadata without software version, SVG metadata without date or creator
and a fixed SVG hash salt. Files are written atomically (temporary file in the same
directory, fsync, ``os.replace``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.measures import Transform, lookup
from cosmo_runner.runlog import write_atomic

__all__ = ["FORMATS", "KINDS", "MAX_FOREST_ROWS", "render"]

#: The plot kinds an analysis may request.
KINDS = ("forest", "funnel", "cumulative", "baujat")
#: Each plot is written in these formats.
FORMATS = ("png", "svg")
#: Above this many rows a forest plot is no longer legible; ask for a funnel plot instead.
MAX_FOREST_ROWS = 2000

_DPI = 200
_FONT_SIZE = 9.0
_ROW_IN = 0.24  # height of one forest-plot row in inches
_CHAR_IN = 0.62 * _FONT_SIZE / 72.0  # generous width of one character of DejaVu Sans
_MAX_LABEL = 48  # longer study labels are shortened with an ellipsis
_INK = "#000000"
_GREY = "#555555"


_SAVE_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
}

# --------------------------------------------------------------------------- public API


def render(
    result: Mapping[str, Any], kinds: Sequence[str], plots_dir: Path, stem: str
) -> list[Path]:
    """Write the requested plots of ``result`` as PNG and SVG; return the paths written.

    ``kinds`` holds ``"forest"`` and/or ``"funnel"`` (repeats are drawn once); the files
    are ``plots_dir/<stem>.<kind>.png`` and ``.svg``, in the order of ``kinds``.
    ``plots_dir`` is created when missing. Raises :class:`AnalysisError` for an unknown
    kind or a result that cannot be drawn (no studies, non-finite study values).
    """
    return write(draw(result, kinds, stem), plots_dir)


def draw(result: Mapping[str, Any], kinds: Sequence[str], stem: str) -> list[tuple[str, bytes]]:
    """The plots of ``result`` as ``(file name, bytes)`` pairs, in :func:`render`'s order.

    Pure (no files written), so it can run in a worker process (cosmo_runner.plot_pool).
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise AnalysisError(
            f"unknown plot kind {unknown[0]!r} for {stem!r}; known kinds: {', '.join(KINDS)}"
        )
    drawn: list[tuple[str, bytes]] = []
    with _style():
        for kind in dict.fromkeys(kinds):
            fig = _DRAW[kind](result, stem)
            for fmt in FORMATS:
                drawn.append((f"{stem}.{kind}.{fmt}", _figure_bytes(fig, fmt)))
    return drawn


def write(drawn: Sequence[tuple[str, bytes]], plots_dir: Path) -> list[Path]:
    """Write :func:`draw`'s output into ``plots_dir`` (created when missing), atomically."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, data in drawn:
        path = plots_dir / name
        write_atomic(path, data)
        written.append(path)
    return written


# --------------------------------------------------------------------------- model of the data


@dataclass(frozen=True)
class _Study:
    label: str
    yi: float
    vi: float
    weight: float | None  # percent

    @property
    def sei(self) -> float:
        return math.sqrt(self.vi)


@dataclass(frozen=True)
class _Summary:
    label: str
    estimate: float
    ci_lb: float
    ci_ub: float
    pi_lb: float | None
    pi_ub: float | None


@dataclass(frozen=True)
class _Scale:
    """How effects are shown: the measure's name, axis kind and label (the measure table's)."""

    measure: str
    name: str
    axis: str  # "ratio" (log scale, ratio labels), "r" (z scale, r labels) or "linear"
    axis_label: str

    @property
    def null(self) -> float:
        return 0.0

    transform: Transform | None  # the axis labels' units (metafor's atransf); None: linear

    def back(self, x: float) -> float:
        if self.transform is None:
            return x
        return float(self.transform.apply(np.array([x]))[0])


def _scale(result: Mapping[str, Any]) -> _Scale:
    entry = lookup(result.get("measure"))
    shown = None if entry.axis == "linear" else entry.transform
    return _Scale(entry.name, entry.label, entry.axis, entry.axis_label, shown)


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


#: Methods that pool 2x2 tables directly (equal-effects; their names in the plots).
_TABLE_METHODS = {"MH": "Mantel-Haenszel", "PETO": "Peto"}


def _method(block: Mapping[str, Any]) -> str:
    return str(block.get("method") or "").upper()


def _common_effect(block: Mapping[str, Any]) -> bool:
    """An equal-effects model: EE/FE, or a 2x2 pooling method (MH, PETO)."""
    return _method(block) in {"EE", "FE", *_TABLE_METHODS}


def _studies(
    block: Mapping[str, Any], stem: str, *, without_outcome: list[str] | None = None
) -> list[_Study]:
    """The studies with an outcome. Under MH/PETO a double-zero study has none (yi null):
    its label goes to ``without_outcome`` when given, else it is left out."""
    raw = block.get("studies")
    if not raw:
        raise AnalysisError(f"plots for {stem!r}: the result lists no studies")
    studies = []
    for i, entry in enumerate(raw, start=1):
        yi, vi = _float(entry.get("yi")), _float(entry.get("vi"))
        label = str(entry.get("label") if entry.get("label") is not None else i)
        if yi is None and entry.get("vi") is None and _method(block) in _TABLE_METHODS:
            if without_outcome is not None:
                without_outcome.append(label)
            continue
        if yi is None or vi is None or vi <= 0:
            raise AnalysisError(
                f"plots for {stem!r}: study {label!r} has no finite yi and positive vi"
            )
        studies.append(_Study(label, yi, vi, _float(entry.get("weight_percent"))))
    return studies


def _crit(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 200.0)


def _level(result: Mapping[str, Any]) -> float:
    level = _float(result.get("level"))
    return level if level is not None and 0 < level < 100 else 95.0


def _is_regression(block: Mapping[str, Any]) -> bool:
    return bool(block.get("coefficients")) or bool(block.get("moderators"))


def _model_name(block: Mapping[str, Any], *, short: bool = False) -> str:
    method = str(block.get("method") or "")
    pooled = _TABLE_METHODS.get(method.upper())
    if pooled is not None:
        return f"CE model ({method.upper()})" if short else f"Common-effect model ({pooled})"
    if method.upper() in {"EE", "FE"} or (_float(block.get("tau2")) is None and not method):
        return "CE model" if short else "Common-effect model"
    name = "RE model" if short else "Random-effects model"
    return f"{name} ({method})" if method else name


def _summary(block: Mapping[str, Any], label: str) -> _Summary | None:
    est = _float(block.get("estimate"))
    lb, ub = _float(block.get("ci_lb")), _float(block.get("ci_ub"))
    if est is None or lb is None or ub is None or _is_regression(block):
        return None
    pi_lb, pi_ub = _float(block.get("pi_lb")), _float(block.get("pi_ub"))
    if pi_lb is None or pi_ub is None or _common_effect(block):
        pi_lb = pi_ub = None
    return _Summary(label, est, lb, ub, pi_lb, pi_ub)


# --------------------------------------------------------------------------- formatting


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


def _heterogeneity(block: Mapping[str, Any]) -> str:
    parts = []
    tau2 = _float(block.get("tau2"))
    if tau2 is not None and not _common_effect(block):
        parts.append(f"τ² = {_num(tau2, 4 if tau2 < 0.01 else 3)}")
    i2 = _float(block.get("I2"))
    if i2 is not None:
        parts.append(f"I² = {i2:.1f}%")
    q, q_df = _float(block.get("Q")), _float(block.get("Q_df"))
    if q is not None:
        df = f", df = {q_df:.0f}" if q_df is not None else ""
        parts.append(f"Q = {_num(q)}{df}, {_pval(_float(block.get('Q_pval')))}")
    return "Heterogeneity: " + "; ".join(parts) if parts else ""


def _overall_test(block: Mapping[str, Any]) -> str:
    stat = _float(block.get("statistic"))
    if stat is None:
        return ""
    df = _float(block.get("df"))
    test = str(block.get("test") or "z")
    name = f"t({df:.0f})" if df is not None else "z"
    label = _TABLE_METHODS.get(_method(block)) or ("Knapp-Hartung" if test == "knha" else "Wald")
    return (
        f"Test for overall effect ({label}): {name} = {_num(stat)}, "
        f"{_pval(_float(block.get('pval')))}"
    )


def _regression_note(block: Mapping[str, Any]) -> list[str]:
    mods = block.get("moderators")
    names = ", ".join(str(m) for m in mods) if isinstance(mods, Sequence) and mods else ""
    if not names and isinstance(block.get("coefficients"), Sequence):
        terms = [
            str(c.get("term") or c.get("name") or "")
            for c in block["coefficients"]
            if isinstance(c, Mapping)
        ]
        names = ", ".join(t for t in terms if t and t.lower() not in {"intrcpt", "intercept"})
    head = "Mixed-effects meta-regression"
    head += f" on {names}" if names else ""
    head += f" ({block.get('method')})" if block.get("method") else ""
    lines = [head + ": no single summary; see coefficients in the result"]
    parts = []
    # analyse() keeps the core keys for the model without moderators and gives the
    # residual heterogeneity of the meta-regression as moderator_tau2 / moderator_I2.
    tau2 = _float(block.get("moderator_tau2", block.get("tau2")))
    if tau2 is not None and str(block.get("method") or "").upper() not in {"EE", "FE"}:
        parts.append(f"τ² = {_num(tau2, 4 if tau2 < 0.01 else 3)}")
    i2 = _float(block.get("moderator_I2", block.get("I2")))
    if i2 is not None:
        parts.append(f"I² = {i2:.1f}%")
    qe = _float(block.get("QE"))
    if qe is not None:
        qe_df = _float(block.get("QE_df"))
        df = f", df = {qe_df:.0f}" if qe_df is not None else ""
        parts.append(f"QE = {_num(qe)}{df}, {_pval(_float(block.get('QE_pval')))}")
    if parts:
        lines.append("Residual heterogeneity: " + "; ".join(parts))
    parts = []
    qm = _float(block.get("QM"))
    if qm is not None:
        qm_df = [_float(d) for d in block.get("QM_df") or []]
        if len(qm_df) == 2 and None not in qm_df:
            name = f"F({qm_df[0]:.0f}, {qm_df[1]:.0f})"
        elif len(qm_df) == 1 and qm_df[0] is not None:
            name = f"QM({qm_df[0]:.0f})"
        else:
            name = "QM"
        parts.append(f"{name} = {_num(qm)}, {_pval(_float(block.get('QM_pval')))}")
    r2 = _float(block.get("R2"))
    if r2 is not None:
        parts.append(f"R² = {r2:.1f}%")
    if parts:
        lines.append("Test of moderators: " + "; ".join(parts))
    return lines


# --------------------------------------------------------------------------- axes helpers


def _ratio_ticks(lo: float, hi: float) -> list[float]:
    """Nice ratio values whose logs lie in ``[lo, hi]`` (1-2-5, then decades, then finer)."""
    r_lo, r_hi = math.exp(lo), math.exp(hi)
    decades = range(math.floor(math.log10(r_lo)) - 1, math.ceil(math.log10(r_hi)) + 2)
    for mantissas in ((1.0, 2.0, 5.0), (1.0,), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)):
        ticks = [m * 10.0**d for d in decades for m in mantissas]
        ticks = [t for t in ticks if r_lo <= t * (1 + 1e-12) and t <= r_hi * (1 + 1e-12)]
        if 3 <= len(ticks) <= 8:
            return [float(f"{t:.6g}") for t in ticks]
    locator = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    return [float(f"{t:.6g}") for t in locator.tick_values(r_lo, r_hi) if r_lo <= t <= r_hi]


def _r_ticks(lo: float, hi: float) -> list[float]:
    """Correlations whose Fisher z lie in ``[lo, hi]``, at least 1/8 of the axis apart."""
    preferred = [0.0, 0.5, 0.9, 0.99, 0.999, 0.8, 0.2, 0.4, 0.6, 0.7, 0.3, 0.1, 0.95]
    gap = (hi - lo) / 8.0
    chosen: list[float] = []
    for r in preferred:
        for t in dict.fromkeys((r, -r)):
            z = math.atanh(t)
            if lo <= z <= hi and all(abs(z - math.atanh(c)) >= gap for c in chosen):
                chosen.append(t)
    if len(chosen) >= 3:
        return sorted(chosen)
    locator = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])
    r_lo, r_hi = math.tanh(lo), math.tanh(hi)
    return [round(float(t), 6) for t in locator.tick_values(r_lo, r_hi) if r_lo <= t <= r_hi]


def _tick_label(value: float) -> str:
    text = f"{value:g}"
    return text.replace("-", "\N{MINUS SIGN}")


def _set_effect_axis(ax: Any, scale: _Scale, lo: float, hi: float) -> None:
    """x limits ``[lo, hi]`` (model scale) with ticks labelled on the shown scale."""
    ax.set_xlim(lo, hi)
    if scale.axis == "ratio":
        ticks = _ratio_ticks(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator([math.log(t) for t in ticks]))
        ax.set_xticklabels([_tick_label(t) for t in ticks])
    elif scale.axis == "r":
        ticks = _r_ticks(lo, hi)
        ax.xaxis.set_major_locator(FixedLocator([math.atanh(t) for t in ticks]))
        ax.set_xticklabels([_tick_label(round(t, 6)) for t in ticks])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(scale.axis_label)


# --------------------------------------------------------------------------- forest plot


@dataclass
class _Row:
    y: float
    kind: str  # "study", "summary", "pi", "group", "note"
    label: str
    study: _Study | None = None
    summary: _Summary | None = None
    bold: bool = False
    pooled: bool = True  # a summary of the study rows above it (False: a subgroup's diamond)


# Long on purpose (PLR0912, PLR0915): layout from the result JSON until a typed PlotData replaces it
# (issue 12 item 4).
def _forest_rows(result: Mapping[str, Any], stem: str) -> tuple[list[_Row], list[str]]:  # noqa: PLR0912, PLR0915
    """Rows from top to bottom (y decreasing) and the footer lines."""
    rows: list[_Row] = []
    footer: list[str] = []
    y = 0.0

    def add(kind: str, label: str, **kw: Any) -> None:
        nonlocal y
        y -= 1.0
        rows.append(_Row(y, kind, label, **kw))

    def add_summary(summary: _Summary | None) -> None:
        nonlocal y
        if summary is None:
            return
        add("summary", summary.label, summary=summary, bold=True)
        if summary.pi_lb is not None:
            add("pi", "Prediction interval", summary=summary)

    subgroups = result.get("subgroups")
    if (
        isinstance(subgroups, Sequence)
        and subgroups
        and all(isinstance(g, Mapping) and g.get("studies") for g in subgroups)
    ):
        for group in subgroups:
            name = str(group.get("group"))
            add("group", name, bold=True)
            for study in _studies(group, stem):
                add("study", study.label, study=study)
            k = group.get("k", len(group["studies"]))
            add_summary(_summary(group, f"{_model_name(group, short=True)} for subgroup (k = {k})"))
            het = _heterogeneity(group)
            if het:
                add("note", het)
            y -= 0.5
    else:
        without: list[str] = []
        for study in _studies(result, stem, without_outcome=without):
            add("study", study.label, study=study)
        y -= 0.5
        if without:
            footer.append(
                f"Not shown: {len(without)} double-zero "
                f"{'study' if len(without) == 1 else 'studies'} without an individual outcome "
                f"(in the {_TABLE_METHODS[_method(result)]} estimate, not in Q): "
                + ", ".join(without)
            )
        if isinstance(subgroups, Sequence) and subgroups:
            # Subgroup entries without their studies: one diamond per subgroup.
            for group in subgroups:
                if not isinstance(group, Mapping):
                    continue
                k = group.get("k")
                label = f"{group.get('group')}" + (f" (k = {k})" if k is not None else "")
                summary = _summary(group, label)
                if summary is not None:
                    add("summary", label, summary=_without_pi(summary), pooled=False)
                    het = _heterogeneity(group)
                    if het:
                        add("note", het)
            y -= 0.5

    if _is_regression(result):
        footer[:0] = _regression_note(result)
    else:
        overall = _summary(result, _model_label(result))
        add_summary(overall)
        lines = [_heterogeneity(result), _overall_test(result)]
        test = result.get("subgroup_test")
        if isinstance(test, Mapping):
            q = _float(test.get("Q") if test.get("Q") is not None else test.get("QM"))
            df = _float(test.get("df") if test.get("df") is not None else test.get("Q_df"))
            p = _float(test.get("pval") if test.get("pval") is not None else test.get("Q_pval"))
            if q is not None:
                dft = f", df = {df:.0f}" if df is not None else ""
                lines.append(f"Test for subgroup differences: Q = {_num(q)}{dft}, {_pval(p)}")
        footer[:0] = [line for line in lines if line]
    return rows, footer


def _without_pi(summary: _Summary) -> _Summary:
    return _Summary(summary.label, summary.estimate, summary.ci_lb, summary.ci_ub, None, None)


def _summary_weight(rows: Sequence[_Row], index: int) -> str:
    """Weight text of a summary row: the sum of the weights of the studies it pools.

    Blank for the overall summary under subgroups (its weights are not the rows above).
    """
    if not rows[index].pooled:
        return ""
    total = 0.0
    for row in reversed(rows[:index]):
        if row.kind == "summary" and row.pooled:
            return ""
        if row.kind == "group":
            break
        if row.study is not None and row.study.weight is not None:
            total += row.study.weight
    return f"{total:.1f}%"


def _model_label(block: Mapping[str, Any]) -> str:
    name = _model_name(block)
    return name + (", Knapp-Hartung" if block.get("test") == "knha" else "")


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


# Long on purpose (PLR0912, PLR0915): layout and drawing in one function until a pure layout splits
# them (issue 12 item 4).
def _forest(result: Mapping[str, Any], stem: str) -> Figure:  # noqa: PLR0912, PLR0915
    scale = _scale(result)
    level = _level(result)
    crit = _crit(level)
    rows, footer = _forest_rows(result, stem)
    n_studies = sum(row.kind == "study" for row in rows)
    if n_studies > MAX_FOREST_ROWS:
        raise AnalysisError(
            f"forest plot for {stem!r}: {n_studies} studies are more than the "
            f"{MAX_FOREST_ROWS} a forest plot can show legibly; request a funnel plot"
        )
    show_weights = any(row.study is not None and row.study.weight is not None for row in rows)
    lo, hi, clip_lo, clip_hi = _forest_limits(rows, crit)

    # Column texts, to size the columns.
    level_txt = f"{level:g}% CI"
    est_head = f"{scale.name} [{level_txt}]"
    texts: dict[int, tuple[str, str]] = {}
    for i, row in enumerate(rows):
        if row.study is not None:
            s = row.study
            weight = f"{s.weight:.1f}%" if s.weight is not None else ""
            texts[i] = (weight, _est_ci(scale, s.yi, s.yi - crit * s.sei, s.yi + crit * s.sei))
        elif row.kind == "summary" and row.summary is not None:
            m = row.summary
            texts[i] = (
                _summary_weight(rows, i) if show_weights else "",
                _est_ci(scale, m.estimate, m.ci_lb, m.ci_ub),
            )
        elif row.kind == "pi" and row.summary is not None:
            pi_lb, pi_ub = row.summary.pi_lb, row.summary.pi_ub
            if pi_lb is not None and pi_ub is not None:
                texts[i] = ("", f"[{_num(scale.back(pi_lb))}, {_num(scale.back(pi_ub))}]")
    label_chars = max(
        [len("Study")] + [len(r.label) + (1 if r.bold else 0) for r in rows if r.kind != "note"]
    )
    est_chars = max([len(est_head)] + [len(t[1]) for t in texts.values()])

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
    y_bottom = rows[-1].y - 0.9 if rows else -1.0
    n_rows = y_top - y_bottom
    body_h = n_rows * _ROW_IN
    height = margin + header_h + body_h + axis_h + footer_h + margin

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    body_bottom = (margin + footer_h + axis_h) / height
    body_frac = body_h / height

    def add_axes(left_in: float, width_in: float) -> Any:
        ax = fig.add_axes((left_in / width, body_bottom, width_in / width, body_frac))
        ax.set_ylim(y_bottom, y_top)
        ax.patch.set_visible(False)
        return ax

    x_label = margin
    x_plot = margin + label_w
    x_weight = x_plot + plot_w + 0.15

    ax = add_axes(x_plot, plot_w)
    ax.set_ylim(y_bottom, y_top)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.yaxis.set_major_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    _set_effect_axis(ax, scale, lo, hi)
    ax.spines["bottom"].set_bounds(lo, hi)

    text_ax = add_axes(0.0, width)
    text_ax.set_axis_off()
    text_ax.set_xlim(0.0, width)

    # Header.
    header_y = y_top + 0.5 * header_h / _ROW_IN
    text_kw: dict[str, Any] = {"va": "center", "clip_on": False}
    text_ax.text(x_label, header_y, "Study", ha="left", fontweight="bold", **text_kw)
    if show_weights:
        text_ax.text(
            x_weight + weight_w - 0.1, header_y, "Weight", ha="right", fontweight="bold", **text_kw
        )
    text_ax.text(width - margin, header_y, est_head, ha="right", fontweight="bold", **text_kw)
    rule_y = y_top + 0.1
    text_ax.add_line(
        Line2D([margin, width - margin], [rule_y, rule_y], color=_INK, linewidth=0.8, clip_on=False)
    )

    # Reference line at the null, drawn over the whole body.
    ax.axvline(scale.null, color=_GREY, linestyle=(0, (4, 3)), linewidth=0.8, zorder=1)

    weights = [r.study.weight for r in rows if r.study is not None and r.study.weight is not None]
    w_max = max(weights) if weights else 1.0
    diamond_h = 0.36
    summary_rule_drawn = False
    for i, row in enumerate(rows):
        weight_txt, est_txt = texts.get(i, ("", ""))
        grouped = any(r.kind == "group" for r in rows)
        indent = 0.12 if (row.kind in {"study", "note"} and grouped) else 0.0
        if row.kind == "note":  # a subgroup's heterogeneity, small and grey, under its diamond
            text_ax.text(
                x_label + indent,
                row.y,
                row.label,
                ha="left",
                fontsize=_FONT_SIZE - 1.5,
                color=_GREY,
                **text_kw,
            )
            continue
        label = row.label if len(row.label) <= _MAX_LABEL else row.label[: _MAX_LABEL - 1] + "…"
        text_ax.text(
            x_label + indent,
            row.y,
            label,
            ha="left",
            fontweight="bold" if row.bold else "normal",
            **text_kw,
        )
        if weight_txt:
            text_ax.text(
                x_weight + weight_w - 0.1,
                row.y,
                weight_txt,
                ha="right",
                fontweight="bold" if row.bold else "normal",
                **text_kw,
            )
        if est_txt:
            text_ax.text(
                width - margin,
                row.y,
                est_txt,
                ha="right",
                fontweight="bold" if row.bold else "normal",
                **text_kw,
            )
        if row.kind == "study" and row.study is not None:
            s = row.study
            lb, ub = s.yi - crit * s.sei, s.yi + crit * s.sei
            _ci_line(ax, row.y, lb, ub, lo=clip_lo, hi=clip_hi)
            rel = (s.weight / w_max) if s.weight is not None and w_max > 0 else 0.5
            size = 3.0 + 7.0 * math.sqrt(max(rel, 0.0))  # side in points, area ∝ weight
            ax.plot(
                [s.yi],
                [row.y],
                marker="s",
                markersize=size,
                color=_INK,
                markeredgewidth=0,
                linestyle="none",
                zorder=3,
                clip_on=False,
            )
        elif row.kind == "summary" and row.summary is not None:
            m = row.summary
            if not summary_rule_drawn and not any(r.kind == "group" for r in rows):
                ry = row.y + 0.75
                text_ax.add_line(
                    Line2D(
                        [margin, width - margin], [ry, ry], color=_INK, linewidth=0.6, clip_on=False
                    )
                )
                summary_rule_drawn = True
            h = diamond_h
            ax.add_patch(
                Polygon(
                    [
                        (m.ci_lb, row.y),
                        (m.estimate, row.y + h),
                        (m.ci_ub, row.y),
                        (m.estimate, row.y - h),
                    ],
                    closed=True,
                    facecolor=_INK,
                    edgecolor=_INK,
                    linewidth=0.6,
                    zorder=3,
                )
            )
        elif row.kind == "pi" and row.summary is not None:
            m = row.summary
            if m.pi_lb is not None and m.pi_ub is not None:
                ax.plot(
                    [m.pi_lb, m.pi_ub],
                    [row.y, row.y],
                    color=_INK,
                    linewidth=1.0,
                    solid_capstyle="butt",
                    zorder=3,
                )
                for x in (m.pi_lb, m.pi_ub):
                    ax.plot(
                        [x, x], [row.y - 0.22, row.y + 0.22], color=_INK, linewidth=1.0, zorder=3
                    )
                ax.plot(
                    [m.estimate],
                    [row.y],
                    marker="D",
                    markersize=3.5,
                    color=_INK,
                    linestyle="none",
                    zorder=3,
                )

    # Footer: model and heterogeneity, left-aligned under the axis.
    for j, line in enumerate(footer):
        fig.text(
            margin / width,
            (margin + footer_h - 0.12 - 0.17 * j) / height,
            line,
            ha="left",
            va="center",
            fontsize=_FONT_SIZE - 0.5,
            color=_INK,
        )
    return fig


def _ci_line(ax: Any, y: float, lb: float, ub: float, *, lo: float, hi: float) -> None:
    """A study's CI from ``lb`` to ``ub``, ending in an arrow where it leaves ``[lo, hi]``."""
    a, b = max(lb, lo), min(ub, hi)
    ax.plot([a, b], [y, y], color=_INK, linewidth=0.9, solid_capstyle="butt", zorder=2)
    tick = 0.16
    for x, clipped, direction in ((a, lb < lo, -1), (b, ub > hi, 1)):
        if clipped:
            ax.annotate(
                "",
                xy=(x, y),
                xytext=(x - direction * 1e-9 - direction * (hi - lo) * 0.03, y),
                arrowprops={
                    "arrowstyle": "-|>,head_length=0.4,head_width=0.2",
                    "color": _INK,
                    "linewidth": 0.9,
                    "shrinkA": 0,
                    "shrinkB": 0,
                },
            )
        else:
            ax.plot([x, x], [y - tick, y + tick], color=_INK, linewidth=0.9, zorder=2)


# --------------------------------------------------------------------------- funnel plot


# Long on purpose (PLR0912, PLR0915): layout and drawing in one function (contours included)
# until a pure layout splits them (issue 12 item 4).
def _funnel(result: Mapping[str, Any], stem: str) -> Figure:  # noqa: PLR0912, PLR0915
    scale = _scale(result)
    level = _level(result)
    crit = _crit(level)
    studies = _studies(result, stem)
    regression = _is_regression(result)
    residuals = [_float(s.get("residual")) for s in result.get("studies", [])]
    use_residuals = regression and all(r is not None for r in residuals)
    xs = [r for r in residuals if r is not None] if use_residuals else [s.yi for s in studies]
    ses = [s.sei for s in studies]
    filled = _filled(result) if not use_residuals else []
    contours = sorted(
        {lv for lv in map(_float, result.get("funnel_contours") or []) if lv and 0 < lv < 100}
    )
    # With moderators, analyse() keeps the model without moderators in the core keys: the
    # funnel is drawn around its estimate (metafor draws residuals when a result has them).
    center = 0.0 if use_residuals else _float(result.get("estimate"))

    se_max = max([*ses, *(se for _, se in filled)]) * 1.05
    fig = Figure(figsize=(5.6, 4.8), dpi=_DPI)
    FigureCanvasAgg(fig)
    notes = []
    if regression and not use_residuals:
        notes.append(
            "centred on the model without moderators"
            if center is not None
            else "meta-regression: observed effects, no pooled estimate"
        )
    egger = result.get("egger")
    egger_stat = _float(egger.get("statistic")) if isinstance(egger, Mapping) else None
    if isinstance(egger, Mapping) and egger_stat is not None:
        egger_df = _float(egger.get("df"))
        name = f"t({egger_df:.0f})" if egger_df is not None else "z"
        notes.append(
            f"Egger's test: {name} = {_num(egger_stat)}, {_pval(_float(egger.get('pval')))}"
        )
    trimfill = result.get("trimfill")
    if filled and isinstance(trimfill, Mapping):
        est = _float(trimfill.get("estimate"))
        notes.append(
            f"Trim-and-fill: {len(filled)} filled on the {trimfill.get('side')} (hollow)"
            + (f"; estimate {_num(scale.back(est))}" if est is not None else "")
        )
    if contours:
        label = "Contours around 0: " + ", ".join(
            f"{shade}: p {rng}" for shade, rng in _contour_legend(contours)
        )
    else:
        label = f"{level:g}% pseudo-confidence region" if center is not None else ""
    if label:
        notes.insert(0, label)
    top = 0.975 - 0.045 * len(notes)
    ax = fig.add_axes((0.14, 0.12, 0.82, top - 0.12))
    ax.set_facecolor("#d9d9d9")

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
    lo, hi = lo - pad, hi + pad

    if contours:
        # significance contours around 0 (Peters et al. 2008; metafor's funnel(level=, refline=0))
        ax.set_facecolor(_CONTOUR_SHADES[min(len(contours), len(_CONTOUR_SHADES) - 1)])
        for j, lv in reversed(list(enumerate(contours))):
            w = _crit(lv) * se_max
            ax.add_patch(
                Polygon(
                    [(-w, se_max), (0.0, 0.0), (w, se_max)], closed=True,
                    facecolor=_CONTOUR_SHADES[j], edgecolor="none", zorder=1,
                )
            )  # fmt: skip
        ax.plot([0.0, 0.0], [0.0, se_max], color=_GREY, linewidth=0.8, zorder=2)
        if center is not None:
            ax.plot([center, center], [0.0, se_max], color=_INK, linewidth=0.9, zorder=2)
    elif center is not None:
        region = Polygon(
            [(center - half, se_max), (center, 0.0), (center + half, se_max)],
            closed=True,
            facecolor="white",
            edgecolor="none",
            zorder=1,
        )
        ax.add_patch(region)
        for sign in (-1, 1):
            ax.plot(
                [center, center + sign * half],
                [0.0, se_max],
                color=_INK,
                linewidth=0.8,
                linestyle=(0, (1.5, 2)),
                zorder=2,
            )
        ax.plot([center, center], [0.0, se_max], color=_INK, linewidth=0.9, zorder=2)
    ax.plot(
        xs,
        ses,
        marker="o",
        markersize=4.5,
        color=_INK,
        markeredgewidth=0,
        linestyle="none",
        zorder=3,
        clip_on=False,
    )
    if filled:
        ax.plot(
            [x for x, _ in filled], [se for _, se in filled], marker="o", markersize=4.5,
            markerfacecolor="white", markeredgecolor=_INK, markeredgewidth=0.9,
            linestyle="none", zorder=3, clip_on=False,
        )  # fmt: skip

    ax.set_ylim(se_max, 0.0)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.set_ylabel("Standard Error")
    if use_residuals:
        ax.set_xlim(lo, hi)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]))
        ax.set_xlabel("Residual Value")
    else:
        _set_effect_axis(ax, scale, lo, hi)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)

    # Notes above the axes, never over the data.
    for j, note in enumerate(notes):
        fig.text(
            0.96, 0.995 - 0.045 * j, note, ha="right", va="top", fontsize=_FONT_SIZE - 1, color=_INK
        )
    return fig


#: Shades of a contour-enhanced funnel, innermost first (metafor's white, gray55, gray75 ...).
_CONTOUR_SHADES = ("#ffffff", "#8c8c8c", "#bfbfbf", "#e0e0e0", "#f0f0f0")


def _contour_legend(levels: Sequence[float]) -> list[tuple[str, str]]:
    """(shade name, p range) from the innermost region outwards."""
    names = ("white", "dark grey", "grey", "light grey", "lightest grey")
    alphas = [round(1.0 - lv / 100.0, 6) for lv in levels]
    out = [(names[0], f"> {alphas[0]:g}")]
    for j in range(1, len(alphas)):
        out.append((names[min(j, len(names) - 1)], f"{alphas[j]:g}-{alphas[j - 1]:g}"))
    out.append((names[min(len(alphas), len(names) - 1)], f"< {alphas[-1]:g}"))
    return out


def _filled(result: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Trim-and-fill's filled studies as (yi, sei)."""
    trimfill = result.get("trimfill")
    if not isinstance(trimfill, Mapping):
        return []
    out = []
    for entry in trimfill.get("filled") or []:
        yi, vi = _float(entry.get("yi")), _float(entry.get("vi"))
        if yi is not None and vi is not None and vi > 0:
            out.append((yi, math.sqrt(vi)))
    return out


def _cumulative(result: Mapping[str, Any], stem: str) -> Figure:
    """Cumulative forest plot: each row the estimate and CI with the studies up to it
    (metafor's forest(cumul(fit)))."""
    rows = result.get("cumulative")
    if not isinstance(rows, Sequence) or not rows:
        raise AnalysisError(
            f"cumulative plot for {stem!r}: the result has no cumulative meta-analysis "
            "(see its warnings)"
        )
    scale = _scale(result)
    level = _level(result)
    entries = []
    for row in rows:
        est, lb, ub = (_float(row.get(key)) for key in ("estimate", "ci_lb", "ci_ub"))
        if est is None or lb is None or ub is None:
            raise AnalysisError(f"cumulative plot for {stem!r}: row {row.get('label')!r} has no CI")
        entries.append((str(row.get("label")), est, lb, ub))
    if len(entries) > MAX_FOREST_ROWS:
        raise AnalysisError(
            f"cumulative plot for {stem!r}: {len(entries)} rows are more than {MAX_FOREST_ROWS}"
        )
    n = len(entries)
    label_w = min(max(len(e[0]) for e in entries) + 2, _MAX_LABEL) * _CHAR_IN + 0.3
    texts = [_est_ci(scale, est, lb, ub) for _, est, lb, ub in entries]
    text_w = max(len(t) for t in [*texts, "xx [95% CI]"]) * _CHAR_IN + 0.3
    width, height = label_w + 3.4 + text_w + 0.3, 0.9 + _ROW_IN * (n + 1) + 0.6
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    bottom, top = 0.6 / height, 1.0 - 0.5 / height
    ax = fig.add_axes((label_w / width, bottom, 3.4 / width, top - bottom))
    lo = min([0.0, *(e[2] for e in entries)])
    hi = max([0.0, *(e[3] for e in entries)])
    pad = 0.05 * max(hi - lo, 0.2)
    ax.set_ylim(n + 0.5, 0.5)
    ax.axvline(scale.null, color=_GREY, linewidth=0.8, linestyle=(0, (4, 3)), zorder=1)
    for j, (label, est, lb, ub) in enumerate(entries, start=1):
        ax.plot([lb, ub], [j, j], color=_INK, linewidth=0.9, zorder=2)
        ax.plot([est], [j], marker="o", markersize=4, color=_INK, linestyle="none", zorder=3)
        ax.text(-0.02, j, ("+ " if j > 1 else "") + label, transform=ax.get_yaxis_transform(),
                ha="right", va="center", fontsize=_FONT_SIZE)  # fmt: skip
        ax.text(1.02, j, texts[j - 1], transform=ax.get_yaxis_transform(), ha="left",
                va="center", fontsize=_FONT_SIZE)  # fmt: skip
    ax.yaxis.set_major_locator(NullLocator())
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    _set_effect_axis(ax, scale, lo - pad, hi + pad)
    fig.text(0.01, 1.0 - 0.2 / height, f"Cumulative meta-analysis ({_model_name(result)}), "
             f"{level:g}% CI; each row adds the study named", fontsize=_FONT_SIZE, va="top")  # fmt: skip
    return fig


def _baujat(result: Mapping[str, Any], stem: str) -> Figure:
    """Baujat plot (Baujat et al. 2002; metafor's ``baujat``): each study's squared Pearson
    residual ``(yi - mu)^2 / (tau2 + vi)`` against its influence on the pooled estimate,
    ``(mu_(-i) - mu)^2 / se_(-i)^2``, from the result's leave-one-out refits."""
    loo = result.get("leave_one_out")
    mu, tau2 = _float(result.get("estimate")), _float(result.get("tau2")) or 0.0
    if not isinstance(loo, Sequence) or not loo or mu is None:
        raise AnalysisError(
            f"baujat plot for {stem!r}: the result has no leave-one-out refits (see its warnings)"
        )
    points = []
    for study, row in zip(result.get("studies") or [], loo, strict=False):
        yi, vi = _float(study.get("yi")), _float(study.get("vi"))
        est, se = _float(row.get("estimate")), _float(row.get("se"))
        if yi is None or vi is None or est is None or se is None or se <= 0:
            continue  # no outcome (an MH double zero) or no refit without it
        points.append(
            (str(study.get("label")), (yi - mu) ** 2 / (tau2 + vi), (est - mu) ** 2 / se**2)
        )
    if not points:
        raise AnalysisError(f"baujat plot for {stem!r}: no study has an outcome and a refit")
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    fig = Figure(figsize=(5.6, 4.8), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, 0.12, 0.66, 0.78))
    ax.plot(xs, ys, marker="o", markersize=4, color=_INK, linestyle="none", zorder=3)
    for label, x, y in points:
        ax.annotate(label[:_MAX_LABEL], (x, y), xytext=(4, 3), textcoords="offset points",
                    fontsize=_FONT_SIZE - 2, color=_GREY)  # fmt: skip
    ax.set_xlabel("Squared Pearson Residual (contribution to heterogeneity)")
    ax.set_ylabel("Influence on Overall Result")
    ax.set_xlim(left=0.0, right=max(xs) * 1.15 if max(xs) > 0 else 1.0)
    ax.set_ylim(bottom=0.0, top=max(ys) * 1.15 if max(ys) > 0 else 1.0)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)
    fig.text(0.96, 0.975, f"Baujat plot ({_model_name(result)})", ha="right", va="top",
             fontsize=_FONT_SIZE - 1)  # fmt: skip
    return fig


_DRAW = {"forest": _forest, "funnel": _funnel, "cumulative": _cumulative, "baujat": _baujat}


# --------------------------------------------------------------------------- output


@contextmanager
def _style() -> Iterator[None]:
    # Every setting that shapes the output, so a user's matplotlibrc cannot change the bytes.
    with matplotlib.rc_context(
        {
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans"],
            "font.size": _FONT_SIZE,
            "mathtext.fontset": "dejavusans",
            "text.usetex": False,
            "text.color": _INK,
            "axes.edgecolor": _INK,
            "axes.labelcolor": _INK,
            "axes.linewidth": 0.8,
            "axes.labelsize": _FONT_SIZE,
            "axes.unicode_minus": True,
            "xtick.color": _INK,
            "ytick.color": _INK,
            "xtick.labelsize": _FONT_SIZE - 0.5,
            "ytick.labelsize": _FONT_SIZE - 0.5,
            "xtick.direction": "out",
            "ytick.direction": "out",
            "lines.antialiased": True,
            "patch.antialiased": True,
            "path.simplify": False,
            "svg.fonttype": "path",
            "svg.hashsalt": "cosmo-runner",
            "svg.image_inline": True,
            "savefig.dpi": _DPI,
            "savefig.facecolor": "white",
            "savefig.edgecolor": "white",
            "savefig.transparent": False,
            "savefig.bbox": None,
            "savefig.pad_inches": 0.1,
            "figure.facecolor": "white",
            "figure.edgecolor": "white",
            "figure.dpi": 100,
        }
    ):
        yield


def _figure_bytes(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=_DPI, metadata=_SAVE_METADATA[fmt])
    return buffer.getvalue()
