"""Issue 14's Done-when on the local cluster: 200 generated specs via ``--from`` exit 0 with a
schema-valid batch log; ``--resume`` with 10 new specs reuses the 200 and runs the 10."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmo_runner.triage.runs import list_runs
from tests.batch.helpers import K, batch, batch_log, committed, events
from tests.batch.specgen import generate_specs
from tests.gates import ReusedGate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_two_hundred_specs_then_resume_with_ten_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    specs = generate_specs(tmp_path / "specs", 200, seed=7, k=K)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"specs/{p.name}\n" for p in specs), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = batch(capsys, reused_gate, "--from", listing, "--out", out)
    assert (code, err) == (0, "")
    doc = batch_log(out)
    assert doc["totals"]["succeeded"] == 200 and doc["status"] == "succeeded"
    assert stdout.splitlines()[0].endswith(": succeeded (exit 0): 200 specs: 200 succeeded")

    more = generate_specs(tmp_path / "specs", 10, seed=7, start=200, k=K)
    with listing.open("a", encoding="utf-8") as handle:
        handle.write("".join(f"specs/{p.name}\n" for p in more))
    code, stdout, err = batch(capsys, reused_gate, "--from", listing, "--out", out, "--resume")
    assert (code, err) == (0, "")
    doc = batch_log(out)
    assert (doc["totals"]["reused"], doc["totals"]["succeeded"]) == (200, 10)
    assert stdout.splitlines()[0].endswith(
        ": succeeded (exit 0): 210 specs: 10 succeeded, 200 reused"
    )
    assert committed(out) == sorted(p.stem for p in [*specs, *more])
    ran = [e["key"] for e in events(out) if e["event"] == "spec" and e["status"] == "succeeded"]
    assert sorted(ran) == sorted(p.stem for p in [*specs, *more])  # each ran exactly once
    (entry,) = list_runs(tmp_path).entries  # `cosmo-runner runs` shows the batch as one entry
    assert (entry.kind, entry.status, entry.totals) == ("batch", "succeeded", {"succeeded": 210})
