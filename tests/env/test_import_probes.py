"""Fresh-interpreter import probes: the run's isolation, a timeout, whole messages.

Most cases drive :class:`ImportProbes` in process with a module on ``PYTHONPATH`` (which the
probe inherits, as a run would); the end-to-end hang (``smoke`` and ``run`` in a venv copy,
where the hanging module lies inside site-packages so that only the probe can catch it) is
tests/env/test_perturbations.py's ``hanging-import``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cosmo_runner.env import smoke
from cosmo_runner.env.smoke import ImportProbes, isolation_flags, one_line
from tests.conftest import ROOT, InProcess, load_log, run_cli
from tests.envcopy import ONE_AT_A_TIME, VenvCopy


def probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modules: dict[str, str], timeout: float = 60
) -> dict[str, smoke.Check]:
    """Write ``modules`` ({name: source}) to a directory on PYTHONPATH and probe them."""
    site = tmp_path / "mods"
    site.mkdir()
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", str(site))
    checks = ImportProbes(list(modules), "error", timeout).collect()
    return {c.name.removeprefix("import:"): c for c in checks}


def test_a_clean_import_is_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checks = probe(tmp_path, monkeypatch, {"fine": "X = 1\n"})
    assert checks["fine"].status == "ok"
    assert checks["fine"].message == "import fine"


def test_multi_line_message_is_shown_whole_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = 'raise ImportError("\\n\\nfirst line\\n  second line\\n\\nOriginal error was: x")\n'
    checks = probe(tmp_path, monkeypatch, {"multi": source})
    assert checks["multi"].status == "error"
    assert checks["multi"].message == (
        "import multi failed: ImportError: first line second line Original error was: x"
    )


def test_a_long_message_keeps_head_and_tail_within_the_cap() -> None:
    text = "ImportError: START " + "filler " * 300 + "Original error was: THE CAUSE"
    shown = one_line(text)
    assert len(shown) == smoke.MESSAGE_LIMIT
    assert shown.startswith("ImportError: START filler")
    assert shown.endswith("Original error was: THE CAUSE")
    assert " ... " in shown and "\n" not in shown
    assert one_line("short\nmessage") == "short message"


def test_a_hanging_import_is_killed_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids = tmp_path / "pids"
    # The import starts a grandchild and waits for it: killing only the probe would leave the
    # grandchild holding the pipes open, so the whole process group must go.
    hang = (
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "child.wait()\n"
    )
    # the timeout is the test's wait: short, since a hang times out however loaded the machine
    checks = probe(tmp_path, monkeypatch, {"hangs": hang, "zz_after": "X = 1\n"}, timeout=2)
    assert checks["hangs"].status == "error"
    assert checks["hangs"].message == (
        "import hangs timed out after 2 s (the import hung; probe killed; "
        "set imports.timeout_seconds in the manifest to allow longer)"
    )
    for pid in map(int, pids.read_text().split()):
        # SIGKILL is delivered at once but a loaded machine may take a moment to finish it
        for _ in range(300):
            if not running(pid):
                break
            time.sleep(0.1)
        assert not running(pid), pid


def running(pid: int) -> bool:
    """The process exists and is not a zombie (killed, waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_modules_after_a_hang_in_the_same_probe_are_not_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one interpreter: both in one probe
    site = tmp_path / "mods"
    site.mkdir()
    (site / "hangs.py").write_text("import time\ntime.sleep(600)\n")
    (site / "later.py").write_text("X = 1\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    checks = {c.name: c for c in ImportProbes(["hangs", "later"], "error", 2).collect()}
    assert checks["import:hangs"].status == "error"
    assert checks["import:later"].status == "error"
    assert checks["import:later"].message == (
        "import later not checked: the probe timed out importing hangs"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            "import dies failed: the probe interpreter was killed by SIGKILL",
        ),
        (
            "import os, sys\nsys.stderr.write('bye\\n'); sys.stderr.flush()\nos._exit(7)\n",
            "import dies failed: the probe interpreter exited with code 7 before reporting: bye",
        ),
        ("raise SystemExit(4)\n", "import dies failed: SystemExit: 4"),
        ("raise KeyboardInterrupt\n", "import dies failed: KeyboardInterrupt"),
    ],
    ids=["sigkill", "os-exit", "system-exit", "keyboard-interrupt"],
)
def test_a_probe_that_dies_names_how(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    checks = probe(tmp_path, monkeypatch, {"dies": source})
    assert checks["dies"].status == "error"
    assert checks["dies"].message == expected


def test_output_of_imported_code_cannot_garble_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # one interpreter: broken, then noisy
    site = tmp_path / "mods"
    site.mkdir()
    (site / "broken.py").write_text("raise ImportError('really broken')\n")
    (site / "noisy.py").write_text(
        "import os\n"
        'print(\'{"done": "broken", "error": null}\', flush=True)\n'
        "os.write(1, b'raw bytes on fd 1\\n')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    checks = {c.name: c for c in ImportProbes(["broken", "noisy"], "error").collect()}
    assert checks["import:broken"].message == "import broken failed: ImportError: really broken"
    assert checks["import:noisy"].status == "ok"


class _Flags(SimpleNamespace):
    pass


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"isolated": 0, "ignore_environment": 0, "no_user_site": 0}, ["-P"]),
        ({"isolated": 1, "ignore_environment": 1, "no_user_site": 1}, ["-P", "-I"]),
        ({"isolated": 0, "ignore_environment": 1, "no_user_site": 0}, ["-P", "-E"]),
        ({"isolated": 0, "ignore_environment": 0, "no_user_site": 1}, ["-P", "-s"]),
        ({"isolated": 0, "ignore_environment": 1, "no_user_site": 1}, ["-P", "-E", "-s"]),
    ],
)
def test_isolation_flags_follow_the_parent(
    monkeypatch: pytest.MonkeyPatch, flags: dict[str, int], expected: list[str]
) -> None:
    monkeypatch.setattr(sys, "flags", _Flags(**flags))
    assert isolation_flags() == expected


def test_the_probe_ignores_pythonpath_when_the_run_does(tmp_path: Path) -> None:
    """`python -E`: the run never sees PYTHONPATH, so a shadow there must not fail the gate."""
    shadow = tmp_path / "shadow"
    (shadow / "numpy").mkdir(parents=True)
    (shadow / "numpy" / "__init__.py").write_text("raise ImportError('shadow numpy')\n")
    clean = tmp_path / "clean"
    clean.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "COSMO_MANIFEST"}
    env["PYTHONPATH"] = str(shadow)
    proc = subprocess.run(
        [sys.executable, "-E", "-m", "cosmo_runner", "smoke"],
        cwd=clean,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("smoke", cwd=clean, env={"PYTHONPATH": str(shadow)})
    assert proc.returncode == 3
    assert "  ERROR import scipy.optimize failed: ImportError: shadow numpy\n" in proc.stdout


def test_run_and_validate_probe_no_import_a_locked_distribution_vouches_for(
    tmp_path: Path,
    example: Path,
    cli: InProcess,
    this_smoke_json: subprocess.CompletedProcess[str],
) -> None:
    proc = cli("validate", example, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = load_log(tmp_path / "out")["smoke"]["checks"]
    (summary,) = [c for c in checks if c["name"] == "imports"]
    required = json.loads((ROOT / "environment.manifest.json").read_text())["imports"]["modules"]
    assert summary["observed"] == {"probed": []}
    assert summary["message"] == (
        f"{len(required)} of {len(required)} required imports vouched for in-process by their "
        "origin and locked distribution (not probed; 'cosmo-runner smoke' imports them all); "
        "0 probed in fresh interpreters"
    )
    assert not [c for c in checks if c["name"].startswith("import:")]
    smoke_checks = json.loads(this_smoke_json.stdout)["smoke"]["checks"]
    assert [c["name"] for c in smoke_checks if c["name"].startswith("import:")] == [
        f"import:{m}" for m in required
    ]


@pytest.mark.slow
@ONE_AT_A_TIME
def test_numpys_multi_line_import_error_is_shown_whole(tmp_path: Path) -> None:
    copy = VenvCopy(tmp_path / "venv")
    (extension,) = (copy.site_packages / "numpy" / "_core").glob("_multiarray_umath.*")
    extension.unlink()
    proc = copy.run("-m", "cosmo_runner", "smoke", cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("  ERROR import numpy ")]
    prefix = "  ERROR import numpy failed: "
    assert line.startswith(
        prefix + "ImportError: IMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE! "
        "Importing the numpy C-extensions failed."
    )
    assert line.endswith("Original error was: No module named 'numpy._core._multiarray_umath'")
    assert len(line) == len(prefix) + smoke.MESSAGE_LIMIT
