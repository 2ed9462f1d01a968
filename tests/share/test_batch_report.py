"""The batch's report.html: a summary and one row per spec, linking each run's own report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.cli import main
from tests.conftest import ROOT, InProcess
from tests.share.test_report import Page


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def batch_dir(bcg_run: Path, tmp_path: Path, cli: InProcess) -> Path:
    """A batch folder: the BCG run, a run that failed (exit 5) and a lost spec."""
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copytree(bcg_run, batch / "bcg")
    case = tmp_path / "case"
    shutil.copytree(ROOT / "tests" / "cases" / "analysis-fails", case)
    assert cli("run", case / "spec.json", "--out", batch / "gen").returncode == 5
    return batch


def _specs_log(batch: Path) -> dict[str, Any]:
    """A batch log as ``cosmo-runner batch`` writes it (``specs`` and ``workers``)."""
    gen = json.loads((batch / "gen" / "run_log.json").read_text(encoding="utf-8"))
    return {
        "batch_log_version": 1,
        "batch_id": "20261201T120000Z-ab12",
        "status": "failed",
        "exit_code": 6,
        "started_at": "2026-12-01T12:00:00.000000Z",
        "ended_at": "2026-12-01T12:01:00.000000Z",
        "expected_env_id": "2c2cac5835d6c0c0",
        "specs": [
            {
                "spec": "specs/bcg.json",
                "key": "bcg",
                "run_dir": "bcg",
                "status": "succeeded",
                "exit_code": 0,
                "message": None,
            },
            {
                "spec": "specs/gen.json",
                "key": "gen",
                "run_dir": "gen",
                "status": "failed",
                "exit_code": 5,
                "message": gen["error"]["message"],
            },
            {
                "spec": "specs/<b>lost</b>.json",
                "key": "lost",
                "run_dir": None,
                "status": "lost",
                "exit_code": None,
                "message": "worker died twice",
            },
        ],
        "workers": [
            {
                "name": "w1",
                "address": "tcp://127.0.0.1:4001",
                "env_id": "2c2cac5835d6c0c0",
                "status": "accepted",
                "reason": None,
                "specs": 2,
            },
        ],
        "runs": [{"path": "bcg"}, {"path": "gen"}],
    }


def test_batch_report_has_a_row_per_spec(
    batch_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (batch_dir / "batch_log.json").write_text(json.dumps(_specs_log(batch_dir)), encoding="utf-8")
    assert run(["report", str(batch_dir)], capsys) == (
        0,
        f"wrote {batch_dir / 'report.html'}\n",
        "",
    )
    html = (batch_dir / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert_self_contained_batch(page, html)
    text = page.text
    assert "failed exit code 6 · 3 spec(s)" in text
    assert "succeeded 1" in text and "failed 1" in text and "lost 1" in text
    bcg = json.loads((batch_dir / "bcg" / "run_log.json").read_text(encoding="utf-8"))
    for analysis in bcg["analyses"]:
        summary = analysis["summary"]
        for key in ("estimate", "ci_lb", "ci_ub"):
            assert f"{summary[key]:.4f}" in text
        assert f"{summary['I2']:.1f}" in text
    links = [a["href"] for a in page.named("a") if not a["href"].startswith("#")]
    assert links == ["bcg/report.html", "gen/report.html"]
    assert "worker died twice" in text
    assert "specs/<b>lost</b>.json" in text and "<b>lost</b>" not in html  # escaped
    assert "analysis 'gen': " in text  # the failed spec's one-line error
    assert "tcp://127.0.0.1:4001" in text


def assert_self_contained_batch(page: Page, html: str) -> None:
    """As a run's page, except that rows link the runs' own pages (relative links)."""
    assert page.named("script") == [] and page.named("link") == []
    for attrs in page.named("a"):
        assert not attrs["href"].startswith(("http:", "https:", "//", "/"))
    assert "@import" not in html and "url(" not in html


def test_a_minimal_batch_log_reads_its_runs(
    batch_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    minimal = {
        "batch_id": "b1",
        "status": "succeeded",
        "runs": [{"path": "bcg"}, {"path": "gen"}, {"path": "../outside"}, {"path": "missing"}],
    }
    (batch_dir / "batch_log.json").write_text(json.dumps(minimal), encoding="utf-8")
    assert run(["report", str(batch_dir)], capsys)[0] == 0
    text = Page((batch_dir / "report.html").read_text(encoding="utf-8")).text
    assert "succeeded 1" in text and "failed 1" in text and "unknown 2" in text
    assert "../outside: outside the batch folder, not read" in text
    assert "missing/run_log.json: file not found" in text


def test_a_malformed_batch_log_is_2(batch_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (batch_dir / "batch_log.json").write_text('{"batch_id": "b", "status": "done"}', "utf-8")
    code, out, err = run(["report", str(batch_dir)], capsys)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert all(
        line.startswith(f"cosmo-runner: error: {batch_dir / 'batch_log.json'}: ") for line in lines
    )
    assert "/status: 'done' is not one of" in err and "'runs' is a required property" in err
    assert not (batch_dir / "report.html").exists()
