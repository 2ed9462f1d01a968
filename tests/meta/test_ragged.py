"""Ragged rows (``rma(..., lengths=)``: row i is its first ``lengths[i]`` studies) agree with
fitting each row on its own, on values AND warnings, for every estimator, test and the data
of the agreement test where a decision fires (variance ratio, ll0check, the global check of
a bimodal likelihood, the fallbacks, identical effects, tau2 at 0, EE + knha, control
settings); and the cumulative meta-analysis, which fits its prefixes that way, gives what
its k - 1 separate fits give, errors included."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from tests.meta.test_fit_agreement import DATA, VALUES

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import METHODS, TESTS, RMAResult, rma
from cosmo_runner.meta import influence as influence_module
from cosmo_runner.meta._decisions import VARRATIO_WARNING  # private: the warning's text
from cosmo_runner.meta.influence import cumulative

# small heterogeneity: tau2 = 0 (the boundary) in some prefixes, not in others
_RNG = np.random.default_rng(14)
_V_SMALL = _RNG.uniform(0.05, 0.3, 9)
BOUNDARY = (_RNG.normal(0.2, np.sqrt(_V_SMALL)), _V_SMALL)


def _one(value: Any, i: int) -> Any:
    """Row ``i``'s value of a batch attribute (``None`` for an all-NaN undefined one)."""
    if value is None:
        return None
    item = np.asarray(value)[i]
    return item.item() if isinstance(item, np.generic) else item


def _row_warnings(res: RMAResult, i: int) -> list[str]:
    """The warnings of a batch that concern row ``i``, worded as for one analysis."""
    out = []
    for w in res.warnings:
        rows = getattr(w, "rows", None)
        if rows is None:
            out.append(str(w))
        elif i in rows:
            out.append(w.template.format(""))
    return out


def _same(single: RMAResult, res: RMAResult, i: int, rel: float, where: str) -> None:
    assert _row_warnings(res, i) == list(single.warnings), where
    assert _one(res.algorithm, i) == single.algorithm, where
    assert bool(_one(res.converged, i)) == single.converged, where
    # Fisher scoring takes the same steps; the root finder's count (to machine precision)
    # moves by a few where rounding moves a bracket
    slack = 3 if single.algorithm == "root finding" else 0
    assert abs(int(_one(res.iterations, i)) - single.iterations) <= slack, where
    assert _one(res.k, i) == single.k, where
    assert _one(res.Q_df, i) == single.Q_df, where
    df = _one(res.df, i) if res.df is not None else None
    assert df == single.df, where
    unstable = VARRATIO_WARNING in single.warnings
    if unstable:
        # metafor's "may not be able to obtain stable results" (max vi / min vi >= 1e7): a
        # rounding apart, Fisher scoring stops at another tau2 within its threshold (1e-10
        # absolute), and with min(vi) = 1e-8 that moves se and the rest by ~0.2%
        # (I2 = 100 tau2 / (tau2 + vt) and H2 = 1 + tau2 / vt follow tau2)
        assert _one(res.tau2, i) == pytest.approx(single.tau2, abs=1e-10), where
        assert _one(res.I2, i) == pytest.approx(single.I2, abs=100 * 1e-10 / single.vt), where
        assert _one(res.H2, i) == pytest.approx(single.H2, abs=1e-10 / single.vt), where
        rel = 1e-2
    for key in (*VALUES, "pi_lb", "pi_ub"):
        mine, theirs = _one(getattr(res, key), i), getattr(single, key)
        if theirs is None:
            assert mine is None or np.isnan(mine), (where, key)
        elif not (unstable and key in ("tau2", "tau", "tau2_se", "I2", "H2")):
            # tau = sqrt(tau2): |sqrt(a) - sqrt(b)| <= sqrt(|a - b|), so tau2's 1e-12 is 1e-6
            # where tau2 is ~0 (a flat likelihood there: Fisher scoring's last step differs)
            atol = 1e-6 if key == "tau" else 1e-12
            assert mine == pytest.approx(theirs, rel=rel, abs=atol), (where, key)
    weights = np.asarray(res.weights)[i]
    np.testing.assert_allclose(weights[: single.k], single.weights, rtol=rel, err_msg=where)
    assert (weights[single.k :] == 0).all(), where


CASES = {**DATA, "boundary": (*BOUNDARY, None)}


@pytest.mark.parametrize("data", CASES, ids=list(CASES))
@pytest.mark.parametrize("test", TESTS)
@pytest.mark.parametrize("method", METHODS)
def test_ragged_rows_and_cumulative_agree_with_separate_fits(
    method: str, test: str, data: str
) -> None:
    """One set of separate fits serves both checks (the cumulative rows are the prefixes)."""
    y, v, control = CASES[data]
    k = y.shape[0]
    # every prefix from 2 studies, then the full data and the data reversed cut at 3
    lengths = np.array([*range(2, k + 1), 3])
    ys = np.vstack([np.broadcast_to(y, (k - 1, k)), y[::-1]])
    vs = np.vstack([np.broadcast_to(v, (k - 1, k)), v[::-1]])
    fit = {"method": method, "test": test, "control": control}
    singles: list[RMAResult | str] = []
    for i, n in enumerate(lengths):
        try:
            singles.append(rma(ys[i, :n], vs[i, :n], **fit))
        except AnalysisError as exc:
            singles.append(exc.message)
    _check_cumulative(y, v, singles[: k - 1], fit, data)
    if any(isinstance(s, str) for s in singles):  # a failing row fails the batch
        with pytest.raises(AnalysisError):
            rma(ys, vs, lengths=lengths, **fit)
        return
    res = rma(ys, vs, lengths=lengths, **fit)
    # rows padded with zero weights sum in other orders: a few ulps, more where the
    # variance ratio is 1e8 (as between the paths of the agreement test)
    rel = 1e-6 if data == "varratio" else 1e-9
    for i, single in enumerate(singles):
        assert isinstance(single, RMAResult)
        _same(single, res, i, rel, f"row {i} ({lengths[i]} studies)")


def test_cells_after_a_row_s_length_are_ignored() -> None:
    y, v, _ = DATA["bcg"]
    lengths = np.array([4, 7])
    ys, vs = np.vstack([y, y]), np.vstack([v, v])
    junk_y, junk_v = ys.copy(), vs.copy()
    junk_y[0, 4:], junk_v[0, 4:] = np.nan, -1.0
    junk_y[1, 7:], junk_v[1, 7:] = np.inf, 0.0
    a = rma(ys, vs, lengths=lengths)
    b = rma(junk_y, junk_v, lengths=lengths)
    for key in (*VALUES, "k", "df", "Q_df"):
        np.testing.assert_array_equal(np.asarray(getattr(a, key)), np.asarray(getattr(b, key)))


def test_bad_values_inside_a_row_are_named() -> None:
    y, v, _ = DATA["bcg"]
    ys, vs = np.vstack([y, y]), np.vstack([v, v])
    vs[1, 2] = 0.0
    with pytest.raises(AnalysisError) as info:
        rma(ys, vs, lengths=[3, 5])
    assert info.value.message == (
        "rma: vi must be strictly positive (found a zero or negative variance)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lengths": [2, 3, 4]}, "rma: lengths needs one entry per row (2), got shape (3,)"),
        ({"lengths": [1, 3]}, "rma: lengths must be whole numbers from 2 to 13 (the width)"),
        ({"lengths": [2, 14]}, "rma: lengths must be whole numbers from 2 to 13 (the width)"),
        ({"lengths": [2, 2.5]}, "rma: lengths must be whole numbers from 2 to 13 (the width)"),
        ({"lengths": ["a", "b"]}, "rma: lengths must be numeric"),
        ({"lengths": [2, 3], "mods": np.ones(13)}, "rma: lengths is for 2-D yi and vi without "
         "moderators"),
    ],
)  # fmt: skip
def test_bad_lengths(kwargs: dict[str, Any], message: str) -> None:
    y, v, _ = DATA["bcg"]
    with pytest.raises(AnalysisError) as info:
        rma(np.vstack([y, y]), np.vstack([v, v]), **kwargs)
    assert info.value.message == message
    with pytest.raises(AnalysisError) as info:
        rma(y, v, lengths=[3])
    assert info.value.message == "rma: lengths is for 2-D yi and vi without moderators"


def _check_cumulative(
    y: Any, v: Any, prefixes: list[RMAResult | str], fit: dict[str, Any], data: str
) -> None:
    """The cumulative table's rows 1 .. k-1 against the separate fits of the first 2 .. k
    studies (what it computed before), or the first failing prefix's own error."""
    failed = next((s for s in prefixes if isinstance(s, str)), None)
    if failed is not None:
        with pytest.raises(AnalysisError) as info:
            cumulative(y, v, **fit)
        assert info.value.message == failed
        return
    res = cumulative(y, v, **fit)
    fits = [s for s in prefixes if isinstance(s, RMAResult)]
    assert list(res.warnings) == [
        f"first {j + 2} studies: {w}" for j, s in enumerate(fits) for w in s.warnings
    ]
    # the variance-ratio data: see _same (tau2 within Fisher scoring's threshold, the rest
    # within ~0.2% in the prefixes metafor warns are unstable)
    unstable = data == "varratio"
    for name in ("estimate", "se", "pval", "ci_lb", "ci_ub", "Q", "tau2", "I2"):
        ours = np.asarray(getattr(res, name))[1:]
        column = [float(getattr(s, name)) for s in fits]
        if name == "tau2" and fit["method"] in ("EE", "FE"):
            assert np.isnan(ours).all()
        elif name in ("tau2", "I2") and unstable:  # vt >= 0.1 in these prefixes
            atol = 1e-10 if name == "tau2" else 100 * 1e-10 / 0.1
            np.testing.assert_allclose(ours, column, rtol=1e-6, atol=atol, err_msg=name)
        else:
            rel = 1e-2 if unstable else 1e-9
            np.testing.assert_allclose(ours, column, rtol=rel, atol=1e-12, err_msg=name)


def test_cumulative_in_chunks_equals_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large k is fitted in chunks of bounded size; the chunking changes nothing."""
    y, v, _ = DATA["not-converged"]
    whole = cumulative(y, v, control={"maxiter": 1})
    # private: the chunk size is not a setting; 30 numbers make chunks of 2-3 rows here
    monkeypatch.setattr(influence_module, "_CHUNK_ELEMENTS", 30)
    chunked = cumulative(y, v, control={"maxiter": 1})
    assert chunked.warnings == whole.warnings
    for name in ("estimate", "se", "pval", "ci_lb", "ci_ub", "Q", "tau2", "I2"):
        # other widths, other padding: summation orders differ by a few ulps
        np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=1e-9)
