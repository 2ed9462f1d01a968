"""One owner per run directory, the heartbeat, and the modes of what a run writes."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cosmo_runner.errors import OutputDirError, OutputWriteError
from cosmo_runner.pipeline import CLAIM_NAME, prepare_out_dir
from cosmo_runner.runlog import RESERVE_EXTRA, RESERVE_NAME, RunLog, write_atomic
from tests.conftest import InProcess, fake_dist, load_log
from tests.forkserver import ForkServer

IN_USE = "output directory is in use by another run: {out}"
NOT_EMPTY = "output directory is not empty, refusing to overwrite: {out}"


def _light_spec(example: Path) -> Path:
    """The BCG example with validators only: a complete run that is cheap to repeat."""
    spec = json.loads(example.read_text())
    spec["analyses"] = []
    example.write_text(json.dumps(spec))
    return example


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- claiming --out


def _race(out: Path, cwd: Path, racers: int) -> tuple[list[str], list[str]]:
    """``racers`` threads released together by a barrier call ``prepare_out_dir(out)``."""
    barrier = threading.Barrier(racers)
    winners: list[str] = []
    refusals: list[str] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        try:
            claimed = prepare_out_dir(out, cwd)
        except OutputDirError as exc:
            with lock:
                refusals.append(exc.message)
            return
        with lock:
            winners.append(claimed.run_id)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners, refusals


@pytest.mark.parametrize("exists", [False, True], ids=["missing-dir", "existing-empty-dir"])
def test_threads_released_together_have_exactly_one_winner(tmp_path: Path, exists: bool) -> None:
    for round_number in range(100):  # x2 parametrizations = 200 rounds
        out = tmp_path / f"out{round_number}"
        if exists:
            out.mkdir()
        winners, refusals = _race(out, tmp_path, 8)
        assert len(winners) == 1, (round_number, winners, refusals)
        assert len(refusals) == 7
        allowed = {IN_USE.format(out=out), NOT_EMPTY.format(out=out)}
        assert set(refusals) <= allowed, refusals
        assert [p.name for p in out.iterdir()] == [CLAIM_NAME]  # losers wrote nothing


def test_racing_processes_on_one_out_have_exactly_one_run(
    example: Path, tmp_path: Path, forked: ForkServer
) -> None:
    """Eight real processes (forked from the warm fork server: they start within
    milliseconds of each other, a tighter race than fresh interpreters) on one --out."""
    spec = _light_spec(example)
    for round_number in range(5):
        out = tmp_path / f"out{round_number}"
        if round_number % 2:
            out.mkdir()  # an existing empty directory, claimed by a claim file
        procs = [
            forked.popen(
                ["run", str(spec), "--out", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(8)
        ]
        outputs = [p.communicate(timeout=300) for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0] + [2] * 7, (codes, outputs)
        allowed = {
            f"cosmo-runner: error: {IN_USE.format(out=out)}\n",
            f"cosmo-runner: error: {NOT_EMPTY.format(out=out)}\n",
        }
        losers = [(o, e) for p, (o, e) in zip(procs, outputs, strict=True) if p.returncode == 2]
        assert all(stdout == "" and stderr in allowed for stdout, stderr in losers), losers
        log = load_log(out)
        assert log["status"] == "succeeded"
        winner_stdout = next(
            o for p, (o, _) in zip(procs, outputs, strict=True) if p.returncode == 0
        )
        assert winner_stdout.startswith(f"run {log['run_id']}: succeeded")
        assert sorted(p.name for p in out.iterdir()) == [
            "plots",
            "report.html",
            "results",
            "run_log.json",
            "spec.json",
        ]


def test_a_file_put_in_between_check_and_claim_is_respected(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / CLAIM_NAME).write_text("")  # another run holds it
    with pytest.raises(OutputDirError) as caught:
        prepare_out_dir(out, tmp_path)
    assert caught.value.message == NOT_EMPTY.format(out=out)
    assert [p.name for p in out.iterdir()] == [CLAIM_NAME]


def test_default_run_directory_is_claimed_and_released(tmp_path: Path) -> None:
    claimed = prepare_out_dir(None, tmp_path)
    assert claimed.created and claimed.path.parent == (tmp_path / "runs").resolve()
    assert [p.name for p in claimed.path.iterdir()] == [CLAIM_NAME]
    claimed.release()
    assert list((tmp_path / "runs").iterdir()) == []


# --------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_write_atomic_gives_the_usual_modes(tmp_path: Path, mask: int) -> None:
    target = tmp_path / "new" / "deeper" / "file.json"
    with _umask(mask):
        write_atomic(target, b"{}\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    for directory in (tmp_path / "new", tmp_path / "new" / "deeper"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o777 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["file.json"]  # no temp file left


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_every_output_of_a_run_gets_the_usual_mode(
    example: Path, tmp_path: Path, mask: int, cli: InProcess
) -> None:
    out = tmp_path / "out"
    proc = cli("run", example, "--out", out, umask=mask)
    assert proc.returncode == 0, proc.stderr
    seen = {"file": 0, "dir": 0}
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        kind = "dir" if path.is_dir() else "file"
        seen[kind] += 1
        expected = (0o777 if kind == "dir" else 0o666) & ~mask
        assert mode == expected, (path, oct(mode), oct(expected))
    assert seen["file"] >= 6 and seen["dir"] == 3  # log, spec, results, plots; out, results, plots
    assert not (out / CLAIM_NAME).exists() and not (out / RESERVE_NAME).exists()
    load_log(out)


# --------------------------------------------------------------------------- heartbeat


def _on_disk(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def test_the_heartbeat_refreshes_updated_at_and_stops_before_the_final_log(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = RunLog(out / "run_log.json", "20261201T000000Z-00000000", ["test"], tmp_path, 0.02)
    log.start()
    assert (out / RESERVE_NAME).stat().st_size > (out / "run_log.json").stat().st_size
    first = _on_disk(out / "run_log.json")["updated_at"]
    deadline = time.monotonic() + 30
    while _on_disk(out / "run_log.json")["updated_at"] == first:
        assert time.monotonic() < deadline, "the heartbeat never rewrote the log"
        time.sleep(0.01)
    assert log.heartbeat_running
    log.finish("succeeded", 0)
    assert not log.heartbeat_running
    final = (out / "run_log.json").read_bytes()
    time.sleep(0.2)  # ten heartbeat periods: nothing may rewrite the final log
    assert (out / "run_log.json").read_bytes() == final
    document = _on_disk(out / "run_log.json")
    assert document["status"] == "succeeded" and document["updated_at"] == document["finished_at"]
    assert sorted(p.name for p in out.iterdir()) == ["run_log.json"]  # reserve released


def test_a_busy_heartbeat_never_overwrites_the_final_log(tmp_path: Path) -> None:
    for round_number in range(40):
        out = tmp_path / f"out{round_number}"
        out.mkdir()
        log = RunLog(out / "run_log.json", "20261201T000000Z-00000000", ["test"], tmp_path, 0.0)
        log.start()  # heartbeat period 0: it rewrites the log as fast as it can
        log.doc["validators"].append({"round": round_number})
        log.save()
        log.finish("failed", 5, None)
        document = _on_disk(out / "run_log.json")
        assert document["status"] == "failed" and document["exit_code"] == 5
        assert document["validators"] == [{"round": round_number}]
        assert [p.name for p in out.iterdir()] == ["run_log.json"]


# --------------------------------------------------------------------------- I/O errors


@pytest.mark.parametrize(
    ("call", "number", "reason"),
    [
        ("write", errno.ENOSPC, "no space left on device"),
        ("fsync", errno.EIO, "input/output error"),
        ("replace", errno.EROFS, "read-only file system"),
        ("write", errno.EDQUOT, "disk quota exceeded"),
    ],
)
def test_an_os_error_while_writing_names_the_file_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, number: int, reason: str
) -> None:
    target = tmp_path / "results" / "a.json"
    write_atomic(target, b"old\n")

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(number, os.strerror(number))

    class _Refusing(io.FileIO):
        def write(self, data: object) -> int:  # type: ignore[override]
            raise OSError(number, os.strerror(number))

    if call == "write":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: _Refusing(fd, "wb"))
    else:
        monkeypatch.setattr(os, call, fail)
    with pytest.raises(OutputWriteError) as caught:
        write_atomic(target, b"new\n")
    monkeypatch.undo()
    assert caught.value.message == f"cannot write {target}: {reason}"
    assert (caught.value.path, caught.value.reason) == (str(target), reason)
    assert caught.value.exit_code == 5
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temp file left


def test_the_reserve_grows_with_the_log_and_is_released_at_the_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    log = RunLog(out / "run_log.json", "20261201T000000Z-00000000", ["test"], tmp_path)
    log.start()
    reserve = out / RESERVE_NAME
    first = reserve.stat().st_size
    assert first == (out / "run_log.json").stat().st_size + RESERVE_EXTRA
    log.doc["validators"].append({"findings": ["x" * 100] * 3000})  # ~300 KB more
    log.save()
    assert reserve.stat().st_size == (out / "run_log.json").stat().st_size + RESERVE_EXTRA
    assert reserve.stat().st_size > first + 300_000
    log.finish("succeeded", 0)
    assert not reserve.exists()


BLOCKER_PLUGIN = """
from pathlib import Path

def block(context):
    '''Test hook: put a file where the run will want its plots/ directory.'''
    Path(context.options["path"]).write_text("in the way")
    return []
"""


def test_an_output_that_cannot_be_written_fails_its_analysis_and_leaves_no_part(
    example: Path, tmp_path: Path, forked: ForkServer
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "cosmo_blocker_plugin.py").write_text(BLOCKER_PLUGIN)
    fake_dist(
        site,
        "cosmo-blocker-plugin",
        "0.1",
        entry_points="[cosmo_runner.validators]\nblock = cosmo_blocker_plugin:block\n",
    )
    out = tmp_path / "out"
    spec = json.loads(example.read_text())
    spec["validators"].append(
        {"id": "blocker", "kind": "block", "input": "bcg", "options": {"path": str(out / "plots")}}
    )
    example.write_text(json.dumps(spec))
    proc = forked.run("run", example, "--out", out, env={"PYTHONPATH": str(site)})
    assert proc.returncode == 5, proc.stderr
    with_plots = [a["id"] for a in spec["analyses"] if a.get("plots")]
    more = f" (and {len(with_plots) - 1} more)" if len(with_plots) > 1 else ""
    assert proc.stderr == (
        f"cosmo-runner: error: analysis {with_plots[0]!r}: cannot write {out / 'plots'}: "
        f"file exists{more}\n"
    )
    log = load_log(out)
    assert log["status"] == "failed" and log["exit_code"] == 5
    for analysis in log["analyses"]:
        written = (out / "results" / f"{analysis['id']}.json").exists()
        if analysis["id"] in with_plots:
            assert analysis["status"] == "failed" and analysis["result"] is None
            assert not written  # its result JSON was removed with the failure
        else:
            assert analysis["status"] == "succeeded" and written
    assert [o["path"] for o in log["outputs"]] == [
        f"results/{a}.json"
        for a in sorted(a["id"] for a in spec["analyses"])
        if a not in with_plots
    ]
