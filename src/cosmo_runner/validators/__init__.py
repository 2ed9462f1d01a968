"""Validators: one module per kind, plus the registry (built-ins and entry points).

A validator is a callable ``(context: ValidatorContext) -> Iterable[Finding]``. Third-party
validators register under the entry-point group ``cosmo_runner.validators``; the entry
point's name is the ``kind`` used in a spec, and the validator's ``options`` object is
passed through as ``context.options``. Built-in kinds cannot be overridden.

What a validator returns is checked (:func:`run_validator`): each finding's ``level`` is one
of :data:`LEVELS` (lowercase), its ``message`` a string, its ``location`` null or an object
of the run log schema's ``location`` shape. Findings are capped: at most
:data:`FINDINGS_CAP` are kept per level and ``code`` (the kind of finding); the rest are
counted in :attr:`ValidatorOutcome.omitted`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmo_runner.errors import ValidatorError, shorten

if TYPE_CHECKING:
    from jsonschema.protocols import Validator as SchemaValidator

    from cosmo_runner.inputs import LoadedInput
    from cosmo_runner.tables import Table

ENTRY_POINT_GROUP = "cosmo_runner.validators"

#: The levels a finding may have; ``error`` stops the run before any analysis (exit 4).
LEVELS = ("error", "warning", "info")

#: Findings kept per validator, level and code; the rest are only counted.
FINDINGS_CAP = 100
#: A finding's message is one line of at most this many characters: longer ones are cut
#: (saying how long they were), line breaks become spaces.
MESSAGE_LIMIT = 1000
_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")  # what str.splitlines splits


@dataclass(frozen=True)
class Finding:
    """A validator's finding: ``level`` (one of :data:`LEVELS`), a one-line ``message``,
    where (``location``: ``{"file", "line", "column", "study"}`` or ``{"file", "pointer"}``)
    and optionally a short ``code`` naming the kind of finding (the cap counts per code)."""

    level: str
    message: str
    location: dict[str, Any] | None = None
    code: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": self.level,
            "message": self.message,
            "location": self.location,
        }
        if self.code is not None:
            out["code"] = self.code
        return out


@dataclass(frozen=True)
class ValidatorContext:
    """What a validator gets: its spec entry, its input (bytes and parsed table, read once
    for the whole run), the analyses of that input, and a way to resolve paths.

    ``input_path`` is for information (messages); read :attr:`data` or :meth:`table`, never
    the file again: the run uses the bytes whose sha256 is in the log.
    """

    spec: Mapping[str, Any]
    input_path: Path
    base_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)
    source: LoadedInput | None = None
    analyses: tuple[Mapping[str, Any], ...] = ()

    def _source(self) -> LoadedInput:
        if self.source is None:  # built by hand (library use): read the file once, now
            import hashlib

            from cosmo_runner.inputs import LoadedInput, read_input

            data = read_input(self.input_path, f"input {self.spec.get('input', '?')!r}")
            digest = hashlib.sha256(data).hexdigest()
            loaded = LoadedInput("?", str(self.input_path), self.input_path, data, digest, None)
            object.__setattr__(self, "source", loaded)
            return loaded
        return self.source

    @property
    def data(self) -> bytes:
        """The input's bytes, as hashed in the run log."""
        return self._source().data

    def table(self) -> Table:
        """The input as a CSV table (parsed once per run; a :class:`~cosmo_runner.tables.
        TableError` when it is not one)."""
        return self._source().table()

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()


@dataclass
class ValidatorOutcome:
    """Findings of one validator, the data rows (0-based) it asks analyses to drop, and
    the number of findings left out by the cap, per (level, code)."""

    findings: list[Finding] = field(default_factory=list)
    drop_rows: set[int] = field(default_factory=set)
    omitted: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        kept = sum(f.level == "error" for f in self.findings)
        return kept + sum(n for (level, _), n in self.omitted.items() if level == "error")

    @property
    def total(self) -> int:
        return len(self.findings) + sum(self.omitted.values())

    def omitted_records(self) -> list[dict[str, Any]]:
        return [
            {"level": level, "code": code or None, "count": count}
            for (level, code), count in sorted(self.omitted.items())
        ]


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
    """The validator for ``kind``: a built-in, else an entry point (loaded now), else None.
    A plugin that cannot be imported is a :class:`ValidatorError` naming it (exit 5)."""
    builtins = builtin_validators()
    if kind in builtins:
        return builtins[kind]
    entry_point = plugin_entry_points().get(kind)
    if entry_point is None:
        return None
    try:
        loaded: Validator = entry_point.load()
    except Exception as exc:  # the plugin's own module: any error it raises on import
        raise ValidatorError(
            f"validator kind {kind!r}: cannot load the plugin {entry_point.value!r}: "
            f"{type(exc).__name__}: {shorten(str(exc))}"
        ) from exc
    return loaded


@cache
def _finding_schema() -> SchemaValidator:
    from jsonschema.validators import validator_for

    from cosmo_runner.schemas import load_schema

    log_schema = load_schema("run_log")
    schema = {
        "$schema": log_schema["$schema"],
        "$defs": log_schema["$defs"],
        "$ref": "#/$defs/finding",
    }
    cls = validator_for(schema)
    checker: SchemaValidator = cls(schema)
    return checker


def _normalise(item: object, name: str, number: int) -> Finding:
    """One returned item as a :class:`Finding` whose level and code are valid."""
    if isinstance(item, Finding):
        finding = item
    elif isinstance(item, Mapping):
        unknown = sorted(set(map(str, item)) - {"level", "message", "location", "code"})
        if unknown or "message" not in item:
            problem = f"unknown key(s) {unknown}" if unknown else "no 'message'"
            raise ValidatorError(f"{name}: finding {number}: {problem}")
        finding = Finding(
            item.get("level", "error"),  # checked below
            item["message"],
            item.get("location"),
            item.get("code"),
        )
    else:
        raise ValidatorError(
            f"{name}: finding {number} is a {type(item).__name__}, not a Finding or a dict"
        )
    if not isinstance(finding.level, str) or finding.level not in LEVELS:
        raise ValidatorError(
            f"{name}: finding {number}: level {finding.level!r} is not one of "
            f"{', '.join(LEVELS)} (lowercase)"
        )
    if finding.code is not None and not isinstance(finding.code, str):
        raise ValidatorError(f"{name}: finding {number}: code {finding.code!r} is not a string")
    message = finding.message
    if isinstance(message, str) and (len(message) > MESSAGE_LIMIT or _BREAK.search(message)):
        # one line, of a length a terminal and the log can take (a plugin's text as it is)
        finding = replace(finding, message=shorten(" ".join(message.splitlines()), MESSAGE_LIMIT))
    return finding


def _check_shape(finding: Finding, name: str, number: int) -> None:
    error = next(iter(_finding_schema().iter_errors(finding.as_dict())), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "finding"
        raise ValidatorError(f"{name}: finding {number}: {where}: {error.message}")


def cap_findings(findings: Iterable[Finding], name: str) -> ValidatorOutcome:
    """Keep :data:`FINDINGS_CAP` findings per (level, code), count the rest; each kept
    finding is checked against the run log schema's finding shape."""
    outcome = ValidatorOutcome()
    kept: Counter[tuple[str, str]] = Counter()
    for number, item in enumerate(findings, start=1):
        finding = _normalise(item, name, number)
        key = (finding.level, finding.code or "")
        if kept[key] < FINDINGS_CAP:
            _check_shape(finding, name, number)
            kept[key] += 1
            outcome.findings.append(finding)
        else:
            outcome.omitted[key] += 1
    return outcome


def run_validator(validator: Validator, context: ValidatorContext) -> ValidatorOutcome:
    """Call a validator and check what it returns (findings or an outcome).

    A finding of the wrong shape raises :class:`~cosmo_runner.errors.ValidatorError`
    naming the validator; exceptions of the validator itself propagate.
    """
    name = f"validator {context.spec.get('id', '?')!r} (kind {context.spec.get('kind', '?')!r})"
    returned = validator(context)
    if isinstance(returned, ValidatorOutcome):
        checked = cap_findings(returned.findings, name)
        checked.omitted.update(returned.omitted)
        checked.drop_rows = set(returned.drop_rows)
        return checked
    if isinstance(returned, str | bytes | Mapping) or not isinstance(returned, Iterable):
        raise ValidatorError(
            f"{name} returned a {type(returned).__name__}, not an iterable of findings"
        )
    return cap_findings(returned, name)
