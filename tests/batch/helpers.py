"""Helpers of the batch tests: run ``cosmo-runner batch`` in process, read its logs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.cli import main
from cosmo_runner.env.gate import Gate

#: studies per generated spec in the batch tests (``generate_specs(..., k=K)``): what a batch
#: does with a spec does not depend on its table's size, and a k=5 spec costs its worker less
#: than half the CPU of the bench's k=20 one (38 ms against 85 ms on 2026-12-01)
K = 5


def batch(
    capsys: pytest.CaptureFixture[str], gate: Gate, *args: str | Path
) -> tuple[int, str, str]:
    """``cosmo-runner batch ARGS`` in process: (exit code, stdout, stderr). ``gate`` gates the
    client (the session's ``reused_gate``; the workers gate themselves). Not through the
    ``cli`` fixture: it would put back the environment variables a batch must put back."""
    code = main(["batch", *map(str, args)], gate=gate)
    out, err = capsys.readouterr()
    return code, out, err


def batch_log(out_dir: Path) -> dict[str, Any]:
    """``batch_log.json``, checked against the published schema (the full form)."""
    from cosmo_runner.schemas import validate_against

    doc: dict[str, Any] = json.loads((out_dir / "batch_log.json").read_text(encoding="utf-8"))
    assert validate_against("batch_log", doc) == []
    # cosmo-runner batch writes every field the schema describes
    assert set(doc) >= set(SCHEMA_FIELDS), set(SCHEMA_FIELDS) - set(doc)
    for entry in doc["specs"]:
        assert set(entry) >= set(SPEC_FIELDS), set(SPEC_FIELDS) - set(entry)
    for entry in doc["workers"]:
        assert set(entry) >= {"name", "address", "env_id", "status", "reason", "specs", "env_diff"}
    return doc


def _schema_properties() -> tuple[list[str], list[str]]:
    from cosmo_runner.schemas import load_schema

    schema = load_schema("batch_log")
    return list(schema["properties"]), list(schema["properties"]["specs"]["items"]["properties"])


SCHEMA_FIELDS, SPEC_FIELDS = _schema_properties()


def events(out_dir: Path) -> list[dict[str, Any]]:
    lines = (out_dir / "batch_log.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def committed(out_dir: Path) -> list[str]:
    """The run folders of a batch folder (hidden staging folders excluded)."""
    return sorted(p.name for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def by_key(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["key"]: entry for entry in doc["specs"]}
