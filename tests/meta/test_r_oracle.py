"""Live comparison with R's metafor (optional: the committed fixtures are the contract).

Skips, with the reason shown by ``pytest -ra``, only when ``Rscript`` is not installed. With
Rscript present, a missing metafor/jsonlite is a failure, not a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import ROOT

from cosmo_runner.meta import confint_tau2, escalc, regtest, rma

pytestmark = pytest.mark.r_oracle

RSCRIPT = shutil.which("Rscript")

R_CODE = r"""
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
es <- escalc("RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg)
tight <- list(threshold=1e-10, tol=1e-10, maxiter=1000)
out <- list(version=as.character(packageVersion("metafor")),
            ai=dat.bcg$tpos, bi=dat.bcg$tneg, ci=dat.bcg$cpos, di=dat.bcg$cneg)
for (m in c("REML", "PM", "SJ")) for (t in c("z", "knha")) {
  r <- rma(es$yi, es$vi, method=m, test=t, control=tight)
  out[[paste(m, t)]] <- list(b=c(r$beta), se=r$se, tau2=r$tau2, I2=r$I2, pval=r$pval,
                             ci=confint(r, control=list(tol=1e-10))$random[1, 2:3],
                             egger=regtest(r)$zval)
}
cat(toJSON(out, auto_unbox=TRUE, digits=NA))
"""


@pytest.mark.skipif(
    RSCRIPT is None,
    reason="Rscript is not installed (apt-get install r-base-core r-cran-metafor r-cran-jsonlite)",
)
def test_live_metafor_agrees() -> None:
    assert RSCRIPT is not None
    proc = subprocess.run(
        [RSCRIPT, "-e", R_CODE], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"Rscript failed (is metafor installed?): {proc.stderr[-500:]}"
    ref = json.loads(proc.stdout)
    es = escalc("RR", ai=ref["ai"], bi=ref["bi"], ci=ref["ci"], di=ref["di"])
    tight = {"threshold": 1e-10, "tol": 1e-10, "maxiter": 1000}
    for method in ("REML", "PM", "SJ"):
        for test in ("z", "knha"):
            want = ref[f"{method} {test}"]
            got = rma(es.yi, es.vi, method=method, test=test, control=tight)
            # same tolerances as the fixture tests (tight controls: 1e-7)
            np.testing.assert_allclose(
                [got.estimate, got.se, got.tau2, got.I2, got.pval],
                [want["b"], want["se"], want["tau2"], want["I2"], want["pval"]],
                rtol=1e-7,
            )
            ci = confint_tau2(es.yi, es.vi, method=method, control=tight)
            np.testing.assert_allclose([ci.tau2_lb, ci.tau2_ub], want["ci"], rtol=1e-7)
            eg = regtest(es.yi, es.vi, method=method, test=test, control=tight)
            np.testing.assert_allclose(eg.statistic, want["egger"], rtol=1e-7)


@pytest.mark.slow
@pytest.mark.skipif(
    RSCRIPT is None,
    reason="Rscript is not installed (apt-get install r-base-core r-cran-metafor r-cran-jsonlite)",
)
def test_moderator_fixtures_are_what_their_script_writes(tmp_path: Path) -> None:
    """scripts/metafor/make_fixtures_mods.R regenerates tests/fixtures/metafor/mods byte for
    byte (deterministic: no random data; levels under LC_COLLATE=C), about 4 s of R."""
    assert RSCRIPT is not None
    proc = subprocess.run(
        [RSCRIPT, str(ROOT / "scripts/metafor/make_fixtures_mods.R"), str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"Rscript failed (is metafor installed?): {proc.stderr[-500:]}"
    committed = sorted(p.name for p in (ROOT / "tests/fixtures/metafor/mods").glob("*.json"))
    assert sorted(p.name for p in tmp_path.glob("*.json")) == committed
    for name in committed:
        ours = (ROOT / "tests/fixtures/metafor/mods" / name).read_bytes()
        assert (tmp_path / name).read_bytes() == ours, name
