"""The gate's standard-library core: what it does when packaging or jsonschema is unusable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmo_runner.env import optional
from cosmo_runner.env.manifest import load, shape_problems
from cosmo_runner.env.smoke import run_checks, specifier_contains
from cosmo_runner.env.snapshot import capture
from tests.conftest import ROOT

CASES = [
    (">=3.11,<3.14", "3.11.7", True),
    (">=3.11,<3.14", "3.14.0", False),
    (">=3.11,<3.14", "3.10.12", False),
    ("==3.12.*", "3.12.1", True),
    ("==3.12.*", "3.13.0", False),
    ("!=3.12.*", "3.12.0", False),
    ("!=3.12.*,>=3.11", "3.13.0", True),
    (">=23.0", "24.0", True),
    (">=23.0", "9.0.1", False),
    ("==3.11", "3.11.0", True),
    (">3.11", "3.11.0", False),
    ("<=3.11", "3.11.0", True),
    ("", "3.11.7", True),
]


@pytest.mark.parametrize(("spec", "version", "expected"), CASES)
def test_fallback_specifiers_agree_with_packaging(
    spec: str, version: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert specifier_contains(spec, version) is expected  # packaging
    monkeypatch.setattr(optional, "available", lambda name: False)
    assert specifier_contains(spec, version) is expected  # the standard-library fallback


@pytest.mark.parametrize(
    ("spec", "version"), [("~=3.11", "3.11.2"), (">=3.11", "3.12.0rc1"), ("foo", "1")]
)
def test_fallback_says_unknown_rather_than_guessing(
    spec: str, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optional, "available", lambda name: False)
    assert specifier_contains(spec, version) is None


@pytest.mark.parametrize("name", sorted(optional.GATE_DEPENDENCIES))
def test_an_unusable_gate_dependency_is_an_error_check_not_a_crash(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = f"{name}.x cannot be imported: ImportError: boom ({name} found at /tmp/{name}.py)"
    monkeypatch.setattr(optional, "problem", lambda n: reason if n == name else None)
    monkeypatch.setattr(optional, "available", lambda n: n != name)
    state = capture(str(ROOT / "environment.manifest.json"))
    report = run_checks(state)
    assert not report.passed
    failed = {c.name: c.message for c in report.checks if c.status == "error"}
    assert f"gate-dependency:{name}" in failed
    assert reason in failed[f"gate-dependency:{name}"]
    # the core checks still ran and passed
    ok = {c.name for c in report.checks if c.status == "ok"}
    assert {"manifest", "lock", "python", "os_family", "machine", "packages"} <= ok


def test_both_gate_dependencies_import_here() -> None:
    assert all(optional.problem(name) is None for name in optional.GATE_DEPENDENCIES)


def test_a_shadowing_module_is_named_with_its_path(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "packaging.py").write_text("raise ImportError('shadow')\n")
    code = "from cosmo_runner.env import optional; print(optional.problem('packaging'))"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "ImportError: shadow" in proc.stdout
    assert f"found at {tmp_path / 'packaging.py'}" in proc.stdout


def test_without_jsonschema_the_manifest_is_shape_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(optional, "problem", lambda n: "gone" if n == "jsonschema" else None)
    manifest = load(str(ROOT / "environment.manifest.json"))
    assert manifest.schema_problem is not None and "gone" in manifest.schema_problem
    data = json.loads((ROOT / "environment.manifest.json").read_text())
    assert shape_problems(data) == []
    del data["lock"]["sha256"]
    data["tools"] = [{"name": 3}]
    data["machines"]["allowed"] = "x86_64"
    assert shape_problems(data) == [
        "/machines/allowed: missing or not a JSON list",
        "/lock/sha256: missing or not a JSON str",
        "/tools/0: needs string 'name' and 'specifier'",
    ]
    assert shape_problems([]) == ["/: the manifest is not a JSON object"]


def test_an_empty_dist_info_on_sys_path_is_skipped_without_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from cosmo_runner.env import probes

    (tmp_path / "ghost-1.0.dist-info").mkdir()  # no METADATA: a broken uninstall leaves these
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    found = probes.installed_distributions()  # warnings are errors in this suite
    assert "ghost" not in found and "numpy" in found


def test_an_empty_dist_info_is_skipped_when_importlib_metadata_is_loaded_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch worker has imported distributed, which loads the importlib_metadata backport:
    its finder joins importlib.metadata's and raises MetadataNotFound for an empty dist-info."""
    import importlib.util
    import subprocess
    import sys

    if sys.version_info >= (3, 12):
        # The lock installs the backport only below 3.12 (distributed needs it there), so the
        # case cannot arise: check that, rather than skip (CI=true fails any skip).
        assert importlib.util.find_spec("importlib_metadata") is None
        return
    (tmp_path / "ghost-1.0.dist-info").mkdir()
    code = (
        "import sys, warnings; warnings.simplefilter('error')\n"
        "import importlib_metadata\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from cosmo_runner.env import probes\n"
        "found = probes.installed_distributions()\n"
        "print('ghost' in found, 'numpy' in found)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "False True\n", "")
