"""The ``effect_table`` validator: a CSV effect table fit for a measure (metafor's escalc).

Checks: the columns the measure needs are present; every cell parses as a finite number
(row and column in the message); variances, standard errors and SDs > 0; counts are
non-negative integers (sample sizes positive); n > 3 for ZCOR; -1 < r < 1; study labels
unique; at least 2 studies. An empty cell is an error, unless ``"missing": "drop"``: then
the row is dropped (a warning each) and the analyses of that input drop it too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cosmo_runner.tables import Table, read_csv
from cosmo_runner.validators import Finding, ValidatorContext, ValidatorOutcome

COUNTS = ("ai", "bi", "ci", "di")
SIZES = ("n1i", "n2i", "ni")
POSITIVE = ("vi", "sei", "sd1i", "sd2i")


def required_args(measure: str, columns: Mapping[str, str], header: list[str]) -> list[str]:
    """metafor's arguments a measure needs; 2x2 tables take bi/di, or n1i/n2i instead."""
    if measure in ("RR", "OR", "RD"):

        def available(arg: str) -> bool:
            return arg in columns or arg in header

        if not (available("bi") and available("di")) and available("n1i") and available("n2i"):
            return ["ai", "n1i", "ci", "n2i"]
        return ["ai", "bi", "ci", "di"]
    if measure in ("MD", "SMD"):
        return ["m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"]
    if measure == "ZCOR":
        return ["ri", "ni"]
    if "vi" in columns or "vi" in header or not ("sei" in columns or "sei" in header):
        return ["yi", "vi"]
    return ["yi", "sei"]


def _check_value(arg: str, value: float, measure: str) -> str | None:
    if not math.isfinite(value):
        return "is not finite"
    if arg in POSITIVE and value <= 0:
        return "must be > 0"
    if arg in COUNTS + SIZES:
        if value != int(value):
            return "must be an integer count"
        if value < 0 or (arg in SIZES and value == 0):
            return "must be a non-negative count" if arg in COUNTS else "must be a positive count"
        if measure == "ZCOR" and arg == "ni" and value <= 3:
            return "must be > 3 for ZCOR (the variance is 1/(n - 3))"
    if arg == "ri" and not -1 < value < 1:
        return "must be between -1 and 1 (exclusive)"
    return None


def check_table(
    table: Table, measure: str, columns: Mapping[str, str], missing: str
) -> ValidatorOutcome:
    """All findings for ``table``; pure (the table is already read)."""
    outcome = ValidatorOutcome()
    name = table.path.name
    needed = [(arg, columns.get(arg, arg)) for arg in required_args(measure, columns, table.header)]
    absent = [
        f"{col!r} ({arg})" if col != arg else repr(col)
        for arg, col in needed
        if col not in table.header
    ]
    study_col = columns.get("study", "study")
    if "study" in columns and study_col not in table.header:
        absent.append(f"{study_col!r} (study)")
    if absent:
        outcome.findings.append(
            Finding(
                "error",
                f"{name}: missing column(s) {', '.join(absent)} for measure {measure}",
                {"file": str(table.path)},
            )
        )
        return outcome
    index = {col: table.header.index(col) for _, col in needed}
    for number, row in enumerate(table.rows, start=1):
        for arg, col in needed:
            cell = row[index[col]]
            where = {"file": str(table.path), "row": number, "column": col}
            if cell == "":
                if missing == "drop":
                    if number not in outcome.drop_rows:
                        outcome.drop_rows.add(number)
                        outcome.findings.append(
                            Finding(
                                "warning",
                                f"{name} row {number}: empty cell in column {col!r}; row dropped",
                                where,
                            )
                        )
                    continue
                outcome.findings.append(
                    Finding("error", f"{name} row {number}, column {col!r}: empty cell", where)
                )
                continue
            try:
                value = float(cell)
            except ValueError:
                outcome.findings.append(
                    Finding(
                        "error",
                        f"{name} row {number}, column {col!r}: {cell!r} is not a number",
                        where,
                    )
                )
                continue
            problem = _check_value(arg, value, measure)
            if problem:
                outcome.findings.append(
                    Finding(
                        "error",
                        f"{name} row {number}, column {col!r} ({arg}): {cell} {problem}",
                        where,
                    )
                )
    kept = [n for n in range(1, len(table.rows) + 1) if n not in outcome.drop_rows]
    if study_col in table.header:
        labels: dict[str, int] = {}
        for number in kept:
            label = table.rows[number - 1][table.header.index(study_col)]
            if label in labels:
                outcome.findings.append(
                    Finding(
                        "error",
                        f"{name} row {number}, column {study_col!r}: study label {label!r} repeats row {labels[label]}",
                        {"file": str(table.path), "row": number, "column": study_col},
                    )
                )
            else:
                labels[label] = number
    if len(kept) < 2:
        outcome.findings.append(
            Finding(
                "error",
                f"{name}: {len(kept)} usable studies; a meta-analysis needs at least 2",
                {"file": str(table.path)},
            )
        )
    return outcome


def validate_effect_table(context: ValidatorContext) -> ValidatorOutcome:
    spec: Mapping[str, Any] = context.spec
    table = read_csv(context.input_path)
    return check_table(
        table,
        str(spec["measure"]),
        dict(spec.get("columns", {})),
        str(spec.get("missing", "error")),
    )
