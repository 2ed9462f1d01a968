"""CycloneDX SBOMs: ``export RUN --format cyclonedx`` and ``env sbom``, checked with the
library's own JSON validator (offline, on the locked jsonschema)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from cosmo_runner.cli import main
from tests.conftest import ROOT


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def valid_sbom(text: str) -> dict[str, Any]:
    """The SBOM, after the CycloneDX 1.6 strict JSON validator accepted it."""
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document: dict[str, Any] = json.loads(text)
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")
    return document


def properties(item: dict[str, Any], name: str) -> list[str]:
    return [p["value"] for p in item.get("properties", []) if p["name"] == f"cosmo-runner:{name}"]


def lock_hashes_by_pin(lock_text: str) -> dict[str, set[str]]:
    """Independent reading of the lock: ``name==version`` -> its ``--hash`` values."""
    pins: dict[str, set[str]] = {}
    current = None
    for line in lock_text.splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            current = f"{name}=={match[2]}"
            pins.setdefault(current, set())
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            assert current is not None
            pins[current].add(digest)
    return pins


@pytest.fixture
def exported(bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "sbom" / "bcg.cdx.json"  # missing folders are made
    assert run(["export", str(bcg_run), "--format", "cyclonedx", "--out", str(out)], capsys) == (
        0,
        f"wrote {out}\n",
        "",
    )
    return out


def test_bcg_sbom_lists_every_recorded_package(bcg_run: Path, exported: Path) -> None:
    sbom = valid_sbom(exported.read_text(encoding="utf-8"))
    log = json.loads((bcg_run / "run_log.json").read_text(encoding="utf-8"))
    observed = log["environment"]["observed"]
    libraries = [c for c in sbom["components"] if c["type"] == "library"]
    assert sorted(f"{c['name']}=={c['version']}" for c in libraries) == sorted(observed["packages"])
    for component in libraries:
        assert component["purl"] == f"pkg:pypi/{component['name']}@{component['version']}"
        assert component["bom-ref"] == component["purl"]
        assert "hashes" not in component  # pip does not record which allowed file it installed
        assert properties(component, "wheel:tag") == sorted(
            observed["wheel_tags"][component["name"]]
        )
    subject = sbom["metadata"]["component"]
    assert subject["version"] == log["environment"]["env_id"]
    assert properties(subject, "env_id") == [log["environment"]["env_id"]]
    assert properties(subject, "run_id") == [log["run_id"]]
    assert properties(subject, "lock:sha256") == [log["environment"]["lock"]["sha256"]]
    (depends,) = [d for d in sbom["dependencies"] if d["ref"] == "environment"]
    assert len(depends["dependsOn"]) == len(sbom["components"])


def test_python_is_a_platform_with_os_and_libc(bcg_run: Path, exported: Path) -> None:
    sbom = valid_sbom(exported.read_text(encoding="utf-8"))
    observed = json.loads((bcg_run / "run_log.json").read_text(encoding="utf-8"))["environment"][
        "observed"
    ]
    (python,) = [c for c in sbom["components"] if c["type"] == "platform"]
    assert python["name"] == observed["python"]["implementation"]
    assert python["version"] == observed["python"]["version_short"]
    for key in ("os_family", "libc", "machine", "platform"):
        assert properties(python, key) == [observed[key]]


def test_lock_hashes_are_the_pins_allowed_set(exported: Path) -> None:
    sbom = valid_sbom(exported.read_text(encoding="utf-8"))
    allowed = lock_hashes_by_pin((ROOT / "requirements.lock.txt").read_text(encoding="utf-8"))
    locked = 0
    for component in sbom["components"]:
        if component["type"] != "library":
            continue
        pin = f"{component['name']}=={component['version']}"
        if pin in allowed:
            locked += 1
            assert properties(component, "lock:pin") == [pin]
            assert set(properties(component, "lock:sha256")) == allowed[pin]
        else:  # dev tools and the project itself
            assert properties(component, "lock:pin") == ["not in the lock"]
            assert properties(component, "lock:sha256") == []
    numpy = next(c for c in sbom["components"] if c["name"] == "numpy")
    assert len(properties(numpy, "lock:sha256")) > 1  # a set of candidates, not one file's hash
    assert locked >= 40


def _edit_log(bcg_run: Path, tmp_path: Path, edit: Any) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(bcg_run, copy)
    log = json.loads((copy / "run_log.json").read_text(encoding="utf-8"))
    edit(log)
    (copy / "run_log.json").write_text(json.dumps(log), encoding="utf-8")
    return copy


def test_no_lock_with_the_recorded_sha256_means_no_hashes(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changed = tmp_path / "requirements.lock.txt"
    changed.write_text((ROOT / "requirements.lock.txt").read_text() + "# edited\n")
    fake = "0" * 64

    def edit(log: dict[str, Any]) -> None:
        log["environment"]["lock"].update(path=str(changed), sha256=fake)

    copy = _edit_log(bcg_run, tmp_path, edit)
    out = tmp_path / "sbom.json"
    assert run(["export", str(copy), "--format", "cyclonedx", "--out", str(out)], capsys)[0] == 0
    sbom = valid_sbom(out.read_text(encoding="utf-8"))
    assert properties(sbom["metadata"]["component"], "lock:hashes") == [
        f"not available: no lock file with the recorded sha256 {fake} was found"
    ]
    assert not [c for c in sbom["components"] if properties(c, "lock:sha256")]


def test_a_malformed_lock_with_the_recorded_sha256_means_no_hashes(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    bad = tmp_path / "requirements.lock.txt"
    bad.write_text("numpy>=2 --hash=sha256:" + "a" * 64 + "\n", encoding="utf-8")
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()

    def edit(log: dict[str, Any]) -> None:
        log["environment"]["lock"].update(path=str(bad), sha256=digest)

    copy = _edit_log(bcg_run, tmp_path, edit)
    out = tmp_path / "sbom.json"
    assert run(["export", str(copy), "--format", "cyclonedx", "--out", str(out)], capsys)[0] == 0
    sbom = valid_sbom(out.read_text(encoding="utf-8"))
    assert properties(sbom["metadata"]["component"], "lock:hashes") == [
        f"not available: {bad}: not an exact 'name==version' pin: 'numpy>=2 --hash=sha256:{'a' * 64}'"
    ]
    assert not [c for c in sbom["components"] if properties(c, "lock:sha256")]


def test_a_log_without_wheel_tags_still_exports(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _edit_log(
        bcg_run, tmp_path, lambda log: log["environment"]["observed"].pop("wheel_tags")
    )
    out = tmp_path / "sbom.json"
    assert run(["export", str(copy), "--format", "cyclonedx", "--out", str(out)], capsys)[0] == 0
    sbom = valid_sbom(out.read_text(encoding="utf-8"))
    assert properties(sbom["metadata"]["component"], "wheel:tags") == [
        "not recorded (the environment predates them)"
    ]
    assert not [c for c in sbom["components"] if properties(c, "wheel:tag")]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            lambda log: log["environment"]["observed"].update(wheel_tags={"numpy": "cp311"}),
            "/environment/observed/wheel_tags/numpy: 'cp311' is not of type 'array'",
        ),
        (
            lambda log: log["environment"]["observed"].update(packages="numpy==2"),
            "/environment/observed/packages: 'numpy==2' is not of type 'array', 'null'",
        ),
        (lambda log: log.update(environment=None), "/environment: the run recorded no environment"),
        (lambda log: log.update(run_id=7), "/run_id: 7 is not of type 'string'"),
    ],
)
def test_a_malformed_log_is_2_naming_the_field(
    edit: Any, problem: str, bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = _edit_log(bcg_run, tmp_path, edit)
    out = tmp_path / "sbom.json"
    code, stdout, err = run(
        ["export", str(copy), "--format", "cyclonedx", "--out", str(out)], capsys
    )
    assert (code, stdout) == (2, "")
    assert err == f"cosmo-runner: error: {copy / 'run_log.json'}: {problem}\n"
    assert not out.exists()


def test_export_usage_and_write_errors(
    bcg_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sbom.json"
    assert run(["export", str(tmp_path), "--format", "cyclonedx", "--out", str(out)], capsys) == (
        2,
        "",
        f"cosmo-runner: error: {tmp_path}: not a run folder (no run_log.json)\n",
    )
    code, _, err = run(["export", str(bcg_run), "--format", "spdx", "--out", str(out)], capsys)
    assert code == 2 and "invalid choice: 'spdx'" in err and err.count("\n") == 1
    code, _, err = run(["export", str(bcg_run), "--format", "cyclonedx"], capsys)
    assert code == 2 and "--out" in err and err.count("\n") == 1
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert run(["export", str(bcg_run), "--format", "cyclonedx", "--out", str(folder)], capsys) == (
        5,
        "",
        f"cosmo-runner: error: cannot write {folder}: is a directory\n",
    )
    assert not out.exists()


def test_env_sbom_describes_the_current_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import metadata

    code, out, err = run(["env", "sbom"], capsys)
    assert (code, err) == (0, "")
    sbom = valid_sbom(out)
    subject = sbom["metadata"]["component"]
    assert properties(subject, "run_id") == []
    versions = {c["name"]: c["version"] for c in sbom["components"] if c["type"] == "library"}
    for name in ("numpy", "jinja2", "cyclonedx-python-lib", "cosmo-runner"):
        assert versions[name] == metadata.version(name)
    target = tmp_path / "env.cdx.json"
    assert run(["env", "sbom", "--out", str(target)], capsys) == (0, f"wrote {target}\n", "")
    written = valid_sbom(target.read_text(encoding="utf-8"))
    assert properties(written["metadata"]["component"], "env_id") == properties(subject, "env_id")
