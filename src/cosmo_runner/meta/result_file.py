"""The results file ``results/<id>.json``: compact, keyed, byte-reproducible.

One top-level key per line, sorted, each value as compact JSON (sorted keys, no spaces, no
NaN): the per-study arrays (``studies``, ``leave_one_out``, the subgroups' ``studies``) are
written without indentation, so a million studies encode in about a second instead of
ten, while every key of :data:`cosmo_runner.meta.analysis.RESULT_KEYS` stays. The same
result dict always gives the same bytes (``cosmo-runner verify`` compares them by sha256).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps_result"]

_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def dumps_result(result: Mapping[str, Any]) -> bytes:
    """The bytes of a results file for ``result`` (see the module docstring)."""
    lines = [f"{_ENCODE(str(key))}:{_ENCODE(result[key])}" for key in sorted(result)]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode("ascii")
