"""``make`` picks the interpreter from PYTHON and refuses an unsupported one up front.

scripts/check_python.sh runs before ``python -m venv``: an old, too new, missing or broken
PYTHON gets one line naming it and pyproject.toml's range, and nothing is installed.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from pyversions import requires_python

RANGE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
HINT = "pass a supported one, e.g. make run PYTHON=python3.12 (README: Which Python)"
THIS = f"{sys.version_info.major}.{sys.version_info.minor}"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """``make ARGS`` at the repository root, without an outer make's or the shell's PYTHON."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    env.pop("PYTHON", None)
    env.pop("VENV", None)
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def fake_python(directory: Path, script: str) -> Path:
    """An executable ``python3`` that runs ``script`` (sh) whatever it is asked."""
    path = directory / "python3"
    path.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("cosmo-runner: error:")]


@pytest.mark.parametrize("version", ["3.10.13", "2.7.18", "3.14.0", "4.0.0"])
def test_unsupported_version_is_refused_before_anything_is_installed(
    tmp_path: Path, version: str
) -> None:
    python = fake_python(tmp_path, f"echo {version}")
    venv = tmp_path / "venv"
    proc = make("venv", f"PYTHON={python}", f"VENV={venv}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert error_lines(proc) == [
        f"cosmo-runner: error: PYTHON={python} is Python {version}; cosmo-runner needs Python "
        f"{RANGE} (pyproject.toml requires-python); nothing was installed; {HINT}"
    ]
    assert "-m venv" not in proc.stdout
    assert not venv.exists()


def test_missing_interpreter_is_named(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    proc = make("venv", f"PYTHON={tmp_path / 'python3.12'}", f"VENV={venv}")
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"cosmo-runner: error: PYTHON={tmp_path / 'python3.12'}: not found; {HINT}"
    ]
    assert not venv.exists()


@pytest.mark.parametrize(
    ("script", "printed"), [("exit 1", ""), ("echo 'Python 3.12.1'", "Python 3.12.1")]
)
def test_something_that_is_not_python_is_named(tmp_path: Path, script: str, printed: str) -> None:
    python = fake_python(tmp_path, script)
    proc = make("venv", f"PYTHON={python}", f"VENV={tmp_path / 'venv'}")
    assert proc.returncode == 2
    assert error_lines(proc) == [
        f"cosmo-runner: error: PYTHON={python}: does not run as a Python interpreter "
        f"(printed '{printed}'); {HINT}"
    ]
    assert not (tmp_path / "venv").exists()


def test_the_running_interpreter_is_accepted_silently() -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "check_python.sh"), sys.executable],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_an_unreadable_range_is_reported(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "check_python.sh"
    script.write_bytes((ROOT / "scripts" / "check_python.sh").read_bytes())
    script.chmod(0o755)
    (tmp_path / "pyproject.toml").write_text('[project]\nrequires-python = "~=3.11"\n')
    proc = subprocess.run(
        [str(script), sys.executable], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "cosmo-runner: error: pyproject.toml: requires-python clause '~=3.11' is not "
        "'OP X.Y[.Z]' (scripts/check_python.sh reads only that form)"
    ]


def test_default_python3_uses_dot_venv_and_an_explicit_one_its_own(tmp_path: Path) -> None:
    # -n -B: print what would run, as if nothing were built yet; nothing is executed.
    default = make("-n", "-B", "venv")
    assert default.returncode == 0, default.stderr
    assert "python3 -m venv .venv\n" in default.stdout
    python = fake_python(tmp_path, "echo 3.12")
    explicit = make("-n", "-B", "venv", f"PYTHON={python}")
    assert explicit.returncode == 0, explicit.stderr
    assert f"{python} -m venv .venv-3.12\n" in explicit.stdout
    chosen = make("-n", "-B", "venv", f"PYTHON={python}", f"VENV={tmp_path / 'v'}")
    assert f"{python} -m venv {tmp_path / 'v'}\n" in chosen.stdout


def test_the_range_checked_is_the_one_the_project_declares() -> None:
    # The running interpreter is inside requires-python (else pip would not have installed us).
    assert requires_python().contains(f"{THIS}.0")
