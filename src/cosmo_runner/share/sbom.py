"""A CycloneDX SBOM (JSON, spec 1.6) of an environment, as a run recorded it or as it is now.

Made with ``cyclonedx-python-lib`` from an environment document (a run log's
``environment``, or :func:`cosmo_runner.env.snapshot.capture`'s for ``env sbom``):

- the BOM's subject (``metadata.component``) is the environment itself, named by its env
  id, with the lock (path, sha256, drift verdict) and, for a run, the run id as properties;
- Python itself is a ``platform`` component (implementation and version) whose properties
  are the OS family, platform string, machine and libc;
- every recorded package (``observed.packages``) is a ``library`` component with its
  version and a ``pkg:pypi/<name>@<version>`` purl.

No file hash is claimed that cannot be attributed: the lock allows several files per pin
(a wheel per platform and Python) and pip does not record which one it installed, so a
component carries no ``hashes``. Instead its properties hold what is known: each ``Tag:``
of the installed distribution's WHEEL file (``cosmo-runner:wheel:tag``) and every sha256
the lock allows for that pin (``cosmo-runner:lock:sha256``), read from the lock the run
recorded only when that file still has the recorded sha256 (else the package data copy
installed with cosmo-runner when it has; else none, and ``cosmo-runner:lock:hashes`` on the
subject says why).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmo_runner import __version__
from cosmo_runner.errors import CosmoError

if TYPE_CHECKING:
    from cyclonedx.model.bom import Bom

#: The CycloneDX specification version written.
SPEC_VERSION = "1.6"
PROPERTY_PREFIX = "cosmo-runner:"


@dataclass(frozen=True)
class LockHashes:
    """The sha256 sets the lock allows per ``(name, version)``, and where they came from.

    ``hashes`` None: not available, ``source`` says why.
    """

    hashes: dict[tuple[str, str], tuple[str, ...]] | None
    source: str


def lock_hashes(environment: dict[str, Any]) -> LockHashes:
    """The allowed hashes of the lock ``environment`` recorded, from a file whose sha256 is
    the recorded one: the recorded path, else the copy installed with the package."""
    from importlib import resources

    from cosmo_runner.env.lock import pin_hashes

    lock = environment.get("lock") or {}
    expected = lock.get("sha256")
    if not isinstance(expected, str):
        return LockHashes(None, "not available: the environment records no lock sha256")
    candidates: list[Path] = []
    if isinstance(lock.get("path"), str):
        candidates.append(Path(lock["path"]))
    packaged = resources.files("cosmo_runner").joinpath("data", "requirements.lock.txt")
    candidates.append(Path(str(packaged)))
    for path in candidates:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != expected:
            continue
        try:
            return LockHashes(pin_hashes(data.decode("utf-8"), str(path)), f"from {path}")
        except UnicodeDecodeError as exc:
            return LockHashes(None, f"not available: {path}: not UTF-8 ({exc.reason})")
        except CosmoError as exc:  # a line that is not an exact pin (ManifestError)
            return LockHashes(None, f"not available: {exc}")
    return LockHashes(
        None, f"not available: no lock file with the recorded sha256 {expected} was found"
    )


def _split(package: str) -> tuple[str, str | None]:
    name, sep, version = package.partition("==")
    return name.strip(), (version.strip() or None) if sep else None


def build_bom(
    environment: dict[str, Any],
    hashes: LockHashes,
    *,
    run_id: str | None = None,
) -> Bom:
    """The CycloneDX :class:`~cyclonedx.model.bom.Bom` of ``environment`` (see the module
    docstring); pure apart from the BOM's serial number and timestamp."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    def props(pairs: Iterable[tuple[str, Any]]) -> list[Property]:
        return [
            Property(name=PROPERTY_PREFIX + key, value=str(value))
            for key, value in pairs
            if value not in (None, "")
        ]

    observed = environment.get("observed") or {}
    python = observed.get("python") or {}
    lock = environment.get("lock") or {}
    env_id = environment.get("env_id") or "unknown"
    wheel_tags = observed.get("wheel_tags")
    subject_props = [
        ("env_id", env_id),
        ("run_id", run_id),
        ("lock:path", lock.get("path")),
        ("lock:sha256", lock.get("sha256")),
        ("lock:verdict", lock.get("verdict")),
        ("lock:hashes", hashes.source),
    ]
    if not isinstance(wheel_tags, dict):
        subject_props.append(("wheel:tags", "not recorded (the environment predates them)"))
        wheel_tags = {}
    subject = Component(
        name="cosmo-runner environment",
        version=env_id,
        type=ComponentType.APPLICATION,
        bom_ref="environment",
        description="the Python environment a cosmo-runner run used"
        if run_id
        else "a Python environment, as cosmo-runner env sbom observed it",
        properties=props(subject_props),
    )
    runtime = Component(
        name=str(python.get("implementation") or "Python"),
        version=python.get("version_short"),
        type=ComponentType.PLATFORM,
        bom_ref="python",
        description=python.get("version"),
        properties=props(
            [
                ("os_family", observed.get("os_family")),
                ("platform", observed.get("platform")),
                ("machine", observed.get("machine")),
                ("libc", observed.get("libc")),
                ("python:executable", python.get("executable")),
            ]
        ),
    )
    packages = []
    for entry in observed.get("packages") or []:
        name, version = _split(str(entry))
        purl = PackageURL(type="pypi", name=name, version=version)
        allowed = hashes.hashes.get((name, version or "")) if hashes.hashes is not None else None
        pairs: list[tuple[str, Any]] = [("wheel:tag", tag) for tag in wheel_tags.get(name) or []]
        if hashes.hashes is not None:
            pairs.append(("lock:pin", f"{name}=={version}" if allowed else "not in the lock"))
            pairs += [("lock:sha256", digest) for digest in allowed or ()]
        packages.append(
            Component(
                name=name,
                version=version,
                type=ComponentType.LIBRARY,
                purl=purl,
                bom_ref=purl.to_string(),
                properties=props(pairs),
            )
        )
    from cyclonedx.model.tool import ToolRepository

    tools = ToolRepository(
        components=[
            Component(name="cosmo-runner", version=__version__, type=ComponentType.APPLICATION)
        ]
    )
    bom = Bom(
        components=[runtime, *packages],
        metadata=BomMetaData(component=subject, tools=tools),
    )
    bom.register_dependency(subject, [runtime, *packages])
    return bom


def sbom_text(environment: dict[str, Any], *, run_id: str | None = None) -> str:
    """The environment's SBOM as CycloneDX 1.6 JSON text (indented, trailing newline)."""
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    from cosmo_runner.redact import redact_document

    environment = redact_document(environment)  # as every output; a no-op for a new log
    bom = build_bom(environment, lock_hashes(environment), run_id=run_id)
    outputter = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6)
    return outputter.output_as_string(indent=2) + "\n"


#: What the SBOM reads of a run log's environment beyond logread's shape.
_WHEEL_TAGS_SHAPE: dict[str, Any] = {
    "type": ["object", "null"],
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


def read_run_environment(run_dir: Path) -> tuple[dict[str, Any], str]:
    """The environment and run id a run recorded, checked like every log reader checks.

    :class:`~cosmo_runner.errors.UsageError` (exit 2) when ``run_dir`` is not a run folder
    or its log holds no environment; :class:`~cosmo_runner.errors.FileError` (exit 2)
    naming the field of a malformed log.
    """
    from cosmo_runner.errors import FileError, UsageError
    from cosmo_runner.logread import check_run_log, read_document
    from cosmo_runner.runlog import LOG_NAME
    from cosmo_runner.schemas import problems_against

    log_path = run_dir / LOG_NAME
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run folder (not a directory)")
    if not log_path.is_file():
        raise UsageError(f"{run_dir}: not a run folder (no {LOG_NAME})")
    log = check_run_log(read_document(log_path), log_path, fields=("run_id", "status"))
    environment = log.get("environment")
    if not isinstance(environment, dict):
        raise FileError(str(log_path), ["/environment: the run recorded no environment"])
    tags = (environment.get("observed") or {}).get("wheel_tags")
    problems = problems_against(_WHEEL_TAGS_SHAPE, tags)
    if problems:
        where = "/environment/observed/wheel_tags"
        parts = [p.partition(": ") for p in problems]
        raise FileError(
            str(log_path), [f"{where}{'' if at == '/' else at}: {m}" for at, _, m in parts]
        )
    return environment, str(log["run_id"])


def export_run_sbom(run_dir: Path, out: Path) -> Path:
    """``cosmo-runner export RUN --format cyclonedx --out FILE``: write the SBOM of the
    environment the run recorded (an OSError is an ``OutputWriteError``, exit 5)."""
    from cosmo_runner.runlog import write_atomic

    environment, run_id = read_run_environment(run_dir)
    write_atomic(out, sbom_text(environment, run_id=run_id).encode("utf-8"))
    return out
