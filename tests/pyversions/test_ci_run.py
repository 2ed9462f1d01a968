"""``.ci/run`` runs every part, lists what it could not run, and its exit code is the truth.

A copy of .ci/run runs against fakes: ``make`` (``dev`` builds a venv whose python is this
interpreter and whose pytest exits as told; ``test`` exits as told), ``pyenv`` (the versions
it is told to have), a Docker engine and a Slurm that answer unless told not to (then
``make docker-up`` / ``slurm-up`` exit as told), and R. Nothing real is built or started.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pyversions.conftest import SUPPORTED, THIS

OTHERS = [m for m in SUPPORTED if m != THIS]
# What the other Pythons run: neither the image nor the shared cluster, nor the replay.
OTHER_MARKERS = "not docker and not slurm and not pyversions"


def executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The files .ci/run reads, copied; fakes for what it starts."""
    repo = tmp_path / "repo"
    for rel in (".ci/run", "scripts/find_python.sh", "scripts/pyversions.py", "pyproject.toml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    # The services answer unless FAKE_NO_DOCKER / FAKE_NO_SLURM is set.
    executable(
        repo / "scripts" / "docker" / "engine_answers.sh",
        '#!/bin/sh\n[ -z "${FAKE_NO_DOCKER:-}" ]\n',
    )
    executable(
        repo / "scripts" / "slurm" / "cluster_answers.sh",
        '#!/bin/sh\n[ -z "${FAKE_NO_SLURM:-}" ]\n',
    )
    bin_dir = tmp_path / "bin"
    executable(bin_dir / "Rscript", "#!/bin/sh\nexit 0\n")
    # make dev [PYTHON=p VENV=v]: a venv whose python is this one and whose pytest exits
    # $FAKE_PYTEST_<minor>; make test exits $FAKE_MAKE_TEST. Every call is logged.
    executable(
        bin_dir / "make",
        f"""#!/bin/bash
echo "make $*" >>"$FAKE_LOG"
venv=.venv
for arg in "$@"; do case "$arg" in VENV=*) venv="${{arg#VENV=}}" ;; esac; done
case " $* " in
    *" dev "*)
        mkdir -p "$venv/bin"
        printf '#!/bin/sh\\nexec {sys.executable} "$@"\\n' >"$venv/bin/python"
        minor="${{venv#.venv-}}"
        var="FAKE_PYTEST_${{minor//./_}}"
        printf '#!/bin/sh\\necho "pytest %s $*" >>"$FAKE_LOG"\\necho "fake pytest"; exit %s\\n' \\
            "$minor" "${{!var:-0}}" >"$venv/bin/pytest"
        chmod +x "$venv/bin/python" "$venv/bin/pytest" ;;
    *" test "*) exit "${{FAKE_MAKE_TEST:-0}}" ;;
    *" docker-up "*) exit "${{FAKE_DOCKER_UP:-0}}" ;;
    *" slurm-up "*) exit "${{FAKE_SLURM_UP:-0}}" ;;
esac
""",
    )
    return repo


def fake_pyenv(tmp_path: Path, versions: list[str]) -> None:
    executable(
        tmp_path / "bin" / "pyenv",
        f"""#!/bin/sh
case "$1" in
    versions) printf '%s\\n' {" ".join(versions)} ;;
    which) echo "{tmp_path}/pythons/$PYENV_VERSION/bin/python3" ;;
esac
""",
    )
    for version in versions:
        executable(tmp_path / "pythons" / version / "bin" / "python3", "#!/bin/sh\n")


def ci_run(repo: Path, ci: str = "true", **fakes: str) -> tuple[int, list[str], str]:
    """(exit code, the '.ci/run:' lines, the fake log)."""
    log = repo.parent / "calls.log"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYENV", "FAKE_", "MAKE"))}
    env.update(fakes)
    env.update(CI=ci, FAKE_LOG=str(log), PATH=f"{repo.parent / 'bin'}:/usr/bin:/bin")
    proc = subprocess.run(
        [str(repo / ".ci" / "run")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith(".ci/run: ")]
    return proc.returncode, lines, log.read_text()


def summary(lines: list[str]) -> list[str]:
    """The summary lines, times dropped: '.ci/run: Python 3.12: ... exited 0'."""
    return [line.rsplit(" (", 1)[0] for line in lines if line.startswith(".ci/run: Python ")]


def suite(minor: str, code: int) -> str:
    return f".ci/run: Python {minor}: pytest -m '{OTHER_MARKERS}' exited {code}"


def test_every_part_passes(tmp_path: Path, repo: Path) -> None:
    fake_pyenv(tmp_path, ["3.10.13", "3.11.7", "3.12.1", "3.13.0"])
    code, lines, calls = ci_run(repo)
    assert code == 0, lines
    assert lines[-1] == ".ci/run: all parts passed"
    parts = summary(lines)
    assert f".ci/run: Python {THIS}: make test exited 0" in parts
    for minor in OTHERS:
        assert suite(minor, 0) in parts
        python = (
            tmp_path / "pythons" / {"3.11": "3.11.7", "3.12": "3.12.1", "3.13": "3.13.0"}[minor]
        )
        assert (
            f"make --no-print-directory dev PYTHON={python}/bin/python3 VENV=.venv-{minor}" in calls
        )
        assert (
            f"pytest {minor} -q -p no:cacheprovider --basetemp=" in calls
            and f"-m {OTHER_MARKERS}" in calls
        )
    # every venv is built before make test starts (the cross-version test uses them)
    assert calls.index("make --no-print-directory test") > max(
        calls.index(f"VENV=.venv-{m}") for m in OTHERS
    )
    # the engine and the cluster answered: neither is started nor stopped
    assert not any(f"-{step}" in calls for step in ("up", "down"))


def test_services_that_do_not_answer_are_started_then_stopped(repo: Path) -> None:
    code, lines, calls = ci_run(repo, FAKE_NO_DOCKER="1", FAKE_NO_SLURM="1")
    assert code == 0, lines
    made = [c.removeprefix("make --no-print-directory ") for c in calls.splitlines()]
    assert made[:2] == ["docker-up", "slurm-up"]
    assert made[-2:] == ["docker-down", "slurm-down"]
    assert made.index("test") < made.index("docker-down")


@pytest.mark.parametrize("service", ["docker", "slurm"])
def test_a_service_that_cannot_start_stops_the_run_and_what_started(
    repo: Path, service: str
) -> None:
    code, lines, calls = ci_run(
        repo, FAKE_NO_DOCKER="1", FAKE_NO_SLURM="1", **{f"FAKE_{service.upper()}_UP": "1"}
    )
    assert code == 1
    assert lines[-1] == f".ci/run: make {service}-up failed"
    made = [c.removeprefix("make --no-print-directory ") for c in calls.splitlines()]
    assert "test" not in made
    # what was started (or tried) is stopped again; what never started is not stopped
    if service == "docker":
        assert made == ["docker-up", "docker-down"]
    else:
        assert made == ["docker-up", "slurm-up", "docker-down", "slurm-down"]


def test_a_failing_other_python_fails_the_run_and_its_log_is_shown(
    tmp_path: Path, repo: Path
) -> None:
    fake_pyenv(tmp_path, ["3.11.7", "3.12.1", "3.13.0"])
    failing = OTHERS[-1]
    code, lines, _ = ci_run(repo, **{f"FAKE_PYTEST_{failing.replace('.', '_')}": "1"})
    assert code == 1
    assert suite(failing, 1) in summary(lines)
    assert lines[-1] == ".ci/run: FAILED"


def test_a_failing_make_test_gives_its_own_exit_code(tmp_path: Path, repo: Path) -> None:
    fake_pyenv(tmp_path, ["3.11.7", "3.12.1", "3.13.0"])
    code, lines, _ = ci_run(repo, FAKE_MAKE_TEST="2")
    assert code == 2
    assert f".ci/run: Python {THIS}: make test exited 2" in summary(lines)
    assert all(suite(m, 0) in summary(lines) for m in OTHERS)  # the others still ran


@pytest.mark.parametrize(("ci", "expected_code"), [("true", 1), ("false", 0)])
def test_pyenv_lacking_a_version_fails_only_in_ci(
    tmp_path: Path, repo: Path, ci: str, expected_code: int
) -> None:
    missing = OTHERS[-1]
    fake_pyenv(tmp_path, [v for v in ("3.11.7", "3.12.1", "3.13.0") if not v.startswith(missing)])
    code, lines, calls = ci_run(repo, ci=ci)
    assert code == expected_code, lines
    verdict = "FAILED" if ci == "true" else "not run"
    [line] = [line for line in lines if line.startswith(f".ci/run: Python {missing}: ")]
    assert line.startswith(
        f".ci/run: Python {missing}: {verdict}, not found: find_python: pyenv has no Python "
        f"{missing} (pyenv versions: "
    )
    assert f"VENV=.venv-{missing}" not in calls


def test_no_pyenv_lists_the_versions_not_run_and_passes(repo: Path) -> None:
    code, lines, _ = ci_run(repo)
    assert code == 0, lines
    for minor in OTHERS:
        assert (
            f".ci/run: Python {minor}: not run, not found: find_python: pyenv not found on "
            f"PATH; Python {minor} not looked for"
        ) in lines
