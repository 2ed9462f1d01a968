"""A copy of the working tree as a Docker build context (used by the docker tests and bench).

What git tracks or would track (so ignored clutter stays out, as in a fresh clone), plus the
wheelhouse's wheels, hard-linked when possible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_context(dest: Path, root: Path = ROOT) -> Path:
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = root / rel
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    wheelhouse = dest / "docker" / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for wheel in (root / "docker" / "wheelhouse").glob("*.whl"):
        try:
            os.link(wheel, wheelhouse / wheel.name)
        except OSError:
            shutil.copy2(wheel, wheelhouse / wheel.name)
    return dest
