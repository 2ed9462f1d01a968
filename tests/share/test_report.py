"""report.html: written with every run's final log, rewritten by ``cosmo-runner report RUN``.

Commands go through :func:`cosmo_runner.cli.main` in process (runs through the ``cli``
fixture, with the session's reused gate); the page is read back with the standard library's
HTML parser, so the assertions are on elements and text, not on the template's spelling.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.cli import main
from cosmo_runner.errors import OutputWriteError
from tests.conftest import EXAMPLE, NOT_THIS_PYTHON, ROOT, InProcess, load_log

CASES = ROOT / "tests" / "cases"


class Page(HTMLParser):
    """Every start tag with its attributes, the text outside <style>, and section order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.chunks: list[str] = []
        self._in_style = False
        self.feed(text)
        self.close()
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.chunks.append(data)

    def named(self, tag: str) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def ids(self) -> list[str]:
        return [attrs["id"] for _, attrs in self.tags if "id" in attrs]


def read_page(run_dir: Path) -> Page:
    return Page((run_dir / "report.html").read_text(encoding="utf-8"))


def assert_self_contained(page: Page, html: str) -> None:
    """Nothing is loaded at view time: no script, no stylesheet link, no URL to fetch."""
    assert page.named("script") == []
    assert page.named("link") == []
    assert page.named("iframe") == [] and page.named("object") == []
    for _, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (name, value)  # no event handler attributes
            if name in ("src", "href"):
                assert value.startswith(("data:image/svg+xml;base64,", "#")), value
    assert "@import" not in html and "url(" not in html


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_bcg_report_holds_the_run(bcg_run: Path) -> None:
    log = load_log(bcg_run)  # schema-valid, with the report's record
    assert log["report"] == {"path": "report.html", "error": None}
    assert log["timings"]["report"] >= 0
    html = (bcg_run / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert_self_contained(page, html)
    text = page.text
    # status, exit code, spec name
    assert "bcg-vaccine" in page.named("title")[0:1] or "bcg-vaccine" in text
    assert "succeeded exit code 0" in text
    assert log["run_id"] in text
    assert "What went wrong" not in text and "failure" not in page.ids()
    # validator findings
    assert "bcg-table" in text and "passed" in text
    # per analysis: its section, the numbers of its results file, its plots
    for record in log["analyses"]:
        assert f"analysis-{record['id']}" in page.ids()
        result = json.loads((bcg_run / record["result"]["path"]).read_text())
        assert f"{result['estimate']:.4f}" in text
        assert f"{result['tau2']:.4f}" in text
        assert f"{result['I2']:.4f}" in text
        assert f"{result['transformed']['estimate']:.4f}" in text  # back-transformed
    reml = json.loads((bcg_run / "results" / "bcg-reml.json").read_text())
    assert f"{reml['tau2_ci']['lb']:.4f}" in text  # Q-profile CI
    assert f"{reml['egger']['statistic']:.4f}" in text  # Egger
    assert "Leave-one-out (13 fits)" in text
    ablat = json.loads((bcg_run / "results" / "bcg-ablat.json").read_text())
    slope = next(c for c in ablat["coefficients"] if c["term"] == "ablat")
    assert "Coefficients" in text and f"{slope['estimate']:.4f}" in text
    # environment and gate checks
    environment = log["environment"]
    assert environment["env_id"] in text
    assert environment["observed"]["python"]["version_short"] in text
    assert environment["observed"]["libc"] in text
    assert f"Packages ({len(environment['observed']['packages'])})" in text
    for check in log["smoke"]["checks"]:
        assert check["name"] in text
    # inputs and outputs with sha256; how to reproduce
    for record in log["inputs"] + log["outputs"]:
        assert record["sha256"] in text
    assert f"cosmo-runner verify {log['out_dir']}" in text


def test_bcg_plots_are_the_runs_svg_files(bcg_run: Path) -> None:
    page = read_page(bcg_run)
    images = page.named("img")
    svgs = sorted((bcg_run / "plots").glob("*.svg"))
    assert len(images) == len(svgs) == 4
    embedded = sorted(base64.b64decode(img["src"].split(",", 1)[1]) for img in images)
    assert embedded == sorted(p.read_bytes() for p in svgs)  # drawn once, by the run
    figures = [attrs["id"] for attrs in page.named("figure")]
    assert figures == [
        "plot-bcg-reml-forest",
        "plot-bcg-reml-funnel",
        "plot-bcg-dl-forest",
        "plot-bcg-dl-funnel",
    ]


def test_report_command_rewrites_the_same_page(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    written = (copy / "report.html").read_bytes()
    (copy / "report.html").unlink()
    code, out, err = run(["report", str(copy)], capsys)
    assert (code, err) == (0, "")
    assert out == f"wrote {copy / 'report.html'}\n"
    assert (copy / "report.html").read_bytes() == written  # deterministic: no generated-at


def test_report_command_does_not_import_matplotlib(bcg_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    code = (
        "import sys\nfrom cosmo_runner.cli import main\n"
        f"assert main(['report', {str(copy)!r}]) == 0\n"
        "assert 'matplotlib' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(2)">',
    "</td></tr></table><h1>broken</h1>",
    "<!-- comment --> & &amp; 'single' \"double\"",
    "--> ]]> <style>body{display:none}</style>",
    "</script><svg onload=alert(3)>",
]


def test_html_in_labels_and_names_shows_as_text(tmp_path: Path, cli: InProcess) -> None:
    job = tmp_path / "job"
    shutil.copytree(EXAMPLE, job)
    rows = list(csv.DictReader(io.StringIO((job / "bcg.csv").read_text(encoding="utf-8"))))
    for row, label in zip(rows, HOSTILE, strict=False):
        row["study"] = label
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (job / "bcg.csv").write_text(buffer.getvalue(), encoding="utf-8")
    spec = json.loads((job / "spec.json").read_text(encoding="utf-8"))
    spec["name"] = "<b>bold</b> & <script>x()</script>"
    spec["analyses"] = spec["analyses"][:1]
    (job / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    out = tmp_path / "out"
    assert cli("run", job / "spec.json", "--out", out).returncode == 0
    html = (out / "report.html").read_text(encoding="utf-8")
    page = Page(html)
    assert_self_contained(page, html)
    assert [tag for tag, _ in page.tags if tag in ("b", "h1", "svg")] == ["h1"]  # the title
    assert len(page.named("table")) == len(html.split("<table")) - 1
    for label in HOSTILE:
        assert label in page.text  # the study table and leave-one-out, as text
    assert spec["name"] in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _case(name: str, tmp_path: Path) -> Path:
    case = tmp_path / name
    shutil.copytree(CASES / name, case)
    return case


def _section_order(page: Page) -> list[str]:
    return [i for i in page.ids() if i in ("summary", "failure", "validators", "environment")]


@pytest.mark.parametrize(
    ("case", "code", "shown"),
    [
        ("negative-count", 4, "-119 must be a non-negative count"),
        ("analysis-fails", 5, "analysis 'gen': "),
        ("pin-mismatch", 2, "sha256"),
    ],
)
def test_a_failed_run_shows_the_failure_first(
    case: str, code: int, shown: str, tmp_path: Path, cli: InProcess
) -> None:
    spec = _case(case, tmp_path) / "spec.json"
    out = tmp_path / "out"
    assert cli("run", spec, "--out", out).returncode == code
    log = load_log(out)
    assert log["report"] == {"path": "report.html", "error": None}
    page = read_page(out)
    assert _section_order(page) == ["summary", "failure", "validators", "environment"]
    assert f"failed exit code {code}" in page.text
    failure = page.text.split("What went wrong", 1)[1].split("Validators", 1)[0]
    assert log["error"]["message"] in failure
    assert shown in failure


def test_a_failed_gate_lists_its_checks_first(tmp_path: Path, cli: InProcess) -> None:
    manifest = json.loads((ROOT / "environment.manifest.json").read_text(encoding="utf-8"))
    manifest["python"]["specifier"] = NOT_THIS_PYTHON
    manifest["lock"]["path"] = str(ROOT / "requirements.lock.txt")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["run", EXAMPLE / "spec.json", "--out", out, "--manifest", tmp_path / "manifest.json"]
    assert cli(*argv).returncode == 3
    log = load_log(out)
    page = read_page(out)
    failure = page.text.split("What went wrong", 1)[1].split("Validators", 1)[0]
    assert "Failed environment checks" in failure
    failed = [c for c in log["smoke"]["checks"] if c["status"] == "error"]
    assert failed and all(c["message"] in failure for c in failed)
    assert "gate FAILED" in page.text


def _fail_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    from cosmo_runner.share import report

    def full_disk(path: Path, data: bytes) -> None:
        raise OutputWriteError(str(path), "no space left on device")

    monkeypatch.setattr(report, "write_atomic", full_disk)


def test_a_report_that_cannot_be_written_fails_a_good_run_with_5(
    bcg_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: InProcess,
) -> None:
    _fail_writes(monkeypatch)
    spec = tmp_path / "spec.json"
    spec_doc = json.loads((EXAMPLE / "spec.json").read_text(encoding="utf-8"))
    spec_doc["inputs"]["bcg"]["path"] = str(EXAMPLE / "bcg.csv")
    spec_doc["analyses"] = spec_doc["analyses"][:1]
    spec.write_text(json.dumps(spec_doc), encoding="utf-8")
    out = tmp_path / "out"
    proc = cli("run", spec, "--out", out)
    code, err = proc.returncode, proc.stderr
    message = f"cannot write {out.resolve() / 'report.html'}: no space left on device"
    assert code == 5
    assert err == f"cosmo-runner: error: {message}\n"
    log = load_log(out)  # the final log is complete and says why
    assert (log["status"], log["exit_code"]) == ("failed", 5)
    assert log["error"]["type"] == "OutputWriteError" and log["error"]["message"] == message
    assert log["report"] == {
        "path": "report.html",
        "error": {"type": "OutputWriteError", "message": message},
    }
    assert [a["status"] for a in log["analyses"]] == ["succeeded"]  # the results are kept
    assert (out / "results" / "bcg-reml.json").is_file()
    assert not (out / "report.html").exists()


def test_a_report_that_cannot_be_written_keeps_a_failed_runs_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: InProcess
) -> None:
    _fail_writes(monkeypatch)
    spec = _case("negative-count", tmp_path) / "spec.json"
    out = tmp_path / "out"
    proc = cli("run", spec, "--out", out)
    code, err = proc.returncode, proc.stderr
    assert code == 4
    log = load_log(out)
    assert log["error"]["type"] == "ValidationFailed" and log["exit_code"] == 4
    assert log["report"]["error"]["type"] == "OutputWriteError"
    assert "report.html" not in err


def test_a_report_bug_never_loses_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: InProcess
) -> None:
    from cosmo_runner.share import report

    def broken(run_dir: Path, log: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("estimate")

    monkeypatch.setattr(report, "run_context", broken)
    spec = _case("analysis-fails", tmp_path) / "spec.json"
    spec_doc = json.loads(spec.read_text(encoding="utf-8"))
    spec_doc["analyses"] = []  # nothing else fails: the report's bug is the run's error
    spec.write_text(json.dumps(spec_doc), encoding="utf-8")
    out = tmp_path / "out"
    proc = cli("run", spec, "--out", out)
    code, err = proc.returncode, proc.stderr
    message = "internal error in step 'report': KeyError: 'estimate'"
    assert (code, err) == (5, f"cosmo-runner: error: {message}\n")
    log = load_log(out)
    assert log["error"]["message"] == message
    assert "KeyError" in log["error"]["traceback"]
    assert log["report"]["error"] == {"type": "StepError", "message": message}


def test_validate_without_out_writes_no_report(tmp_path: Path, cli: InProcess) -> None:
    assert cli("validate", EXAMPLE / "spec.json", cwd=tmp_path).returncode == 0
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- report RUN


def test_report_command_refuses_what_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert run(["report", str(missing)], capsys) == (
        2,
        "",
        f"cosmo-runner: error: {missing}: not a run folder (not a directory)\n",
    )
    assert run(["report", str(tmp_path)], capsys) == (
        2,
        "",
        f"cosmo-runner: error: {tmp_path}: not a run folder (no run_log.json or batch_log.json)\n",
    )
    code, _, err = run(["report"], capsys)
    assert code == 2 and err.startswith("cosmo-runner: error: ") and err.count("\n") == 1
    assert run(["report", str(tmp_path), "--frobnicate"], capsys)[0] == 2
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[1, 2]", "not a cosmo-runner run log (a JSON array, not an object)"),
        ('{"run_id": "x"', "not valid JSON"),
        ('{"run_id": 5, "status": "failed"}', "/run_id: 5 is not of type 'string'"),
        ('{"status": "failed"}', "'run_id' is a required property"),
        (
            '{"run_id": "20261201T000000Z-ab", "status": "failed", "analyses": [{"id": 3}]}',
            "/analyses/0",
        ),
    ],
)
def test_report_command_names_the_field_of_a_malformed_log(
    content: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run_log.json").write_text(content, encoding="utf-8")
    code, out, err = run(["report", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    lines = err.splitlines()  # one line per problem, each naming the file
    assert lines and all(
        line.startswith(f"cosmo-runner: error: {tmp_path / 'run_log.json'}: ") for line in lines
    )
    assert problem in err
    assert not (tmp_path / "report.html").exists()


def test_report_command_write_failure_is_5(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    (copy / "report.html").unlink()
    (copy / "report.html").mkdir()  # os.replace cannot put a file there, even as root
    code, out, err = run(["report", str(copy)], capsys)
    assert (code, out) == (5, "")
    assert err == f"cosmo-runner: error: cannot write {copy / 'report.html'}: is a directory\n"


def test_report_shows_only_files_that_match_the_log(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    (copy / "plots" / "bcg-dl.funnel.svg").write_text("<svg>edited</svg>", encoding="utf-8")
    (copy / "results" / "bcg-dl.json").unlink()
    log = json.loads((copy / "run_log.json").read_text(encoding="utf-8"))
    plots = log["analyses"][0]["plots"]
    forest = next(p for p in plots if p["path"] == "plots/bcg-reml.forest.svg")
    forest["path"] = "../../../etc/passwd.svg"  # a hand-edited log reads nothing outside
    (copy / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    assert run(["report", str(copy)], capsys)[0] == 0
    page = read_page(copy)
    text = page.text
    assert "plots/bcg-dl.funnel.svg: changed since the run" in text
    assert "results/bcg-dl.json: file not found" in text
    assert "../../../etc/passwd.svg: outside the run folder, not read" in text
    assert "Shown from the run log's summary" in text  # bcg-dl still has its numbers
    assert f"{log['analyses'][1]['summary']['estimate']:.4f}" in text
    shown = [attrs["id"] for attrs in page.named("figure")]
    assert shown == ["plot-bcg-reml-funnel", "plot-bcg-dl-forest"]


def test_result_blocks_the_page_does_not_know_are_listed(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A newer analysis' diagnostics (a rank test, cumulative fits) still show, escaped."""
    import hashlib

    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    path = copy / "results" / "bcg-reml.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    result["rank_test"] = {"tau": -0.1, "pval": 0.7}
    result["cumulative"] = [{"label": "<i>first</i>", "estimate": 0.1}, {"label": "b", "k": 2}]
    result["nested"] = {"deep": {"x": 1}}  # not flat: not shown
    path.write_text(json.dumps(result), encoding="utf-8")
    log = json.loads((copy / "run_log.json").read_text(encoding="utf-8"))
    log["analyses"][0]["result"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (copy / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    assert run(["report", str(copy)], capsys)[0] == 0
    html = (copy / "report.html").read_text(encoding="utf-8")
    text = Page(html).text
    assert "More results" in text
    assert "rank_test pval 0.7000 · tau -0.1000" in text
    assert "cumulative (2 rows)" in text and "<i>first</i>" in text and "<i>" not in html
    assert "nested" not in text
    # one such heading per analysis: every result now has the funnel-asymmetry and case
    # diagnostics (rank_test, cumulative, influence ...), which the page lists there too
    assert text.count("More results") == len(log["analyses"])
