"""``pytest --cpu-times=FILE``: each test's CPU time (user + sys, this process and the children
it waited for), setup, call and teardown together, written to FILE as tab-separated lines
``seconds<TAB>nodeid`` at the end of the session (highest first).

Wall time (``--durations``) follows the machine's load; CPU time is what a test costs. The
children's share counts only processes that were waited for (``subprocess.run`` and
``Popen.wait`` do); a daemon the test leaves running is not in it. Session-scoped fixtures
are charged to the first test that uses them.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Generator
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-times",
        metavar="FILE",
        type=Path,
        default=None,
        help="write each test's CPU time (user + sys, with waited-for children) to FILE",
    )


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    waited = children.ru_utime + children.ru_stime
    return own.ru_utime + own.ru_stime + waited + _charged[0]


_PROPERTY = "cpu_seconds"


class CpuTimes:
    """Each test's CPU is measured where it runs (this process, or a pytest-xdist worker) and
    travels on its teardown report's ``user_properties``, so the process that writes FILE (the
    only one, or xdist's controller) sees every test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started: dict[str, float] = {}
        self.times: dict[str, float] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.started[nodeid] = _cpu()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "teardown" and item.nodeid in self.started:
            spent = _cpu() - self.started.pop(item.nodeid)
            report.user_properties.append((_PROPERTY, spent))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY:
                self.times[report.nodeid] = self.times.get(report.nodeid, 0.0) + float(value)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):
            return  # an xdist worker: its times went to the controller on the reports
        lines = [f"{t:.3f}\t{n}\n" for n, t in sorted(self.times.items(), key=lambda i: -i[1])]
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(self.path)


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--cpu-times")
    if path is not None:
        config.pluginmanager.register(CpuTimes(path.resolve()), "cosmo-cpu-times")


_charged = [0.0]


def charge(seconds: float) -> None:
    """Count ``seconds`` of CPU to the running test: a process this one did not wait for
    (a fork server's child, reported by the server; tests/forkserver.py). Give the negative
    when the processes are counted again, e.g. once the server itself is waited for."""
    _charged[0] += seconds
