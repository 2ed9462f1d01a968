"""The README's Layout section is a map of src/cosmo_runner/: every entry is there once, every
module of a package is named in that package's line, and nothing named is missing.

Also issue 12 item 5's "no function hides its module": no package exports a name that is
also one of its submodules (``from cosmo_runner.meta import rma`` once meant a function or
a module by import order)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "cosmo_runner"
# Not in the map: the package marker, ``python -m``'s entry, the version stamp, the PEP 561
# marker and caches.
UNLISTED = {"__init__.py", "__main__.py", "_version.py", "py.typed", "__pycache__"}


def _layout() -> dict[str, str]:
    """{entry: its description} of the ``src/cosmo_runner/`` block of README's Layout."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("    src/cosmo_runner/\n", 1)[1]
    entries: dict[str, str] = {}
    current: list[str] = []
    for line in block.splitlines():
        if not line.startswith("      "):  # the next top-level folder (tests/, docker/ ...)
            break
        head = re.match(r"^      (\S[^ ]*(?:, \S+)*)(?:\s{2,}|$)(.*)$", line)
        if head and not line.startswith("       "):
            names = head.group(1).split(", ")
            for name in names:
                assert name not in entries, f"README Layout lists {name} twice"
                entries[name] = head.group(2)
            current = names
        else:
            for name in current:
                entries[name] += " " + line.strip()
    return entries


def _tree() -> set[str]:
    return {
        p.name + ("/" if p.is_dir() else "")
        for p in PACKAGE.iterdir()
        if p.name not in UNLISTED and (p.is_dir() or p.suffix == ".py")
    }


def test_every_entry_of_the_package_is_in_the_layout_once() -> None:
    listed = set(_layout())
    assert sorted(listed - _tree()) == [], "in README's Layout but not in src/cosmo_runner/"
    assert sorted(_tree() - listed) == [], "in src/cosmo_runner/ but not in README's Layout"


@pytest.mark.parametrize("package", sorted(n for n in _tree() if n.endswith("/")))
def test_a_packages_line_names_each_of_its_modules(package: str) -> None:
    folder = PACKAGE / package
    modules = {p.name for p in folder.glob("*.py") if p.name != "__init__.py"}
    modules |= {f"{p.name}/" for p in folder.iterdir() if p.is_dir() and p.name not in UNLISTED}
    named = set(re.findall(r"\b[a-z_][a-z0-9_]*\.py\b|\b[a-z_][a-z0-9_]*/", _layout()[package]))
    named = {n for n in named if n.endswith(".py") or (folder / n).is_dir()}
    assert sorted(modules - named) == [], f"README Layout's {package} line does not name these"
    assert sorted(named - modules) == [], f"README Layout's {package} line names missing files"


@pytest.mark.parametrize(
    "package",
    ["cosmo_runner", *sorted(f"cosmo_runner.{n[:-1]}" for n in _tree() if n.endswith("/"))],
)
def test_no_exported_name_hides_a_submodule(package: str) -> None:
    module = importlib.import_module(package)
    if not hasattr(module, "__path__"):
        pytest.skip(f"{package} is a folder of data, not a package")
    folder = Path(module.__path__[0])
    submodules = {p.stem for p in folder.glob("*.py")} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
    }
    exported = set(getattr(module, "__all__", []))
    assert sorted(exported & submodules) == []
