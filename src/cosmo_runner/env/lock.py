"""Read a hashed lock file (``name==version`` with ``--hash`` options) without pip.

The lock is produced by ``uv pip compile --generate-hashes`` (see its header). Only the
pinned names and versions matter at run time; hashes are pip's business at install time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from cosmo_runner.errors import ManifestError


@dataclass(frozen=True)
class Lock:
    """A parsed lock: its path, sha256 and pins (PEP 503 name -> exact version)."""

    path: Path
    sha256: str
    pins: dict[str, str]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _logical_lines(text: str) -> list[str]:
    """Join backslash continuations and drop comments, as pip reads requirement files."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse_pins(text: str, source: str) -> dict[str, str]:
    """Map normalised distribution name -> pinned version for every ``name==version`` line.

    Raises :class:`ManifestError` naming ``source`` for a line that is not an exact pin.
    """
    pins: dict[str, str] = {}
    for line in _logical_lines(text):
        if line.startswith("-"):
            continue  # pip options (--index-url is never emitted: --no-emit-index-url)
        requirement_text = line.split(" --hash", 1)[0].strip()
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement as exc:
            raise ManifestError(f"{source}: not a requirement line: {requirement_text!r}") from exc
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ManifestError(f"{source}: {requirement.name} is not pinned with '=='")
        pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def read_lock(path: Path) -> Lock:
    """Read and parse a lock file; a missing or unreadable lock is a :class:`ManifestError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"lock file not found: {path}") from exc
    except OSError as exc:
        raise ManifestError(f"lock file unreadable: {path}: {exc.strerror}") from exc
    return Lock(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        pins=parse_pins(data.decode("utf-8", errors="replace"), str(path)),
    )
