"""The results file: compact, keyed, the same bytes for the same result."""

from __future__ import annotations

import json

import numpy as np

from cosmo_runner.meta.analysis import analyse
from cosmo_runner.meta.result_file import dumps_result


def _result() -> dict[str, object]:
    rng = np.random.default_rng(3)
    table = {
        "study": [f"S {i}" for i in range(50)],
        "yi": [str(x) for x in rng.normal(size=50)],
        "vi": [str(x) for x in rng.uniform(0.1, 0.2, size=50)],
    }
    return analyse({"id": "g", "input": "x", "measure": "GEN", "method": "REML"}, table)


def test_the_file_round_trips_with_every_key() -> None:
    result = _result()
    data = dumps_result(result)
    assert json.loads(data) == json.loads(json.dumps(result))
    assert set(json.loads(data)) == set(result)


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
