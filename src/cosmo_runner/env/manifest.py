"""Find, read and validate ``environment.manifest.json``.

Lookup order (first hit wins): ``--manifest PATH``, ``$COSMO_MANIFEST``,
``./environment.manifest.json``, then the copy installed as package data (next to a copy of
the lock), so the commands work from any directory. The lock path inside a manifest is
relative to the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cosmo_runner.env import optional
from cosmo_runner.errors import ManifestError

MANIFEST_NAME = "environment.manifest.json"
MANIFEST_ENV_VAR = "COSMO_MANIFEST"


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: where it was found, how, its sha256 and its parsed content."""

    path: Path
    source: str  # "--manifest", "$COSMO_MANIFEST", "cwd" or "package"
    sha256: str
    data: dict[str, Any]
    # Why the schema was not checked (jsonschema unusable), else None: a gate error.
    schema_problem: str | None = None

    @property
    def lock_path(self) -> Path:
        return (self.path.parent / str(self.data["lock"]["path"])).resolve()

    def severity(self, section: str) -> str:
        entry = self.data.get(section, {})
        return str(entry.get("severity", "error")) if isinstance(entry, dict) else "error"


def package_manifest_path() -> Path:
    """The manifest installed as package data (``cosmo_runner/data``)."""
    return Path(str(resources.files("cosmo_runner").joinpath("data", MANIFEST_NAME)))


def locate(explicit: str | None = None, cwd: Path | None = None) -> tuple[Path, str]:
    """Return the manifest path and how it was found, following the documented order."""
    if explicit:
        return Path(explicit), "--manifest"
    from_env = os.environ.get(MANIFEST_ENV_VAR)
    if from_env:
        return Path(from_env), f"${MANIFEST_ENV_VAR}"
    here = (cwd or Path.cwd()) / MANIFEST_NAME
    if here.is_file():
        return here, "cwd"
    return package_manifest_path(), "package"


def load(explicit: str | None = None, cwd: Path | None = None) -> Manifest:
    """Locate, read and validate the manifest. Problems raise :class:`ManifestError`."""
    path, source = locate(explicit, cwd)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest not found: {path} (from {source})") from exc
    except OSError as exc:
        raise ManifestError(f"manifest unreadable: {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest is not valid JSON: {path}: {exc}") from exc
    schema_problem = optional.problem("jsonschema")
    problems = validate(data) if schema_problem is None else shape_problems(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ManifestError(f"manifest invalid: {path}: {problems[0]}{more}")
    return Manifest(
        path=path.resolve(),
        source=source,
        sha256=hashlib.sha256(raw).hexdigest(),
        data=data,
        schema_problem=(
            None
            if schema_problem is None
            else f"manifest {path} not checked against its schema: {schema_problem}"
        ),
    )


# What the gate reads of a manifest, checked with the standard library when jsonschema is
# unusable (the schema itself is the contract; this only keeps the gate from crashing).
_SHAPE: tuple[tuple[tuple[str, ...], type], ...] = (
    (("os_family", "allowed"), list),
    (("python", "specifier"), str),
    (("machines", "allowed"), list),
    (("imports", "modules"), list),
    (("tools",), list),
    (("lock", "path"), str),
    (("lock", "sha256"), str),
)


def shape_problems(data: Any) -> list[str]:
    """The fields the gate reads, present with the right JSON types (no jsonschema needed)."""
    if not isinstance(data, dict):
        return ["/: the manifest is not a JSON object"]
    problems = []
    for keys, kind in _SHAPE:
        node: Any = data
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, kind):
            problems.append(f"/{'/'.join(keys)}: missing or not a JSON {kind.__name__}")
    tools = data.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if not (
                isinstance(tool, dict)
                and isinstance(tool.get("name"), str)
                and isinstance(tool.get("specifier"), str)
            ):
                problems.append(f"/tools/{i}: needs string 'name' and 'specifier'")
    for key in ("os_family", "machines", "imports"):
        values = data.get(key, {}).get("allowed" if key != "imports" else "modules")
        if isinstance(values, list) and not all(isinstance(v, str) for v in values):
            problems.append(f"/{key}: every entry must be a string")
    return problems


def validate(data: Any) -> list[str]:
    """Every schema problem of a manifest as ``'<json pointer>: <message>'`` (empty when valid)."""
    from cosmo_runner.schemas import validate_against

    problems = validate_against("environment_manifest", data)
    if not problems and optional.available("packaging"):
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        specifiers = [("/python/specifier", data["python"]["specifier"])]
        specifiers += [
            (f"/tools/{i}/specifier", t["specifier"]) for i, t in enumerate(data["tools"])
        ]
        for pointer, text in specifiers:
            try:
                SpecifierSet(text)
            except InvalidSpecifier:
                problems.append(f"{pointer}: {text!r} is not a PEP 440 version specifier")
    return problems
