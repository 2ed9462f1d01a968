"""The Python versions cosmo-runner supports, from pyproject.toml's ``requires-python``.

``requires-python`` is the one place the range is decided; the lock check, ``.ci/run`` and
the cross-version tests read it from here. Printed (one ``X.Y`` per line) when run:

    .venv/bin/python scripts/pyversions.py          # 3.11 3.12 3.13
    .venv/bin/python scripts/pyversions.py --others # the supported minors but this one

The machines the lock must serve (Linux, CPython) are listed here too.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
MACHINES = ("x86_64", "aarch64")  # Linux machines the universal lock is resolved for
# Minor versions looked at: a requires-python open above would otherwise be endless.
_CANDIDATE_MINORS = range(0, 40)


def requires_python(root: Path = ROOT) -> SpecifierSet:
    """pyproject.toml's ``project.requires-python``."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    return SpecifierSet(pyproject["project"]["requires-python"])


def supported_minors(root: Path = ROOT) -> list[str]:
    """Every CPython 3.Y whose first and later releases satisfy ``requires-python``.

    A minor counts when 3.Y.0 and 3.Y.99 are both inside the range (a bound inside a minor
    series, such as ``<3.12.4``, does not make 3.12 supported).
    """
    spec = requires_python(root)
    minors = [f"3.{m}" for m in _CANDIDATE_MINORS if spec.contains(f"3.{m}.0")]
    partial = [m for m in minors if not spec.contains(f"{m}.99")]
    if partial:
        raise ValueError(f"pyproject.toml: requires-python {spec} splits the series {partial}")
    if not minors:
        raise ValueError(f"pyproject.toml: requires-python {spec} admits no CPython 3.Y")
    return minors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others", action="store_true", help="leave out the running minor")
    args = parser.parse_args(argv)
    try:
        minors = supported_minors()
    except ValueError as exc:
        print(f"pyversions: {exc}", file=sys.stderr)
        return 2
    this = f"{sys.version_info.major}.{sys.version_info.minor}"
    for minor in minors:
        if not (args.others and minor == this):
            print(minor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
