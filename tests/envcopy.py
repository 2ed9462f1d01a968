"""Cheap copies of the test venv to perturb: hard links (``cp -al``), so a copy costs ~0.3 s.

A hard-linked file is shared with the real venv, so a copy must never write into one in
place: :meth:`VenvCopy.replace_file` and :meth:`VenvCopy.edit_same_size` unlink first and
write a new file. Deleting files and folders is safe. Python's own ``.pyc`` writes are safe
too (importlib writes a temporary file and renames it).

The gate's RECORD hash cache (``$COSMO_CACHE_DIR``, the session's: tests/conftest.py) is
keyed by path, size, mtime, ctime and inode, and ``cp -al`` changes every linked file's ctime
(its link count), so each copy would hash all ~6 300 locked files afresh in every command
(about 0.4 s of CPU each) and leave the test venv's own cache stale. A copy therefore
carries the cache over (:func:`carry_records_cache`): an entry is kept, with the new ctime,
for a file whose size, mtime and inode are the cached ones, both for the test venv and for
the copy. That is sound only because nothing here writes a file in place: a perturbed file
is a new inode (a miss, hashed afresh), a deleted one is missing, a new one has no entry.
A copy made meanwhile by another pytest-xdist worker changes the ctimes again, so the tests
that make copies are marked :data:`ONE_AT_A_TIME`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from cosmo_runner.env import records
from cosmo_runner.env.lock import read_lock

# The tests that make venv copies share one pytest-xdist worker and run one at a time there
# (``--dist loadgroup``): another worker's ``cp -al`` of the same test venv would change the
# ctimes of the files between a copy's cache carry-over and its commands (a miss for each).
ONE_AT_A_TIME = pytest.mark.xdist_group("venv-copies")


def run_python(
    python: Path,
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """``PYTHON ARGS`` without the caller's ``COSMO_MANIFEST`` and ``PYTHONPATH``, plus ``env``.

    ``python`` is a copy's (:attr:`VenvCopy.python`) or the test venv's own
    (``sys.executable``), for a fault that lies outside the venv (the working directory,
    ``PYTHONPATH``) and needs no copy.
    """
    full_env = {k: v for k, v in os.environ.items() if k not in ("COSMO_MANIFEST", "PYTHONPATH")}
    full_env.update(env or {})
    return subprocess.run(
        [str(python), *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class VenvCopy:
    def __init__(self, target: Path) -> None:
        source = Path(sys.prefix)
        if source == Path(sys.base_prefix):
            raise RuntimeError("the tests must run inside a venv (make dev)")
        purelib = Path(sysconfig.get_paths()["purelib"])
        warm_records_cache(purelib)
        subprocess.run(["cp", "-al", str(source), str(target)], check=True)
        self.root = target
        self.python = target / "bin" / "python"
        self.site_packages = target / purelib.relative_to(source)
        carry_records_cache(purelib, self.site_packages)

    def run(
        self, *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """``<copy>/bin/python ARGS`` (use ``-m cosmo_runner ...``; console scripts point at the original)."""
        return run_python(self.python, *args, cwd=cwd, env=env, timeout=timeout)

    def delete_package(self, top_level: str) -> None:
        """Remove a package folder, keeping its ``.dist-info`` (the metadata still claims it)."""
        shutil.rmtree(self.site_packages / top_level)

    def dist_info(self, name: str) -> Path:
        wanted = name.replace("-", "_").lower()
        for info in self.site_packages.glob("*.dist-info"):
            if info.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower() == wanted:
                return info
        raise FileNotFoundError(f"no dist-info for {name} in {self.site_packages}")

    def replace_file(self, path: Path, data: bytes) -> None:
        """Give ``path`` new content in a new inode (never writes through a hard link)."""
        path.unlink()
        path.write_bytes(data)

    def set_version(self, name: str, version: str) -> None:
        """Rewrite a distribution's METADATA ``Version:`` (metadata drift, files unchanged)."""
        metadata = self.dist_info(name) / "METADATA"
        lines = metadata.read_text(encoding="utf-8").splitlines(keepends=True)
        lines = [f"Version: {version}\n" if line.startswith("Version:") else line for line in lines]
        self.replace_file(metadata, "".join(lines).encode())

    def edit_same_size(self, relative: str, old: bytes, new: bytes) -> Path:
        """Replace ``old`` by ``new`` (same length) in a site-packages file; restore its mtime."""
        assert len(old) == len(new)
        path = self.site_packages / relative
        stat = path.stat()
        data = path.read_bytes()
        assert data.count(old) >= 1, f"{old!r} not in {path}"
        self.replace_file(path, data.replace(old, new, 1))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert path.stat().st_size == stat.st_size
        return path


# records' cache class is private on purpose: the test helper re-keys what the gate wrote, a
# seam for hard-linked copies that no caller outside the tests has
def warm_records_cache(site: Path) -> None:
    """Hash the test venv's locked distributions into the cache (the ones the gate checks),
    once: when it has no entry for the test venv yet."""
    directory = records.cache_dir()
    if directory is None or records._Cache(directory, str(site)).old["files"]:
        return
    lock = read_lock(Path(__file__).resolve().parents[1] / "requirements.lock.txt")
    dists: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=[str(site)]):
        dists.setdefault(records.normalize(dist.metadata["Name"]), dist)
    records.verify([*lock.pins, *lock.unevaluated], dists, cache=directory, sites=[site])


def carry_records_cache(site: Path, copy_site: Path) -> None:
    """The test venv's cached RECORD hashes, re-keyed with the ctimes ``cp -al`` gave them,
    for the test venv and for its copy at ``copy_site`` (see the module's docstring)."""
    directory = records.cache_dir()
    if directory is None:
        return
    original = records._Cache(directory, str(site))
    copy = records._Cache(directory, str(copy_site))
    for rel, entry in original.old["files"].items():
        if type(entry) is not list or len(entry) != 5:
            continue
        size, mtime_ns, _ctime_ns, inode, value = entry
        try:
            st = os.stat(copy_site / rel)  # the same inode as the test venv's file
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns, st.st_ino) == (size, mtime_ns, inode):
            original.new["files"][rel] = [*records._stat_key(st), value]
            if not os.path.isabs(rel):  # outside site-packages (bin/): keyed by its full path
                copy.new["files"][rel] = original.new["files"][rel]
    original.new["bytecode"] = original.old["bytecode"]  # keyed by .pyc: left as they were
    original.dirty = copy.dirty = True
    original.save()
    copy.save()
