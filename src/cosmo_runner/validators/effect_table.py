"""The ``effect_table`` validator: a CSV effect table fit for a measure (metafor's escalc).

Checks: the columns the measure needs are present (the measure's forms in the measure table,
:mod:`cosmo_runner.meta.measures`, with a hint when the header looks written with another
delimiter); every cell is a strict number (see :mod:`cosmo_runner.tables`) and finite; the
measure's value rules, the same ones ``escalc`` applies (variances and standard errors
given directly > 0, SDs >= 0, counts whole numbers within +-2^53 (``12.0`` is 12) and
non-negative, sample sizes positive, n > 3 for ZCOR, -1 < r < 1, ...); then each study's
effect computed as ``escalc`` does, which must be finite with a variance > 0 (an MD with
both SDs 0 is named here, not by the fit); study labels unique; at least 2 studies. Moderator
columns (the validator's ``moderators`` and those of the analyses of its input) follow the
rule of :mod:`cosmo_runner.meta.moderators`: a numeric one must hold strict finite numbers,
a categorical one non-empty levels, at least 2 of them; each analysis's moderators must make
a model matrix of full rank, and its ``test_terms`` must be terms of it. Subgroup columns
(``columns.subgroup`` of the validator or of those analyses) need non-empty labels.

An empty cell is an error, unless ``"missing": "drop"``: then the row is dropped (a warning
each) and the analyses of that input drop it too. Every finding names its place the one
way (:func:`cosmo_runner.tables.describe`); at most
:data:`~cosmo_runner.validators.FINDINGS_CAP` are kept per kind (``code``), the rest counted.
The checks are vectorised over whole columns, so a table of a million invalid rows is
reported in about a second.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.meta.measures import Measure, Note, Rule, Settings, bad_effects, lookup
from cosmo_runner.meta.moderators import NUMERIC, ModeratorError, design, kind_of
from cosmo_runner.tables import Table
from cosmo_runner.validators import FINDINGS_CAP, Finding, ValidatorContext, ValidatorOutcome

_CELL_MAX = 60  # characters of a bad cell echoed in a message

BoolArray = NDArray[np.bool_]


def required_args(measure: str, columns: Mapping[str, str], header: Sequence[str]) -> list[str]:
    """metafor's arguments a measure needs: the first of its forms whose columns all exist."""
    entry = lookup(measure)
    return list(entry.form([arg for arg in entry.args if arg in columns or arg in header]))


def _cell(text: str) -> str:
    return text if len(text) <= _CELL_MAX else text[: _CELL_MAX - 3] + "..."


def _says(
    text: NDArray[Any], problem: str, *, tag: str = "", quote: bool = False
) -> Callable[[int], str]:
    """The message tail for a bad cell of ``text``: ``" (arg): <cell> <problem>"``."""

    def message(row: int) -> str:
        cell = _cell(str(text[row]))
        return f"{tag}: {cell!r} {problem}" if quote else f"{tag}: {cell} {problem}"

    return message


@dataclass
class _Part:
    level: str
    rows: NDArray[np.intp]
    column: str | None
    position: int
    message: Callable[[int], str]


@dataclass
class _Collector:
    """Findings by code, each a set of rows; keeps the first FINDINGS_CAP per code."""

    table: Table
    study_column: str | None
    positions: dict[str, int]
    parts: dict[str, list[_Part]] = field(default_factory=dict)

    def add(
        self,
        code: str,
        level: str,
        mask: BoolArray,
        column: str | None,
        message: Callable[[int], str],
    ) -> None:
        rows = np.flatnonzero(mask)
        if rows.size:
            position = self.positions.get(column or "", -1)
            self.parts.setdefault(code, []).append(_Part(level, rows, column, position, message))

    def whole(self, code: str, message: str) -> Finding:
        location = self.table.location(None).as_dict()
        return Finding("error", f"{self.table.name}: {message}", location, code)

    def finish(self, outcome: ValidatorOutcome) -> None:
        found: list[tuple[int, int, Finding]] = []
        for code, parts in self.parts.items():
            rows = np.concatenate([p.rows for p in parts])
            positions = np.concatenate([np.full(p.rows.size, p.position) for p in parts])
            which = np.concatenate([np.full(p.rows.size, i) for i, p in enumerate(parts)])
            order = np.lexsort((positions, rows))
            for j in order[:FINDINGS_CAP].tolist():
                part, row = parts[int(which[j])], int(rows[j])
                where = self.table.location(row, part.column, self.study_column)
                message = f"{where.text()}{part.message(row)}"
                found.append(
                    (row, part.position, Finding(part.level, message, where.as_dict(), code))
                )
            omitted: Counter[str] = Counter()
            levels = [p.level for p in parts]
            for i, count in enumerate(
                np.bincount(which[order[FINDINGS_CAP:]], minlength=len(parts))
            ):
                omitted[levels[i]] += int(count)
            for level, count in omitted.items():
                if count:
                    outcome.omitted[(level, code)] += count
        found.sort(key=lambda item: (item[0], item[1]))
        outcome.findings.extend(finding for _, _, finding in found)


def _value_checks(
    collect: _Collector,
    table: Table,
    entry: Measure,
    needed: Sequence[tuple[str, str]],
    valid: Mapping[str, BoolArray],
    *,
    settings: Settings,
) -> None:
    """The measure's value rules, then its computed effects (and their notes, as warnings),
    on the parsed finite cells.

    ``valid[arg]``: the cells of ``arg`` that parsed and are finite. A cell (or row) that
    broke a rule is not checked by the later ones, so each problem is one finding.
    """
    form = tuple(arg for arg, _ in needed)
    cols = dict(needed)
    values = {arg: table.numbers(col).values for arg, col in needed}
    ok = {arg: valid[arg].copy() for arg in form}
    with np.errstate(all="ignore"):
        for rule in entry.rules_for(form, settings):
            _check_rule(collect, table, rule, cols=cols, values=values, ok=ok)
        rows = np.logical_and.reduce([ok[arg] for arg in form])
        if not rows.any():
            return
        effects = entry.compute({arg: values[arg][rows] for arg in form}, settings)
    bad_yi, bad_vi = bad_effects(effects)
    where = np.flatnonzero(rows)
    for note in effects.notes:
        index = {int(row): j for j, row in enumerate(where.tolist())}
        mask = np.zeros(len(table), dtype=bool)
        mask[where[note.rows & ~bad_yi & ~bad_vi]] = True
        collect.add(note.code, "warning", mask, None, _noted(note, index))
    for code, bad, computed, what in (
        ("effect-not-finite", bad_yi, effects.yi, "effect size"),
        ("variance-not-positive", bad_vi & ~bad_yi, effects.vi, "sampling variance"),
    ):
        if not bad.any():
            continue
        mask = np.zeros(len(table), dtype=bool)
        mask[where[bad]] = True
        shown = dict(zip(where[bad].tolist(), computed[bad].tolist(), strict=True))
        must = "must be finite" if code == "effect-not-finite" else "must be > 0"
        collect.add(
            code,
            "error",
            mask,
            None,
            _computed(entry, what, must=must, shown=shown, form=form, values=values),
        )


def _computed(
    entry: Measure,
    what: str,
    *,
    must: str,
    shown: Mapping[int, float],
    form: Sequence[str],
    values: Mapping[str, NDArray[np.float64]],
) -> Callable[[int], str]:
    def message(row: int) -> str:
        args = _args(form, values, row)
        return f": the {entry.name} {what} is {shown[row]:g} ({args}); it {must}"

    return message


def _noted(note: Note, index: Mapping[int, int]) -> Callable[[int], str]:
    def message(row: int) -> str:
        return f": {note.message(index[row])}"

    return message


def _args(form: Sequence[str], values: Mapping[str, NDArray[np.float64]], row: int) -> str:
    return ", ".join(f"{arg} {values[arg][row]:g}" for arg in form)


def _check_rule(
    collect: _Collector,
    table: Table,
    rule: Rule,
    *,
    cols: Mapping[str, str],
    values: Mapping[str, NDArray[np.float64]],
    ok: dict[str, BoolArray],
) -> None:
    rows = np.logical_and.reduce([ok[arg] for arg in rule.args])
    broken = rows & ~np.asarray(rule.test(*(values[arg] for arg in rule.args)), dtype=bool)
    if rule.as_written:
        broken |= rows & ~table.integral(cols[rule.args[0]])
    if not broken.any():
        return
    for arg in rule.args:
        ok[arg] &= ~broken
    if len(rule.args) == 1:
        arg = rule.args[0]
        col = cols[arg]
        tag = f" ({arg})" if arg != col else ""
        collect.add(rule.code, "error", broken, col, _says(table.text(col), rule.problem, tag=tag))
        return
    collect.add(
        rule.code, "error", broken, None,
        lambda row: f": {rule.problem} ({_args(rule.args, values, row)})",
    )  # fmt: skip


@dataclass(frozen=True)
class Model:
    """The moderators of one analysis (or the validator's own), checked together: its
    ``columns`` in model order, their declared ``kinds`` and the ``test_terms``."""

    columns: tuple[str, ...]
    kinds: Mapping[str, str] = field(default_factory=dict)
    test_terms: tuple[str, ...] | None = None
    analysis: str | None = None


def check_table(
    table: Table,
    measure: str,
    columns: Mapping[str, str],
    missing: str,
    *,
    moderators: Sequence[str] = (),
    subgroups: Sequence[str] = (),
    settings: Settings | None = None,
    kinds: Mapping[str, str] | None = None,
    models: Sequence[Model] = (),
) -> ValidatorOutcome:
    """All findings for ``table``; pure (the table is already parsed). ``settings``: GEN's
    ``ci_level`` and ``input_scale`` (default 95 and linear). ``kinds``: declared moderator
    kinds; ``models``: the moderator sets whose model matrix is checked (default: each of
    ``moderators`` alone)."""
    outcome = ValidatorOutcome()
    entry = lookup(measure)
    measure = entry.name
    study_col = columns.get("study", "study")
    kinds = dict(kinds or {})
    needed = [(arg, columns.get(arg, arg)) for arg in required_args(measure, columns, table.header)]
    numeric_mods, categorical = _split(table, moderators, kinds)
    numeric = list(dict.fromkeys([*needed, *(("moderator", m) for m in numeric_mods)]))
    absent = _absent(table, numeric, subgroups, study_col if "study" in columns else None)
    positions = {col: i for i, col in enumerate(table.header)}
    collect = _Collector(table, study_col if study_col in table else None, positions)
    if absent:
        outcome.findings.append(
            collect.whole(
                "missing-column",
                f"missing column(s) {', '.join(absent)} for measure {measure}"
                + table.delimiter_hint(),
            )
        )
        return outcome

    n = len(table)
    drop = np.zeros(n, dtype=bool)
    first_empty = np.full(n, -1)
    first_empty_col: dict[int, str] = {}

    def empty_cells(col: str, mask: BoolArray, what: str) -> None:
        if missing == "drop":
            fresh = mask & ~drop
            first_empty[fresh] = positions[col]
            first_empty_col[positions[col]] = col
            drop[mask] = True
        else:
            collect.add("empty-cell", "error", mask, col, lambda row: f": empty {what}")

    valid: dict[str, BoolArray] = {}
    for arg, col in numeric:
        parsed = table.numbers(col)
        text = table.text(col)
        empty_cells(col, parsed.empty, "cell")
        collect.add(
            "not-a-number",
            "error",
            parsed.invalid,
            col,
            _says(text, "is not a number" + _numeric_hint(arg, col, kinds), quote=True),
        )
        readable = ~(parsed.empty | parsed.invalid)
        finite = np.isfinite(parsed.values)
        collect.add(
            "not-finite",
            "error",
            readable & ~finite,
            col,
            _says(text, "is not finite"),
        )
        if arg != "moderator":
            valid[arg] = readable & finite
    _value_checks(collect, table, entry, needed, valid, settings=settings or Settings())
    labels = [(col, "subgroup label") for col in dict.fromkeys(subgroups)]
    for col, what in [*labels, *((col, "categorical moderator level") for col in categorical)]:
        empty_cells(col, np.asarray(table.text(col) == "", dtype=bool), what)

    if missing == "drop" and drop.any():
        collect.add(
            "row-dropped",
            "warning",
            drop,
            None,
            lambda row: (
                f": empty cell in column {first_empty_col[int(first_empty[row])]!r}; row dropped"
            ),
        )
        outcome.drop_rows = {int(i) for i in np.flatnonzero(drop)}
    kept = np.flatnonzero(~drop)
    if study_col in table:
        _duplicates(collect, table, study_col, kept)
    collect.finish(outcome)
    _model_checks(
        outcome, table, models or [Model((m,), kinds) for m in moderators], kept,
        study_col if study_col in table else None,
    )  # fmt: skip
    if kept.size < 2:
        outcome.findings.append(
            collect.whole(
                "too-few-studies",
                f"{kept.size} usable studies; a meta-analysis needs at least 2",
            )
        )
    return outcome


def _absent(
    table: Table,
    numeric: Sequence[tuple[str, str]],
    subgroups: Sequence[str],
    study_col: str | None,
) -> list[str]:
    """The columns named or needed that the table lacks, each with its role."""
    absent = [
        f"{col!r} ({arg})" if col != arg else repr(col) for arg, col in numeric if col not in table
    ]
    if study_col is not None and study_col not in table:
        absent.append(f"{study_col!r} (study)")
    return absent + [f"{col!r} (subgroup)" for col in subgroups if col not in table]


def _split(
    table: Table, moderators: Sequence[str], kinds: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """The moderator columns checked as numbers (a missing one too: it is named as missing)
    and the categorical ones, by the rule of :mod:`cosmo_runner.meta.moderators`."""
    every = np.arange(len(table))
    numeric = [
        m for m in moderators if m not in table or kind_of(table, m, every, kinds.get(m)) == NUMERIC
    ]
    return numeric, [m for m in moderators if m not in numeric]


def _numeric_hint(arg: str, column: str, kinds: Mapping[str, str]) -> str:
    if arg != "moderator":
        return ""
    if column in kinds:
        return ' (the moderator is declared "numeric")'
    return (
        " (a moderator column with a number in it is numeric; declare "
        f'"moderator_kinds": {{"{column}": "categorical"}} to read its cells as levels)'
    )


def _model_checks(
    outcome: ValidatorOutcome,
    table: Table,
    models: Sequence[Model],
    kept: NDArray[np.intp],
    study: str | None,
) -> None:
    """Each model's matrix on the kept rows (levels, rank) and its test_terms, once the
    cells are fine; one finding per problem, however many analyses share it."""
    if any(f.level == "error" for f in outcome.findings):
        return
    seen: set[str] = set()
    for model in models:
        try:
            built = design(table, model.columns, kept, kinds=model.kinds, study=study)
            built.indices(model.test_terms, table)
        except ModeratorError as exc:
            whose = f" (analysis {model.analysis!r})" if model.analysis else ""
            message = f"{exc.message}{whose}" if exc.code == "unknown-term" else exc.message
            if message not in seen:
                seen.add(message)
                outcome.findings.append(Finding("error", message, exc.location.as_dict(), exc.code))


def _duplicates(collect: _Collector, table: Table, study_col: str, kept: NDArray[np.intp]) -> None:
    labels = table.text(study_col)[kept].tolist()
    if len(set(labels)) == len(labels):
        return
    first: dict[str, int] = {}
    repeats = np.zeros(len(table), dtype=bool)
    for row, label in zip(kept.tolist(), labels, strict=True):
        if label in first:
            repeats[row] = True
        else:
            first[label] = row
    collect.add(
        "duplicate-study",
        "error",
        repeats,
        study_col,
        lambda row: (
            f": study label {_cell(str(table.text(study_col)[row]))!r} repeats line "
            f"{int(table.lines[first[str(table.text(study_col)[row])]])}"
        ),
    )


def _analysis_columns(analyses: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    moderators = [str(m) for a in analyses for m in a.get("moderators") or []]
    subgroups = [
        str(a["columns"]["subgroup"]) for a in analyses if "subgroup" in a.get("columns", {})
    ]
    return moderators, subgroups


def _models(spec: Mapping[str, Any], analyses: Sequence[Mapping[str, Any]]) -> list[Model]:
    """The validator's own moderators one by one, then each analysis's moderators."""
    own = {str(k): str(v) for k, v in (spec.get("moderator_kinds") or {}).items()}
    models = [Model((str(m),), own) for m in spec.get("moderators", [])]
    for a in analyses:
        if a.get("moderators"):
            terms = a.get("test_terms")
            models.append(
                Model(
                    tuple(str(m) for m in a["moderators"]),
                    {str(k): str(v) for k, v in (a.get("moderator_kinds") or {}).items()},
                    None if terms is None else tuple(str(t) for t in terms),
                    str(a.get("id")),
                )
            )
    return models


def validate_effect_table(context: ValidatorContext) -> ValidatorOutcome:
    spec: Mapping[str, Any] = context.spec
    columns = dict(spec.get("columns", {}))
    moderators, subgroups = _analysis_columns(context.analyses)
    moderators = [*map(str, spec.get("moderators", [])), *moderators]
    if "subgroup" in columns:
        subgroups.insert(0, str(columns["subgroup"]))
    models = _models(spec, context.analyses)
    kinds: dict[str, str] = {}
    for model in models:  # the first declaration of a column decides its cell checks
        for column, kind in model.kinds.items():
            kinds.setdefault(column, kind)
    return check_table(
        context.table(),
        str(spec["measure"]),
        columns,
        str(spec.get("missing", "error")),
        moderators=list(dict.fromkeys(moderators)),
        subgroups=list(dict.fromkeys(subgroups)),
        settings=_settings(spec, context.analyses),
        kinds=kinds,
        models=models,
    )


def _settings(spec: Mapping[str, Any], analyses: Sequence[Mapping[str, Any]]) -> Settings:
    """The validator's own ``ci_level``/``input_scale``, else those of the first analysis of
    its input with the same measure that sets them (so a table of HRs is read as ratios)."""
    own = {key: spec[key] for key in ("ci_level", "input_scale") if key in spec}
    for analysis in analyses:
        if str(analysis.get("measure", "")).upper() == str(spec["measure"]).upper():
            for key in ("ci_level", "input_scale"):
                if key in analysis:
                    own.setdefault(key, analysis[key])
    return Settings.from_spec(own)
