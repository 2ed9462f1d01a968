"""Moderators of a meta-regression: each column's kind, the levels of a categorical one, and
the model matrix with its term names (metafor's ``rma(yi, vi, mods = ~ ...)``).

The one rule, read alike by the ``effect_table`` validator and by the analysis:

- **Kind.** A moderator column is *categorical* when none of its non-empty cells (among the
  studies analysed) is a strict number (:data:`cosmo_runner.tables.NUMBER`), or when the
  analysis declares it so (``"moderator_kinds": {"year": "categorical"}``); otherwise it is
  *numeric*, and every cell must be a finite strict number. So a typo in a column of
  numbers (``1O``, ``north``) is an error naming the cell, never a new level; a column of
  categories written as numbers (years, grades) is declared. ``"numeric"`` may be declared
  too (then a column without any number is an error, not a factor). Each moderator's kind
  and levels are in the results (``moderator_columns``).
- **Levels.** The distinct cell texts, sorted by code point (R's ``sort`` under
  ``LC_COLLATE=C``), or by value when every cell is a number (R's ``factor`` of a numeric
  column). The first level is the reference; level ``L`` of column ``c`` is the term
  ``c[L]``, a 0/1 column. A numeric moderator's term is its column name; the intercept is
  ``intrcpt`` (metafor's).
- **Errors** (:class:`ModeratorError`, naming the column; exit 4 from the validator, else
  the analysis fails): an empty cell (unless the validator drops the row with
  ``"missing": "drop"``), a categorical column with one level, and a model matrix (the
  intercept, then the moderators in the order given) without full column rank. metafor
  drops such redundant columns with a warning ("Redundant predictors dropped from the
  model"); here the first redundant term is an error, because a dropped term would change
  silently what QM and ``test_terms`` test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.errors import AnalysisError
from cosmo_runner.tables import Location, Table

__all__ = [
    "CATEGORICAL",
    "INTERCEPT",
    "KINDS",
    "NUMERIC",
    "Design",
    "Moderator",
    "ModeratorError",
    "design",
    "kind_of",
]

NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: The kinds a moderator can have (the schema's ``moderator_kinds`` enum; a test keeps
#: them equal).
KINDS = (NUMERIC, CATEGORICAL)
#: The intercept's term name (metafor's).
INTERCEPT = "intrcpt"
#: A column of the normalised model matrix whose part orthogonal to the columns before it
#: is shorter than this is redundant (R's ``qr`` default tolerance).
RANK_TOL = 1e-7
#: Cells (studies x levels) of a categorical moderator's block of the model matrix at most
#: (512 MB of float64): beyond it the column is an error, not a memory exhaustion.
MATRIX_CELLS_MAX = 1 << 26

FloatArray = NDArray[np.float64]


class ModeratorError(AnalysisError):
    """A moderator column (or the model it makes) cannot be used.

    ``column`` is the moderator column (None for a problem of the analysis's terms),
    ``code`` the validator's finding code, ``location`` the place in the table.
    """

    def __init__(self, problem: str, *, column: str | None, code: str, location: Location):
        self.problem = problem
        self.column = column
        self.code = code
        self.location = location
        super().__init__(f"{location.text()}: {problem}")


@dataclass(frozen=True)
class Moderator:
    """One moderator column: its kind, whether the spec declared it, and its levels
    (categorical only; the first is the reference)."""

    column: str
    kind: str
    declared: bool
    levels: tuple[str, ...] = ()

    @property
    def terms(self) -> tuple[str, ...]:
        if self.kind == NUMERIC:
            return (self.column,)
        return tuple(f"{self.column}[{level}]" for level in self.levels[1:])

    def as_dict(self) -> dict[str, Any]:
        """The results' ``moderator_columns`` entry."""
        categorical = self.kind == CATEGORICAL
        return {
            "column": self.column,
            "kind": self.kind,
            "declared": self.declared,
            "levels": list(self.levels) if categorical else None,
            "reference": self.levels[0] if categorical else None,
            "terms": list(self.terms),
        }


@dataclass(frozen=True)
class Design:
    """The model matrix ``x`` (k x p, the intercept first), its term names and the column
    each term comes from (None for the intercept)."""

    x: FloatArray
    terms: tuple[str, ...]
    columns: tuple[str | None, ...]
    moderators: tuple[Moderator, ...]

    def indices(self, test_terms: Sequence[str] | None, table: Table) -> tuple[int, ...]:
        """The coefficients an omnibus test covers (metafor's ``btt``): ``test_terms`` by
        name, in model order, or every term but the intercept when None."""
        if test_terms is None:
            return tuple(range(1, len(self.terms)))
        for term in test_terms:
            if term not in self.terms:
                raise ModeratorError(
                    f"test_terms names {term!r}, which is not a term of the model "
                    f"(terms: {', '.join(self.terms)})",
                    column=None,
                    code="unknown-term",
                    location=table.location(None),
                )
        wanted = set(test_terms)
        return tuple(j for j, term in enumerate(self.terms) if term in wanted)


def kind_of(table: Table, column: str, rows: NDArray[np.intp], declared: str | None) -> str:
    """The moderator's kind by the rule of this module (``declared`` wins)."""
    if declared is not None:
        return declared
    parsed = table.numbers(column)
    number = ~(parsed.empty | parsed.invalid)
    return NUMERIC if bool(number[rows].any()) else CATEGORICAL


def _numeric(
    table: Table, column: str, rows: NDArray[np.intp], study: str | None, declared: bool
) -> FloatArray:
    parsed = table.numbers(column)
    values = parsed.values[rows]
    empty, invalid = parsed.empty[rows], parsed.invalid[rows]
    bad = empty | invalid | ~np.isfinite(values)
    if bool(bad.any()):
        j = int(np.flatnonzero(bad)[0])
        row = int(rows[j])
        where = table.location(row, column, study)
        text = str(table.text(column)[row])
        if empty[j]:
            raise ModeratorError("empty cell", column=column, code="empty-cell", location=where)
        if invalid[j]:
            hint = (
                'the moderator is declared "numeric"'
                if declared
                else "a moderator column with a number in it is numeric; declare "
                f'"moderator_kinds": {{"{column}": "categorical"}} to read its cells as levels'
            )
            raise ModeratorError(
                f"{text!r} is not a number ({hint})",
                column=column,
                code="not-a-number",
                location=where,
            )
        raise ModeratorError(
            f"{text!r} is not finite", column=column, code="not-finite", location=where
        )
    return np.asarray(values, dtype=np.float64)


def _levels(table: Table, column: str, rows: NDArray[np.intp]) -> tuple[str, ...]:
    distinct = sorted(set(table.text(column)[rows].tolist()))
    parsed = table.numbers(column)
    if distinct and not bool((parsed.invalid | parsed.empty)[rows].any()):
        value = dict(
            zip(table.text(column)[rows].tolist(), parsed.values[rows].tolist(), strict=True)
        )
        return tuple(sorted(distinct, key=lambda text: (value[text], text)))
    return tuple(distinct)


def _categorical(
    table: Table, column: str, rows: NDArray[np.intp], study: str | None, declared: bool
) -> tuple[Moderator, FloatArray]:
    text = table.text(column)[rows]
    empty = np.asarray(text == "", dtype=bool)
    if bool(empty.any()):
        row = int(rows[int(np.flatnonzero(empty)[0])])
        raise ModeratorError(
            "empty cell (a level of the categorical moderator must be named)",
            column=column,
            code="empty-cell",
            location=table.location(row, column, study),
        )
    levels = _levels(table, column, rows)
    if len(levels) >= rows.size:
        raise ModeratorError(
            f"the categorical moderator has {len(levels)} levels among {rows.size} studies: "
            "a meta-regression needs more studies than terms (a column of numbers with a "
            'typo? declare it "numeric" in moderator_kinds)',
            column=column,
            code="too-many-terms",
            location=table.location(None, column),
        )
    if rows.size * len(levels) > MATRIX_CELLS_MAX:
        raise ModeratorError(
            f"the categorical moderator has {len(levels)} levels among {rows.size} studies: "
            f"its model matrix would have more than {MATRIX_CELLS_MAX} cells",
            column=column,
            code="too-many-terms",
            location=table.location(None, column),
        )
    if len(levels) < 2:
        only = f" ({levels[0]!r})" if levels else ""
        raise ModeratorError(
            f"the categorical moderator has one level{only} among the {rows.size} studies; "
            "it needs at least 2",
            column=column,
            code="moderator-one-level",
            location=table.location(None, column),
        )
    dummies = np.column_stack([text == level for level in levels[1:]]).astype(np.float64)
    return Moderator(column, CATEGORICAL, declared, levels), dummies


def design(
    table: Table,
    columns: Sequence[str],
    rows: Sequence[int] | NDArray[np.intp],
    *,
    kinds: Mapping[str, str] | None = None,
    study: str | None = "study",
) -> Design:
    """The model matrix of ``columns`` (in that order, after the intercept) on the data
    rows ``rows`` of ``table``; ``kinds`` are the declared kinds; ``study`` the label column
    that messages name a study by (None: none). Raises
    :class:`ModeratorError` as the module docstring says."""
    kinds = kinds or {}
    index = np.asarray(rows, dtype=np.intp)
    blocks: list[FloatArray] = [np.ones((index.size, 1))]
    terms: list[str] = [INTERCEPT]
    owners: list[str | None] = [None]
    moderators: list[Moderator] = []
    for column in columns:
        if column not in table:
            raise ModeratorError(
                f"moderator column {column!r} is not in the input" + table.delimiter_hint(),
                column=column,
                code="missing-column",
                location=table.location(None),
            )
        declared = kinds.get(column)
        if kind_of(table, column, index, declared) == NUMERIC:
            moderator = Moderator(column, NUMERIC, declared is not None)
            block = _numeric(table, column, index, study, declared is not None)[:, None]
        else:
            moderator, block = _categorical(table, column, index, study, declared is not None)
        moderators.append(moderator)
        blocks.append(block)
        terms.extend(moderator.terms)
        owners.extend([column] * len(moderator.terms))
    x = np.column_stack(blocks)
    _check_rank(x, terms, owners, table)
    return Design(x, tuple(terms), tuple(owners), tuple(moderators))


def _check_rank(x: FloatArray, terms: list[str], owners: list[str | None], table: Table) -> None:
    """Full column rank, or an error naming the first term that the ones before it explain."""
    if x.shape[0] < x.shape[1]:  # fewer studies than terms: the fit says k <= p
        return
    norms = np.linalg.norm(x, axis=0)
    scaled = x / np.where(norms > 0, norms, 1.0)
    diag = np.abs(np.diag(np.linalg.qr(scaled, mode="r")))
    redundant = np.flatnonzero((diag < RANK_TOL) | (norms == 0))
    if redundant.size == 0:
        return
    j = int(redundant[0])
    column = owners[j]
    earlier = ", ".join(terms[:j])
    raise ModeratorError(
        f"the moderators make the model matrix rank-deficient: term {terms[j]!r} is a linear "
        f"combination of the terms before it ({earlier}) in these studies; metafor would drop "
        "it with a warning ('Redundant predictors dropped from the model'), cosmo-runner does "
        "not choose which to drop: remove or merge moderators",
        column=column,
        code="moderator-rank",
        location=table.location(None, column),
    )
