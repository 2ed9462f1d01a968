"""`run` and `validate` end to end: run directories, never losing the log, plugins, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, InProcess, fake_dist, load_log, run_cli
from tests.forkserver import ForkServer
from tests.triage.conftest import validators_only_spec

pytestmark = pytest.mark.slow

PLUGIN = '''
import time
from cosmo_runner.validators import Finding

def no_negative_years(context):
    """Example third-party validator: options {"column": name, "sleep": seconds}.

    "started": a path the validator creates before it sleeps (a test's cue that it runs).
    """
    if "started" in context.options:
        open(context.options["started"], "x").close()
    time.sleep(float(context.options.get("sleep", 0)))
    column = context.options.get("column", "year")
    table = context.table()  # parsed once per run from the hashed bytes
    years = table.numbers(column).values
    for row in range(len(table)):
        if years[row] < 1900:
            where = table.location(row, column)
            yield Finding("error", f"{where.text()}: {column} {int(years[row])} before 1900",
                          where.as_dict())
'''


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A plugin 'installed' as a .dist-info with an entry point, no network, no pip."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "cosmo_year_plugin.py").write_text(PLUGIN)
    fake_dist(
        site,
        "cosmo-year-plugin",
        "0.1",
        entry_points="[cosmo_runner.validators]\nyears = cosmo_year_plugin:no_negative_years\n",
    )
    return site


def _plugin_spec(example: Path, **options: object) -> Path:
    spec = json.loads(example.read_text())
    spec["validators"].append(
        {"id": "years", "kind": "years", "input": "bcg", "options": {"column": "year", **options}}
    )
    spec["analyses"] = []
    example.write_text(json.dumps(spec))
    return example


def test_default_run_directory_holds_log_spec_results_plots(
    example: Path, tmp_path: Path, cli: InProcess
) -> None:
    proc = cli("run", example, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in run_dir.iterdir()} >= {"run_log.json", "spec.json", "results", "plots"}
    log = load_log(run_dir)
    assert log["status"] == "succeeded" and log["exit_code"] == 0
    assert run_dir.name == log["run_id"]
    assert f"log: {run_dir / 'run_log.json'}" in proc.stdout
    assert "analysis bcg-reml: k=13 estimate -0.7145" in proc.stdout
    (record,) = log["inputs"]
    assert record["path"] == "bcg.csv" and record["resolved"] == str(example.parent / "bcg.csv")
    assert {o["path"] for o in log["outputs"]} >= {
        "results/bcg-reml.json",
        "plots/bcg-reml.forest.png",
    }
    for output in log["outputs"]:
        assert (run_dir / output["path"]).stat().st_size == output["bytes"]


def test_non_empty_out_dir_is_refused_and_left_untouched(
    example: Path, tmp_path: Path, cli: InProcess
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    proc = cli("run", example, "--out", out)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"cosmo-runner: error: output directory is not empty, refusing to overwrite: {out}"
    )
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_unwritable_out_dir_says_so_and_writes_nothing(
    example: Path, tmp_path: Path, cli: InProcess
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = cli("run", example, "--out", blocker / "sub")
    assert proc.returncode == 2
    assert proc.stderr.startswith("cosmo-runner: error: output directory cannot be written: ")
    assert proc.stdout == ""


def test_validate_is_a_dry_run_that_writes_nothing(
    example: Path, tmp_path: Path, cli: InProcess
) -> None:
    proc = cli("validate", example, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "validator bcg-table: passed" in proc.stdout
    assert "analysis" not in proc.stdout
    assert not (tmp_path / "runs").exists()
    out = tmp_path / "v"
    assert cli("validate", example, "--out", out).returncode == 0
    log = load_log(out)
    assert log["analyses"] == [] and list((out / "results").iterdir()) == []


def test_four_parallel_runs_get_four_directories(tmp_path: Path, forked: ForkServer) -> None:
    """Four real processes (forked: they start within milliseconds) into ./runs/: the
    directory and run id are the point, so the spec has validators only."""
    spec = validators_only_spec(tmp_path / "spec")
    procs = [
        forked.popen(
            ["run", str(spec)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [0, 0, 0, 0], outputs
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 4
    assert len({load_log(d)["run_id"] for d in run_dirs}) == 4


def test_plugin_validator_from_an_entry_point(
    example: Path, plugin_site: Path, tmp_path: Path
) -> None:
    spec = _plugin_spec(example)
    env = {"PYTHONPATH": str(plugin_site)}
    assert run_cli("validate", spec, env=env).returncode == 0
    table = spec.parent / "bcg.csv"
    table.write_text(table.read_text().replace(",Aronson,1948,", ",Aronson,1848,"))
    proc = run_cli("run", spec, "--out", tmp_path / "out", env=env)
    assert proc.returncode == 4
    message = "bcg.csv line 2 (study 'Aronson 1948'), column year: year 1848 before 1900"
    assert f"cosmo-runner: error: {message}" in proc.stderr
    log = load_log(tmp_path / "out")
    years = next(v for v in log["validators"] if v["id"] == "years")
    assert years["status"] == "failed"
    location = {"file": "bcg.csv", "line": 2, "column": "year", "study": "Aronson 1948"}
    assert years["findings"] == [{"level": "error", "message": message, "location": location}]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_during_a_run_leaves_an_interrupted_log(
    example: Path, plugin_site: Path, tmp_path: Path, signum: int, code: int, *, forked: ForkServer
) -> None:
    """A real process (forked from the warm fork server) stopped inside a plugin validator;
    pipeline/test_signals.py has the same signals in fresh interpreters."""
    started = tmp_path / "validator-started"
    spec = _plugin_spec(example, sleep=60, started=str(started))
    out = tmp_path / "out"
    proc = forked.popen(
        ["run", str(spec), "--out", str(out)],
        env={"PYTHONPATH": str(plugin_site)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The cue is the plugin itself starting (not a guess at how long imports take).
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the plugin validator never started"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    log = load_log(out)
    assert log["status"] == "interrupted" and log["exit_code"] == code
    assert log["error"]["type"] == "Interrupted"
    assert signal.Signals(signum).name in stderr
    years = next(v for v in log["validators"] if v["id"] == "years")
    assert years["status"] == "error", "a validator stopped by a signal never passed"
    assert years["error"]["type"] == "Interrupted"


def test_debug_prints_the_traceback(tmp_path: Path, cli: InProcess) -> None:
    case = ROOT / "tests" / "cases" / "missing-input" / "spec.json"
    plain = cli("run", case, "--out", tmp_path / "a")
    debug = cli("--debug", "run", case, "--out", tmp_path / "b")
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr
    assert plain.returncode == debug.returncode == 2
