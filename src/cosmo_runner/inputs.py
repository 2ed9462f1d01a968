"""Inputs are read once: the bytes that are hashed are the bytes every step uses.

:func:`load_inputs` reads every input of a spec through
:func:`cosmo_runner.readfile.read_regular` (regular files only, opened without blocking: a
FIFO, a device or a directory is refused, never read), records its size and sha256, checks
the pin, and keeps the bytes; the CSV
table of an input is parsed from those bytes on first use (:meth:`LoadedInput.table`) and
shared by the validators and the analyses, so a file replaced during a run changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError, InputError
from cosmo_runner.readfile import read_regular
from cosmo_runner.tables import CsvFormat, Table, TableError, parse_csv

#: Test hook: called with the input id and path after all inputs were read and hashed
#: (before any validator runs). Tests use it to replace a file between steps.
AfterRead = Callable[[str, Path], None]


def read_input(path: Path, what: str) -> bytes:
    """The bytes of a regular file; an :class:`InputError` (exit 2) naming ``what`` and
    the file otherwise (``not a regular file (a FIFO)``, ``cannot read: ...``)."""
    try:
        return read_regular(path)
    except FileError as exc:
        raise InputError(f"{what}: {exc}") from exc


@dataclass
class LoadedInput:
    """One input: where it is, its bytes (read once) and, on first use, its parsed table."""

    id: str
    path: str  # as written in the spec
    resolved: Path
    data: bytes
    sha256: str
    pinned_sha256: str | None
    format: CsvFormat = field(default_factory=CsvFormat)
    _table: Table | None = field(default=None, repr=False)
    _table_error: TableError | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """Path as written, resolved absolute path, bytes and sha256 (for the run log)."""
        return {
            "id": self.id,
            "path": self.path,
            "resolved": str(self.resolved),
            "bytes": len(self.data),
            "sha256": self.sha256,
            "pinned_sha256": self.pinned_sha256,
        }

    def table(self) -> Table:
        """The input parsed as a CSV table (once; a parse error is raised again each time)."""
        if self._table_error is not None:
            raise self._table_error
        if self._table is None:
            try:
                self._table = parse_csv(self.data, self.resolved, self.format)
            except TableError as exc:
                self._table_error = exc
                raise
        return self._table


def load_inputs(
    entries: Mapping[str, Mapping[str, Any]],
    base: Path,
    after_read: AfterRead | None = None,
) -> dict[str, LoadedInput]:
    """Read every input of a spec once, in spec order; check each pin.

    ``entries`` is the spec's ``inputs`` object; relative paths resolve against ``base``.
    Raises :class:`InputError` naming the input
    and the file (both hashes for a pin mismatch).
    """
    loaded: dict[str, LoadedInput] = {}
    for key, entry in entries.items():
        written = str(entry["path"])
        resolved = (base / written).resolve()
        data = read_input(resolved, f"input {key!r}")
        digest = hashlib.sha256(data).hexdigest()
        pinned = str(entry.get("sha256", "")).lower() or None
        if pinned and digest != pinned:
            raise InputError(
                f"input {key!r}: {resolved}: sha256 {digest} differs from the pinned {pinned}"
            )
        fmt = CsvFormat.from_spec(entry.get("format") or {})
        loaded[key] = LoadedInput(key, written, resolved, data, digest, pinned, fmt)
    if after_read is not None:
        for item in loaded.values():
            after_read(item.id, item.resolved)
    return loaded
