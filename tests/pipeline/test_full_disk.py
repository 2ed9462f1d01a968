"""A full disk is a documented outcome, never a crash: a small tmpfs filled to several sizes.

Each run ends either with exit 2 and nothing written (not even the first log fits), or with
a complete, schema-valid log that is not ``running`` (exit 5 naming the file and the
reason, no partial output of a failed analysis left; or exit 0 when everything fits).
Needs root for ``mount -t tmpfs``; skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import InProcess, load_log

pytestmark = pytest.mark.slow

NO_SPACE = "no space left on device"
FREE_SIZES = [0, 4 << 10, 12 << 10, 40 << 10, 100 << 10, 200 << 10, 400 << 10, 6 << 20]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs mounted at a fresh folder, always unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill_leaving(disk: Path, free: int) -> None:
    """Fill ``disk`` so that exactly ``free`` bytes stay available."""
    for entry in disk.iterdir():
        subprocess.run(["rm", "-rf", str(entry)], check=True)
    stats = os.statvfs(disk)
    left = stats.f_bavail * stats.f_frsize - free
    with (disk / "filler").open("wb") as handle:
        while left > 0:
            left -= handle.write(b"x" * min(left, 1 << 20))
    stats = os.statvfs(disk)
    assert stats.f_bavail * stats.f_frsize == free


def _check_outcome(out: Path, proc: subprocess.CompletedProcess[str]) -> None:
    code = proc.returncode
    assert code in (0, 2, 5), (code, proc.stderr)  # never 1, never anything undocumented
    if code == 2:
        assert proc.stderr == f"cosmo-runner: error: no room for the run log in {out}: {NO_SPACE}\n"
        assert proc.stdout == ""
        assert not out.exists()  # nothing at all: no half-written or `running` log
        return
    log = load_log(out)
    hidden = [p.name for p in out.rglob(".*")]
    assert hidden == []  # no temp file, reserve or claim file left
    for record in log["outputs"]:
        data = (out / record["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (record["bytes"], record["sha256"])
    if code == 0:
        assert log["status"] == "succeeded" and proc.stderr == ""
        return
    assert log["status"] == "failed" and log["exit_code"] == 5
    assert NO_SPACE in log["error"]["message"]
    line = proc.stderr.strip()
    assert proc.stderr.count("\n") == 1 and line.startswith("cosmo-runner: error: ")
    assert f"cannot write {out}/" in line and line.endswith((NO_SPACE, "more)")), line
    for analysis in log["analyses"]:
        if analysis["status"] != "succeeded":
            assert analysis["result"] is None and analysis["plots"] == []
            leftovers = [p.name for p in out.rglob(f"{analysis['id']}.*")]
            assert leftovers == [], (analysis["id"], leftovers)


def test_full_disk_at_several_free_sizes(example: Path, small_disk: Path, cli: InProcess) -> None:
    codes: dict[int, int] = {}
    for free in FREE_SIZES:
        _fill_leaving(small_disk, free)
        out = small_disk / "out"
        proc = cli("run", example, "--out", out)
        _check_outcome(out, proc)
        codes[free] = proc.returncode
    assert codes[0] == 2 and codes[FREE_SIZES[-1]] == 0, codes
    assert 5 in codes.values(), codes  # some size lets the log in but not every output
