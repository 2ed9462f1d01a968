"""One analysis of a run spec -> one JSON-ready result dict (the pipeline's only entry point).

:func:`analyse` takes the analysis entry of the spec and the input table (a parsed
:class:`cosmo_runner.tables.Table`, rows already filtered by the validators, or a mapping of
column name -> cells for library use) and returns a dict of plain
Python values (floats, ints, strings, bools, lists, dicts and ``None``; never NaN), keyed
as listed in :data:`RESULT_KEYS`. The same input gives the same dict (no timestamps, no
paths). Every failure is an :class:`~cosmo_runner.errors.AnalysisError` whose one-line
message names the analysis id.

Result keys
-----------
``result_version`` (:data:`RESULT_VERSION`), the format version of the result file.

Core fit (the random-/equal-effects model without moderators; metafor ``rma.uni`` and
``predict``): ``k, estimate, se, statistic, df`` (``None`` for the z-test), ``pval, ci_lb,
ci_ub, tau2, tau2_se`` (``None`` where metafor has none: EE), ``tau, I2, H2, Q, Q_df,
Q_pval, pi_lb, pi_ub, method, test, level, measure, converged, iterations, algorithm,
warnings``.

``studies``: ``[{label, yi, vi, weight_percent}]`` in input order (a
:class:`~cosmo_runner.meta.result_file.Records`: the columns, read as a sequence of dicts;
``.tolist()`` gives the list) (dropped double-zero
studies are listed in ``dropped_studies``; ``added_half`` names the studies whose 2x2
cells got +1/2).

Diagnostics: ``tau2_ci, I2_ci, H2_ci`` (Q-profile, ``{lb, ub}``; ``None`` for EE, which
has no heterogeneity term), ``leave_one_out`` (``[{label, estimate, se, pval, ci_lb, ci_ub,
tau2, I2, Q}]``; ``None`` when k < 3 or k > :data:`LEAVE1OUT_MAX_K`, with the reason in
``warnings``), ``egger`` (``{statistic, df, pval, limit_estimate,
limit_ci_lb, limit_ci_ub}``; ``None`` when k < 3 or when the test cannot be computed, e.g.
all ``vi`` equal, with the reason in ``warnings``), ``transformed`` (the analysis's ``transf``,
one of :data:`cosmo_runner.meta.measures.TRANSFORMS`, else the measure's natural
back-transformation, ``back`` in the measure table, e.g. ``exp`` for ratio measures,
``ztor`` for ZCOR, ``ilogit`` for PLO, ``ipft.hm`` for PFT with the harmonic mean of ni;
``None`` for a measure without one): ``{estimate, ci_lb, ci_ub, pi_lb, pi_ub}``.

With ``moderators`` (numeric or categorical columns, see
:mod:`cosmo_runner.meta.moderators`): ``moderator_columns: [{column, kind, declared, levels,
reference, terms}]``, ``coefficients: [{term, estimate, se, statistic, pval, ci_lb, ci_ub}]``
(terms ``intrcpt``, ``ablat``, ``alloc[random]``), ``test_terms`` (the terms QM tests: the
spec's ``test_terms``, metafor's ``btt``, else all but the intercept), ``QM, QM_df`` (a
list: ``[m]``, or ``[m, k - p]`` for the F test with t, knha, adhoc), ``QM_pval, QE, QE_df, QE_pval,
R2`` (pseudo-R2; for EE metafor's adjusted R2 of the weighted lm), ``moderator_tau2,
moderator_I2`` (residual),
``moderator_warnings``, ``moderator_converged, moderator_iterations, moderator_algorithm``
(as the core keys, for the moderator fit), and the core keys still describe the model
without moderators. ``converged`` is about Fisher scoring: after a fallback it is false and
``algorithm`` names the method that produced the (valid) tau2.

With ``columns.subgroup``: ``subgroups: [{group, <core keys>, studies}]`` (each group's
own fit; ``studies`` as above with the group's weights) and ``subgroup_test: {model, Q, df,
df2, pval}`` (see :func:`cosmo_runner.meta.diagnostics.subgroups` for the test). ``model`` is
the spec's ``subgroup_model``: ``separate_tau2`` (default; Q-between, ``df2`` null) or
``common_tau2`` (metafor's QM of the group factor, an F statistic on ``df, df2`` with t, knha, adhoc;
``subgroup_test`` then also holds the model's ``tau2, I2, QE, QE_df, QE_pval, warnings``, and
each group entry a ``common_tau2: {estimate, se, statistic, pval, ci_lb, ci_ub}``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta._metareg import omnibus
from cosmo_runner.meta._result import RowsWarning
from cosmo_runner.meta.diagnostics import LeaveOneOut, confint_tau2, leave1out, subgroups
from cosmo_runner.meta.effects import EffectSizes, escalc
from cosmo_runner.meta.fit import Control, RMAResult, rma
from cosmo_runner.meta.influence import cumulative, influence
from cosmo_runner.meta.mantel_haenszel import METHODS as TABLE_METHODS
from cosmo_runner.meta.mantel_haenszel import (
    UNDEFINED,
    PooledTables,
    leave1out_tables,
    pool_tables,
)
from cosmo_runner.meta.measures import TRANSFORMS, Measure, Settings, lookup
from cosmo_runner.meta.moderators import design
from cosmo_runner.meta.pubbias import RANK_EXACT_MAX_K, egger_test, rank_test
from cosmo_runner.meta.pubbias import trimfill as pubbias_trimfill
from cosmo_runner.meta.result_file import Records
from cosmo_runner.tables import Table

__all__ = [
    "CORE_KEYS",
    "LEAVE1OUT_MAX_K",
    "RESULT_KEYS",
    "RESULT_VERSION",
    "TRIMFILL_MAX_K",
    "analyse",
]

#: The result JSON's format version, recorded in every result as ``result_version``
#: (results without it were written before versions were recorded: version 0).
RESULT_VERSION = 1

#: Keys of the core fit, present in every result (and in each subgroup entry).
CORE_KEYS = (
    "k",
    "estimate",
    "se",
    "statistic",
    "df",
    "pval",
    "ci_lb",
    "ci_ub",
    "tau2",
    "tau2_se",
    "tau",
    "I2",
    "H2",
    "Q",
    "Q_df",
    "Q_pval",
    "pi_lb",
    "pi_ub",
    "method",
    "test",
    "level",
    "converged",
    "iterations",
    "algorithm",
    "warnings",
)

#: Every key of a result, in output order (moderator and subgroup keys only when asked for).
RESULT_KEYS = (
    "result_version",
    "id",
    "measure",
    *CORE_KEYS,
    "k_yi",
    "studies",
    "dropped_studies",
    "added_half",
    "tau2_ci",
    "I2_ci",
    "H2_ci",
    "leave_one_out",
    "egger",
    "rank_test",
    "trimfill",
    "cumulative",
    "influence",
    "transformed",
    "funnel_contours",
    "moderator_columns",
    "coefficients",
    "test_terms",
    "QM",
    "QM_df",
    "QM_pval",
    "QE",
    "QE_df",
    "QE_pval",
    "R2",
    "moderator_tau2",
    "moderator_I2",
    "moderator_warnings",
    "moderator_converged",
    "moderator_iterations",
    "moderator_algorithm",
    "subgroups",
    "subgroup_test",
)

#: Leave-one-out costs k fits of k - 1 studies (seconds at k = 5000); above this it is skipped.
LEAVE1OUT_MAX_K = 5000
#: Trim-and-fill refits the model until k0 settles: up to 100 fits of up to k studies (about
#: 0.8 s at k = 10^5, 14 s at 10^6: 55 refits); above this it is skipped, like leave-one-out.
TRIMFILL_MAX_K = 100_000


def _num(x: Any) -> float | None:
    """A JSON-ready float: ``None`` for missing or non-finite values."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _floats(values: NDArray[np.float64]) -> list[float | None]:
    """JSON-ready floats of an array (``None`` for non-finite values), fast when all finite."""
    if bool(np.isfinite(values).all()):
        out: list[float | None] = values.tolist()
        return out
    return [x if math.isfinite(x) else None for x in values.tolist()]


def _parse(table: Table, column: str, arg: str, study: str) -> NDArray[np.float64]:
    """A column as finite strict numbers; else an error naming the first bad cell."""
    parsed = table.numbers(column)
    bad = parsed.empty | parsed.invalid | ~np.isfinite(parsed.values)
    if bool(bad.any()):
        row = int(np.flatnonzero(bad)[0])
        text = str(table.text(column)[row])
        where = table.location(row, column, study).text()
        problem = (
            "is empty"
            if parsed.empty[row]
            else "is not a number"
            if parsed.invalid[row]
            else "is not finite"
        )
        raise AnalysisError(f"{where} ({arg}): {text!r} {problem}")
    return parsed.values


def _gather(
    entry: Measure, columns: Mapping[str, str], table: Table
) -> dict[str, NDArray[np.float64]]:
    """The escalc arguments of the measure's form in use: mapped columns, else same-named."""
    form = entry.form([arg for arg in entry.args if arg in columns or arg in table])
    study = columns.get("study", "study")
    out: dict[str, NDArray[np.float64]] = {}
    for arg in form:
        col = columns.get(arg, arg)
        if col not in table:
            raise AnalysisError(
                f"measure {entry.name} needs {arg!r}{entry.instead(arg)}: column {col!r} is not "
                "in the input" + table.delimiter_hint()
            )
        out[arg] = _parse(table, col, arg, study)
    for rule in entry.rules_for(tuple(form)):
        if rule.as_written:  # a whole double written as no whole number (2^53 + 1)
            (arg,) = rule.args
            col = columns.get(arg, arg)
            values = out[arg]
            rounded = (np.floor(values) == values) & ~table.integral(col)
            if bool(rounded.any()):
                row = int(np.flatnonzero(rounded)[0])
                where = table.location(row, col, study).text()
                text = str(table.text(col)[row])
                raise AnalysisError(f"{where} ({arg}): {text!r} {rule.problem}")
    return out


def _labels(columns: Mapping[str, str], table: Table, n: int) -> list[str]:
    col = columns.get("study", "study")
    if col in table:
        labels: list[str] = table.text(col).tolist()
        return labels
    if "study" in columns:
        raise AnalysisError(f"study label column {col!r} is not in the input")
    return [f"Study {i + 1}" for i in range(n)]


def _core(fit: RMAResult) -> dict[str, Any]:
    return {
        "k": int(fit.k),
        "estimate": _num(fit.estimate),
        "se": _num(fit.se),
        "statistic": _num(fit.statistic),
        "df": None if fit.df is None else int(fit.df),
        "pval": _num(fit.pval),
        "ci_lb": _num(fit.ci_lb),
        "ci_ub": _num(fit.ci_ub),
        "tau2": _num(fit.tau2),
        "tau2_se": _num(fit.tau2_se),
        "tau": _num(fit.tau),
        "I2": _num(fit.I2),
        "H2": _num(fit.H2),
        "Q": _num(fit.Q),
        "Q_df": int(fit.Q_df),
        "Q_pval": _num(fit.Q_pval),
        "pi_lb": _num(fit.pi_lb),
        "pi_ub": _num(fit.pi_ub),
        "method": fit.method,
        "test": fit.test,
        "level": _num(fit.level),
        "converged": bool(fit.converged),
        "iterations": int(fit.iterations),
        "algorithm": str(fit.algorithm),
        "warnings": list(fit.warnings),
    }


def _undefined_note(result: dict[str, Any]) -> None:
    """Say why a core number is null (never a silent NaN)."""
    if result["se"] == 0.0 or result["statistic"] is None:
        result["warnings"].append(
            "the standard error is 0 (e.g. identical effects under knha): the test statistic "
            "is not finite and reported as null; the p-value is what metafor reports (0 for a "
            "non-zero estimate)"
        )


def _transform(
    name: object,
    entry: Measure,
    *,
    es: EffectSizes | None,
    table: Table | None,
    columns: Mapping[str, str],
    core: dict[str, Any],
) -> dict[str, float | None] | None:
    """The pooled results on the scale of ``transf`` (``name``), else of the measure's
    natural back-transformation (the table's ``back``); None when there is neither.
    ``es``/``table`` are None for MH and PETO, which pool the tables without escalc."""
    if name is None:
        transform = entry.transform
    elif str(name) in TRANSFORMS:
        transform = TRANSFORMS[str(name)]
    else:
        raise AnalysisError(f"unknown transf {str(name)!r} (one of {', '.join(TRANSFORMS)})")
    if transform is None:
        return None
    targ = math.nan
    if transform.needs is not None:
        if es is None or table is None:
            raise AnalysisError(
                f"transf {transform.name!r} needs the studies' {transform.needs}, which "
                f"{core['method']} does not pool"
            )
        targ = _harmonic_mean(transform.name, transform.needs, es, table, columns)
    keys = ("estimate", "ci_lb", "ci_ub", "pi_lb", "pi_ub")
    values = np.array([np.nan if core[key] is None else core[key] for key in keys], dtype=float)
    return dict(zip(keys, _floats(transform.apply(values, targ)), strict=True))


def _harmonic_mean(
    transf: str, arg: str, es: EffectSizes, table: Table, columns: Mapping[str, str]
) -> float:
    """The harmonic mean of the kept studies' ``arg`` (ni or ti), as metafor's targs."""
    sizes = es.sizes.get(arg)
    if sizes is None:  # a measure without it (GEN): the column of that name, or mapped
        col = columns.get(arg, arg)
        if col not in table:
            raise AnalysisError(
                f"transf {transf!r} needs {arg!r} (the harmonic mean of the studies' {arg}): "
                f"column {col!r} is not in the input"
            )
        sizes = _parse(table, col, arg, columns.get("study", "study"))[list(es.kept)]
        if not bool((sizes > 0).all()):
            row = es.kept[int(np.flatnonzero(~(sizes > 0))[0])]
            where = table.location(row, col, columns.get("study", "study")).text()
            raise AnalysisError(f"{where} ({arg}): must be > 0 for transf {transf!r}")
    return float(1.0 / np.mean(1.0 / sizes))


@cache
def _blas() -> Any:
    """The BLAS libraries loaded in this process (threadpoolctl), found once.

    An analysis runs BLAS on one thread: a threaded matrix-vector product splits its sums
    over threads, so at large k the last bits of a meta-regression (Egger's statistic at
    2e5 studies: 6e-12) followed the number of cores, and a replay on another machine
    differed. One thread makes the results the machine's CPU count's no longer.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def analyse(spec: Mapping[str, Any], table: Table | Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Run one analysis of a run spec on its input table; see the module docstring for keys.

    ``spec`` keys: ``id, measure, columns, method`` (default REML), ``test`` (z), ``level``
    (95), ``control`` (optional, :class:`~cosmo_runner.meta.Control`'s settings),
    ``moderators`` (optional list of columns), ``drop00`` (false), ``transf``
    (optional, a back-transformation's name); ``plots`` and
    ``input`` are ignored here.
    """
    analysis_id = str(spec.get("id", "?"))
    if not isinstance(table, Table):
        table = Table.from_columns(table)
    try:
        with np.errstate(all="ignore"), _blas().limit(limits=1, user_api="blas"):
            return _analyse(analysis_id, spec, table)
    except AnalysisError as exc:
        raise exc.of_analysis(analysis_id) from exc


# Long on purpose (PLR0912, PLR0915): a spec's analysis in order: columns, escalc, fit,
# diagnostics, result keys.
def _analyse(  # noqa: PLR0912, PLR0915
    analysis_id: str, spec: Mapping[str, Any], table: Table
) -> dict[str, Any]:
    entry = lookup(spec.get("measure", ""))
    measure = entry.name
    columns: Mapping[str, str] = spec.get("columns") or {}
    method = str(spec.get("method", "REML"))
    test = str(spec.get("test", "z"))
    level = float(spec.get("level", 95))
    control = Control.from_mapping(spec.get("control"))  # the schema checked its keys
    moderators = list(spec.get("moderators") or [])
    drop00 = bool(spec.get("drop00", False))

    args = _gather(entry, columns, table)
    n = len(next(iter(args.values())))
    labels = _labels(columns, table, n)
    study = columns.get("study", "study")
    places: Callable[[int], str] = lambda i: table.location(i, None, study).text()  # noqa: E731
    if method.upper() in TABLE_METHODS:
        return _analyse_tables(analysis_id, spec, args, labels=labels, places=places)
    settings = Settings.from_spec(spec)
    es: EffectSizes = escalc(
        measure, drop00=drop00, labels=labels, places=places, settings=settings, **args
    )
    if es.k < 2:
        raise AnalysisError(f"need at least 2 studies, got k = {es.k}")
    yi, vi = es.yi, es.vi
    fit = rma(yi, vi, method=method, test=test, level=level, control=control)

    result: dict[str, Any] = {
        "result_version": RESULT_VERSION,
        "id": analysis_id,
        "measure": measure,
    }
    core = _core(fit)
    core["warnings"][:0] = es.warnings
    _undefined_note(core)
    result.update(core)
    # per-study data stay columns until the results file is written (a million studies)
    result["studies"] = Records(
        {"label": es.labels, "yi": yi, "vi": vi, "weight_percent": np.asarray(fit.weights)}
    )
    result["dropped_studies"] = list(es.dropped_labels)
    result["added_half"] = [labels[i] for i in es.added_half]

    is_ee = fit.method in ("EE", "FE")
    if is_ee:
        result["tau2_ci"] = result["I2_ci"] = result["H2_ci"] = None
    else:
        ci = confint_tau2(yi, vi, method=method, level=level, control=control, fit=fit)
        result["tau2_ci"] = {"lb": _num(ci.tau2_lb), "ub": _num(ci.tau2_ub)}
        result["I2_ci"] = {"lb": _num(ci.I2_lb), "ub": _num(ci.I2_ub)}
        result["H2_ci"] = {"lb": _num(ci.H2_lb), "ub": _num(ci.H2_ub)}
        if ci.lb_censored or ci.ub_censored:
            result["warnings"].append(
                "Q-profile interval for tau2 reaches the search limit max(100, 10 tau2); "
                "the censored bound is reported at that limit"
            )

    result["leave_one_out"] = None
    result["egger"] = None
    l1o = None
    if es.k >= 3:
        if es.k > LEAVE1OUT_MAX_K:
            result["warnings"].append(
                f"leave-one-out not computed: k = {es.k} > {LEAVE1OUT_MAX_K} "
                "(k refits of k - 1 studies)"
            )
        else:
            try:
                l1o = leave1out(yi, vi, method=method, test=test, level=level, control=control)
            except AnalysisError as exc:
                result["warnings"].append(f"leave-one-out not computed: {exc.message}")
        if l1o is not None:
            result["leave_one_out"] = [
                {
                    "label": es.labels[i],
                    "estimate": _num(l1o.estimate[i]),
                    "se": _num(l1o.se[i]),
                    "pval": _num(l1o.pval[i]),
                    "ci_lb": _num(l1o.ci_lb[i]),
                    "ci_ub": _num(l1o.ci_ub[i]),
                    "tau2": _num(l1o.tau2[i]),
                    "I2": _num(l1o.I2[i]),
                    "Q": _num(l1o.Q[i]),
                }
                for i in range(es.k)
            ]
            result["warnings"].extend(
                f"leave-one-out: {_refits_named(w, places, es.kept)}" for w in l1o.warnings
            )
    else:
        result["warnings"].append("k < 3: leave-one-out is not computed")
    result.update(
        _funnel_asymmetry(
            spec, yi, vi, _sample_sizes(args, columns, table, es.kept), method=method,
            test=test, level=level, control=control, moderators=bool(moderators),
            warnings=result["warnings"], fit=fit,
        )
    )  # fmt: skip
    result.update(
        _case_diagnostics(
            spec, yi, vi, es, table=table, study=study, method=method, test=test,
            level=level, control=control, warnings=result["warnings"], fit=fit, refits=l1o,
        )
    )  # fmt: skip
    result["transformed"] = _transform(
        spec.get("transf"), entry, es=es, table=table, columns=columns, core=core
    )
    if spec.get("funnel_contours"):
        result["funnel_contours"] = sorted(float(x) for x in spec["funnel_contours"])

    if moderators:
        result.update(
            _moderators(
                spec, table, es, study, method=method, test=test, level=level, control=control
            )
        )
    if "subgroup" in columns:
        result.update(
            _subgroups(
                columns["subgroup"], table, es, study, method=method, test=test, level=level,
                model=str(spec.get("subgroup_model", "separate_tau2")), control=control,
            )
        )  # fmt: skip
    return result


def _refits_named(warning: str, places: Callable[[int], str], kept: Sequence[int]) -> str:
    """A leave-one-out warning about some refits, each named by the study it leaves out in
    the tables' one format (``without bcg.csv line 5 (study 'Aronson 1948')``)."""
    if not isinstance(warning, RowsWarning):
        return warning
    return warning.placed(lambda i: f"without {places(kept[i])}", "refits")


def _moderators(
    spec: Mapping[str, Any],
    table: Table,
    es: EffectSizes,
    study: str,
    *,
    method: str,
    test: str,
    level: float,
    control: Control | None = None,
) -> dict[str, Any]:
    """The meta-regression on the spec's ``moderators`` (:mod:`cosmo_runner.meta.moderators`:
    numeric and categorical columns, the model matrix and its terms), with the omnibus test
    of ``test_terms`` (metafor's ``btt``; default every term but the intercept)."""
    names = [str(m) for m in spec.get("moderators") or []]
    kinds = {str(k): str(v) for k, v in (spec.get("moderator_kinds") or {}).items()}
    model = design(table, names, es.kept, kinds=kinds, study=study)
    asked = spec.get("test_terms")
    btt = model.indices(None if asked is None else [str(t) for t in asked], table)
    fit = rma(
        es.yi, es.vi, method=method, test=test, level=level, mods=model.x[:, 1:],
        mod_names=model.terms[1:], control=control,
    )  # fmt: skip
    terms = fit.terms or ()
    warnings = list(fit.warnings)
    qm, qm_df, qm_p = fit.QM, fit.QM_df, fit.QM_pval
    if asked is not None:
        assert fit.vb is not None  # a meta-regression has the coefficients' covariance
        qm, qm_df, qm_p, note = omnibus(np.asarray(fit.estimate), fit.vb, fit.df, btt)
        warnings += [note] if note and note not in warnings else []
    return {
        "moderator_columns": [m.as_dict() for m in model.moderators],
        "coefficients": [
            {
                "term": term,
                "estimate": _num(fit.estimate[j]),
                "se": _num(fit.se[j]),
                "statistic": _num(fit.statistic[j]),
                "pval": _num(fit.pval[j]),
                "ci_lb": _num(fit.ci_lb[j]),
                "ci_ub": _num(fit.ci_ub[j]),
            }
            for j, term in enumerate(terms)
        ],
        "test_terms": [terms[j] for j in btt],
        "QM": _num(qm),
        "QM_df": list(qm_df or ()),
        "QM_pval": _num(qm_p),
        "QE": _num(fit.Q),
        "QE_df": int(fit.Q_df),
        "QE_pval": _num(fit.Q_pval),
        "R2": _num(fit.R2),
        "moderator_tau2": _num(fit.tau2),
        "moderator_I2": _num(fit.I2),
        "moderator_warnings": warnings,
        "moderator_converged": bool(fit.converged),
        "moderator_iterations": int(fit.iterations),
        "moderator_algorithm": str(fit.algorithm),
    }


def _subgroups(
    column: str,
    table: Table,
    es: EffectSizes,
    study: str,
    *,
    method: str,
    test: str,
    level: float,
    model: str,
    control: Control | None = None,
) -> dict[str, Any]:
    if column not in table:
        raise AnalysisError(f"subgroup column {column!r} is not in the input")
    labels = table.text(column)
    groups: list[str] = labels[list(es.kept)].tolist()
    if any(group == "" for group in groups):
        row = es.kept[groups.index("")]
        where = table.location(row, column, study).text()
        raise AnalysisError(f"{where}: empty subgroup label")
    sub = subgroups(
        es.yi, es.vi, groups, method=method, test=test, level=level, model=model,
        control=control,
    )  # fmt: skip
    entries = []
    for g, (group, fit) in enumerate(zip(sub.groups, sub.fits, strict=True)):
        entry: dict[str, Any] = {"group": group}
        entry.update(_core(fit))
        members = [i for i, label in enumerate(groups) if label == group]
        entry["studies"] = [
            {
                "label": es.labels[i],
                "yi": _num(es.yi[i]),
                "vi": _num(es.vi[i]),
                "weight_percent": _num(w),
            }
            for i, w in zip(members, fit.weights, strict=True)
        ]
        if sub.common is not None:
            c = sub.common
            entry["common_tau2"] = {
                "estimate": _num(c.estimate[g]),
                "se": _num(c.se[g]),
                "statistic": _num(c.statistic[g]),
                "pval": _num(c.pval[g]),
                "ci_lb": _num(c.ci_lb[g]),
                "ci_ub": _num(c.ci_ub[g]),
            }
        entries.append(entry)
    test_of: dict[str, Any] = {
        "model": sub.model,
        "Q": _num(sub.Q),
        "df": int(sub.df),
        "df2": sub.df2,
        "pval": _num(sub.pval),
    }
    if sub.common is not None:
        test_of.update(
            tau2=_num(sub.common.tau2),
            I2=_num(sub.common.I2),
            QE=_num(sub.common.QE),
            QE_df=sub.common.QE_df,
            QE_pval=_num(sub.common.QE_pval),
            warnings=list(sub.common.fit.warnings),
        )
    return {"subgroups": entries, "subgroup_test": test_of}


#: What ``algorithm`` says for the methods that pool 2x2 tables directly.
TABLE_ALGORITHMS = {"MH": "Mantel-Haenszel", "PETO": "Peto"}


def _analyse_tables(
    analysis_id: str,
    spec: Mapping[str, Any],
    args: Mapping[str, NDArray[np.float64]],
    *,
    labels: list[str],
    places: Callable[[int], str],
) -> dict[str, Any]:
    """An analysis pooled by Mantel-Haenszel or Peto (:mod:`cosmo_runner.meta.mantel_haenszel`).

    Keys as for the other methods; ``test`` is null (always a z statistic, metafor's rma.mh
    and rma.peto have no choice), ``tau2`` is 0, and what these equal-effects methods do not
    define is null with the reason in ``warnings``.
    """
    method = str(spec.get("method")).upper()
    measure = str(spec.get("measure", "")).upper()
    level = float(spec.get("level", 95))
    drop00 = bool(spec.get("drop00", True))
    ai, ci = args["ai"], args["ci"]
    bi = args["bi"] if "bi" in args else args["n1i"] - ai
    di = args["di"] if "di" in args else args["n2i"] - ci
    cells = (ai, bi, ci, di)
    fit = pool_tables(
        ai, bi, ci, di, method=method, measure=measure, level=level, drop00=drop00,
        places=places,
    )  # fmt: skip
    k = fit.k
    if k < 2:
        raise AnalysisError(f"need at least 2 studies, got k = {k}")
    has = np.isfinite(fit.yi)
    name = TABLE_ALGORITHMS[method]
    warnings: list[str] = []
    none = [labels[i] for i in np.flatnonzero(~has)]
    if none:
        warnings.append(
            f"{len(none)} double-zero {'study has' if len(none) == 1 else 'studies have'} no "
            f"individual outcome (out of Q, df = k_yi - 1; kept in the {name} sums): "
            + ", ".join(repr(x) for x in none)
        )
    warnings.append(
        f"no prediction interval: {name} is an equal-effects method without tau2 "
        "(metafor's predict gives none)"
    )
    core: dict[str, Any] = {
        "k": k,
        "estimate": _num(fit.estimate),
        "se": _num(fit.se),
        "statistic": _num(fit.statistic),
        "df": None,
        "pval": _num(fit.pval),
        "ci_lb": _num(fit.ci_lb),
        "ci_ub": _num(fit.ci_ub),
        "tau2": 0.0,
        "tau2_se": None,
        "tau": 0.0,
        "I2": _num(fit.I2),
        "H2": _num(fit.H2),
        "Q": _num(fit.Q),
        "Q_df": int(fit.Q_df),
        "Q_pval": _num(fit.Q_pval),
        "pi_lb": None,
        "pi_ub": None,
        "method": method,
        "test": None,
        "level": _num(fit.level),
        "converged": True,
        "iterations": 0,
        "algorithm": name,
        "warnings": warnings,
    }
    result: dict[str, Any] = {"result_version": RESULT_VERSION, "id": analysis_id}
    result["measure"] = measure
    result.update(core)
    result["k_yi"] = int(fit.k_yi)
    result["studies"] = [
        {"label": lab, "yi": y, "vi": v, "weight_percent": w}
        for lab, y, v, w in zip(
            labels, _floats(fit.yi), _floats(fit.vi), _floats(fit.weights), strict=True
        )
    ]
    result["dropped_studies"] = []
    zero = (ai == 0) | (bi == 0) | (ci == 0) | (di == 0)
    result["added_half"] = [labels[i] for i in np.flatnonzero(zero & has)]
    result["tau2_ci"] = result["I2_ci"] = result["H2_ci"] = None
    result["leave_one_out"] = _tables_leave1out(
        fit, cells, labels, drop00=drop00, warnings=warnings
    )
    result.update(
        _funnel_asymmetry(
            spec, fit.yi[has], fit.vi[has], (ai + bi + ci + di)[has], method="EE", test="z",
            level=level,
            moderators=False, warnings=warnings, trimfill=False,
        )
    )  # fmt: skip
    result["cumulative"] = result["influence"] = None
    warnings.append(
        f"cumulative and influence are not computed for {name}: they refit an "
        "inverse-variance model (metafor's influence needs rma.uni)"
    )
    result["transformed"] = _transform(
        spec.get("transf"), lookup(measure), es=None, table=None, columns={}, core=core
    )
    return result


def _tables_leave1out(
    fit: PooledTables,
    cells: tuple[NDArray[np.float64], ...],
    labels: list[str],
    *,
    drop00: bool,
    warnings: list[str],
) -> list[dict[str, Any]] | None:
    """metafor's leave1out for rma.mh / rma.peto: the pooled fit without each table."""
    if fit.k < 3:
        warnings.append("k < 3: leave-one-out is not computed")
        return None
    if fit.k > LEAVE1OUT_MAX_K:
        warnings.append(f"leave-one-out not computed: k = {fit.k} > {LEAVE1OUT_MAX_K}")
        return None
    l1o = leave1out_tables(
        *cells, method=fit.method, measure=fit.measure, level=fit.level, drop00=drop00
    )
    for i in np.flatnonzero(l1o.undefined):
        warnings.append(
            f"leave-one-out without {labels[i]!r}: {UNDEFINED[(fit.method, fit.measure)]} "
            "(null, as metafor's NA)"
        )
    return [
        {
            "label": labels[i],
            "estimate": _num(l1o.estimate[i]),
            "se": _num(l1o.se[i]),
            "pval": _num(l1o.pval[i]),
            "ci_lb": _num(l1o.ci_lb[i]),
            "ci_ub": _num(l1o.ci_ub[i]),
            "tau2": 0.0,
            "I2": _num(l1o.I2[i]),
            "Q": _num(l1o.Q[i]),
        }
        for i in range(fit.k)
    ]


def _sample_sizes(
    args: Mapping[str, NDArray[np.float64]],
    columns: Mapping[str, str],
    table: Table,
    kept: Sequence[int],
) -> NDArray[np.float64] | None:
    """Each kept study's total sample size, for Egger's ni predictors (None: not known).

    2x2 counts: all four cells; two groups: ``n1i + n2i``; else an ``ni`` argument or column.
    """
    if "ni" in args:
        ni = args["ni"]
    elif "ai" in args and "ci" in args:
        first = args["bi"] + args["ai"] if "bi" in args else args["n1i"]
        second = args["di"] + args["ci"] if "di" in args else args["n2i"]
        ni = first + second
    elif "n1i" in args and "n2i" in args:
        ni = args["n1i"] + args["n2i"]
    else:
        column = columns.get("ni", "ni")
        if column not in table:
            return None
        ni = _parse(table, column, "ni", columns.get("study", "study"))
    return np.asarray(ni, dtype=np.float64)[list(kept)]


def _funnel_asymmetry(
    spec: Mapping[str, Any],
    yi: NDArray[np.float64],
    vi: NDArray[np.float64],
    ni: NDArray[np.float64] | None,
    *,
    method: str,
    test: str,
    level: float,
    moderators: bool,
    warnings: list[str],
    trimfill: bool = True,
    control: Control | None = None,
    fit: RMAResult | None = None,
) -> dict[str, Any]:
    """``egger``, ``rank_test`` and ``trimfill`` of the model without moderators
    (:mod:`cosmo_runner.meta.pubbias`); null with the reason in ``warnings`` where undefined.
    ``fit``: that model (trim-and-fill with k0 = 0 reports it).

    ``trimfill=False``: the fit is not an inverse-variance model (MH, PETO: metafor's
    ``trimfill`` needs ``rma.uni``).
    """
    out: dict[str, Any] = {"egger": None, "rank_test": None, "trimfill": None}
    k = int(yi.shape[0])
    if k < 3:
        warnings.append(
            f"k = {k} < 3 studies with an outcome: Egger's test, the rank test and "
            "trim-and-fill are not computed"
        )
        return out
    options = spec.get("egger") or {}
    predictor = str(options.get("predictor", "sei"))
    model = str(options.get("model", "rma"))
    try:
        eg = egger_test(
            yi, vi, ni=ni, predictor=predictor, model=model, method=method, test=test,
            level=level, control=control,
        )  # fmt: skip
    except AnalysisError as exc:
        warnings.append(f"Egger's test not computed: {exc.message}")
    else:
        if not math.isfinite(eg.statistic):
            warnings.append(
                f"Egger's test is undefined: the {predictor} coefficient has a standard error of 0"
            )
        else:
            out["egger"] = {
                "predictor": predictor,
                "model": model,
                "statistic": _num(eg.statistic),
                "df": eg.df,
                "pval": _num(eg.pval),
                "limit_estimate": _num(eg.limit_estimate),
                "limit_ci_lb": _num(eg.limit_ci_lb),
                "limit_ci_ub": _num(eg.limit_ci_ub),
            }
            if eg.limit_estimate is None:
                warnings.append(
                    f"Egger's limit estimate is null: the {predictor} predictor has none "
                    "(sei, vi, ninv and sqrtninv do)"
                )
    if moderators:
        warnings.append(
            "the rank test and trim-and-fill apply to models without moderators: not computed"
        )
        return out
    rank = rank_test(yi, vi)
    out["rank_test"] = {"tau": _num(rank.tau), "pval": _num(rank.pval), "exact": rank.exact}
    if not rank.exact:
        why = "ties" if k <= RANK_EXACT_MAX_K else f"k = {k} > {RANK_EXACT_MAX_K}"
        warnings.append(f"rank test: normal approximation for the p-value ({why})")
    if not trimfill:
        warnings.append(
            "trim-and-fill is not computed: it refits an inverse-variance model "
            "(metafor's trimfill needs rma.uni), not a Mantel-Haenszel or Peto fit"
        )
        return out
    if k > TRIMFILL_MAX_K:
        warnings.append(
            f"trim-and-fill not computed: k = {k} > {TRIMFILL_MAX_K} "
            "(up to 100 refits of up to k studies)"
        )
        return out
    options = spec.get("trimfill") or {}
    side = options.get("side")
    if side is None and out["egger"] is not None and (predictor, model) == ("sei", "rma"):
        # metafor's trimfill picks the side by the slope of rma(yi, vi, mods = sqrt(vi)),
        # Egger's default model fitted just above: its z or t has the slope's sign
        side = "right" if out["egger"]["statistic"] < 0 else "left"
    try:
        tf = pubbias_trimfill(
            yi, vi, method=method, test=test, level=level, control=control,
            estimator=str(options.get("estimator", "L0")), side=side, fit=fit,
        )  # fmt: skip
    except AnalysisError as exc:
        warnings.append(f"trim-and-fill not computed: {exc.message}")
        return out
    fit = tf.fit
    out["trimfill"] = {
        "k0": tf.k0,
        "se_k0": _num(tf.se_k0),
        "p_k0": _num(tf.p_k0),
        "side": tf.side,
        "estimator": tf.estimator,
        "estimate": _num(fit.estimate),
        "se": _num(fit.se),
        "statistic": _num(fit.statistic),
        "pval": _num(fit.pval),
        "ci_lb": _num(fit.ci_lb),
        "ci_ub": _num(fit.ci_ub),
        "tau2": _num(fit.tau2),
        "I2": _num(fit.I2),
        "filled": [
            {"label": f"Filled {j + 1}", "yi": y, "vi": v}
            for j, (y, v) in enumerate(
                zip(_floats(tf.filled_yi), _floats(tf.filled_vi), strict=True)
            )
        ],
    }
    return out


def _cumulative_keys(table: Table, column: str, kept: Sequence[int], study: str) -> NDArray[Any]:
    """Sort keys of ``cumulative_by``: numbers when every kept cell is one, else the text
    (sorted by code point, as R under LC_COLLATE=C); an empty cell is an error."""
    if column not in table:
        raise AnalysisError(f"cumulative_by column {column!r} is not in the input")
    rows = list(kept)
    text = table.text(column)[rows]
    for j, cell in enumerate(text.tolist()):
        if cell == "":
            where = table.location(rows[j], column, study).text()
            raise AnalysisError(f"{where}: empty cumulative_by value")
    parsed = table.numbers(column)
    bad = (parsed.empty | parsed.invalid)[rows]
    if not bool(bad.any()):
        return np.asarray(parsed.values[rows], dtype=np.float64)
    return np.asarray(text.tolist(), dtype=str)


def _case_diagnostics(
    spec: Mapping[str, Any],
    yi: NDArray[np.float64],
    vi: NDArray[np.float64],
    es: EffectSizes,
    *,
    table: Table,
    study: str,
    method: str,
    test: str,
    level: float,
    warnings: list[str],
    control: Control | None = None,
    fit: RMAResult | None = None,
    refits: LeaveOneOut | None = None,
) -> dict[str, Any]:
    """``cumulative`` and ``influence`` of the model without moderators
    (:mod:`cosmo_runner.meta.influence`): k refits each, so skipped (null, with the reason)
    for k < 3 and above :data:`LEAVE1OUT_MAX_K`, as leave-one-out is. ``fit`` and
    ``refits``: that model and its leave-one-out refits, reused by influence."""
    out: dict[str, Any] = {"cumulative": None, "influence": None}
    k = es.k
    if k < 3 or k > LEAVE1OUT_MAX_K:
        why = "k < 3" if k < 3 else f"k = {k} > {LEAVE1OUT_MAX_K} (k refits each)"
        warnings.append(f"cumulative and influence not computed: {why}")
        return out
    by = spec.get("cumulative_by")
    keys = None if by is None else _cumulative_keys(table, str(by), es.kept, study)
    try:
        cm = cumulative(yi, vi, order=keys, method=method, test=test, level=level, control=control)
    except AnalysisError as exc:
        warnings.append(f"cumulative meta-analysis not computed: {exc.message}")
    else:
        out["cumulative"] = [
            {
                "label": es.labels[int(i)],
                "estimate": _num(cm.estimate[j]),
                "se": _num(cm.se[j]),
                "pval": _num(cm.pval[j]),
                "ci_lb": _num(cm.ci_lb[j]),
                "ci_ub": _num(cm.ci_ub[j]),
                "Q": _num(cm.Q[j]),
                "tau2": _num(cm.tau2[j]),
                "I2": _num(cm.I2[j]),
            }
            for j, i in enumerate(cm.order)
        ]
        warnings.extend(f"cumulative: {w}" for w in cm.warnings)
    try:
        inf = influence(
            yi, vi, method=method, test=test, level=level, control=control, fit=fit,
            refits=refits,
        )  # fmt: skip
    except AnalysisError as exc:
        warnings.append(f"influence diagnostics not computed: {exc.message}")
    else:
        out["influence"] = [
            {
                "label": es.labels[i],
                "rstudent": _num(inf.rstudent[i]),
                "dffits": _num(inf.dffits[i]),
                "cook_d": _num(inf.cook_d[i]),
                "cov_r": _num(inf.cov_r[i]),
                "tau2_del": _num(inf.tau2_del[i]),
                "QE_del": _num(inf.QE_del[i]),
                "hat": _num(inf.hat[i]),
                "weight": _num(inf.weight[i]),
                "dfbetas": _num(inf.dfbetas[i]),
                "influential": bool(inf.influential[i]),
            }
            for i in range(k)
        ]
    return out
