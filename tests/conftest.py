"""Shared helpers: run the CLI in process or in a subprocess, fake installed distributions,
check logs.

End-to-end tests run ``cosmo_runner.cli.main(argv)`` in process through the ``cli`` fixture
(:class:`InProcess`): one interpreter, and one environment observation and smoke verdict per
distinct environment for the whole session (:class:`ReusedGate`, injected through
``main``'s ``gate``). Where a real process is the point (signals, kill -9, racing
processes, pipes and closed descriptors, a blocking read to time out) but the interpreter's
start is not, the ``forked`` fixture forks one from a warm parent (tests/forkserver.py).
Use :func:`run_cli` (a fresh ``python -m cosmo_runner``) for the entry point itself,
interpreter-start variables, a venv copy, and beside each class of forked test.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from tests.forkserver import ForkServer
from tests.gates import ReusedGate

if TYPE_CHECKING:
    from cosmo_runner.env.gate import Gate

# ``--cpu-times FILE``: each test's CPU time, the suite's measurement (bench/results.md)
pytest_plugins = ["tests.cputime"]

# Hypothesis: no per-example deadline (its default, 200 ms, turns a loaded machine into a
# failure: the suite asserts no timing), and in CI (CI=true) a derandomized search, so a run
# is repeatable; locally each run explores new examples. A test's own @settings adds to this.
settings.register_profile(
    "cosmo", deadline=None, derandomize=os.environ.get("CI", "").lower() == "true"
)
settings.load_profile("cosmo")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "bcg"
# A Python specifier the running interpreter is outside of, whichever supported version runs
# the suite (3.11, 3.12 or 3.13): the gate's python check must fail against it.
NOT_THIS_PYTHON = f">={sys.version_info.major}.{sys.version_info.minor + 1}"


def run_cli(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m cosmo_runner ARGS`` in a subprocess (the way users run it)."""
    full_env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cosmo_runner", *map(str, args)],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def fake_dist(
    site: Path,
    name: str,
    version: str,
    *,
    requires: list[str] | None = None,
    entry_points: str | None = None,
) -> Path:
    """A ``.dist-info`` folder in ``site`` (put it first on PYTHONPATH to fake an install)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires or []]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if entry_points:
        (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return info


class InMemoryDist(metadata.Distribution):
    """A distribution whose metadata files are given as text (for in-process unit tests)."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files_ = files

    def read_text(self, filename: str) -> str | None:
        return self.files_.get(filename)

    def locate_file(self, path: str | object) -> Path:
        raise NotImplementedError


def load_log(run_dir: Path) -> dict[str, Any]:
    """A run log, checked against the published schema."""
    from cosmo_runner.schemas import validate_against

    log: dict[str, Any] = json.loads((run_dir / "run_log.json").read_text(encoding="utf-8"))
    problems = validate_against("run_log", log)
    assert problems == [], problems
    return log


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the BCG example; returns its spec path."""
    target = tmp_path / "bcg"
    shutil.copytree(EXAMPLE, target)
    return target / "spec.json"


# Variables the interpreter reads when it starts: setting them in process changes nothing.
INTERPRETER_VARIABLES = frozenset(
    {
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSAFEPATH",
        "PYTHONNOUSERSITE",
        "PYTHONUSERBASE",
        "PYTHONSTARTUP",
        "PYTHONWARNINGS",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPYCACHEPREFIX",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONOPTIMIZE",
        "PYTHONINSPECT",
        "PYTHONDEVMODE",
        "PYTHONFAULTHANDLER",
    }
)


class InProcess:
    """``cosmo-runner ARGS`` as ``cli.main(argv)`` in this process, like :func:`run_cli`.

    Returns a ``CompletedProcess`` (``returncode``, ``stdout``, ``stderr``). The working
    directory, environment variables, umask, SIGINT/SIGTERM handlers and the root logger's
    handlers are restored afterwards; ``main`` must itself leave the signal handlers as it
    found them, and a call that does not is a failure.
    """

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def __call__(
        self,
        *args: str | Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        umask: int | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``umask``: the process umask during the call (restored afterwards)."""
        from cosmo_runner import cli

        argv = [str(a) for a in args]
        for name in env or {}:  # these act at interpreter start only: use run_cli for them
            assert name not in INTERPRETER_VARIABLES, f"{name} needs a subprocess (run_cli)"
        saved_cwd, saved_env = os.getcwd(), dict(os.environ)
        saved_umask = os.umask(0o022 if umask is None else umask)
        if umask is None:
            os.umask(saved_umask)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        root = logging.getLogger()
        log_handlers, log_level = list(root.handlers), root.level
        out, err = io.StringIO(), io.StringIO()
        try:
            os.environ.pop("COSMO_MANIFEST", None)
            os.environ.update(env or {})
            if cwd is not None:
                os.chdir(cwd)
            with redirect_stdout(out), redirect_stderr(err):
                code = cli.main(argv, gate=self.gate)
            left = {s: signal.getsignal(s) for s in handlers}
        finally:
            os.chdir(saved_cwd)
            os.environ.clear()
            os.environ.update(saved_env)
            os.umask(saved_umask)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            root.handlers[:] = log_handlers
            root.setLevel(log_level)
        assert left == handlers, f"cli.main({argv}) left signal handlers behind: {left}"
        return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def reused_gate() -> ReusedGate:
    """One environment observation and verdict per distinct environment, for the session."""
    return ReusedGate()


@pytest.fixture(scope="session")
def cli(reused_gate: ReusedGate) -> InProcess:
    """Run ``cosmo-runner ARGS`` in process: ``cli("run", spec, "--out", out, cwd=...)``."""
    return InProcess(reused_gate)


@pytest.fixture(scope="session")
def forked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    """Real ``cosmo-runner`` processes forked from a warm parent (tests/forkserver.py):
    ``forked.run("run", spec, ...)`` like :func:`run_cli`, ``forked.popen([...])`` like
    ``Popen``. For signals, races and broken descriptors; one server per pytest worker."""
    server = ForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server
    server.close()


# Tests that share one machine-wide thing run on one pytest-xdist worker, one at a time
# (``--dist loadgroup``, the Makefile's ``make test``): the one Docker engine and its image
# builds, the one single-node Slurm with its one node's CPUs (tests/slurm also starts and
# stops it at /tmp/cosmo-slurm); a test marked docker or slurm, or in their folders.
_SERIAL_GROUPS = ("docker", "slurm")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = (
            item.path.relative_to(ROOT / "tests").parts[0]
            if item.path.is_relative_to(ROOT / "tests")
            else ""
        )
        for group in _SERIAL_GROUPS:
            if item.get_closest_marker(group) is not None or folder == group:
                item.add_marker(pytest.mark.xdist_group(group))
                break


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (CI=true) a skipped test fails the session: nothing is skipped silently there."""
    if os.environ.get("CI", "").lower() != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        for report in skipped:
            reason = (
                report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            )
            print(
                f"\nCI=true: skipped test not allowed: {report.nodeid}: {reason}", file=sys.stderr
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def _records_cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every command the tests run caches RECORD hashes in a session temp dir, not in
    ~/.cache/cosmo-runner (each venv copy would leave a cache file there)."""
    previous = os.environ.get("COSMO_CACHE_DIR")
    os.environ["COSMO_CACHE_DIR"] = str(tmp_path_factory.mktemp("records-cache"))
    yield
    if previous is None:
        os.environ.pop("COSMO_CACHE_DIR", None)
    else:
        os.environ["COSMO_CACHE_DIR"] = previous


@pytest.fixture
def venv_copy(tmp_path: Path) -> Any:
    """A hard-linked copy of the test venv to perturb (see tests/envcopy.py)."""
    from tests.envcopy import VenvCopy

    return VenvCopy(tmp_path / "venv")
