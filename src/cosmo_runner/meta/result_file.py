"""The results file ``results/<id>.json``: compact, keyed, byte-reproducible.

One top-level key per line, sorted, each value as compact JSON (sorted keys, no spaces, no
NaN): the per-study arrays (``studies``, ``leave_one_out``, the subgroups' ``studies``) are
written without indentation, while every key of
:data:`cosmo_runner.meta.analysis.RESULT_KEYS` stays. The same result dict always gives the
same bytes (``cosmo-runner verify`` compares them by sha256).

Long lists of flat records (a million studies) are encoded column by column -- the standard
library's C encoder on each column, then one format per record -- which gives the same bytes
as encoding the records one by one (tests/meta/test_result_file.py checks it) in about half
the time. The per-study records of an analysis are kept as columns until here
(:class:`Records`: labels and numpy arrays, read as a sequence of dicts), so a million
studies never become a million dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

__all__ = ["Records", "dumps_result"]

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode
_COLUMNS_FROM = 1000  # records in a list before the column-wise encoding pays off
_BLOCK = 1 << 16  # records encoded at a time (bounds the memory of the columns)
_NUMBERS = {float, int, type(None)}


def _json_floats(values: NDArray[np.float64]) -> list[float | None]:
    """JSON-ready floats (``None`` for non-finite values), fast when all are finite."""
    if bool(np.isfinite(values).all()):
        out: list[float | None] = values.tolist()
        return out
    return [x if math.isfinite(x) else None for x in values.tolist()]


class Records(Sequence[dict[str, Any]]):
    """Flat records kept as columns: each a list of strings or a float array (non-finite
    values read as ``None``). Reads as a sequence of dicts (``records[i]["yi"]``) and equals
    the list of those dicts; :func:`dumps_result` encodes the columns directly."""

    def __init__(self, columns: Mapping[str, Sequence[str] | NDArray[np.float64]]) -> None:
        self.columns = dict(columns)
        sizes = {len(col) for col in self.columns.values()}
        if len(sizes) > 1:
            raise ValueError(f"Records: columns of different lengths {sorted(sizes)}")
        self._n = sizes.pop() if sizes else 0

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        return {name: _item(col, index) for name, col in self.columns.items()}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.tolist())

    def tolist(self) -> list[dict[str, Any]]:
        """The records as a list of dicts (what the JSON file holds)."""
        names = list(self.columns)
        values = [
            _json_floats(col) if isinstance(col, np.ndarray) else list(col)
            for col in self.columns.values()
        ]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Records):
            other = other.tolist()
        return isinstance(other, list) and self.tolist() == other

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, like a list

    def __repr__(self) -> str:
        return f"Records({self._n} records: {', '.join(self.columns)})"


def _item(col: Sequence[str] | NDArray[np.float64], index: int) -> Any:
    if isinstance(col, np.ndarray):
        value = float(col[index])
        return value if math.isfinite(value) else None
    return col[index]


def _encode_records(records: Records) -> str:
    """:func:`_records` from the columns themselves (same bytes)."""
    if len(records) == 0:
        return "[]"
    names = sorted(records.columns)
    blocks: list[str] = []
    for start in range(0, len(records), _BLOCK):
        stop = start + _BLOCK
        columns: list[list[str]] = []
        for name in names:
            col = records.columns[name]
            if isinstance(col, np.ndarray):
                columns.append(_ENCODE(_json_floats(col[start:stop]))[1:-1].split(","))
            else:
                columns.append(list(map(encode_basestring_ascii, col[start:stop])))
        blocks.append(_join(names, columns))
    return "[" + ",".join(blocks) + "]"


def _join(names: list[str], columns: list[list[str]]) -> str:
    """Records ``{"a":A,"b":B}`` from encoded columns, comma-separated: the separators and
    values interleaved by slice assignment, then one join (~3x faster than a format per
    record)."""
    m, width = len(columns[0]), 2 * len(names)
    keys = [encode_basestring_ascii(name) + ":" for name in names]
    parts: list[str] = [""] * (m * width)
    for j, column in enumerate(columns):
        parts[2 * j :: width] = [("," if j else "},{") + keys[j]] * m
        parts[2 * j + 1 :: width] = column
    parts[0] = "{" + keys[0]
    return "".join(parts) + "}"


def _records(rows: list[Any]) -> str | None:
    """``rows`` (dicts of the same keys, values str or numbers/None) encoded column-wise;
    None when the list is not of that shape (then the plain encoder runs)."""
    first = rows[0]
    if not isinstance(first, dict):
        return None
    keys = first.keys()
    if not all(isinstance(row, dict) and row.keys() == keys for row in rows):
        return None
    names = sorted(keys)
    if not names or not all(isinstance(name, str) for name in names):
        return None
    blocks: list[str] = []
    for start in range(0, len(rows), _BLOCK):
        block = rows[start : start + _BLOCK]
        columns: list[list[str]] = []
        for name in names:
            column = [row[name] for row in block]
            kinds = set(map(type, column))
            if kinds == {str}:
                columns.append(list(map(encode_basestring_ascii, column)))
            elif kinds <= _NUMBERS:
                columns.append(_ENCODE(column)[1:-1].split(","))
            else:
                return None
        blocks.append(_join(names, columns))
    return "[" + ",".join(blocks) + "]"


def _value(value: Any) -> str:
    if isinstance(value, Records):
        return _encode_records(value)
    if isinstance(value, list) and len(value) >= _COLUMNS_FROM:
        fast = _records(value)
        if fast is not None:
            return fast
    return _ENCODE(value)


def dumps_result(result: Mapping[str, Any]) -> bytes:
    """The bytes of a results file for ``result`` (see the module docstring)."""
    lines = [f"{_ENCODE(str(key))}:{_value(result[key])}" for key in sorted(result)]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode("ascii")
