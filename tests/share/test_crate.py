"""``export RUN --format ro-crate``: a Process Run Crate, reloaded with ``rocrate`` and checked
for the terms the profile requires (roc-validator needs the network for its profiles)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from rocrate.rocrate import ROCrate

from cosmo_runner.cli import main
from cosmo_runner.share.crate import PROFILE
from tests.conftest import InProcess

STATUS = "http://schema.org/CompletedActionStatus"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def export(run_dir: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    argv = ["export", str(run_dir), "--format", "ro-crate", "--out", str(out), *extra]
    assert run(argv, capsys) == (0, f"wrote {out}\n", "")


def ref(value: Any) -> str:
    """An entity reference as rocrate returns it: an entity, or a URI it does not hold."""
    if isinstance(value, str):
        return value
    return str(value["@id"]) if isinstance(value, dict) else str(value.id)


def ids(value: Any) -> list[str]:
    return [ref(entity) for entity in (value if isinstance(value, list) else [value])]


def check_crate(crate: ROCrate, files: Path, log: dict[str, Any]) -> Any:
    """The terms the Process Run Crate profile requires, and every File's sha256 and size."""
    assert PROFILE in ids(crate.root_dataset["conformsTo"])
    (action,) = crate.get_by_type("CreateAction")
    assert ids(crate.root_dataset["mentions"]) == [action.id]
    assert action["startTime"] == log["started_at"]
    assert action["endTime"] == log["finished_at"]
    instrument = action["instrument"]
    assert instrument.type == "SoftwareApplication" and instrument["name"] == "cosmo-runner"
    assert instrument["softwareVersion"] == log["environment"]["observed"]["runner"]["version"]
    (env_id,) = (
        instrument["additionalProperty"]
        if isinstance(instrument["additionalProperty"], list)
        else [instrument["additionalProperty"]]
    )
    assert (env_id["name"], env_id["value"]) == ("env_id", log["environment"]["env_id"])
    objects = ids(action["object"])
    inputs = [f"inputs/{i['id']}/{Path(i['resolved']).name}" for i in log["inputs"]]
    assert objects == [*inputs, "spec.json"]
    results = ids(action["result"])
    assert results == [o["path"] for o in log["outputs"]] + ["report.html"]
    assert ids(action["subjectOf"]) == ["run_log.json"]
    sbom = instrument["subjectOf"]
    assert sbom.id == "sbom.cdx.json" and sbom["about"].id == instrument.id
    text = (files / "sbom.cdx.json").read_text(encoding="utf-8")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    members = objects + results + ["run_log.json", "sbom.cdx.json"]
    assert sorted(ids(crate.root_dataset["hasPart"])) == sorted(members)
    recorded = {o["path"]: o["sha256"] for o in log["outputs"]}
    recorded.update(
        {f"inputs/{i['id']}/{Path(i['resolved']).name}": i["sha256"] for i in log["inputs"]}
    )
    recorded["spec.json"] = log["spec"]["sha256"]
    for member in members:
        entity = crate.get(member)
        assert entity.type == "File"
        data = (files / member).read_bytes()
        assert entity["sha256"] == hashlib.sha256(data).hexdigest()
        assert entity["contentSize"] == str(len(data))
        assert entity["encodingFormat"]
        if member in recorded:
            assert entity["sha256"] == recorded[member]  # the run's bytes, not others
    return action


def test_bcg_crate_directory(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = json.loads((bcg_run / "run_log.json").read_text(encoding="utf-8"))
    out = tmp_path / "crate"
    export(bcg_run, out, capsys)
    action = check_crate(ROCrate(out), out, log)
    assert ref(action["actionStatus"]) == STATUS
    assert "error" not in action
    assert (out / "run_log.json").read_bytes() == (bcg_run / "run_log.json").read_bytes()
    assert list(tmp_path.iterdir()) == [out]  # no temporary sibling left


def test_bcg_crate_zip(bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import zipfile

    log = json.loads((bcg_run / "run_log.json").read_text(encoding="utf-8"))
    out = tmp_path / "bcg-crate.zip"
    export(bcg_run, out, capsys, "--zip")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(unpacked)
    check_crate(ROCrate(out), unpacked, log)  # rocrate reads the zip itself


def test_a_failed_run_is_a_failed_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cli: InProcess
) -> None:
    from tests.conftest import ROOT

    case = tmp_path / "case"
    shutil.copytree(ROOT / "tests" / "cases" / "analysis-fails", case)
    run_dir = tmp_path / "run"
    assert cli("run", case / "spec.json", "--out", run_dir).returncode == 5
    log = json.loads((run_dir / "run_log.json").read_text(encoding="utf-8"))
    out = tmp_path / "crate"
    export(run_dir, out, capsys)
    (action,) = ROCrate(out).get_by_type("CreateAction")
    assert ref(action["actionStatus"]) == "http://schema.org/FailedActionStatus"
    assert action["error"] == log["error"]["message"]
    assert action["description"] == "exit code 5"


def _copy(bcg_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    return copy


def test_changed_or_missing_files_are_refused(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(bcg_run, tmp_path)
    plot = copy / "plots" / "bcg-reml.forest.svg"
    plot.write_bytes(plot.read_bytes() + b" ")
    out = tmp_path / "crate"
    argv = ["export", str(copy), "--format", "ro-crate", "--out", str(out)]
    code, stdout, err = run(argv, capsys)
    assert (code, stdout) == (2, "")
    assert err.startswith(f"cosmo-runner: error: output {plot.resolve()}: changed since the run")
    assert err.count("\n") == 1
    plot.unlink()
    code, _, err = run(argv, capsys)
    assert code == 2
    assert err == (
        f"cosmo-runner: error: output {plot.resolve()}: file not found; the crate cannot hold it\n"
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_input_changed_since_the_run_is_refused(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(bcg_run, tmp_path)
    edited = tmp_path / "bcg.csv"
    edited.write_text("study,yi,vi\n", encoding="utf-8")
    log = json.loads((copy / "run_log.json").read_text(encoding="utf-8"))
    log["inputs"][0]["resolved"] = str(edited)
    (copy / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    code, _, err = run(
        ["export", str(copy), "--format", "ro-crate", "--out", str(tmp_path / "c")], capsys
    )
    assert code == 2
    assert err.startswith(f"cosmo-runner: error: input 'bcg': {edited}: changed since the run")


def test_export_refusals_and_write_failures(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep", encoding="utf-8")
    base = ["export", str(bcg_run), "--format", "ro-crate", "--out"]
    assert run([*base, str(full)], capsys) == (
        2,
        "",
        f"cosmo-runner: error: {full}: exists and is not an empty directory; "
        "refusing to overwrite\n",
    )
    assert (full / "x").read_text(encoding="utf-8") == "keep"
    assert run([*base, str(full), "--zip"], capsys) == (
        2,
        "",
        f"cosmo-runner: error: {full}: is a directory; --zip writes a file\n",
    )
    code, _, err = run(
        ["export", str(bcg_run), "--format", "cyclonedx", "--out", str(tmp_path / "s"), "--zip"],
        capsys,
    )
    assert (code, err) == (2, "cosmo-runner: error: --zip applies to --format ro-crate only\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    code, _, err = run([*base, str(blocker / "crate")], capsys)
    assert code == 5
    assert (
        err
        == f"cosmo-runner: error: cannot write {blocker / 'crate'}: {blocker} is not a directory\n"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    export(bcg_run, empty, capsys)  # an empty directory is used
    assert (empty / "ro-crate-metadata.json").is_file()


def test_a_running_run_is_not_exported(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _copy(bcg_run, tmp_path)
    log = json.loads((copy / "run_log.json").read_text(encoding="utf-8"))
    log["status"] = "running"
    (copy / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    code, _, err = run(
        ["export", str(copy), "--format", "ro-crate", "--out", str(tmp_path / "c")], capsys
    )
    assert (code, err) == (
        2,
        f"cosmo-runner: error: {copy}: the run is running, not finished; export a finished run\n",
    )
