"""Any JSON value in: a valid spec or a clear SpecError, never a crash (hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosmo_runner import spec as spec_mod
from cosmo_runner.errors import SpecError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
# Spec-shaped documents reach the deeper checks (ids, inputs, validators).
spec_like = st.fixed_dictionaries(
    {
        "spec_version": st.sampled_from([1, 2, "1"]),
        "name": st.text(max_size=5),
        "inputs": st.dictionaries(
            st.sampled_from(["a", "b", "bad id"]),
            st.fixed_dictionaries({"path": st.text(max_size=5)}),
            max_size=2,
        ),
    },
    optional={
        "validators": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.sampled_from(["v", "w"]),
                    "kind": st.sampled_from(["effect_table", "jsonschema", "x"]),
                    "input": st.sampled_from(["a", "b", "c"]),
                },
                optional={
                    "measure": st.sampled_from(["RR", "XX"]),
                    "schema": st.text(max_size=3),
                    "options": json_values,
                },
            ),
            max_size=3,
        ),
        "analyses": st.lists(
            st.fixed_dictionaries(
                {
                    "id": st.sampled_from(["v", "z"]),
                    "input": st.sampled_from(["a", "c"]),
                    "measure": st.sampled_from(["RR", "SMD", "QQ"]),
                },
                optional={
                    "method": st.sampled_from(["REML", "REMLL"]),
                    "level": st.floats(allow_nan=False),
                    "moderators": json_values,
                },
            ),
            max_size=3,
        ),
    },
)


def _check(value: object, tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(value))
    try:
        loaded = spec_mod.load(path)
    except SpecError as exc:
        assert exc.problems
        assert all(p.startswith("/") and ": " in p for p in exc.problems), exc.problems
        assert "\n" not in str(exc)
    else:
        assert loaded.data["spec_version"] == 1


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(json_values)
def test_any_json_value(tmp_path: Path, value: object) -> None:
    _check(value, tmp_path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec_like)
def test_spec_shaped_values(tmp_path: Path, value: object) -> None:
    _check(value, tmp_path)


def test_not_json_and_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_bytes(b"\xff\xfe{")
    try:
        spec_mod.load(path)
    except SpecError as exc:
        assert "not UTF-8" in str(exc) or "not valid JSON" in str(exc)
    else:
        raise AssertionError("expected SpecError")
