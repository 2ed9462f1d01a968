"""Issue 10's Done-when matrix: each perturbation of a venv copy fails the gate.

Every case gives exit 3 from ``smoke`` naming the module or distribution (no traceback on the
terminal), and exit 3 from ``run`` with a complete, schema-valid run log holding the
environment snapshot. The venv copies are hard-linked (tests/envcopy.py); nothing here
touches the network.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE, ROOT, load_log
from tests.envcopy import VenvCopy

pytestmark = pytest.mark.slow


def _drift(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    copy.set_version("jsonschema", "4.25.1")
    return {"needle": "jsonschema: lock 4.26.0, installed 4.25.1"}


def _deleted(top_level: str) -> Callable[[VenvCopy, Path], dict[str, Any]]:
    def perturb(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
        copy.delete_package(top_level)
        return {"needle": top_level}

    return perturb


def _numpy_shadow(where: Path) -> Path:
    package = where / "numpy"
    package.mkdir(parents=True)
    ran = where / "SHADOW-CODE-RAN"
    (package / "__init__.py").write_text(
        f"open({str(ran)!r}, 'w').close()\n__version__ = '0.0.0-shadow'\n"
    )
    return package


def _shadow_in_cwd(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    shadowed = tmp / "shadowed-cwd"
    _numpy_shadow(shadowed)
    return {"needle": "numpy resolves to", "cwd": shadowed, "never_runs": shadowed}


def _shadow_on_pythonpath(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    _numpy_shadow(tmp / "elsewhere")
    return {
        "needle": "(PYTHONPATH)",
        "env": {"PYTHONPATH": str(tmp / "elsewhere")},
        "never_runs": tmp / "elsewhere",
    }


def _shadow_by_pth(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    _numpy_shadow(tmp / "evil")
    pth = copy.site_packages / "zz-evil.pth"
    pth.write_text(f"import sys; sys.path.insert(0, {str(tmp / 'evil')!r})\n")
    return {"needle": f"(added by {pth})", "never_runs": tmp / "evil"}


def _foreign_wheel_tag(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    from tests.env.test_distmeta import write_wheel

    write_wheel(copy, "scipy", ["cp27-cp27mu-win32"])
    return {"needle": "cp27-cp27mu-win32"}


def _editable_locked_name(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    info = copy.dist_info("jsonschema")
    url = {"url": f"file://{tmp}/src/jsonschema", "dir_info": {"editable": True}}
    (info / "direct_url.json").write_text(json.dumps(url))
    return {"needle": "jsonschema"}


def _hanging_import(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    (copy.site_packages / "cosmo_hang_probe.py").write_text("import time\ntime.sleep(600)\n")
    manifest = json.loads((ROOT / "environment.manifest.json").read_text())
    manifest["imports"]["modules"].append("cosmo_hang_probe")
    # The timeout is this case's wait, so it is short. run probes only this import (the others
    # are vouched for by their RECORDs); smoke probes all, and under load a cold matplotlib may
    # time out too, which the assertions allow: they ask for an error naming this module,
    # whether "timed out" or "not checked: the probe timed out importing ..." (a shared probe).
    manifest["imports"]["timeout_seconds"] = 3
    shutil.copy(ROOT / "requirements.lock.txt", tmp / "requirements.lock.txt")
    (tmp / "environment.manifest.json").write_text(json.dumps(manifest))
    return {
        "needle": "cosmo_hang_probe",
        "args": ["--manifest", str(tmp / "environment.manifest.json")],
    }


def _scipy_edit(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    """One same-size edit in scipy/special/__init__.py, mtime restored (env/records.py)."""
    copy.edit_same_size("scipy/special/__init__.py", b"Special functions", b"Special function5")
    version = copy.dist_info("scipy").name.removesuffix(".dist-info").split("-")[1]
    return {"needle": f"scipy {version}: 1 file differs from RECORD: scipy/special/__init__.py"}


def _duplicate_dist_info(copy: VenvCopy, tmp: Path) -> dict[str, Any]:
    """A second numpy-*.dist-info (same METADATA, another folder name) in site-packages."""
    info = copy.dist_info("numpy")
    version = info.name.removesuffix(".dist-info").split("-")[1]
    shutil.copytree(info, copy.site_packages / "numpy-1.0.dist-info")
    return {"needle": f"numpy {version}: 2 dist-info folders: numpy-1.0.dist-info, {info.name}"}


PERTURBATIONS: dict[str, Callable[[VenvCopy, Path], dict[str, Any]]] = {
    "version-drift": _drift,
    "deleted-jsonschema": _deleted("jsonschema"),
    "deleted-packaging": _deleted("packaging"),
    "deleted-numpy": _deleted("numpy"),
    "numpy-shadow-cwd": _shadow_in_cwd,
    "numpy-shadow-pythonpath": _shadow_on_pythonpath,
    "numpy-shadow-pth": _shadow_by_pth,
    "foreign-wheel-tag": _foreign_wheel_tag,
    "editable-locked-name": _editable_locked_name,
    "hanging-import": _hanging_import,
    "scipy-same-size-edit": _scipy_edit,
    "duplicate-dist-info": _duplicate_dist_info,
}


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_perturbation_fails_the_gate(name: str, tmp_path: Path) -> None:
    copy = VenvCopy(tmp_path / "venv")
    job = tmp_path / "job"
    shutil.copytree(EXAMPLE, job)
    case = PERTURBATIONS[name](copy, tmp_path)
    cwd = case.get("cwd", job)
    env = case.get("env")
    extra = case.get("args", [])

    smoke = copy.run("-m", "cosmo_runner", "smoke", *extra, cwd=cwd, env=env)
    assert smoke.returncode == 3, smoke.stdout + smoke.stderr
    assert "Traceback" not in smoke.stdout + smoke.stderr
    errors = [line for line in smoke.stdout.splitlines() if line.lstrip().startswith("ERROR")]
    assert any(case["needle"] in line for line in errors), smoke.stdout

    # smoke's fresh-interpreter import probes may import a shadow on PYTHONPATH, as the run's
    # own imports would; the run process itself must judge it without running it (below)
    if "never_runs" in case:
        (case["never_runs"] / "SHADOW-CODE-RAN").unlink(missing_ok=True)

    out = tmp_path / "out"
    run = copy.run(
        "-m", "cosmo_runner", "run", job / "spec.json", "--out", out, *extra, cwd=cwd, env=env
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("cosmo-runner: error: environment gate failed: "), run.stderr
    assert case["needle"] in run.stderr
    log = load_log(out)  # schema-valid
    assert log["status"] == "failed"
    assert log["exit_code"] == 3
    assert log["environment"]["env_id"]
    assert log["environment"]["observed"]["packages"]
    assert any(
        case["needle"] in c["message"] for c in log["smoke"]["checks"] if c["status"] == "error"
    )
    assert log["validators"] == [] and log["analyses"] == []
    assert json.loads((out / "run_log.json").read_text())["error"]["exit_code"] == 3
    if "never_runs" in case:  # run's gate judged the shadow without importing it
        assert not (case["never_runs"] / "SHADOW-CODE-RAN").exists()
