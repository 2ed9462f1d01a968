"""`cosmo-runner smoke`: exit 0 when the environment matches, 3 with a named cause otherwise."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import NOT_THIS_PYTHON, ROOT, InProcess, fake_dist, run_cli

LOCKED_JSONSCHEMA = next(
    line.split("==")[1].split()[0]
    for line in (ROOT / "requirements.lock.txt").read_text().splitlines()
    if line.startswith("jsonschema==")
)


# The manifest section for a case whose fault is not in the required imports: their probes
# (numpy, scipy and matplotlib in fresh interpreters) cost about 1.1 s of CPU per smoke and
# judge nothing the case changes. The project's own list is probed by
# test_this_environment_passes, test_json_has_snapshot_and_checks and the package-data lookup.
NO_IMPORTS = {"modules": []}


def manifest_copy(tmp_path: Path, **changes: object) -> Path:
    """The project's manifest and lock copied to tmp_path, with top-level sections replaced."""
    data = json.loads((ROOT / "environment.manifest.json").read_text())
    data.update(changes)
    shutil.copy(ROOT / "requirements.lock.txt", tmp_path / "requirements.lock.txt")
    path = tmp_path / "environment.manifest.json"
    path.write_text(json.dumps(data))
    return path


def assert_gate_failed(proc, *fragments: str) -> None:
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for fragment in fragments:
        assert fragment in proc.stdout, proc.stdout


def test_this_environment_passes(cli: InProcess) -> None:
    proc = cli("smoke")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.startswith("cosmo-runner smoke: PASSED  env_id ")


def test_json_has_snapshot_and_checks(this_smoke_json: subprocess.CompletedProcess[str]) -> None:
    proc = this_smoke_json
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(proc.stdout)
    observed = doc["environment"]["observed"]
    assert observed["python"]["version"].startswith(platform.python_version())
    assert {"platform", "machine", "packages"} <= observed.keys()
    names = {c["name"] for c in doc["smoke"]["checks"]}
    assert {
        "manifest",
        "lock",
        "python",
        "os_family",
        "machine",
        "import:numpy",
        "tool:pip",
        "requirements",
    } <= names


def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on ``sys.path`` for fake ``.dist-info`` folders, in process: what
    ``PYTHONPATH`` gives a fresh interpreter, as importlib.metadata sees it."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_drifted_package_names_both_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: InProcess
) -> None:
    fake_dist(fake_site(tmp_path, monkeypatch), "jsonschema", "4.0.0")
    path = manifest_copy(tmp_path, imports=NO_IMPORTS)
    assert_gate_failed(
        cli("smoke", "--manifest", path), f"jsonschema: lock {LOCKED_JSONSCHEMA}, installed 4.0.0"
    )


def test_inconsistent_requirements_are_found_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: InProcess
) -> None:
    fake_dist(fake_site(tmp_path, monkeypatch), "needy", "1.0", requires=["numpy<1"])
    proc = cli("smoke", "--manifest", manifest_copy(tmp_path, imports=NO_IMPORTS))
    assert_gate_failed(proc, "needy 1.0 requires numpy<1, installed")
    assert (
        "installed distributions not in the lock: " in proc.stdout and "needy==1.0" in proc.stdout
    )


def test_extra_distribution_is_a_warning_and_an_error_with_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: InProcess
) -> None:
    fake_dist(fake_site(tmp_path, monkeypatch), "stray", "0.1")
    path = manifest_copy(tmp_path, imports=NO_IMPORTS)
    proc = cli("smoke", "--manifest", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stray==0.1" in proc.stdout
    assert_gate_failed(cli("smoke", "--manifest", path, "--strict"), "stray==0.1")


def test_missing_import_shows_the_exception(tmp_path: Path, cli: InProcess) -> None:
    path = manifest_copy(tmp_path, imports={"modules": ["numpy", "no_such_module_xyz"]})
    assert_gate_failed(
        cli("smoke", "--manifest", path),
        "import no_such_module_xyz failed: ModuleNotFoundError: No module named 'no_such_module_xyz'",
    )


def test_broken_import_shows_the_exception(tmp_path: Path) -> None:
    (tmp_path / "brokenmod.py").write_text("raise RuntimeError('half-installed')\n")
    path = manifest_copy(tmp_path, imports={"modules": ["brokenmod"]})
    proc = run_cli("smoke", "--manifest", path, env={"PYTHONPATH": str(tmp_path)})
    assert_gate_failed(proc, "import brokenmod failed: RuntimeError: half-installed")


def test_python_outside_range(tmp_path: Path, cli: InProcess) -> None:
    path = manifest_copy(tmp_path, python={"specifier": NOT_THIS_PYTHON}, imports=NO_IMPORTS)
    assert_gate_failed(cli("smoke", "--manifest", path), f"outside {NOT_THIS_PYTHON}")


def test_warn_severity_reports_without_failing(tmp_path: Path, cli: InProcess) -> None:
    path = manifest_copy(
        tmp_path, python={"specifier": NOT_THIS_PYTHON, "severity": "warn"}, imports=NO_IMPORTS
    )
    proc = cli("smoke", "--manifest", path)
    assert proc.returncode == 0
    assert f"WARN  python {platform.python_version()} outside" in proc.stdout


def test_machine_and_os_family(tmp_path: Path, cli: InProcess) -> None:
    path = manifest_copy(
        tmp_path,
        machines={"allowed": ["riscv64"]},
        os_family={"allowed": ["darwin"]},
        imports=NO_IMPORTS,
    )
    assert_gate_failed(
        cli("smoke", "--manifest", path),
        "not in ['riscv64']",
        "os family linux not in ['darwin']",
    )


def test_lock_hash_mismatch_and_missing_lock(tmp_path: Path, cli: InProcess) -> None:
    path = manifest_copy(tmp_path, imports=NO_IMPORTS)
    with (tmp_path / "requirements.lock.txt").open("a") as handle:
        handle.write("# edited by hand\n")
    assert_gate_failed(cli("smoke", "--manifest", path), "differs from the manifest's", "make lock")
    (tmp_path / "requirements.lock.txt").unlink()
    assert_gate_failed(cli("smoke", "--manifest", path), "lock file not found")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{broken", "manifest is not valid JSON"),
        ('{"schema_version": 1}', "manifest invalid"),
    ],
)
def test_corrupt_or_invalid_manifest(
    tmp_path: Path, content: str, fragment: str, cli: InProcess
) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    assert_gate_failed(cli("smoke", "--manifest", path), fragment, str(path))


def test_manifest_from_environment_variable_and_package_data(
    tmp_path: Path, cli: InProcess
) -> None:
    path = manifest_copy(tmp_path, python={"specifier": NOT_THIS_PYTHON}, imports=NO_IMPORTS)
    assert cli("smoke", cwd=tmp_path.parent, env={"COSMO_MANIFEST": str(path)}).returncode == 3
    # From a directory with no manifest: the installed copy is used and passes.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = cli("smoke", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout
    assert "(package)" in proc.stdout


def test_real_pip_check_on_request(tmp_path: Path, cli: InProcess) -> None:
    path = manifest_copy(tmp_path, imports=NO_IMPORTS)
    proc = cli("smoke", "--manifest", path, "--pip-check", "--json")
    assert proc.returncode == 0, proc.stdout
    checks = {c["name"]: c for c in json.loads(proc.stdout)["smoke"]["checks"]}
    assert checks["pip-check"]["status"] == "ok"
