"""Interpreters for the cross-version tests (marker ``pyversions``).

One per CPython minor that pyproject.toml's ``requires-python`` admits. The running one is
``sys.executable``; each other is found with pyenv (scripts/find_python.sh) and runs from
its own venv, ``.venv-X.Y``, built by the Makefile (``make venv PYTHON=... VENV=...``) the
first time a test needs it (about a minute) and reused while the lock is unchanged. With
no pyenv at all, the other minors' tests are deselected and listed; pyenv lacking a minor
skips its tests with the reason (a failure with CI=true, as every skip is).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from pyversions import supported_minors

THIS = f"{sys.version_info.major}.{sys.version_info.minor}"
SUPPORTED = supported_minors()
VENV_BUILD_TIMEOUT = 1800  # seconds; a build takes 30-60 s here, more on a loaded machine


@dataclass(frozen=True)
class Interpreter:
    minor: str
    python: Path  # runs cosmo-runner (a venv's python)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without pyenv the other minors cannot be looked for: deselect their tests, say so."""
    if shutil.which("pyenv") is not None:
        return
    keep, drop = [], []
    for item in items:
        minor = item.callspec.params.get("minor") if hasattr(item, "callspec") else None
        (drop if minor is not None and minor != THIS else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            others = sorted({item.callspec.params["minor"] for item in drop})
            reporter.write_line(
                f"pyversions: pyenv not found; Python {', '.join(others)} not compared "
                f"({len(drop)} test(s) deselected)"
            )


@contextmanager
def _build_lock(venv: Path) -> Iterator[None]:
    """One build of a venv at a time across sessions (CI runs several suites at once)."""
    key = hashlib.sha256(str(venv).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"cosmo-venv-{key}.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _venv_for(minor: str) -> Path:
    """``.venv-X.Y`` for pyenv's X.Y, built by ``make venv`` unless it is up to date."""
    found = subprocess.run(
        [str(ROOT / "scripts" / "find_python.sh"), minor],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(found.stderr.strip())
    python = found.stdout.strip()
    venv = ROOT / f".venv-{minor}"
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    with _build_lock(venv):
        built = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(ROOT),
                "venv",
                f"PYTHON={python}",
                f"VENV={venv}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=VENV_BUILD_TIMEOUT,
            check=False,
        )
    assert built.returncode == 0, (
        f"make venv PYTHON={python} VENV={venv} failed (exit {built.returncode}):\n"
        + (built.stdout + built.stderr)[-4000:]
    )
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def interpreters() -> dict[str, Interpreter]:
    """Filled on demand by :func:`interpreter` (a venv is built only for a test that runs)."""
    return {}


@pytest.fixture
def interpreter(minor: str, interpreters: dict[str, Interpreter]) -> Interpreter:
    """The interpreter of the test's ``minor`` parameter."""
    if minor not in interpreters:
        python = Path(sys.executable) if minor == THIS else _venv_for(minor)
        interpreters[minor] = Interpreter(minor, python)
    return interpreters[minor]
