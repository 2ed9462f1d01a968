"""Shared helpers: run the CLI in a subprocess, fake installed distributions, check logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bcg"
# A Python specifier the running interpreter is outside of, whichever supported version runs
# the suite (3.11, 3.12 or 3.13): the gate's python check must fail against it.
NOT_THIS_PYTHON = f">={sys.version_info.major}.{sys.version_info.minor + 1}"


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m cosmo_runner ARGS`` in a subprocess (the way users run it)."""
    full_env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cosmo_runner", *map(str, args)],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fake_dist(
    site: Path,
    name: str,
    version: str,
    *,
    requires: list[str] | None = None,
    entry_points: str | None = None,
) -> Path:
    """A ``.dist-info`` folder in ``site`` (put it first on PYTHONPATH to fake an install)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires or []]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return info


class InMemoryDist(metadata.Distribution):
    """A distribution whose metadata files are given as text (for in-process unit tests)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files_ = files

    def read_text(self, filename: str) -> str | None:
        return self.files_.get(filename)

    def locate_file(self, path: str | object) -> Path:
        raise NotImplementedError


def load_log(run_dir: Path) -> dict[str, Any]:
    """A run log, checked against the published schema."""
    from cosmo_runner.schemas import validate_against

    log: dict[str, Any] = json.loads((run_dir / "run_log.json").read_text(encoding="utf-8"))
    problems = validate_against("run_log", log)
    assert problems == [], problems
    return log


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the BCG example; returns its spec path."""
    target = tmp_path / "bcg"
    shutil.copytree(EXAMPLE, target)
    return target / "spec.json"


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test fails the session: nothing is skipped silently there."""
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            reason = (
                report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            )
            print(
                f"\nCI=true: skipped test not allowed: {report.nodeid}: {reason}", file=sys.stderr
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def _records_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every command the tests run caches RECORD hashes in a session temp dir, not in
    ~/.cache/cosmo-runner (each venv copy would leave a cache file there)."""
    previous = os.environ.get("COSMO_CACHE_DIR")
    os.environ["COSMO_CACHE_DIR"] = str(tmp_path_factory.mktemp("records-cache"))
    yield
    if previous is None:
        os.environ.pop("COSMO_CACHE_DIR", None)
    else:
        os.environ["COSMO_CACHE_DIR"] = previous


@pytest.fixture
def venv_copy(tmp_path: Path) -> Any:
    """A hard-linked copy of the test venv to perturb (see tests/envcopy.py)."""
    from tests.envcopy import VenvCopy

    return VenvCopy(tmp_path / "venv")
