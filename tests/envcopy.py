"""Cheap copies of the test venv to perturb: hard links (``cp -al``), so a copy costs ~0.3 s.

A hard-linked file is shared with the real venv, so a copy must never write into one in
place: :meth:`VenvCopy.replace_file` and :meth:`VenvCopy.edit_same_size` unlink first and
write a new file. Deleting files and folders is safe. Python's own ``.pyc`` writes are safe
too (importlib writes a temporary file and renames it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


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
        subprocess.run(["cp", "-al", str(source), str(target)], check=True)
        self.root = target
        self.python = target / "bin" / "python"
        purelib = Path(sysconfig.get_paths()["purelib"])
        self.site_packages = target / purelib.relative_to(source)

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
