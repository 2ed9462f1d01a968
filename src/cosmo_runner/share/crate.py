"""A run as an RO-Crate: ``cosmo-runner export RUN --format ro-crate --out DIR [--zip]``.

Made with the ``rocrate`` library, conforming to the Process Run Crate profile 0.5
(https://w3id.org/ro/wfrun/process/0.5) on RO-Crate 1.1:

- the root dataset names the spec, ``conformsTo`` the profile and ``mentions`` the action;
- one ``CreateAction`` for the run (``#run-<run_id>``): ``startTime``, ``endTime``,
  ``actionStatus`` (``CompletedActionStatus``, or ``FailedActionStatus`` with ``error``,
  the log's error message), ``instrument`` the software, ``object`` the inputs and the
  spec, ``result`` the results, plots and report, ``subjectOf`` the run log;
- the instrument, a ``SoftwareApplication`` ``cosmo-runner`` with ``softwareVersion``, the
  env id as an ``additionalProperty`` (a ``PropertyValue``) and ``subjectOf`` the
  environment's CycloneDX SBOM (``sbom.cdx.json``, :mod:`.sbom`), which is ``about`` it;
- every file a ``File`` with ``sha256`` and ``contentSize`` (bytes, as a string) and
  ``encodingFormat``.

The crate holds copies: the run directory's files at the same relative paths, and each
input under ``inputs/<id>/<file name>``. A file is copied only when its bytes have the
sha256 the log recorded; an input or output that is missing or changed since the run is
an error naming it (exit 2), as for ``verify``: a crate never describes other bytes than
the run's. The crate is written into a temporary sibling and renamed into place, so a
failed export leaves nothing; ``DIR`` must not exist or be empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosmo_runner import __version__
from cosmo_runner.errors import FileError, OutputDirError, OutputWriteError, UsageError
from cosmo_runner.readfile import read_regular
from cosmo_runner.runlog import LOG_NAME

PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
PROFILE_NAME = "Process Run Crate"
PROFILE_VERSION = "0.5"
SBOM_NAME = "sbom.cdx.json"
#: The log fields the crate reads, checked against run_log.schema.json first.
CRATE_FIELDS = (
    "run_id",
    "status",
    "exit_code",
    "started_at",
    "finished_at",
    "spec",
    "inputs",
    "analyses",
    "outputs",
    "error",
)
_STATUS = {
    "succeeded": "http://schema.org/CompletedActionStatus",
    "failed": "http://schema.org/FailedActionStatus",
    "interrupted": "http://schema.org/FailedActionStatus",
}
_FORMATS = {
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".html": "text/html",
    ".csv": "text/csv",
}


@dataclass(frozen=True)
class _Member:
    """One file of the crate: where its bytes are now, where they go, what it is."""

    source: Path
    dest: str
    sha256: str
    size: int
    name: str


def _member(source: Path, dest: str, name: str, expected: str | None, what: str) -> _Member:
    """The file ``source`` for the crate, checked against the sha256 the log recorded."""
    try:
        data = read_regular(source)
    except FileError as exc:
        raise UsageError(f"{what} {source}: {exc.problems[0]}; the crate cannot hold it") from exc
    digest = hashlib.sha256(data).hexdigest()
    if expected is not None and digest != expected:
        raise UsageError(
            f"{what} {source}: changed since the run (sha256 {digest}, the log records "
            f"{expected}); the crate cannot hold the run's bytes"
        )
    return _Member(source, dest, digest, len(data), name)


def _inside(run_dir: Path, rel: str) -> Path:
    path = (run_dir.resolve() / rel).resolve()
    if not path.is_relative_to(run_dir.resolve()):
        raise UsageError(f"{run_dir}: {rel}: outside the run folder; the log was edited")
    return path


def read_run(run_dir: Path) -> dict[str, Any]:
    """The finished run's log, checked (exit 2 for what is not a finished run's folder)."""
    from cosmo_runner.logread import check_run_log, read_document

    log_path = run_dir / LOG_NAME
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a run folder (not a directory)")
    if not log_path.is_file():
        raise UsageError(f"{run_dir}: not a run folder (no {LOG_NAME})")
    log = check_run_log(read_document(log_path), log_path, fields=CRATE_FIELDS)
    if log["status"] not in _STATUS:
        raise UsageError(
            f"{run_dir}: the run is {log['status']}, not finished; export a finished run"
        )
    return log


def build_crate(run_dir: Path, log: dict[str, Any], sbom: Path) -> Any:
    """The :class:`rocrate.rocrate.ROCrate` of the run (nothing written yet)."""
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    spec = log.get("spec") or {}
    inputs = [
        _member(
            Path(item["resolved"]),
            f"inputs/{item['id']}/{Path(item['resolved']).name}",
            f"input {item['id']}",
            item.get("sha256"),
            f"input {item['id']!r}:",
        )
        for item in log.get("inputs") or []
    ]
    spec_member = _member(
        _inside(run_dir, "spec.json"), "spec.json", "run spec", spec.get("sha256"), "spec copy"
    )
    outputs = [
        _member(_inside(run_dir, o["path"]), o["path"], o["path"], o["sha256"], "output")
        for o in log.get("outputs") or []
    ]
    report = run_dir / "report.html"
    if report.is_file():
        outputs.append(_member(report, "report.html", "report", None, "report"))
    log_member = _member(run_dir / LOG_NAME, LOG_NAME, "run log", None, "run log")
    sbom_member = _member(sbom, SBOM_NAME, "environment SBOM (CycloneDX)", None, "sbom")

    crate = ROCrate()
    root = crate.root_dataset
    root["name"] = f"cosmo-runner run {log['run_id']}: {spec.get('name') or 'unnamed spec'}"
    root["description"] = (
        f"A cosmo-runner run of the spec {spec.get('name')!r}: {log['status']} "
        f"(exit code {log['exit_code']}), with its inputs, results, plots, report, run log "
        "and the SBOM of its environment."
    )
    if log.get("finished_at"):
        root["datePublished"] = log["finished_at"]
    profile = crate.add(
        ContextEntity(
            crate,
            PROFILE,
            properties={
                "@type": ["CreativeWork", "Profile"],
                "name": PROFILE_NAME,
                "version": PROFILE_VERSION,
            },
        )
    )
    root["conformsTo"] = [profile]

    def add(member: _Member, **extra: Any) -> Any:
        properties = {
            "name": member.name,
            "sha256": member.sha256,
            "contentSize": str(member.size),
            "encodingFormat": _FORMATS.get(Path(member.dest).suffix, "application/octet-stream"),
        }
        properties.update(extra)
        return crate.add_file(str(member.source), dest_path=member.dest, properties=properties)

    environment = log.get("environment") or {}
    env_id = environment.get("env_id")
    env_value = crate.add(
        ContextEntity(
            crate,
            "#env-id",
            properties={
                "@type": "PropertyValue",
                "name": "env_id",
                "value": str(env_id),
                "description": "cosmo-runner's hash of what decides results in this "
                "environment (lock, RECORD digest, Python, libc, BLAS kernels); runs with "
                "one env id are expected to give identical outputs",
            },
        )
    )
    runner = (environment.get("observed") or {}).get("runner") or {}
    software = crate.add(
        ContextEntity(
            crate,
            "#cosmo-runner",
            properties={
                "@type": "SoftwareApplication",
                "name": "cosmo-runner",
                "softwareVersion": str(runner.get("version") or __version__),
                "description": "runs JSON-specified validator and meta-analysis pipelines "
                "in a gated, recorded environment",
                "additionalProperty": [env_value],
            },
        )
    )
    sbom_file = add(sbom_member, about=software, encodingFormat="application/vnd.cyclonedx+json")
    software["subjectOf"] = sbom_file
    objects = [add(m) for m in inputs] + [add(spec_member)]
    results = [add(m) for m in outputs]
    log_file = add(log_member)
    properties: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"cosmo-runner run {log['run_id']}",
        "startTime": log.get("started_at"),
        "endTime": log.get("finished_at"),
        "actionStatus": {"@id": _STATUS[log["status"]]},
        "description": f"exit code {log['exit_code']}",
    }
    error = log.get("error")
    if log["status"] != "succeeded" and isinstance(error, dict):
        properties["error"] = str(error.get("message"))
    action = crate.add_action(
        software,
        identifier=f"#run-{log['run_id']}",
        object=objects,
        result=results,
        properties={k: v for k, v in properties.items() if v is not None},
    )
    action["subjectOf"] = log_file
    log_file["about"] = action
    root["mentions"] = [action]
    return crate


def export_crate(run_dir: Path, out: Path, *, zip_: bool = False) -> Path:
    """Write the run's crate to the directory ``out`` (or the zip file ``out`` with
    ``zip_``). Usage errors (exit 2) before anything is written; an OSError while writing
    is an :class:`~cosmo_runner.errors.OutputWriteError` (exit 5) and leaves nothing."""
    from cosmo_runner.share.sbom import read_run_environment, sbom_text

    log = read_run(run_dir)
    if not zip_ and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputDirError(f"{out}: exists and is not an empty directory; refusing to overwrite")
    if zip_ and out.is_dir():
        raise OutputDirError(f"{out}: is a directory; --zip writes a file")
    environment, run_id = read_run_environment(run_dir)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except FileExistsError as exc:  # a file where a folder of --out should be
        raise OutputWriteError(str(out), f"{exc.filename} is not a directory") from exc
    except OSError as exc:
        raise OutputWriteError.from_os_error(exc, out) from exc
    try:
        try:
            sbom = work / SBOM_NAME
            sbom.write_text(sbom_text(environment, run_id=run_id), encoding="utf-8")
            crate = build_crate(run_dir, log, sbom)
            if zip_:
                target = work / "crate.zip"
                crate.write_zip(target)
                os.replace(target, out)
            else:
                tree = work / "crate"
                crate.write(tree)
                os.replace(tree, out)  # onto an empty directory too (POSIX rename)
        except OSError as exc:
            raise OutputWriteError.from_os_error(exc, out) from exc
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    return out
