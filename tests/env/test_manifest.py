from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmo_runner.env import manifest as manifest_mod
from cosmo_runner.errors import ManifestError

ROOT = Path(__file__).resolve().parents[2]


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _valid() -> dict:
    return json.loads((ROOT / "environment.manifest.json").read_text())


def test_repository_manifest_is_valid_and_its_package_copy_is_identical() -> None:
    m = manifest_mod.load(str(ROOT / "environment.manifest.json"))
    assert "numpy" in m.data["imports"]["modules"]
    package_copy = manifest_mod.package_manifest_path()
    assert package_copy.read_bytes() == (ROOT / "environment.manifest.json").read_bytes()
    assert (package_copy.parent / "requirements.lock.txt").read_bytes() == (
        ROOT / "requirements.lock.txt"
    ).read_bytes()


def test_lookup_order_flag_then_env_then_cwd_then_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = _write(tmp_path / "flag.json", _valid())
    env = _write(tmp_path / "env.json", _valid())
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _write(cwd / "environment.manifest.json", _valid())
    monkeypatch.setenv("COSMO_MANIFEST", str(env))
    assert manifest_mod.locate(str(flag), cwd) == (flag, "--manifest")
    assert manifest_mod.locate(None, cwd) == (env, "$COSMO_MANIFEST")
    monkeypatch.delenv("COSMO_MANIFEST")
    assert manifest_mod.locate(None, cwd) == (cwd / "environment.manifest.json", "cwd")
    assert manifest_mod.locate(None, tmp_path) == (manifest_mod.package_manifest_path(), "package")


def test_lock_path_is_relative_to_the_manifest(tmp_path: Path) -> None:
    data = _valid()
    data["lock"]["path"] = "sub/the.lock"
    m = manifest_mod.load(str(_write(tmp_path / "m.json", data)))
    assert m.lock_path == (tmp_path / "sub" / "the.lock").resolve()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("python"), "manifest invalid: .*/: 'python' is a required property"),
        (
            lambda d: d["python"].update(specifier="3.11!"),
            r"/python/specifier: '3.11!' is not a PEP 440",
        ),
        (lambda d: d["lock"].update(severity="fatal"), r"/lock/severity: 'fatal' is not one of"),
        (lambda d: d.update(extra=1), r"Additional properties are not allowed \('extra'"),
    ],
    ids=["missing-python", "bad-specifier", "bad-severity", "unknown-key"],
)
def test_schema_invalid_manifest_names_file_and_pointer(
    tmp_path: Path, mutate, message: str
) -> None:
    data = _valid()
    mutate(data)
    path = _write(tmp_path / "m.json", data)
    with pytest.raises(ManifestError, match=message) as info:
        manifest_mod.load(str(path))
    assert str(path) in str(info.value)


def test_corrupt_and_missing_manifest(tmp_path: Path) -> None:
    corrupt = tmp_path / "m.json"
    corrupt.write_text("{not json")
    with pytest.raises(ManifestError, match=r"manifest is not valid JSON: .*m\.json"):
        manifest_mod.load(str(corrupt))
    with pytest.raises(
        ManifestError, match=r"manifest not found: .*absent\.json \(from --manifest\)"
    ):
        manifest_mod.load(str(tmp_path / "absent.json"))
