"""The ``jsonschema`` validator: a JSON input against a JSON Schema file (Draft 2020-12 or 7).

The draft comes from the schema's ``$schema`` (2020-12 when absent). Every violation is a
finding with its JSON pointer. The input is the bytes read (and hashed) once for the run;
the schema file must be a regular file (a FIFO or device is refused without reading).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cosmo_runner.errors import InputError
from cosmo_runner.inputs import read_input
from cosmo_runner.schemas import pointer
from cosmo_runner.validators import Finding, ValidatorContext


def _parse_json(data: bytes, path: Path, what: str) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{what} is not valid JSON: {path}: {exc}") from exc


def validate_json(context: ValidatorContext) -> Iterator[Finding]:
    import jsonschema
    from jsonschema.validators import Draft202012Validator, validator_for

    schema_path = context.resolve(str(context.spec["schema"]))
    schema = _parse_json(read_input(schema_path, "schema file"), schema_path, "schema file")
    instance = _parse_json(context.data, context.input_path, "JSON input")
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InputError(
            f"schema file {schema_path} is not a valid {cls.__name__} schema: "
            f"{pointer(exc.absolute_path)}: {exc.message}"
        ) from exc
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    for error in errors:
        where = pointer(error.absolute_path)
        yield Finding(
            "error",
            f"{context.input_path.name} {where}: {error.message}",
            {"file": str(context.input_path), "pointer": where},
        )
