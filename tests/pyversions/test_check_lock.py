"""scripts/check_lock.py: one universal lock must give a complete set on every target.

Each case edits a copy of the real locks the way a bad resolution (or a hand edit) would,
and checks the exact problem named for the exact target.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import check_lock

from cosmo_runner.env.lock import marker_applies, parse_entries

FILES = ("pyproject.toml", *check_lock.LOCKS)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files check_universal reads, copied."""
    for name in FILES:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def set_marker(lock: Path, name: str, marker: str | None) -> str:
    """Give the entry ``name==...`` the marker (None: none); returns its version."""
    text = lock.read_text(encoding="utf-8")
    pattern = re.compile(rf"^({re.escape(name)}==(\S+))(?: ;[^\\\n]*)? \\$", re.MULTILINE)
    match = pattern.search(text)
    assert match, f"{name} not in {lock.name}"
    suffix = f" ; {marker}" if marker else ""
    lock.write_text(pattern.sub(rf"\g<1>{suffix} \\", text, count=1), encoding="utf-8")
    return match.group(2)


def drop_entry(lock: Path, name: str) -> None:
    text = lock.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(name)}==.*?(?=^[a-z0-9])", re.MULTILINE | re.DOTALL)
    assert pattern.search(text), name
    lock.write_text(pattern.sub("", text, count=1), encoding="utf-8")


def problems(project: Path) -> list[str]:
    found, _notes = check_lock.check_universal(project)
    return found


def test_the_real_locks_are_complete_on_every_target() -> None:
    found, notes = check_lock.check_universal(ROOT)
    assert found == []
    assert [str(t) for t in check_lock.targets()] == [
        f"CPython {minor} linux/{machine}"
        for minor in ("3.11", "3.12", "3.13")
        for machine in ("x86_64", "aarch64")
    ]
    # Only the bench peers, and pins whose markers exclude this interpreter (the
    # importlib-metadata backport below 3.12), are not installed here; every other runtime
    # and dev pin is walked.
    for note in notes:
        if note.startswith("requirements-bench.lock.txt: "):
            continue
        source, _, names = note.partition(": ")
        unread = {n.strip() for n in names.rsplit(" only: ", 1)[-1].split(",")}
        entries = parse_entries((ROOT / source).read_text(encoding="utf-8"), source)
        elsewhere = {e.name for e in entries if marker_applies(e.marker) is False}
        assert unread <= elsewhere, (note, unread - elsewhere)


def test_a_marker_that_drops_a_needed_pin_on_one_machine(project: Path) -> None:
    lock = project / "requirements.lock.txt"
    version = set_marker(lock, "pyparsing", "platform_machine == 'x86_64'")
    found = problems(project)
    assert found and all("linux/aarch64" in p for p in found), found
    assert any(
        re.fullmatch(
            r"requirements\.lock\.txt: matplotlib==\S+ requires pyparsing\S* on CPython "
            r"3\.1[123] linux/aarch64, which the lock does not pin there",
            p,
        )
        for p in found
    ), found
    assert version


def test_a_marker_narrower_than_its_parents_need(project: Path) -> None:
    # referencing needs typing-extensions below 3.13: a pin for < 3.12 leaves 3.12 without.
    set_marker(
        project / "requirements.lock.txt", "typing-extensions", "python_full_version < '3.12'"
    )
    found = problems(project)
    assert found
    assert {re.search(r"CPython (\S+) linux/([a-z0-9_]+)", p).groups() for p in found} == {
        ("3.12", "x86_64"),
        ("3.12", "aarch64"),
    }
    # Requirement strings are quoted as each parent's metadata spells them (typing_extensions).
    assert all(
        re.search(r"requires typing[-_]extensions", p) and "does not pin there" in p for p in found
    ), found


def test_a_marker_wider_than_needed_is_a_pin_nobody_needs(project: Path) -> None:
    version = set_marker(project / "requirements.lock.txt", "typing-extensions", None)
    found = problems(project)
    # The "# via" list is the lock's own (every parent that needs it below 3.13).
    via = re.search(
        r"^typing-extensions==.*?# via\n((?: *#   \S+\n)+)",
        (project / "requirements.lock.txt").read_text(encoding="utf-8"),
        re.MULTILINE | re.DOTALL,
    )
    assert via, "typing-extensions has no '# via' block"
    parents = ", ".join(line.split()[1] for line in via.group(1).splitlines())
    assert "referencing" in parents
    assert found == [
        f"requirements.lock.txt: typing-extensions=={version} applies to CPython 3.13 "
        f"linux/{machine} but nothing there needs it (# via {parents})"
        for machine in ("x86_64", "aarch64")
    ], found


def test_a_marker_that_splits_a_minor_series(project: Path) -> None:
    version = set_marker(
        project / "requirements.lock.txt", "typing-extensions", "python_full_version < '3.12.4'"
    )
    found = problems(project)
    assert (
        f"requirements.lock.txt: typing-extensions=={version} ; python_full_version < '3.12.4': "
        "applies to some CPython 3.12 releases only"
    ) in found


def test_two_pins_of_one_name_for_one_target(project: Path) -> None:
    lock = project / "requirements.lock.txt"
    text = lock.read_text(encoding="utf-8")
    entry = re.search(r"^pyparsing==.*?(?=^[a-z0-9])", text, re.MULTILINE | re.DOTALL).group(0)
    second = entry.replace("pyparsing==3.3.3 \\", "pyparsing==3.3.2 ; python_version >= '3.13' \\")
    lock.write_text(text.replace(entry, entry + second), encoding="utf-8")
    found = problems(project)
    assert found == [
        f"requirements.lock.txt: pyparsing is pinned 2 times for CPython 3.13 linux/{m} "
        "(3.3.3, 3.3.2)"
        for m in ("x86_64", "aarch64")
    ]


def test_a_missing_root_names_where_it_is_declared(project: Path) -> None:
    drop_entry(project / "requirements.lock.txt", "setuptools")
    found = problems(project)
    assert (
        "requirements.lock.txt: setuptools (build-system.requires) is missing for CPython 3.11 "
        "linux/x86_64; run 'make lock'"
    ) in found


def test_a_root_with_its_own_marker_is_required_only_where_it_holds(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            '"packaging>=24",', '"packaging>=24",\n    "tomli>=2 ; python_version < \'3.11\'",'
        )
    )
    assert problems(project) == []  # no supported Python needs tomli
    pyproject.write_text(pyproject.read_text().replace("< '3.11'", "< '3.12'"))
    assert problems(project) == [
        f"{lock}: tomli (project.dependencies) is missing for CPython 3.11 linux/{m}; run 'make lock'"
        for m in ("x86_64", "aarch64")
        for lock in ("requirements.lock.txt", "requirements-bench.lock.txt")
    ]


def test_the_dev_lock_must_agree_with_the_runtime_lock_where_both_apply(project: Path) -> None:
    dev = project / "requirements-dev.lock.txt"
    dev.write_text(dev.read_text().replace("packaging==26.3 \\", "packaging==26.2 \\"))
    found = problems(project)
    assert (
        "requirements-dev.lock.txt: packaging==26.2 but requirements.lock.txt pins 26.3 for CPython 3.11 linux/x86_64"
        in found
    )


def test_an_unsatisfied_requirement_names_both_sides(project: Path) -> None:
    lock = project / "requirements.lock.txt"
    lock.write_text(lock.read_text().replace("pyparsing==3.3.3 \\", "pyparsing==1.0 \\"))
    found = problems(project)
    assert any(
        re.fullmatch(
            r"requirements\.lock\.txt: matplotlib==\S+ requires pyparsing>=\S+, but the lock "
            r"pins pyparsing==1\.0 for CPython 3\.11 linux/x86_64",
            p,
        )
        for p in found
    ), found


def test_unknown_requirements_fall_back_to_via(project: Path) -> None:
    """With no metadata at all, only the '# via' chain can show what is needed."""
    found, notes = check_lock.check_universal(project, requires=lambda name, version: None)
    assert found == []
    assert notes[0].startswith("requirements.lock.txt: requirements of ")
    set_marker(project / "requirements.lock.txt", "typing-extensions", None)
    found, _ = check_lock.check_universal(project, requires=lambda name, version: None)
    assert found == []  # via referencing, which applies: accepted, as documented
