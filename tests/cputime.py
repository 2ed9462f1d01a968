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
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuTimes:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: dict[str, float] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        start = _cpu()
        try:
            return (yield)
        finally:
            self.times[item.nodeid] = self.times.get(item.nodeid, 0.0) + _cpu() - start

    def pytest_sessionfinish(self) -> None:
        lines = [f"{t:.3f}\t{n}\n" for n, t in sorted(self.times.items(), key=lambda i: -i[1])]
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        tmp.replace(self.path)


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--cpu-times")
    if path is not None:
        config.pluginmanager.register(CpuTimes(path.resolve()), "cosmo-cpu-times")
