"""Triage fixtures: recorded environments to edit, and small runs to replay."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE, ROOT, InProcess, run_cli


@pytest.fixture(scope="session")
def recorded_environment(cli: InProcess) -> dict[str, Any]:
    """This environment as ``cosmo-runner env snapshot`` records it (edit copies of it)."""
    proc = cli("env", "snapshot")
    assert proc.returncode == 0, proc.stderr
    environment: dict[str, Any] = json.loads(proc.stdout)["environment"]
    return environment


@pytest.fixture
def snapshot_file(tmp_path: Path, recorded_environment: dict[str, Any]) -> Callable[..., Path]:
    """Write a (possibly edited) copy of the recorded snapshot: ``snapshot_file(name, edit)``."""

    def write(name: str, edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
        environment = json.loads(json.dumps(recorded_environment))
        if edit is not None:
            edit(environment)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"environment": environment}), encoding="utf-8")
        return path

    return write


def manifest_copy(directory: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The project's manifest and lock copied to ``directory``, the manifest edited."""
    directory.mkdir(parents=True, exist_ok=True)
    data = json.loads((ROOT / "environment.manifest.json").read_text(encoding="utf-8"))
    edit(data)
    shutil.copy(ROOT / "requirements.lock.txt", directory / "requirements.lock.txt")
    path = directory / "environment.manifest.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def validators_only_spec(directory: Path) -> Path:
    """The BCG example without analyses: a run with inputs and validators, no outputs."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE / "bcg.csv", directory / "bcg.csv")
    spec = json.loads((EXAMPLE / "spec.json").read_text(encoding="utf-8"))
    spec["analyses"] = []
    path = directory / "spec.json"
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path


def make_run(
    spec: Path,
    out: Path,
    *args: str,
    env: dict[str, str] | None = None,
    runner: Callable[..., subprocess.CompletedProcess[str]] = run_cli,
) -> Path:
    """``cosmo-runner run SPEC --out OUT``; returns OUT (the run log exists whatever the exit).

    ``runner``: the ``cli`` fixture (in process) unless the run needs its own process
    (``PYTHONPATH``).
    """
    proc = runner("run", spec, "--out", out, *args, env=env)
    assert (out / "run_log.json").is_file(), proc.stdout + proc.stderr
    return out
