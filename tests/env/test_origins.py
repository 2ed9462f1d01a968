"""Import origins: every required or locked module must come from this environment.

End to end: a ``numpy/`` shadow in the cwd under ``python -m``, on ``PYTHONPATH`` and via a
``.pth`` file fails ``smoke`` and ``run`` with exit 3 naming numpy, the path and why (the
``numpy-shadow-*`` cases of tests/env/test_perturbations.py, with the run log's record of
``sys.path`` and the ``.pth`` files); under the console script the cwd is never on
``sys.path``, so the same folder passes (here). In process:
how :func:`origins.resolve` judges each kind of location, and what the snapshot records.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import site
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cosmo_runner.env import origins
from tests.conftest import ROOT, InMemoryDist

CONSOLE_SCRIPT = Path(sys.executable).parent / "cosmo-runner"


def numpy_shadow(where: Path) -> Path:
    """A ``numpy/`` package in ``where`` that would break any real use of numpy."""
    package = where / "numpy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('this is not numpy')\n")
    return package / "__init__.py"


def test_numpy_in_the_cwd_passes_under_the_console_script(tmp_path: Path) -> None:
    """The console script never has the cwd on sys.path, and neither have the probes (-P):
    neither a numpy/ folder nor a packaging.py there is ever imported."""
    numpy_shadow(tmp_path)
    (tmp_path / "packaging.py").write_text("raise ImportError('this is not packaging')\n")
    proc = subprocess.run(
        [str(CONSOLE_SCRIPT), "smoke"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout


# --- in process -------------------------------------------------------------------------


def test_this_environment_resolves_inside() -> None:
    found = origins.resolve(
        ["numpy", "scipy.optimize.elementwise", "mpl_toolkits", "json.decoder", "sys", "math"]
    )
    assert [o.inside for o in found] == [True] * 6, [o.message for o in found]
    assert [o.why for o in found] == [
        "site-packages",
        "site-packages",
        "site-packages",
        "stdlib",
        "built-in",
        "stdlib",
    ]


def test_a_directory_on_sys_path_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "outsider.py").write_text("X = 1\n")
    (tmp_path / "nspkg" / "inner").mkdir(parents=True)  # a namespace package: no __init__
    monkeypatch.setattr(sys, "path", [sys.path[0], str(tmp_path), *sys.path[1:]])
    monkeypatch.delenv("PYTHONPATH", raising=False)
    importlib.invalidate_caches()
    outsider, namespace = origins.resolve(["outsider", "nspkg.inner"])
    assert not outsider.inside and outsider.path == str(tmp_path / "outsider.py")
    assert outsider.why == f"sys.path entry {str(tmp_path)!r}"
    assert not namespace.inside and namespace.path == str(tmp_path / "nspkg")


def test_a_submodule_outside_its_package_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package whose __path__ was extended elsewhere (as a hostile .pth could do): the
    package itself is judged by every directory its submodules may come from."""
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "decoder2.py").write_text("X = 1\n")
    import json

    monkeypatch.setattr(json, "__path__", [*json.__path__, str(tmp_path / "extra")])
    (found,) = origins.resolve(["json.decoder2"])
    assert not found.inside and found.path == str(tmp_path / "extra")
    assert found.imported is True


def test_an_already_imported_module_is_judged_by_sys_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = ModuleType("numpy")
    fake.__file__ = str(tmp_path / "numpy" / "__init__.py")
    fake.__spec__ = importlib.machinery.ModuleSpec("numpy", None, origin=fake.__file__)
    fake.__spec__.has_location = True
    monkeypatch.setitem(sys.modules, "numpy", fake)
    (found,) = origins.resolve(["numpy"])
    assert not found.inside and found.imported
    assert found.message == f"numpy resolves to {fake.__file__} (not under any sys.path entry)"


def test_missing_modules_are_reported_with_the_reason() -> None:
    missing, not_a_package, sub = origins.resolve(["no_such_mod_xyz", "math.sub", "json.nope"])
    assert (
        missing.message
        == "no_such_mod_xyz cannot be located: no_such_mod_xyz is not found on sys.path"
    )
    assert not_a_package.message == "math.sub cannot be located: math is not a package"
    assert sub.message == "json.nope cannot be located: json.nope is not found on sys.path"
    assert not (missing.inside or not_a_package.inside or sub.inside)


def test_the_base_interpreters_site_packages_is_not_the_stdlib() -> None:
    # private on purpose: a module under the base interpreter's site-packages cannot be made
    # to resolve from this venv's public check without installing into the base interpreter
    base_site = origins._base_site_dirs()[0]
    judge = origins._Judge()
    spec = importlib.machinery.ModuleSpec("x", None, origin=f"{base_site}/x.py")
    spec.has_location = True
    if base_site in origins.environment_dirs():
        pytest.skip("this interpreter is not in a venv")
    assert judge._outside(spec, None) == f"{base_site}/x.py"


def test_pth_files_record_what_they_add(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "b.pth").write_text(
        "# a comment\n\nreal\n/does/not/exist\nimport os\nimport\tsys\n", encoding="utf-8"
    )
    (tmp_path / "a.pth").write_text(f"{tmp_path / 'real'}\n", encoding="utf-8")
    (tmp_path / "not-a-pth.txt").write_text("real\n")
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(tmp_path)])
    monkeypatch.setattr(site, "ENABLE_USER_SITE", False)
    assert [p.as_dict() for p in origins.pth_files()] == [
        {"path": str(tmp_path / "a.pth"), "adds": [str(tmp_path / "real")], "code": []},
        {
            "path": str(tmp_path / "b.pth"),
            "adds": [str(tmp_path / "real")],
            "code": ["import os", "import\tsys"],
        },
    ]


def test_import_paths_records_sys_path_and_every_flag() -> None:
    recorded = origins.import_paths()
    assert recorded["sys_path"] == sys.path
    assert set(recorded["flags"]) == set(type(sys.flags).__match_args__)
    assert recorded["flags"]["safe_path"] is sys.flags.safe_path


def test_top_level_modules_come_from_record_then_top_level_txt() -> None:
    record = "\n".join(
        [
            "pkg/__init__.py,sha256=x,1",
            "pkg/sub/mod.py,sha256=x,1",
            "single.py,sha256=x,1",
            "_ext.cpython-311-x86_64-linux-gnu.so,sha256=x,1",
            "__pycache__/single.cpython-311.pyc,,",
            "pkg-1.0.dist-info/RECORD,,",
            "pkg-1.0.data/scripts/tool,sha256=x,1",
            "pkg.libs/libfoo.so,sha256=x,1",
            "../../../bin/tool,sha256=x,1",
            "helper.pth,sha256=x,1",
            '"quoted/__init__.py",sha256=x,1',
        ]
    )
    assert origins.top_level_modules(InMemoryDist({"RECORD": record})) == [
        "pkg",
        "single",
        "_ext",
        "quoted",
    ]
    assert origins.top_level_modules(InMemoryDist({"top_level.txt": "a\nb\n\nnot-valid\n"})) == [
        "a",
        "b",
    ]
    assert origins.top_level_modules(InMemoryDist({})) == []


def test_every_locked_distribution_in_this_environment_has_top_level_modules() -> None:
    from cosmo_runner.env.lock import read_lock

    lock = read_lock(ROOT / "requirements.lock.txt")
    from cosmo_runner.env.probes import installed_distributions

    dists = installed_distributions()
    empty = [n for n in lock.pins if n in dists and not origins.top_level_modules(dists[n])]
    assert empty == []
