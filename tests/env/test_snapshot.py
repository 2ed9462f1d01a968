from __future__ import annotations

import json
import platform
from pathlib import Path

from cosmo_runner.env import snapshot
from cosmo_runner.env.lock import Lock
from tests.conftest import ROOT, run_cli


def test_snapshot_field_names_are_the_contract() -> None:
    proc = run_cli("env", "snapshot")
    assert proc.returncode == 0
    env = json.loads(proc.stdout)["environment"]
    observed = env["observed"]
    assert observed["python"]["version"].startswith(platform.python_version())
    assert Path(observed["python"]["executable"]).name.startswith("python")
    assert observed["platform"] and observed["machine"]
    assert env["expected"]["schema_version"] == 1
    packages = observed["packages"]
    assert packages == sorted(packages)
    assert all(p == p.lower() and "_" not in p.split("==")[0] for p in packages)
    assert any(p.startswith("numpy==") for p in packages)
    assert len(env["env_id"]) == 16
    assert env["lock"]["verdict"] == "in-sync"
    assert env["observed"]["runner"]["version"]


def test_env_id_depends_on_what_decides_results_only() -> None:
    state = snapshot.capture(str(ROOT / "environment.manifest.json"))
    base = state.env_id
    assert base == snapshot.capture(str(ROOT / "environment.manifest.json")).env_id
    observed = json.loads(json.dumps(state.observed))
    observed["platform"] = "Linux-another-kernel"  # kernel and host do not matter
    observed["cpu_count"] = 128
    assert snapshot.env_id(observed, state.lock, state.manifest) == base
    observed["python"]["version_short"] = "3.11.2"
    assert snapshot.env_id(observed, state.lock, state.manifest) != base
    assert state.lock is not None
    other_lock = Lock(state.lock.path, "0" * 64, state.lock.pins)
    assert snapshot.env_id(state.observed, other_lock, state.manifest) != base
    drift = [{"name": "jsonschema", "locked": "4.26.0", "installed": "4.25.1"}]
    assert snapshot.env_id(state.observed, state.lock, state.manifest, drift) != base


def test_environment_allow_list_only(monkeypatch) -> None:
    from cosmo_runner.env import probes

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    captured = probes.env_vars()
    assert captured["OMP_NUM_THREADS"] == "1"
    assert "SECRET_TOKEN" not in captured
