"""batch_log.json's rewrites: at most once a second, and never most of the client's time."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmo_runner.batch import log as log_mod
from cosmo_runner.batch.log import BatchLog


def test_a_slow_rewrite_spaces_the_next_ones_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    written: list[float] = []
    real_write = log_mod.write_atomic

    def write(path: Path, data: bytes) -> None:  # each rewrite takes 0.2 s of the clock
        written.append(clock[0])
        clock[0] += 0.2
        real_write(path, data)

    monkeypatch.setattr(log_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(log_mod, "write_atomic", write)
    log = BatchLog(tmp_path, "b", ["cosmo-runner", "batch"])
    log.add_specs([{"key": f"k{i}", "status": "pending", "run_id": None} for i in range(8)])
    log.save(force=True)  # at 100.0, took 0.2 s: the next one no sooner than 4 s later
    for i, at in enumerate([101.5, 103.0, 104.3, 105.0, 106.0, 108.6]):
        clock[0] = at
        log.record(f"k{i}", status="succeeded")
    assert written == [100.0, 104.3, 108.6]
    log.finish("succeeded", 0)  # the final log is written at once
    assert len(written) == 4
    assert (tmp_path / "batch_log.jsonl").read_text(encoding="utf-8").count("\n") == 6


def test_fast_rewrites_are_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    written: list[float] = []
    monkeypatch.setattr(log_mod.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(log_mod, "write_atomic", lambda path, data: written.append(clock[0]))
    log = BatchLog(tmp_path, "b", [])
    log.add_specs([{"key": f"k{i}", "status": "pending", "run_id": None} for i in range(5)])
    for i, at in enumerate([100.0, 100.5, 101.0, 101.2, 102.1]):
        clock[0] = at
        log.record(f"k{i}", status="succeeded")
    assert written == [100.0, 101.0, 102.1]
