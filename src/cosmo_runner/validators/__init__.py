"""Validators: one module per kind, plus the registry (built-ins and entry points).

A validator is a callable ``(context: ValidatorContext) -> Iterable[Finding]``. Third-party
validators register under the entry-point group ``cosmo_runner.validators``; the entry
point's name is the ``kind`` used in a spec, and the validator's ``options`` object is
passed through as ``context.options``. Built-in kinds cannot be overridden.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "cosmo_runner.validators"


@dataclass(frozen=True)
class Finding:
    """A validator's finding. ``level`` is ``error``, ``warning`` or ``info``."""

    level: str
    message: str
    location: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ValidatorContext:
    """What a validator gets: its spec entry, the input's path, and a way to resolve paths."""

    spec: Mapping[str, Any]
    input_path: Path
    base_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()


@dataclass
class ValidatorOutcome:
    """Findings of one validator, and the data rows it asks analyses to drop."""

    findings: list[Finding] = field(default_factory=list)
    drop_rows: set[int] = field(default_factory=set)

    @property
    def errors(self) -> int:
        return sum(f.level == "error" for f in self.findings)


Validator = Callable[[ValidatorContext], "Iterable[Finding] | ValidatorOutcome"]


def builtin_validators() -> dict[str, Validator]:
    from cosmo_runner.validators.effect_table import validate_effect_table
    from cosmo_runner.validators.json_schema import validate_json

    return {"jsonschema": validate_json, "effect_table": validate_effect_table}


def plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> list[str]:
    return sorted(set(builtin_validators()) | set(plugin_entry_points()))


def resolve(kind: str) -> Validator | None:
    """The validator for ``kind``: a built-in, else an entry point (loaded now), else None."""
    builtins = builtin_validators()
    if kind in builtins:
        return builtins[kind]
    entry_point = plugin_entry_points().get(kind)
    if entry_point is None:
        return None
    loaded: Validator = entry_point.load()
    return loaded


def run_validator(validator: Validator, context: ValidatorContext) -> ValidatorOutcome:
    """Call a validator and normalise what it returns (findings or an outcome)."""
    returned = validator(context)
    if isinstance(returned, ValidatorOutcome):
        return returned
    findings = []
    for item in returned:
        if isinstance(item, Finding):
            findings.append(item)
        elif isinstance(item, Mapping):
            findings.append(
                Finding(str(item.get("level", "error")), str(item["message"]), item.get("location"))
            )
        else:
            raise TypeError(f"validator returned {type(item).__name__}, expected Finding")
    return ValidatorOutcome(findings)
