"""Properties of the pure diff: a view equals itself, and A vs B mirrors B vs A."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cosmo_runner.env.diff import EnvView, diff

names = st.text("abcdefgh-", min_size=1, max_size=6)
versions = st.sampled_from(["1.0", "1.1", "2.0.post1", "3.11.7"])
views = st.builds(
    lambda packages, env_vars, python: EnvView(
        "x",
        "snapshot",
        "0" * 16,
        {"packages": packages, "env_vars": env_vars, "python": {"version": python}},
    ),
    st.dictionaries(names, versions, max_size=6),
    st.dictionaries(st.sampled_from(["OMP_NUM_THREADS", "PYTHONHASHSEED"]), versions),
    versions,
)


@given(views)
def test_a_view_is_identical_to_itself(view: EnvView) -> None:
    assert diff(view, view).identical


@given(views, views)
def test_a_vs_b_mirrors_b_vs_a(a: EnvView, b: EnvView) -> None:
    forward = {(d.section, d.key): (d.a, d.b) for d in diff(a, b).differences}
    backward = {(d.section, d.key): (d.b, d.a) for d in diff(b, a).differences}
    assert forward == backward
    assert diff(a, b).identical == (a.sections == b.sections)
