"""One BCG run for every sharing test (report, SBOM, crate): tests copy it before changing it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, ROOT, InProcess

sys.path.insert(0, str(ROOT / "scripts"))
from report_screenshot import find_chromium


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Browser tests without Chromium: skipped with the reason, failed when CI=true."""
    if item.get_closest_marker("browser") is None or find_chromium() is not None:
        return
    problem = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI=true but {problem}: the browser test must run in CI", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="session")
def bcg_run(tmp_path_factory: pytest.TempPathFactory, cli: InProcess) -> Path:
    """The BCG example, run once (in process); read it, or copy it to change it."""
    out = tmp_path_factory.mktemp("bcg") / "run"
    proc = cli("run", EXAMPLE / "spec.json", "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out
