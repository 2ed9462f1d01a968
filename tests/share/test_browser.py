"""The BCG report in a real browser: headless Chromium renders it, and the page and its plots
are really there.

Where the plots are is measured, not assumed: a copy of the page with a probe script reports
each plot image's box (scripts/report_screenshot.py), and the screenshot of the page itself
(no script) is cut at those boxes. Each region must hold ink and look like the run's own PNG
of that plot (matplotlib's rendering of the same figure), so a blank, broken, swapped or
mis-scaled image fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_screenshot import WIDTH, plot_boxes, screenshot

pytestmark = pytest.mark.browser

#: Pearson correlation of a region with the run's PNG of the same plot, resampled to the
#: region's size. Measured: 0.88 (forest) and 0.94 (funnel); the REML forest against the DL
#: forest, the closest wrong picture, is 0.55, and a forest against a funnel about 0.
SAME_PLOT = 0.75
WHITE = 245  # grey levels above this count as background


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=float)


def test_chromium_renders_the_bcg_report_with_its_plots(bcg_run: Path, tmp_path: Path) -> None:
    report = bcg_run / "report.html"
    boxes = plot_boxes(report)
    png = screenshot(report, tmp_path / "report.png")
    with Image.open(png) as opened:
        page = opened.convert("RGB")
    _, _, width, height = boxes.pop("@page")
    assert width == WIDTH, "the page is wider than the window: something does not wrap"
    assert page.size == (width, int(height) + 1)
    pixels = _grey(page)
    assert (pixels < WHITE).mean() > 0.03 and pixels.std() > 10, "the page is blank"

    assert sorted(boxes) == sorted(
        f"plot-{a}-{k}" for a in ("bcg-reml", "bcg-dl") for k in ("forest", "funnel")
    )
    for figure_id, (left, top, box_width, box_height) in boxes.items():
        assert box_width > 300 and box_height > 300, (figure_id, box_width, box_height)
        # inside the 1-pixel border of the <img>
        region = page.crop(
            (
                round(left) + 1,
                round(top) + 1,
                round(left + box_width) - 1,
                round(top + box_height) - 1,
            )
        )
        shown = _grey(region)
        assert (shown < WHITE).mean() > 0.03, f"{figure_id}: nothing drawn"
        analysis, kind = figure_id.removeprefix("plot-").rsplit("-", 1)
        with Image.open(bcg_run / "plots" / f"{analysis}.{kind}.png") as own:
            expected = _grey(own.resize(region.size, Image.Resampling.LANCZOS))
        similarity = np.corrcoef(shown.ravel(), expected.ravel())[0, 1]
        assert similarity > SAME_PLOT, (figure_id, similarity)
