"""The fork server (tests/forkserver.py): a forked child starts as a fresh process would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests import cputime
from tests.conftest import load_log
from tests.forkserver import CLOSED, ForkServer
from tests.triage.conftest import validators_only_spec

# What a process is at the moment ``main()`` starts. The fresh side runs it as ``python -c``.
DUMP = """
import json, os, signal, sys
def disposition(signum):
    handler = signal.getsignal(signum)
    return {signal.SIG_DFL: "default", signal.SIG_IGN: "ignore",
            signal.default_int_handler: "KeyboardInterrupt"}.get(handler, repr(handler))
def stream(s):
    if s is None:
        return None
    return [s.fileno(), s.encoding, s.errors, s.line_buffering, s.mode, type(s).__name__]
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
mask = os.umask(0); os.umask(mask)
state = {
    "fds": fds[:-1] if fds else fds,  # the last is listdir's own
    "signals": {s.name: disposition(s) for s in signal.valid_signals() if isinstance(s, signal.Signals) and s not in (signal.SIGKILL, signal.SIGSTOP)},
    "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
    "streams": [stream(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
    "umask": mask, "cwd": os.getcwd(), "env": dict(os.environ),
    "argv": sys.argv, "path0": sys.path[0], "ppid": os.getppid(), "pid": os.getpid(),
}
with open(os.environ["DUMP_TO"], "w") as out:
    json.dump(state, out)
"""


def dump() -> None:
    """Prelude for the forked side: the same dump, just before ``main()``."""
    exec(DUMP, {"__name__": "dump"})


def _fresh(tmp_path: Path, streams: dict[str, int]) -> dict[str, Any]:
    """The dump from a fresh interpreter given the same descriptors (a closed one is
    closed by a shell first, as ``sh -c 'exec "$@" >&-'`` does)."""
    target = tmp_path / "fresh.json"
    env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
    env["DUMP_TO"] = str(target)
    closing = [f"{n}<&-" if n == 0 else f"{n}>&-" for n, fd in enumerate(streams.values())]
    closing = [c for c, fd in zip(closing, streams.values(), strict=True) if fd == CLOSED]
    subprocess.run(
        ["sh", "-c", f'exec "$@" {" ".join(closing)}', "sh", sys.executable, "-c", DUMP],
        env=env,
        check=True,
        cwd=tmp_path,
        **{name: subprocess.DEVNULL if fd == CLOSED else fd for name, fd in streams.items()},
    )
    loaded: dict[str, Any] = json.loads(target.read_text())
    return loaded


STREAMS = {
    "devnull": (subprocess.DEVNULL, subprocess.DEVNULL, subprocess.DEVNULL),
    "stdout-closed": (subprocess.DEVNULL, CLOSED, subprocess.DEVNULL),
    "stdin-and-stderr-closed": (CLOSED, subprocess.DEVNULL, CLOSED),
}


@pytest.mark.parametrize("setup", STREAMS)
def test_a_forked_child_starts_as_a_fresh_process(
    setup: str, tmp_path: Path, forked: ForkServer
) -> None:
    """Descriptors, signal dispositions and mask, std streams, umask, working directory and
    environment as a fresh interpreter has them when ``main()`` starts."""
    streams = dict(zip(("stdin", "stdout", "stderr"), STREAMS[setup], strict=True))
    target = tmp_path / "forked.json"
    process = forked.popen(
        ["--version"],
        cwd=tmp_path,
        env={"DUMP_TO": str(target)},
        prelude="tests.test_forkserver:dump",
        **streams,
    )
    assert process.wait(timeout=60) == 0
    mine: dict[str, Any] = json.loads(target.read_text())
    fresh = _fresh(tmp_path, streams)
    for field in ("fds", "signals", "blocked", "streams", "umask", "cwd"):
        assert mine[field] == fresh[field], field
    own = {"DUMP_TO", "PWD"}  # each side's own file; PWD is set by the fresh side's shell
    assert {k: v for k, v in mine["env"].items() if k not in own} == {
        k: v for k, v in fresh["env"].items() if k not in own
    }
    # the console script's own: argv[0] and sys.path[0] are the script and its folder
    script = Path(sys.executable).parent / "cosmo-runner"
    assert mine["argv"] == [str(script), "--version"]
    assert mine["path0"] == str(script.parent)
    assert mine["pid"] != os.getpid() and mine["ppid"] == forked.process.pid


def test_a_forked_child_is_charged_to_the_test(tmp_path: Path, forked: ForkServer) -> None:
    spec = tmp_path / "spec.json"
    before = cputime._cpu()  # private on purpose: the figure --cpu-times records
    charged = forked.charged
    proc = forked.run("validate", spec)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"cosmo-runner: error: {spec}: file not found\n"
    assert forked.charged > charged
    assert cputime._cpu() - before >= forked.charged - charged


def test_sigkill_ends_a_forked_child_as_any_process(tmp_path: Path, forked: ForkServer) -> None:
    """No handler runs: the Popen-style -9, a log left ``running``; the server carries on."""
    hold = tmp_path / "hold"
    hold.mkdir()
    spec = validators_only_spec(tmp_path / "spec")
    process = forked.popen(
        ["run", spec, "--out", tmp_path / "out"],
        stdout=subprocess.DEVNULL,
        prelude="tests.pipeline.holds:install",
        prelude_args={"hold": str(hold), "points": "validators"},
    )
    deadline = time.monotonic() + 60
    while not (hold / "validators.ready").exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    log = json.loads((tmp_path / "out" / "run_log.json").read_text())
    assert log["status"] == "running"
    assert forked.run("--version").returncode == 0


def test_the_reused_gate_records_what_a_fresh_one_observes(
    tmp_path: Path, forked: ForkServer
) -> None:
    """A child handed the server's warmed gate writes the environment a child observing
    afresh (the real default) writes: the same env_id, packages and verdict."""
    spec = validators_only_spec(tmp_path / "spec")
    logs = {}
    for gate in ("reused", "fresh"):
        proc = forked.run("run", spec, "--out", tmp_path / gate, gate=gate)
        assert proc.returncode == 0, proc.stderr
        logs[gate] = load_log(tmp_path / gate)
    reused, fresh = (logs[g]["environment"] for g in ("reused", "fresh"))
    assert reused["env_id"] == fresh["env_id"]
    assert reused["observed"]["packages"] == fresh["observed"]["packages"]
    assert logs["reused"]["smoke"]["passed"] is logs["fresh"]["smoke"]["passed"] is True
