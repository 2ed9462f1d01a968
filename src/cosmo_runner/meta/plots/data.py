"""What the plots show, typed: :class:`PlotData`, built once by the one strict converter.

:meth:`PlotData.from_result` reads the result that :func:`cosmo_runner.meta.analysis.analyse`
returns -- in memory in the pipeline, or loaded from ``results/<id>.json`` -- and nothing
else reads it for the plots. It reads the keys ``analyse()`` writes and no others (see
:mod:`cosmo_runner.meta.analysis` for their meaning): a missing key or a value of the wrong
type is a :class:`~cosmo_runner.errors.PlotDataError` naming the key by its JSON pointer,
never a silent default. Keys ``analyse()`` writes only when the spec asks
(``funnel_contours``, the moderator keys with ``coefficients``, ``subgroups`` with
``subgroup_test``) are read when present, and then completely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cosmo_runner.errors import AnalysisError, PlotDataError
from cosmo_runner.meta import TESTS
from cosmo_runner.meta.measures import Measure, lookup

__all__ = [
    "SUBGROUP_MODELS",
    "TABLE_METHODS",
    "CumulativeStep",
    "Egger",
    "Fit",
    "PlotData",
    "Refit",
    "Regression",
    "Study",
    "Subgroup",
    "SubgroupTest",
    "TrimFill",
]

#: Methods that pool 2x2 tables directly (equal-effects), with their names in the plots.
TABLE_METHODS = {"MH": "Mantel-Haenszel", "PETO": "Peto"}
#: ``subgroup_test.model``: the run spec's ``subgroup_model`` (the schema's enum; a test checks).
SUBGROUP_MODELS = ("separate_tau2", "common_tau2")


@dataclass(frozen=True)
class Study:
    """One study with an outcome: its effect ``yi``, variance ``vi`` and weight in percent."""

    label: str
    yi: float
    vi: float
    weight: float | None

    @property
    def sei(self) -> float:
        return math.sqrt(self.vi)


@dataclass(frozen=True)
class Fit:
    """A model without moderators: the overall one, or one subgroup's (the core keys)."""

    k: int
    method: str
    test: str | None  # None under MH/PETO (always z)
    estimate: float | None
    ci_lb: float | None
    ci_ub: float | None
    pi_lb: float | None
    pi_ub: float | None
    statistic: float | None
    df: int | None
    pval: float | None
    tau2: float | None
    I2: float | None
    Q: float | None
    Q_df: int
    Q_pval: float | None

    @property
    def common_effect(self) -> bool:
        """An equal-effects model: EE/FE, or a 2x2 pooling method (MH, PETO)."""
        return self.method.upper() in {"EE", "FE", *TABLE_METHODS}


@dataclass(frozen=True)
class Regression:
    """A meta-regression's terms (without the intercept), the terms its test of moderators
    tests (``test_terms``, metafor's ``btt``), residual heterogeneity and the test
    (``QM_df``: ``(m,)``, or ``(m, k - p)`` for the F test)."""

    terms: tuple[str, ...]
    test_terms: tuple[str, ...]
    tau2: float | None
    I2: float | None
    QE: float | None
    QE_df: int
    QE_pval: float | None
    QM: float | None
    QM_df: tuple[int, ...]
    QM_pval: float | None
    R2: float | None


@dataclass(frozen=True)
class Subgroup:
    name: str
    fit: Fit
    studies: tuple[Study, ...]


@dataclass(frozen=True)
class SubgroupTest:
    """The test of subgroup differences: Q-between on ``df`` (``model`` "separate_tau2"), or
    under "common_tau2" metafor's QM of the group factor, an F statistic on ``df, df2`` where
    ``df2`` is not None."""

    model: str
    Q: float | None
    df: int
    df2: int | None
    pval: float | None


@dataclass(frozen=True)
class Egger:
    statistic: float | None
    df: int | None
    pval: float | None


@dataclass(frozen=True)
class TrimFill:
    """Trim-and-fill: the side filled, the estimate with the filled studies, and the filled
    studies as ``(yi, vi)``."""

    side: str
    estimate: float | None
    filled: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class CumulativeStep:
    label: str
    estimate: float | None
    ci_lb: float | None
    ci_ub: float | None


@dataclass(frozen=True)
class Refit:
    """The model refitted without one study (leave-one-out): its estimate and standard error."""

    estimate: float | None
    se: float | None


@dataclass(frozen=True)
class PlotData:
    """Everything the plots of one analysis show.

    ``studies`` are the studies with an outcome; ``without_outcome`` the labels of MH/PETO
    double-zero studies, which have none. ``leave_one_out`` (None: not computed) holds one
    refit per entry of ``studies``, in the same order.
    """

    analysis_id: str
    measure: Measure
    level: float
    fit: Fit
    studies: tuple[Study, ...]
    without_outcome: tuple[str, ...]
    regression: Regression | None
    subgroups: tuple[Subgroup, ...]
    subgroup_test: SubgroupTest | None
    egger: Egger | None
    trimfill: TrimFill | None
    funnel_contours: tuple[float, ...]
    cumulative: tuple[CumulativeStep, ...] | None
    leave_one_out: tuple[Refit, ...] | None

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> PlotData:
        """The plot data of ``analyse()``'s result (or of its results JSON); the one reader.

        Raises :class:`~cosmo_runner.errors.PlotDataError` for a missing key or a value of
        the wrong type, :class:`~cosmo_runner.errors.AnalysisError` for a result without
        studies or with a study without a finite ``yi`` and a positive ``vi``, and
        :class:`~cosmo_runner.errors.UnknownMeasureError` for a measure not in the table.
        """
        return _Reader(result).plot_data()


class _Reader:
    """Reads one result strictly; every value through :meth:`get`, named by its pointer."""

    def __init__(self, result: Mapping[str, Any]) -> None:
        self.result = result
        self.id = "?"

    def fail(self, pointer: str, problem: str) -> PlotDataError:
        return PlotDataError(pointer, problem, None if self.id == "?" else self.id)

    def get(self, block: Mapping[str, Any], pointer: str, key: str) -> Any:
        if not isinstance(block, Mapping):
            raise self.fail(pointer, "is not an object")
        if key not in block:
            raise self.fail(f"{pointer}/{key}", "is missing")
        return block[key]

    def number(self, block: Mapping[str, Any], pointer: str, key: str) -> float | None:
        """A number or null (analyse() writes null for what is undefined, never NaN)."""
        return self.as_number(self.get(block, pointer, key), f"{pointer}/{key}")

    def as_number(self, value: Any, pointer: str) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(pointer, f"is not a number: {value!r}")
        out = float(value)
        return out if math.isfinite(out) else None

    def integer(self, block: Mapping[str, Any], pointer: str, key: str) -> int:
        return self.as_integer(self.get(block, pointer, key), f"{pointer}/{key}")

    def as_integer(self, value: Any, pointer: str) -> int:
        """An integer; an integral float too (Egger's df is written as ``11.0``)."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(pointer, f"is not an integer: {value!r}")
        return value

    def text(self, block: Mapping[str, Any], pointer: str, key: str) -> str:
        return self.as_text(self.get(block, pointer, key), f"{pointer}/{key}")

    def as_text(self, value: Any, pointer: str) -> str:
        if not isinstance(value, str):
            raise self.fail(pointer, f"is not a string: {value!r}")
        return value

    def items(self, block: Mapping[str, Any], pointer: str, key: str) -> Sequence[Any] | None:
        """A list (a :class:`~cosmo_runner.meta.result_file.Records` counts as one) or null."""
        value = self.get(block, pointer, key)
        if value is None:
            return None
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
            raise self.fail(f"{pointer}/{key}", "is not a list")
        return value

    def plot_data(self) -> PlotData:
        r = self.result
        self.id = self.text(r, "", "id")
        measure = lookup(self.get(r, "", "measure"))
        level = self.number(r, "", "level")
        if level is None or not 0 < level < 100:
            raise self.fail("/level", f"is not a confidence level in (0, 100): {level!r}")
        fit = self.fit(r, "")
        studies, without = self.studies(r, "", fit.method)
        return PlotData(
            analysis_id=self.id,
            measure=measure,
            level=level,
            fit=fit,
            studies=studies,
            without_outcome=without,
            regression=self.regression() if "coefficients" in r else None,
            subgroups=self.subgroups(),
            subgroup_test=self.subgroup_test() if "subgroups" in r else None,
            egger=self.egger(),
            trimfill=self.trimfill(),
            funnel_contours=self.contours(),
            cumulative=self.cumulative(),
            leave_one_out=self.leave_one_out(fit.method),
        )

    def fit(self, block: Mapping[str, Any], at: str) -> Fit:
        num = self.number
        df = self.get(block, at, "df")
        test = self.get(block, at, "test")
        if test is not None and test not in TESTS:
            raise self.fail(f"{at}/test", f"is not one of {', '.join(TESTS)} or null: {test!r}")
        return Fit(
            k=self.integer(block, at, "k"),
            method=self.text(block, at, "method"),
            test=test,
            estimate=num(block, at, "estimate"),
            ci_lb=num(block, at, "ci_lb"),
            ci_ub=num(block, at, "ci_ub"),
            pi_lb=num(block, at, "pi_lb"),
            pi_ub=num(block, at, "pi_ub"),
            statistic=num(block, at, "statistic"),
            df=None if df is None else self.integer(block, at, "df"),
            pval=num(block, at, "pval"),
            tau2=num(block, at, "tau2"),
            I2=num(block, at, "I2"),
            Q=num(block, at, "Q"),
            Q_df=self.integer(block, at, "Q_df"),
            Q_pval=num(block, at, "Q_pval"),
        )

    def studies(
        self, block: Mapping[str, Any], at: str, method: str
    ) -> tuple[tuple[Study, ...], tuple[str, ...]]:
        """The studies with an outcome, and the labels of those without (an MH/PETO double
        zero has yi and vi null)."""
        raw = self.items(block, at, "studies")
        if not raw:
            raise AnalysisError(f"plots for {self.id!r}: the result lists no studies")
        pooled = method.upper() in TABLE_METHODS
        studies: list[Study] = []
        without: list[str] = []
        for i, entry in enumerate(raw):
            where = f"{at}/studies/{i}"
            label = self.text(entry, where, "label")
            yi, vi = self.number(entry, where, "yi"), self.number(entry, where, "vi")
            weight = self.number(entry, where, "weight_percent")
            if pooled and entry["yi"] is None and entry["vi"] is None:
                without.append(label)
            elif yi is None or vi is None or vi <= 0:
                raise AnalysisError(
                    f"plots for {self.id!r}: study {label!r} has no finite yi and positive vi"
                )
            else:
                studies.append(Study(label, yi, vi, weight))
        return tuple(studies), tuple(without)

    def regression(self) -> Regression:
        r, num = self.result, self.number
        terms = []
        for j, entry in enumerate(self.items(r, "", "coefficients") or ()):
            term = self.text(entry, f"/coefficients/{j}", "term")
            if term.lower() not in {"intrcpt", "intercept"}:
                terms.append(term)
        qm_df = self.items(r, "", "QM_df")
        if qm_df is None or len(qm_df) not in (1, 2):
            raise self.fail("/QM_df", f"is not a list of 1 or 2 degrees of freedom: {qm_df!r}")
        tested = self.items(r, "", "test_terms")
        if not tested:
            raise self.fail("/test_terms", f"is not a list of terms: {tested!r}")
        return Regression(
            terms=tuple(terms),
            test_terms=tuple(self.as_text(t, f"/test_terms/{j}") for j, t in enumerate(tested)),
            tau2=num(r, "", "moderator_tau2"),
            I2=num(r, "", "moderator_I2"),
            QE=num(r, "", "QE"),
            QE_df=self.integer(r, "", "QE_df"),
            QE_pval=num(r, "", "QE_pval"),
            QM=num(r, "", "QM"),
            QM_df=tuple(self.as_integer(df, f"/QM_df/{j}") for j, df in enumerate(qm_df)),
            QM_pval=num(r, "", "QM_pval"),
            R2=num(r, "", "R2"),
        )

    def subgroups(self) -> tuple[Subgroup, ...]:
        if "subgroups" not in self.result:
            return ()
        out = []
        for j, group in enumerate(self.items(self.result, "", "subgroups") or ()):
            at = f"/subgroups/{j}"
            fit = self.fit(group, at)
            studies, _ = self.studies(group, at, fit.method)
            out.append(Subgroup(self.text(group, at, "group"), fit, studies))
        return tuple(out)

    def subgroup_test(self) -> SubgroupTest:
        test = self.get(self.result, "", "subgroup_test")
        at = "/subgroup_test"
        model = self.text(test, at, "model")
        if model not in SUBGROUP_MODELS:
            raise self.fail(f"{at}/model", f"is not one of {', '.join(SUBGROUP_MODELS)}: {model!r}")
        df2 = self.get(test, at, "df2")
        return SubgroupTest(
            model=model,
            Q=self.number(test, at, "Q"),
            df=self.integer(test, at, "df"),
            df2=None if df2 is None else self.integer(test, at, "df2"),
            pval=self.number(test, at, "pval"),
        )

    def egger(self) -> Egger | None:
        egger = self.get(self.result, "", "egger")
        if egger is None:
            return None
        at = "/egger"
        df = self.get(egger, at, "df")
        return Egger(
            self.number(egger, at, "statistic"),
            None if df is None else self.integer(egger, at, "df"),
            self.number(egger, at, "pval"),
        )

    def trimfill(self) -> TrimFill | None:
        tf = self.get(self.result, "", "trimfill")
        if tf is None:
            return None
        at = "/trimfill"
        filled = []
        for j, entry in enumerate(self.items(tf, at, "filled") or ()):
            where = f"{at}/filled/{j}"
            yi, vi = self.number(entry, where, "yi"), self.number(entry, where, "vi")
            if yi is None or vi is None or vi <= 0:
                raise self.fail(where, "has no finite yi and positive vi")
            filled.append((yi, vi))
        return TrimFill(self.text(tf, at, "side"), self.number(tf, at, "estimate"), tuple(filled))

    def contours(self) -> tuple[float, ...]:
        if "funnel_contours" not in self.result:
            return ()
        levels = []
        for j, value in enumerate(self.items(self.result, "", "funnel_contours") or ()):
            level = self.as_number(value, f"/funnel_contours/{j}")
            if level is None or not 0 < level < 100:
                raise self.fail(f"/funnel_contours/{j}", f"is not a level in (0, 100): {level!r}")
            levels.append(level)
        return tuple(sorted(set(levels)))

    def cumulative(self) -> tuple[CumulativeStep, ...] | None:
        rows = self.items(self.result, "", "cumulative")
        if rows is None:
            return None
        out = []
        for j, row in enumerate(rows):
            at = f"/cumulative/{j}"
            num = self.number
            out.append(
                CumulativeStep(
                    self.text(row, at, "label"),
                    num(row, at, "estimate"),
                    num(row, at, "ci_lb"),
                    num(row, at, "ci_ub"),
                )
            )
        return tuple(out)

    def leave_one_out(self, method: str) -> tuple[Refit, ...] | None:
        """One refit per study with an outcome (a double zero's row is left out with it)."""
        rows = self.items(self.result, "", "leave_one_out")
        if rows is None:
            return None
        raw = self.result["studies"]
        if len(rows) != len(raw):
            raise self.fail("/leave_one_out", f"has {len(rows)} rows for {len(raw)} studies")
        pooled = method.upper() in TABLE_METHODS
        out = []
        for j, (row, study) in enumerate(zip(rows, raw, strict=True)):
            at = f"/leave_one_out/{j}"
            refit = Refit(self.number(row, at, "estimate"), self.number(row, at, "se"))
            if not (pooled and study["yi"] is None and study["vi"] is None):
                out.append(refit)
        return tuple(out)
