"""Distribution metadata: WHEEL tags this interpreter can use, no editable or local installs.

End to end in venv copies (tests/envcopy.py), with the exact line: a usable tag among
foreign ones passes, a local install under ``direct_url_severity: "warn"`` warns, an
unreadable direct_url.json fails; a foreign WHEEL tag and an editable locked name fail
``smoke`` and ``run`` in tests/env/test_perturbations.py. These copies' ``smoke`` runs with
the project's manifest, required imports emptied (:func:`no_probes`). In process: parsing of
WHEEL and direct_url.json, tag expansion, the fallback without packaging.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cosmo_runner.env import distmeta
from tests.conftest import ROOT, InMemoryDist, InProcess
from tests.env.test_smoke import manifest_copy
from tests.envcopy import ONE_AT_A_TIME, VenvCopy

PINS = {
    line.split("==")[0]: line.split("==")[1].split()[0]
    for line in (ROOT / "requirements.lock.txt").read_text().splitlines()
    if "==" in line and not line.startswith((" ", "#"))
}
PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"


@pytest.fixture
def venv(tmp_path: Path) -> VenvCopy:
    return VenvCopy(tmp_path / "venv")


def no_probes(where: Path, **changes: object) -> Path:
    """The project's manifest and lock in ``where``, required imports emptied: the import
    probes (about 1.1 s of CPU per ``smoke``) judge nothing a dist-info edit changes."""
    return manifest_copy(where, imports={"modules": []}, **changes)


def smoke_in(venv: VenvCopy, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = venv.run("-m", "cosmo_runner", "smoke", *args, cwd=cwd)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def write_wheel(venv: VenvCopy, name: str, tags: list[str]) -> None:
    """Rewrite a distribution's WHEEL with ``tags`` and its RECORD line, as an installer of
    a wheel built for those tags would have written them."""
    info = venv.dist_info(name)
    text = (info / "WHEEL").read_text()
    kept = [line for line in text.splitlines() if line and not line.startswith("Tag:")]
    data = ("\n".join([*kept, *(f"Tag: {t}" for t in tags)]) + "\n").encode()
    venv.replace_file(info / "WHEEL", data)
    relative = (info / "WHEEL").relative_to(venv.site_packages).as_posix()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record = [
        f"{relative},sha256={digest},{len(data)}" if line.split(",")[0] == relative else line
        for line in (info / "RECORD").read_text().splitlines()
    ]
    venv.replace_file(info / "RECORD", ("\n".join(record) + "\n").encode())


@pytest.mark.slow
@ONE_AT_A_TIME
def test_one_usable_tag_among_several_is_enough(venv: VenvCopy, tmp_path: Path) -> None:
    write_wheel(venv, "cycler", ["py2-none-win32", "py2.py3-none-any"])
    no_probes(tmp_path)
    proc = smoke_in(venv, tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert "wheel:" not in proc.stdout


@pytest.mark.slow
@ONE_AT_A_TIME
def test_direct_url_severity_warn_reports_without_failing(venv: VenvCopy, tmp_path: Path) -> None:
    info = venv.dist_info("cycler")
    url = f"file://{tmp_path}/wheels/cycler-0.12.1-py3-none-any.whl"
    (info / "direct_url.json").write_text(json.dumps({"url": url, "archive_info": {}}))

    lock = json.loads((ROOT / "environment.manifest.json").read_text())["lock"]
    no_probes(tmp_path, lock={**lock, "direct_url_severity": "warn"})
    proc = smoke_in(venv, tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert (
        f"  WARN  cycler: installed from a local path {url} (direct_url.json); "
        f"the lock pins cycler=={PINS['cycler']}\n"
    ) in proc.stdout


@pytest.mark.slow
@ONE_AT_A_TIME
def test_an_unreadable_direct_url_json_is_an_error(venv: VenvCopy, tmp_path: Path) -> None:
    info = venv.dist_info("cycler")
    (info / "direct_url.json").write_text('{"url": ')
    no_probes(tmp_path)
    proc = smoke_in(venv, tmp_path)
    assert proc.returncode == 3, proc.stdout
    assert (
        "  ERROR cycler: has an unreadable direct_url.json: not valid JSON "
        "(Expecting value at line 1) (direct_url.json); "
        f"the lock pins cycler=={PINS['cycler']}\n"
    ) in proc.stdout


def test_the_project_itself_installed_editable_is_not_a_locked_name(
    tmp_path: Path, cli: InProcess
) -> None:
    """`make dev` installs cosmo-runner editable; only locked names are judged."""
    found = distmeta.direct_url(metadata.distribution("cosmo-runner"))
    assert found is not None and found.kind == "editable"
    assert "cosmo-runner" not in PINS
    proc = cli("smoke", "--json", "--manifest", no_probes(tmp_path))
    assert proc.returncode == 0, proc.stdout
    names = [c["name"] for c in json.loads(proc.stdout)["smoke"]["checks"]]
    assert not [n for n in names if n.startswith(("direct-url:", "wheel:"))]


# --- in process -------------------------------------------------------------------------


def test_wheel_tags_are_read_as_written() -> None:
    wheel = "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-a\nTag: cp311-cp311-b\n"
    assert distmeta.wheel_tags(InMemoryDist({"WHEEL": wheel})) == ["cp311-cp311-a", "cp311-cp311-b"]
    assert distmeta.wheel_tags(InMemoryDist({"WHEEL": "Wheel-Version: 1.0\n"})) == []
    assert distmeta.wheel_tags(InMemoryDist({})) is None


def test_compressed_tags_expand() -> None:
    assert distmeta.expand("py2.py3-none-any") == {"py2-none-any", "py3-none-any"}
    assert distmeta.expand("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64") == {
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux2014_x86_64",
    }
    assert distmeta.expand("garbage") == {"garbage"}


def test_usable_needs_one_supported_tag() -> None:
    supported = distmeta.supported_tags()
    assert supported is not None and "py3-none-any" in supported
    assert distmeta.usable(["py2-none-any", "py3-none-any"], supported)
    assert distmeta.usable(["py2.py3-none-any"], supported)
    assert not distmeta.usable(["cp27-cp27mu-win32"], supported)
    assert not distmeta.usable([], supported)


def test_without_packaging_tags_are_only_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distmeta.optional, "available", lambda name: name != "packaging")
    assert distmeta.supported_tags() is None


@pytest.mark.parametrize(
    ("text", "kind", "url"),
    [
        ('{"url": "file:///src/x", "dir_info": {"editable": true}}', "editable", "file:///src/x"),
        ('{"url": "file:///src/x", "dir_info": {}}', "local", "file:///src/x"),
        ('{"url": "file:///w/x-1-py3-none-any.whl", "archive_info": {}}', "local", None),
        ('{"url": "https://host/x.tar.gz", "archive_info": {}}', "url", "https://host/x.tar.gz"),
        ('{"url": "https://host/x", "dir_info": {"editable": false}}', "url", None),
        ("[1, 2]", "invalid", None),
        ('{"dir_info": {}}', "invalid", None),
        ("{", "invalid", None),
    ],
)
def test_direct_url_kinds(text: str, kind: str, url: str | None) -> None:
    found = distmeta.direct_url(InMemoryDist({"direct_url.json": text}))
    assert found is not None and found.kind == kind
    if url is not None:
        assert found.url == url
    assert found.local == (kind in ("editable", "local", "invalid"))
    assert distmeta.direct_url(InMemoryDist({})) is None
