"""``cosmo-runner validate`` imports neither scipy nor the fit: the meta package is lazy
(PEP 562) and the measure table, which the ``effect_table`` validator reads, imports
``scipy.special`` only inside the computations that need it."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import ROOT, load_log

from cosmo_runner import meta

CASES = ROOT / "tests" / "cases"
# Modules validate must not import: the numerical engine and what only analyses and plots use.
HEAVY = ("scipy", "matplotlib", "cosmo_runner.meta.fit", "cosmo_runner.meta.analysis")

# A fresh interpreter (the point: sys.modules of a new process, which this one cannot show)
# validates every spec given, in process, then prints the exit codes and its sys.modules.
DRIVER = """
import json, os, sys
from cosmo_runner import cli
codes = []
for case, out in zip(sys.argv[1::2], sys.argv[2::2]):
    os.chdir(case)
    codes.append(cli.main(["validate", "spec.json", "--out", out]))
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


# validate's paths that read the measure table: a clean table (exit 0), GEN from confidence
# intervals (the z quantile), value rules that fail (exit 4) and a spec error (exit 2).
VALIDATE_CASES = {
    "examples/bcg": 0,
    "tests/cases/gen-hazard-ratios-with-ci": 0,
    "tests/cases/negative-count": 4,
    "tests/cases/unknown-validator-kind": 2,
}


def test_validate_imports_neither_scipy_nor_the_fit(tmp_path: Path) -> None:
    argv: list[str] = []
    for folder in VALIDATE_CASES:
        shutil.copytree(ROOT / folder, tmp_path / folder)
        argv += [str(tmp_path / folder), str(tmp_path / "out" / folder)]
    proc = subprocess.run(
        [sys.executable, "-P", "-c", DRIVER, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    loaded = {m for m in result["modules"] if m.split(".")[0] in ("scipy", "matplotlib")}
    loaded |= {m for m in result["modules"] if m in HEAVY}
    assert loaded == set(), sorted(loaded)
    assert "cosmo_runner.meta.measures" in result["modules"]  # the table was read
    assert dict(zip(VALIDATE_CASES, result["codes"], strict=True)) == VALIDATE_CASES
    for folder, code in VALIDATE_CASES.items():
        assert load_log(tmp_path / "out" / folder)["exit_code"] == code, folder


@pytest.mark.parametrize("name", meta.__all__)
def test_every_exported_name_is_its_modules_own(name: str) -> None:
    """``cosmo_runner.meta.NAME`` resolves on access, to the object its module defines."""
    value = getattr(meta, name)
    assert name in dir(meta)
    if callable(value):
        assert getattr(importlib.import_module(value.__module__), name) is value


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(
        AttributeError, match=r"^module 'cosmo_runner\.meta' has no attribute 'nope'$"
    ):
        meta.nope  # noqa: B018 - the attribute access is the test
