"""Drawing: a layout (:mod:`cosmo_runner.meta.plots.layout`) onto a matplotlib figure, and
the figure into PNG and SVG bytes.

Nothing is decided here that the layout has not: this module only turns each layout element
into matplotlib calls (and lets ``MaxNLocator`` pick the ticks where the layout leaves them
to it). The output is byte-identical when the same data is drawn again: the figure is built
on a :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot state machine), with
fonts shipped with matplotlib (DejaVu Sans), all style settings fixed in a local
``rc_context``, PNG metadata without software version, SVG metadata without date or creator
and a fixed SVG hash salt.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator

from cosmo_runner.meta.plots.layout import (
    FONT_SIZE,
    GREY,
    INK,
    NICE_STEPS,
    BaujatLayout,
    CumulativeLayout,
    Diamond,
    EffectAxis,
    ForestLayout,
    FunnelLayout,
    Layout,
    PredictionBar,
    StudyMark,
    Text,
    tick_label,
)

__all__ = ["figure", "figure_bytes", "style"]

_DPI = 200
_SAVE_METADATA: dict[str, dict[str, Any]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
}


def figure(layout: Layout) -> Figure:
    """The figure of one layout (call inside :func:`style`)."""
    if isinstance(layout, ForestLayout):
        return _forest(layout)
    if isinstance(layout, FunnelLayout):
        return _funnel(layout)
    if isinstance(layout, CumulativeLayout):
        return _cumulative(layout)
    return _baujat(layout)


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _text(target: Any, t: Text, **kw: Any) -> None:
    target.text(
        t.x,
        t.y,
        t.text,
        ha=t.ha,
        va=t.va,
        fontsize=t.size,
        color=t.color,
        fontweight="bold" if t.bold else "normal",
        **kw,
    )


def _nice(lo: float, hi: float, nbins: int) -> list[float]:
    return [float(t) for t in MaxNLocator(nbins=nbins, steps=list(NICE_STEPS)).tick_values(lo, hi)]


def _effect_axis(ax: Axes, axis: EffectAxis) -> None:
    """x limits and ticks of an effect axis (ticks on the shown scale)."""
    ax.set_xlim(axis.lo, axis.hi)
    ticks = axis.ticks
    if ticks is None and axis.kind == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(nbins=7, steps=list(NICE_STEPS)))
    else:
        if ticks is None:  # too few round ratios or correlations: matplotlib's, shown scale
            positions, labels = _shown_nice(axis)
        else:
            positions, labels = [t.position for t in ticks], [t.label for t in ticks]
        ax.xaxis.set_major_locator(FixedLocator(positions))
        ax.set_xticklabels(labels)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel(axis.label)


def _shown_nice(axis: EffectAxis) -> tuple[list[float], list[str]]:
    if axis.kind == "ratio":
        r_lo, r_hi = math.exp(axis.lo), math.exp(axis.hi)
        ratios = [float(f"{t:.6g}") for t in _nice(r_lo, r_hi, 5) if r_lo <= t <= r_hi]
        return [math.log(t) for t in ratios], [tick_label(t) for t in ratios]
    r_lo, r_hi = math.tanh(axis.lo), math.tanh(axis.hi)
    rs = [round(t, 6) for t in _nice(r_lo, r_hi, 5) if r_lo <= t <= r_hi]
    return [math.atanh(t) for t in rs], [tick_label(round(t, 6)) for t in rs]


# --------------------------------------------------------------------------- forest plot


def _forest(lay: ForestLayout) -> Figure:
    fig = _new_figure(lay.width, lay.height)
    y_bottom, y_top = lay.y_range

    ax = fig.add_axes(lay.plot_rect)
    ax.set_ylim(y_bottom, y_top)
    ax.patch.set_visible(False)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.yaxis.set_major_locator(NullLocator())
    ax.yaxis.set_minor_locator(NullLocator())
    _effect_axis(ax, lay.axis)
    ax.spines["bottom"].set_bounds(lay.axis.lo, lay.axis.hi)

    text_ax = fig.add_axes(lay.text_rect)
    text_ax.set_ylim(y_bottom, y_top)
    text_ax.patch.set_visible(False)
    text_ax.set_axis_off()
    text_ax.set_xlim(0.0, lay.width)
    for rule in lay.rules:
        text_ax.add_line(
            Line2D(
                [rule.x0, rule.x1],
                [rule.y, rule.y],
                color=INK,
                linewidth=rule.linewidth,
                clip_on=False,
            )
        )
    for t in lay.texts:
        _text(text_ax, t, clip_on=False)

    # Reference line at the null, drawn over the whole body.
    ax.axvline(lay.null, color=GREY, linestyle=(0, (4, 3)), linewidth=0.8, zorder=1)
    for mark in lay.marks:
        if isinstance(mark, StudyMark):
            _study(ax, mark)
        elif isinstance(mark, Diamond):
            m = mark
            h = m.half_height
            ax.add_patch(
                Polygon(
                    [(m.lb, m.y), (m.estimate, m.y + h), (m.ub, m.y), (m.estimate, m.y - h)],
                    closed=True,
                    facecolor=INK,
                    edgecolor=INK,
                    linewidth=0.6,
                    zorder=3,
                )
            )
        else:
            _prediction(ax, mark)
    for t in lay.footer:
        _text(fig, t)
    return fig


def _study(ax: Axes, s: StudyMark) -> None:
    """A study's CI, ending in an arrow where it leaves the clip range, and its square."""
    lo, hi = s.clip_lo, s.clip_hi
    a, b = max(s.lb, lo), min(s.ub, hi)
    ax.plot([a, b], [s.y, s.y], color=INK, linewidth=0.9, solid_capstyle="butt", zorder=2)
    tick = 0.16
    left, right = s.arrows
    for x, clipped, direction in ((a, left, -1), (b, right, 1)):
        if clipped:
            ax.annotate(
                "",
                xy=(x, s.y),
                xytext=(x - direction * 1e-9 - direction * (hi - lo) * 0.03, s.y),
                arrowprops={
                    "arrowstyle": "-|>,head_length=0.4,head_width=0.2",
                    "color": INK,
                    "linewidth": 0.9,
                    "shrinkA": 0,
                    "shrinkB": 0,
                },
            )
        else:
            ax.plot([x, x], [s.y - tick, s.y + tick], color=INK, linewidth=0.9, zorder=2)
    ax.plot(
        [s.yi],
        [s.y],
        marker="s",
        markersize=s.size,
        color=INK,
        markeredgewidth=0,
        linestyle="none",
        zorder=3,
        clip_on=False,
    )


def _prediction(ax: Axes, m: PredictionBar) -> None:
    ax.plot([m.lb, m.ub], [m.y, m.y], color=INK, linewidth=1.0, solid_capstyle="butt", zorder=3)
    for x in (m.lb, m.ub):
        ax.plot([x, x], [m.y - 0.22, m.y + 0.22], color=INK, linewidth=1.0, zorder=3)
    ax.plot([m.estimate], [m.y], marker="D", markersize=3.5, color=INK, linestyle="none", zorder=3)


# --------------------------------------------------------------------------- funnel plot


def _funnel(lay: FunnelLayout) -> Figure:
    fig = _new_figure(5.6, 4.8)
    ax = fig.add_axes(lay.rect)
    ax.set_facecolor(lay.background)
    se_max, center = lay.se_max, lay.center
    if lay.contours:
        # significance contours around 0 (Peters et al. 2008; metafor's funnel(level=, refline=0))
        for w, shade in lay.contours:
            ax.add_patch(
                Polygon(
                    [(-w, se_max), (0.0, 0.0), (w, se_max)],
                    closed=True,
                    facecolor=shade,
                    edgecolor="none",
                    zorder=1,
                )
            )
        ax.plot([0.0, 0.0], [0.0, se_max], color=GREY, linewidth=0.8, zorder=2)
        if center is not None:
            ax.plot([center, center], [0.0, se_max], color=INK, linewidth=0.9, zorder=2)
    elif center is not None and lay.region is not None:
        half = lay.region
        ax.add_patch(
            Polygon(
                [(center - half, se_max), (center, 0.0), (center + half, se_max)],
                closed=True,
                facecolor="white",
                edgecolor="none",
                zorder=1,
            )
        )
        for sign in (-1, 1):
            ax.plot(
                [center, center + sign * half],
                [0.0, se_max],
                color=INK,
                linewidth=0.8,
                linestyle=(0, (1.5, 2)),
                zorder=2,
            )
        ax.plot([center, center], [0.0, se_max], color=INK, linewidth=0.9, zorder=2)
    ax.plot(
        [x for x, _ in lay.points],
        [se for _, se in lay.points],
        marker="o",
        markersize=4.5,
        color=INK,
        markeredgewidth=0,
        linestyle="none",
        zorder=3,
        clip_on=False,
    )
    if lay.hollow:
        ax.plot(
            [x for x, _ in lay.hollow],
            [se for _, se in lay.hollow],
            marker="o",
            markersize=4.5,
            markerfacecolor="white",
            markeredgecolor=INK,
            markeredgewidth=0.9,
            linestyle="none",
            zorder=3,
            clip_on=False,
        )
    ax.set_ylim(se_max, 0.0)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5, steps=list(NICE_STEPS)))
    ax.set_ylabel("Standard Error")
    _effect_axis(ax, lay.axis)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)
    for note in lay.notes:  # above the axes, never over the data
        _text(fig, note)
    return fig


# --------------------------------------------------------------------------- cumulative, Baujat


def _cumulative(lay: CumulativeLayout) -> Figure:
    fig = _new_figure(lay.width, lay.height)
    ax = fig.add_axes(lay.rect)
    ax.set_ylim(len(lay.steps) + 0.5, 0.5)
    ax.axvline(lay.null, color=GREY, linewidth=0.8, linestyle=(0, (4, 3)), zorder=1)
    for j, (label, est, lb, ub, text) in enumerate(lay.steps, start=1):
        ax.plot([lb, ub], [j, j], color=INK, linewidth=0.9, zorder=2)
        ax.plot([est], [j], marker="o", markersize=4, color=INK, linestyle="none", zorder=3)
        ax.text(
            -0.02,
            j,
            label,
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="center",
            fontsize=FONT_SIZE,
        )
        ax.text(
            1.02,
            j,
            text,
            transform=ax.get_yaxis_transform(),
            ha="left",
            va="center",
            fontsize=FONT_SIZE,
        )
    ax.yaxis.set_major_locator(NullLocator())
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    _effect_axis(ax, lay.axis)
    _text(fig, lay.title)
    return fig


def _baujat(lay: BaujatLayout) -> Figure:
    fig = _new_figure(5.6, 4.8)
    ax = fig.add_axes(lay.rect)
    ax.plot(
        [p[1] for p in lay.points],
        [p[2] for p in lay.points],
        marker="o",
        markersize=4,
        color=INK,
        linestyle="none",
        zorder=3,
    )
    for label, x, y in lay.points:
        ax.annotate(
            label,
            (x, y),
            xytext=(4, 3),
            textcoords="offset points",
            fontsize=FONT_SIZE - 2,
            color=GREY,
        )
    ax.set_xlabel("Squared Pearson Residual (contribution to heterogeneity)")
    ax.set_ylabel("Influence on Overall Result")
    ax.set_xlim(left=0.0, right=lay.x_max)
    ax.set_ylim(bottom=0.0, top=lay.y_max)
    for side in ("right", "top"):
        ax.spines[side].set_visible(False)
    _text(fig, lay.title)
    return fig


# --------------------------------------------------------------------------- output


@contextmanager
def style() -> Iterator[None]:
    """Every setting that shapes the output, so a user's matplotlibrc cannot change the bytes."""
    with matplotlib.rc_context(
        {
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans"],
            "font.size": FONT_SIZE,
            "mathtext.fontset": "dejavusans",
            "text.usetex": False,
            "text.color": INK,
            "axes.edgecolor": INK,
            "axes.labelcolor": INK,
            "axes.linewidth": 0.8,
            "axes.labelsize": FONT_SIZE,
            "axes.unicode_minus": True,
            "xtick.color": INK,
            "ytick.color": INK,
            "xtick.labelsize": FONT_SIZE - 0.5,
            "ytick.labelsize": FONT_SIZE - 0.5,
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


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=_DPI, metadata=_SAVE_METADATA[fmt])
    return buffer.getvalue()
