"""The CLI contract: exit codes, one-line messages, fast --help (no numpy/scipy imported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cosmo_runner import __version__
from cosmo_runner.cli import main
from tests.conftest import ReusedGate, run_cli


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"cosmo-runner {__version__}"


def test_help_lists_commands_and_exit_codes() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for word in ("smoke", "run", "validate", "env", "verify", "exit codes"):
        assert word in proc.stdout


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; from cosmo_runner.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'scipy', 'matplotlib', 'jsonschema') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().endswith("[]")


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["run"], ["smoke", "--bogus"]])
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cosmo-runner: error: ") and err.count("\n") == 1


def test_missing_spec_exit_2_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reused_gate: ReusedGate
) -> None:
    code = main(
        ["run", str(tmp_path / "nope.json"), "--out", str(tmp_path / "out")], gate=reused_gate
    )
    assert code == 2
    assert (
        f"cosmo-runner: error: {tmp_path / 'nope.json'}: file not found" in capsys.readouterr().err
    )


ORDERS = [
    (
        ["run", "s.json", "--out", "o", "--strict", "--debug"],
        ["--debug", "run", "--strict", "--out", "o", "s.json"],
    ),
    (
        ["validate", "s.json", "--debug", "--manifest", "m"],
        ["validate", "--manifest", "m", "--debug", "s.json"],
    ),
    (["smoke", "--json", "--debug"], ["--debug", "smoke", "--json"]),
    (
        ["env", "diff", "a", "b", "--json", "--debug"],
        ["--debug", "env", "diff", "--json", "a", "b"],
    ),
    (["env", "diff", "a", "--json", "b"], ["env", "diff", "--json", "a", "b"]),
    (["env", "snapshot", "--debug"], ["--debug", "env", "snapshot"]),
    (["env", "--debug", "snapshot"], ["--debug", "env", "snapshot"]),
    (
        ["verify", "r", "--input", "x=p", "--rtol", "1e-9", "--json", "--debug"],
        ["--debug", "verify", "--json", "--rtol", "1e-9", "--input", "x=p", "r"],
    ),
]


@pytest.mark.parametrize(("after", "before"), ORDERS, ids=" ".join)
def test_flags_before_or_after_positionals_mean_the_same(
    after: list[str], before: list[str]
) -> None:
    from cosmo_runner.cli import build_parser

    parsed_after = vars(build_parser().parse_args(after))
    parsed_before = vars(build_parser().parse_args(before))
    assert parsed_after == parsed_before
    assert parsed_after.get("debug", False) == ("--debug" in after)


@pytest.mark.parametrize(
    "argv",
    [
        ["env", "diff", "nope-a", "nope-b", "--debug"],
        ["verify", "nope-run", "--debug"],
        ["--debug", "verify", "nope-run"],
    ],
)
def test_debug_after_the_arguments_prints_the_traceback(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cosmo-runner: error: nope-")
    assert "Traceback (most recent call last)" in err


def test_help_returns_0_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    assert "--debug" in capsys.readouterr().out
