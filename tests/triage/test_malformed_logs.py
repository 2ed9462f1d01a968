"""`verify` and `env diff` on hand-edited logs: every malformation is exit 2 naming the file
and the field (JSON pointer), never exit 1; old logs without versions still verify."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosmo_runner.cli import main
from tests.conftest import EXAMPLE, InProcess, run_cli
from tests.triage.conftest import make_run

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, cli: InProcess) -> Path:
    """A succeeded run with one input, one analysis and its result (no plots)."""
    root = tmp_path_factory.mktemp("malformed")
    shutil.copy(EXAMPLE / "bcg.csv", root / "bcg.csv")
    spec = json.loads((EXAMPLE / "spec.json").read_text(encoding="utf-8"))
    spec["analyses"] = [{k: v for k, v in spec["analyses"][0].items() if k != "plots"}]
    (root / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    out = make_run(root / "spec.json", root / "run", runner=cli)
    assert json.loads((out / "run_log.json").read_text())["status"] == "succeeded"
    return out


@pytest.fixture(scope="module")
def original(run: Path) -> dict[str, Any]:
    log: dict[str, Any] = json.loads((run / "run_log.json").read_text(encoding="utf-8"))
    return log


def _copy(run: Path, tmp: Path) -> Path:
    target = tmp / f"copy{len(list(tmp.iterdir()))}"
    shutil.copytree(run, target)
    return target


def _get(document: Any, pointer: str) -> Any:
    for part in pointer.split("/")[1:]:
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def _set(document: Any, pointer: str, value: Any) -> None:
    *parents, last = pointer.split("/")[1:]
    target = _get(document, "/" + "/".join(parents)) if parents else document
    target[int(last) if isinstance(target, list) else last] = value


# JSON types each field may have (the run log schema and what the readers use)
VERIFY_FIELDS = {
    "/run_id": {"string"},
    "/status": {"string"},
    "/exit_code": {"integer", "null"},
    "/spec": {"object", "null"},
    "/spec/sha256": {"string", "null"},
    "/inputs": {"array"},
    "/inputs/0": {"object"},
    "/inputs/0/id": {"string"},
    "/inputs/0/resolved": {"string"},
    "/inputs/0/sha256": {"string"},
    "/inputs/0/bytes": {"integer"},
    "/outputs": {"array"},
    "/outputs/0": {"object"},
    "/outputs/0/path": {"string"},
    "/outputs/0/sha256": {"string"},
    "/analyses": {"array"},
    "/analyses/0/id": {"string"},
    "/analyses/0/result": {"object", "null"},
    "/smoke": {"object", "null"},
    "/smoke/passed": {"boolean"},
    "/log_version": {"integer"},
}
ENVIRONMENT_FIELDS = {
    "/environment": {"object", "null"},
    "/environment/observed": {"object"},
    "/environment/observed/python": {"object"},
    "/environment/observed/python/version_short": {"string", "null"},
    "/environment/observed/packages": {"array", "null"},
    "/environment/observed/packages/0": {"string"},
    "/environment/observed/env_vars": {"object", "null"},
    "/environment/observed/runner": {"object", "null"},
    "/environment/env_id": {"string", "null"},
}
REQUIRED = {
    "/": ["run_id", "status"],
    "/inputs/0": ["id", "resolved", "sha256"],
    "/outputs/0": ["path", "sha256"],
    "/smoke": ["passed", "checks"],
    "/environment": ["observed"],
    "/environment/observed": ["python"],
}

VALUES = {
    "string": st.text(max_size=4),
    "integer": st.integers(-5, 10**6),
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)),
    "boolean": st.booleans(),
    "null": st.none(),
    "array": st.lists(st.integers(0, 3), max_size=2),
    "object": st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2),
}


def _wrong(allowed: set[str]) -> st.SearchStrategy[Any]:
    """Values of every JSON type the field may not have ("number" draws only fractions)."""
    return st.one_of([strategy for kind, strategy in VALUES.items() if kind not in allowed])


def _edit_field(fields: dict[str, set[str]]) -> st.SearchStrategy[tuple[str, Any]]:
    return st.sampled_from(sorted(fields)).flatmap(
        lambda p: st.tuples(st.just(p), _wrong(fields[p]))
    )


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return err.splitlines()


def _verify(target: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = main(["verify", str(target), "--out", str(target) + ".replay"])
    lines = _lines(capsys)
    assert code == 2, lines
    assert not Path(str(target) + ".replay").exists()  # nothing replayed
    return lines


def _env_diff(log: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = main(["env", "diff", str(log), str(log)])
    lines = _lines(capsys)
    assert code == 2, lines
    return lines


@SETTINGS
@given(edit=_edit_field({**VERIFY_FIELDS, **ENVIRONMENT_FIELDS}))
def test_verify_names_a_field_of_the_wrong_type(
    edit: tuple[str, Any],
    run: Path,
    original: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pointer, value = edit
    target = _copy(run, tmp_path)
    log = json.loads(json.dumps(original))
    _set(log, pointer, value)
    (target / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    lines = _verify(target, capsys)
    prefix = f"cosmo-runner: error: {target / 'run_log.json'}: {pointer}: "
    assert any(line.startswith(prefix) for line in lines), (prefix, lines)


@SETTINGS
@given(edit=_edit_field(ENVIRONMENT_FIELDS))
def test_env_diff_names_a_field_of_the_wrong_type(
    edit: tuple[str, Any],
    original: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pointer, value = edit
    if pointer == "/environment" and value is None:
        return  # a log without an environment: its own message, tested below
    log = json.loads(json.dumps(original))
    _set(log, pointer, value)
    path = tmp_path / "run_log.json"
    path.write_text(json.dumps(log), encoding="utf-8")
    lines = _env_diff(path, capsys)
    assert any(line.startswith(f"cosmo-runner: error: {path}: {pointer}: ") for line in lines)


@pytest.mark.parametrize("parent", sorted(REQUIRED))
def test_verify_names_a_missing_field(
    parent: str,
    run: Path,
    original: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key in REQUIRED[parent]:
        target = _copy(run, tmp_path)
        log = json.loads(json.dumps(original))
        del (log if parent == "/" else _get(log, parent))[key]
        (target / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
        lines = _verify(target, capsys)
        path = target / "run_log.json"
        assert f"cosmo-runner: error: {path}: {parent}: '{key}' is a required property" in lines


@SETTINGS
@given(data=st.data())
def test_a_truncated_log_is_not_json(
    data: st.DataObject, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = (run / "run_log.json").read_bytes()
    cut = data.draw(st.integers(0, len(raw) - 3))
    target = _copy(run, tmp_path)
    (target / "run_log.json").write_bytes(raw[:cut])
    (line,) = _verify(target, capsys)
    assert line.startswith(f"cosmo-runner: error: {target / 'run_log.json'}: not valid JSON: ")
    (line,) = _env_diff(target / "run_log.json", capsys)
    assert line.startswith(f"cosmo-runner: error: {target / 'run_log.json'}: not valid JSON: ")


@pytest.mark.parametrize(
    ("text", "kind"), [("[]", "array"), ('"log"', "string"), ("3", "number"), ("null", "null")]
)
def test_a_log_that_is_not_an_object(
    text: str, kind: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _copy(run, tmp_path)
    (target / "run_log.json").write_text(text)
    assert _verify(target, capsys) == [
        f"cosmo-runner: error: {target / 'run_log.json'}: not a cosmo-runner run log "
        f"(a JSON {kind}, not an object)"
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"run_id": "a", "run_id": "b"}', "/run_id: duplicate key 'run_id'"),
        (b'{"exit_code": NaN}', "/exit_code: NaN is not allowed (JSON numbers are finite)"),
        (b"\xff\xfe{}", "not UTF-8 text: invalid start byte at byte 0"),
    ],
)
def test_odd_json_in_a_log(
    raw: bytes, message: str, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _copy(run, tmp_path)
    (target / "run_log.json").write_bytes(raw)
    assert f"cosmo-runner: error: {target / 'run_log.json'}: {message}" in _verify(target, capsys)


@pytest.mark.slow
def test_a_fifo_log_is_refused_without_blocking(run: Path, tmp_path: Path) -> None:
    target = _copy(run, tmp_path)
    (target / "run_log.json").unlink()
    os.mkfifo(target / "run_log.json")
    for args in (["verify", target], ["env", "diff", target, target]):
        # a subprocess: a blocking read would time out instead of hanging the suite
        proc = run_cli(*args, timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.splitlines() == [
            f"cosmo-runner: error: {target / 'run_log.json'}: not a regular file (a FIFO)"
        ]


def _edit_result(
    target: Path, log: dict[str, Any], edit: Callable[[dict[str, Any]], object]
) -> dict[str, Any]:
    """Apply ``edit`` to the run's one result file and record its new size and sha256 in
    ``log``, then write ``log`` as the run's log; returns the log's output entry."""
    (output,) = log["outputs"]
    result_path = target / output["path"]
    result = json.loads(result_path.read_text())
    edit(result)
    result_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    data = result_path.read_bytes()
    output.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    log["analyses"][0]["result"].update(bytes=len(data), sha256=output["sha256"])
    (target / "run_log.json").write_text(json.dumps(log, indent=2))
    return output


@pytest.mark.slow
@pytest.mark.parametrize("old", ["schema_version 1", "no version"])
def test_an_old_log_still_verifies_and_verify_says_the_versions_differ(
    old: str, run: Path, tmp_path: Path, cli: InProcess
) -> None:
    """A run written before versions were recorded: its result has no result_version and
    its log says schema_version 1 (or nothing). It still verifies; the report says so."""
    target = _copy(run, tmp_path)
    log = json.loads((target / "run_log.json").read_text())
    del log["log_version"]
    if old == "schema_version 1":
        log["schema_version"] = 1
    output = _edit_result(target, log, lambda result: result.pop("result_version"))

    proc = cli("verify", target, "--out", tmp_path / "replay")
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the result file gained a field
    log_line = "1" if old == "schema_version 1" else "0 (absent)"
    assert (
        f"  version differs: log_version {log_line} vs 2 (run_log.json), original vs replay "
        "(another cosmo-runner wrote it)"
    ) in proc.stdout.splitlines()
    assert (
        f"  version differs: result_version 0 (absent) vs 1 ({output['path']}), original vs "
        "replay (another cosmo-runner wrote it)"
    ) in proc.stdout.splitlines()
    assert "    /result_version: None -> 1" in proc.stdout.splitlines()

    proc = cli("verify", target, "--out", tmp_path / "replay2", "--json")
    report = json.loads(proc.stdout)
    assert report["versions"] == [
        {
            "field": "log_version",
            "path": "run_log.json",
            "original": int(old != "no version"),
            "replay": 2,
        },
        {"field": "result_version", "path": output["path"], "original": 0, "replay": 1},
    ]


def test_same_versions_say_nothing(run: Path, tmp_path: Path, cli: InProcess) -> None:
    proc = cli("verify", run, "--out", tmp_path / "replay")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "version differs" not in proc.stdout


@pytest.mark.parametrize(
    ("value", "shown"),
    [("1", "'1'"), (True, "True"), (1.5, "1.5"), (None, "None"), (-1, "-1"), ([1], "[1]")],
)
def test_a_malformed_result_version_is_named_not_read_as_absent(
    value: object, shown: str, run: Path, tmp_path: Path, cli: InProcess
) -> None:
    """A hand-edited result_version (the file still reads, its sha256 updated in the log) is
    exit 2 naming the file and the field: never "0 (absent)", never a crash."""
    target = _copy(run, tmp_path)
    log = json.loads((target / "run_log.json").read_text())
    output = _edit_result(target, log, lambda result: result.update(result_version=value))
    result_path = target / output["path"]

    proc = cli("verify", target, "--out", tmp_path / "replay")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        f"cosmo-runner: error: {result_path}: /result_version: {shown} is not a format version "
        "(a whole number >= 0)"
    ]
