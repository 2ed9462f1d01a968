"""Any sequence of SIGINT/SIGTERM: a final `interrupted` log whose exit code is the process's.

Signals are sent at deterministic points, not after a sleep: the CLI runs under a small
hook script that holds a step (validators, the final log, the summary printed after it)
until the test creates a file, and says so by creating another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import load_log
from tests.triage.conftest import validators_only_spec

pytestmark = pytest.mark.slow

INT, TERM = signal.SIGINT, signal.SIGTERM

HOOK = """
import os, sys, time
from pathlib import Path

from cosmo_runner import pipeline, validators
from cosmo_runner.triage import report
from cosmo_runner.cli import main

hold = Path(os.environ["HOLD_DIR"])
points = os.environ["HOLD_AT"].split(",")


def wait(name):
    (hold / f"{name}.ready").touch()
    try:
        while not (hold / f"{name}.go").exists():
            time.sleep(0.01)
    except BaseException:  # the first signal has been taken: say so, then carry on
        (hold / f"{name}.interrupted").touch()
        raise


def held(owner, attr, name, swallow=False):
    original = getattr(owner, attr)

    def wrapper(*args, **kwargs):
        try:
            wait(name)
        except Exception:  # a careless plugin: catches the interrupt and carries on
            if not swallow:
                raise
        return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


# private on purpose: the holds wrap pipeline steps (the runner's methods) that have no public
# hook, so that a signal lands inside the chosen step and not before or after it
if "validators" in points:
    held(pipeline._Runner, "_run_validators", "validators")
if "plugin" in points:
    held(validators, "run_validator", "plugin", swallow=True)
if "finish" in points:
    held(pipeline._Runner, "finish", "finish")
if "summary" in points:
    held(report, "run_summary", "summary")
sys.exit(main())  # as the program: sys.argv[1:]
"""


class Held:
    """The CLI in a subprocess, held at ``points``."""

    def __init__(self, tmp: Path, points: list[str]) -> None:
        self.hold = tmp / "hold"
        self.hold.mkdir()
        self.out = tmp / "out"
        script = tmp / "hook.py"
        script.write_text(HOOK)
        spec = validators_only_spec(tmp / "spec")
        env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
        env.update(HOLD_DIR=str(self.hold), HOLD_AT=",".join(points))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "run", str(spec), "--out", str(self.out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
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
        return self.proc.returncode, out, err


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
def test_the_first_signal_decides(tmp_path: Path, sequence: tuple[int, ...], repeat: int) -> None:
    """The first signal is taken, then the rest come back to back while the run ends."""
    run = Held(tmp_path, ["validators"])
    run.reach("validators")
    run.send(sequence[0])
    run.reach("validators", "interrupted")
    run.send(*sequence[1:])
    _assert_interrupted(run.finish(), run.out, sequence[0])


@pytest.mark.parametrize("repeat", range(2))
@pytest.mark.parametrize("sequence", SEQUENCES, ids=_name)
def test_signals_all_at_once(tmp_path: Path, sequence: tuple[int, ...], repeat: int) -> None:
    """Sent at once, pending signals have no order the process can see (the kernel keeps
    none between standard signals): one of them decides, and log and exit code agree."""
    run = Held(tmp_path, ["validators"])
    run.reach("validators")
    run.send(*sequence)
    code, _, err = run.finish()
    assert code in {128 + s for s in sequence}, err
    _assert_interrupted((code, _, err), run.out, code - 128)


@pytest.mark.parametrize("sequence", [(INT, INT), (TERM, TERM, INT), (INT, TERM)], ids=_name)
def test_signals_while_the_final_log_is_written_are_ignored(
    tmp_path: Path, sequence: tuple[int, ...]
) -> None:
    run = Held(tmp_path, ["validators", "finish"])
    run.reach("validators")
    run.send(sequence[0])
    run.release("validators")
    run.reach("finish")
    run.send(*sequence[1:], *sequence)  # and a few more for good measure
    run.release("finish")
    _assert_interrupted(run.finish(), run.out, sequence[0])


def test_a_first_signal_during_the_final_log_of_a_success_changes_nothing(
    tmp_path: Path,
) -> None:
    run = Held(tmp_path, ["finish"])
    run.reach("finish")
    run.send(INT, TERM)
    run.release("finish")
    code, _, err = run.finish()
    assert code == 0, err
    log = load_log(run.out)
    assert log["status"] == "succeeded" and log["exit_code"] == 0


@pytest.mark.parametrize("sequence", [(INT,), (TERM, INT)], ids=["INT", "TERM-INT"])
def test_signals_after_the_final_log_keep_its_code(
    tmp_path: Path, sequence: tuple[int, ...]
) -> None:
    run = Held(tmp_path, ["summary"])
    run.reach("summary")
    run.send(*sequence)
    run.release("summary")
    code, out, err = run.finish()
    assert code == 0, err
    assert "succeeded" in out
    assert load_log(run.out)["exit_code"] == 0


def test_a_signal_swallowed_by_a_plugin_still_stops_the_run(tmp_path: Path) -> None:
    run = Held(tmp_path, ["plugin"])
    run.reach("plugin")
    run.send(INT)
    run.release("plugin")  # the hook swallowed the interrupt; the run would carry on
    _assert_interrupted(run.finish(), run.out, INT)
