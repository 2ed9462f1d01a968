"""Small probes, one fact each about the running environment (after Sacred's host info).

Every probe returns a JSON-ready value and never changes anything: no PATH edits, no
installs, no subprocesses. A probe that does not apply returns ``None``.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmo_runner.env import origins
from cosmo_runner.env.lock import canonicalize_name

# Environment variables that change numerics (threads, hashing) or installs (pip).
ENV_ALLOW_PREFIXES = ("OPENBLAS_", "MKL_", "PIP_")
ENV_ALLOW_NAMES = (
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PYTHONPATH",
    "SOURCE_DATE_EPOCH",
    "COSMO_MANIFEST",
)
# Distributions that are tooling, never "extra" to a lock.
TOOLING = frozenset({"pip", "setuptools", "wheel", "cosmo-runner"})


def python() -> dict[str, Any]:
    return {
        "version": sys.version,
        "version_short": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "prefix": sys.prefix,
    }


def os_family() -> str:
    return platform.system().lower()


def libc() -> str | None:
    name, version = platform.libc_ver()
    return f"{name} {version}" if name else None


def installed_distributions() -> dict[str, metadata.Distribution]:
    """PEP 503 name -> the distribution import would see (first on ``sys.path`` wins)."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        found.setdefault(canonicalize_name(name), dist)
    return found


def packages(dists: dict[str, metadata.Distribution]) -> list[str]:
    """Sorted ``name==version`` strings, names normalised as PEP 503 does."""
    return sorted(f"{name}=={dist.version}" for name, dist in dists.items())


def import_paths() -> dict[str, Any]:
    """``sys.path``, the ``.pth`` files ``site`` processed and ``sys.flags`` (env/origins.py)."""
    return origins.import_paths()


def blas() -> dict[str, Any] | None:
    """numpy's BLAS/LAPACK as numpy reports its build (imports numpy; None if it cannot)."""
    try:
        import numpy as np

        config: Any = np.show_config(mode="dicts")
    except Exception:
        return None
    deps: dict[str, Any] = config.get("Build Dependencies", {}) if isinstance(config, dict) else {}
    result: dict[str, Any] = {"numpy": np.__version__}
    for key in ("blas", "lapack"):
        entry = deps.get(key, {})
        result[key] = {k: entry.get(k) for k in ("name", "version") if k in entry}
    return result


def container() -> dict[str, Any]:
    """Whether we run in a container, and the image's build id and base when baked in."""
    markers = [p for p in ("/.dockerenv", "/run/.containerenv") if Path(p).exists()]
    in_container = bool(os.environ.get("COSMO_IN_CONTAINER")) or bool(markers)
    return {
        "in_container": in_container,
        "build_id": os.environ.get("COSMO_BUILD_ID"),
        "base_image": os.environ.get("COSMO_BASE_IMAGE"),
    }


def env_vars() -> dict[str, str]:
    """Allow-listed environment variables only (never the whole environment)."""
    return {
        key: value
        for key, value in sorted(os.environ.items())
        if key in ENV_ALLOW_NAMES or key.startswith(ENV_ALLOW_PREFIXES)
    }


def git_commit() -> str | None:
    """The project's git commit: ``$COSMO_GIT_COMMIT``, else read from a source checkout.

    Handles a linked worktree too: there ``.git`` is a file ``gitdir: PATH``, HEAD lives in
    that directory and the refs in its common directory (``commondir``).
    """
    if os.environ.get("COSMO_GIT_COMMIT"):
        return os.environ["COSMO_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[3]
    git = root / ".git"
    try:
        if git.is_file():
            text = git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir: "):
                return None
            git = (root / text[len("gitdir: ") :]).resolve()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text(encoding="utf-8").strip()).resolve()
        ref = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not ref.startswith("ref: "):
            return ref or None
        ref_name = ref[5:]
        for base in (git, common):
            loose = base / ref_name
            if loose.is_file():
                return loose.read_text(encoding="utf-8").strip()
        for line in (common / "packed-refs").read_text(encoding="utf-8").splitlines():
            if line.endswith(" " + ref_name):
                return line.split(" ", 1)[0]
    except OSError:
        return None
    return None
    return None
