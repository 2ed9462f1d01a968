"""Nothing in the image's build assumes one Python version (no engine needed).

The image's Python is its base image's (python:3.11-slim-bookworm or Debian bookworm's by
default; a python:3.12 or 3.13 base works the same, docs/docker.md). So the Dockerfile, the
entrypoint and the build scripts must never name a version-specific path
(``lib/python3.11/site-packages``), interpreter (``python3.11``), ABI tag (``cp311``) or a
version literal (``"3.11"``, ``(3, 11)``). A base image *reference* such as
``python:3.11-slim-bookworm`` is a choice of base, not an assumption, and is allowed.
"""

from __future__ import annotations

import re
import sys

import pytest

from tests.docker.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts" / "docker"))
import image

FILES = sorted(
    [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "entrypoint.sh"]
    + [p for p in (ROOT / "scripts" / "docker").iterdir() if p.is_file()]
)
VERSION_SPECIFIC = [
    ("interpreter or path", re.compile(r"python3\.\d+")),
    ("ABI tag", re.compile(r"\bcp3\d{1,2}\b")),
    ("version literal", re.compile(r"""["']3\.\d{1,2}["']""")),
    ("version tuple", re.compile(r"\(\s*3\s*,\s*\d{1,2}\s*\)")),
    ("pip target version", re.compile(r"--python-version[=\s\"',]+3\.\d")),
]


def findings(text: str, name: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in VERSION_SPECIFIC:
            match = pattern.search(line)
            if match:
                found.append(f"{name}:{number}: {what} {match.group(0)!r}: {line.strip()}")
    return found


def test_the_files_checked_are_the_build_files() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert {"docker/Dockerfile", "docker/entrypoint.sh", "scripts/docker/image.py"} <= names


def test_no_build_file_assumes_a_python_version() -> None:
    found = [
        f
        for path in FILES
        for f in findings(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    ]
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        "RUN rm -rf /opt/venv/lib/python3.11/site-packages/numpy",
        "exec /usr/bin/python3.12 -m cosmo_runner",
        'return [*args, "--python-version", "3.11", "--abi", "cp311"]',
        "if sys.version_info[:2] == (3, 11):",
        "pip download --python-version=3.13 -r lock",
    ],
)
def test_each_kind_of_assumption_is_caught(line: str) -> None:
    assert findings(line, "x") != []


def test_a_base_image_reference_is_not_an_assumption() -> None:
    assert findings("ARG BASE_IMAGE=python:3.11-slim-bookworm", "x") == []


def test_image_py_and_the_dockerfile_default_to_one_base() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert default == image.DEFAULT_BASE


@pytest.mark.parametrize(
    ("python", "abi"), [("3.11", "cp311"), ("3.12.1", "cp312"), ("3.13.0", "cp313")]
)
def test_wheels_are_downloaded_for_the_base_image_python(python: str, abi: str) -> None:
    args = image.platform_args("aarch64", python)
    assert args[-6:] == ["--python-version", python[:4], "--implementation", "cp", "--abi", abi]
    assert "manylinux_2_17_aarch64" in args


@pytest.mark.parametrize(
    ("base", "python"),
    [
        ("python:3.13-slim-bookworm", "3.13"),
        ("docker.io/library/python:3.12.1-slim-bookworm@sha256:" + "0" * 64, "3.12.1"),
        ("python:3.12", "3.12"),
    ],
)
def test_an_official_tag_names_the_python_of_a_base_not_present(base: str, python: str) -> None:
    assert image.base_python("/bin/false", base) == python  # /bin/false: no image is present


def test_another_base_not_present_needs_the_version_given() -> None:
    with pytest.raises(image.ImageError, match=r"^cosmo-base:trixie: not present locally .*"):
        image.base_python("/bin/false", "cosmo-base:trixie")


def test_lock_entries_are_selected_for_the_image_python() -> None:
    entries = image.read_lock(ROOT / "requirements.lock.txt")
    marked = [e for e in entries if e.marker]
    assert marked, "the universal lock has markers (typing-extensions below 3.13)"
    for python in ("3.11.7", "3.12.1", "3.13.0"):
        chosen = image.select_entries(entries, "x86_64", python)
        env = image.target_environment("x86_64", python)
        from packaging.markers import Marker

        expected = [e for e in entries if not e.marker or Marker(e.marker).evaluate(env)]
        assert chosen == expected
    assert len(image.select_entries(entries, "x86_64", "3.13.0")) < len(entries)
