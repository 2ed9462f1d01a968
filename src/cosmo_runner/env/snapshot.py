"""The environment snapshot: what the manifest expects and what this interpreter observes.

The document written into every run log (``environment``) and printed by
``cosmo-runner env snapshot``. Field names are a contract (see run_log.schema.json):
``environment.observed.python.version``, ``.python.executable``, ``.platform``,
``.machine``, ``.packages``, ``environment.expected`` and ``environment.env_id``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmo_runner import __version__
from cosmo_runner.env import distmeta, origins, probes, records
from cosmo_runner.env.lock import Lock, read_lock
from cosmo_runner.env.manifest import Manifest, load, locate
from cosmo_runner.errors import ManifestError

ENV_ID_LENGTH = 16


@dataclass
class EnvironmentState:
    """Everything observed once per command; the smoke checks and the snapshot share it."""

    manifest: Manifest | None
    manifest_error: str | None
    manifest_path: Path
    manifest_source: str
    lock: Lock | None
    lock_error: str | None
    distributions: dict[str, metadata.Distribution]
    observed: dict[str, Any] = field(default_factory=dict)
    records: records.Records | None = None  # installed files against RECORD (no lock: None)

    @property
    def env_id(self) -> str:
        drift = lock_drift(self.lock, self.distributions) if self.lock else []
        return env_id(self.observed, self.lock, self.manifest, drift)

    def lock_verdict(self) -> dict[str, Any]:
        """Lock path, sha256 and a drift verdict of the installed packages against it."""
        if self.lock is None:
            return {
                "path": None,
                "sha256": None,
                "expected_sha256": None,
                "verdict": "missing",
                "drift": [],
                "error": self.lock_error,
            }
        expected = self.manifest.data["lock"]["sha256"] if self.manifest else None
        drift = lock_drift(self.lock, self.distributions)
        verdict = "drifted" if drift else "in-sync"
        if expected is not None and expected != self.lock.sha256:
            verdict = "lock-changed"
        return {
            "path": str(self.lock.path),
            "sha256": self.lock.sha256,
            "expected_sha256": expected,
            "verdict": verdict,
            "drift": drift,
            "error": None,
        }

    def document(self) -> dict[str, Any]:
        """The ``environment`` section of a run log (JSON-ready)."""
        return {
            "env_id": self.env_id,
            "expected": self.manifest.data if self.manifest else None,
            "observed": self.observed,
            "manifest": {
                "path": str(self.manifest_path),
                "source": self.manifest_source,
                "sha256": self.manifest.sha256 if self.manifest else None,
                "error": self.manifest_error,
            },
            "lock": self.lock_verdict(),
        }


def lock_drift(lock: Lock, dists: dict[str, metadata.Distribution]) -> list[dict[str, Any]]:
    """Pins whose installed version differs (or that are missing): name, locked, installed.

    Only the pins whose marker holds for this interpreter count; a pin whose marker could not
    be evaluated (no ``packaging``) counts only when something else is installed under its
    name, with ``locked`` listing the candidates (``"1.0 or 2.0"``).
    """
    drift = []
    for name, locked in sorted(lock.pins.items()):
        dist = dists.get(name)
        installed = dist.version if dist is not None else None
        if installed != locked:
            drift.append({"name": name, "locked": locked, "installed": installed})
    for name, candidates in sorted(lock.unevaluated.items()):
        dist = dists.get(name)
        if dist is not None and dist.version not in candidates:
            drift.append(
                {"name": name, "locked": " or ".join(candidates), "installed": dist.version}
            )
    return sorted(drift, key=lambda item: str(item["name"]))


# Environment variables whose values are hashed into the env id: each selects different
# numeric kernels in the same build (numpy's SIMD dispatch, OpenBLAS's core type, MKL's
# conditional numerical reproducibility and instruction set). Every other variable, thread
# counts included, is recorded and diffed but not hashed (Dask's nanny sets
# OMP_NUM_THREADS=1 in its workers; the same results must keep the same env id).
ENV_ID_VARIABLES = (
    "NPY_DISABLE_CPU_FEATURES",
    "OPENBLAS_CORETYPE",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
)

# What identifies the loaded BLAS in the env id: not its path (venvs differ) or threads.
BLAS_ID_FIELDS = ("internal_api", "version", "architecture")


def env_id_inputs(
    observed: dict[str, Any],
    lock: Lock | None,
    manifest: Manifest | None,
    drift: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Exactly what the env id hashes (the README's env-id section lists it with reasons).

    Lock and manifest sha256, Python implementation and version, OS family and libc,
    machine; installed packages that differ from the lock (``drift``, so a drifted
    environment never shares the env id of the one its lock describes); the RECORD digest
    of the installed files (``observed["records"]["digest"]``, None where not checked); the
    BLAS numpy calls, as loaded (threadpoolctl's name, version and architecture, not its
    thread count or path); and the values of :data:`ENV_ID_VARIABLES`. Not the kernel, the
    host name, the CPU model, thread counts or any other variable.
    """
    pools = observed.get("threadpools") or {}
    numpy_blas = pools.get("numpy_blas") or {}
    checked = observed.get("records") or {}
    env_vars = observed.get("env_vars") or {}
    decisive: dict[str, Any] = {
        "lock_sha256": lock.sha256 if lock else None,
        "manifest_sha256": manifest.sha256 if manifest else None,
        "python_implementation": observed["python"]["implementation"],
        "python_version": observed["python"]["version_short"],
        "os_family": observed["os_family"],
        "libc": observed["libc"],
        "machine": observed["machine"],
        "records_digest": checked.get("digest"),
        "blas_loaded": {key: numpy_blas.get(key) for key in BLAS_ID_FIELDS},
        "env_vars": {name: env_vars.get(name) for name in ENV_ID_VARIABLES},
    }
    if drift:
        decisive["drift"] = drift
    return decisive


def env_id(
    observed: dict[str, Any],
    lock: Lock | None,
    manifest: Manifest | None,
    drift: list[dict[str, Any]] | None = None,
) -> str:
    """Short content hash of :func:`env_id_inputs` (canonical JSON, sha256, 16 hex digits)."""
    decisive = env_id_inputs(observed, lock, manifest, drift)
    canonical = json.dumps(decisive, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:ENV_ID_LENGTH]


def observe(dists: dict[str, metadata.Distribution], *, with_numpy: bool = True) -> dict[str, Any]:
    """The ``observed`` part: facts about this interpreter and machine, from the probes.

    ``with_numpy`` False skips the probes that import numpy (BLAS, thread pools, SIMD).
    """
    return {
        "python": probes.python(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "os_family": probes.os_family(),
        "libc": probes.libc(),
        "cpu_count": os.cpu_count(),
        "cpu": {
            "model": probes.cpu_model(),
            "numpy_simd": probes.numpy_simd() if with_numpy else None,
        },
        "packages": probes.packages(dists),
        "pip_version": dists["pip"].version if "pip" in dists else None,
        "blas": probes.blas() if with_numpy else None,
        "threadpools": probes.threadpools() if with_numpy else None,
        "container": probes.container(),
        "env_vars": probes.env_vars(),
        "import_paths": probes.import_paths(),
        "wheel_tags": distmeta.all_wheel_tags(dists),
        "runner": {"version": __version__, "git_commit": probes.git_commit()},
    }


def capture(
    manifest_arg: str | None = None, cwd: Path | None = None, *, deep: bool = False
) -> EnvironmentState:
    """Observe the environment once. Never raises for a bad manifest or lock: it records them.

    The locked distributions' files are verified against their RECORD here (``deep``: their
    bytecode too), since the digest is part of the env id.
    """
    manifest_path, source = locate(manifest_arg, cwd)
    manifest: Manifest | None = None
    manifest_error = lock_error = None
    lock: Lock | None = None
    try:
        manifest = load(manifest_arg, cwd)
        manifest_path = manifest.path
    except ManifestError as exc:
        manifest_error = exc.message
    if manifest is not None:
        try:
            lock = read_lock(manifest.lock_path)
        except ManifestError as exc:
            lock_error = exc.message
    dists = probes.installed_distributions()
    state = EnvironmentState(
        manifest, manifest_error, manifest_path, source, lock, lock_error, dists
    )
    if lock is not None:
        names = [*lock.pins, *lock.unevaluated]  # an unevaluated pin is checked if installed
        state.records = records.verify(names, dists, cache=records.cache_dir(), deep=deep)
    # The probes that import numpy (and threadpoolctl) run only when both resolve inside the
    # environment: a shadowing numpy/ must fail the gate without its code ever running.
    trusted = all(origin.inside for origin in origins.resolve(["numpy", "threadpoolctl"]))
    state.observed = observe(dists, with_numpy=trusted)
    state.observed["records"] = state.records.summary() if state.records else None
    return state
