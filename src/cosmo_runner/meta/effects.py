"""Effect sizes and their sampling variances, as metafor's ``escalc`` computes them.

Measures (Viechtbauer 2010, metafor ``escalc`` with its defaults):

- ``RR``  log risk ratio, ``OR`` log odds ratio, ``RD`` risk difference, from the 2x2 counts
  ``ai, bi, ci, di`` (or ``ai, n1i, ci, n2i``). A study with a zero cell gets 1/2 added to
  all four cells (``add=1/2, to="only0"``); studies with no events (or only events) in both
  arms are kept unless ``drop00=True``. The RD variance is the large-sample one (``vtype="LS"``).
- ``MD``  raw mean difference, ``vi = sd1i^2/n1i + sd2i^2/n2i``.
- ``SMD`` Hedges' g (Hedges 1981) with the exact gamma-function correction
  ``c(m) = exp(lgamma(m/2) - log(sqrt(m/2)) - lgamma((m-1)/2))``, ``m = n1i + n2i - 2``, and
  the large-sample variance ``1/n1i + 1/n2i + g^2 / (2 (n1i + n2i))``.
- ``ZCOR`` Fisher's r-to-z, ``yi = atanh(ri)``, ``vi = 1/(ni - 3)``.
- ``GEN`` effects given directly: ``yi`` with ``vi`` or ``sei`` (``vi = sei^2``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from cosmo_runner.errors import AnalysisError

__all__ = ["MEASURES", "REQUIRED_COLUMNS", "EffectSizes", "escalc"]

FloatArray = NDArray[np.float64]

MEASURES = ("RR", "OR", "RD", "MD", "SMD", "ZCOR", "GEN")

#: The metafor argument names each measure needs (alternatives are resolved in ``escalc``).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "RR": ("ai", "bi", "ci", "di"),
    "OR": ("ai", "bi", "ci", "di"),
    "RD": ("ai", "bi", "ci", "di"),
    "MD": ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),
    "SMD": ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),
    "ZCOR": ("ri", "ni"),
    "GEN": ("yi", "vi"),
}


@dataclass(frozen=True)
class EffectSizes:
    """Effect sizes ``yi`` with sampling variances ``vi`` (kept studies only).

    ``kept`` are the indices (into the input rows) of the studies in ``yi``/``vi``;
    ``dropped`` the indices removed by ``drop00=True``; ``added_half`` the indices of kept
    studies whose 2x2 cells got +1/2. ``labels`` holds the kept studies' labels and
    ``dropped_labels`` the dropped ones' (row numbers from 1 when no labels were given).
    """

    measure: str
    yi: FloatArray
    vi: FloatArray
    kept: tuple[int, ...]
    labels: tuple[str, ...]
    dropped: tuple[int, ...] = ()
    dropped_labels: tuple[str, ...] = ()
    added_half: tuple[int, ...] = field(default=())

    @property
    def k(self) -> int:
        """Number of studies with an effect size."""
        return int(self.yi.shape[0])


Places = Callable[[int], str]


def _row(i: int, places: Places | None) -> str:
    """Study ``i`` (0-based) as the caller names places (default ``row i+1``)."""
    return places(i) if places is not None else f"row {i + 1}"


def _column(name: str, value: ArrayLike | None, n: int | None, places: Places | None) -> FloatArray:
    if value is None:
        raise AnalysisError(f"escalc: column {name!r} is required for this measure")
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


def escalc(
    measure: str,
    *,
    drop00: bool = False,
    labels: Sequence[str] | None = None,
    places: Places | None = None,
    **columns: ArrayLike | None,
) -> EffectSizes:
    """Compute effect sizes ``yi`` and sampling variances ``vi`` (metafor ``escalc``).

    Columns are passed by their metafor names (``ai, bi, ci, di, n1i, n2i, m1i, sd1i, m2i,
    sd2i, ri, ni, yi, vi, sei``). For the 2x2 measures ``n1i``/``n2i`` may replace
    ``bi``/``di``. Invalid input raises :class:`~cosmo_runner.errors.AnalysisError` naming
    the first offending study as ``places(i)`` does (i 0-based; default ``row i+1``); the
    pipeline passes :meth:`cosmo_runner.tables.Table.location` text (file line and study).
    """
    measure = str(measure).upper()
    if measure not in MEASURES:
        raise AnalysisError(f"escalc: unknown measure {measure!r} (one of {', '.join(MEASURES)})")
    given = {name: value for name, value in columns.items() if value is not None}
    first = next(iter(given.values()), None)
    n = None if first is None else int(np.asarray(first).shape[0]) if np.ndim(first) else None

    def col(name: str) -> FloatArray:
        return _column(name, given.get(name), n, places)

    half: NDArray[np.bool_] | None = None
    drop: NDArray[np.bool_] | None = None
    if measure in ("RR", "OR", "RD"):
        ai, ci = col("ai"), col("ci")
        bi = col("bi") if "bi" in given or "n1i" not in given else col("n1i") - ai
        di = col("di") if "di" in given or "n2i" not in given else col("n2i") - ci
        cells = np.stack([ai, bi, ci, di])
        _require(np.all(cells >= 0, axis=0), "2x2 cell counts must be non-negative", places)
        _require((ai + bi > 0) & (ci + di > 0), "each arm needs at least one participant", places)
        drop = ((ai == 0) & (ci == 0)) | ((bi == 0) & (di == 0))
        half = np.any(cells == 0, axis=0)
        add = np.where(half, 0.5, 0.0)
        ai, bi, ci, di = ai + add, bi + add, ci + add, di + add
        n1i, n2i = ai + bi, ci + di
        p1i, p2i = ai / n1i, ci / n2i
        with np.errstate(divide="ignore", invalid="ignore"):
            if measure == "RR":
                yi = np.log(p1i) - np.log(p2i)
                vi = 1.0 / ai - 1.0 / n1i + 1.0 / ci - 1.0 / n2i
            elif measure == "OR":
                yi = np.log(p1i / (1.0 - p1i)) - np.log(p2i / (1.0 - p2i))
                vi = 1.0 / ai + 1.0 / bi + 1.0 / ci + 1.0 / di
            else:
                yi = p1i - p2i
                vi = p1i * (1.0 - p1i) / n1i + p2i * (1.0 - p2i) / n2i
    elif measure in ("MD", "SMD"):
        m1i, sd1i, n1i = col("m1i"), col("sd1i"), col("n1i")
        m2i, sd2i, n2i = col("m2i"), col("sd2i"), col("n2i")
        _require((sd1i >= 0) & (sd2i >= 0), "standard deviations must be non-negative", places)
        _require((n1i >= 1) & (n2i >= 1), "group sizes must be at least 1", places)
        if measure == "MD":
            yi = m1i - m2i
            vi = sd1i**2 / n1i + sd2i**2 / n2i
        else:
            mi = n1i + n2i - 2.0
            _require(mi > 1, "SMD needs n1i + n2i > 3", places)
            sdpi = np.sqrt(((n1i - 1.0) * sd1i**2 + (n2i - 1.0) * sd2i**2) / mi)
            _require(sdpi > 0, "SMD needs a positive pooled standard deviation", places)
            cmi = np.exp(gammaln(mi / 2.0) - np.log(np.sqrt(mi / 2.0)) - gammaln((mi - 1.0) / 2.0))
            yi = cmi * (m1i - m2i) / sdpi
            vi = 1.0 / n1i + 1.0 / n2i + yi**2 / (2.0 * (n1i + n2i))
    elif measure == "ZCOR":
        ri, ni = col("ri"), col("ni")
        _require(np.abs(ri) < 1, "correlations must lie strictly between -1 and 1", places)
        _require(ni > 3, "ZCOR needs ni > 3", places)
        yi = np.arctanh(ri)
        vi = 1.0 / (ni - 3.0)
    else:
        yi = col("yi")
        if "vi" in given:
            vi = col("vi")
        elif "sei" in given:
            sei = col("sei")
            _require(sei >= 0, "standard errors must be non-negative", places)
            vi = sei**2
        else:
            raise AnalysisError("escalc: GEN needs 'vi' or 'sei' with 'yi'")

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
        measure=measure,
        yi=yi_k,
        vi=vi_k,
        kept=kept,
        labels=all_labels if everything else tuple(all_labels[i] for i in kept),
        dropped=dropped,
        dropped_labels=tuple(all_labels[i] for i in dropped),
        added_half=added,
    )
