from __future__ import annotations

from pathlib import Path

import pytest

from cosmo_runner.env.lock import parse_pins, read_lock
from cosmo_runner.errors import ManifestError

ROOT = Path(__file__).resolve().parents[2]


def test_runtime_lock_pins_every_dependency_with_exact_versions() -> None:
    lock = read_lock(ROOT / "requirements.lock.txt")
    for name in ("numpy", "scipy", "jsonschema", "matplotlib", "packaging", "setuptools"):
        assert name in lock.pins
    assert len(lock.sha256) == 64


def test_continuations_comments_and_normalised_names() -> None:
    text = "# header\nJsonSchema==4.26.0 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n    # via x\nrpds_py==1.0\n"
    assert parse_pins(text, "x.txt") == {"jsonschema": "4.26.0", "rpds-py": "1.0"}


@pytest.mark.parametrize("line", ["numpy>=2", "numpy", "numpy==2.0,<3", "not a requirement!"])
def test_unpinned_or_garbage_line_is_an_error_naming_the_file(line: str) -> None:
    with pytest.raises(ManifestError, match=r"^x\.txt: "):
        parse_pins(line + "\n", "x.txt")


def test_missing_lock_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"lock file not found: .*nope\.txt"):
        read_lock(tmp_path / "nope.txt")


def test_static_lock_check_passes_and_fails_on_an_unsatisfied_pin(tmp_path: Path) -> None:
    import subprocess
    import sys

    ok = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_lock.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "locks consistent" in ok.stdout
    # A copy of the project whose pyproject asks for a numpy the lock does not satisfy.
    import shutil

    copy = tmp_path / "proj"
    copy.mkdir()
    for name in (
        "pyproject.toml",
        "requirements.lock.txt",
        "requirements-dev.lock.txt",
        "requirements-bench.lock.txt",
        "environment.manifest.json",
    ):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    shutil.copytree(ROOT / "src", copy / "src")
    text = (copy / "pyproject.toml").read_text()
    (copy / "pyproject.toml").write_text(
        text.replace('"numpy>=2.2"', '"numpy>=99"').replace(
            '"packaging>=24",', '"packaging>=24",\n    "requests",'
        )
    )
    bad = subprocess.run(
        [sys.executable, str(copy / "scripts" / "check_lock.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert "numpy==" in bad.stderr and "does not satisfy numpy>=99" in bad.stderr
    assert "requests (project.dependencies) is missing" in bad.stderr
