"""``cosmo-runner batch`` in process: on the embedded LocalCluster (127.0.0.1, no dashboard),
and, where a healthy cluster is all a test needs, on the module's shared one of that kind
(``shared_cluster``, tests/batch/conftest.py) through ``--cluster ADDRESS``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cosmo_runner.batch.client import BatchOptions, run_batch
from cosmo_runner.interrupts import SignalGuard
from tests.batch.conftest import SHARED_GROUP
from tests.batch.helpers import K, batch, batch_log, by_key, committed, events
from tests.batch.specgen import generate_specs
from tests.conftest import InProcess
from tests.gates import ReusedGate
from tests.share.test_report import Page

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.xdist_group(SHARED_GROUP)
def test_fifty_specs_give_the_results_of_cosmo_runner_run_byte_for_byte(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reused_gate: ReusedGate,
    shared_cluster: str,
    cli: InProcess,
) -> None:
    specs = generate_specs(tmp_path / "specs", 50, seed=1, k=K)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"specs/{p.name}\n" for p in specs), encoding="utf-8")
    code, out, err = batch(
        capsys,
        reused_gate,
        "--from",
        listing,
        "--out",
        tmp_path / "out",
        "--cluster",
        shared_cluster,
    )
    assert (code, err) == (0, "")
    doc = batch_log(tmp_path / "out")
    assert (
        out.splitlines()[0]
        == f"batch {doc['batch_id']}: succeeded (exit 0): 50 specs: 50 succeeded"
    )
    assert out.splitlines()[-1] == f"  log       {tmp_path / 'out' / 'batch_log.json'}"
    assert doc["totals"]["succeeded"] == 50 and doc["exit_code"] == 0
    assert committed(tmp_path / "out") == sorted(p.stem for p in specs)
    assert {w["status"] for w in doc["workers"]} == {"accepted"}
    assert {w["env_id"] for w in doc["workers"]} == {doc["expected_env_id"]}
    assert sum(w["specs"] for w in doc["workers"]) == 50
    assert [e["key"] for e in events(tmp_path / "out") if e["event"] == "spec"].count(
        "sim-00007"
    ) == 1
    for spec in specs:
        single = tmp_path / "single" / spec.stem
        assert cli("run", spec, "--out", single).returncode == 0
        ours = tmp_path / "out" / spec.stem
        assert (ours / "results" / "fit.json").read_bytes() == (
            single / "results" / "fit.json"
        ).read_bytes()
        log = json.loads((ours / "run_log.json").read_text(encoding="utf-8"))
        assert log["inputs"][0]["resolved"] == str(spec.with_suffix(".csv"))
        assert log["environment"]["env_id"] == doc["expected_env_id"]
        assert log["status"] == "succeeded"
    # a run committed by the batch replays on the client (written unsynced, committed durably)
    verified = cli("verify", tmp_path / "out" / specs[0].stem)
    assert verified.returncode == 0 and "reproduced" in verified.stdout
    # the batch wrote its own page, which `cosmo-runner report DIR` writes again byte for byte
    assert doc["report"] == {"path": "report.html", "error": None}
    page = (tmp_path / "out" / "report.html").read_bytes()
    assert page.count(b'href="sim-') == 50 and b'href="sim-00049/report.html"' in page
    assert cli("report", tmp_path / "out").returncode == 0
    assert (tmp_path / "out" / "report.html").read_bytes() == page


@pytest.mark.usefixtures("forked_workers")
def test_failed_specs_keep_their_exit_codes_and_are_not_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    environ = dict(os.environ)
    good, bad_value, missing, invalid = generate_specs(tmp_path, 4, seed=2, k=K)
    csv = bad_value.with_suffix(".csv")
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines[1] = "s1,0.1,-0.05"  # a negative sampling variance: a validator error (exit 4)
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    missing.with_suffix(".csv").unlink()
    invalid.write_text('{"spec_version": 1}', encoding="utf-8")
    code, _, err = batch(
        capsys,
        reused_gate,
        good,
        bad_value,
        missing,
        invalid,
        "--out",
        tmp_path / "out",
        "--workers",
        "1",
    )
    assert code == 6
    assert err == (
        "cosmo-runner: error: 3 of 4 specs did not succeed (3 failed, 0 lost); "
        "each one's exit code is in the batch log\n"
    )
    doc = batch_log(tmp_path / "out")
    specs = by_key(doc)
    assert {k: (v["status"], v["exit_code"], v["attempts"]) for k, v in specs.items()} == {
        good.stem: ("succeeded", 0, 1),
        bad_value.stem: ("failed", 4, 1),
        missing.stem: ("failed", 2, 1),
        invalid.stem: ("failed", 2, 1),
    }
    assert specs[missing.stem]["message"] == (
        f"input 'd': {missing.with_suffix('.csv')}: file not found"
    )
    assert (doc["status"], doc["exit_code"]) == ("failed", 6)
    assert doc["error"]["type"] == "SomeSpecsFailed"
    assert doc["report"] == {"path": "report.html", "error": None}
    page = Page((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert "failed exit code 6 · 4 spec(s)" in page.text
    assert "succeeded 1" in page.text and "failed 3" in page.text
    for key in specs:  # every spec has its own complete run log, failed ones too
        log = json.loads((tmp_path / "out" / key / "run_log.json").read_text(encoding="utf-8"))
        assert log["exit_code"] == specs[key]["exit_code"]
    # the cluster's nannies set OMP_NUM_THREADS=1 ... in this process: put back afterwards
    assert dict(os.environ) == environ


def test_a_non_empty_folder_needs_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    (spec,) = generate_specs(tmp_path, 1, k=K)
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x", encoding="utf-8")
    code, stdout, err = batch(capsys, reused_gate, spec, "--out", out)
    assert (code, stdout) == (2, "")
    assert err == (
        f"cosmo-runner: error: output directory is not empty: {out}; "
        "use --resume to continue the batch in it\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["something"]
    code, _, err = batch(capsys, reused_gate, spec, "--out", out, "--resume")
    assert code == 2
    assert err == (
        f"cosmo-runner: error: --resume: {out} holds no batch_log.json: not a batch folder\n"
    )


@pytest.mark.xdist_group(SHARED_GROUP)
def test_resume_reuses_matching_runs_and_runs_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate, shared_cluster: str
) -> None:
    first = generate_specs(tmp_path / "specs", 4, seed=3, k=K)
    out = tmp_path / "out"
    on = ("--cluster", shared_cluster)
    code, _, err = batch(capsys, reused_gate, *first, "--out", out, *on, "--shared-fs")
    assert (code, err) == (0, "")
    before = {k: v["run_id"] for k, v in by_key(batch_log(out)).items()}
    changed = first[0].with_suffix(".csv")  # an input changed: that run cannot be reused
    changed.write_text(changed.read_text(encoding="utf-8") + "s21,0.1,0.1\n", encoding="utf-8")
    more = generate_specs(tmp_path / "specs", 2, seed=3, start=4, k=K)
    code, _, err = batch(capsys, reused_gate, *first, *more, "--out", out, *on, "--resume")
    assert (code, err) == (0, "")
    doc = batch_log(out)
    specs = by_key(doc)
    assert {k: v["status"] for k, v in specs.items()} == {
        first[0].stem: "succeeded",
        first[1].stem: "reused",
        first[2].stem: "reused",
        first[3].stem: "reused",
        more[0].stem: "succeeded",
        more[1].stem: "succeeded",
    }
    for spec in first[1:]:
        assert specs[spec.stem]["run_id"] == before[spec.stem]
    assert specs[first[0].stem]["run_id"] != before[first[0].stem]
    assert committed(out) == sorted(p.stem for p in [*first, *more])
    (aside,) = (out / ".replaced").iterdir()  # the old run is set aside, not deleted
    assert aside.name.startswith(first[0].stem + ".")
    assert (
        json.loads((aside / "run_log.json").read_text(encoding="utf-8"))["run_id"]
        == before[first[0].stem]
    )
    # every spec reused (no cluster), but the page cannot be written: a folder in its way
    (out / "report.html").unlink()
    (out / "report.html").mkdir()
    code, stdout, err = batch(capsys, reused_gate, *first, *more, "--out", out, "--resume")
    assert err.startswith(f"cosmo-runner: error: cannot write {out / 'report.html'}: ")
    assert (code, err.count("\n")) == (5, 1)
    doc = batch_log(out)
    assert (doc["status"], doc["exit_code"], doc["totals"]["reused"]) == ("failed", 5, 6)
    assert doc["report"] == {
        "path": "report.html",
        "error": {
            "type": "OutputWriteError",
            "message": err.removeprefix("cosmo-runner: error: ")[:-1],
        },
    }
    assert doc["error"] == doc["report"]["error"]
    assert stdout.splitlines()[0] == f"batch {doc['batch_id']}: failed (exit 5): 6 specs: 6 reused"


@pytest.mark.xdist_group(SHARED_GROUP)
@pytest.mark.usefixtures("forked_workers")
def test_interrupted_after_some_commits_then_resume_duplicates_nothing(
    tmp_path: Path, shared_cluster: str, reused_gate: ReusedGate
) -> None:
    specs = generate_specs(tmp_path / "specs", 12, seed=4, k=K)
    out = tmp_path / "out"
    sent: list[int] = []

    def progress(counts: dict[str, int]) -> None:
        if counts["done"] >= 3 and not sent:
            sent.append(counts["done"])
            os.kill(os.getpid(), signal.SIGINT)

    with SignalGuard() as guard:
        result = run_batch(
            # one worker of its own: with two, a lot of two results can be committed together
            # and the signal, sent while the first is recorded, leaves the second committed
            # but logged `interrupted` (a --resume reuses it; the count below would differ)
            BatchOptions(
                specs=specs, out_dir=out, workers=1, chunk=1, progress=progress, gate=reused_gate
            ),
            signals=guard,
        )
    assert result.exit_code == 130
    doc = batch_log(out)
    assert (doc["status"], doc["exit_code"]) == ("interrupted", 130)
    assert doc["error"] == {"type": "Interrupted", "message": "interrupted by SIGINT"}
    statuses = [e["status"] for e in doc["specs"]]
    done = statuses.count("succeeded")
    assert done >= 3 and statuses.count("interrupted") == 12 - done
    assert len(committed(out)) == done
    again = run_batch(
        BatchOptions(
            specs=specs, out_dir=out, cluster=shared_cluster, resume=True, gate=reused_gate
        )
    )
    assert again.exit_code == 0
    doc = batch_log(out)
    assert doc["totals"]["reused"] == done and doc["totals"]["succeeded"] == 12 - done
    assert committed(out) == sorted(p.stem for p in specs)
    assert not (out / ".replaced").exists()


def test_help_and_run_do_not_import_dask(tmp_path: Path) -> None:
    (spec,) = generate_specs(tmp_path, 1, k=K)
    probe = (
        "import sys, contextlib, io\n"
        "from cosmo_runner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['--help']) == 0\n"
        f"    assert main(['run', {str(spec)!r}, '--out', {str(tmp_path / 'run')!r}]) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed', 'dask_jobqueue', 'tqdm'))\n"
        "print(loaded)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=300
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[]\n", "")


@pytest.mark.usefixtures("forked_workers")
def test_a_batch_runs_while_another_server_holds_port_8787(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    """Port 8787 (distributed's dashboard default) taken: no warning, no clash, exit 0.

    Two suites, two batches or a user's own Dask dashboard on the host must not collide: the
    project's schedulers serve their HTTP routes on a free loopback port.
    """
    import socket

    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            holder.bind(("127.0.0.1", 8787))
            holder.listen(1)
        except OSError:
            pass  # already taken by someone else: the case under test either way
        specs = generate_specs(tmp_path / "specs", 2, seed=3, k=K)
        code, _out, err = batch(
            capsys, reused_gate, *map(str, specs), "--out", tmp_path / "out", "--workers", "1"
        )
        assert (code, err) == (0, "")
        assert batch_log(tmp_path / "out")["totals"]["succeeded"] == 2
    finally:
        holder.close()


@pytest.mark.usefixtures("forked_workers")
def test_a_cluster_that_fails_to_close_costs_no_result_and_no_crash(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reused_gate: ReusedGate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """distributed's close can raise after every result is committed (a nanny still
    restarting its worker: "AssertionError: can only join a started process", seen under
    load): the batch still exits 0 with a complete log, and says so in its events."""
    from distributed import LocalCluster

    real_close = LocalCluster.close

    def close_then_fail(self: LocalCluster, *args: object, **kwargs: object) -> None:
        real_close(self, *args, **kwargs)  # the processes do stop
        raise AssertionError("can only join a started process")

    monkeypatch.setattr(LocalCluster, "close", close_then_fail)
    specs = generate_specs(tmp_path / "specs", 2, seed=4, k=K)
    out = tmp_path / "out"
    code, _out, err = batch(capsys, reused_gate, *map(str, specs), "--out", out, "--workers", "1")
    assert (code, err) == (0, "")
    doc = batch_log(out)
    assert doc["status"] == "succeeded" and doc["totals"]["succeeded"] == 2
    assert [(e["part"], e["reason"]) for e in events(out) if e["event"] == "close-failed"] == [
        ("LocalCluster", "AssertionError: can only join a started process")
    ]
