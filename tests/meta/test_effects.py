"""escalc: formulas, alternatives and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosmo_runner.errors import AnalysisError
from cosmo_runner.meta import escalc


def test_n1i_n2i_replace_bi_di() -> None:
    a = escalc("OR", ai=[4, 6], bi=[119, 300], ci=[11, 29], di=[128, 274])
    b = escalc("OR", ai=[4, 6], n1i=[123, 306], ci=[11, 29], n2i=[139, 303])
    np.testing.assert_allclose(a.yi, b.yi, rtol=1e-15)
    np.testing.assert_allclose(a.vi, b.vi, rtol=1e-15)


def test_smd_is_hedges_g_with_the_exact_correction() -> None:
    es = escalc("SMD", m1i=[10.0], sd1i=[2.0], n1i=[10], m2i=[9.0], sd2i=[2.0], n2i=[10])
    m = 18.0
    c = math.exp(math.lgamma(m / 2) - math.log(math.sqrt(m / 2)) - math.lgamma((m - 1) / 2))
    g = c * 0.5
    assert es.yi[0] == pytest.approx(g, rel=1e-14)
    assert es.vi[0] == pytest.approx(0.2 + g * g / 40.0, rel=1e-14)


def test_zcor_and_gen() -> None:
    z = escalc("ZCOR", ri=[0.5, -0.2], ni=[23, 103])
    np.testing.assert_allclose(z.yi, np.arctanh([0.5, -0.2]))
    np.testing.assert_allclose(z.vi, [0.05, 0.01])
    g = escalc("GEN", yi=[0.1, 0.2], sei=[0.3, 0.4])
    np.testing.assert_allclose(g.vi, [0.09, 0.16])


def test_labels_follow_kept_and_dropped_studies() -> None:
    es = escalc(
        "RR", ai=[0, 3, 5], bi=[10, 7, 5], ci=[0, 1, 4], di=[10, 9, 6], drop00=True,
        labels=["A", "B", "C"],
    )  # fmt: skip
    assert es.labels == ("B", "C")
    assert es.dropped_labels == ("A",)
    assert es.kept == (1, 2)
    assert es.k == 2


@pytest.mark.parametrize(
    ("measure", "columns", "message"),
    [
        ("XYZ", {"yi": [1.0]}, "unknown measure"),
        (
            "RR",
            {"ai": [1, 2], "bi": [3, 4], "ci": [1, 2]},
            "column 'di' \\(or 'n2i'\\) is required for measure RR",
        ),
        ("RR", {"ai": [1, -2], "bi": [3, 4], "ci": [1, 2], "di": [3, 4]}, "non-negative"),
        ("OR", {"ai": [1, 2], "bi": [3], "ci": [1, 2], "di": [3, 4]}, "mismatched lengths"),
        ("OR", {"ai": [1, np.nan], "bi": [3, 4], "ci": [1, 2], "di": [3, 4]}, "non-finite"),
        ("OR", {"ai": [0, 2], "bi": [0, 4], "ci": [1, 2], "di": [3, 4]}, "at least one"),
        ("ZCOR", {"ri": [0.5, 1.0], "ni": [20, 30]}, "between -1 and 1"),
        ("ZCOR", {"ri": [0.5, 0.2], "ni": [20, 3]}, "ni 3 must be > 3 for ZCOR"),
        (
            "GEN",
            {"yi": [0.5, 0.2]},
            "column 'vi' \\(or 'sei', or 'lower' and 'upper'\\) is required for measure GEN",
        ),
        (
            "MD",
            {"m1i": [1], "sd1i": [-1], "n1i": [5], "m2i": [1], "sd2i": [1], "n2i": [5]},
            "sd1i -1 must be >= 0 \\(row 1\\)",
        ),
        (
            "SMD",
            {"m1i": [1], "sd1i": [0], "n1i": [5], "m2i": [1], "sd2i": [0], "n2i": [5]},
            "pooled standard deviation",
        ),
        ("GEN", {"yi": ["a", "b"], "vi": [1, 1]}, "not numeric"),
    ],
)
def test_bad_input_is_a_clear_error(
    measure: str, columns: dict[str, list[object]], message: str
) -> None:
    with pytest.raises(AnalysisError, match=message):
        escalc(measure, **columns)  # type: ignore[arg-type]
