"""Workers killed by a spec on the LocalCluster (nanny-managed workers restart): a spec that
kills every worker it reaches ends ``lost``; one that kills its first worker succeeds on the
retry; the others are unaffected and every spec is committed once."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmo_runner.batch.client import BatchOptions, run_batch
from tests.batch.helpers import K, batch_log, by_key, committed, events
from tests.batch.specgen import generate_specs
from tests.conftest import fake_dist

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KILLER = """
import os, signal
from pathlib import Path


def validate(context):
    marker = Path(context.options["marker"])
    if context.options.get("always") or not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return []
"""


def _with_killer(spec: Path, marker: Path, *, always: bool) -> None:
    import json

    data = json.loads(spec.read_text(encoding="utf-8"))
    data["validators"].append(
        {"id": "kill", "kind": "batchkill", "input": "d",
         "options": {"marker": str(marker), "always": always}}
    )  # fmt: skip
    spec.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.usefixtures("forked_workers")
def test_a_spec_that_kills_its_workers_is_lost_and_the_rest_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "plugin"
    fake_dist(site, "batchkill", "1.0",
              entry_points="[cosmo_runner.validators]\nbatchkill = batchkill:validate\n")  # fmt: skip
    (site / "batchkill.py").write_text(KILLER, encoding="utf-8")
    # the worker processes start with the client's sys.path (multiprocessing's spawn and
    # forkserver both hand it to the child)
    monkeypatch.syspath_prepend(str(site))
    specs = generate_specs(tmp_path / "specs", 8, seed=6, k=K)
    always, once = specs[2], specs[5]
    _with_killer(always, tmp_path / "always.marker", always=True)
    _with_killer(once, tmp_path / "once.marker", always=False)
    out = tmp_path / "out"
    result = run_batch(BatchOptions(specs=specs, out_dir=out, workers=2, retries=1, chunk=4))
    assert result.exit_code == 6
    assert str(result.error) == (
        "1 of 8 specs did not succeed (0 failed, 1 lost); each one's exit code is in the batch log"
    )
    doc = batch_log(out)
    entries = by_key(doc)
    lost = entries[always.stem]
    assert (lost["status"], lost["exit_code"], lost["run_dir"]) == ("lost", None, None)
    assert lost["attempts"] >= 2  # the chunk's try, then its own tries
    assert lost["message"].startswith(
        "its task killed 2 worker(s) as it ran alone on the cluster: "
    )
    assert entries[once.stem]["status"] == "succeeded"
    assert entries[once.stem]["attempts"] >= 2
    others = [e for k, e in entries.items() if k not in (always.stem, once.stem)]
    assert {e["status"] for e in others} == {"succeeded"}
    assert committed(out) == sorted(p.stem for p in specs if p != always)
    spec_events = [e["key"] for e in events(out) if e["event"] == "spec"]
    assert sorted(spec_events) == sorted(p.stem for p in specs)
