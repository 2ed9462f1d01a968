"""Installed files against RECORD (env/records.py): every way a file, a RECORD, a .pyc or the
cache can be odd, on small crafted site-packages trees, plus real venvs and the CLI gate."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from cosmo_runner.env import records
from tests.conftest import ROOT, InProcess, load_log, run_cli
from tests.env.test_smoke import NO_IMPORTS, manifest_copy

SOURCE = b"VALUE = 1\n"  # same size as its edits below
FILES = {"demo/__init__.py": SOURCE, "demo/util.py": b"def f():\n    return 2\n"}


def record_hash(data: bytes, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def install(
    site: Path,
    name: str = "demo",
    version: str = "1.0",
    files: dict[str, bytes] | None = None,
    *,
    rows: list[str] | None = None,
    installer: str = "pip",
) -> Path:
    """A distribution as an installer leaves it: files, METADATA, INSTALLER and a RECORD
    with a sha256 for each (``rows`` are appended to RECORD as written)."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    content = dict(FILES if files is None else files)
    content[f"{info.name}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    content[f"{info.name}/INSTALLER"] = installer.encode() + b"\n"
    lines = []
    for rel, data in content.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        quoted = f'"{rel}"' if "," in rel else rel
        lines.append(f"{quoted},{record_hash(data)},{len(data)}")
    lines.append(f"{info.name}/RECORD,,")
    lines += rows or []
    (info / "RECORD").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return info


def dists_of(*sites: Path) -> dict[str, Any]:
    from importlib import metadata

    found: dict[str, Any] = {}
    for site in sites:
        for info in sorted(site.glob("*.dist-info")):
            dist = metadata.Distribution.at(info)
            if dist.metadata.get("Name") is None:
                continue  # an empty dist-info folder: not a distribution
            found.setdefault(records.normalize(dist.metadata["Name"]), dist)
    return found


def verify(site: Path, *names: str, cache: Path | None = None, deep: bool = False):
    return records.verify(names or ("demo",), dists_of(site), cache=cache, deep=deep, sites=[site])


def messages(result: records.Records) -> list[str]:
    return [m for d in result.dists if (m := d.message()) is not None]


def edit_keeping_mtime(path: Path, data: bytes) -> None:
    """Same size, new bytes, mtime put back: what a careless in-place edit looks like."""
    before = path.stat()
    assert len(data) == before.st_size
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.fixture
def site(tmp_path: Path) -> Path:
    path = tmp_path / "site-packages"
    path.mkdir()
    return path


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test count as settled, so they can be cached at once."""
    monkeypatch.setattr(records, "RACY_NS", 0)


# --- files against RECORD ---------------------------------------------------------------


def test_clean_distribution_passes_with_counts(site: Path) -> None:
    install(site)
    result = verify(site)
    assert messages(result) == []
    assert result.files == 4  # two modules, METADATA, INSTALLER (RECORD has no hash)
    assert result.bytes == sum(len(d) for d in FILES.values()) + len(b"pip\n") + len(
        (site / "demo-1.0.dist-info/METADATA").read_bytes()
    )
    summary = result.summary()
    assert summary["distributions"] == 1 and summary["problems"] == []
    assert len(summary["digest"]) == 64 and summary["bytecode"] is None


def test_same_size_edit_with_mtime_restored_is_caught(site: Path, tmp_path: Path) -> None:
    install(site)
    edit_keeping_mtime(site / "demo/__init__.py", b"VALUE = 7\n")
    assert messages(verify(site, cache=tmp_path / "cache")) == [
        "demo 1.0: 1 file differs from RECORD: demo/__init__.py"
    ]


def test_missing_file(site: Path) -> None:
    install(site)
    (site / "demo/util.py").unlink()
    assert messages(verify(site)) == ["demo 1.0: 1 file missing: demo/util.py"]


def test_extra_file_is_fine_and_leaves_the_digest_alone(site: Path) -> None:
    install(site)
    before = verify(site).digest
    (site / "demo/extra.py").write_text("x = 1\n")
    (site / "demo/__pycache__").mkdir()
    result = verify(site)
    assert messages(result) == [] and result.digest == before


def test_changed_record_hash(site: Path) -> None:
    install(site)
    record = site / "demo-1.0.dist-info/RECORD"
    text = record.read_text().replace(record_hash(SOURCE), record_hash(b"VALUE = 2\n"))
    record.write_text(text)
    assert messages(verify(site)) == ["demo 1.0: 1 file differs from RECORD: demo/__init__.py"]


def test_many_problems_name_the_first_three_files(site: Path) -> None:
    files = {f"demo/m{i}.py": b"x = 1\n" for i in range(6)}
    install(site, files=files)
    for i in range(5):
        edit_keeping_mtime(site / f"demo/m{i}.py", b"x = 2\n")
    (site / "demo/m5.py").unlink()
    assert messages(verify(site)) == [
        "demo 1.0: 5 files differ from RECORD: demo/m0.py, demo/m1.py, demo/m2.py and 2 more; "
        "1 file missing: demo/m5.py"
    ]


def test_a_size_that_differs_from_record_is_a_change(site: Path) -> None:
    install(site)
    (site / "demo/__init__.py").write_bytes(b"VALUE = 10\n")
    assert messages(verify(site)) == ["demo 1.0: 1 file differs from RECORD: demo/__init__.py"]


def test_a_directory_where_a_file_was(site: Path) -> None:
    install(site)
    (site / "demo/util.py").unlink()
    (site / "demo/util.py").mkdir()
    assert messages(verify(site)) == [
        "demo 1.0: 1 file differs from RECORD: demo/util.py (not a file)"
    ]


def test_names_not_locked_or_not_installed_are_skipped(site: Path) -> None:
    install(site)
    install(site, "other", "2.0", {"other.py": b"y = 1\n"})
    edit_keeping_mtime(site / "other.py", b"y = 2\n")
    result = verify(site, "demo", "absent")  # "other" is not in the lock: not checked
    assert messages(result) == [] and result.files == 4


# --- duplicate dist-info -------------------------------------------------------------------


def test_second_dist_info_for_one_name(site: Path) -> None:
    install(site)
    shutil.copytree(site / "demo-1.0.dist-info", site / "Demo-0.9.dist-info")
    assert messages(verify(site)) == [
        "demo 1.0: 2 dist-info folders: Demo-0.9.dist-info, demo-1.0.dist-info"
    ]


def test_duplicates_of_names_not_in_the_lock_are_reported_too(site: Path) -> None:
    install(site)
    for folder in ("left_pad-1.0.dist-info", "left.pad-1.1.dist-info"):
        (site / folder).mkdir()
    assert messages(verify(site)) == [
        "left-pad: 2 dist-info folders: left.pad-1.1.dist-info, left_pad-1.0.dist-info"
    ]


# --- odd RECORDs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (["demo/x.py,sha256=abc"], "RECORD line 6 has 2 fields, not 3 (path, hash, size)"),
        (
            ["demo/x.py,md5=1B2M2Y8AsgTpgAmY7PhCfg,0"],
            "RECORD line 6: unusable hash 'md5=1B2M2Y8AsgTpgAmY7PhCfg'",
        ),
        (["demo/x.py,sha256=,0"], "RECORD line 6: unusable hash 'sha256='"),
        (["demo/x.py,sha256=abc,12kB"], "RECORD line 6: size '12kB' is not a number"),
        (["demo/x.py,sha256=abc,\u00b2"], "RECORD line 6: size '\u00b2' is not a number"),
    ],
    ids=["two-fields", "weak-hash", "empty-digest", "bad-size", "superscript-size"],
)
def test_malformed_rows_are_named_by_line(site: Path, rows: list[str], expected: str) -> None:
    install(site, rows=rows)
    assert messages(verify(site)) == [f"demo 1.0: {expected}"]


def test_blank_lines_unhashed_rows_and_repeats_are_skipped(site: Path) -> None:
    again = f"demo/util.py,{record_hash(FILES['demo/util.py'])},{len(FILES['demo/util.py'])}"
    install(site, rows=["", "demo/__pycache__/util.cpython-311.pyc,,", again, ""])
    result = verify(site)
    assert messages(result) == [] and result.files == 4


def test_missing_record(site: Path) -> None:
    (install(site) / "RECORD").unlink()
    assert messages(verify(site)) == ["demo 1.0: no RECORD; its files cannot be verified"]


def test_empty_record(site: Path) -> None:
    (install(site) / "RECORD").write_text("\r\n")
    assert messages(verify(site)) == ["demo 1.0: RECORD is empty; its files cannot be verified"]


def test_record_with_a_nul_byte(site: Path) -> None:
    record = install(site) / "RECORD"
    record.write_text(record.read_text() + "demo/\0.py,sha256=abc,1\n")
    assert messages(verify(site)) == ["demo 1.0: RECORD line 6: a path with a NUL byte"]


def test_record_with_a_field_over_the_csv_limit(site: Path) -> None:
    record = install(site) / "RECORD"
    record.write_text(record.read_text() + "demo/" + "x" * 200_000 + ".py,sha256=abc,1\n")
    assert messages(verify(site)) == [
        "demo 1.0: RECORD unreadable as CSV: field larger than field limit (131072)"
    ]


def test_record_not_utf8(site: Path) -> None:
    record = install(site) / "RECORD"
    record.write_bytes(record.read_bytes() + b"demo/\xff.py,sha256=abc,1\n")
    (message,) = messages(verify(site))
    assert message.startswith("demo 1.0: RECORD unreadable: 'utf-8' codec can't decode byte 0xff")


def test_csv_quoted_path_with_a_comma(site: Path) -> None:
    install(site, files={"demo/a,b.py": b"z = 1\n"})
    assert messages(verify(site)) == []
    edit_keeping_mtime(site / "demo/a,b.py", b"z = 2\n")
    assert messages(verify(site)) == ["demo 1.0: 1 file differs from RECORD: demo/a,b.py"]


def test_strong_hashes_other_than_sha256(site: Path) -> None:
    data = b"w = 1\n"
    (site / "demo").mkdir()
    (site / "demo/w.py").write_bytes(data)
    install(site, rows=[f"demo/w.py,{record_hash(data, 'sha512')},{len(data)}"])
    result = verify(site)
    assert messages(result) == [] and result.files == 5


def test_paths_outside_site_packages_are_verified_but_not_digested(tmp_path: Path) -> None:
    """``../../../bin/`` scripts start with the venv's path and absolute paths name one
    machine: both are checked, neither enters the digest, so venvs at two paths agree."""
    digests = []
    for prefix in ("venv-a", "other/place/venv-b"):
        site = tmp_path / prefix / "lib/python3.11/site-packages"
        site.mkdir(parents=True)
        script = f"#!{tmp_path / prefix}/bin/python\nimport demo\n".encode()
        (tmp_path / prefix / "bin").mkdir()
        (tmp_path / prefix / "bin/demo").write_bytes(script)
        outside = tmp_path / prefix / "share.txt"
        outside.write_bytes(prefix.encode())
        inside = site / "demo/data.txt"
        inside.parent.mkdir()
        inside.write_bytes(b"data\n")
        install(
            site,
            rows=[
                f"../../../bin/demo,{record_hash(script)},{len(script)}",
                f"{outside},{record_hash(outside.read_bytes())},{outside.stat().st_size}",
                f"{inside},{record_hash(inside.read_bytes())},5",  # absolute, but inside site-packages
            ],
        )
        result = verify(site)
        assert messages(result) == [] and result.files == 7
        digests.append(result.digest)
        # the absolute path inside site-packages is digested as its relative path
        (site / "demo-1.0.dist-info/RECORD").write_text(
            (site / "demo-1.0.dist-info/RECORD").read_text().replace(str(inside), "demo/data.txt")
        )
        assert verify(site).digest == result.digest
        edit_keeping_mtime(tmp_path / prefix / "bin/demo", script.replace(b"demo", b"omed"))
        assert messages(verify(site)) == ["demo 1.0: 1 file differs from RECORD: ../../../bin/demo"]
    assert digests[0] == digests[1]


# --- the digest ----------------------------------------------------------------------------


def test_digest_ignores_installer_bookkeeping_and_bytecode(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    install(a, installer="pip")
    extra = b'{"url": "file:///wheels/demo-1.0-py3-none-any.whl", "archive_info": {}}'
    pyc = b"\0" * 20
    rows = [
        f"demo-1.0.dist-info/direct_url.json,{record_hash(extra)},{len(extra)}",
        f"demo-1.0.dist-info/REQUESTED,{record_hash(b'')},0",
        f"demo/__pycache__/util.cpython-311.pyc,{record_hash(pyc)},{len(pyc)}",
    ]
    install(b, installer="uv", rows=rows)
    for rel, data in (
        ("demo-1.0.dist-info/direct_url.json", extra),
        ("demo-1.0.dist-info/REQUESTED", b""),
        ("demo/__pycache__/util.cpython-311.pyc", pyc),
    ):
        (b / rel).parent.mkdir(parents=True, exist_ok=True)
        (b / rel).write_bytes(data)
    first, second = verify(a), verify(b)
    assert messages(first) == messages(second) == []
    assert first.digest == second.digest


def test_digest_follows_the_installed_bytes(site: Path) -> None:
    install(site)
    clean = verify(site).digest
    edit_keeping_mtime(site / "demo/__init__.py", b"VALUE = 7\n")
    edited = verify(site).digest
    edit_keeping_mtime(site / "demo/__init__.py", SOURCE)
    assert verify(site).digest == clean != edited
    (site / "demo/util.py").unlink()
    assert verify(site).digest not in (clean, edited)


def test_digest_is_the_documented_sha256(site: Path) -> None:
    install(site, files={"demo/__init__.py": SOURCE})
    metadata_bytes = (site / "demo-1.0.dist-info/METADATA").read_bytes()
    lines = sorted(
        [
            f"demo/__init__.py\t{record_hash(SOURCE)}\n",
            f"demo-1.0.dist-info/METADATA\t{record_hash(metadata_bytes)}\n",
        ]
    )
    assert verify(site).digest == hashlib.sha256("".join(lines).encode()).hexdigest()


# --- bytecode ------------------------------------------------------------------------------


def stale_free_pyc(site: Path, compiled_from: bytes) -> Path:
    """A timestamp .pyc of ``compiled_from`` whose header matches demo/__init__.py as it is
    now (same size, same mtime): the .pyc Python would run."""
    source = site / "demo/__init__.py"
    keep = source.read_bytes()
    edit_keeping_mtime(source, compiled_from)
    pyc = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(pyc), doraise=True)
    edit_keeping_mtime(source, keep)
    return pyc


def imported_value(site: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import demo; print(demo.VALUE)"],
        env={**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def test_pyc_that_does_not_match_its_source(site: Path) -> None:
    install(site)
    pyc = stale_free_pyc(site, b"VALUE = 9\n")
    assert imported_value(site) == "9"  # the threat is real: Python runs the .pyc
    assert messages(verify(site)) == []  # not deep: bytecode is not looked at
    result = verify(site, deep=True)
    rel = pyc.relative_to(site).as_posix()
    assert messages(result) == [f"demo 1.0: 1 .pyc does not match the source: {rel}"]
    assert result.bytecode == {"checked": 1, "stale": 0, "differ": 1}


def test_genuine_and_stale_pyc_pass(site: Path) -> None:
    install(site)
    source = site / "demo/__init__.py"
    pyc = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(pyc), doraise=True)
    util = site / "demo/util.py"
    util_pyc = Path(importlib.util.cache_from_source(str(util)))
    py_compile.compile(str(util), cfile=str(util_pyc), doraise=True)
    os.utime(util, ns=(0, util.stat().st_mtime_ns + 10**9))  # source newer: .pyc is stale
    result = verify(site, deep=True)
    assert messages(result) == []
    assert result.bytecode == {"checked": 1, "stale": 1, "differ": 0}


@pytest.mark.parametrize(
    ("invalidation", "differs"),
    [
        (py_compile.PycInvalidationMode.UNCHECKED_HASH, True),  # run without a look at source
        (py_compile.PycInvalidationMode.CHECKED_HASH, False),  # source hash differs: stale
    ],
    ids=["unchecked-hash", "checked-hash"],
)
def test_hash_based_pyc(
    site: Path, invalidation: py_compile.PycInvalidationMode, differs: bool
) -> None:
    install(site)
    source = site / "demo/__init__.py"
    pyc = Path(importlib.util.cache_from_source(str(source)))
    edit_keeping_mtime(source, b"VALUE = 5\n")
    py_compile.compile(str(source), cfile=str(pyc), doraise=True, invalidation_mode=invalidation)
    edit_keeping_mtime(source, SOURCE)
    assert imported_value(site) == ("5" if differs else "1")
    result = verify(site, deep=True)
    assert (messages(result) != []) is differs
    assert result.bytecode == (
        {"checked": 1, "stale": 0, "differ": 1}
        if differs
        else {"checked": 0, "stale": 1, "differ": 0}
    )


def test_optimised_pyc_is_checked_too(site: Path) -> None:
    install(site)
    source = site / "demo/__init__.py"
    edit_keeping_mtime(source, b"VALUE = 3\n")
    opt = Path(importlib.util.cache_from_source(str(source), optimization=1))
    py_compile.compile(str(source), cfile=str(opt), doraise=True, optimize=1)
    edit_keeping_mtime(source, SOURCE)
    assert messages(verify(site, deep=True)) == [
        f"demo 1.0: 1 .pyc does not match the source: {opt.relative_to(site).as_posix()}"
    ]


def test_corrupt_pyc_body_behind_a_valid_header(site: Path) -> None:
    install(site)
    source = site / "demo/__init__.py"
    pyc = Path(importlib.util.cache_from_source(str(source)))
    py_compile.compile(str(source), cfile=str(pyc), doraise=True)
    pyc.write_bytes(pyc.read_bytes()[:16] + b"\xff garbage")
    assert verify(site, deep=True).bytecode == {"checked": 1, "stale": 0, "differ": 1}


def test_no_pyc_for_a_changed_source(site: Path) -> None:
    """Only verified sources have their .pyc checked: a changed source is reported once."""
    install(site)
    stale_free_pyc(site, b"VALUE = 9\n")
    edit_keeping_mtime(site / "demo/__init__.py", b"VALUE = 8\n")
    result = verify(site, deep=True)
    assert messages(result) == ["demo 1.0: 1 file differs from RECORD: demo/__init__.py"]
    assert result.bytecode == {"checked": 0, "stale": 0, "differ": 0}


# --- the cache -----------------------------------------------------------------------------


def cache_file(cache: Path) -> Path:
    (found,) = cache.glob("records-*.json")
    return found


def test_warm_run_hits_the_cache_and_a_write_invalidates(
    site: Path, tmp_path: Path, settled: None
) -> None:
    install(site)
    cache = tmp_path / "cache"
    cold = verify(site, cache=cache)
    assert cold.cache == {"hits": 0, "misses": 4, "written": True}
    warm = verify(site, cache=cache)
    assert warm.cache == {"hits": 4, "misses": 0, "written": True}
    assert warm.digest == cold.digest
    edit_keeping_mtime(site / "demo/__init__.py", b"VALUE = 7\n")  # ctime moves
    after = verify(site, cache=cache)
    assert messages(after) == ["demo 1.0: 1 file differs from RECORD: demo/__init__.py"]
    assert after.cache["misses"] == 1


def test_a_replaced_file_is_hashed_again(site: Path, tmp_path: Path, settled: None) -> None:
    install(site)
    cache = tmp_path / "cache"
    verify(site, cache=cache)
    target = site / "demo/__init__.py"
    before = target.stat()
    (site / "new").write_bytes(b"VALUE = 4\n")
    os.utime(site / "new", ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(site / "new", target)
    assert target.stat().st_ino != before.st_ino
    after = verify(site, cache=cache)
    assert messages(after) == ["demo 1.0: 1 file differs from RECORD: demo/__init__.py"]


@pytest.mark.parametrize("field", ["size", "mtime_ns", "ctime_ns", "inode"])
def test_every_stat_field_keys_the_cache(
    site: Path, tmp_path: Path, settled: None, field: str
) -> None:
    """A cache entry holding a wrong hash is believed only while all four fields match."""
    install(site)
    cache = tmp_path / "cache"
    verify(site, cache=cache)
    path = cache_file(cache)
    doc = json.loads(path.read_text())
    doc["files"]["demo/__init__.py"][-1] = record_hash(b"forged\n")
    path.write_text(json.dumps(doc))
    assert messages(verify(site, cache=cache)) == [
        "demo 1.0: 1 file differs from RECORD: demo/__init__.py"
    ]  # all fields match: the (forged) cached hash is used, so the cache really is read
    doc["files"]["demo/__init__.py"][["size", "mtime_ns", "ctime_ns", "inode"].index(field)] += 1
    path.write_text(json.dumps(doc))
    result = verify(site, cache=cache)
    assert messages(result) == [] and result.cache["misses"] == 1


def test_racily_clean_files_are_not_cached(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records, "RACY_NS", 10**18)  # every file counts as just written
    install(site)
    cache = tmp_path / "cache"
    verify(site, cache=cache)
    assert verify(site, cache=cache).cache == {"hits": 0, "misses": 4, "written": True}


@pytest.mark.parametrize(
    "corruption",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"{not json",
        b"[]",
        b"[" * 100_000,
        b'{"format": FMT, "root": "elsewhere", "cache_tag": "TAG", "files": {}}',
        b'{"format": 99}',
        b'{"format": FMT, "root": "ROOT", "cache_tag": "TAG", "files": []}',
        b'{"format": FMT, "root": "ROOT", "cache_tag": "TAG", "files": {"demo/__init__.py": 3}}',
        b'{"format": FMT, "root": "ROOT", "cache_tag": "TAG", "files": {"demo/__init__.py": [1, "x"]}}',
        b'{"format": FMT, "root": "ROOT", "cache_tag": "TAG", "bytecode": {"x": null}, "files": {"demo/__init__.py": [1,2,3,4,5]}}',
    ],
    ids=[
        "empty",
        "not-utf8",
        "not-json",
        "a-list",
        "deeply-nested",
        "another-root",
        "another-format",
        "files-a-list",
        "entry-a-number",
        "entry-too-short",
        "entry-wrong-value-type",
    ],
)
def test_corrupt_cache_is_ignored_and_rewritten(
    site: Path, tmp_path: Path, settled: None, corruption: bytes
) -> None:
    install(site)
    cache = tmp_path / "cache"
    verify(site, cache=cache)
    path = cache_file(cache)
    data = (
        corruption.replace(b"ROOT", str(site).encode())
        .replace(b"TAG", sys.implementation.cache_tag.encode())
        .replace(b"FMT", str(records.CACHE_FORMAT).encode())
    )
    path.write_bytes(data)
    result = verify(site, cache=cache)
    assert messages(result) == [] and result.cache["hits"] == 0
    assert verify(site, cache=cache).cache["hits"] == 4  # rewritten whole


@pytest.mark.parametrize("where", ["under-a-file", "dev-null"])
def test_unwritable_cache_means_no_cache(
    site: Path, tmp_path: Path, settled: None, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = blocker / "cache" if where == "under-a-file" else Path("/dev/null/cache")
    install(site)
    result = verify(site, cache=cache)
    assert messages(result) == []
    assert result.cache == {"hits": 0, "misses": 4, "written": False}
    assert list(tmp_path.glob("**/records-*")) == []


def test_bytecode_verdicts_are_cached(site: Path, tmp_path: Path, settled: None) -> None:
    install(site)
    source = site / "demo/__init__.py"
    py_compile.compile(str(source), cfile=importlib.util.cache_from_source(str(source)))
    cache = tmp_path / "cache"
    verify(site, cache=cache, deep=True)
    warm = verify(site, cache=cache, deep=True)
    assert warm.cache == {"hits": 5, "misses": 0, "written": True}  # 4 files + 1 .pyc
    stale_free_pyc(site, b"VALUE = 9\n")  # rewrites the .pyc: new ctime, new verdict
    assert messages(verify(site, cache=cache, deep=True)) != []


def test_cache_dir_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COSMO_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert records.cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("COSMO_CACHE_DIR")
    assert records.cache_dir() == tmp_path / "xdg" / "cosmo-runner"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid by the XDG spec
    assert records.cache_dir() == tmp_path / "home" / ".cache" / "cosmo-runner"


# --- real venvs ----------------------------------------------------------------------------

SITE = Path(sysconfig.get_paths()["purelib"])


def copy_distribution(name: str, dest_site: Path) -> str:
    """One installed distribution's files inside site-packages (as RECORD lists them,
    __pycache__ included) copied into another site-packages, mtimes kept. Its version."""
    from importlib import metadata

    dist = metadata.distribution(name)
    for entry in dist.files or []:
        if str(entry).startswith(".."):
            continue  # bin/ scripts: not inside site-packages
        src = SITE / str(entry)
        if src.is_file():
            (dest_site / str(entry)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest_site / str(entry))
    return dist.version


def minimal_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def venv_site(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3*/site-packages")
    return site


def verify_in(venv: Path, *names: str, cache: Path, deep: bool = False) -> dict[str, Any]:
    """records.verify run by the venv's own interpreter, isolated (-I), with only our
    src/ added to sys.path: the module needs nothing but the standard library."""
    script = (
        "import json, sys, pathlib\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from importlib import metadata\n"
        "from cosmo_runner.env import records\n"
        "dists = {}\n"
        "for d in metadata.distributions():\n"
        "    dists.setdefault(records.normalize(d.metadata['Name']), d)\n"
        f"r = records.verify({list(names)!r}, dists, cache=pathlib.Path({str(cache)!r}),"
        f" deep={deep!r})\n"
        "print(json.dumps(r.summary()))\n"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def test_real_venvs_at_two_paths_share_the_digest_and_catch_an_edit(tmp_path: Path) -> None:
    from importlib import metadata

    here = records.verify(
        ["packaging"], {"packaging": metadata.distribution("packaging")}, cache=None, deep=True
    )
    assert messages(here) == [] and here.bytecode and here.bytecode["differ"] == 0
    cache = tmp_path / "cache"
    venvs = [minimal_venv(tmp_path / "one/.venv"), minimal_venv(tmp_path / "two/opt/venv")]
    for venv in venvs:
        version = copy_distribution("packaging", venv_site(venv))
        summary = verify_in(venv, "packaging", cache=cache, deep=True)
        assert summary["problems"] == [] and summary["files"] == here.files
        assert summary["bytecode"]["checked"] > 10 and summary["bytecode"]["differ"] == 0
        assert summary["digest"] == here.digest  # .venv here, one/.venv, two/opt/venv

    site = venv_site(venvs[1])
    target = site / "packaging" / "version.py"
    original = target.read_bytes()
    edit_keeping_mtime(target, original.replace(b"(", b"[", 1))
    summary = verify_in(venvs[1], "packaging", cache=cache)
    assert summary["problems"] == [
        f"packaging {version}: 1 file differs from RECORD: packaging/version.py"
    ]
    assert summary["digest"] != here.digest

    edit_keeping_mtime(target, original)
    shutil.copytree(site / f"packaging-{version}.dist-info", site / "packaging-1.0.dist-info")
    assert verify_in(venvs[1], "packaging", cache=cache)["problems"] == [
        f"packaging {version}: 2 dist-info folders: packaging-1.0.dist-info, "
        f"packaging-{version}.dist-info"
    ]


# --- the gate: smoke and run ---------------------------------------------------------------


@pytest.fixture
def edited_cycler(tmp_path: Path) -> dict[str, str]:
    """The locked cycler, copied first on PYTHONPATH (so it is what import sees) with a
    same-size edit whose mtime is put back. The environment for a subprocess, with the
    project's manifest and lock copied, required imports emptied (their probes judge no
    RECORD: tests/env/test_smoke.py's NO_IMPORTS)."""
    shadow = tmp_path / "shadow"
    version = copy_distribution("cycler", shadow)
    target = shadow / "cycler" / "__init__.py"
    original = target.read_bytes()
    edit_keeping_mtime(target, original.replace(b"cycle", b"cycel", 1))
    (tmp_path / "manifest").mkdir()
    manifest = manifest_copy(tmp_path / "manifest", imports=NO_IMPORTS)
    return {
        "PYTHONPATH": str(shadow),
        "COSMO_MANIFEST": str(manifest),
        "CYCLER_MESSAGE": f"cycler {version}: 1 file differs from RECORD: cycler/__init__.py",
    }


def test_smoke_fails_naming_the_distribution_and_file(edited_cycler: dict[str, str]) -> None:
    proc = run_cli("smoke", env=edited_cycler)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"  ERROR {edited_cycler['CYCLER_MESSAGE']}\n" in proc.stdout + "\n"
    doc = json.loads(run_cli("smoke", "--json", env=edited_cycler).stdout)
    (check,) = [c for c in doc["smoke"]["checks"] if c["name"] == "records:cycler"]
    assert check["status"] == "error" and check["message"] == edited_cycler["CYCLER_MESSAGE"]
    assert check["observed"]["changed"] == ["cycler/__init__.py"]
    assert doc["environment"]["observed"]["records"]["problems"] == [check["message"]]


@pytest.mark.slow
def test_run_exits_3_with_a_complete_log(
    edited_cycler: dict[str, str], example: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", example, "--out", out, env=edited_cycler)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"cosmo-runner: environment: {edited_cycler['CYCLER_MESSAGE']}" in proc.stderr
    log = load_log(out)
    assert log["status"] == "failed" and log["exit_code"] == 3
    records_doc = log["environment"]["observed"]["records"]
    assert records_doc["problems"] == [edited_cycler["CYCLER_MESSAGE"]]
    assert "analyses" not in log or not log["analyses"]


def test_clean_smoke_reports_records_and_an_unwritable_cache_is_no_error(
    tmp_path: Path, cli: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no file counts as racily clean: a venv copy made meanwhile by another xdist worker
    # (cp -al) gives every file of this venv a fresh ctime, and then nothing is worth
    # writing, which is 'written': True (test_racily_clean_files_are_not_cached)
    monkeypatch.setattr(records, "RACY_NS", -(10**18))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    manifest = manifest_copy(tmp_path, imports=NO_IMPORTS)  # the probes judge no RECORD
    proc = cli(
        "smoke", "--json", "--manifest", manifest, env={"COSMO_CACHE_DIR": str(blocker / "cache")}
    )
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(proc.stdout)
    found = doc["environment"]["observed"]["records"]
    assert found["problems"] == [] and found["files"] > 1000 and found["bytecode"] is None
    assert found["cache"] == {"hits": 0, "misses": found["files"], "written": False}
    (check,) = [c for c in doc["smoke"]["checks"] if c["name"] == "records"]
    assert check["status"] == "ok" and check["observed"] == found["digest"]


def test_env_id_takes_the_records_digest() -> None:
    from cosmo_runner.env import snapshot

    state = snapshot.capture(str(ROOT / "environment.manifest.json"))
    assert state.records is not None
    observed = json.loads(json.dumps(state.observed))
    assert snapshot.env_id(observed, state.lock, state.manifest) == state.env_id
    observed["records"]["seconds"] = 99.0  # cost and cache counts are recorded, not hashed
    observed["records"]["cache"] = {"hits": 0, "misses": 1, "written": False}
    assert snapshot.env_id(observed, state.lock, state.manifest) == state.env_id
    observed["records"]["digest"] = "0" * 64
    assert snapshot.env_id(observed, state.lock, state.manifest) != state.env_id
