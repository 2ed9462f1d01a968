"""Inputs read once, odd files refused without blocking, validators that say what happened.

In process (``cli.main`` / ``pipeline.execute``, with the session's gate: observed and
checked once per distinct environment); each test ends with the exit code, the one-line
message and the run log's schema validity.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner import cli
from cosmo_runner.pipeline import RunOptions, execute
from tests.conftest import EXAMPLE, ReusedGate, fake_dist, load_log

pytestmark = pytest.mark.slow

GEN_CSV = "study,yi,vi\nA,0.10,0.02\nB,0.30,0.01\nC,0.20,0.03\n"


def _gen_case(tmp_path: Path, table: str = GEN_CSV, **validator: Any) -> Path:
    case = tmp_path / "case"
    case.mkdir()
    (case / "g.csv").write_text(table)
    spec = {
        "spec_version": 1,
        "name": "case",
        "inputs": {"g": {"path": "g.csv"}},
        "validators": [{"id": "table", "kind": "effect_table", "input": "g", "measure": "GEN"}]
        if not validator
        else [validator],
        "analyses": [{"id": "fit", "input": "g", "measure": "GEN", "method": "DL"}],
    }
    (case / "spec.json").write_text(json.dumps(spec))
    return case / "spec.json"


def _run(
    spec: Path, out: Path, capsys: pytest.CaptureFixture[str], gate: ReusedGate
) -> tuple[int, list[str]]:
    code = cli.main(["run", str(spec), "--out", str(out)], gate=gate)
    errors = [
        line.removeprefix("cosmo-runner: error: ")
        for line in capsys.readouterr().err.splitlines()
        if line.startswith("cosmo-runner: error: ")
    ]
    return code, errors


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_an_input_that_is_not_a_regular_file_is_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate, kind: str
) -> None:
    spec = _gen_case(tmp_path)
    table = spec.parent / "g.csv"
    table.unlink()
    expected = {"fifo": "a FIFO", "directory": "a directory", "device": "a character device"}
    if kind == "fifo":
        os.mkfifo(table)  # no writer: a blocking open would hang
    elif kind == "directory":
        table.mkdir()
    else:
        table.symlink_to("/dev/zero")  # reading it would never end
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    assert code == 2
    assert errors == [f"input 'g': {table.resolve()}: not a regular file ({expected[kind]})"]
    log = load_log(tmp_path / "out")
    assert log["status"] == "failed" and log["exit_code"] == 2
    assert log["error"]["type"] == "InputError"
    assert log["validators"] == [] and log["analyses"] == []


def test_an_unreadable_input_is_exit_2_cannot_read(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reused_gate: ReusedGate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = _gen_case(tmp_path)
    table = (spec.parent / "g.csv").resolve()
    real_open = os.open

    def deny(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path) == table:  # as for a file of another user without read permission
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    monkeypatch.undo()
    assert code == 2
    assert errors == [f"input 'g': {table}: cannot read: Permission denied"]
    log = load_log(tmp_path / "out")
    assert log["exit_code"] == 2 and log["error"]["type"] == "InputError"


def test_the_analysis_uses_the_hashed_bytes_when_the_file_is_replaced(
    tmp_path: Path, reused_gate: ReusedGate
) -> None:
    """Replace the input after it was read and hashed (a test hook, not timing luck)."""
    case = tmp_path / "bcg"
    shutil.copytree(EXAMPLE, case)
    spec = case / "spec.json"
    data = json.loads(spec.read_text())
    data["analyses"] = data["analyses"][:1]
    data["analyses"][0]["plots"] = []
    spec.write_text(json.dumps(data))
    original = (case / "bcg.csv").read_bytes()
    header, *rows = original.decode().splitlines()
    replaced: list[str] = []

    def replace(input_id: str, path: Path) -> None:
        lines = [header]
        for copy in range(40):  # 520 studies with unique labels
            for row in rows:
                cells = row.split(",")
                cells[3] = f"{cells[3]} copy {copy}"
                lines.append(",".join(cells))
        path.write_text("\n".join(lines) + "\n")
        replaced.append(input_id)

    out = tmp_path / "out"
    result = execute(
        RunOptions(spec_path=spec, out_dir=out, after_inputs=replace, gate=reused_gate)
    )
    assert replaced == ["bcg"]
    assert (case / "bcg.csv").read_bytes() != original
    assert result.exit_code == 0, result.error
    log = load_log(out)
    (record,) = log["inputs"]
    import hashlib

    assert record["sha256"] == hashlib.sha256(original).hexdigest()
    assert record["bytes"] == len(original)
    results = json.loads((out / "results" / "bcg-reml.json").read_text())
    assert results["k"] == 13, "the analysis read the replaced file"
    assert log["analyses"][0]["summary"]["k"] == 13


PLUGINS = """
from cosmo_runner.validators import Finding

def raises(context):
    raise ValueError("boom")

def shouting(context):
    return [{"level": "ERROR", "message": "upper-case level"}]

def number_message(context):
    return [Finding("warning", 42)]

def bad_location(context):
    return [Finding("info", "fine", {"row": 1})]

def not_iterable(context):
    return 7

def exits(context):
    raise SystemExit(0)

def calls_sys_exit(context):
    import sys
    sys.exit(3)

def fails_midway(context):
    yield Finding("warning", "first")
    raise RuntimeError("midway")

def long_message(context):
    return [Finding("error", "x" * 8_000_000), Finding("warning", "two\\nlines\\r\\nand\\u2028more")]

def uses_the_bytes(context):
    n = context.data.count(b"\\n") - 1
    table = context.table()
    yield Finding("info", f"{n} data lines, {len(table)} rows", None, "rows")
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One site for the module: the same ``sys.path`` in each test, so one observation."""
    site = tmp_path_factory.mktemp("site")
    (site / "cosmo_odd_plugins.py").write_text(PLUGINS)
    names = ["raises", "shouting", "number_message", "bad_location", "not_iterable"]
    names += ["uses_the_bytes", "exits", "calls_sys_exit", "fails_midway", "long_message"]
    entry_points = "".join(f"{n} = cosmo_odd_plugins:{n}\n" for n in names)
    (site / "cosmo_unimportable.py").write_text("def check(context:\n")  # a SyntaxError
    (site / "cosmo_needs_missing.py").write_text("import cosmo_no_such_module\n")
    entry_points += "unimportable = cosmo_unimportable:check\n"
    entry_points += "needs_missing = cosmo_needs_missing:check\n"
    entry_points += "no_such_name = cosmo_odd_plugins:no_such_name\n"
    fake_dist(
        site, "cosmo-odd-plugins", "0.1", entry_points=f"[cosmo_runner.validators]\n{entry_points}"
    )
    return site


@pytest.fixture
def plugins(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("raises", "validator 'p' (kind 'raises') raised ValueError: boom"),
        (
            "shouting",
            "validator 'p' (kind 'shouting'): finding 1: level 'ERROR' is not one of "
            "error, warning, info (lowercase)",
        ),
        (
            "number_message",
            "validator 'p' (kind 'number_message'): finding 1: message: 42 is not of type 'string'",
        ),
        ("bad_location", "validator 'p' (kind 'bad_location'): finding 1: location:"),
        ("not_iterable", "validator 'p' (kind 'not_iterable') returned a int, not an iterable"),
        ("exits", "validator 'p' (kind 'exits') raised SystemExit: 0"),
        ("calls_sys_exit", "validator 'p' (kind 'calls_sys_exit') raised SystemExit: 3"),
        ("fails_midway", "validator 'p' (kind 'fails_midway') raised RuntimeError: midway"),
    ],
)
def test_a_misbehaving_plugin_is_an_error_never_passed(
    kind: str,
    message: str,
    *,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reused_gate: ReusedGate,
    plugins: None,
) -> None:
    spec = _gen_case(tmp_path, id="p", kind=kind, input="g")
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    assert code == 5
    assert len(errors) == 1 and errors[0].startswith(message), errors
    log = load_log(tmp_path / "out")
    (record,) = log["validators"]
    assert record["status"] == "error"
    assert record["error"]["type"] == "ValidatorError"
    assert record["error"]["message"].startswith(message)
    assert log["error"]["type"] == "ValidatorError" and log["exit_code"] == 5
    assert log["analyses"] == []


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("unimportable", "'cosmo_unimportable:check': SyntaxError: '(' was never closed"),
        (
            "needs_missing",
            "'cosmo_needs_missing:check': ModuleNotFoundError: No module named "
            "'cosmo_no_such_module'",
        ),
        (
            "no_such_name",
            "'cosmo_odd_plugins:no_such_name': AttributeError: module 'cosmo_odd_plugins' has "
            "no attribute 'no_such_name'",
        ),
    ],
)
def test_a_plugin_that_cannot_be_loaded_is_named(
    kind: str,
    message: str,
    *,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reused_gate: ReusedGate,
    plugins: None,
) -> None:
    spec = _gen_case(tmp_path, id="p", kind=kind, input="g")
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    assert code == 5
    message = f"validator kind {kind!r}: cannot load the plugin {message}"
    assert len(errors) == 1 and errors[0].startswith(message), errors
    log = load_log(tmp_path / "out")
    assert log["error"]["type"] == "ValidatorError" and log["exit_code"] == 5
    assert log["error"]["message"].startswith(message)
    assert log["analyses"] == []


def test_a_plugin_message_is_one_line_of_at_most_1000_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate, plugins: None
) -> None:
    spec = _gen_case(tmp_path, id="p", kind="long_message", input="g")
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    assert code == 4
    cut = "x" * 960 + "... (8000000 characters)"
    assert errors == ["1 validator error(s) in p", cut]
    (record,) = load_log(tmp_path / "out")["validators"]
    assert [f["message"] for f in record["findings"]] == [cut, "two lines and more"]
    assert record["status"] == "failed"


def test_a_plugin_gets_the_hashed_bytes_and_the_parsed_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate, plugins: None
) -> None:
    spec = _gen_case(tmp_path, id="p", kind="uses_the_bytes", input="g")
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    assert (code, errors) == (0, [])
    log = load_log(tmp_path / "out")
    (record,) = log["validators"]
    assert record["status"] == "passed with warnings"
    assert record["findings"] == [
        {"level": "info", "message": "3 data lines, 3 rows", "location": None, "code": "rows"}
    ]


def test_a_broken_table_makes_every_validator_of_it_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    spec = _gen_case(tmp_path, table="study,yi,vi\nA,0.1,0.02\nB,0.3\n")
    data = json.loads(spec.read_text())
    data["validators"].append(dict(data["validators"][0], id="again"))
    spec.write_text(json.dumps(data))
    code, errors = _run(spec, tmp_path / "out", capsys, reused_gate)
    assert code == 2
    assert errors == ["g.csv line 3: 2 fields, the header has 3"]
    log = load_log(tmp_path / "out")
    assert [v["status"] for v in log["validators"]] == ["error", "error"]
    assert log["error"]["type"] == "TableError"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_jsonschema_schema_file_must_be_a_regular_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate, kind: str
) -> None:
    case = tmp_path / "case"
    case.mkdir()
    (case / "meta.json").write_text('{"a": 1}')
    schema = case / "meta.schema.json"
    os.mkfifo(schema) if kind == "fifo" else schema.mkdir()
    spec = {
        "spec_version": 1,
        "name": "case",
        "inputs": {"meta": {"path": "meta.json"}},
        "validators": [
            {"id": "m", "kind": "jsonschema", "input": "meta", "schema": "meta.schema.json"}
        ],
    }
    (case / "spec.json").write_text(json.dumps(spec))
    code, errors = _run(case / "spec.json", tmp_path / "out", capsys, reused_gate)
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith(f"schema file: {schema}: not a regular file")
    log = load_log(tmp_path / "out")
    assert log["validators"][0]["status"] == "error"


def test_an_interrupted_validator_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reused_gate: ReusedGate
) -> None:
    """SIGINT arriving while the table is checked: the validator is an error, the log says
    interrupted (in process: the signal is raised from inside the validator)."""
    from cosmo_runner.validators import effect_table

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal handler raises first")

    monkeypatch.setattr(effect_table, "check_table", interrupted)
    spec = _gen_case(tmp_path)
    result = execute(RunOptions(spec_path=spec, out_dir=tmp_path / "out", gate=reused_gate))
    assert result.exit_code == 130
    log = load_log(tmp_path / "out")
    assert log["status"] == "interrupted" and log["exit_code"] == 130
    (record,) = log["validators"]
    assert record["status"] == "error" and record["error"]["type"] == "Interrupted"
