"""Issue 10's Done-when matrix: each perturbation of an environment fails the gate.

Every case gives exit 3 from ``smoke`` with the case's ERROR line (no traceback on the
terminal), and exit 3 from ``run`` with a complete, schema-valid run log holding the
environment snapshot and the same message. A fault inside the venv is made in a hard-linked
copy (tests/envcopy.py); a fault outside it (the working directory, ``PYTHONPATH``) needs no
copy and runs the test venv's own interpreter. Nothing here touches the network.

The cases whose fault is in distribution metadata or files (``PROBES_NOT_THE_POINT``) run
with the project's manifest and lock copied beside the job, required imports emptied: the
import probes (numpy, scipy and matplotlib in fresh interpreters, about 1.1 s of CPU per
``smoke``) judge nothing these faults change, and the project's own list is probed by
tests/env/test_smoke.py::test_this_environment_passes and by the cases here that delete,
shadow or hang an import.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE, ROOT, load_log
from tests.envcopy import ONE_AT_A_TIME, VenvCopy, run_python

pytestmark = [pytest.mark.slow, ONE_AT_A_TIME]

PINS = {
    line.split("==")[0]: line.split("==")[1].split()[0]
    for line in (ROOT / "requirements.lock.txt").read_text().splitlines()
    if "==" in line and not line.startswith((" ", "#"))
}
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"


@dataclass
class Case:
    """What a perturbation must produce, and how to run the commands for it."""

    needle: str  # a fragment of one ERROR line (and of the run's messages)
    line: str | None = None  # the whole message, where the case knows it exactly
    cwd: Path | None = None  # default: the job folder
    env: dict[str, str] | None = None
    args: list[str] = field(default_factory=list)
    never_runs: Path | None = None  # a shadow whose code run must not execute
    check_log: Callable[[dict[str, Any]], None] | None = None  # more about the run log


def _drift(copy: VenvCopy, tmp: Path) -> Case:
    copy.set_version("jsonschema", "4.25.1")
    return Case(f"jsonschema: lock {PINS['jsonschema']}, installed 4.25.1")


def _deleted(top_level: str) -> Callable[[VenvCopy, Path], Case]:
    def perturb(copy: VenvCopy, tmp: Path) -> Case:
        copy.delete_package(top_level)
        return Case(top_level)

    return perturb


def _numpy_shadow(where: Path) -> Path:
    """A ``numpy/`` package in ``where`` whose code, if run, leaves a ``SHADOW-CODE-RAN`` file."""
    package = where / "numpy"
    package.mkdir(parents=True)
    ran = where / "SHADOW-CODE-RAN"
    (package / "__init__.py").write_text(
        f"open({str(ran)!r}, 'w').close()\n__version__ = '0.0.0-shadow'\n"
    )
    return package / "__init__.py"


def _shadow_in_cwd(tmp: Path) -> Case:
    """Under ``python -m`` the current directory is on sys.path (the console script: never,
    tests/env/test_origins.py)."""
    shadowed = tmp / "shadowed-cwd"
    shadow = _numpy_shadow(shadowed)
    line = f"numpy resolves to {shadow} (the current directory, on sys.path under python -m)"
    return Case("numpy resolves to", line=line, cwd=shadowed, never_runs=shadowed)


def _shadow_on_pythonpath(tmp: Path) -> Case:
    shadow = _numpy_shadow(tmp / "elsewhere")
    return Case(
        "(PYTHONPATH)",
        line=f"numpy resolves to {shadow} (PYTHONPATH)",
        env={"PYTHONPATH": str(tmp / "elsewhere")},
        never_runs=tmp / "elsewhere",
    )


def _shadow_by_pth(copy: VenvCopy, tmp: Path) -> Case:
    evil = tmp / "evil"
    shadow = _numpy_shadow(evil)
    # site appends a .pth file's path lines after site-packages; to come first it runs code
    pth = copy.site_packages / "evil.pth"
    pth.write_text(f"# looks harmless\nimport sys; sys.path.insert(0, {str(evil)!r})\n")
    lines_pth = copy.site_packages / "lines.pth"
    lines_pth.write_text(f"{evil}\n/does/not/exist\n")

    def check_log(log: dict[str, Any]) -> None:
        failed = {c["name"]: c for c in log["smoke"]["checks"] if c["status"] == "error"}
        assert failed["origin:numpy"]["observed"]["path"] == str(shadow)
        recorded = log["environment"]["observed"]["import_paths"]
        assert recorded["sys_path"][:2] == [str(tmp / "job"), str(evil)]  # -m: the cwd first
        assert {"path": str(pth), "adds": [], "code": [pth.read_text().splitlines()[1]]} in (
            recorded["pth_files"]
        )
        lines_entry = {"path": str(lines_pth), "adds": [str(evil)], "code": []}
        assert lines_entry in recorded["pth_files"]
        assert recorded["flags"]["isolated"] == 0 and "safe_path" in recorded["flags"]

    return Case(
        f"(added by {pth})",
        line=f"numpy resolves to {shadow} (added by {pth})",
        never_runs=evil,
        check_log=check_log,
    )


def _foreign_wheel_tag(copy: VenvCopy, tmp: Path) -> Case:
    from tests.env.test_distmeta import write_wheel

    write_wheel(copy, "numpy", ["cp27-cp27mu-win32"])

    def check_log(log: dict[str, Any]) -> None:
        assert log["environment"]["observed"]["wheel_tags"]["numpy"] == ["cp27-cp27mu-win32"]

    line = (
        "numpy: WHEEL tag cp27-cp27mu-win32 is not supported by this interpreter "
        f"(python {PYTHON} on {platform.machine()}); reinstall it from the lock"
    )
    return Case("cp27-cp27mu-win32", line=line, check_log=check_log)


def _editable_locked_name(copy: VenvCopy, tmp: Path) -> Case:
    info = copy.dist_info("jsonschema")
    url = f"file://{tmp}/src/jsonschema"
    (info / "direct_url.json").write_text(json.dumps({"url": url, "dir_info": {"editable": True}}))
    line = (
        f"jsonschema: installed editable from {url} (direct_url.json); "
        f"the lock pins jsonschema=={PINS['jsonschema']}"
    )
    return Case("jsonschema", line=line)


def _hanging_import(copy: VenvCopy, tmp: Path) -> Case:
    """A required import no locked distribution installs, so run probes it too."""
    (copy.site_packages / "cosmo_hang_probe.py").write_text("import time\ntime.sleep(600)\n")
    manifest = json.loads((ROOT / "environment.manifest.json").read_text())
    # Only the hanging import is required, so the timeout (this case's wait) can be short:
    # with numpy, scipy and matplotlib probed beside it, a cold import of one of them on a
    # loaded machine could take longer and end the shared probe first, naming that one. What
    # a hang does to the modules after it in one probe: tests/env/test_import_probes.py.
    manifest["imports"]["modules"] = ["cosmo_hang_probe"]
    manifest["imports"]["timeout_seconds"] = 3
    shutil.copy(ROOT / "requirements.lock.txt", tmp / "requirements.lock.txt")
    (tmp / "environment.manifest.json").write_text(json.dumps(manifest))

    def check_log(log: dict[str, Any]) -> None:
        (check,) = [c for c in log["smoke"]["checks"] if c["name"] == "imports"]
        assert check["observed"] == {"probed": ["cosmo_hang_probe"]}

    line = (
        "import cosmo_hang_probe timed out after 3 s (the import hung; probe killed; "
        "set imports.timeout_seconds in the manifest to allow longer)"
    )
    return Case(
        "cosmo_hang_probe",
        line=line,
        args=["--manifest", str(tmp / "environment.manifest.json")],
        check_log=check_log,
    )


def _scipy_edit(copy: VenvCopy, tmp: Path) -> Case:
    """One same-size edit in scipy/special/__init__.py, mtime restored (env/records.py)."""
    copy.edit_same_size("scipy/special/__init__.py", b"Special functions", b"Special function5")
    version = copy.dist_info("scipy").name.removesuffix(".dist-info").split("-")[1]
    return Case(f"scipy {version}: 1 file differs from RECORD: scipy/special/__init__.py")


def _duplicate_dist_info(copy: VenvCopy, tmp: Path) -> Case:
    """A second numpy-*.dist-info (same METADATA, another folder name) in site-packages."""
    info = copy.dist_info("numpy")
    version = info.name.removesuffix(".dist-info").split("-")[1]
    shutil.copytree(info, copy.site_packages / "numpy-1.0.dist-info")
    return Case(f"numpy {version}: 2 dist-info folders: numpy-1.0.dist-info, {info.name}")


# faults made inside a venv copy
IN_A_COPY: dict[str, Callable[[VenvCopy, Path], Case]] = {
    "version-drift": _drift,
    "deleted-jsonschema": _deleted("jsonschema"),
    "deleted-packaging": _deleted("packaging"),
    "deleted-numpy": _deleted("numpy"),
    "numpy-shadow-pth": _shadow_by_pth,
    "foreign-wheel-tag": _foreign_wheel_tag,
    "editable-locked-name": _editable_locked_name,
    "hanging-import": _hanging_import,
    "scipy-same-size-edit": _scipy_edit,
    "duplicate-dist-info": _duplicate_dist_info,
}
# faults outside the venv: the test venv itself is run
OUTSIDE: dict[str, Callable[[Path], Case]] = {
    "numpy-shadow-cwd": _shadow_in_cwd,
    "numpy-shadow-pythonpath": _shadow_on_pythonpath,
}
PROBES_NOT_THE_POINT = frozenset(
    {
        "version-drift",
        "foreign-wheel-tag",
        "editable-locked-name",
        "scipy-same-size-edit",
        "duplicate-dist-info",
    }
)


@pytest.mark.parametrize("name", sorted({*IN_A_COPY, *OUTSIDE}))
def test_perturbation_fails_the_gate(name: str, tmp_path: Path) -> None:
    job = tmp_path / "job"
    shutil.copytree(EXAMPLE, job)
    if name in PROBES_NOT_THE_POINT:
        manifest = json.loads((ROOT / "environment.manifest.json").read_text())
        manifest["imports"]["modules"] = []
        (job / "environment.manifest.json").write_text(json.dumps(manifest))
        shutil.copy(ROOT / "requirements.lock.txt", job / "requirements.lock.txt")
    if name in IN_A_COPY:
        copy = VenvCopy(tmp_path / "venv")
        python = copy.python
        case = IN_A_COPY[name](copy, tmp_path)
    else:
        python = Path(sys.executable)
        case = OUTSIDE[name](tmp_path)
    cwd = case.cwd or job

    smoke = run_python(python, "-m", "cosmo_runner", "smoke", *case.args, cwd=cwd, env=case.env)
    assert smoke.returncode == 3, smoke.stdout + smoke.stderr
    assert "Traceback" not in smoke.stdout + smoke.stderr
    errors = [line for line in smoke.stdout.splitlines() if line.lstrip().startswith("ERROR")]
    assert any(case.needle in line for line in errors), smoke.stdout
    if case.line is not None:
        assert f"  ERROR {case.line}\n" in smoke.stdout, smoke.stdout

    # smoke's fresh-interpreter import probes may import a shadow on PYTHONPATH, as the run's
    # own imports would; the run process itself must judge it without running it (below)
    if case.never_runs is not None:
        (case.never_runs / "SHADOW-CODE-RAN").unlink(missing_ok=True)

    out = tmp_path / "out"
    run = run_python(
        python, "-m", "cosmo_runner", "run", job / "spec.json", "--out", out, *case.args,
        cwd=cwd, env=case.env,
    )  # fmt: skip
    assert run.returncode == 3, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("cosmo-runner: error: environment gate failed: "), run.stderr
    assert case.needle in run.stderr
    if case.line is not None:
        assert f"cosmo-runner: environment: {case.line}\n" in run.stderr, run.stderr
    log = load_log(out)  # schema-valid
    assert log["status"] == "failed"
    assert log["exit_code"] == 3
    assert log["environment"]["env_id"]
    assert log["environment"]["observed"]["packages"]
    failures = [c["message"] for c in log["smoke"]["checks"] if c["status"] == "error"]
    assert any(case.needle in message for message in failures), failures
    if case.line is not None:
        assert case.line in failures, failures
    assert log["validators"] == [] and log["analyses"] == []
    assert json.loads((out / "run_log.json").read_text())["error"]["exit_code"] == 3
    if case.check_log is not None:
        case.check_log(log)
    if case.never_runs is not None:  # run's gate judged the shadow without importing it
        assert not (case.never_runs / "SHADOW-CODE-RAN").exists()
