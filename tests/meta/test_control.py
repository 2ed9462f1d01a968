"""An analysis's ``"control"``: the schema and :class:`Control` say the same, every odd value
is a spec error naming its pointer (exit 2, a complete run log), and the settings reach the
fit and every refit of the diagnostics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import EXAMPLE, InProcess, load_log
from tests.meta.test_analysis import BCG_SPEC, _bcg_table  # the BCG table as analyse takes it

from cosmo_runner import spec as spec_mod
from cosmo_runner.errors import AnalysisError, SpecError
from cosmo_runner.meta import Control, analyse
from cosmo_runner.schemas import load_schema


def _control_schema() -> dict[str, Any]:
    schema: dict[str, Any] = load_schema("run_spec")["$defs"]["control"]
    return schema


def test_the_schema_names_every_setting_with_its_default() -> None:
    props = _control_schema()["properties"]
    fields = {f.name: f.default for f in dataclasses.fields(Control)}
    assert set(props) == set(fields)
    for name, default in fields.items():
        if default is None:  # tau2_init: the HE start unless given
            assert "default" not in props[name], name
        else:
            assert props[name]["default"] == default, name


def _problems(tmp_path: Path, control: Any, method: str = "REML") -> list[str]:
    data = json.loads((EXAMPLE / "spec.json").read_text(encoding="utf-8"))
    analysis = data["analyses"][0]
    analysis["control"] = control
    analysis["method"] = method
    analysis.pop("test", None)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as caught:
        spec_mod.load(path)
    return caught.value.problems


@pytest.mark.parametrize(
    ("control", "problem"),
    [
        ({"treshold": 1e-8}, "/analyses/0/control: Additional properties are not allowed "
                             "('treshold' was unexpected)"),
        ({"maxiter": 0}, "/analyses/0/control/maxiter: 0 is less than the minimum of 1"),
        ({"maxiter": 2.5}, "/analyses/0/control/maxiter: 2.5 is not of type 'integer'"),
        ({"threshold": 0}, "/analyses/0/control/threshold: 0 is less than or equal to the "
                           "minimum of 0"),
        ({"tau2_init": -1}, "/analyses/0/control/tau2_init: -1 is less than the minimum of 0"),
        ({"stepadj": "1"}, "/analyses/0/control/stepadj: '1' is not of type 'number'"),
        ({"global_check": 1}, "/analyses/0/control/global_check: 1 is not of type 'boolean'"),
        ({"xrtol": 1}, "/analyses/0/control/xrtol: 1 is greater than or equal to the maximum "
                       "of 1"),
        ([1e-5], "/analyses/0/control: [1e-05] is not of type 'object'"),
    ],
    ids=["unknown", "maxiter-0", "maxiter-float", "threshold-0", "tau2-init-negative",
         "stepadj-text", "global-check-number", "xrtol-1", "not-an-object"],
)  # fmt: skip
def test_odd_controls_are_spec_errors_naming_the_pointer(
    tmp_path: Path, control: Any, problem: str
) -> None:
    assert _problems(tmp_path, control) == [problem]


def test_mh_takes_no_control(tmp_path: Path) -> None:
    assert _problems(tmp_path, {"threshold": 1e-8}, method="MH") == [
        "/analyses/0/control: method MH estimates no tau2 (control sets the tau2 algorithm "
        "of inverse-variance methods)"
    ]


def test_a_bad_control_run_exits_2_with_one_line_and_a_complete_log(
    tmp_path: Path, cli: InProcess
) -> None:
    data = json.loads((EXAMPLE / "spec.json").read_text(encoding="utf-8"))
    data["analyses"][0]["control"] = {"threshold": 1e-8, "maxiters": 50}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(data))
    (tmp_path / "bcg.csv").write_bytes((EXAMPLE / "bcg.csv").read_bytes())
    out = tmp_path / "out"
    proc = cli("run", spec, "--out", out)
    problem = (
        "/analyses/0/control: Additional properties are not allowed ('maxiters' was unexpected)"
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"cosmo-runner: error: {spec}: {problem}"]
    log = load_log(out)
    assert log["exit_code"] == 2 and log["error"]["problems"] == [problem]


def test_the_control_reaches_the_fit_and_every_refit() -> None:
    """maxiter 1: Fisher scoring cannot converge, so the fit, leave-one-out, cumulative,
    influence and the moderator model all take the fallback and say so; without the
    fallback the analysis is an error with the hint."""
    spec = dict(BCG_SPEC, control={"maxiter": 1})
    res = analyse(spec, _bcg_table())
    assert res["converged"] is False
    assert res["algorithm"] == "bounded-optimisation fallback"
    for part in ("leave-one-out", "cumulative"):
        assert any(w.startswith(part) and "did not converge" in w for w in res["warnings"]), part
    assert res["influence"] is not None
    mods = analyse(dict(spec, moderators=["ablat"]), _bcg_table())
    assert mods["moderator_converged"] is False
    assert mods["moderator_algorithm"] == "bounded-optimisation fallback"
    with pytest.raises(AnalysisError, match="did not converge; enable control fallback"):
        analyse(dict(BCG_SPEC, control={"maxiter": 1, "fallback": False}), _bcg_table())
    # and a setting that changes no decision changes nothing
    plain = analyse(BCG_SPEC, _bcg_table())
    same = analyse(dict(BCG_SPEC, control={"stepadj": 1.0}), _bcg_table())
    assert same["tau2"] == plain["tau2"] and same["leave_one_out"] == plain["leave_one_out"]


@pytest.mark.parametrize(
    ("control", "message"),
    [
        ({"maxiter": 0}, "rma: control maxiter must be an integer >= 1: 0"),
        ({"maxiter": True}, "rma: control maxiter must be an integer >= 1: True"),
        ({"threshold": float("nan")}, "rma: control threshold must be a number > 0: nan"),
        ({"tol": -1.0}, "rma: control tol must be a number > 0: -1.0"),
        ({"tau2_init": -0.5}, "rma: control tau2_init must be a number >= 0: -0.5"),
        ({"fallback": "no"}, "rma: control fallback must be true or false"),
        ({"treshold": 1.0}, "rma: unknown control setting(s): treshold"),
    ],
)
def test_the_library_checks_the_same_domains(control: dict[str, Any], message: str) -> None:
    with pytest.raises(AnalysisError) as caught:
        Control.from_mapping(control)
    assert caught.value.message == message
    assert Control.from_mapping({"maxiter": 50.0}).maxiter == 50  # a JSON 50.0 is 50
