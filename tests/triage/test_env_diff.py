"""`cosmo-runner env diff A B`: exit 0 identical, 1 different (naming what and both values),
2 error (naming the file). Other environments are faked without the network: recorded
snapshots edited as JSON, and `.dist-info` folders on PYTHONPATH in a subprocess."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.env.diff import EnvView, diff, load_view
from tests.conftest import ROOT, InProcess, fake_dist
from tests.forkserver import ForkServer
from tests.triage.conftest import make_run, manifest_copy, validators_only_spec

Edit = Callable[[dict[str, Any]], None]


def _replace_package(name: str, version: str | None) -> Edit:
    def edit(env: dict[str, Any]) -> None:
        packages = [p for p in env["observed"]["packages"] if p.split("==")[0] != name]
        if version is not None:
            packages.append(f"{name}=={version}")
        env["observed"]["packages"] = sorted(packages)

    return edit


def _set(*path_and_value: Any) -> Edit:
    *path, value = path_and_value

    def edit(env: dict[str, Any]) -> None:
        target = env
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _manifest_severity_warn(env: dict[str, Any]) -> None:
    env["expected"]["python"]["severity"] = "warn"
    env["manifest"]["sha256"] = "f" * 64


# id -> (edit of B, the row the table must show, (section, key, change) in --json)
CLASSES: dict[str, tuple[Edit, str, tuple[str, str, str]]] = {
    "package-changed": (
        _replace_package("jsonschema", "4.25.1"),
        "package jsonschema {jsonschema} 4.25.1",
        ("packages", "jsonschema", "changed"),
    ),
    "package-added": (
        _replace_package("left-pad", "1.3.0"),
        "package left-pad - 1.3.0",
        ("packages", "left-pad", "added"),
    ),
    "package-removed": (
        _replace_package("scipy", None),
        "package scipy {scipy} -",
        ("packages", "scipy", "removed"),
    ),
    "python-version": (
        _set("observed", "python", "version_short", "3.11.2"),
        "python version {python} 3.11.2",
        ("python", "version", "changed"),
    ),
    "python-executable": (
        _set("observed", "python", "executable", "/opt/other/bin/python"),
        "python executable {executable} /opt/other/bin/python",
        ("python", "executable", "changed"),
    ),
    "platform": (
        _set("observed", "platform", "Linux-5.4.0-generic-x86_64-with-glibc2.31"),
        "platform {platform} Linux-5.4.0-generic-x86_64-with-glibc2.31",
        ("system", "platform", "changed"),
    ),
    "machine": (
        _set("observed", "machine", "aarch64"),
        "machine {machine} aarch64",
        ("system", "machine", "changed"),
    ),
    "lock": (
        _set("lock", "sha256", "0" * 64),
        "lock sha256 {lock}... 000000000000...",
        ("lock", "sha256", "changed"),
    ),
    "manifest": (
        _manifest_severity_warn,
        "manifest /python/severity error warn",
        ("manifest_content", "/python/severity", "changed"),
    ),
    "env-vars": (
        _set("observed", "env_vars", "OMP_NUM_THREADS", "64"),
        "env var OMP_NUM_THREADS - 64",
        ("env_vars", "OMP_NUM_THREADS", "added"),
    ),
    "blas": (
        _set("observed", "blas", "blas", {"name": "mkl", "version": "2024.1"}),
        "blas {blas} mkl 2024.1",
        ("blas", "blas", "changed"),
    ),
    "loaded-blas": (
        _set("observed", "threadpools", "numpy_blas", "version", "0.3.21"),
        "loaded blas {loaded} openblas 0.3.21",
        ("threadpools", "blas", "changed"),
    ),
    "loaded-blas-architecture": (
        _set("observed", "threadpools", "numpy_blas", "architecture", "SkylakeX"),
        "loaded blas architecture {architecture} SkylakeX",
        ("threadpools", "blas_architecture", "changed"),
    ),
    "loaded-blas-threads": (
        _set("observed", "threadpools", "numpy_blas", "num_threads", 64),
        "loaded blas threads {threads} 64",
        ("threadpools", "blas_threads", "changed"),
    ),
    "cpu-model": (
        _set("observed", "cpu", "model", "Intel(R) Xeon(R) Gold 6248"),
        "cpu model {cpu} Intel(R) Xeon(R) Gold 6248",
        ("cpu", "model", "changed"),
    ),
    "numpy-simd": (
        _set("observed", "cpu", "numpy_simd", "found", []),
        "cpu numpy simd {simd} (none)",
        ("cpu", "numpy_simd", "changed"),
    ),
}


def _expected_row(template: str, environment: dict[str, Any]) -> list[str]:
    """The row's words, with this environment's values (A's side) filled in."""
    observed = environment["observed"]
    packages = dict(p.split("==") for p in observed["packages"])
    blas = observed["blas"]["blas"]
    values = {
        "jsonschema": packages["jsonschema"],
        "scipy": packages["scipy"],
        "python": observed["python"]["version_short"],
        "executable": observed["python"]["executable"],
        "platform": observed["platform"],
        "machine": observed["machine"],
        "lock": environment["lock"]["sha256"][:12],
        "blas": f"{blas['name']} {blas['version']}",
        "loaded": f"openblas {observed['threadpools']['numpy_blas']['version']}",
        "architecture": observed["threadpools"]["numpy_blas"]["architecture"],
        "threads": str(observed["threadpools"]["numpy_blas"]["num_threads"]),
        "cpu": observed["cpu"]["model"],
        "simd": " ".join(observed["cpu"]["numpy_simd"]["found"]),
    }
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template.split()


def test_identical_snapshots_exit_0_and_say_so(snapshot_file, cli: InProcess) -> None:
    proc = cli("env", "diff", snapshot_file("a"), snapshot_file("b"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("identical; env ids match (")
    assert proc.stderr == ""


@pytest.mark.parametrize("case", list(CLASSES))
def test_each_difference_class_is_named_with_both_values(
    case: str, snapshot_file, recorded_environment, cli: InProcess
) -> None:
    edit, row, (section, key, change) = CLASSES[case]
    a, b = snapshot_file("a"), snapshot_file("b", edit)

    proc = cli("env", "diff", a, b)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = _expected_row(row, recorded_environment)
    assert any(line.split() == expected for line in proc.stdout.splitlines()), proc.stdout
    count = 2 if case == "manifest" else 1  # a manifest edit also changes its sha256
    verdict = proc.stdout.splitlines()[-1]
    assert verdict.startswith(f"different: {count} difference(s) (")
    assert verdict.count("manifest") <= 1  # manifest sha256 and content count as one section

    machine = cli("env", "diff", a, b, "--json")
    assert machine.returncode == 1
    doc = json.loads(machine.stdout)
    assert doc["identical"] is False
    found = [(d["section"], d["key"], d["change"]) for d in doc["differences"]]
    assert (section, key, change) in found
    assert len(found) == count


def test_a_log_from_before_the_probes_does_not_compare_them(snapshot_file, cli: InProcess) -> None:
    def old(env: dict[str, Any]) -> None:
        del env["observed"]["cpu"], env["observed"]["threadpools"]

    proc = cli("env", "diff", snapshot_file("a", old), snapshot_file("b"), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["identical"] is True
    assert {"cpu", "threadpools"} <= set(doc["not_compared"])


def test_env_ids_are_stated_when_they_differ(snapshot_file, cli: InProcess) -> None:
    b = snapshot_file("b", _set("env_id", "0123456789abcdef"))
    proc = cli("env", "diff", snapshot_file("a"), b)
    # the env id is derived from the facts; alone it is no difference, but it is reported
    assert proc.returncode == 0
    assert "env ids differ (" in proc.stdout and "vs 0123456789abcdef)" in proc.stdout


@pytest.mark.slow
def test_a_run_in_another_environment_that_failed_its_gate(
    tmp_path: Path, cli: InProcess, forked: ForkServer
) -> None:
    """A run in an environment where jsonschema has another version (a `.dist-info` of
    4.25.1 first on PYTHONPATH) fails its smoke gate but keeps its log; env diff names it.
    The runs are processes of their own, each observing and gating its environment afresh
    (forked, ``gate="fresh"``); the diffs of their logs run in process."""
    site = tmp_path / "site"
    fake_dist(site, "jsonschema", "4.25.1")
    spec = validators_only_spec(tmp_path / "work")
    fresh = functools.partial(forked.run, gate="fresh")
    good = make_run(spec, tmp_path / "good", runner=fresh)
    drifted = make_run(spec, tmp_path / "drifted", env={"PYTHONPATH": str(site)}, runner=fresh)
    assert json.loads((drifted / "run_log.json").read_text())["exit_code"] == 3

    proc = cli("env", "diff", good, drifted)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    locked = dict(
        p.split("==")
        for p in json.loads((good / "run_log.json").read_text())["environment"]["observed"][
            "packages"
        ]
    )["jsonschema"]
    lines = proc.stdout.splitlines()
    assert any(line.split() == ["package", "jsonschema", locked, "4.25.1"] for line in lines), (
        proc.stdout
    )
    assert any(line.split() == ["lock", "verdict", "in-sync", "drifted"] for line in lines)
    assert "; env ids differ (" in lines[-1]  # the drift is part of the env id
    assert any(line.split()[:3] == ["env", "var", "PYTHONPATH"] for line in lines)
    assert "status failed" in lines[1]
    assert "B: the run failed its smoke gate" in proc.stdout

    # two runs in one environment: identical
    again = make_run(spec, tmp_path / "again", runner=fresh)
    proc = cli("env", "diff", good, again / "run_log.json")
    assert proc.returncode == 0, proc.stdout
    assert "identical; env ids match" in proc.stdout


def test_current_against_a_faked_install(tmp_path: Path, snapshot_file, forked: ForkServer) -> None:
    site = tmp_path / "site"
    fake_dist(site, "left-pad", "1.3.0")
    env = {"PYTHONPATH": str(site)}
    proc = forked.run("env", "diff", snapshot_file("before"), "current", env=env, gate="fresh")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert any(
        line.split() == ["package", "left-pad", "-", "1.3.0"] for line in proc.stdout.splitlines()
    )
    assert "B: current (current, env_id " in proc.stdout


def test_lock_files_compare_pins_and_sha256(tmp_path: Path, cli: InProcess) -> None:
    text = (ROOT / "requirements.lock.txt").read_text()
    locked = next(line for line in text.splitlines() if line.startswith("jsonschema=="))
    version = locked.split("==")[1].split()[0]
    other = tmp_path / "other.lock.txt"
    other.write_text(text.replace(f"jsonschema=={version}", "jsonschema==4.25.1"))

    proc = cli("env", "diff", ROOT / "requirements.lock.txt", other)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split() == ["package", "jsonschema", version, "4.25.1"] for line in lines)
    assert any(line.split()[:2] == ["lock", "sha256"] for line in lines)
    assert "env id unknown for A and B" in lines[-1]


def test_a_lock_against_a_run_compares_what_a_lock_knows(snapshot_file) -> None:
    result = diff(
        load_view(str(ROOT / "requirements.lock.txt")), load_view(str(snapshot_file("a")))
    )
    assert {"python", "system", "env_vars", "blas"} <= set(result.not_compared)
    assert result.env_ids_match is None
    changed = [d for d in result.differences if d.change == "changed"]
    assert changed == []  # this environment is in sync with its lock
    assert all(d.section == "packages" for d in result.differences)
    assert "pip" not in {d.key for d in result.differences}  # tooling is not a difference


def test_manifests_compare_content(tmp_path: Path, cli: InProcess) -> None:
    a = manifest_copy(tmp_path / "a", lambda m: None)
    b = manifest_copy(tmp_path / "b", lambda m: m["python"].update(severity="warn"))
    proc = cli("env", "diff", a, b)
    assert proc.returncode == 1, proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.split() == ["manifest", "/python/severity", "error", "warn"] for line in lines)
    assert any(line.split()[:2] == ["manifest", "sha256"] for line in lines)
    same = manifest_copy(tmp_path / "c", lambda m: None)
    assert cli("env", "diff", a, same).returncode == 0


def test_current_uses_the_manifest_option(tmp_path: Path, cli: InProcess) -> None:
    warn = manifest_copy(tmp_path, lambda m: m["python"].update(severity="warn"))
    proc = cli("env", "diff", "current", "current", "--manifest", warn, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["identical"] is True and doc["env_ids_match"] is True


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nope.json", "nope.json: no such file or directory"),
        (lambda d: _write(d / "x.json", "{not json"), "x.json: not valid JSON"),
        (lambda d: _write(d / "y.json", '{"a": 1}'), "y.json: not a run log, snapshot or manifest"),
        (lambda d: _write(d / "z.txt", "hello world\n"), "z.txt: not a readable lock file"),
        (lambda d: _mkdir(d / "empty"), "empty: not a run directory (no run_log.json)"),
        (
            lambda d: _write(d / "bad.json", '{"schema_version": 1, "lock": {}}'),
            "bad.json: manifest invalid",
        ),
        (
            lambda d: _write(d / "log.json", '{"run_id": "x", "environment": null}'),
            "log.json: the run log has no environment section",
        ),
    ],
    ids=[
        "missing",
        "not-json",
        "unknown-json",
        "not-a-lock",
        "not-a-run-dir",
        "bad-manifest",
        "no-environment",
    ],
)
def test_unusable_sources_exit_2_naming_the_file(
    tmp_path: Path, make, message: str, cli: InProcess
) -> None:
    source = make(tmp_path)
    proc = cli("env", "diff", source, "current")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("cosmo-runner: error: ") and message in line, line


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_views_know_only_what_their_source_records(snapshot_file) -> None:
    view: EnvView = load_view(str(snapshot_file("a")))
    assert view.kind == "snapshot"
    assert set(view.sections) >= {"python", "system", "packages", "lock", "manifest", "env_vars"}
    lock = load_view(str(ROOT / "requirements.lock.txt"))
    assert set(lock.sections) == {"packages", "lock"}


def test_another_runner_commit_is_a_note_not_a_difference(snapshot_file, cli: InProcess) -> None:
    b = snapshot_file("b", _set("observed", "runner", "git_commit", "f" * 40))
    proc = cli("env", "diff", snapshot_file("a"), b)
    assert proc.returncode == 0, proc.stdout
    assert "vs ffffffffffff (code, not environment)" in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("identical; env ids match")
