"""A replay resolves the spec copy's relative paths against the original spec's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import InProcess

pytestmark = pytest.mark.slow


def test_relative_schema_path_replays(tmp_path: Path, cli: InProcess) -> None:
    job = tmp_path / "job"
    (job / "schemas").mkdir(parents=True)
    (job / "meta.json").write_text(json.dumps({"year": 1948}))
    (job / "schemas" / "meta.schema.json").write_text(
        json.dumps({"type": "object", "required": ["year"]})
    )
    spec = {
        "spec_version": 1,
        "name": "schema-only",
        "inputs": {"meta": {"path": "meta.json"}},
        "validators": [
            {
                "id": "meta",
                "kind": "jsonschema",
                "input": "meta",
                "schema": "schemas/meta.schema.json",
            }
        ],
    }
    (job / "spec.json").write_text(json.dumps(spec))
    run = tmp_path / "run"
    assert cli("run", job / "spec.json", "--out", run).returncode == 0
    proc = cli("verify", run, "--out", tmp_path / "replay")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reproduced" in proc.stdout
