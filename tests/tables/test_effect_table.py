"""effect_table on parsed tables: capped findings with counts, places, counts, moderators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cosmo_runner.tables import parse_csv
from cosmo_runner.validators import FINDINGS_CAP, Finding, cap_findings
from cosmo_runner.validators.effect_table import check_table


def _table(text: str):  # type: ignore[no-untyped-def]
    return parse_csv(text.encode(), Path("g.csv"))


def test_an_all_invalid_large_table_keeps_100_findings_per_kind_and_counts_the_rest() -> None:
    n = 200_000
    rows = "".join(f"s{i},x{i},-1\n" for i in range(n))
    outcome = check_table(_table("study,yi,vi\n" + rows), "GEN", {}, "error")
    codes = [f.code for f in outcome.findings]
    assert codes.count("not-a-number") == FINDINGS_CAP
    assert codes.count("not-positive") == FINDINGS_CAP
    assert outcome.omitted == {
        ("error", "not-a-number"): n - FINDINGS_CAP,
        ("error", "not-positive"): n - FINDINGS_CAP,
    }
    assert outcome.errors == 2 * n
    first = outcome.findings[0]
    assert first.message == "g.csv line 2 (study 's0'), column yi: 'x0' is not a number"
    assert first.location == {"file": "g.csv", "line": 2, "column": "yi", "study": "s0"}
    lines = [f.location["line"] for f in outcome.findings if f.location]
    assert lines == sorted(lines), "findings are in file order"
    assert outcome.omitted_records() == [
        {"level": "error", "code": "not-a-number", "count": n - FINDINGS_CAP},
        {"level": "error", "code": "not-positive", "count": n - FINDINGS_CAP},
    ]


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("12.0", None),
        ("1e1", None),
        ("12.5", "12.5 must be an integer count (a whole number within +-2^53)"),
        ("1e300", "1e300 must be an integer count (a whole number within +-2^53)"),
        ("9007199254740992", None),  # 2^53
        ("9007199254740994", "must be an integer count"),
        # whole doubles of numbers that are not whole, or not within 2^53, as written
        ("9007199254740993", "9007199254740993 must be an integer count"),  # 2^53 + 1
        ("1.0000000000000001", "1.0000000000000001 must be an integer count"),
        ("4.9999999999999999e0", "4.9999999999999999e0 must be an integer count"),
        ("9007199254740992.0000001", "must be an integer count"),
        ("1.00000000000000000000e1", None),  # 10, however many zeros
        ("12.000000000000000000", None),
        ("-3", "-3 must be a non-negative count"),
        ("1e400", "1e400 is not finite"),
        ("٣", "'٣' is not a number"),
    ],
)
def test_counts_are_whole_numbers_within_2_to_the_53(cell: str, message: str | None) -> None:
    text = f"study,ai,bi,ci,di\nA,{cell},10,3,10\nB,2,10,3,10\n"
    outcome = check_table(_table(text), "RR", {}, "error")
    errors = [f.message for f in outcome.findings if f.level == "error"]
    if message is None:
        assert errors == []
    else:
        (error,) = errors
        assert error.startswith("g.csv line 2 (study 'A'), column ai")
        assert message in error


def test_moderators_and_subgroups_are_checked() -> None:
    text = "study,yi,vi,lat,region\nA,1,1,10,n\nB,2,1,x,\nC,3,1,,s\n"
    outcome = check_table(
        _table(text), "GEN", {}, "error", moderators=["lat"], subgroups=["region"]
    )
    hint = (
        ' (a moderator column with a number in it is numeric; declare "moderator_kinds": '
        '{"lat": "categorical"} to read its cells as levels)'
    )
    assert [f.message for f in outcome.findings] == [
        "g.csv line 3 (study 'B'), column lat: 'x' is not a number" + hint,
        "g.csv line 3 (study 'B'), column region: empty subgroup label",
        "g.csv line 4 (study 'C'), column lat: empty cell",
    ]
    missing = check_table(_table(text), "GEN", {}, "error", moderators=["latitude"])
    assert missing.findings[0].message == (
        "g.csv: missing column(s) 'latitude' (moderator) for measure GEN"
    )


def test_dropped_rows_are_named_by_file_line_once_each() -> None:
    text = "study,yi,vi\nA,1,1\n\nB,,\nC,3,1\nD,4,\n"
    outcome = check_table(_table(text), "GEN", {}, "drop")
    assert outcome.drop_rows == {1, 3}
    assert [f.message for f in outcome.findings] == [
        "g.csv line 4 (study 'B'): empty cell in column 'yi'; row dropped",
        "g.csv line 6 (study 'D'): empty cell in column 'vi'; row dropped",
    ]
    assert all(f.level == "warning" for f in outcome.findings)


def test_duplicate_labels_name_the_first_line() -> None:
    outcome = check_table(_table("study,yi,vi\nA,1,1\nB,1,1\nA,2,1\n"), "GEN", {}, "error")
    (finding,) = outcome.findings
    assert finding.message == (
        "g.csv line 4 (study 'A'), column study: study label 'A' repeats line 2"
    )


def test_plugin_findings_are_capped_per_level_and_code() -> None:
    findings = [Finding("error", f"e{i}", None, "odd") for i in range(250)]
    findings += [Finding("warning", f"w{i}") for i in range(3)]
    outcome = cap_findings(iter(findings), "validator 'p'")
    assert len(outcome.findings) == FINDINGS_CAP + 3
    assert outcome.omitted == {("error", "odd"): 150}
    assert outcome.errors == 250


def test_all_invalid_moderator_column_of_a_large_table() -> None:
    n = 300_000
    table = _table("study,yi,vi,m\n" + "".join(f"s{i},0.1,0.2,m{i}\n" for i in range(n)))
    # declared numeric: every cell is an error, the first 100 kept
    outcome = check_table(table, "GEN", {}, "error", moderators=["m"], kinds={"m": "numeric"})
    assert outcome.errors == n
    assert len(outcome.findings) == FINDINGS_CAP
    assert np.array_equal(
        [f.location["line"] for f in outcome.findings if f.location], np.arange(2, 102)
    )
    assert outcome.findings[0].message.endswith(
        "column m: 'm0' is not a number (the moderator is declared \"numeric\")"
    )
    # by the rule it is categorical, with a level per study: one finding, no n x n matrix
    outcome = check_table(table, "GEN", {}, "error", moderators=["m"])
    (finding,) = outcome.findings
    assert finding.code == "too-many-terms"
    assert finding.message.startswith(
        f"g.csv, column m: the categorical moderator has {n} levels among {n} studies"
    )


@pytest.mark.parametrize("size", ["9007199254740993", "20.000000000000001"])
def test_sample_sizes_and_the_analysis_read_counts_as_written(size: str) -> None:
    """ni of a proportion as well as 2x2 counts; and an analysis without a validator stops
    at the same cell (exit 5, naming it) instead of using the rounded count."""
    from cosmo_runner.errors import AnalysisError
    from cosmo_runner.meta import analyse

    text = f"study,xi,ni\nA,3,{size}\nB,2,10\nC,4,12\n"
    (error,) = [f for f in check_table(_table(text), "PLO", {}, "error").findings]
    assert error.message == (
        f"g.csv line 2 (study 'A'), column ni: {size} must be an integer count (a whole "
        "number within +-2^53)"
    )
    with pytest.raises(AnalysisError) as info:
        analyse({"id": "p", "measure": "PLO"}, _table(text))
    assert info.value.message == (
        f"analysis 'p': g.csv line 2 (study 'A'), column ni (ni): '{size}' must be an integer "
        "count (a whole number within +-2^53)"
    )
