"""The suite's own CPU-time report (tests/cputime.py, ``--cpu-times FILE``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "workers", [[], ["-p", "xdist.plugin", "-n", "2"]], ids=["one-process", "xdist"]
)
def test_cpu_times_lists_every_test_with_its_cpu_and_children(
    tmp_path: Path, workers: list[str]
) -> None:
    (tmp_path / "test_some.py").write_text(
        "import subprocess, sys\n"
        "def test_busy():\n"
        "    subprocess.run([sys.executable, '-c', 'sum(range(3_000_000))'], check=True)\n"
        "def test_idle():\n"
        "    pass\n",
        encoding="utf-8",
    )
    report = tmp_path / "cpu.tsv"
    # only the plugins named with -p: autoloading the installed ones (hypothesis, timeout, ...)
    # costs each of the session's interpreters about a second and is not what is tested
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.cputime", "--cpu-times", report,
         "-p", "no:cacheprovider", "--rootdir", tmp_path, *workers, tmp_path / "test_some.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split("\t") for line in report.read_text(encoding="utf-8").splitlines()]
    assert [n for _, n in rows] == ["test_some.py::test_busy", "test_some.py::test_idle"]
    busy, idle = (float(t) for t, _ in rows)
    assert busy > idle >= 0  # the child's CPU counts: it made the busy test the costlier
