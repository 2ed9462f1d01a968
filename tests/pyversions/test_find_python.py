"""scripts/find_python.sh asks pyenv for an interpreter, and says why when it cannot."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

FIND = ROOT / "scripts" / "find_python.sh"


def fake_pyenv(bin_dir: Path, versions: list[str], interpreters: Path) -> None:
    """A ``pyenv`` answering ``versions --bare`` and ``which python3`` (by $PYENV_VERSION)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    listing = "\\n".join(versions)
    script = f"""#!/bin/sh
case "$1" in
    versions) printf '{listing}\\n' ;;
    which) p="{interpreters}/$PYENV_VERSION/bin/python3"; [ -x "$p" ] && echo "$p" || exit 127 ;;
    *) exit 1 ;;
esac
"""
    path = bin_dir / "pyenv"
    path.write_text(script, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def interpreter(interpreters: Path, version: str) -> Path:
    path = interpreters / version / "bin" / "python3"
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def find(minor: str, bin_dir: Path | None) -> subprocess.CompletedProcess[str]:
    # Only the fake pyenv (if any) and the basic tools are on PATH.
    path = ([str(bin_dir)] if bin_dir else []) + ["/usr/bin", "/bin"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYENV")}
    env["PATH"] = os.pathsep.join(path)
    return subprocess.run(
        [str(FIND), minor], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_the_newest_plain_cpython_of_the_minor_is_chosen(tmp_path: Path) -> None:
    versions = ["3.11.7", "3.12.1", "3.12.10", "3.12.9", "3.12.11t", "3.12-dev", "pypy3.12-7.3"]
    for version in versions:
        interpreter(tmp_path / "versions", version)
    fake_pyenv(tmp_path / "bin", versions, tmp_path / "versions")
    proc = find("3.12", tmp_path / "bin")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"{tmp_path / 'versions' / '3.12.10' / 'bin' / 'python3'}\n"


def test_pyenv_lacking_the_minor_exits_4_listing_what_it_has(tmp_path: Path) -> None:
    interpreter(tmp_path / "versions", "3.11.7")
    fake_pyenv(tmp_path / "bin", ["3.11.7", "3.1.5"], tmp_path / "versions")
    proc = find("3.13", tmp_path / "bin")
    assert (proc.returncode, proc.stdout) == (4, "")
    assert proc.stderr == "find_python: pyenv has no Python 3.13 (pyenv versions: 3.11.7 3.1.5 )\n"
    assert find("3.1", tmp_path / "bin").returncode == 4  # 3.1.5 is not 3.11.7's prefix match


def test_listed_but_without_an_interpreter_exits_4(tmp_path: Path) -> None:
    fake_pyenv(tmp_path / "bin", ["3.13.0"], tmp_path / "versions")
    proc = find("3.13", tmp_path / "bin")
    assert proc.returncode == 4
    assert proc.stderr == (
        "find_python: pyenv lists 3.13.0 but 'PYENV_VERSION=3.13.0 pyenv which python3' "
        "gives no interpreter\n"
    )


def test_no_pyenv_exits_3() -> None:
    if (Path("/usr/bin/pyenv").exists()) or Path("/bin/pyenv").exists():
        pytest.fail("a system-wide pyenv in /usr/bin or /bin defeats this test's PATH")
    proc = find("3.12", None)
    assert proc.returncode == 3
    assert proc.stderr == "find_python: pyenv not found on PATH; Python 3.12 not looked for\n"


@pytest.mark.parametrize("argument", ["", "3", "3.12.1", "python3.12", "2.7"])
def test_usage(argument: str) -> None:
    proc = find(argument, None)
    assert (proc.returncode, proc.stderr) == (2, "usage: find_python.sh 3.Y\n")
