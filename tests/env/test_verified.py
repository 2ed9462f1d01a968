"""VerifiedEnvironment: the gate a process that runs many specs takes (gated once, re-checked).

It is the pipeline's one environment seam (``RunOptions.gate``): the pipeline cannot tell it
from the default gate except by what it costs, so these tests look at what the run log holds
and at which real observations and checks were made.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.env import gate as gate_mod
from cosmo_runner.env.gate import Gate
from cosmo_runner.env.verified import VerifiedEnvironment, fingerprint
from cosmo_runner.pipeline import RunOptions, execute
from tests.batch.specgen import generate_specs
from tests.conftest import load_log


@pytest.fixture(scope="module")
def verified() -> VerifiedEnvironment:
    state = VerifiedEnvironment.capture()
    assert state.smoke.passed, state.smoke.failures
    return state


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts of real observations and checks made by the default gate from now on."""
    counts = {"observe": 0, "check": 0}
    observe, check = Gate.observe, Gate.check

    def counted_observe(self: Gate, *args: Any, **kwargs: Any) -> Any:
        counts["observe"] += 1
        return observe(self, *args, **kwargs)

    def counted_check(self: Gate, *args: Any, **kwargs: Any) -> Any:
        counts["check"] += 1
        return check(self, *args, **kwargs)

    monkeypatch.setattr(gate_mod.Gate, "observe", counted_observe)
    monkeypatch.setattr(gate_mod.Gate, "check", counted_check)
    return counts


def _run(tmp_path: Path, gate: Gate, name: str, **options: Any) -> dict[str, Any]:
    (spec,) = generate_specs(tmp_path / f"specs-{name}", 1)
    result = execute(RunOptions(spec_path=spec, out_dir=tmp_path / name, gate=gate, **options))
    log = load_log(tmp_path / name)
    # a strict gate fails in a venv with the dev tools (extras): exit 3, and the log says why
    assert result.exit_code == log["exit_code"] == (0 if log["smoke"]["passed"] else 3)
    return log


def test_it_is_the_pipelines_gate_and_observes_and_checks_nothing_again(
    tmp_path: Path, verified: VerifiedEnvironment, fresh: dict[str, int]
) -> None:
    assert isinstance(verified, Gate)
    first, second = (_run(tmp_path, verified, name) for name in ("a", "b"))
    assert first["exit_code"] == second["exit_code"] == 0
    assert fresh == {"observe": 0, "check": 0}
    for log in (first, second):
        assert log["environment"] == json.loads(json.dumps(verified.document()))
        checks = [c["name"] for c in log["smoke"]["checks"]]
        assert checks == [c.name for c in verified.smoke.checks] + ["recheck"]
        assert log["smoke"]["checks"][-1]["status"] == "ok"
    assert first["environment"]["env_id"] == verified.env_id


def test_a_run_cannot_change_what_the_next_run_is_handed(verified: VerifiedEnvironment) -> None:
    state = verified.observe(None, None)
    state.observed["python"] = "changed by a run"
    assert verified.observe(None, None).observed == verified.state.observed
    assert verified.state.observed.get("python") != "changed by a run"


@pytest.mark.parametrize(
    "options",
    [{"strict": True}, {"probe_all": True}],
    ids=["strict", "probe_all"],
)
def test_a_run_asking_for_another_gate_is_checked_afresh(
    tmp_path: Path, verified: VerifiedEnvironment, fresh: dict[str, int], options: dict[str, Any]
) -> None:
    log = _run(tmp_path, verified, "run", **options)
    assert fresh == {"observe": 0, "check": 1}
    assert "recheck" not in [c["name"] for c in log["smoke"]["checks"]]


def test_another_manifest_is_observed_and_checked_afresh(
    tmp_path: Path, verified: VerifiedEnvironment, fresh: dict[str, int]
) -> None:
    manifest = tmp_path / "m" / "environment.manifest.json"
    manifest.parent.mkdir()
    shutil.copy(verified.state.manifest_path, manifest)
    lock = json.loads(manifest.read_text(encoding="utf-8"))["lock"]["path"]
    shutil.copy(verified.state.manifest_path.parent / lock, manifest.parent / lock)
    log = _run(tmp_path, verified, "run", manifest=str(manifest))
    assert log["exit_code"] == 0
    assert fresh == {"observe": 1, "check": 1}
    assert log["environment"]["manifest"]["path"] == str(manifest)
    assert "recheck" not in [c["name"] for c in log["smoke"]["checks"]]


def test_an_install_since_the_gate_fails_the_run_with_exit_3_naming_it(
    tmp_path: Path, verified: VerifiedEnvironment
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    watched = dataclasses.replace(verified, baseline=fingerprint([*sys.path, str(site)]))
    (site / "jsonschema-9.9.dist-info").mkdir()
    (site / "numpy-0.1.dist-info").mkdir()
    (spec,) = generate_specs(tmp_path / "specs", 1)
    result = execute(RunOptions(spec_path=spec, out_dir=tmp_path / "run", gate=watched))
    assert result.exit_code == 3
    assert str(result.error) == (
        "environment gate failed: installed distributions changed since this process's gate: "
        f"{site}/jsonschema-9.9.dist-info: added (and 1 more)"
    )
    log = load_log(tmp_path / "run")
    assert (log["status"], log["exit_code"]) == ("failed", 3)
    assert log["smoke"]["checks"][-1]["observed"] == [
        f"{site}/jsonschema-9.9.dist-info: added",
        f"{site}/numpy-0.1.dist-info: added",
    ]
