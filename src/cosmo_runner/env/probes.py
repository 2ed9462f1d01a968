"""Small probes, one fact each about the running environment (after Sacred's host info).

Every probe returns a JSON-ready value and never changes anything: no PATH edits, no
installs, no subprocesses. A probe that does not apply returns ``None``.
"""

from __future__ import annotations

import functools
import importlib
import os
import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmo_runner.env import origins
from cosmo_runner.env.lock import canonicalize_name
from cosmo_runner.redact import redact_env

# Environment variables recorded in the snapshot (values redacted, see cosmo_runner.redact):
# what changes numerics (threads, BLAS kernels, numpy's CPU dispatch, hashing, locale and
# time zone, preloaded or searched shared libraries), plotting (matplotlib) and installs (pip).
ENV_ALLOW_PREFIXES = ("NPY_", "MPL", "PYTHON", "OMP_", "OPENBLAS_", "MKL_", "PIP_")
ENV_ALLOW_NAMES = (
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LC_ALL",
    "LANG",
    "TZ",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
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


class ObservedDistribution(metadata.Distribution):
    """An installed distribution whose METADATA is read and parsed once per observation.

    importlib.metadata parses METADATA (with the email parser, about 4 ms) at every
    ``.metadata``, ``.version`` and ``.requires``; one gate asked for the lock's 110 pins'
    versions five times over (the drift verdict, the env id, the package and requirement
    checks), about 1 s of CPU per run. Files other than METADATA are read as asked.
    """

    def __init__(self, dist: metadata.Distribution) -> None:
        self._dist = dist

    def read_text(self, filename: str) -> str | None:
        return self._dist.read_text(filename)

    def locate_file(self, path: str | os.PathLike[str]) -> Any:  # typeshed: a private protocol
        return self._dist.locate_file(path)

    @functools.cached_property
    def metadata(self) -> metadata.PackageMetadata:
        return self._dist.metadata


def installed_distributions() -> dict[str, metadata.Distribution]:
    """PEP 503 name -> the distribution import would see (first on ``sys.path`` wins)."""
    found: dict[str, metadata.Distribution] = {}
    for found_dist in metadata.distributions():
        dist = ObservedDistribution(found_dist)
        try:
            names = dist.metadata.get_all("Name") or []  # [] for an empty dist-info, no warning
        except FileNotFoundError:  # the importlib_metadata backport's finder (dask loads it)
            continue  # raises MetadataNotFound for an empty dist-info instead
        if not names or not names[0]:
            continue
        found.setdefault(canonicalize_name(names[0]), dist)
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


THREADPOOL_FIELDS = (
    "user_api",
    "internal_api",
    "prefix",
    "filepath",
    "version",
    "architecture",
    "threading_layer",
    "num_threads",
)
# Folders where wheel repair tools put a package's own shared libraries (auditwheel,
# delocate, delvewheel): ``<site>/numpy.libs``, ``<site>/numpy/.dylibs``.
VENDORED_LIB_DIRS = (".libs", ".dylibs")


def threadpools() -> dict[str, Any] | None:
    """The BLAS and OpenMP libraries loaded in this process (threadpoolctl), after numpy.

    ``libraries``: every one threadpoolctl finds, sorted by path, with API, version,
    architecture (OpenBLAS's kernel choice for this CPU) and thread count.
    ``numpy_blas``: the entry of the BLAS numpy itself calls (see :func:`numpy_blas`), or
    None. The other entries depend on what the process imported before (scipy's own
    OpenBLAS appears once scipy.linalg is imported), so they are recorded, not compared.
    ``error``: why threadpoolctl failed, if it did. None when threadpoolctl cannot be
    imported. Imports numpy (which loads its BLAS).
    """
    try:
        import numpy  # loads numpy's BLAS, so that threadpoolctl sees it
    except Exception:
        numpy_dir = None
    else:
        numpy_dir = Path(numpy.__file__).resolve().parent
    try:
        import threadpoolctl
    except ImportError:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = threadpoolctl.threadpool_info()
    except Exception as exc:  # a probe records, never breaks the snapshot
        return {
            "libraries": [],
            "numpy_blas": None,
            "warnings": [],
            "error": f"{type(exc).__name__}: {exc}",
        }
    libraries = sorted(
        ({key: lib.get(key) for key in THREADPOOL_FIELDS} for lib in info),
        key=lambda lib: str(lib["filepath"]),
    )
    return {
        "libraries": libraries,
        "numpy_blas": numpy_blas(libraries, numpy_dir),
        "warnings": [str(w.message) for w in caught],
        "error": None,
    }


def numpy_blas(libraries: list[dict[str, Any]], numpy_dir: Path | None) -> dict[str, Any] | None:
    """Which loaded BLAS is numpy's: the one inside numpy's own folders (a wheel's
    ``numpy.libs`` or ``numpy/.dylibs``); else, for a numpy linked to a system or conda
    BLAS, the first one not vendored by another package (scipy's wheel brings its own,
    loaded only once scipy.linalg is imported, so it must not decide the env id)."""
    if numpy_dir is None:
        return None
    blas = [lib for lib in libraries if lib.get("user_api") == "blas" and lib.get("filepath")]
    own_dirs = (numpy_dir, numpy_dir.parent / f"{numpy_dir.name}.libs")

    def path(lib: dict[str, Any]) -> Path:
        return Path(os.path.realpath(str(lib["filepath"])))

    own = [lib for lib in blas if any(path(lib).is_relative_to(d) for d in own_dirs)]
    system = [lib for lib in blas if not path(lib).parent.name.endswith(VENDORED_LIB_DIRS)]
    chosen = (own or system)[:1]
    if not chosen:
        return None
    return dict(chosen[0])


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU model: /proc/cpuinfo's "model name" (Linux x86), else ``platform.processor()``
    (empty on many Linux machines, then None)."""
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, sep, value = line.partition(":")
                if sep and key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def numpy_simd() -> dict[str, list[str]] | None:
    """numpy's CPU features at run time, as ``numpy.show_runtime()`` reports them.

    ``show_runtime()`` only prints, so this reads the same source it does (the private
    ``numpy._core._multiarray_umath`` attributes ``__cpu_baseline__``, ``__cpu_dispatch__``
    and ``__cpu_features__``) and keeps its field names: ``baseline`` (compiled in),
    ``found`` and ``not_found`` (the dispatch targets this CPU enables or lacks, after
    ``NPY_DISABLE_CPU_FEATURES``). None without numpy or those attributes.
    """
    try:
        try:
            umath: Any = importlib.import_module("numpy._core._multiarray_umath")
        except ImportError:  # numpy < 2
            umath = importlib.import_module("numpy.core._multiarray_umath")
        baseline = [str(f) for f in umath.__cpu_baseline__]
        dispatch = [str(f) for f in umath.__cpu_dispatch__]
        features = {str(k): bool(v) for k, v in umath.__cpu_features__.items()}
    except Exception:
        return None
    return {
        "baseline": baseline,
        "found": [f for f in dispatch if features.get(f)],
        "not_found": [f for f in dispatch if not features.get(f)],
        "enabled": [f for f, on in features.items() if on],
    }


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
    """Allow-listed environment variables only (never the whole environment), redacted."""
    return redact_env(
        {
            key: value
            for key, value in sorted(os.environ.items())
            if key in ENV_ALLOW_NAMES or key.startswith(ENV_ALLOW_PREFIXES)
        }
    )


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
