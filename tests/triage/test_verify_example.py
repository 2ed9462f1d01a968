"""`cosmo-runner verify` on the BCG example, whose analyses write result JSON and plots.

The untouched example is replayed whole (every result and plot reproduced); the edited copies
are of a run of its REML analysis alone, without plots (each verify replays the run, and the
differences these tests make are in the result JSON)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.runlog import dumps
from tests.conftest import EXAMPLE, InProcess, fake_dist, load_log
from tests.forkserver import ForkServer
from tests.triage.conftest import make_run

RESULT = "results/bcg-reml.json"

pytestmark = pytest.mark.slow  # each test runs and replays a pipeline


def _reml_only(directory: Path) -> Path:
    """The BCG example with its REML analysis alone and no plots; returns the spec's path."""
    shutil.copytree(EXAMPLE, directory)
    spec = json.loads((directory / "spec.json").read_text(encoding="utf-8"))
    [analysis] = [a for a in spec["analyses"] if f"results/{a['id']}.json" == RESULT]
    spec["analyses"] = [{k: v for k, v in analysis.items() if k != "plots"}]
    (directory / "spec.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return directory / "spec.json"


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory, cli: InProcess) -> Path:
    base = tmp_path_factory.mktemp("example")
    shutil.copytree(EXAMPLE, base / "bcg")
    run = make_run(base / "bcg" / "spec.json", base / "run", runner=cli)
    log = load_log(run)
    assert log["status"] == "succeeded", log["error"]
    assert RESULT in {o["path"] for o in log["outputs"]}
    return run


@pytest.fixture(scope="module")
def reml_run(tmp_path_factory: pytest.TempPathFactory, cli: InProcess) -> Path:
    base = tmp_path_factory.mktemp("reml")
    run = make_run(_reml_only(base / "bcg"), base / "run", runner=cli)
    log = load_log(run)
    assert log["status"] == "succeeded", log["error"]
    assert [o["path"] for o in log["outputs"]] == [RESULT]
    return run


def _copy_with_estimate(run: Path, target: Path, change: Any) -> tuple[float, float]:
    """A copy of the run whose result has its estimate changed; returns (before, after)."""
    shutil.copytree(run, target)
    path = target / RESULT
    result = json.loads(path.read_text())
    before = result["estimate"]
    result["estimate"] = change(before)
    path.write_bytes(dumps(result))
    return before, result["estimate"]


def test_untouched_run_reproduces_every_output(
    example_run: Path, tmp_path: Path, cli: InProcess
) -> None:
    proc = cli("verify", example_run, "--out", tmp_path / "replay")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = load_log(example_run)["outputs"]
    assert len(outputs) > 1 and any(o["path"].startswith("plots/") for o in outputs)
    n = len(outputs)
    assert f"  outputs: {n} of {n} identical by sha256" in proc.stdout.splitlines()
    assert proc.stdout.splitlines()[-1] == "reproduced (exit 0)"


def test_a_number_edited_in_a_copy_exits_1_naming_file_and_field(
    reml_run: Path, tmp_path: Path, cli: InProcess
) -> None:
    before, after = _copy_with_estimate(reml_run, tmp_path / "copy", lambda x: x + 0.1)
    proc = cli("verify", tmp_path / "copy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert f"  DIFFERS: {RESULT} (1 field(s))" in lines
    assert "    changed since the run: its sha256 differs from the run log's" in lines
    assert f"    largest abs difference /estimate: {after!r} -> {before!r} (abs 0.1)" in lines
    assert any(line.startswith("    largest rel difference /estimate: ") for line in lines)
    assert lines[-1] == f"differs: {RESULT} (exit 1)"

    doc = json.loads(cli("verify", tmp_path / "copy", "--json").stdout)
    assert doc["exit_code"] == 1 and doc["differing"] == [RESULT]
    assert doc["max_abs"]["pointer"] == "/estimate"
    assert doc["max_abs"]["abs_diff"] == pytest.approx(0.1)


def test_rtol_accepts_a_tiny_numeric_difference(
    reml_run: Path, tmp_path: Path, cli: InProcess
) -> None:
    _copy_with_estimate(reml_run, tmp_path / "copy", lambda x: x * (1 + 1e-9))
    strict = cli("verify", tmp_path / "copy")
    assert strict.returncode == 1, strict.stdout
    proc = cli("verify", tmp_path / "copy", "--rtol", "1e-6")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("reproduced within rtol 1e-06; largest rel difference /estimate: ")
    assert last.endswith("(exit 0)")
    too_tight = cli("verify", tmp_path / "copy", "--rtol", "1e-12")
    assert too_tight.returncode == 1


def test_a_difference_shows_the_env_diff_original_vs_replay(
    tmp_path: Path, cli: InProcess, forked: ForkServer
) -> None:
    """The original ran with one more distribution installed (a `.dist-info` on PYTHONPATH:
    an extra is a warning, the gate passes), in its own process; the replay runs without it,
    in this one."""
    site = tmp_path / "site"
    fake_dist(site, "left-pad", "1.3.0")
    spec = _reml_only(tmp_path / "bcg")
    run = make_run(spec, tmp_path / "run", env={"PYTHONPATH": str(site)}, runner=forked.run)
    assert load_log(run)["status"] == "succeeded"
    _copy_with_estimate(run, tmp_path / "copy", lambda x: x - 1)

    proc = cli("verify", tmp_path / "copy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "environment, original run (A) vs replay (B):" in lines
    assert any(line.split() == ["package", "left-pad", "1.3.0", "-"] for line in lines)
    assert any(
        line.split()[:3] == ["env", "var", "PYTHONPATH"] and line.endswith(" -") for line in lines
    )
    assert any(
        line.startswith("  different: 2 difference(s) (packages 1, env vars 1)") for line in lines
    )
    assert lines[-1] == f"differs: {RESULT} (exit 1)"
