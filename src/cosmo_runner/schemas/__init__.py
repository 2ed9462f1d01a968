"""The published JSON Schemas (run spec, run log, batch log, manifest) and one validator."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from cosmo_runner.errors import ECHO_LIMIT, on_one_line, shorten

SCHEMA_FILES = {
    "environment_manifest": "environment_manifest.schema.json",
    "run_spec": "run_spec.schema.json",
    "run_log": "run_log.schema.json",
    "batch_log": "batch_log.schema.json",
}


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (a key of :data:`SCHEMA_FILES`)."""
    text = resources.files(__name__).joinpath(SCHEMA_FILES[name]).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def pointer(path: Any) -> str:
    """JSON pointer (RFC 6901) for a jsonschema error path; '' (the root) shown as '/'; a
    line break in a key written as its escape (:func:`cosmo_runner.errors.on_one_line`)."""
    parts = [on_one_line(str(p).replace("~", "~0").replace("/", "~1")) for p in path]
    return "/" + "/".join(parts) if parts else "/"


def validate_against(name: str, instance: Any) -> list[str]:
    """Every problem of ``instance`` against schema ``name``, as ``'<pointer>: <message>'``.

    Sorted by location so the output is stable; all problems at once, not just the first.
    """
    return problems_against(load_schema(name), instance)


def problems_against(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every problem of ``instance`` against ``schema`` (a dict), as :func:`validate_against`.

    A value matching none of a ``oneOf``/``anyOf`` is reported by its most relevant branch
    (jsonschema's ``best_match``): ``/spec/sha256: 5 is not of type ...`` rather than the
    whole ``/spec`` object "is not valid under any of the given schemas".
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    found = [
        best_match([e]) if e.validator in ("oneOf", "anyOf") and e.context else e
        for e in validator.iter_errors(instance)
    ]
    errors = sorted(found, key=lambda e: (list(map(str, e.absolute_path)), e.message))
    return [f"{shorten(pointer(e.absolute_path))}: {_message(e)}" for e in errors]


def _message(error: Any) -> str:
    """jsonschema's message with the echoed value cut to about 200 characters."""
    message = str(error.message)
    if len(message) <= ECHO_LIMIT:
        return message
    echoed = repr(error.instance)
    if len(echoed) > ECHO_LIMIT and echoed in message:
        message = message.replace(echoed, shorten(echoed), 1)
    return shorten(message, 2 * ECHO_LIMIT)
