"""Effect sizes and their sampling variances, as metafor's ``escalc`` computes them.

The measures, their arguments, value rules, formulas (with their references) and zero-cell
handling are entries of the measure table, :mod:`cosmo_runner.meta.measures`; this module
applies an entry to columns of numbers. For the 2x2 measures (RR, OR, RD) a study with a
zero cell gets 1/2 added to all four cells (metafor's ``add=1/2, to="only0"``), and studies
with no events (or only events) in both arms are kept unless ``drop00=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta.measures import (
    MEASURES,
    Effects,
    Measure,
    Rule,
    Settings,
    bad_effects,
    lookup,
)

__all__ = ["MEASURES", "EffectSizes", "escalc"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class EffectSizes:
    """Effect sizes ``yi`` with sampling variances ``vi`` (kept studies only).

    ``kept`` are the indices (into the input rows) of the studies in ``yi``/``vi``;
    ``dropped`` the indices removed by ``drop00=True``; ``added_half`` the indices of kept
    studies whose 2x2 cells got +1/2. ``labels`` holds the kept studies' labels and
    ``dropped_labels`` the dropped ones' (row numbers from 1 when no labels were given).
    ``sizes`` holds the kept studies' ``ni`` and ``ti`` where the measure has them (what a
    back-transformation such as ``ipft.hm`` needs); ``warnings`` the measure's notes about
    kept studies, each ``"<place>: <note>"`` (a given CI whose halves differ).
    """

    measure: str
    yi: FloatArray
    vi: FloatArray
    kept: tuple[int, ...]
    labels: tuple[str, ...]
    dropped: tuple[int, ...] = ()
    dropped_labels: tuple[str, ...] = ()
    added_half: tuple[int, ...] = field(default=())
    sizes: Mapping[str, FloatArray] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def k(self) -> int:
        """Number of studies with an effect size."""
        return int(self.yi.shape[0])


Places = Callable[[int], str]


def _row(i: int, places: Places | None) -> str:
    """Study ``i`` (0-based) as the caller names places (default ``row i+1``)."""
    return places(i) if places is not None else f"row {i + 1}"


def _column(name: str, value: ArrayLike, n: int | None, places: Places | None) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"escalc: column {name!r} is not numeric") from exc
    if arr.ndim != 1:
        raise AnalysisError(f"escalc: column {name!r} must be one-dimensional")
    if n is not None and arr.shape[0] != n:
        raise AnalysisError(
            f"escalc: column {name!r} has {arr.shape[0]} values, expected {n} (mismatched lengths)"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise AnalysisError(
            f"escalc: column {name!r} has a missing or non-finite value ({_row(bad, places)})"
        )
    return arr


def _require(cond: NDArray[np.bool_], message: str, places: Places | None) -> None:
    if not np.all(cond):
        row = int(np.flatnonzero(~cond)[0])
        raise AnalysisError(f"escalc: {message} ({_row(row, places)})")


def _apply_rules(
    entry: Measure,
    form: tuple[str, ...],
    cols: dict[str, FloatArray],
    places: Places | None,
    settings: Settings,
) -> None:
    """The measure's value rules (:meth:`Measure.rules_for`), first broken one raised."""
    for rule in entry.rules_for(form, settings):
        values = [cols[arg] for arg in rule.args]
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = np.asarray(rule.test(*values), dtype=bool)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise AnalysisError(f"escalc: {_broken(rule, values, row)} ({_row(row, places)})")


def _broken(rule: Rule, values: list[FloatArray], row: int) -> str:
    if len(rule.args) == 1:
        return f"{rule.args[0]} {values[0][row]:g} {rule.problem}"
    return rule.problem


def escalc(
    measure: str,
    *,
    drop00: bool = False,
    labels: Sequence[str] | None = None,
    places: Places | None = None,
    settings: Settings | None = None,
    **columns: ArrayLike | None,
) -> EffectSizes:
    """Compute effect sizes ``yi`` and sampling variances ``vi`` (metafor ``escalc``).

    Columns are passed by their metafor names (``ai, bi, ci, di, n1i, n2i, m1i, sd1i, m2i,
    sd2i, ri, ni, yi, vi, sei``); each measure's forms are in
    :data:`cosmo_runner.meta.measures.MEASURES` (for the 2x2 measures ``n1i``/``n2i`` may
    replace ``bi``/``di``). Input that breaks the table's value rules, or gives a study no
    finite effect or no positive variance, raises :class:`~cosmo_runner.errors.AnalysisError`
    naming the first offending study as ``places(i)`` does (i 0-based; default ``row i+1``); the
    pipeline passes :meth:`cosmo_runner.tables.Table.location` text (file line and study).
    ``settings``: GEN's ``ci_level`` and ``input_scale`` (:class:`~cosmo_runner.meta.measures.Settings`).
    """
    entry = lookup(measure)
    given = {name: value for name, value in columns.items() if value is not None}
    first = next(iter(given.values()), None)
    n = None if first is None else int(np.asarray(first).shape[0]) if np.ndim(first) else None
    form = entry.form(given)
    missing = [arg for arg in form if arg not in given]
    if missing:
        raise AnalysisError(
            f"escalc: column {missing[0]!r}{entry.instead(missing[0])} is required for "
            f"measure {entry.name}"
        )
    cols = {arg: _column(arg, given[arg], n, places) for arg in form}
    settings = settings or Settings()
    _apply_rules(entry, form, cols, places, settings)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        effects = entry.compute(cols, settings)
    yi, vi = effects.yi, effects.vi
    bad_yi, bad_vi = bad_effects(effects)
    _require(~bad_yi, f"the {entry.name} effect size is not finite", places)
    _require(~bad_vi, f"the {entry.name} sampling variance is not > 0", places)
    half, drop = effects.added, effects.double_zero

    count = int(yi.shape[0])
    if labels is None:
        all_labels = tuple(str(i + 1) for i in range(count))
    else:
        all_labels = tuple(map(str, labels))
        if len(all_labels) != count:
            raise AnalysisError(
                f"escalc: {len(all_labels)} study labels for {count} studies (mismatched lengths)"
            )
    keep = np.ones(count, dtype=bool)
    if drop00 and drop is not None:
        keep = ~drop
    everything = bool(keep.all())
    kept = tuple(range(count)) if everything else tuple(np.flatnonzero(keep).tolist())
    dropped = tuple(np.flatnonzero(~keep).tolist())
    added = () if half is None else tuple(np.flatnonzero(half & keep).tolist())
    yi_k = np.ascontiguousarray(yi[keep], dtype=np.float64)
    vi_k = np.ascontiguousarray(vi[keep], dtype=np.float64)
    return EffectSizes(
        measure=entry.name,
        yi=yi_k,
        vi=vi_k,
        kept=kept,
        labels=all_labels if everything else tuple(all_labels[i] for i in kept),
        dropped=dropped,
        dropped_labels=tuple(all_labels[i] for i in dropped),
        added_half=added,
        sizes={key: np.ascontiguousarray(v[keep]) for key, v in entry.sizes(cols).items()},
        warnings=_notes(effects, keep, places),
    )


#: Notes kept per kind (the rest counted in one more line), as the validators cap findings.
NOTES_CAP = 100


def _notes(effects: Effects, keep: NDArray[np.bool_], places: Places | None) -> tuple[str, ...]:
    out: list[str] = []
    for note in effects.notes:
        rows = np.flatnonzero(note.rows & keep)
        out += [f"{_row(i, places)}: {note.message(i)}" for i in rows[:NOTES_CAP].tolist()]
        if rows.size > NOTES_CAP:
            out.append(f"{rows.size - NOTES_CAP} more studies with the same note ({note.code})")
    return tuple(out)
