from __future__ import annotations

from pathlib import Path

import pytest

from cosmo_runner.env import optional
from cosmo_runner.env.lock import parse_entries, parse_pins, read_lock
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
            '"packaging>=24",', '"packaging>=24",\n    "no-such-dist-xyz",'
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
    assert "no-such-dist-xyz (project.dependencies) is missing" in bad.stderr


MARKED = (
    "a==1.0 ; python_full_version < '3.12' \\\n    --hash=sha256:aa\n"
    "a==2.0 ; python_full_version >= '3.12' \\\n    --hash=sha256:bb\n"
    "winonly==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:cc\n"
    "plain==3.0 \\\n    --hash=sha256:dd\n"
)


@pytest.mark.parametrize(
    ("python", "expected"),
    [("3.11.7", {"a": "1.0", "plain": "3.0"}), ("3.13.0", {"a": "2.0", "plain": "3.0"})],
)
def test_markers_select_the_pins_for_an_interpreter(python: str, expected: dict[str, str]) -> None:
    env = {"python_full_version": python, "python_version": python.rsplit(".", 1)[0]}
    assert parse_pins(MARKED, "x.txt", env) == expected


def test_entries_keep_every_line_with_its_marker() -> None:
    entries = parse_entries(MARKED, "x.txt")
    assert [(p.name, p.version, p.marker) for p in entries][1:3] == [
        ("a", "2.0", "python_full_version >= '3.12'"),
        ("winonly", "0.4.6", "sys_platform == 'win32'"),
    ]


def test_two_applying_pins_of_one_name_are_an_error() -> None:
    with pytest.raises(ManifestError, match=r"x\.txt: a is pinned twice"):
        parse_pins("a==1.0 --hash=sha256:aa\na==2.0 --hash=sha256:bb\n", "x.txt")


def test_without_packaging_marked_pins_are_unevaluated_not_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(optional, "available", lambda name: name != "packaging")
    path = tmp_path / "lock.txt"
    path.write_text(MARKED, encoding="utf-8")
    lock = read_lock(path)
    assert lock.pins == {"plain": "3.0"}
    assert lock.unevaluated == {"a": ("1.0", "2.0"), "winonly": ("0.4.6",)}


def test_false_marker_pin_is_neither_missing_nor_extra(tmp_path: Path) -> None:
    from importlib import metadata

    from cosmo_runner.env.snapshot import lock_drift

    path = tmp_path / "lock.txt"
    path.write_text(MARKED, encoding="utf-8")
    lock = read_lock(path)
    assert "winonly" not in lock.pins and any(p.name == "winonly" for p in lock.entries)
    info = tmp_path / "plain-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plain\nVersion: 2.0\n")
    plain = metadata.PathDistribution(info)
    drift = lock_drift(lock, {"plain": plain})
    assert drift == [
        {"name": "a", "locked": lock.pins["a"], "installed": None},
        {"name": "plain", "locked": "3.0", "installed": "2.0"},
    ]
