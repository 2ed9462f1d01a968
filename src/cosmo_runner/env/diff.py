"""Compare two recorded environments: load each source into a view, then a pure diff.

A source is a run directory, a ``run_log.json`` (or any JSON with an ``environment``
section, such as ``cosmo-runner env snapshot`` output), a lock file, a manifest, or
``current`` (the live environment). Loading normalises it into an :class:`EnvView`:
sections of facts, each either known (a dict) or unknown for that kind of source (absent).
:func:`diff` compares only what both sides know, so a lock can be diffed against a run.

Plan first, act second: :func:`diff` is pure data; printing is
:mod:`cosmo_runner.triage.report_diff`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosmo_runner.env.probes import TOOLING
from cosmo_runner.errors import ManifestError, UsageError
from cosmo_runner.logread import check_environment, check_run_log, read_document
from cosmo_runner.redact import redact_env
from cosmo_runner.runstate import liveness

CURRENT = "current"
#: What env diff reads of a run log besides its environment (checked by logread).
ENV_DIFF_FIELDS = ("status", "smoke")

# Sections with a fixed set of fields: a key one side does not know is not compared.
FIELD_SECTIONS = ("python", "system", "cpu", "lock", "manifest", "blas", "threadpools", "runner")
# Sections that are maps: a key on one side only is "added" or "removed".
MAP_SECTIONS = ("packages", "manifest_content", "env_vars")
SECTIONS = (
    "python",
    "system",
    "cpu",
    "packages",
    "lock",
    "manifest",
    "manifest_content",
    "env_vars",
    "blas",
    "threadpools",
    "runner",
)


@dataclass(frozen=True)
class EnvView:
    """One environment, normalised. ``sections`` holds only what the source records."""

    source: str
    kind: str  # "run log", "snapshot", "current", "lock", "manifest"
    env_id: str | None
    sections: dict[str, dict[str, Any]]
    git_commit: str | None = None
    status: str | None = None  # a run's status ("succeeded", "failed", ...)
    notes: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "env_id": self.env_id,
            "git_commit": self.git_commit,
            "status": self.status,
            "known": [s for s in SECTIONS if s in self.sections],
        }


@dataclass(frozen=True)
class Difference:
    """One fact that differs; ``None`` on a side means it is absent there."""

    section: str
    key: str
    a: Any
    b: Any

    @property
    def change(self) -> str:
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        return "changed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "key": self.key,
            "a": self.a,
            "b": self.b,
            "change": self.change,
        }


@dataclass(frozen=True)
class EnvDiff:
    """The differences between environments A and B (pure data, JSON-ready via as_dict)."""

    a: EnvView
    b: EnvView
    differences: list[Difference]
    not_compared: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def env_ids_match(self) -> bool | None:
        """True/False when both env ids are known, None when either is not."""
        if self.a.env_id is None or self.b.env_id is None:
            return None
        return self.a.env_id == self.b.env_id

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.differences:
            counts[d.section] = counts.get(d.section, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "env_ids_match": self.env_ids_match,
            "a": self.a.describe(),
            "b": self.b.describe(),
            "differences": [d.as_dict() for d in self.differences],
            "counts": self.counts(),
            "not_compared": self.not_compared,
            "notes": self.notes,
        }


def diff(a: EnvView, b: EnvView) -> EnvDiff:
    """Every difference between two views, over the sections both know, in a stable order."""
    differences: list[Difference] = []
    not_compared: list[str] = []
    for section in SECTIONS:
        left, right = a.sections.get(section), b.sections.get(section)
        against_lock = bool({a.kind, b.kind} & {"lock", "manifest"})
        if section == "packages" and left is not None and right is not None and against_lock:
            left, right = _without_tooling(left), _without_tooling(right)
        if left is None or right is None:
            if left is not None or right is not None:
                not_compared.append(section)
            continue
        keys = (
            sorted(set(left) | set(right))
            if section in MAP_SECTIONS
            else [k for k in left if k in right]
        )
        for key in keys:
            va, vb = left.get(key), right.get(key)
            if va != vb:
                differences.append(Difference(section, key, va, vb))
    notes = [f"A: {n}" for n in a.notes] + [f"B: {n}" for n in b.notes]
    if a.git_commit and b.git_commit and a.git_commit != b.git_commit:
        notes.append(
            f"runner git commit differs: {a.git_commit[:12]} vs {b.git_commit[:12]} "
            "(code, not environment)"
        )
    if a.env_id and a.env_id == b.env_id and any(d.section == "packages" for d in differences):
        notes.append(
            "env ids match but installed packages differ: the env id hashes the lock and "
            "any drift from its pins, not distributions outside the lock (the smoke gate "
            "reports those as extras)"
        )
    return EnvDiff(a, b, differences, not_compared, notes)


def _without_tooling(packages: dict[str, Any]) -> dict[str, Any]:
    """Against a lock, tooling (pip, setuptools, wheel, cosmo-runner) is not compared: locks
    pin it or not depending on the tool (the smoke check's rule for extras too)."""
    return {name: version for name, version in packages.items() if name not in TOOLING}


def diff_sources(a: str, b: str, *, manifest: str | None = None) -> EnvDiff:
    """Load both sources (``manifest`` is used for ``current``) and diff them."""
    return diff(load_view(a, manifest=manifest), load_view(b, manifest=manifest))


# ---------------------------------------------------------------- loading sources


def load_view(source: str, *, manifest: str | None = None) -> EnvView:
    """A run directory, run log, snapshot, lock, manifest or ``current`` as an :class:`EnvView`.

    Anything unreadable or unrecognised raises :class:`UsageError` naming the file.
    """
    if source == CURRENT:
        from cosmo_runner.env.snapshot import capture

        return view_from_environment(capture(manifest).document(), CURRENT, "current")
    path = Path(source)
    if path.is_dir():
        log_path = path / "run_log.json"
        if not log_path.exists() and not log_path.is_symlink():  # a FIFO is refused when read
            raise UsageError(f"{path}: not a run directory (no run_log.json)")
        return _view_from_json(log_path, source)
    if not path.exists():
        raise UsageError(
            f"{path}: no such file or directory (expected a run directory, "
            "run_log.json, lock, manifest or 'current')"
        )
    if path.suffix == ".json":
        return _view_from_json(path, source)
    return view_from_lock(path, source)


def _view_from_json(path: Path, source: str) -> EnvView:
    """A run log or snapshot, checked before it is read (:mod:`cosmo_runner.logread`:
    a malformed one is exit 2 naming the file and field), or a manifest."""
    data = read_document(path)
    if isinstance(data, dict) and "environment" in data:
        kind = "run log" if "run_id" in data else "snapshot"
        if kind == "run log":
            check_run_log(data, path, fields=ENV_DIFF_FIELDS, required=())
        if data["environment"] is None and kind == "run log":
            raise UsageError(f"{path}: the run log has no environment section")
        check_environment(data["environment"], path)
        state = liveness(data) if kind == "run log" and "status" in data else None
        status = state.status if state is not None else None
        view = view_from_environment(data["environment"], source, kind, path=path)
        if status is None:
            return view
        notes = view.notes
        if state is not None and state.lost:
            notes = (*notes, f"the run was lost: {state.reason}")
        if data.get("smoke") and not data["smoke"].get("passed", True):
            notes = (*notes, "the run failed its smoke gate")
        return EnvView(
            view.source, kind, view.env_id, view.sections, view.git_commit, status, notes
        )
    if isinstance(data, dict) and "schema_version" in data and "lock" in data:
        return view_from_manifest(path, source)
    raise UsageError(
        f"{path}: not a run log, snapshot or manifest (no 'environment', or "
        "'schema_version' and 'lock' keys)"
    )


def view_from_environment(
    env: dict[str, Any], source: str, kind: str, *, path: Path | None = None
) -> EnvView:
    """The view of a run log's ``environment`` section (also ``capture().document()``)."""
    try:
        observed = env["observed"]
        py = observed["python"]
        blas = observed.get("blas") or {}
        lock = env.get("lock") or {}
        manifest = env.get("manifest") or {}
        expected = env.get("expected")
        sections: dict[str, dict[str, Any]] = {
            "python": {
                "version": py.get("version_short"),
                "implementation": py.get("implementation"),
                "executable": py.get("executable"),
            },
            "system": {
                "platform": observed.get("platform"),
                "machine": observed.get("machine"),
                "os_family": observed.get("os_family"),
                "libc": observed.get("libc"),
            },
            "packages": _packages(observed.get("packages") or []),
            "lock": {"sha256": lock.get("sha256"), "verdict": lock.get("verdict")},
            "manifest": {"sha256": manifest.get("sha256"), "error": manifest.get("error")},
            "env_vars": redact_env(observed.get("env_vars") or {}),
            "blas": {k: _blas_name(blas.get(k)) for k in ("blas", "lapack")},
            "runner": {"version": (observed.get("runner") or {}).get("version")},
        }
        if isinstance(expected, dict):
            sections["manifest_content"] = _flatten(expected)
        if "cpu" in observed:  # logs from before these probes know neither section
            sections["cpu"] = _cpu(observed["cpu"])
        if "threadpools" in observed:
            sections["threadpools"] = _threadpools(observed["threadpools"])
        runner = observed.get("runner") or {}
    except (KeyError, TypeError, AttributeError) as exc:
        where = path or source
        raise UsageError(f"{where}: not a recorded environment (missing {exc})") from exc
    return EnvView(source, kind, env.get("env_id"), sections, runner.get("git_commit"))


def view_from_lock(path: Path, source: str) -> EnvView:
    """A lock knows its pins and its own sha256, nothing else."""
    from cosmo_runner.env.lock import read_lock

    try:
        lock = read_lock(path)
    except ManifestError as exc:
        raise UsageError(f"{path}: not a readable lock file: {exc.message}") from exc
    if not lock.pins:
        raise UsageError(f"{path}: not a lock file (no 'name==version' pins)")
    return EnvView(
        source, "lock", None, {"packages": dict(lock.pins), "lock": {"sha256": lock.sha256}}
    )


def view_from_manifest(path: Path, source: str) -> EnvView:
    """A manifest knows its content and sha256, its lock's sha256, and the lock's pins."""
    from cosmo_runner.env.lock import read_lock
    from cosmo_runner.env.manifest import load

    try:
        manifest = load(str(path))
    except ManifestError as exc:
        raise UsageError(f"{path}: {exc.message}") from exc
    expected_sha = manifest.data["lock"]["sha256"]
    sections: dict[str, dict[str, Any]] = {
        "manifest": {"sha256": manifest.sha256, "error": None},
        "manifest_content": _flatten(manifest.data),
        "lock": {"sha256": expected_sha},
    }
    notes: tuple[str, ...] = ()
    try:
        lock = read_lock(manifest.lock_path)
    except ManifestError as exc:
        notes = (f"packages not compared: {exc.message}",)
    else:
        if lock.sha256 == expected_sha:
            sections["packages"] = dict(lock.pins)
        else:
            notes = (f"packages not compared: {lock.path} sha256 differs from the manifest's",)
    return EnvView(source, "manifest", None, sections, notes=notes)


def _packages(items: list[str]) -> dict[str, str]:
    packages: dict[str, str] = {}
    for item in items:
        name, _, version = str(item).partition("==")
        packages[name] = version
    return packages


def _cpu(cpu: Any) -> dict[str, Any]:
    cpu = cpu if isinstance(cpu, dict) else {}
    simd = cpu.get("numpy_simd") if isinstance(cpu.get("numpy_simd"), dict) else {}
    return {
        "model": cpu.get("model"),
        "numpy_simd": _words(simd.get("found")),
        "numpy_features": _words(simd.get("enabled")),
    }


def _threadpools(pools: Any) -> dict[str, Any]:
    """numpy's BLAS as loaded. The other libraries are not compared: which are loaded
    depends on what the process imported before the snapshot (scipy brings its own)."""
    pools = pools if isinstance(pools, dict) else {}
    blas = pools.get("numpy_blas") if isinstance(pools.get("numpy_blas"), dict) else {}
    return {
        "blas": " ".join(str(blas[k]) for k in ("internal_api", "version") if blas.get(k)) or None,
        "blas_architecture": blas.get("architecture"),
        "blas_threads": blas.get("num_threads"),
        "blas_threading_layer": blas.get("threading_layer"),
    }


def _words(items: Any) -> str | None:
    if not isinstance(items, list):
        return None
    return " ".join(map(str, items)) if items else "(none)"


def _blas_name(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not entry:
        return None
    return " ".join(str(entry[k]) for k in ("name", "version") if entry.get(k))


def _flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{json pointer: leaf}``; lists are leaves (compared whole)."""
    if not isinstance(document, dict):
        return {prefix or "/": document}
    flat: dict[str, Any] = {}
    for key, value in document.items():
        pointer = f"{prefix}/{str(key).replace('~', '~0').replace('/', '~1')}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, pointer))
        else:
            flat[pointer] = value
    return flat
