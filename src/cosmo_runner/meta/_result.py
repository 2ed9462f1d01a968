"""What a fit is told and what it returns: the test names, the algorithm names, the
fitting controls (:class:`Control`), the confidence level rule and the result
(:class:`RMAResult`). The estimators live in :mod:`._estimators`, the decisions of a fit in
:mod:`._decisions`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.errors import AnalysisError

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_CODE",
    "CLOSED",
    "EPS",
    "FALLBACK",
    "FISHER",
    "ROOT",
    "TESTS",
    "Control",
    "FloatArray",
    "Lazy",
    "Num",
    "RMAResult",
    "RowsWarning",
    "alpha_for_level",
    "rows_text",
]

FloatArray = NDArray[np.float64]


#: A float for one analysis, a float array over analyses for a batch.
Num = Any


#: metafor 3.8.1's tests: ``z`` (normal), ``t`` (t with k - p df, the variance as for z),
#: ``knha`` (Knapp & Hartung 2003: the variance scaled by s2w, t with k - p df) and ``adhoc``
#: (knha with s2w truncated below at 1; Knapp & Hartung's ad hoc improvement). What each
#: means is decided in :mod:`._decisions` (``reference_df``, ``variance_factor``).
TESTS = ("z", "t", "knha", "adhoc")


FISHER = "fisher-scoring"


FALLBACK = "bounded-optimisation fallback"


CLOSED = "closed form"


ROOT = "root finding"


#: ``algorithm`` values; batches keep small integer codes into this tuple until asked.
ALGORITHMS = (CLOSED, FISHER, FALLBACK, ROOT)


ALGORITHM_CODE = {name: code for code, name in enumerate(ALGORITHMS)}


#: Machine epsilon of float64 (metafor's ``.Machine$double.eps``).
EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Control:
    """Algorithm settings (metafor's ``control`` list).

    ``threshold`` and ``maxiter`` govern Fisher scoring (ML, REML, EB): stop when the absolute
    step on tau2 is at most ``threshold``, give up after ``maxiter`` iterations. The defaults
    converge (1e-10 and 200, docs/meta.md "Convergence and control"); metafor 3.8's are
    ``threshold=1e-5, maxiter=100``, which reproduce its fits exactly. ``tol`` is the tolerance of
    the likelihood check at tau2 = 0 (``ll0check``). ``stepadj`` scales every step.
    ``tau2_init`` replaces the HE start. ``fallback`` enables the bounded maximisation when
    Fisher scoring does not converge. ``global_check`` (ML, REML; beyond metafor) compares
    the converged estimate with the likelihood at a few tau2 values spread over
    ``(0.05 .. 2.5) var(yi)``; where one is higher by more than ``tol``, the maximum is found
    by the bounded maximisation and the profile between the two says why: a valley between
    them (a lower point) is a second, higher peak ("multimodal" warning: Fisher scoring
    stopped at a local maximum); none means a single peak that Fisher scoring stopped short
    of on a flat likelihood (a "stopped short" note). ``{"threshold": 1e-5, "maxiter": 100,
    "global_check": False}`` gives metafor's default result in every case; without
    ``global_check`` the check applies only where metafor's stop is more than ``tol`` below
    a higher likelihood. Root finding (PM, the fallback, Q-profile intervals)
    always converges to machine precision (relative ``xrtol``), which is where metafor's
    ``uniroot`` (tol ~1.2e-4) is headed.
    """

    threshold: float = 1e-10
    maxiter: int = 200
    tol: float = EPS**0.25
    stepadj: float = 1.0
    tau2_init: float | None = None
    ll0check: bool = True
    fallback: bool = True
    global_check: bool = True
    xrtol: float = 4 * EPS

    def __post_init__(self) -> None:
        """Every setting in its domain, or an :class:`AnalysisError` naming it (the spec's
        schema states the same domains for ``"control"``)."""
        for name in ("ll0check", "fallback", "global_check"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise AnalysisError(f"rma: control {name} must be true or false")
        if (
            isinstance(self.maxiter, Real)
            and not isinstance(self.maxiter, bool)
            and float(self.maxiter).is_integer()
        ):
            object.__setattr__(self, "maxiter", int(self.maxiter))  # 100.0 from a JSON spec
        if not (isinstance(self.maxiter, Integral) and self.maxiter >= 1) or isinstance(
            self.maxiter, bool
        ):
            raise AnalysisError(f"rma: control maxiter must be an integer >= 1: {self.maxiter!r}")
        for name in ("threshold", "tol", "stepadj", "xrtol", "tau2_init"):
            value = getattr(self, name)
            if name == "tau2_init" and value is None:
                continue
            zero_ok = name == "tau2_init"
            real = isinstance(value, Real) and not isinstance(value, bool)
            if not (real and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
                bound = ">= 0" if zero_ok else "> 0"
                raise AnalysisError(f"rma: control {name} must be a number {bound}: {value!r}")

    @classmethod
    def from_mapping(cls, control: Mapping[str, Any] | Control | None) -> Control:
        """Build from a mapping with any of the field names (unknown keys are an error)."""
        if control is None:
            return _DEFAULT_CONTROL
        if isinstance(control, Control):
            return control
        unknown = sorted(set(control) - set(cls.__dataclass_fields__))
        if unknown:
            raise AnalysisError(f"rma: unknown control setting(s): {', '.join(unknown)}")
        return cls(**dict(control))


def rows_text(rows: Sequence[int], n: int) -> str:
    """The note naming some of ``n`` analyses (rows) of a batch, 0-based: ``" in 2 of 18
    analyses (rows 0, 10)"`` (five at most); nothing for one analysis."""
    if n == 1:
        return ""
    shown = ", ".join(str(int(i)) for i in rows[:5])
    more = ", ..." if len(rows) > 5 else ""
    return f" in {len(rows)} of {n} analyses (rows {shown}{more})"


class RowsWarning(str):
    """A warning about some analyses (rows) of a batch fit: its text names them as
    :func:`rows_text` does. ``template`` (``{}`` where that note goes), ``rows`` and ``n``
    let a caller that knows what the rows stand for name them its way (:meth:`placed`: the
    leave-one-out refits by the study each leaves out) or put batches together
    (:meth:`merged`)."""

    template: str
    rows: tuple[int, ...]
    n: int

    def __new__(cls, template: str, rows: Iterable[Any], n: int) -> RowsWarning:
        picked = tuple(int(r) for r in rows)
        self = super().__new__(cls, template.format(rows_text(picked, n)))
        self.template, self.rows, self.n = template, picked, n
        return self

    def __getnewargs__(self) -> tuple[str, tuple[int, ...], int]:  # type: ignore[override]
        return self.template, self.rows, self.n  # pickles (batch results) keep the rows

    def placed(self, place: Callable[[int], str], what: str) -> str:
        """The text with the rows named by ``place`` (up to five), counted as ``what``:
        ``" in 2 of 18 refits (without bcg.csv line 2 (study 'A'); ...)"``."""
        shown = "; ".join(place(r) for r in self.rows[:5])
        more = "; ..." if len(self.rows) > 5 else ""
        return self.template.format(f" in {len(self.rows)} of {self.n} {what} ({shown}{more})")

    @staticmethod
    def merged(parts: Sequence[tuple[int, Sequence[str]]], n: int) -> tuple[str, ...]:
        """The warnings of batches whose first rows are at the given offsets, as warnings
        over all ``n`` rows: one per text (or template), rows shifted and joined, in order."""
        out: dict[str, list[int] | None] = {}
        for offset, warnings in parts:
            for w in warnings:
                if isinstance(w, RowsWarning):
                    rows = out.setdefault(w.template, [])
                    assert rows is not None
                    rows.extend(offset + r for r in w.rows)
                else:
                    out.setdefault(str(w), None)
        return tuple(
            str(key) if rows is None else RowsWarning(key, sorted(rows), n)
            for key, rows in out.items()
        )


class Lazy:
    """Results a plain fit does not pay for: computed on first access, then cached.

    For one analysis (``single``) arrays are reduced to their only element; for a batch an
    undefined value (``None``) becomes an all-``nan`` array of ``rows``.
    """

    def __init__(
        self,
        funcs: Mapping[str, Callable[[], Any]],
        single: bool = False,
        rows: int | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        self._funcs = dict(funcs)
        # already computed values (taken as they are, not reduced or filled)
        self._values: dict[str, Any] = {} if values is None else values
        self.single = single
        self.rows = rows

    def __contains__(self, name: object) -> bool:
        return name in self._funcs or name in self._values

    def get(self, name: str) -> Any:
        if name not in self._values:
            value = self._funcs[name]()
            if value is None and not self.single and self.rows is not None:
                value = np.full(self.rows, np.nan)  # undefined for every analysis
            if self.single and isinstance(value, np.ndarray):
                value = value[0]
                if isinstance(value, np.generic):
                    value = value.item()
            self._values[name] = value
        return self._values[name]


_DEFAULT_CONTROL = Control()


@dataclass(frozen=True)
class RMAResult:
    """The fitted model; attribute names follow metafor and the JSON result keys.

    For one analysis the numbers are floats (``None`` where undefined, e.g. ``df`` for the
    z-test or ``tau2_se`` for EE); for a batch they are arrays over analyses (``nan`` where
    undefined for every analysis). With moderators, ``estimate``, ``se``, ``statistic``,
    ``pval``, ``ci_lb`` and ``ci_ub`` are arrays over the model terms (``terms``, the
    intercept first), ``Q`` is the residual heterogeneity statistic QE, ``QM`` the omnibus
    test of the moderators (an F statistic with ``test="knha"``) and ``R2`` the pseudo-R2
    (Raudenbush 2009) against the intercept-only model; ``pi_lb``/``pi_ub`` are ``None``.
    ``weights`` are the model's weights in percent.

    ``tau2_se``, ``weights``, ``Q_pval``, ``algorithm`` and ``R2`` are computed on first
    access (a plain fit does not pay for them) from the arrays passed to :func:`rma`: do not modify
    those arrays in place before reading them. For a batch, ``statistic``, ``pval``,
    ``tau``, ``I2``, ``H2``, ``pi_lb`` and ``pi_ub`` are also computed on first access (from
    per-analysis results kept by the fit, not from the inputs).
    """

    k: int
    estimate: Num
    se: Num
    df: Num
    ci_lb: Num
    ci_ub: Num
    tau2: Num
    Q: Num
    Q_df: int
    method: str
    test: str
    level: float
    converged: Num
    iterations: Num
    warnings: tuple[str, ...]
    lazy: Lazy = field(repr=False, compare=False)
    vt: Num = None
    terms: tuple[str, ...] | None = None
    vb: FloatArray | None = None
    QM: Num = None
    QM_df: tuple[int, ...] | None = None
    QM_pval: Num = None

    @classmethod
    def _make(cls, **values: Any) -> RMAResult:
        """Construct without the generated ``__init__`` (30-odd ``object.__setattr__`` calls
        are a fifth of a small fit); same fields and defaults."""
        self = object.__new__(cls)
        self.__dict__.update(_RESULT_DEFAULTS)
        self.__dict__.update(values)
        return self

    @property
    def statistic(self) -> Num:
        """Test statistic of the estimate (z, or t with ``test="knha"``)."""
        return self.lazy.get("statistic")

    @property
    def pval(self) -> Num:
        """Two-sided p-value of the estimate."""
        return self.lazy.get("pval")

    @property
    def tau(self) -> Num:
        """Square root of tau2."""
        return self.lazy.get("tau")

    @property
    def I2(self) -> Num:
        """I2 (percent): share of the total variability due to heterogeneity."""
        return self.lazy.get("I2")

    @property
    def H2(self) -> Num:
        """H2: total variability over sampling variability."""
        return self.lazy.get("H2")

    @property
    def pi_lb(self) -> Num:
        """Lower bound of the prediction interval (None with moderators)."""
        return self.lazy.get("pi_lb")

    @property
    def pi_ub(self) -> Num:
        """Upper bound of the prediction interval (None with moderators)."""
        return self.lazy.get("pi_ub")

    @property
    def R2(self) -> Num:
        """Pseudo-R2 of a meta-regression (percent), None without moderators: computed on
        first access (it refits the model without moderators; Egger's test never asks)."""
        return self.lazy.get("R2") if "R2" in self.lazy else None

    @property
    def tau2_se(self) -> Num:
        """Standard error of tau2 as metafor computes it per estimator (None/nan for EE)."""
        return self.lazy.get("tau2_se")

    @property
    def Q_pval(self) -> Num:
        """p-value of the Q test (chi-square with Q_df df, survival function)."""
        return self.lazy.get("Q_pval")

    @property
    def algorithm(self) -> Any:
        """How tau2 was found: one of :data:`ALGORITHMS` (an array of them for a batch)."""
        return self.lazy.get("algorithm")

    @property
    def weights(self) -> FloatArray:
        """The model's weights in percent (per study; analyses x studies for a batch)."""
        out: FloatArray = self.lazy.get("weights")
        return out

    @property
    def batch(self) -> bool:
        """True when the fit covers several analyses (array attributes)."""
        return isinstance(self.tau2, np.ndarray) and self.terms is None


_RESULT_DEFAULTS = {
    f.name: f.default
    for f in RMAResult.__dataclass_fields__.values()
    if f.default is not dataclasses.MISSING
}


def alpha_for_level(level: float) -> float:
    """The alpha of a confidence ``level``, read as metafor's ``.level`` reads it.

    ``level >= 1`` is a percentage (95 -> 0.05; 1 -> a 1% interval), ``0.5 < level < 1`` a
    coverage (0.95 -> 0.05), ``level <= 0.5`` an alpha itself (0.05 -> a 95% interval).
    NaN and values outside (0, 100) raise :class:`AnalysisError`. This is the one place
    the rule lives; results record the level used as a percentage, ``100 (1 - alpha)``.
    """
    lev = float(level)
    if not 0 < lev < 100:  # also False for NaN
        raise AnalysisError(f"rma: level must be in (0, 100), got {level!r}")
    if lev >= 1:
        return (100.0 - lev) / 100.0  # metafor's arithmetic: 95 -> 0.05 exactly
    if lev > 0.5:
        return 1.0 - lev
    return lev
