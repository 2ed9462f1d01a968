"""The converged default and the global check's profile evidence (issue 13 item 6):

- dat.nielweise2007 (RD), where metafor's absolute threshold of 1e-5 is a 10-30% tolerance on
  tau2 ~ 1e-4: the default (threshold 1e-10) gives the likelihood maximum metafor reaches
  with ``threshold = 1e-12``; metafor's control gives metafor's default fit;
- a fit that merely stopped early on a single peak is finished with a note, never called
  multimodal; two peaks with a valley between (dat.egger2001 without LIMIT-2, ML) are.

Fixtures: scripts/metafor/make_fixtures.R sections nielweise2007 and egger2001.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.meta.loglik import loglik
from tests.meta.metafor import METAFOR

from cosmo_runner.meta import analyse, leave1out, rma
from cosmo_runner.meta.fit import MULTIMODAL_WARNING

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metafor"
#: threshold 1e-10 is absolute on tau2; near a flat maximum (tau2 ~ 6e-5 here) Fisher
#: scoring stops within a few 1e-10 of it, ~1e-5 relative, against metafor's 1e-12 stop
CONVERGED_RTOL = 1e-5


def _fixture(name: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    fx: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    es = next(iter(fx["escalc"].values()))
    return fx, np.asarray(es["yi"], dtype=float), np.asarray(es["vi"], dtype=float)


def _case(fx: dict[str, Any], case_id: str) -> dict[str, Any]:
    case: dict[str, Any] = next(c for c in fx["cases"] if c["id"] == case_id)
    return case


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_the_default_reaches_the_maximum_metafor_s_default_does_not(method: str) -> None:
    fx, y, v = _fixture("nielweise2007")
    converged = fx["converged"][method]  # metafor with threshold = 1e-12
    fit = rma(y, v, method=method)
    assert fit.tau2 == pytest.approx(converged["tau2"], rel=CONVERGED_RTOL)
    assert pytest.approx(converged["I2"], rel=CONVERGED_RTOL) == fit.I2
    assert fit.converged is True and fit.algorithm == "fisher-scoring" and fit.warnings == ()
    loose = rma(y, v, method=method, control=METAFOR)
    metafor = _case(fx, f"nielweise2007-RD-{method}-z")["rma"]
    assert loose.tau2 == pytest.approx(metafor["tau2"], rel=1e-8)
    assert pytest.approx(metafor["I2"], rel=1e-8) == loose.I2
    # the figures: ML 7.955e-5 (I2 31.2%) at metafor's default, 5.916e-5 (25.2%)
    if method == "ML":
        assert (round(loose.tau2, 8), round(fit.tau2, 8)) == (7.955e-5, 5.916e-5)
        assert (round(loose.I2, 1), round(fit.I2, 1)) == (31.2, 25.2)
    # and it is the maximum: no neighbour does better
    reml = method == "REML"
    best = loglik(fit.tau2, y, v, reml)
    assert best > loglik(loose.tau2, y, v, reml)
    for t in (fit.tau2 * (1 - 1e-3), fit.tau2 * (1 + 1e-3)):
        assert loglik(t, y, v, reml) <= best


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_a_fit_that_stopped_early_is_finished_and_not_called_multimodal(method: str) -> None:
    """metafor's control on the leave-one-out refits: 4 stop short of their single peak; the
    global check finishes them to the maximum (the converged refits) with a note naming
    them, and no refit is called multimodal. Without the check: metafor's own refits."""
    fx, y, v = _fixture("nielweise2007")
    l1o = leave1out(y, v, method=method, control=METAFOR)
    assert not any("multimodal" in w for w in l1o.warnings)
    (note,) = [w for w in l1o.warnings if w.startswith("Fisher scoring stopped short")]
    kind = "restricted" if method == "REML" else "ML"
    found = re.fullmatch(
        rf"Fisher scoring stopped short of the {kind} likelihood maximum in 4 of 18 analyses "
        r"\(rows ([0-9, ]+)\) \(\|step\| <= threshold 1e-05 on a flat likelihood; it has one "
        r"peak there\); finished by bounded maximisation\.",
        note,
    )
    assert found is not None, note
    rows = [int(r) for r in found.group(1).split(", ")]
    tight = np.asarray(_case(fx, f"nielweise2007-RD-{method}-z-tight")["leave1out"]["tau2"])
    metafor = np.asarray(_case(fx, f"nielweise2007-RD-{method}-z")["leave1out"]["tau2"])
    finished = np.asarray(l1o.tau2)
    np.testing.assert_allclose(finished[rows], tight[rows], rtol=CONVERGED_RTOL)
    assert not np.allclose(metafor[rows], tight[rows], rtol=1e-2)  # metafor's stop is far off
    others = np.setdiff1d(np.arange(y.size), rows)
    np.testing.assert_allclose(finished[others], metafor[others], rtol=1e-8, atol=1e-12)
    plain = leave1out(y, v, method=method, control={**METAFOR, "global_check": False})
    np.testing.assert_allclose(np.asarray(plain.tau2), metafor, rtol=1e-8, atol=1e-12)


def test_two_peaks_with_a_valley_between_are_multimodal() -> None:
    """egger2001 without LIMIT-2, ML: metafor stops at tau2 = 0, a local maximum (the
    profile falls to a valley near 1e-4, then rises to the peak at 0.2952)."""
    fx, y, v = _fixture("egger2001")
    peaks = fx["peaks"]["ML"]
    profile = peaks["profile_ll"]
    assert profile[3] < profile[0] < peaks["peak_ll"]  # the premise, from metafor itself
    fit = rma(y, v, method="ML")
    assert fit.tau2 == pytest.approx(peaks["peak_tau2"], rel=1e-6)
    assert loglik(fit.tau2, y, v, False) - loglik(0.0, y, v, False) == pytest.approx(
        peaks["peak_ll"] - peaks["metafor_ll"], rel=1e-6
    )
    assert fit.warnings == (MULTIMODAL_WARNING.format("ML", ""),)
    assert fit.algorithm == "bounded-optimisation fallback"
    for control in (METAFOR, {**METAFOR, "global_check": False}):
        loose = rma(y, v, method="ML", control=control)
        if control.get("global_check") is False:  # metafor's answer, the lower peak
            assert loose.tau2 == peaks["metafor_tau2"] == 0 and loose.warnings == ()
        else:
            assert loose.tau2 == pytest.approx(peaks["peak_tau2"], rel=1e-6)
            assert loose.warnings == fit.warnings
    # REML has one peak here, which metafor's default reaches: nothing to warn about
    reml = rma(y, v, method="REML")
    assert reml.tau2 == pytest.approx(fx["peaks"]["REML"]["peak_tau2"], rel=1e-6)
    assert reml.warnings == ()


def test_leave_one_out_warnings_name_each_refit_by_the_study_it_leaves_out() -> None:
    """Places in the one format of the tables (1-based file lines, the header is line 1),
    never 0-based rows; the library's warning keeps its rows for that, across chunks."""
    fx, y, v = _fixture("nielweise2007")
    data = fx["data"]
    table = {"study": data["study"]}
    table.update({c: [str(int(x)) for x in data[c]] for c in ("ai", "bi", "ci", "di")})
    spec = {"id": "nw", "measure": "RD", "method": "ML", "control": METAFOR}
    warnings = [w for w in analyse(spec, table)["warnings"] if w.startswith("leave-one-out")]
    assert warnings == [
        "leave-one-out: Fisher scoring algorithm may have gotten stuck at a local maximum in 2 "
        "of 18 refits (without table line 2 (study 'Bach 1996'); without table line 12 (study "
        "'Chatzinikolaou 2003')); setting tau^2 = 0 (the likelihood at tau^2 = 0 is higher).",
        "leave-one-out: Fisher scoring stopped short of the ML likelihood maximum in 4 of 18 "
        "refits (without table line 6 (study 'Heard 1998'); without table line 11 (study "
        "'Sheng 2000'); without table line 14 (study 'Brun-Buisson 2004'); without table line "
        "17 (study 'Moretti 2005')) (|step| <= threshold 1e-05 on a flat likelihood; it has "
        "one peak there); finished by bounded maximisation.",
    ]
    # the refits in chunks of 2 (chunk_elements 40 // 17): the same rows, not chunk-relative
    whole = leave1out(y, v, method="ML", control=METAFOR)
    chunked = leave1out(y, v, method="ML", control=METAFOR, chunk_elements=40)
    assert chunked.warnings == whole.warnings
    assert [getattr(w, "rows", None) for w in whole.warnings] == [(0, 10), (4, 9, 12, 15)]
    # a warning pickles with its rows (batch results travel between processes)
    again = pickle.loads(pickle.dumps(whole.warnings[1]))
    assert (again, again.rows) == (whole.warnings[1], (4, 9, 12, 15))
