"""Comparing a run's outputs with its replay's: by sha256, then result JSON field by field.

Pure over two directories and their logs, so every outcome is built here by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.triage.verify import FieldDiff, compare_outputs

RESULT = {"k": 13, "estimate": -0.7145, "ci_lb": -1.0713, "tau2": 0.3132, "method": "REML"}
PLOT = b"\x89PNG forest"


def _run(root: Path, result: dict[str, Any], plot: bytes = PLOT) -> tuple[Path, dict[str, Any]]:
    """A run directory with one result and its plot, and the log recording them."""
    files = {
        "results/a.json": json.dumps(result, indent=2, sort_keys=True).encode(),
        "plots/a-forest.png": plot,
    }
    outputs = []
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        outputs.append(
            {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    log = {
        "outputs": outputs,
        "analyses": [{"id": "a", "result": outputs[0], "plots": [outputs[1]]}],
    }
    return root, log


def _compare(
    tmp_path: Path, replay_result: dict[str, Any], *, plot: bytes = PLOT, rtol: float | None = None
):
    original, log = _run(tmp_path / "original", RESULT)
    replay, replay_log = _run(tmp_path / "replay", replay_result, plot)
    return {c.path: c for c in compare_outputs(original, log, replay, replay_log, rtol=rtol)}


def test_identical_outputs_are_equal(tmp_path: Path) -> None:
    compared = _compare(tmp_path, RESULT)
    assert {c.status for c in compared.values()} == {"equal"}


def test_a_changed_number_names_the_field_with_its_differences(tmp_path: Path) -> None:
    compared = _compare(tmp_path, {**RESULT, "estimate": -0.7146, "tau2": 0.3232}, plot=b"other")
    result = compared["results/a.json"]
    assert result.status == "differs" and not result.ok
    assert [f.pointer for f in result.fields] == ["/estimate", "/tau2"]
    assert result.max_abs is not None and result.max_abs.pointer == "/tau2"
    assert result.max_abs.abs_diff == pytest.approx(0.01)
    assert result.max_rel is not None and result.max_rel.pointer == "/tau2"
    assert result.max_rel.rel_diff == pytest.approx(0.01 / 0.3132)
    assert compared["plots/a-forest.png"].status == "differs"


def test_within_rtol_the_result_and_its_plot_are_accepted(tmp_path: Path) -> None:
    compared = _compare(tmp_path, {**RESULT, "estimate": -0.71450001}, plot=b"other", rtol=1e-6)
    assert compared["results/a.json"].status == "within rtol"
    assert compared["plots/a-forest.png"].status == "accepted"
    assert all(c.ok for c in compared.values())


def test_beyond_rtol_differs(tmp_path: Path) -> None:
    compared = _compare(tmp_path, {**RESULT, "estimate": -0.72}, rtol=1e-6)
    assert compared["results/a.json"].status == "differs"


def test_rtol_never_accepts_a_non_numeric_change(tmp_path: Path) -> None:
    compared = _compare(tmp_path, {**RESULT, "method": "DL"}, rtol=1.0)
    result = compared["results/a.json"]
    assert result.status == "differs"
    assert result.fields == [FieldDiff("/method", "REML", "DL")]
    assert result.max_abs is None


def test_a_plot_that_differs_while_its_result_is_equal_is_not_accepted(tmp_path: Path) -> None:
    compared = _compare(tmp_path, RESULT, plot=b"nondeterministic", rtol=1.0)
    assert compared["results/a.json"].status == "equal"
    assert compared["plots/a-forest.png"].status == "differs"


def test_missing_and_extra_outputs(tmp_path: Path) -> None:
    original, log = _run(tmp_path / "original", RESULT)
    replay, replay_log = _run(tmp_path / "replay", RESULT)
    (original / "plots/a-forest.png").unlink()
    replay_log["outputs"] = [o for o in replay_log["outputs"] if o["path"] != "results/a.json"]
    compared = {c.path: c for c in compare_outputs(original, log, replay, replay_log)}
    assert compared["results/a.json"].status == "missing in replay"
    assert compared["plots/a-forest.png"].status == "missing in original"


def test_an_original_changed_after_the_run_is_flagged(tmp_path: Path) -> None:
    original, log = _run(tmp_path / "original", RESULT)
    replay, replay_log = _run(tmp_path / "replay", RESULT)
    (original / "results/a.json").write_text(
        json.dumps({**RESULT, "k": 12}, indent=2, sort_keys=True)
    )
    [result] = [
        c for c in compare_outputs(original, log, replay, replay_log) if c.path.endswith(".json")
    ]
    assert result.tampered and result.as_dict()["changed_since_run"] is True
    assert result.fields == [FieldDiff("/k", 12, 13)]


def test_relative_difference_from_zero_is_infinite() -> None:
    field = FieldDiff("/x", 0, 1e-12)
    assert field.rel_diff == math.inf
    assert field.as_dict()["rel_diff"] == "inf"
    assert FieldDiff("/x", 1, 1.0).rel_diff == 0.0
