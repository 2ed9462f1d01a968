"""Render a run's report.html in headless Chromium (Debian's ``chromium``): a PNG screenshot,
and the page boxes of its plots.

Used by the browser test (tests/share/test_browser.py) and to make the README's screenshot:

    python scripts/report_screenshot.py runs/<id> docs/report-bcg.png --height 1700

Chromium runs with a private profile, no sandbox (CI runs as root), no GPU, scale factor 1
(one CSS pixel is one image pixel) and every host name resolving to nothing, so a page that
tried to load anything from the network would show it missing.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WIDTH = 1200
TIMEOUT = 120  # seconds; a cold start on a loaded 2-CPU machine takes well under 20
_PROBE = """<script>
window.addEventListener("load", () => {
  const boxes = {};
  document.querySelectorAll("figure.plot").forEach((figure) => {
    const r = figure.querySelector("img").getBoundingClientRect();
    boxes[figure.id] = [r.left + scrollX, r.top + scrollY, r.width, r.height];
  });
  const root = document.documentElement;
  boxes["@page"] = [0, 0, root.scrollWidth, root.scrollHeight];
  const pre = document.createElement("pre");
  pre.id = "cosmo-probe";
  pre.style.position = "absolute";
  pre.style.left = "-99999px";
  pre.textContent = JSON.stringify(boxes);
  document.body.appendChild(pre);
});
</script>
"""


def find_chromium() -> str | None:
    """The Chromium executable on PATH (Debian: ``chromium``), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(args: list[str], width: int, height: int) -> subprocess.CompletedProcess[str]:
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="cosmo-chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--force-device-scale-factor=1",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--virtual-time-budget=10000",
            *args,
        ]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def plot_boxes(report: Path, width: int = WIDTH) -> dict[str, tuple[float, float, float, float]]:
    """Each plot's image box on the page (figure id -> left, top, width, height in CSS
    pixels) and ``@page`` (the whole page), from a copy of the page with a probe script."""
    text = report.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="cosmo-probe-") as work:
        probe = Path(work) / "probe.html"
        probe.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
        dom = _chromium(["--dump-dom", probe.as_uri()], width, 1000).stdout
    match = re.search(r'<pre id="cosmo-probe"[^>]*>(.*?)</pre>', dom, re.S)
    if match is None:
        raise RuntimeError("the probe found no layout (did the page load?)")
    boxes: dict[str, Any] = json.loads(html.unescape(match[1]))
    return {key: tuple(value) for key, value in boxes.items()}


def screenshot(report: Path, png: Path, width: int = WIDTH, height: int | None = None) -> Path:
    """A PNG of ``report`` at ``width`` CSS pixels; ``height`` None: the whole page."""
    if height is None:
        height = int(plot_boxes(report, width)["@page"][3]) + 1
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium([f"--screenshot={png.resolve()}", report.resolve().as_uri()], width, height)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory holding report.html")
    parser.add_argument("png", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--height", type=int, default=None, help="default: the whole page")
    args = parser.parse_args(argv)
    print(screenshot(args.run_dir / "report.html", args.png, args.width, args.height))
    return 0


if __name__ == "__main__":
    sys.exit(main())
