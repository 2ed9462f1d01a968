"""Any sequence of SIGINT/SIGTERM: a final `interrupted` log whose exit code is the process's.

Signals are sent at deterministic points, not after a sleep: the process holds a step
(validators, the final log, the summary printed after it) until the test creates a file, and
says so by creating another (tests/pipeline/holds.py). The processes are real ones forked
from the warm fork server (tests/forkserver.py); the last tests run each signal class in a
fresh interpreter too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_log
from tests.forkserver import ForkedProcess, ForkServer
from tests.pipeline.holds import FRESH
from tests.triage.conftest import validators_only_spec

pytestmark = pytest.mark.slow

INT, TERM = signal.SIGINT, signal.SIGTERM


class Held:
    """The CLI in a real process held at ``points``: forked from the warm fork server, or
    (``fresh``) a fresh interpreter, as before the fork server."""

    def __init__(
        self, tmp: Path, points: list[str], forked: ForkServer | None, fresh: bool = False
    ) -> None:
        self.hold = tmp / "hold"
        self.hold.mkdir()
        self.out = tmp / "out"
        spec = validators_only_spec(tmp / "spec")
        args = ["run", str(spec), "--out", str(self.out)]
        self.proc: subprocess.Popen[str] | ForkedProcess
        if fresh or forked is None:
            env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
            self.proc = subprocess.Popen(
                [sys.executable, "-c", FRESH, str(ROOT), str(self.hold), ",".join(points), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        else:
            self.proc = forked.popen(
                args,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                prelude="tests.pipeline.holds:install",
                prelude_args={"hold": str(self.hold), "points": ",".join(points)},
            )

    def reach(self, point: str, state: str = "ready") -> None:
        deadline = time.monotonic() + 180
        while not (self.hold / f"{point}.{state}").exists():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.01)

    def send(self, *signums: int) -> None:
        for signum in signums:  # back to back: as fast as a user can press Ctrl-C twice
            self.proc.send_signal(signum)

    def release(self, point: str) -> None:
        (self.hold / f"{point}.go").touch()

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=180)
        return self.proc.wait(), out, err


SEQUENCES = [
    (INT,),
    (TERM,),
    (INT, INT),
    (INT, INT, INT),
    (TERM, TERM, INT),
    (INT, TERM),
    (TERM, INT),
]


def _name(sequence: tuple[int, ...]) -> str:
    return "-".join(signal.Signals(s).name for s in sequence)


def _assert_interrupted(result: tuple[int, str, str], out_dir: Path, first: int) -> None:
    code, _, err = result
    expected = 128 + first
    assert code == expected, err
    assert f"cosmo-runner: error: interrupted by {signal.Signals(first).name}" in err.splitlines()
    assert "Traceback" not in err
    log = load_log(out_dir)
    assert log["status"] == "interrupted"
    assert log["exit_code"] == expected
    assert log["error"]["type"] == "Interrupted"
    assert log["error"]["exit_code"] == expected


@pytest.mark.parametrize("repeat", range(2))
@pytest.mark.parametrize("sequence", SEQUENCES, ids=_name)
def test_the_first_signal_decides(
    tmp_path: Path, sequence: tuple[int, ...], repeat: int, forked: ForkServer
) -> None:
    """The first signal is taken, then the rest come back to back while the run ends."""
    run = Held(tmp_path, ["validators"], forked)
    run.reach("validators")
    run.send(sequence[0])
    run.reach("validators", "interrupted")
    run.send(*sequence[1:])
    _assert_interrupted(run.finish(), run.out, sequence[0])


@pytest.mark.parametrize("repeat", range(2))
@pytest.mark.parametrize("sequence", SEQUENCES, ids=_name)
def test_signals_all_at_once(
    tmp_path: Path, sequence: tuple[int, ...], repeat: int, forked: ForkServer
) -> None:
    """Sent at once, pending signals have no order the process can see (the kernel keeps
    none between standard signals): one of them decides, and log and exit code agree."""
    run = Held(tmp_path, ["validators"], forked)
    run.reach("validators")
    run.send(*sequence)
    code, _, err = run.finish()
    assert code in {128 + s for s in sequence}, err
    _assert_interrupted((code, _, err), run.out, code - 128)


@pytest.mark.parametrize("sequence", [(INT, INT), (TERM, TERM, INT), (INT, TERM)], ids=_name)
def test_signals_while_the_final_log_is_written_are_ignored(
    tmp_path: Path, sequence: tuple[int, ...], forked: ForkServer
) -> None:
    run = Held(tmp_path, ["validators", "finish"], forked)
    run.reach("validators")
    run.send(sequence[0])
    run.release("validators")
    run.reach("finish")
    run.send(*sequence[1:], *sequence)  # and a few more for good measure
    run.release("finish")
    _assert_interrupted(run.finish(), run.out, sequence[0])


def test_a_first_signal_during_the_final_log_of_a_success_changes_nothing(
    tmp_path: Path, forked: ForkServer
) -> None:
    run = Held(tmp_path, ["finish"], forked)
    run.reach("finish")
    run.send(INT, TERM)
    run.release("finish")
    code, _, err = run.finish()
    assert code == 0, err
    log = load_log(run.out)
    assert log["status"] == "succeeded" and log["exit_code"] == 0


@pytest.mark.parametrize("sequence", [(INT,), (TERM, INT)], ids=["INT", "TERM-INT"])
def test_signals_after_the_final_log_keep_its_code(
    tmp_path: Path, sequence: tuple[int, ...], forked: ForkServer
) -> None:
    run = Held(tmp_path, ["summary"], forked)
    run.reach("summary")
    run.send(*sequence)
    run.release("summary")
    code, out, err = run.finish()
    assert code == 0, err
    assert "succeeded" in out
    assert load_log(run.out)["exit_code"] == 0


def test_a_signal_swallowed_by_a_plugin_still_stops_the_run(
    tmp_path: Path, forked: ForkServer
) -> None:
    run = Held(tmp_path, ["plugin"], forked)
    run.reach("plugin")
    run.send(INT)
    run.release("plugin")  # the hook swallowed the interrupt; the run would carry on
    _assert_interrupted(run.finish(), run.out, INT)


# ------------------------------------------------- the same classes in a fresh interpreter


@pytest.mark.parametrize("sequence", [(INT, INT), (TERM, INT)], ids=_name)
def test_the_first_signal_decides_in_a_fresh_interpreter(
    tmp_path: Path, sequence: tuple[int, ...]
) -> None:
    """Each signal as the first, in a process started as before the fork server: the
    forked tests above see what a fresh ``cosmo-runner`` does."""
    run = Held(tmp_path, ["validators"], None, fresh=True)
    run.reach("validators")
    run.send(sequence[0])
    run.reach("validators", "interrupted")
    run.send(*sequence[1:])
    _assert_interrupted(run.finish(), run.out, sequence[0])


@pytest.mark.parametrize("sequence", [(INT,), (TERM, INT)], ids=["INT", "TERM-INT"])
def test_signals_around_the_final_log_in_a_fresh_interpreter(
    tmp_path: Path, sequence: tuple[int, ...]
) -> None:
    """Signals while the final log of a success is written and after it, fresh: ignored."""
    run = Held(tmp_path, ["finish", "summary"], None, fresh=True)
    run.reach("finish")
    run.send(*sequence)
    run.release("finish")
    run.reach("summary")
    run.send(*sequence)
    run.release("summary")
    code, out, err = run.finish()
    assert code == 0, err
    assert "succeeded" in out
    log = load_log(run.out)
    assert log["status"] == "succeeded" and log["exit_code"] == 0
