"""The measure table: everything cosmo-runner knows about an effect-size measure, in one place.

Each :class:`Measure` entry holds, for one of metafor's ``escalc`` measures (Viechtbauer
2010; metafor 3.8 ``escalc`` with its defaults):

- its metafor name and arguments, as the *forms* ``escalc`` accepts (``ai, bi, ci, di`` or
  ``ai, n1i, ci, n2i``; ``yi, vi`` or ``yi, sei``): the first form whose columns are all
  given is used, else the first (whose missing columns are then named);
- its value rules (:class:`Rule`), the ONE definition that the ``effect_table`` validator
  (:mod:`cosmo_runner.validators.effect_table`) and :func:`cosmo_runner.meta.effects.escalc`
  both apply, in the same order;
- the computation of ``yi`` and ``vi`` (vectorised numpy), with its zero-cell handling;
- the label of what the plots show (``label``: "Risk Ratio" for RR, whose values are shown
  back-transformed), the back-transformation of the pooled results, and the plot axis
  (``"ratio"``: log scale labelled in ratio units, metafor's ``atransf=exp``; ``"r"``: the z
  scale labelled in correlations, ``atransf=transf.ztor``; ``"linear"``) with its label.

Everything else derives from :data:`MEASURES`: ``escalc``, the validator, the analysis (the
columns it reads, ``transformed``), the plots (names and axes) and the run-spec schema's
``measure`` enum (``src/cosmo_runner/schemas/run_spec.schema.json`` lists the names for its
readers; a test checks it equals this table's keys). An unknown name is an
:class:`~cosmo_runner.errors.UnknownMeasureError` from :func:`lookup`, never a default.

Value rules follow what metafor's ``escalc`` accepts, with one deliberate difference: a
variance or standard error given directly (GEN) must be > 0, because the fit weighs each
study by ``1/vi`` (metafor's escalc passes 0 on, negative ``sei`` even squared, and then
``rma`` fails or drops the study). Standard deviations may be 0, as in metafor; a study
whose computed ``vi`` is not > 0 (both SDs 0) is then reported by name by the validator and
``escalc`` alike (:func:`bad_effects`).

The module imports numpy but not scipy at its top: the ``effect_table`` validator reads the
table, and ``cosmo-runner validate`` must not pay for scipy (tests/meta/test_lazy_import.py).
The few computations that need ``scipy.special`` import it where they run.

Adding a measure means adding one entry here (and its name to the schema enum, its metafor
fixture in ``scripts/metafor/make_fixtures.R`` and a line in docs/meta.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.errors import UnknownMeasureError

__all__ = [
    "MAX_COUNT",
    "MEASURES",
    "TRANSFORMS",
    "Effects",
    "Measure",
    "Rule",
    "Transform",
    "bad_effects",
    "lookup",
]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
Columns = Mapping[str, FloatArray]

#: Counts are whole numbers of at most this size (floats are exact integers up to 2^53).
MAX_COUNT = 2.0**53


# --------------------------------------------------------------------------- value rules


@dataclass(frozen=True)
class Rule:
    """A value rule: the rows where ``test(*columns)`` is false break it.

    A rule of one argument is about a cell (``problem`` follows the cell's value: "-1 must
    be > 0"); a rule of several is about a row (``problem`` is the whole sentence). Rules
    apply only when every one of their ``args`` is in the form in use, in table order, and a
    cell or row that broke one rule is not checked by the later ones (one finding each).
    ``code`` is the validator's finding code; ``when`` limits the rule to some settings.
    ``as_written``: the cell must also be a whole number as written, not only its double
    (``9007199254740993`` and ``1.0000000000000001`` have whole doubles;
    :meth:`cosmo_runner.tables.Table.integral` reads the text), checked by effect_table and
    the analysis.
    """

    args: tuple[str, ...]
    test: Callable[..., BoolArray]
    problem: str
    code: str
    when: Callable[[Settings], bool] | None = None
    as_written: bool = False


def _cell(
    arg: str,
    test: Callable[[FloatArray], BoolArray],
    problem: str,
    code: str,
    *,
    as_written: bool = False,
) -> Rule:
    return Rule((arg,), test, problem, code, as_written=as_written)


def _whole(x: FloatArray) -> BoolArray:
    out: BoolArray = (np.floor(x) == x) & (np.abs(x) <= MAX_COUNT)
    return out


_NOT_A_COUNT = "must be an integer count (a whole number within +-2^53)"


def _count(arg: str) -> tuple[Rule, ...]:
    """An event or cell count: a whole number >= 0."""
    return (
        _cell(arg, _whole, _NOT_A_COUNT, "not-a-count", as_written=True),
        _cell(arg, lambda x: x >= 0, "must be a non-negative count", "negative-count"),
    )


def _size(arg: str) -> tuple[Rule, ...]:
    """A sample size: a whole number > 0 (metafor: 'group sizes are <= 0')."""
    return (
        _cell(arg, _whole, _NOT_A_COUNT, "not-a-count", as_written=True),
        _cell(arg, lambda x: x > 0, "must be a positive count", "not-positive-count"),
    )


def _positive(arg: str) -> tuple[Rule, ...]:
    """A variance or standard error given directly: > 0 (the fit weighs by 1/vi)."""
    return (_cell(arg, lambda x: x > 0, "must be > 0", "not-positive"),)


def _time(arg: str) -> tuple[Rule, ...]:
    """A person-time: > 0 (metafor: 'person-times are <= 0')."""
    return (_cell(arg, lambda x: x > 0, "must be > 0", "not-positive"),)


def _sd(arg: str) -> tuple[Rule, ...]:
    """A standard deviation: >= 0 (metafor: 'standard deviations are negative')."""
    return (_cell(arg, lambda x: x >= 0, "must be >= 0", "negative-sd"),)


def _correlation(arg: str) -> tuple[Rule, ...]:
    """A correlation: strictly between -1 and 1 (|r| = 1 has no finite z and no variance)."""
    return (
        _cell(
            arg, lambda x: (x > -1) & (x < 1), "must be between -1 and 1 (exclusive)",
            "out-of-range",
        ),
    )  # fmt: skip


# --------------------------------------------------------------------------- back-transforms


@dataclass(frozen=True)
class Transform:
    """A back-transformation of pooled results, as metafor's ``transf.*`` function ``name``.

    ``needs`` names the study column whose harmonic mean the function takes as its second
    argument (``ni`` for ``ipft.hm``, ``ti`` for ``iirft``); ``None`` for the others.
    """

    name: str
    func: Callable[[FloatArray, float], FloatArray]
    reference: str
    needs: str | None = None

    def apply(self, x: FloatArray, targ: float = math.nan) -> FloatArray:
        """``x`` back-transformed (``targ``: the harmonic mean of the ``needs`` column)."""
        with np.errstate(all="ignore"):
            return self.func(np.asarray(x, dtype=np.float64), targ)


def _ilogit(x: FloatArray, _: float) -> FloatArray:
    from scipy.special import expit  # here, not at the top: see the module docstring

    out: FloatArray = expit(x)
    return out


def _iarcsin(x: FloatArray, _: float) -> FloatArray:
    out: FloatArray = np.where(x < 0, 0.0, np.where(x > math.pi / 2, 1.0, np.sin(x) ** 2))
    return out


def _pft(p: float, n: float) -> float:
    """metafor's ``transf.pft``: the double arcsine of proportion ``p`` out of ``n``."""
    x = p * n
    return 0.5 * (math.asin(math.sqrt(x / (n + 1))) + math.asin(math.sqrt((x + 1) / (n + 1))))


def _ipft(x: FloatArray, n: float) -> FloatArray:
    """metafor's ``transf.ipft.hm`` with ``n`` the harmonic mean of ni (Miller 1978)."""
    s2 = np.sin(2 * x)
    z = 0.5 * (1 - np.sign(np.cos(2 * x)) * np.sqrt(1 - (s2 + (s2 - 1 / s2) / n) ** 2))
    out: FloatArray = np.where(x > _pft(1.0, n), 1.0, np.where(x < _pft(0.0, n), 0.0, z))
    return out


def _isqrt(x: FloatArray, _: float) -> FloatArray:
    out: FloatArray = np.where(x < 0, 0.0, x * x)
    return out


def _iirft(x: FloatArray, t: float) -> FloatArray:
    """metafor's ``transf.iirft`` with ``t`` the harmonic mean of ti."""
    z = (1 / t - 8 * x**2 + 16 * t * x**4) / (16 * x**2 * t)
    z = np.where(x < 0.5 * math.sqrt(1 / t), 0.0, z)  # below transf.irft(0, t)
    out: FloatArray = np.where(z <= np.finfo(np.float64).eps, 0.0, z)
    return out


#: The back-transformations by name (metafor 3.8 ``transf.*``), the run spec's ``transf``.
TRANSFORMS: dict[str, Transform] = {
    t.name: t
    for t in (
        Transform("exp", lambda x, _: np.exp(x), "exp(x): log ratios back to ratios"),
        Transform("ztor", lambda x, _: np.tanh(x), "transf.ztor: tanh(z), Fisher's z to r"),
        Transform("ilogit", _ilogit, "transf.ilogit: 1/(1 + exp(-x))"),
        Transform("iarcsin", _iarcsin, "transf.iarcsin: sin(x)^2, clamped to [0, 1]"),
        Transform("ipft.hm", _ipft, "transf.ipft.hm: Miller (1978), harmonic mean of ni", "ni"),
        Transform("isqrt", _isqrt, "transf.isqrt: x^2 (0 below 0)"),
        Transform("iirft", _iirft, "transf.iirft: inverse Freeman-Tukey rate, mean ti", "ti"),
    )
}


# --------------------------------------------------------------------------- computations


@dataclass(frozen=True)
class Settings:
    """How a measure reads its columns: GEN's ``ci_level`` (the level of given CIs, percent)
    and ``input_scale`` (``"log"``: yi and the CI are ratios, and their logs are analysed)."""

    ci_level: float = 95.0
    input_scale: str = "linear"

    @classmethod
    def from_spec(cls, spec: Mapping[str, object]) -> Settings:
        """The settings of a validator or analysis entry of a run spec (schema-checked)."""
        level = spec.get("ci_level", 95.0)
        return cls(float(level) if isinstance(level, int | float) else 95.0,
                   str(spec.get("input_scale", "linear")))  # fmt: skip


#: A given CI whose halves (on the analysis scale) differ by more than this share of the
#: larger one gets a warning naming the study: the CI was not symmetric there, so the input
#: scale may be wrong (a ratio's CI given on the linear scale) or the numbers rounded hard.
ASYMMETRY = 0.10


@dataclass(frozen=True)
class Note:
    """A warning about the rows in ``rows``; ``message(i)`` says it for row ``i``."""

    code: str
    rows: BoolArray
    message: Callable[[int], str]


@dataclass(frozen=True)
class Effects:
    """What a measure's computation returns for all input rows.

    ``added`` marks the rows whose counts got the zero-cell correction, ``double_zero`` the
    rows ``drop00=True`` removes (``None`` where the measure has neither); ``notes`` are
    warnings about some rows (a CI whose halves differ), which the validator and the
    analysis report by place.
    """

    yi: FloatArray
    vi: FloatArray
    added: BoolArray | None = None
    double_zero: BoolArray | None = None
    notes: tuple[Note, ...] = ()


def _two_by_two(c: Columns) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    ai, ci = c["ai"], c["ci"]
    bi = c["bi"] if "bi" in c else c["n1i"] - ai
    di = c["di"] if "di" in c else c["n2i"] - ci
    return ai, bi, ci, di


def _cells(c: Columns) -> tuple[tuple[FloatArray, ...], BoolArray, BoolArray]:
    """The 2x2 cells with metafor's defaults: ``add=1/2, to="only0"``; double zeros marked."""
    ai, bi, ci, di = _two_by_two(c)
    double_zero = ((ai == 0) & (ci == 0)) | ((bi == 0) & (di == 0))
    cells = np.stack([ai, bi, ci, di])
    added = np.any(cells == 0, axis=0)
    add = np.where(added, 0.5, 0.0)
    return (ai + add, bi + add, ci + add, di + add), added, double_zero


def _rr(c: Columns, _: Settings) -> Effects:
    (ai, bi, ci, di), added, dz = _cells(c)
    n1i, n2i = ai + bi, ci + di
    yi = np.log(ai / n1i) - np.log(ci / n2i)
    vi = 1.0 / ai - 1.0 / n1i + 1.0 / ci - 1.0 / n2i
    return Effects(yi, vi, added, dz)


def _or(c: Columns, _: Settings) -> Effects:
    (ai, bi, ci, di), added, dz = _cells(c)
    yi = np.log(ai / bi) - np.log(ci / di)
    vi = 1.0 / ai + 1.0 / bi + 1.0 / ci + 1.0 / di
    return Effects(yi, vi, added, dz)


def _rd(c: Columns, _: Settings) -> Effects:
    (ai, bi, ci, di), added, dz = _cells(c)
    n1i, n2i = ai + bi, ci + di
    p1i, p2i = ai / n1i, ci / n2i
    yi = p1i - p2i
    vi = p1i * (1.0 - p1i) / n1i + p2i * (1.0 - p2i) / n2i
    return Effects(yi, vi, added, dz)


def _md(c: Columns, _: Settings) -> Effects:
    yi = c["m1i"] - c["m2i"]
    vi = c["sd1i"] ** 2 / c["n1i"] + c["sd2i"] ** 2 / c["n2i"]
    return Effects(yi, vi)


def _cmi(mi: FloatArray) -> FloatArray:
    """Hedges' exact small-sample correction c(m) (metafor's ``.cmicalc``)."""
    from scipy.special import gammaln  # here, not at the top: see the module docstring

    out: FloatArray = np.exp(
        gammaln(mi / 2.0) - np.log(np.sqrt(mi / 2.0)) - gammaln((mi - 1.0) / 2.0)
    )
    return out


def _smd(c: Columns, _: Settings) -> Effects:
    n1i, n2i = c["n1i"], c["n2i"]
    mi = n1i + n2i - 2.0
    sdpi = np.sqrt(((n1i - 1.0) * c["sd1i"] ** 2 + (n2i - 1.0) * c["sd2i"] ** 2) / mi)
    yi = _cmi(mi) * (c["m1i"] - c["m2i"]) / sdpi
    vi = 1.0 / n1i + 1.0 / n2i + yi**2 / (2.0 * (n1i + n2i))
    return Effects(yi, vi)


def _rom(c: Columns, _: Settings) -> Effects:
    m1i, m2i = c["m1i"], c["m2i"]
    yi = np.log(m1i / m2i)
    vi = c["sd1i"] ** 2 / (c["n1i"] * m1i**2) + c["sd2i"] ** 2 / (c["n2i"] * m2i**2)
    return Effects(yi, vi)


def _zcor(c: Columns, _: Settings) -> Effects:
    return Effects(np.arctanh(c["ri"]), 1.0 / (c["ni"] - 3.0))


def _gen(c: Columns, s: Settings) -> Effects:
    """Given effects: vi, or sei^2, or a CI: sei = (upper - lower)/(2 z) on the analysis
    scale (the logs with ``input_scale: "log"``), z the normal quantile of ``ci_level``."""
    yi = np.log(c["yi"]) if s.input_scale == "log" else c["yi"]
    if "vi" in c:
        return Effects(yi, c["vi"])
    if "sei" in c:
        return Effects(yi, c["sei"] ** 2)
    lower, upper = c["lower"], c["upper"]
    if s.input_scale == "log":
        lower, upper = np.log(lower), np.log(upper)
    z = NormalDist().inv_cdf(0.5 + s.ci_level / 200.0)
    sei = (upper - lower) / (2.0 * z)
    low, high = yi - lower, upper - yi
    skew = np.abs(high - low) > ASYMMETRY * np.maximum(low, high)
    note = Note(
        "asymmetric-ci",
        skew,
        lambda i: (
            f"the {s.ci_level:g}% CI is asymmetric on the analysis scale (yi - lower "
            f"{low[i]:.4g}, upper - yi {high[i]:.4g}, more than {ASYMMETRY:.0%} apart); "
            "sei is taken from its full width"
        ),
    )
    return Effects(yi, sei**2, notes=(note,))


def _events(c: Columns, add: bool) -> tuple[FloatArray, FloatArray, BoolArray | None]:
    """Events ``xi`` and non-events ``mi`` (``ni - xi`` when ni is given); with ``add``,
    metafor's ``add=1/2, to="only0"``: 1/2 added to both where either is 0."""
    xi = c["xi"]
    mi = c["mi"] if "mi" in c else c["ni"] - xi
    if not add:
        return xi, mi, None
    added = (xi == 0) | (mi == 0)
    half = np.where(added, 0.5, 0.0)
    return xi + half, mi + half, added


def _pr(c: Columns, _: Settings) -> Effects:
    xi, mi, added = _events(c, add=True)
    p = xi / (xi + mi)
    return Effects(p, p * (1 - p) / (xi + mi), added)


def _pln(c: Columns, _: Settings) -> Effects:
    xi, mi, added = _events(c, add=True)
    return Effects(np.log(xi / (xi + mi)), 1 / xi - 1 / (xi + mi), added)


def _plo(c: Columns, _: Settings) -> Effects:
    xi, mi, added = _events(c, add=True)
    return Effects(np.log(xi / mi), 1 / xi + 1 / mi, added)


def _pas(c: Columns, _: Settings) -> Effects:
    xi, mi, _none = _events(c, add=False)
    ni = xi + mi
    return Effects(np.arcsin(np.sqrt(xi / ni)), 1 / (4 * ni))


def _pft_yi(c: Columns, _: Settings) -> Effects:
    xi, mi, _none = _events(c, add=False)
    ni = xi + mi
    yi = 0.5 * (np.arcsin(np.sqrt(xi / (ni + 1))) + np.arcsin(np.sqrt((xi + 1) / (ni + 1))))
    return Effects(yi, 1 / (4 * ni + 2))


def _rate_events(c: Columns, add: bool) -> tuple[FloatArray, BoolArray | None]:
    xi = c["xi"]
    if not add:
        return xi, None
    added = xi == 0
    return xi + np.where(added, 0.5, 0.0), added


def _ir(c: Columns, _: Settings) -> Effects:
    xi, added = _rate_events(c, add=True)
    ti = c["ti"]
    return Effects(xi / ti, xi / ti**2, added)


def _irln(c: Columns, _: Settings) -> Effects:
    xi, added = _rate_events(c, add=True)
    return Effects(np.log(xi / c["ti"]), 1 / xi, added)


def _irs(c: Columns, _: Settings) -> Effects:
    ti = c["ti"]
    return Effects(np.sqrt(c["xi"] / ti), 1 / (4 * ti))


def _irft(c: Columns, _: Settings) -> Effects:
    ti = c["ti"]
    iri = c["xi"] / ti
    return Effects(0.5 * (np.sqrt(iri) + np.sqrt(iri + 1 / ti)), 1 / (4 * ti))


def _two_rates(c: Columns) -> tuple[FloatArray, FloatArray, BoolArray, BoolArray]:
    """x1i, x2i with 1/2 added to both where either is 0; double zeros marked (drop00)."""
    x1i, x2i = c["x1i"], c["x2i"]
    double_zero = (x1i == 0) & (x2i == 0)
    added = (x1i == 0) | (x2i == 0)
    half = np.where(added, 0.5, 0.0)
    return x1i + half, x2i + half, added, double_zero


def _irr(c: Columns, _: Settings) -> Effects:
    x1i, x2i, added, dz = _two_rates(c)
    yi = np.log(x1i / c["t1i"]) - np.log(x2i / c["t2i"])
    return Effects(yi, 1 / x1i + 1 / x2i, added, dz)


def _ird(c: Columns, _: Settings) -> Effects:
    x1i, x2i, added, dz = _two_rates(c)
    t1i, t2i = c["t1i"], c["t2i"]
    return Effects(x1i / t1i - x2i / t2i, x1i / t1i**2 + x2i / t2i**2, added, dz)


def _smdh(c: Columns, _: Settings) -> Effects:
    sd1, sd2, n1, n2 = c["sd1i"], c["sd2i"], c["n1i"], c["n2i"]
    cmi = _cmi(n1 + n2 - 2.0)
    s2 = sd1**2 + sd2**2
    yi = cmi * (c["m1i"] - c["m2i"]) / np.sqrt(s2 / 2)
    vi = yi**2 * (sd1**4 / (n1 - 1) + sd2**4 / (n2 - 1)) / (2 * s2**2) + (
        sd1**2 / (n1 - 1) + sd2**2 / (n2 - 1)
    ) / (s2 / 2)
    return Effects(yi, cmi**2 * vi)


def _mn(c: Columns, _: Settings) -> Effects:
    return Effects(c["mi"], c["sdi"] ** 2 / c["ni"])


def _mnln(c: Columns, _: Settings) -> Effects:
    mi = c["mi"]
    return Effects(np.log(mi), c["sdi"] ** 2 / (c["ni"] * mi**2))


def _cor(c: Columns, _: Settings) -> Effects:
    ri = c["ri"]
    return Effects(ri, (1 - ri**2) ** 2 / (c["ni"] - 1))


def _f21(c: FloatArray, x: FloatArray) -> FloatArray:
    """Gauss's 2F1(1/2, 1/2; c; x) for 0 <= x < 1 (metafor uses gsl's ``hyperg_2F1``).

    scipy's ``hyp2f1`` (1.17) returns NaN for large c with x near 1 (c = 162, x = 0.9975);
    there the power series converges in a few dozen terms, so it is summed instead.
    """
    from scipy.special import hyp2f1  # here, not at the top: see the module docstring

    out: FloatArray = np.asarray(hyp2f1(0.5, 0.5, c, x), dtype=np.float64)
    bad = ~np.isfinite(out) & np.isfinite(c) & (x >= 0) & (x < 1)
    if bad.any():
        cb, xb = c[bad], x[bad]
        term = np.ones_like(xb)
        total = np.ones_like(xb)
        for k in range(100_000):
            term = term * (0.5 + k) ** 2 / ((cb + k) * (k + 1)) * xb
            total = total + term
            if bool((np.abs(term) <= 1e-17 * np.abs(total)).all()):
                break
        out = out.copy()
        out[bad] = total
    return out


def _ucor(c: Columns, _: Settings) -> Effects:
    ri, ni = c["ri"], c["ni"]
    yi = ri * _f21((ni - 2) / 2, 1 - ri**2)
    return Effects(yi, (1 - yi**2) ** 2 / (ni - 1))


def _sizes(c: Columns) -> dict[str, FloatArray]:
    """The sample sizes and person-times a back-transform may need (``ni``, ``ti``)."""
    out: dict[str, FloatArray] = {}
    if "ni" in c:
        out["ni"] = c["ni"]
    elif "xi" in c and "mi" in c:
        out["ni"] = c["xi"] + c["mi"]
    if "ti" in c:
        out["ti"] = c["ti"]
    return out


# --------------------------------------------------------------------------- the table


#: Rules of every argument, whichever measure uses it (metafor gives an argument one meaning).
_ARG_RULES: dict[str, tuple[Rule, ...]] = {
    **{arg: _count(arg) for arg in ("ai", "bi", "ci", "di", "xi", "x1i", "x2i")},
    **{arg: _size(arg) for arg in ("n1i", "n2i", "ni")},
    **{arg: _sd(arg) for arg in ("sd1i", "sd2i", "sdi")},
    **{arg: _time(arg) for arg in ("ti", "t1i", "t2i")},
    **{arg: _positive(arg) for arg in ("vi", "sei")},
    "ri": _correlation("ri"),
}

_TWO_BY_TWO_FORMS = (("ai", "bi", "ci", "di"), ("ai", "n1i", "ci", "n2i"))
_TWO_BY_TWO_RULES = (
    Rule(
        ("ai", "bi"), lambda a, b: a + b > 0, "each arm needs at least one participant", "empty-arm"
    ),
    Rule(
        ("ci", "di"), lambda c, d: c + d > 0, "each arm needs at least one participant", "empty-arm"
    ),
    Rule(
        ("ai", "n1i"),
        lambda a, n: a <= n,
        "ai must not exceed n1i (events > group size)",
        "events-exceed-size",
    ),
    Rule(
        ("ci", "n2i"),
        lambda c, n: c <= n,
        "ci must not exceed n2i (events > group size)",
        "events-exceed-size",
    ),
)
_MEANS_FORMS = (("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i"),)
_PROPORTION_FORMS = (("xi", "ni"), ("xi", "mi"))
_PROPORTION_RULES = (
    *_count("mi"),  # non-events (MN's mi is a mean: no shared rule for mi)
    Rule(("xi", "ni"), lambda x, n: x <= n, "xi must not exceed ni (events > group size)",
         "events-exceed-size"),
    Rule(("xi", "mi"), lambda x, m: x + m > 0, "the group needs at least one participant",
         "empty-arm"),
)  # fmt: skip
_RATE_FORMS = (("xi", "ti"),)
_TWO_RATES_FORMS = (("x1i", "t1i", "x2i", "t2i"),)
_MEAN_FORMS = (("mi", "sdi", "ni"),)


@dataclass(frozen=True)
class Measure:
    """One measure: see the module docstring for what each field is for."""

    name: str
    description: str
    forms: tuple[tuple[str, ...], ...]
    compute: Callable[[Columns, Settings], Effects]
    label: str
    axis: str
    back: str | None = None
    rules: tuple[Rule, ...] = ()
    reference: str = ""
    args: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(dict.fromkeys(a for f in self.forms for a in f)))

    def form(self, available: Collection[str]) -> tuple[str, ...]:
        """The arguments to read: the first form whose columns are all ``available``."""
        for form in self.forms:
            if all(arg in available for arg in form):
                return form
        return self.forms[0]

    def alternatives(self, arg: str) -> tuple[tuple[str, ...], ...]:
        """What may stand in for ``arg``: the argument at its place in another form of the same
        length (n1i for bi), or the arguments a longer or shorter form has instead (lower and
        upper for vi)."""
        out: list[tuple[str, ...]] = []
        for form in (f for f in self.forms if arg in f):
            for other in (f for f in self.forms if arg not in f):
                if len(other) == len(form):
                    alt: tuple[str, ...] = (other[form.index(arg)],)
                else:
                    alt = tuple(a for a in other if a not in form)
                if alt not in out:
                    out.append(alt)
        return tuple(out)

    def instead(self, arg: str) -> str:
        """``" (or 'sei', or 'lower' and 'upper')"`` for messages; ``""`` without any."""
        alts = self.alternatives(arg)
        if not alts:
            return ""
        return " (or " + ", or ".join(" and ".join(map(repr, alt)) for alt in alts) + ")"

    def sizes(self, cols: Columns) -> dict[str, FloatArray]:
        """The study sizes a back-transform may need: ``ni`` (or xi + mi) and ``ti``."""
        return _sizes(cols)

    def rules_for(
        self, form: tuple[str, ...], settings: Settings | None = None
    ) -> tuple[Rule, ...]:
        """The value rules that apply to ``form`` (and ``settings``), in checking order."""
        s = settings or Settings()
        cells = tuple(rule for arg in form for rule in _ARG_RULES.get(arg, ()))
        own = tuple(
            rule
            for rule in self.rules
            if all(a in form for a in rule.args) and (rule.when is None or rule.when(s))
        )
        single = tuple(rule for rule in own if len(rule.args) == 1)
        return cells + single + tuple(rule for rule in own if len(rule.args) > 1)

    @property
    def transform(self) -> Transform | None:
        """The natural back-transformation of pooled results (RR, OR: exp; ZCOR: ztor)."""
        return None if self.back is None else TRANSFORMS[self.back]

    @property
    def axis_label(self) -> str:
        """The forest plot's x-axis label."""
        if self.axis == "ratio":
            return f"{self.label} (log scale)"
        if self.axis == "r":
            return f"{self.label} (Fisher's z scale)"
        return self.label


_ENTRIES = (
    Measure(
        "RR",
        "log risk ratio",
        _TWO_BY_TWO_FORMS,
        _rr,
        "Risk Ratio",
        "ratio",
        back="exp",
        rules=_TWO_BY_TWO_RULES,
        reference="yi = log(p1/p2), vi = 1/ai - 1/n1i + 1/ci - 1/n2i (metafor escalc 'RR')",
    ),
    Measure(
        "OR",
        "log odds ratio",
        _TWO_BY_TWO_FORMS,
        _or,
        "Odds Ratio",
        "ratio",
        back="exp",
        rules=_TWO_BY_TWO_RULES,
        reference="yi = log(ai di / (bi ci)), vi = 1/ai + 1/bi + 1/ci + 1/di (escalc 'OR')",
    ),
    Measure(
        "RD",
        "risk difference",
        _TWO_BY_TWO_FORMS,
        _rd,
        "Risk Difference",
        "linear",
        rules=_TWO_BY_TWO_RULES,
        reference="yi = p1 - p2, large-sample vi = p1(1-p1)/n1i + p2(1-p2)/n2i (escalc 'RD')",
    ),
    Measure(
        "MD",
        "raw mean difference",
        _MEANS_FORMS,
        _md,
        "Mean Difference",
        "linear",
        reference="yi = m1i - m2i, vi = sd1i^2/n1i + sd2i^2/n2i (escalc 'MD')",
    ),
    Measure(
        "SMD",
        "standardized mean difference (Hedges' g)",
        _MEANS_FORMS,
        _smd,
        "Standardized Mean Difference",
        "linear",
        rules=(
            Rule(("n1i", "n2i"), lambda a, b: a + b > 3, "SMD needs n1i + n2i > 3", "smd-n"),
            Rule(
                ("sd1i", "n1i", "sd2i", "n2i"),
                lambda s1, n1, s2, n2: (n1 - 1) * s1**2 + (n2 - 1) * s2**2 > 0,
                "SMD needs a positive pooled standard deviation",
                "smd-sd",
            ),
        ),
        reference=(
            "Hedges (1981): g = c(m) (m1i - m2i)/sdpi, c(m) = exp(lgamma(m/2) - log(sqrt(m/2)) "
            "- lgamma((m-1)/2)), m = n1i + n2i - 2; vi = 1/n1i + 1/n2i + g^2/(2 (n1i + n2i)) "
            "(escalc 'SMD', vtype 'LS')"
        ),
    ),
    Measure(
        "ROM",
        "log ratio of means",
        _MEANS_FORMS,
        _rom,
        "Ratio of Means",
        "ratio",
        back="exp",
        rules=(
            Rule(
                ("m1i", "m2i"),
                lambda a, b: a / b > 0,
                "ROM needs m1i / m2i > 0 (the log of the ratio of means)",
                "rom-ratio",
            ),
        ),
        reference=(
            "Hedges, Gurevitch & Curtis (1999): yi = log(m1i/m2i), "
            "vi = sd1i^2/(n1i m1i^2) + sd2i^2/(n2i m2i^2) (escalc 'ROM', vtype 'LS')"
        ),
    ),
    Measure(
        "SMDH",
        "standardized mean difference with heteroscedastic variances",
        _MEANS_FORMS,
        _smdh,
        "Standardized Mean Difference",
        "linear",
        rules=(
            Rule(
                ("n1i", "n2i"),
                lambda a, b: (a > 1) & (b > 1),
                "SMDH needs n1i > 1 and n2i > 1",
                "smdh-n",
            ),
            Rule(
                ("sd1i", "sd2i"),
                lambda a, b: a**2 + b**2 > 0,
                "SMDH needs sd1i or sd2i > 0",
                "smdh-sd",
            ),
        ),
        reference=(
            "Bonett (2009): yi = c(m) (m1i - m2i)/sqrt((sd1i^2 + sd2i^2)/2), m = n1i + n2i - 2, "
            "with its large-sample vi (escalc 'SMDH', vtype 'LS')"
        ),
    ),
    Measure(
        "MN",
        "raw mean",
        _MEAN_FORMS,
        _mn,
        "Mean",
        "linear",
        reference="yi = mi, vi = sdi^2/ni (escalc 'MN')",
    ),
    Measure(
        "MNLN",
        "log-transformed mean",
        _MEAN_FORMS,
        _mnln,
        "Mean",
        "ratio",
        back="exp",
        rules=(_cell("mi", lambda m: m > 0, "must be > 0 for MNLN (its log)", "mnln-mean"),),
        reference="yi = log(mi), vi = sdi^2/(ni mi^2) (escalc 'MNLN')",
    ),
    Measure(
        "PR",
        "raw proportion",
        _PROPORTION_FORMS,
        _pr,
        "Proportion",
        "linear",
        rules=_PROPORTION_RULES,
        reference=(
            "yi = xi/ni, vi = yi(1 - yi)/ni, 1/2 added to xi and mi where either is 0 "
            "(escalc 'PR', add=1/2, to='only0')"
        ),
    ),
    Measure(
        "PLN",
        "log proportion",
        _PROPORTION_FORMS,
        _pln,
        "Proportion",
        "ratio",
        back="exp",
        rules=_PROPORTION_RULES,
        reference="yi = log(xi/ni), vi = 1/xi - 1/ni, zeros as PR (escalc 'PLN')",
    ),
    Measure(
        "PLO",
        "logit proportion",
        _PROPORTION_FORMS,
        _plo,
        "Log Odds",
        "linear",
        back="ilogit",
        rules=_PROPORTION_RULES,
        reference="yi = log(xi/mi), vi = 1/xi + 1/mi, zeros as PR (escalc 'PLO')",
    ),
    Measure(
        "PAS",
        "arcsine square root transformed proportion",
        _PROPORTION_FORMS,
        _pas,
        "Arcsine Transformed Proportion",
        "linear",
        back="iarcsin",
        rules=_PROPORTION_RULES,
        reference="yi = asin(sqrt(xi/ni)), vi = 1/(4 ni), no zero correction (escalc 'PAS')",
    ),
    Measure(
        "PFT",
        "Freeman-Tukey double arcsine transformed proportion",
        _PROPORTION_FORMS,
        _pft_yi,
        "Double Arcsine Transformed Proportion",
        "linear",
        back="ipft.hm",
        rules=_PROPORTION_RULES,
        reference=(
            "Freeman & Tukey (1950): yi = (asin(sqrt(xi/(ni+1))) + asin(sqrt((xi+1)/(ni+1))))/2, "
            "vi = 1/(4 ni + 2), no zero correction (escalc 'PFT')"
        ),
    ),
    Measure(
        "IR",
        "raw incidence rate",
        _RATE_FORMS,
        _ir,
        "Incidence Rate",
        "linear",
        reference="yi = xi/ti, vi = xi/ti^2, 1/2 added to xi = 0 (escalc 'IR')",
    ),
    Measure(
        "IRLN",
        "log incidence rate",
        _RATE_FORMS,
        _irln,
        "Incidence Rate",
        "ratio",
        back="exp",
        reference="yi = log(xi/ti), vi = 1/xi, zeros as IR (escalc 'IRLN')",
    ),
    Measure(
        "IRS",
        "square root transformed incidence rate",
        _RATE_FORMS,
        _irs,
        "Square Root Incidence Rate",
        "linear",
        back="isqrt",
        reference="yi = sqrt(xi/ti), vi = 1/(4 ti), no zero correction (escalc 'IRS')",
    ),
    Measure(
        "IRFT",
        "Freeman-Tukey transformed incidence rate",
        _RATE_FORMS,
        _irft,
        "Freeman-Tukey Transformed Incidence Rate",
        "linear",
        back="iirft",
        reference=(
            "yi = (sqrt(xi/ti) + sqrt(xi/ti + 1/ti))/2, vi = 1/(4 ti), no zero correction "
            "(escalc 'IRFT')"
        ),
    ),
    Measure(
        "IRR",
        "log incidence rate ratio",
        _TWO_RATES_FORMS,
        _irr,
        "Incidence Rate Ratio",
        "ratio",
        back="exp",
        reference=(
            "yi = log(x1i/t1i) - log(x2i/t2i), vi = 1/x1i + 1/x2i, 1/2 added to both counts "
            "where either is 0 (escalc 'IRR')"
        ),
    ),
    Measure(
        "IRD",
        "incidence rate difference",
        _TWO_RATES_FORMS,
        _ird,
        "Incidence Rate Difference",
        "linear",
        reference="yi = x1i/t1i - x2i/t2i, vi = x1i/t1i^2 + x2i/t2i^2, zeros as IRR (escalc 'IRD')",
    ),
    Measure(
        "COR",
        "raw correlation coefficient",
        (("ri", "ni"),),
        _cor,
        "Correlation",
        "linear",
        rules=(_cell("ni", lambda n: n > 1, "must be > 1 for COR (vi divides by n - 1)", "cor-n"),),
        reference="yi = ri, vi = (1 - ri^2)^2/(ni - 1) (escalc 'COR', vtype 'LS')",
    ),
    Measure(
        "UCOR",
        "unbiased estimate of the correlation coefficient",
        (("ri", "ni"),),
        _ucor,
        "Correlation",
        "linear",
        rules=(
            _cell(
                "ni", lambda n: n > 4, "must be > 4 for UCOR (Olkin & Pratt's correction)", "ucor-n"
            ),
        ),
        reference=(
            "Olkin & Pratt (1958): yi = ri 2F1(1/2, 1/2; (ni-2)/2; 1 - ri^2), "
            "vi = (1 - yi^2)^2/(ni - 1) (escalc 'UCOR', vtype 'LS')"
        ),
    ),
    Measure(
        "ZCOR",
        "Fisher's r-to-z transformed correlation",
        (("ri", "ni"),),
        _zcor,
        "Correlation",
        "r",
        back="ztor",
        rules=(
            _cell(
                "ni", lambda n: n > 3, "must be > 3 for ZCOR (the variance is 1/(n - 3))", "zcor-n"
            ),
        ),
        reference="yi = atanh(ri), vi = 1/(ni - 3) (escalc 'ZCOR')",
    ),
    Measure(
        "GEN",
        "effects given directly",
        (("yi", "vi"), ("yi", "sei"), ("yi", "lower", "upper")),
        _gen,
        "Observed Outcome",
        "linear",
        rules=(
            *(
                Rule(
                    (arg,),
                    lambda x: x > 0,
                    'must be > 0 with "input_scale": "log" (a ratio)',
                    "not-positive-ratio",
                    when=lambda s: s.input_scale == "log",
                )
                for arg in ("yi", "lower", "upper")
            ),
            Rule(("lower", "upper"), lambda lo, up: lo < up, "lower must be < upper", "ci-order"),
            Rule(
                ("yi", "lower", "upper"),
                lambda y, lo, up: (lo <= y) & (y <= up),
                "yi must lie within [lower, upper]",
                "ci-outside",
            ),
        ),
        reference=(
            "yi with vi, or vi = sei^2 (escalc with yi and vi/sei); or a CI: sei = (upper - "
            "lower)/(2 z), z = qnorm(1/2 + ci_level/200), on the log scale with input_scale log "
            "(Cochrane Handbook 6.3.2: obtaining standard errors from confidence intervals)"
        ),
    ),
)

#: Every measure by its metafor name, in the order the docs and the schema list them.
MEASURES: dict[str, Measure] = {m.name: m for m in _ENTRIES}


def lookup(name: object) -> Measure:
    """The table entry for ``name`` (metafor's spelling, any case); else a clear error."""
    entry = MEASURES.get(str(name).upper())
    if entry is None:
        raise UnknownMeasureError(str(name), tuple(MEASURES))
    return entry


def bad_effects(effects: Effects) -> tuple[BoolArray, BoolArray]:
    """Rows whose computed ``yi`` is not finite, and rows whose ``vi`` is not finite and > 0.

    Used after the rules by the validator and by ``escalc``, so a study the fit cannot use
    (an MD with both SDs 0, vi = 0) is named in both.
    """
    bad_yi: BoolArray = ~np.isfinite(effects.yi)
    bad_vi: BoolArray = ~(np.isfinite(effects.vi) & (effects.vi > 0))
    return bad_yi, bad_vi
