"""Forest, funnel, cumulative and Baujat plots of a meta-analysis, as metafor draws them.

Three steps, one module each:

- :mod:`~cosmo_runner.meta.plots.data`: :class:`PlotData`, what the plots show, built once
  from an analysis result by the one strict converter :meth:`PlotData.from_result`;
- :mod:`~cosmo_runner.meta.plots.layout`: the pure layout of each kind -- sizes, limits,
  ticks, texts, marks -- unit-tested without matplotlib;
- :mod:`~cosmo_runner.meta.plots.drawing`: the layout drawn with matplotlib, as PNG and SVG.

:func:`render` writes ``<stem>.<kind>.png`` and ``<stem>.<kind>.svg`` for each requested kind:

- **Forest plot** (``"forest"``; Lewis & Clarke 2001; metafor ``forest.rma``): one row per
  study with its label, its estimate and confidence interval (a square whose area is
  proportional to the study's weight; a CI reaching far past the rest ends in an arrow), its
  weight in percent and ``estimate [CI]`` as text; the summary diamond with the prediction
  interval drawn as whiskers on its own row beneath it; a dashed reference line at the null;
  a footer with the heterogeneity statistics (tau², I², Q, p) and the test of the overall
  effect. Names and axes come from the measure table (:mod:`cosmo_runner.meta.measures`):
  ratio measures (e.g. RR, OR) are drawn on the log scale with the axis labelled in ratio
  units (metafor's ``atransf=exp``), ZCOR with the axis labelled in correlations
  (``atransf=transf.ztor``); the text columns use the same scale. Meta-regressions have no
  single summary: the studies are shown and the footer says "no single summary; see
  coefficients", with the residual heterogeneity and the test of moderators. Subgroups: a
  block of studies per group with its diamond and heterogeneity, the overall diamond, and
  the test of subgroup differences. MH/PETO double-zero studies (no individual outcome) are
  named in the footer.
- **Funnel plot** (``"funnel"``; Sterne & Egger 2001; metafor ``funnel.rma``): estimates
  against their standard errors (inverted axis, 0 at the top), a vertical line at the pooled
  estimate and the pseudo-confidence region ``estimate ± z · SE`` (white triangle on grey, as
  metafor), with Egger's test above the plot when the result has it. With moderators it is
  centred on the model without moderators (the core keys of the result), and says so.
  Trim-and-fill's filled studies are drawn hollow; with ``funnel_contours`` (e.g. ``[90, 95,
  99]``) it is contour-enhanced (Peters et al. 2008; metafor ``funnel(level=, refline=0)``):
  shaded significance regions around 0, the lines at 0 and at the estimate, and the shades'
  p ranges noted above the plot.
- **Cumulative forest plot** (``"cumulative"``; metafor ``forest(cumul(fit))``): one row per
  step of ``cumulative``, the estimate and CI with the studies up to and including it.
- **Baujat plot** (``"baujat"``; Baujat et al. 2002, metafor ``baujat``): each study's
  squared Pearson residual against its influence on the pooled estimate (from
  ``leave_one_out``), with the study labels.

Importing this package imports no matplotlib: :func:`draw` and :func:`render` load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cosmo_runner.meta.plots import layout
from cosmo_runner.meta.plots.data import PlotData
from cosmo_runner.meta.plots.layout import KINDS, MAX_FOREST_ROWS

__all__ = ["FORMATS", "KINDS", "MAX_FOREST_ROWS", "PlotData", "draw", "render"]

#: Each plot is written in these formats.
FORMATS = ("png", "svg")


def render(data: PlotData, kinds: Sequence[str], plots_dir: Path, stem: str) -> list[Path]:
    """Write the requested plots of ``data`` as PNG and SVG; return the paths written.

    ``kinds`` are :data:`KINDS` (repeats are drawn once); the files are
    ``plots_dir/<stem>.<kind>.png`` and ``.svg``, in the order of ``kinds``, written
    atomically; ``plots_dir`` is created when missing. Raises
    :class:`~cosmo_runner.errors.AnalysisError` for an unknown kind or data a kind cannot
    show (a cumulative plot without a cumulative meta-analysis ...), before writing anything.
    """
    from cosmo_runner.runlog import write_atomic

    drawn = draw(data, kinds, stem)
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in drawn:
        path = plots_dir / name
        write_atomic(path, content)
        written.append(path)
    return written


def draw(data: PlotData, kinds: Sequence[str], stem: str) -> list[tuple[str, bytes]]:
    """The plots of ``data`` as ``(file name, bytes)`` pairs, in :func:`render`'s order; pure
    (no files written). Every layout is made before anything is drawn."""
    from cosmo_runner.meta.plots import drawing

    layouts = {kind: layout.of_kind(data, kind, stem) for kind in dict.fromkeys(kinds)}
    out: list[tuple[str, bytes]] = []
    with drawing.style():
        for kind, lay in layouts.items():
            fig = drawing.figure(lay)
            out += [(f"{stem}.{kind}.{fmt}", drawing.figure_bytes(fig, fmt)) for fmt in FORMATS]
    return out
