"""Read a hashed lock file (``name==version [; marker]`` with ``--hash`` options) without pip.

The lock is produced by ``uv pip compile --universal --generate-hashes`` (see its header):
one file for every supported Python, with PEP 508 environment markers where a pin applies to
some interpreters only. Only the pinned names, versions and markers matter at run time;
hashes are pip's business at install time.

Standard library only, so the gate can read the lock when ``packaging`` itself is broken:
lines are parsed with a strict pattern (uv writes exact pins, nothing else), and markers are
evaluated with ``packaging.markers`` when it imports. Without it a pin with a marker is
*unevaluated*: it is compared with what is installed if anything is, and never reported as
missing (the gate fails anyway, naming ``packaging``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmo_runner.env import optional
from cosmo_runner.errors import ManifestError

# name==version [; marker], as uv and pip-compile write them (PEP 508 names, PEP 440 versions).
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*==\s*(?P<version>[^\s;,]+)"
    r"\s*(?:;\s*(?P<marker>.+?))?\s*$"
)
_NAME_SEPARATORS = re.compile(r"[-_.]+")


def canonicalize_name(name: str) -> str:
    """PEP 503 normalised distribution name (``Typing_Extensions`` -> ``typing-extensions``)."""
    return _NAME_SEPARATORS.sub("-", name).lower()


@dataclass(frozen=True)
class Pin:
    """One lock line: PEP 503 name, exact version and the marker text (None: always)."""

    name: str
    version: str
    marker: str | None = None


@dataclass(frozen=True)
class Lock:
    """A parsed lock.

    ``pins`` maps PEP 503 name -> exact version for the pins that apply to this interpreter
    (marker true or absent); ``unevaluated`` holds the pins whose marker could not be
    evaluated (``packaging`` unavailable), name -> candidate versions; ``entries`` is every
    line, for tools that evaluate markers for other interpreters (scripts/check_lock.py).
    """

    path: Path
    sha256: str
    pins: dict[str, str]
    entries: tuple[Pin, ...] = ()
    unevaluated: dict[str, tuple[str, ...]] = field(default_factory=dict)


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


def parse_entries(text: str, source: str) -> list[Pin]:
    """Every ``name==version [; marker]`` line of a lock, in order.

    Raises :class:`ManifestError` naming ``source`` for a line that is not an exact pin.
    """
    entries: list[Pin] = []
    for line in _logical_lines(text):
        if line.startswith("-"):
            continue  # pip options (--index-url is never emitted: --no-emit-index-url)
        requirement_text = line.split(" --hash", 1)[0].strip()
        match = _PIN.match(requirement_text)
        if match is None:
            shown = (
                requirement_text if len(requirement_text) <= 120 else requirement_text[:117] + "..."
            )
            raise ManifestError(f"{source}: not an exact 'name==version' pin: {shown!r}")
        marker = match["marker"]
        entries.append(Pin(canonicalize_name(match["name"]), match["version"], marker or None))
    return entries


_HASH = re.compile(r"--hash[=\s]+sha256:([0-9a-fA-F]{64})")


def pin_hashes(text: str, source: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(PEP 503 name, version)`` -> the sha256 set the lock allows for that pin, sorted.

    One pin may have many files (a wheel per platform and Python, an sdist); which of them
    was installed is not recorded anywhere, so this is a set of candidates, not a file hash.
    """
    hashes: dict[tuple[str, str], set[str]] = {}
    for line in _logical_lines(text):
        if line.startswith("-"):
            continue
        match = _PIN.match(line.split(" --hash", 1)[0].strip())
        if match is None:
            raise ManifestError(f"{source}: not an exact 'name==version' pin: {line[:120]!r}")
        key = (canonicalize_name(match["name"]), match["version"])
        hashes.setdefault(key, set()).update(h.lower() for h in _HASH.findall(line))
    return {key: tuple(sorted(values)) for key, values in hashes.items()}


def marker_applies(marker: str | None, environment: dict[str, str] | None = None) -> bool | None:
    """Whether a pin's marker holds (for this interpreter, or ``environment``'s overrides).

    None when it cannot be evaluated: ``packaging`` is unavailable, or the marker is invalid.
    """
    if marker is None:
        return True
    if not optional.available("packaging"):
        return None
    from packaging.markers import InvalidMarker, Marker, UndefinedEnvironmentName

    try:
        env: dict[str, Any] = {"extra": ""}
        env.update(environment or {})
        return bool(Marker(marker).evaluate(env))
    except (InvalidMarker, UndefinedEnvironmentName):
        return None


def select(
    entries: list[Pin], source: str, environment: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """The pins that apply (name -> version) and the unevaluated ones (name -> versions).

    Two applying pins of one name are a :class:`ManifestError` (the lock is ambiguous).
    """
    pins: dict[str, str] = {}
    unevaluated: dict[str, tuple[str, ...]] = {}
    for pin in entries:
        applies = marker_applies(pin.marker, environment)
        if applies is None:
            unevaluated[pin.name] = (*unevaluated.get(pin.name, ()), pin.version)
        elif applies:
            if pin.name in pins and pins[pin.name] != pin.version:
                raise ManifestError(
                    f"{source}: {pin.name} is pinned twice for this interpreter "
                    f"({pins[pin.name]} and {pin.version})"
                )
            pins[pin.name] = pin.version
    for name in pins:
        unevaluated.pop(name, None)
    return pins, unevaluated


def parse_pins(text: str, source: str, environment: dict[str, str] | None = None) -> dict[str, str]:
    """Map normalised name -> pinned version for every pin that applies (see :func:`select`)."""
    return select(parse_entries(text, source), source, environment)[0]


def read_lock(path: Path) -> Lock:
    """Read and parse a lock file; a missing or unreadable lock is a :class:`ManifestError`."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"lock file not found: {path}") from exc
    except OSError as exc:
        raise ManifestError(f"lock file unreadable: {path}: {exc.strerror}") from exc
    entries = parse_entries(data.decode("utf-8", errors="replace"), str(path))
    pins, unevaluated = select(entries, str(path))
    return Lock(
        path=path,
        sha256=hashlib.sha256(data).hexdigest(),
        pins=pins,
        entries=tuple(entries),
        unevaluated=unevaluated,
    )
