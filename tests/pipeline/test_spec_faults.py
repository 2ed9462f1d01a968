"""Specs that cannot hurt: odd files, duplicate keys, NaN, depth, size, huge echoed values,
and metafor's level semantics (spec.load in process, a few CLI runs for exit code + log)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner import spec as spec_mod
from cosmo_runner.errors import SpecError
from tests.conftest import EXAMPLE, InProcess, load_log
from tests.forkserver import ForkServer


def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLE / "spec.json").read_text(encoding="utf-8"))
    return data


def _problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec_mod.load(path)
    assert caught.value.path == str(path)
    return caught.value.problems


def test_duplicate_keys_are_errors_naming_the_pointer(tmp_path: Path) -> None:
    text = json.dumps(_example(), indent=1).replace(
        '"method": "DL",', '"method": "DL", "method": "REML",'
    )
    path = tmp_path / "spec.json"
    path.write_text(text.replace('"spec_version": 1,', '"spec_version": 1, "name": "again",'))
    assert _problems(path) == [
        "/analyses/1/method: duplicate key 'method'",
        "/name: duplicate key 'name'",
    ]


@pytest.mark.parametrize("key", ["a\nb", "a\rb", "a\u2028b", "a\x85b", "a\x1cb"])
def test_a_line_break_in_a_key_is_escaped_in_the_pointer(tmp_path: Path, key: str) -> None:
    """A problem under a key with a line break (found by the fuzz test): one line still,
    from the parser (a non-finite number, a duplicate key) and from the schema."""
    escaped = repr(key)[1:-1]
    path = tmp_path / "spec.json"
    data = _example()
    data["inputs"][key] = {"path": "bcg.csv", "extra": 1}
    text = json.dumps(data).replace('"extra": 1', '"extra": Infinity, "x": 1, "x": 2')
    path.write_text(text)
    parsed = _problems(path)
    assert f"/inputs/{escaped}/extra: Infinity is not allowed (JSON numbers are finite)" in parsed
    assert f"/inputs/{escaped}/x: duplicate key 'x'" in parsed
    path.write_text(json.dumps(data))
    schema = _problems(path)
    assert any(p.startswith(f"/inputs/{escaped}") for p in schema), schema
    for problem in parsed + schema:
        assert len(problem.splitlines()) == 1, problem


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_level_is_rejected_at_parsing(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_example()).replace('"level": 95', f'"level": {literal}', 1))
    assert _problems(path) == [
        f"/analyses/0/level: {literal} is not allowed (JSON numbers are finite)"
    ]


@pytest.mark.parametrize(
    ("level", "message"),
    [
        (0, "0 is less than or equal to the minimum of 0"),
        (-1, "-1 is less than or equal to the minimum of 0"),
        (100, "100 is greater than or equal to the maximum of 100"),
        (250, "250 is greater than or equal to the maximum of 100"),
        ("95", "'95' is not of type 'number'"),
    ],
)
def test_level_outside_0_100_is_a_spec_error(tmp_path: Path, level: object, message: str) -> None:
    data = _example()
    data["analyses"][0]["level"] = level
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    assert _problems(path) == [f"/analyses/0/level: {message}"]


def test_a_100000_deep_spec_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text('{"spec_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert _problems(path) == [f"nested deeper than {spec_mod.MAX_SPEC_DEPTH} levels (the limit)"]
    path.write_text('{"spec_version": 1, "x": ' + "[" * 70 + "]" * 70 + "}")
    (problem,) = _problems(path)
    assert problem.startswith("/x/0/0/") and problem.endswith(
        "nested deeper than 64 levels (the limit)"
    )


def test_a_spec_over_the_size_cap_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_bytes(b" " * spec_mod.MAX_SPEC_BYTES + b"{}")
    size = spec_mod.MAX_SPEC_BYTES + 2
    assert _problems(path) == [f"too large: {size} bytes (limit 16 MiB)"]


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("name", ["x" * 1_000_000]),  # a type error echoing the value
        ("method", "R" * 1_000_000),  # an enum error echoing the value
        ("kind", "k" * 1_000_000),  # an unknown plugin kind, echoed by the pipeline
    ],
)
def test_echoed_values_are_capped(
    tmp_path: Path, where: str, value: object, cli: InProcess
) -> None:
    data = _example()
    if where == "name":
        data["name"] = value
    elif where == "method":
        data["analyses"][0]["method"] = value
    else:
        data["validators"][0] = {"id": "v", "kind": value, "input": "bcg"}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    (tmp_path / "bcg.csv").write_bytes((EXAMPLE / "bcg.csv").read_bytes())
    proc = cli("validate", path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"cosmo-runner: error: {path}: /")
    assert len(line) < 600
    assert f"({len(repr(value))} characters)" in line


def test_huge_additional_property_names_are_capped(tmp_path: Path) -> None:
    data = _example()
    data["z" * 500_000] = 1
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    (problem,) = _problems(path)
    assert problem.startswith("/: Additional properties are not allowed") and len(problem) < 500


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "spec.json")
    return tmp / "spec.json"


def _directory(tmp: Path) -> Path:
    (tmp / "spec.json").mkdir()
    return tmp / "spec.json"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("{}")
    return tmp / "file" / "spec.json"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_fifo, "not a regular file (a FIFO)"),
        (lambda tmp: Path("/dev/zero"), "not a regular file (a character device)"),
        (_directory, "not a regular file (a directory)"),
        (_under_a_file, "cannot read: Not a directory"),
    ],
    ids=["fifo", "dev-zero", "directory", "unreadable"],
)
def test_odd_spec_files_exit_2_with_a_complete_log(
    make: Any, reason: str, tmp_path: Path, forked: ForkServer
) -> None:
    spec = make(tmp_path)
    out = tmp_path / "out"
    # another process (forked, tests/forkserver.py): a blocking read (the FIFO, /dev/zero)
    # times out and is killed instead of hanging the suite
    proc = forked.run("run", spec, "--out", out, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"cosmo-runner: error: {spec}: {reason}"]
    log = load_log(out)
    assert log["status"] == "failed" and log["exit_code"] == 2
    assert log["error"]["type"] == "SpecError" and log["error"]["problems"] == [reason]


@pytest.mark.slow
def test_duplicate_key_run_exits_2_with_the_pointer_in_the_log(
    tmp_path: Path, cli: InProcess
) -> None:
    spec = tmp_path / "spec.json"
    (tmp_path / "bcg.csv").write_bytes((EXAMPLE / "bcg.csv").read_bytes())
    spec.write_text(
        json.dumps(_example()).replace('"method": "REML"', '"method": "REML", "method": "DL"', 1)
    )
    out = tmp_path / "out"
    proc = cli("run", spec, "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"cosmo-runner: error: {spec}: /analyses/0/method: duplicate key 'method'"
    ]
    log = load_log(out)
    assert log["error"]["problems"] == ["/analyses/0/method: duplicate key 'method'"]
    assert log["analyses"] == []
