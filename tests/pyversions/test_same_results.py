"""The same answers on every supported Python (issue 16).

The BCG example runs under the running interpreter (the reference run); then
``cosmo-runner verify`` of that run, started with each supported minor's interpreter,
replays it there. Every results JSON of the replay must equal the reference's byte for
byte, or else differ only in numeric fields within ``RTOL`` (the failure lists every
differing field); the plots must be byte-identical unless their results are within RTOL.
verify itself must report ``reproduced`` and name the Python difference of its env diff.
Measured on 2026-12-01 (3.11.7, 3.12.1, 3.13.0; x86_64): all 11 outputs byte-identical.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cosmo_runner.triage.verify import compare_json
from tests.conftest import EXAMPLE, ROOT, load_log
from tests.pyversions.conftest import SUPPORTED, THIS, Interpreter

pytestmark = [pytest.mark.pyversions, pytest.mark.slow]

# Accepted |replay - reference| <= RTOL * |reference| per numeric field when a results JSON
# is not byte-identical. One lock means one numpy/scipy/BLAS release on every interpreter;
# only the per-version builds' floating-point operation order could differ, by a few ulp
# (~1e-15) that the REML iterations may amplify. 1e-10 stays far below the 1e-8 agreement
# with metafor that the results are checked to (docs/meta.md), so no reported digit moves.
RTOL = 1e-10
RUN_TIMEOUT = 600  # seconds; a run or a replay takes 5 s idle, up to a minute when loaded


def cosmo(python: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "cosmo_runner", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BCG example run by the running interpreter."""
    work = tmp_path_factory.mktemp("reference")
    shutil.copytree(EXAMPLE, work / "bcg")
    out = work / "run"
    proc = cosmo(Path(sys.executable), "run", work / "bcg" / "spec.json", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def differences(reference: Path, replay: Path) -> tuple[list[str], list[str]]:
    """(problems beyond RTOL or in plots, fields differing within RTOL), one line each."""
    problems: list[str] = []
    within: list[str] = []
    accepted_results: set[str] = set()
    outputs = sorted(p.relative_to(reference) for p in reference.rglob("*") if p.is_file())
    outputs = [p for p in outputs if p.parts[0] in ("results", "plots")]
    assert outputs, f"no outputs in {reference}"
    for rel in outputs:
        if rel.parts[0] != "results":
            continue
        theirs = replay / rel
        if not theirs.is_file():
            problems.append(f"{rel}: missing in the replay")
            continue
        if theirs.read_bytes() == (reference / rel).read_bytes():
            continue
        fields = compare_json(reference / rel, theirs)
        for f in fields:
            line = f"{rel}{f.pointer}: {f.original!r} -> {f.replay!r}"
            ok = f.numeric and (f.abs_diff or 0.0) <= RTOL * abs(float(f.original))
            (within if ok else problems).append(line + ("" if ok else f" (beyond rtol {RTOL})"))
        if all(f.numeric for f in fields) and not any(str(rel) in p for p in problems):
            accepted_results.add(rel.stem)
    for rel in outputs:
        if rel.parts[0] != "plots":
            continue
        theirs = replay / rel
        if not theirs.is_file():
            problems.append(f"{rel}: missing in the replay")
        elif theirs.read_bytes() != (reference / rel).read_bytes():
            analysis = rel.name.split(".", 1)[0]
            if analysis not in accepted_results:
                problems.append(f"{rel}: differs while its result is byte-identical")
    return problems, within


@pytest.mark.parametrize("minor", SUPPORTED)
def test_the_bcg_example_gives_the_same_results_on_every_python(
    reference_run: Path, interpreter: Interpreter, minor: str, tmp_path: Path
) -> None:
    replay = tmp_path / "replay"
    proc = cosmo(interpreter.python, "verify", reference_run, "--out", replay, "--rtol", str(RTOL))
    log = load_log(replay)  # complete and valid against the schema, whatever the outcome
    assert log["status"] == "succeeded", proc.stdout + proc.stderr
    replay_python = log["environment"]["observed"]["python"]["version_short"]
    assert replay_python.startswith(f"{minor}."), replay_python

    problems, within = differences(reference_run, replay)
    assert problems == [], "\n".join(problems + within)

    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if within:  # verify's own verdict agrees, and names the largest relative difference
        assert lines[-1].startswith(f"reproduced within rtol {RTOL}; "), proc.stdout
    else:
        n = sum(1 for p in reference_run.glob("*/*") if p.parent.name in ("results", "plots"))
        assert f"  outputs: {n} of {n} identical by sha256" in lines, proc.stdout
        assert lines[-1] == "reproduced (exit 0)", proc.stdout
    shown = f"  python version: {platform.python_version()} (original) vs {replay_python} (replay)"
    if minor == THIS:
        assert any(line.startswith("  environment: identical; env ids match") for line in lines)
        assert shown not in lines
    else:
        assert any(
            line.startswith("  environment: different: ") and "env ids differ" in line
            for line in lines
        ), proc.stdout
        assert shown in lines, proc.stdout


def test_the_comparison_lists_every_kind_of_difference(reference_run: Path, tmp_path: Path) -> None:
    """The check above can fail: fields beyond and within RTOL, a changed plot, a lost file."""
    import json

    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    assert differences(reference_run, copy) == ([], [])
    results = sorted((copy / "results").glob("*.json"))
    first, second = results[0], results[1]
    doc = json.loads(first.read_text(encoding="utf-8"))
    original = doc["tau2"]
    doc["tau2"] = original * (1 + RTOL / 10)
    first.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    problems, within = differences(reference_run, copy)
    assert problems == []
    assert within == [f"results/{first.name}/tau2: {original!r} -> {doc['tau2']!r}"]

    doc["tau2"] = original * (1 + RTOL * 10)
    first.write_text(json.dumps(doc, indent=2, sort_keys=True), encoding="utf-8")
    plot = sorted((copy / "plots").glob(f"{second.stem}.*"))[0]
    plot.write_bytes(plot.read_bytes() + b"\n")
    second.unlink()
    problems, within = differences(reference_run, copy)
    assert problems == [
        f"results/{first.name}/tau2: {original!r} -> {doc['tau2']!r} (beyond rtol {RTOL})",
        f"results/{second.name}: missing in the replay",
        f"plots/{plot.name}: differs while its result is byte-identical",
    ]
