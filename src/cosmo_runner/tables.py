"""CSV effect tables, read with the csv module (quoting, BOM and line-ending edge cases)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cosmo_runner.errors import InputError


@dataclass(frozen=True)
class Table:
    """A CSV table: header and rows as raw strings; ``rows[i]`` is data row i + 1."""

    path: Path
    header: list[str]
    rows: list[list[str]]

    def column(self, name: str) -> list[str]:
        index = self.header.index(name)
        return [row[index] for row in self.rows]

    def without(self, drop_rows: set[int]) -> Table:
        """The table without the given 1-based data rows."""
        kept = [row for number, row in enumerate(self.rows, start=1) if number not in drop_rows]
        return Table(self.path, self.header, kept)

    def as_columns(self) -> dict[str, list[str]]:
        return {name: [row[i] for row in self.rows] for i, name in enumerate(self.header)}


def read_csv(path: Path) -> Table:
    """Read a CSV file with a header row. Ragged rows and bad encodings raise :class:`InputError`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            records = list(csv.reader(handle))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise InputError(f"{path}: not valid CSV: {exc}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc
    records = [r for r in records if r]  # blank lines carry no data
    if not records:
        raise InputError(f"{path}: empty CSV file (no header row)")
    header = [h.strip() for h in records[0]]
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate column names in the header: {', '.join(duplicates)}")
    rows = []
    for number, row in enumerate(records[1:], start=1):
        if len(row) != len(header):
            raise InputError(
                f"{path}: row {number} has {len(row)} fields, the header has {len(header)}"
            )
        rows.append([cell.strip() for cell in row])
    return Table(path, header, rows)
