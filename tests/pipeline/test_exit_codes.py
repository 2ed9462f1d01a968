"""Exit codes are the truth: output that cannot be written never changes them.

Every way stdout or stderr can be gone (a reader that left, a full device, a closed or
read-only descriptor) against every outcome, in real processes: the exit code, the one-line
messages on whatever stream still works, and the run log's schema validity. The processes
are forked from the warm fork server (tests/forkserver.py); shell pipelines, usage errors and
a comparison of forked and fresh processes for each setup run fresh interpreters.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.cli import Console, main
from tests.conftest import ROOT, load_log
from tests.forkserver import CLOSED, ForkServer
from tests.triage.conftest import manifest_copy, validators_only_spec

CASES = ROOT / "tests" / "cases"
PYTHON_CLI = [sys.executable, "-m", "cosmo_runner"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}


@contextmanager
def _streams(setup: str) -> Iterator[tuple[list[str], dict[str, Any]]]:
    """(shell prefix, stdout/stderr keyword arguments) for one broken-output setup.

    The prefix closes a descriptor for a fresh interpreter (``sh -c 'exec "$@" >&-'``); the
    fork server closes it itself, given :data:`CLOSED` in the keyword arguments instead."""
    opened: list[Any] = []
    prefix: list[str] = []
    kwargs: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    if setup in ("stdout-reader-left", "both-readers-left"):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first write: EPIPE, every time
        kwargs["stdout"] = write_end
        opened.append(write_end)
        if setup == "both-readers-left":
            kwargs["stderr"] = write_end
    elif setup == "stdout-full":
        kwargs["stdout"] = open("/dev/full", "wb")  # noqa: SIM115 - closed below
        opened.append(kwargs["stdout"])
    elif setup == "stdout-read-only":  # writes fail with EBADF
        kwargs["stdout"] = open(os.devnull, "rb")  # noqa: SIM115 - closed below
        opened.append(kwargs["stdout"])
    elif setup == "stdout-closed":
        prefix = ["sh", "-c", 'exec "$@" >&-', "sh"]
        kwargs["stdout"] = CLOSED
    elif setup == "stderr-closed":
        prefix = ["sh", "-c", 'exec "$@" 2>&-', "sh"]
        kwargs["stderr"] = CLOSED
    elif setup == "stderr-full":
        kwargs["stderr"] = open("/dev/full", "wb")  # noqa: SIM115 - closed below
        opened.append(kwargs["stderr"])
    else:
        raise AssertionError(setup)
    try:
        yield prefix, kwargs
    finally:
        for item in opened:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()


SETUPS = [
    "stdout-reader-left",
    "both-readers-left",
    "stdout-full",
    "stdout-read-only",
    "stdout-closed",
    "stderr-closed",
    "stderr-full",
]
STDOUT_WARNING = {
    "stdout-full": "cosmo-runner: warning: cannot write to stdout: No space left on device",
    "stdout-read-only": "cosmo-runner: warning: cannot write to stdout: Bad file descriptor",
}


def _run(setup: str, args: list[str], forked: ForkServer) -> tuple[int, str, str]:
    """``cosmo-runner ARGS`` forked from the warm fork server, its output broken by ``setup``."""
    with _streams(setup) as (_, kwargs):
        proc = forked.popen(args, stdin=subprocess.DEVNULL, **kwargs)
        out, err = proc.communicate(timeout=300)
    return proc.wait(), _text(out), _text(err)


def _run_fresh(setup: str, args: list[str]) -> tuple[int, str, str]:
    """The same in a fresh interpreter (``python -m cosmo_runner``)."""
    with _streams(setup) as (prefix, streams):
        kwargs = {k: None if v == CLOSED else v for k, v in streams.items()}
        proc = subprocess.Popen(
            [*prefix, *PYTHON_CLI, *args], env=_env(), stdin=subprocess.DEVNULL, **kwargs
        )
        out, err = proc.communicate(timeout=300)
    return proc.returncode, _text(out), _text(err)


def _text(data: bytes | None) -> str:
    return data.decode() if isinstance(data, bytes) else ""


@pytest.fixture(scope="module")
def specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("specs")
    for case in ("negative-count", "analysis-fails", "schema-invalid"):
        shutil.copytree(CASES / case, root / case)
    return {
        "ok": validators_only_spec(root / "ok"),
        "bad-table": root / "negative-count" / "spec.json",
        "analysis-fails": root / "analysis-fails" / "spec.json",
        "schema-invalid": root / "schema-invalid" / "spec.json",
        "manifest": manifest_copy(
            root / "manifest", lambda m: m["python"].update(specifier="<3.0")
        ),
    }


def _check_streams(setup: str, out: str, err: str, *, error_line: bool) -> None:
    assert "Traceback" not in out + err and "Exception ignored" not in err, err
    if setup in STDOUT_WARNING:
        assert STDOUT_WARNING[setup] in err.splitlines()
    elif setup == "stdout-reader-left":
        assert "warning" not in err  # a reader that left is not news
    if setup in ("stderr-closed", "stderr-full", "both-readers-left"):
        assert err == ""
    elif error_line:  # stderr still works: the failure is said there, one line each
        assert any(line.startswith("cosmo-runner: error: ") for line in err.splitlines()), err


@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize(
    ("outcome", "code"), [("gate-failed", 3), ("validators-failed", 4), ("succeeded", 0)]
)
def test_run_exit_code_survives_broken_output(
    setup: str,
    outcome: str,
    code: int,
    *,
    specs: dict[str, Path],
    tmp_path: Path,
    forked: ForkServer,
) -> None:
    out_dir = tmp_path / "out"
    args = ["run", str(specs["bad-table" if outcome == "validators-failed" else "ok"])]
    args += ["--out", str(out_dir)]
    if outcome == "gate-failed":
        args += ["--manifest", str(specs["manifest"])]
    returncode, out, err = _run(setup, args, forked)
    assert returncode == code, err
    _check_streams(setup, out, err, error_line=code != 0)
    log = load_log(out_dir)
    assert log["exit_code"] == code
    assert log["status"] == ("succeeded" if code == 0 else "failed")


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["stdout-reader-left", "both-readers-left", "stderr-full"])
@pytest.mark.parametrize(("spec", "code"), [("analysis-fails", 5), ("schema-invalid", 2)])
def test_exit_codes_2_and_5_survive_broken_output(
    setup: str, spec: str, code: int, *, specs: dict[str, Path], tmp_path: Path, forked: ForkServer
) -> None:
    """The other outcomes of a run: an invalid spec and a failed analysis, as above."""
    out_dir = tmp_path / "out"
    args = ["run", str(specs[spec]), "--out", str(out_dir)]
    returncode, out, err = _run(setup, args, forked)
    assert returncode == code, err
    _check_streams(setup, out, err, error_line=True)
    log = load_log(out_dir)
    assert (log["exit_code"], log["status"]) == (code, "failed")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setup", "gate", "code"),
    [
        ("stdout-reader-left", "ok", 0),
        ("stdout-reader-left", "failed", 3),
        ("stdout-full", "failed", 3),
        ("stderr-closed", "ok", 0),
    ],
)
def test_smoke_exit_code_survives_broken_output(
    setup: str, gate: str, code: int, specs: dict[str, Path], forked: ForkServer
) -> None:
    """Each code with a broken stdout, each kind of broken stream with a code: ``smoke``
    decides its code before it prints, and prints the same way for both (each smoke probes
    its imports in fresh interpreters, over a second of CPU: not every pair)."""
    args = ["smoke", "--json"] + (
        ["--manifest", str(specs["manifest"])] if gate == "failed" else []
    )
    returncode, out, err = _run(setup, args, forked)
    assert returncode == code, err
    _check_streams(setup, out, err, error_line=False)


@pytest.mark.slow
def test_shell_pipelines_keep_the_code(specs: dict[str, Path], tmp_path: Path) -> None:
    """``smoke | head -0`` and ``run ... | true`` as a user types them (pipefail)."""
    cli = " ".join(PYTHON_CLI)
    manifest = specs["manifest"]
    script = (
        "set -o pipefail; "
        f"{cli} smoke --manifest {manifest} | head -0; echo smoke=$?; "
        f"{cli} run {specs['bad-table']} --out {tmp_path / 'a'} | true; echo run=$?; "
        f"{cli} --help | head -1 >/dev/null; echo help=$?"
    )
    proc = subprocess.run(
        ["bash", "-c", script], env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.stdout.split() == ["smoke=3", "run=4", "help=0"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert load_log(tmp_path / "a")["exit_code"] == 4


@pytest.mark.slow
def test_help_and_usage_errors_survive_broken_output() -> None:
    for setup in ("stdout-reader-left", "stdout-full"):
        assert _run_fresh(setup, ["--help"])[0] == 0
        assert _run_fresh(setup, ["run", "--help"])[0] == 0
    code, _, err = _run_fresh("stdout-full", ["frobnicate"])
    assert code == 2
    assert err.splitlines()[-1].startswith("cosmo-runner: error: cosmo-runner: argument command")
    assert _run_fresh("stderr-full", ["frobnicate"])[0] == 2


@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS)
def test_a_forked_process_meets_its_streams_as_a_fresh_one(setup: str, forked: ForkServer) -> None:
    """The fork server's children (the tests above) against fresh interpreters, setup by
    setup: the same exit code and the same bytes on each stream that still works, for
    output on stdout (``--version``), on stderr (a usage error) and on both (``--debug``
    prints a traceback after the error line)."""
    for args in (["--version"], ["frobnicate"], ["--debug", "verify", "/nonexistent-run"]):
        fresh = _run_fresh(setup, args)
        assert fresh[0] in (0, 2), fresh
        assert _run(setup, args, forked) == fresh, (setup, args)


# ---------------------------------------------------------------- the Console, in process


class _Broken(io.StringIO):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.attempts = 0

    def write(self, text: str) -> int:
        self.attempts += 1
        raise self.error


@pytest.mark.parametrize(
    ("error", "warning"),
    [
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), None),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (OSError(errno.EBADF, "Bad file descriptor"), "Bad file descriptor"),
        (OSError(errno.EIO, "Input/output error"), "Input/output error"),
        (ValueError("I/O operation on closed file."), "I/O operation on closed file."),
    ],
)
def test_console_drops_a_broken_stdout_and_says_why_once(
    error: BaseException, warning: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, err = _Broken(error), io.StringIO()
    monkeypatch.setattr(sys, "stdout", broken)
    monkeypatch.setattr(sys, "stderr", err)
    console = Console()
    console.out("one\n")
    console.out("two\n")
    console.err("cosmo-runner: error: still said\n")
    console.flush()
    assert broken.attempts == 1
    expected = (
        [] if warning is None else [f"cosmo-runner: warning: cannot write to stdout: {warning}"]
    )
    assert err.getvalue().splitlines() == [*expected, "cosmo-runner: error: still said"]


def test_console_with_no_streams_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    console = Console()
    console.out("x\n")
    console.err("y\n")
    console.flush()
    assert console.gone == {"stdout": "closed", "stderr": "closed"}


def test_main_returns_the_usage_code_when_stderr_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Broken(OSError(errno.ENOSPC, "No space left on device")))
    assert main(["frobnicate"]) == 2
    assert main(["run"]) == 2
