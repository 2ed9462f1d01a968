"""The results file ``results/<id>.json``: compact, keyed, byte-reproducible.

One top-level key per line, sorted, each value as compact JSON (sorted keys, no spaces, no
NaN): the per-study arrays (``studies``, ``leave_one_out``, the subgroups' ``studies``) are
written without indentation, while every key of
:data:`cosmo_runner.meta.analysis.RESULT_KEYS` stays. The same result dict always gives the
same bytes (``cosmo-runner verify`` compares them by sha256).

Long lists of flat records (a million studies) are encoded column by column -- the standard
library's C encoder on each column, then one format per record -- which gives the same bytes
as encoding the records one by one (tests/meta/test_result_file.py checks it) in about half
the time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["dumps_result"]

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode
_COLUMNS_FROM = 1000  # records in a list before the column-wise encoding pays off
_BLOCK = 1 << 16  # records encoded at a time (bounds the memory of the columns)
_NUMBERS = {float, int, type(None)}


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
    if not all(isinstance(name, str) for name in names):
        return None
    fields = ",".join(
        encode_basestring_ascii(name).replace("{", "{{").replace("}", "}}") + ":{}"
        for name in names
    )
    template = ("{{" + fields + "}}").format
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
        blocks.append(",".join(map(template, *columns)))
    return "[" + ",".join(blocks) + "]"


def _value(value: Any) -> str:
    if isinstance(value, list) and len(value) >= _COLUMNS_FROM:
        fast = _records(value)
        if fast is not None:
            return fast
    return _ENCODE(value)


def dumps_result(result: Mapping[str, Any]) -> bytes:
    """The bytes of a results file for ``result`` (see the module docstring)."""
    lines = [f"{_ENCODE(str(key))}:{_value(result[key])}" for key in sorted(result)]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode("ascii")
