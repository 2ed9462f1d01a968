"""`cosmo-runner verify RUN`: replay a run and compare its outputs.

Exit codes: 0 reproduced (or within --rtol), 1 differs (naming each output and the field
with the largest difference), 2 error (naming the file), 3 the replay's environment failed
the smoke gate (with the env diff original vs current). These runs have validators only;
the outputs of real analyses are in test_verify_example.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, InProcess, load_log
from tests.triage.conftest import make_run, manifest_copy, validators_only_spec

pytestmark = pytest.mark.slow  # each test runs and replays a pipeline in subprocesses


@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory, cli: InProcess) -> Path:
    """A succeeded run, shared read-only (every replay goes to its own directory)."""
    base = tmp_path_factory.mktemp("recorded")
    run = make_run(validators_only_spec(base / "work"), base / "run", runner=cli)
    assert load_log(run)["status"] == "succeeded"
    return run


@pytest.fixture
def own_run(tmp_path: Path, cli: InProcess) -> Path:
    """A run of this test's own, whose input the test may change."""
    return make_run(validators_only_spec(tmp_path / "work"), tmp_path / "run", runner=cli)


def _replays(run: Path) -> list[Path]:
    return sorted(run.parent.glob(f"{run.name}.verify-*"))


def _error_line(proc: Any) -> str:
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("cosmo-runner: error: ")
    return str(line)


def test_untouched_run_is_reproduced_in_a_new_directory_beside_it(
    recorded_run: Path, cli: InProcess
) -> None:
    before = (recorded_run / "run_log.json").read_bytes()
    proc = cli("verify", recorded_run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "reproduced (exit 0)"
    assert any(line.startswith("  environment: identical; env ids match (") for line in lines)
    [replay] = [p for p in _replays(recorded_run) if p.name in proc.stdout]
    assert load_log(replay)["status"] == "succeeded"
    assert (recorded_run / "run_log.json").read_bytes() == before  # the original is untouched


def test_json_report(recorded_run: Path, tmp_path: Path, cli: InProcess) -> None:
    proc = cli("verify", recorded_run, "--out", tmp_path / "replay", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "reproduced" and doc["exit_code"] == 0
    assert doc["replay_dir"] == str((tmp_path / "replay").resolve())
    assert doc["env_diff"]["identical"] is True and doc["env_diff"]["env_ids_match"] is True
    assert doc["differing"] == []


def test_out_dir_that_is_not_empty_is_refused(
    recorded_run: Path, tmp_path: Path, cli: InProcess
) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    proc = cli("verify", recorded_run, "--out", tmp_path / "busy")
    assert proc.returncode == 2
    assert "output directory is not empty, refusing to overwrite" in _error_line(proc)
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_changed_input_exits_2_naming_it(own_run: Path, cli: InProcess) -> None:
    csv = own_run.parent / "work" / "bcg.csv"
    csv.write_text(csv.read_text().replace("\n", "\n", 1) + "\n")  # one more byte
    proc = cli("verify", own_run)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = _error_line(proc)
    assert f"input 'bcg': {csv}: sha256 " in line
    assert "differs from the recorded" in line
    assert _replays(own_run) == []  # refused before anything was written


def test_missing_input_exits_2_naming_it(own_run: Path, cli: InProcess) -> None:
    csv = own_run.parent / "work" / "bcg.csv"
    csv.unlink()
    proc = cli("verify", own_run)
    assert proc.returncode == 2
    assert _error_line(proc).endswith(f"input 'bcg': file not found: {csv}")


def test_input_remapped_for_a_run_made_elsewhere(
    own_run: Path, tmp_path: Path, cli: InProcess
) -> None:
    csv = own_run.parent / "work" / "bcg.csv"
    moved = tmp_path / "elsewhere.csv"
    csv.rename(moved)
    proc = cli("verify", own_run, "--input", f"bcg={moved}", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replay = Path(json.loads(proc.stdout)["replay_dir"])
    [record] = load_log(replay)["inputs"]
    assert record["resolved"] == str(moved)


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("nope=/tmp/x.csv", "--input nope=...: the run has no input 'nope' (inputs: bcg)"),
        ("bcg", "--input expects ID=PATH, got 'bcg'"),
    ],
)
def test_bad_input_option_exits_2(
    recorded_run: Path, argument: str, message: str, cli: InProcess
) -> None:
    proc = cli("verify", recorded_run, "--input", argument)
    assert proc.returncode == 2
    assert _error_line(proc) == f"cosmo-runner: error: {message}"


PYTHON_SPECIFIER = json.loads((ROOT / "environment.manifest.json").read_text())["python"][
    "specifier"
]


def _exclude_this_python(manifest: dict[str, Any]) -> None:
    manifest["python"]["specifier"] = "<3.0"


@pytest.mark.parametrize("how", ["--manifest", "COSMO_MANIFEST"])
def test_replay_failing_the_gate_exits_3_with_the_env_diff(
    recorded_run: Path, tmp_path: Path, how: str, cli: InProcess
) -> None:
    manifest = manifest_copy(tmp_path / "m", _exclude_this_python)
    out = tmp_path / "replay"
    if how == "--manifest":
        proc = cli("verify", recorded_run, "--out", out, "--manifest", manifest)
    else:
        proc = cli("verify", recorded_run, "--out", out, env={"COSMO_MANIFEST": str(manifest)})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        line.startswith("  environment gate: python 3.") and line.endswith("outside <3.0")
        for line in lines
    ), proc.stdout
    assert "environment, original run (A) vs replay (B):" in lines
    assert any(
        line.split() == ["manifest", "/python/specifier", PYTHON_SPECIFIER, "<3.0"]
        for line in lines
    )
    assert lines[-1] == "replay failed the environment gate (exit 3)"
    original = load_log(recorded_run)["environment"]["manifest"]["path"]
    assert (
        f"  hint: the original run used the manifest {original}; pass --manifest {original} to use it"
        in lines
    )
    assert load_log(out)["exit_code"] == 3  # the replay keeps its complete log


def test_different_but_passing_environment_is_reproduced(
    recorded_run: Path, tmp_path: Path, cli: InProcess
) -> None:
    """The same manifest with the Python expectation downgraded to a warning: the replay
    passes its gate in a different environment (another manifest, so another env id)."""

    def warn_only(manifest: dict[str, Any]) -> None:
        _exclude_this_python(manifest)
        manifest["python"]["severity"] = "warn"

    manifest = manifest_copy(tmp_path / "m", warn_only)
    proc = cli("verify", recorded_run, "--out", tmp_path / "r", "--manifest", manifest)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "reproduced (exit 0)"
    [env_line] = [line for line in lines if line.startswith("  environment: ")]
    assert env_line.startswith("  environment: different: ")
    assert "env ids differ (" in env_line


def test_only_a_succeeded_run_can_be_verified(tmp_path: Path, cli: InProcess) -> None:
    manifest = manifest_copy(tmp_path / "m", _exclude_this_python)
    failed = make_run(
        validators_only_spec(tmp_path / "work"),
        tmp_path / "run",
        "--manifest",
        str(manifest),
        runner=cli,
    )
    proc = cli("verify", failed)
    assert proc.returncode == 2
    assert _error_line(proc).endswith(
        f"{failed / 'run_log.json'}: the run did not succeed (status failed, exit 3); "
        "only a succeeded run can be verified"
    )


def test_not_a_run_directory(tmp_path: Path, cli: InProcess) -> None:
    proc = cli("verify", tmp_path)
    assert proc.returncode == 2
    assert _error_line(proc).endswith(f"{tmp_path}: not a run directory (no run_log.json)")


def test_changed_spec_copy_exits_2(recorded_run: Path, tmp_path: Path, cli: InProcess) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(recorded_run, copy)
    spec = copy / "spec.json"
    spec.write_text(spec.read_text() + " ")
    proc = cli("verify", copy)
    assert proc.returncode == 2
    assert f"{spec}: sha256 " in _error_line(proc)


def test_negative_rtol_is_a_usage_error(recorded_run: Path, cli: InProcess) -> None:
    proc = cli("verify", recorded_run, "--rtol", "-1")
    assert proc.returncode == 2
    assert _error_line(proc).endswith("--rtol must be a finite number >= 0, got -1.0")
