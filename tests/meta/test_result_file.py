"""The results file: compact, keyed, the same bytes for the same result."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmo_runner.meta import result_file
from cosmo_runner.meta.analysis import analyse
from cosmo_runner.meta.result_file import Records, dumps_result


def _result() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    table = {
        "study": [f"S {i}" for i in range(50)],
        "yi": [str(x) for x in rng.normal(size=50)],
        "vi": [str(x) for x in rng.uniform(0.1, 0.2, size=50)],
    }
    return analyse({"id": "g", "input": "x", "measure": "GEN", "method": "REML"}, table)


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its column-kept records as lists of dicts (what json.dumps takes)."""
    return {k: v.tolist() if isinstance(v, Records) else v for k, v in result.items()}


def test_the_file_round_trips_with_every_key() -> None:
    result = _result()
    data = dumps_result(result)
    assert json.loads(data) == json.loads(json.dumps(_plain(result)))
    assert set(json.loads(data)) == set(result)
    assert isinstance(result["studies"], Records)  # per-study data stay columns


def test_one_top_level_key_per_line_and_per_study_arrays_unindented() -> None:
    data = dumps_result(_result()).decode()
    lines = data.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert len(lines) == len(_result()) + 2
    assert not any(line.startswith(" ") for line in lines)
    studies = next(line for line in lines if line.startswith('"studies":'))
    assert studies.startswith('"studies":[{"label":"S 0","vi":')


def test_the_same_result_gives_the_same_bytes() -> None:
    assert dumps_result(_result()) == dumps_result(_result())


_RECORD = st.fixed_dictionaries(
    {
        "label": st.text(max_size=8),
        "yi": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "n": st.integers(-(2**60), 2**60),
        'odd "{key}"': st.floats(allow_nan=False, allow_infinity=False),
    }
)


def _encodes_as_the_plain_encoder(rows: list[dict[str, Any]]) -> None:
    result = {"studies": rows, "k": len(rows)}
    plain = (
        "{\n"
        + ",\n".join(
            f"{json.dumps(key)}:{json.dumps(result[key], sort_keys=True, separators=(',', ':'))}"
            for key in sorted(result)
        )
        + "\n}\n"
    )
    assert dumps_result(result) == plain.encode("ascii")
    # private on purpose: a small block size makes the block seams show at test sizes
    with pytest.MonkeyPatch.context() as patch:  # many blocks, one of them partial
        patch.setattr(result_file, "_BLOCK", 7)
        assert dumps_result(result) == plain.encode("ascii")


# Private on purpose: with the threshold of the column-wise path lowered from 1000 to 10, each
# example takes that path at 15 records (and its block seams at 7); the real threshold is
# test_a_long_record_list_at_the_real_threshold's.
_SMALL_THRESHOLD = 10


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(_RECORD, min_size=1, max_size=5))
def test_long_record_lists_encode_as_the_plain_encoder_does(records: list[dict[str, Any]]) -> None:
    """The column-wise path gives exactly the bytes of encoding record by record."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(result_file, "_COLUMNS_FROM", _SMALL_THRESHOLD)
        _encodes_as_the_plain_encoder((records * 15)[:15])


def test_a_long_record_list_at_the_real_threshold() -> None:
    records = [
        {"label": 'a\u00e9"', "yi": None, "n": -(2**60), 'odd "{key}"': 1e-300},
        {"label": "", "yi": 0.1, "n": 7, 'odd "{key}"': -0.0},
    ]
    rows = (records * 750)[:1500]
    # private on purpose: the column-wise path at its real threshold is the point
    assert len(rows) >= result_file._COLUMNS_FROM and result_file._records(rows) is not None
    _encodes_as_the_plain_encoder(rows)


def test_mixed_records_fall_back_to_the_plain_encoder() -> None:
    rows: list[Any] = [{"a": 1.0}] * 1200 + [{"a": True}, {"b": 2}, 3]
    assert json.loads(dumps_result({"x": rows}))["x"] == rows


_LABELS = st.text(max_size=6)
_FLOAT = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.tuples(_LABELS, _FLOAT, _FLOAT), min_size=0, max_size=6))
def test_records_kept_as_columns_read_and_encode_as_their_dicts(
    rows: list[tuple[str, float, float]],
) -> None:
    """Records (labels and float arrays) read as the list of dicts (non-finite floats as
    None) and give exactly its bytes, in one block or many (the dicts, 12 of them, past the
    lowered threshold: column-wise too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(result_file, "_COLUMNS_FROM", _SMALL_THRESHOLD)
        _records_read_and_encode_as_their_dicts((rows * 12)[:12])


def _records_read_and_encode_as_their_dicts(rows: list[tuple[str, float, float]]) -> None:
    labels = [r[0] for r in rows]
    yi = np.array([r[1] for r in rows], dtype=np.float64)
    vi = np.array([r[2] for r in rows], dtype=np.float64)
    records = Records({"label": labels, "yi": yi, "vi": vi})

    def finite(x: float) -> float | None:
        return x if np.isfinite(x) else None

    dicts = [{"label": a, "yi": finite(b), "vi": finite(c)} for a, b, c in rows]
    assert len(records) == len(dicts)
    assert records == dicts and list(records) == dicts and records.tolist() == dicts
    if dicts:
        assert records[0] == dicts[0] and records[-1] == dicts[-1]
        assert records[1:3] == dicts[1:3]
    assert dumps_result({"studies": records}) == dumps_result({"studies": dicts})
    # private on purpose: a small block size makes the block seams show at test sizes
    with pytest.MonkeyPatch.context() as patch:  # many blocks, one of them partial
        patch.setattr(result_file, "_BLOCK", 7)
        assert dumps_result({"studies": records}) == dumps_result({"studies": dicts})


def test_records_columns_must_have_one_length() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        Records({"label": ["a", "b"], "yi": np.zeros(3)})
