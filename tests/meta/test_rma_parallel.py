"""Large closed-form batches are fitted in row blocks side by side: same numbers as one block."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cosmo_runner.meta import rma

RMA = sys.modules["cosmo_runner.meta.rma"]
KEYS = ("estimate", "se", "tau2", "ci_lb", "ci_ub", "pval", "statistic", "I2", "H2", "pi_lb",
        "pi_ub", "tau", "Q", "vt", "converged", "iterations", "tau2_se", "weights", "Q_pval",
        "algorithm")  # fmt: skip


@pytest.mark.parametrize("test", ["z", "knha"])
@pytest.mark.parametrize("method", ["EE", "DL", "HS", "HE", "SJ", "REML"])
def test_row_blocks_give_identical_results(
    method: str, test: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    vi = rng.uniform(0.01, 0.5, (6001, 20))
    yi = rng.normal(0.3, np.sqrt(vi + 0.1))
    yi[17] = 0.25  # an all-identical row (Q = 0)
    monkeypatch.setattr(RMA, "_PARALLEL_MIN", 1)
    monkeypatch.setattr("os.cpu_count", lambda: 3)  # three blocks, uneven sizes
    blocks = rma(yi, vi, method=method, test=test)
    monkeypatch.setattr(RMA, "_PARALLEL_MIN", 10**12)
    whole = rma(yi, vi, method=method, test=test)
    for key in KEYS:
        a, b = np.asarray(getattr(blocks, key)), np.asarray(getattr(whole, key))
        assert a.shape == b.shape and a.shape[0] == 6001 and a.dtype == b.dtype, key
        assert (a == b).all() if a.dtype == object else np.array_equal(a, b, equal_nan=True), key
    assert blocks.warnings == whole.warnings
    assert (blocks.k, blocks.df, blocks.Q_df) == (whole.k, whole.df, whole.Q_df)
