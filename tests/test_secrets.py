"""Issue 10's Done-when: a run with credentials in its environment (PIP_INDEX_URL,
MY_API_TOKEN, ...) or on its command line leaves no trace of them under ``runs/``, and
neither do ``env snapshot``, ``smoke --json``, ``env diff`` or ``verify`` print them, even
for a log written before redaction existed.

The commands run in process (the ``cli`` fixture, with the credentials in ``os.environ``, where
the snapshot and the gate read them), except the run with a token on its command line: the
redaction takes what to hide from the process's own ``sys.argv`` (and from ``main``'s
``argv``, tested in process at the end), so that run is a real process (forked from the warm
fork server: console-script ``sys.argv``, real descriptors)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE, InProcess, load_log
from tests.forkserver import ForkServer

pytestmark = pytest.mark.slow  # the BCG example run and replayed, one run in a process

CREDENTIALS = {
    "PIP_INDEX_URL": "https://user:s3cr3t-tok@host.example/simple",
    "PIP_EXTRA_INDEX_URL": (
        "https://ci:extra-Tok-9f@h1.example/simple https://x:second-pw-77@h2.example/simple"
    ),
    "PIP_TRUSTED_HOST": "host.example",
    "MY_API_TOKEN": "tok-123-secret",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI-K7MDENG-bPxRfiCY",
    "GITHUB_TOKEN": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "DB_PASSWORD": "pa55-w0rd-xyz",
    "PYTHON_KEYRING_CREDENTIAL": "keyring-cred-0042",
}
ARGV_SECRET = "argv-s3cret-77"
SECRETS = [
    "s3cr3t-tok",
    "extra-Tok-9f",
    "second-pw-77",
    "tok-123-secret",
    "wJalrXUtnFEMI-K7MDENG-bPxRfiCY",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "pa55-w0rd-xyz",
    "keyring-cred-0042",
    ARGV_SECRET,
]


def _leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [s for s in SECRETS if s.encode() in data]


def _cli(
    runner: InProcess | ForkServer, *args: str | Path, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``cosmo-runner ARGS`` with the credentials set, in process (``cli``) or in a process
    of its own (``forked``); asserts nothing leaked on stdout or stderr."""
    if isinstance(runner, ForkServer):
        proc = runner.run(*args, cwd=cwd, env=CREDENTIALS)
    else:
        proc = runner(*args, cwd=cwd, env=CREDENTIALS)
    assert _leaks(proc.stdout) == [], proc.stdout
    assert _leaks(proc.stderr) == [], proc.stderr
    return proc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, cli: InProcess, forked: ForkServer) -> Path:
    """runs/ made with credentials set: a succeeded run, its verify replay, a failed run."""
    work = tmp_path_factory.mktemp("secrets")
    shutil.copytree(EXAMPLE, work / "job")
    assert _cli(cli, "run", "job/spec.json", cwd=work).returncode == 0
    [run] = list((work / "runs").iterdir())
    proc = _cli(cli, "verify", run, cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a token on the command line: the spec path is a URL with userinfo (exit 2, logged); in
    # its own process, whose sys.argv holds the token
    bad = f"https://user:{ARGV_SECRET}@host.example/spec.json"
    assert _cli(forked, "run", bad, cwd=work).returncode == 2
    return work


def test_no_secret_anywhere_under_runs(workdir: Path) -> None:
    files = [p for p in (workdir / "runs").rglob("*") if p.is_file()]
    logs = [p for p in files if p.name == "run_log.json"]
    assert len(logs) == 3  # the run, its replay, the failed run
    assert {p.suffix for p in files} >= {".json", ".png", ".svg"}
    leaks = {str(p): _leaks(p.read_bytes()) for p in files}
    assert {p: found for p, found in leaks.items() if found} == {}


def test_the_logs_say_what_was_set_without_the_values(workdir: Path) -> None:
    for log_path in (workdir / "runs").rglob("run_log.json"):
        log = load_log(log_path.parent)  # schema-valid
        env_vars = log["environment"]["observed"]["env_vars"]
        assert env_vars["PIP_INDEX_URL"] == "https://***@host.example/simple"
        assert env_vars["PIP_EXTRA_INDEX_URL"] == (
            "https://***@h1.example/simple https://***@h2.example/simple"
        )
        assert env_vars["PIP_TRUSTED_HOST"] == "host.example"
        assert env_vars["PYTHON_KEYRING_CREDENTIAL"] == "***redacted***"
        assert "MY_API_TOKEN" not in env_vars  # not on the allow-list at all
    failed = [
        load_log(p.parent)
        for p in (workdir / "runs").rglob("run_log.json")
        if load_log(p.parent)["status"] == "failed"
    ]
    [log] = failed
    assert log["exit_code"] == 2
    assert log["command"][2] == "https://***@host.example/spec.json"
    # the path lost its "//" (pathlib): only the userinfo known from argv gives it away
    assert log["error"]["message"].startswith("https:/***redacted***@host.example/spec.json: ")
    assert "not found" in log["error"]["message"]


@pytest.mark.parametrize(
    "args",
    [
        ("env", "snapshot"),
        ("smoke", "--json"),
        ("smoke",),
        ("env", "diff", "RUN", "current"),
        ("env", "diff", "RUN", "current", "--json"),
    ],
    ids=["env-snapshot", "smoke-json", "smoke", "env-diff", "env-diff-json"],
)
def test_no_secret_on_the_terminal(workdir: Path, args: tuple[str, ...], cli: InProcess) -> None:
    [run] = [p for p in (workdir / "runs").iterdir() if ".verify-" not in p.name][:1]
    argv = (str(run) if a == "RUN" else a for a in args)
    proc = _cli(cli, *argv, cwd=workdir)  # asserts no leak
    assert proc.returncode in (0, 1), proc.stderr
    if args == ("env", "snapshot"):
        env_vars = json.loads(proc.stdout)["environment"]["observed"]["env_vars"]
        assert env_vars["PIP_INDEX_URL"] == "https://***@host.example/simple"


def _unredacted_log(workdir: Path) -> Path:
    """A run log as written before redaction existed: raw credentials in its env vars."""
    [source] = [p for p in (workdir / "runs").iterdir() if ".verify-" not in p.name][:1]
    log: dict[str, Any] = json.loads((source / "run_log.json").read_text(encoding="utf-8"))
    log["environment"]["observed"]["env_vars"].update(CREDENTIALS)
    old = workdir / "old-run"
    old.mkdir(exist_ok=True)
    (old / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    return old


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_diffing_an_old_unredacted_log_prints_no_secret(
    workdir: Path, as_json: bool, cli: InProcess
) -> None:
    old = _unredacted_log(workdir)
    clean = cli("env", "snapshot", cwd=workdir)  # no credentials in this environment
    assert clean.returncode == 0
    snap = workdir / "clean.json"
    snap.write_text(clean.stdout, encoding="utf-8")
    # on another machine: this process knows none of the values, only the rules apply
    proc = cli("env", "diff", old, snap, *(["--json"] if as_json else []), cwd=workdir)
    assert proc.returncode == 1
    assert _leaks(proc.stdout + proc.stderr) == [], proc.stdout
    if as_json:
        found = {
            d["key"]: d["a"]
            for d in json.loads(proc.stdout)["differences"]
            if d["section"] == "env_vars"
        }
        assert found["MY_API_TOKEN"] == "***redacted***"
        assert found["PIP_INDEX_URL"] == "https://***@host.example/simple"
    else:
        assert any(
            line.split()[:3] == ["env", "var", "MY_API_TOKEN"] and "***redacted***" in line
            for line in proc.stdout.splitlines()
        ), proc.stdout


def test_a_token_on_an_in_process_command_line_is_hidden_too(
    tmp_path: Path, cli: InProcess
) -> None:
    """``cli.main(argv)`` called by another program: the token is in ``argv``, not in this
    process's ``sys.argv`` (pytest's), and is hidden all the same (redact.command_line)."""
    secret = "inproc-t0ken-42"
    bad = f"https://user:{secret}@host.example/spec.json"
    proc = cli("run", bad, cwd=tmp_path)
    assert proc.returncode == 2
    assert secret not in proc.stdout + proc.stderr
    assert proc.stderr.startswith("cosmo-runner: error: https:/***redacted***@host.example/")
    [run] = list((tmp_path / "runs").iterdir())
    log = load_log(run)
    assert log["command"][2] == "https://***@host.example/spec.json"
    assert log["error"]["message"].startswith("https:/***redacted***@host.example/spec.json: ")
    assert [p for p in run.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()] == []
