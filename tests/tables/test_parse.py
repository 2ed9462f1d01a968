"""parse_csv: line numbers, encodings, line ends, quoting, strict numbers, the delimiter hint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmo_runner import tables
from cosmo_runner.tables import NUMBER, CsvFormat, Table, TableError, describe, parse_csv

P = Path("data/t.csv")


def _parse(text: str | bytes, fmt: CsvFormat | None = None) -> Table:
    return parse_csv(text.encode() if isinstance(text, str) else text, P, fmt)


def test_lines_are_file_lines_across_blank_lines_and_quoted_multiline_cells() -> None:
    table = _parse('\n\nstudy,yi\n"A\nsecond",1\n\nB,2\n"C ""q""",3\n')
    assert table.header == ("study", "yi")
    assert table.lines.tolist() == [4, 7, 8]
    assert table.text("study").tolist() == ["A\nsecond", "B", 'C "q"']
    assert table.location(1, "yi").text() == "t.csv line 7 (study 'B'), column yi"
    assert table.location(1, "yi").as_dict() == {
        "file": "t.csv",
        "line": 7,
        "column": "yi",
        "study": "B",
    }


@pytest.mark.parametrize(
    "data",
    [
        b"study,yi\r\nA,1\r\nB,2\r\n",  # CRLF
        b"study,yi\rA,1\rB,2\r",  # old Mac line ends
        b"\xef\xbb\xbfstudy,yi\nA,1\nB,2",  # BOM, no final newline
        b"study , yi\n A ,1 \nB, 2\n",  # spaces around cells
    ],
)
def test_line_ends_bom_and_spaces(data: bytes) -> None:
    table = _parse(data)
    assert table.header == ("study", "yi")
    assert table.lines.tolist() == [2, 3]
    assert table.text("study").tolist() == ["A", "B"]
    assert table.numbers("yi").values.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "t.csv: empty file (no header row)"),
        (b"\n\r\n\n", "t.csv: empty file (no header row)"),
        (b"a,b,a\n1,2,3\n", "t.csv line 1: duplicate column name(s) in the header: 'a'"),
        (b"a,b\n1,2\n3\n", "t.csv line 3: 1 field, the header has 2"),
        (b"a,b\n1,2\n3,4,5\n", "t.csv line 3: 3 fields, the header has 2"),
        (b"a,b\n1,2\n\xe9,4\n", "t.csv line 3: not UTF-8 text (byte 0xe9 at offset 8)"),
        (b'a,b\n1,"x"y\n', "t.csv line 2: not valid CSV: ',' expected after '\"'"),
        (b'a,b\n1,2\n"3,4\n5,6\n', "t.csv line 3: not valid CSV: unexpected end of data"),
    ],
)
def test_odd_files_are_errors_naming_the_line(data: bytes, message: str) -> None:
    with pytest.raises(TableError) as info:
        _parse(data)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2
    assert info.value.location.file == "t.csv"


def test_latin1_error_counts_lines_after_a_bom() -> None:
    with pytest.raises(
        TableError, match=r"^t.csv line 2: not UTF-8 text \(byte 0xe9 at offset 5\)"
    ):
        _parse(b"\xef\xbb\xbfa\n\xe9\n")


ODD_NUMBERS = [
    "1_000",
    "0_0_2",
    "\u0663",  # Arabic-Indic three
    "\uff11",  # full-width one
    "\u00b2",  # superscript two
    "inf",
    "-Infinity",
    "nan",
    "NaN",
    "0x1A",
    "1,000",
    "1.2.3",
    "+-1",
    "e5",
    "1e",
    ".",
    "-",
    "1 000",
    "NA",
    "TRUE",
]


@pytest.mark.parametrize("cell", ODD_NUMBERS)
def test_odd_numbers_are_invalid(cell: str) -> None:
    table = Table.from_columns({"x": ["1", cell, "2.5"]})
    numbers = table.numbers("x")
    assert numbers.invalid.tolist() == [False, True, False]
    assert np.isnan(numbers.values[1])
    assert numbers.values[[0, 2]].tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("cell", "value"),
    [("12", 12.0), ("12.0", 12.0), ("-.5", -0.5), ("+3.", 3.0), ("1E3", 1e3), ("2.5e-3", 2.5e-3)],
)
def test_ascii_decimal_and_scientific_numbers_parse(cell: str, value: float) -> None:
    numbers = Table.from_columns({"x": [cell, "1"]}).numbers("x")
    assert numbers.values[0] == value and not numbers.invalid.any()


def test_empty_cells_are_missing_not_invalid() -> None:
    numbers = Table.from_columns({"x": ["1", "", " "]}).numbers("x")
    assert numbers.empty.tolist() == [False, True, True]
    assert not numbers.invalid.any()


def test_overflow_is_a_number_that_is_not_finite() -> None:
    numbers = Table.from_columns({"x": ["1e400", "-1e400", "1e-400"]}).numbers("x")
    assert not numbers.invalid.any()
    assert numbers.values.tolist() == [np.inf, -np.inf, 0.0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789.,eE+-_ x\u0663", max_size=6), min_size=1))
def test_a_column_parses_exactly_as_the_number_grammar_says(cells: list[str]) -> None:
    """The one-pass path and the per-cell path agree with NUMBER, cell by cell."""
    numbers = Table.from_columns({"x": cells}).numbers("x")
    for i, raw in enumerate(cells):
        cell = raw.strip()
        ok = NUMBER["."].fullmatch(cell) is not None
        assert numbers.empty[i] == (cell == "")
        assert numbers.invalid[i] == (cell != "" and not ok), cell
        if ok:
            assert numbers.values[i] == float(cell)


def test_decimal_comma_and_semicolon_delimiter() -> None:
    table = _parse("study;yi\nA;0,5\nB;-1,25e-1\nC;,5\nD;0.5\n", CsvFormat(";", ","))
    numbers = table.numbers("yi")
    assert numbers.values[:3].tolist() == [0.5, -0.125, 0.5]
    assert numbers.invalid.tolist() == [False, False, False, True], "'.' is not the decimal mark"


def test_a_semicolon_header_read_with_commas_gives_a_hint() -> None:
    table = _parse("study;yi;vi\nA;0.1;0.2\n")
    assert table.header == ("study;yi;vi",)
    hint = table.delimiter_hint()
    assert "the file looks delimited by ';'" in hint
    assert '"format": {"delimiter": ";"}' in hint
    assert _parse("study,yi\nA,1\n").delimiter_hint() == ""
    with pytest.raises(TableError) as info:  # decimal commas make the rows ragged
        _parse("study;yi;vi\nA;0,1;0,2\n")
    assert str(info.value).startswith("t.csv line 2: 3 fields, the header has 1; the header is")
    assert '"format": {"delimiter": ";"} (with "decimal": ","' in str(info.value)


def test_subset_keeps_file_lines_and_parsed_numbers() -> None:
    table = _parse("study,yi\nA,1\nB,x\nC,3\n")
    table.numbers("yi")
    kept = table.subset(np.array([True, False, True]))
    assert kept.lines.tolist() == [2, 4]
    assert kept.numbers("yi").values.tolist() == [1.0, 3.0]
    assert kept.location(1, "yi").text() == "t.csv line 4 (study 'C'), column yi"


def test_describe_is_the_one_place_format() -> None:
    assert describe("bcg.csv", 5, "Aronson 1948", "tpos") == (
        "bcg.csv line 5 (study 'Aronson 1948'), column tpos"
    )
    assert describe("bcg.csv", 5, None, "my col") == "bcg.csv line 5, column 'my col'"
    assert describe("bcg.csv") == "bcg.csv"
    long = describe("b.csv", 2, "x" * 500)
    assert len(long) < 120 and re.search(r"x\.\.\.'\)$", long)


def test_a_large_table_parses_into_typed_columns() -> None:
    rows = "".join(f"s{i},{i % 97}.5,0.{i % 89 + 1}\n" for i in range(300_000))
    table = _parse("study,yi,vi\n" + rows)
    assert len(table) == 300_000
    assert table.lines[-1] == 300_001
    assert table.text("study").dtype == np.dtypes.StringDType()
    assert table.numbers("vi").values.dtype == np.float64
    assert table.numbers("yi").values[-1] == 299_999 % 97 + 0.5


_CELL = st.text(alphabet='ab 1.,;\t\r\n"', max_size=4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_CELL, min_size=2, max_size=2), max_size=6), st.booleans())
def test_the_one_line_path_agrees_with_line_by_line_bookkeeping(
    rows: list[list[str]], crlf: bool
) -> None:
    """Files without quotes skip per-record line tracking; both paths give one table."""
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n" if crlf else "\n").writerows([["s", "x"], *rows])
    data = buffer.getvalue().encode()
    try:
        fast = parse_csv(data, P)
    except TableError as exc:
        with pytest.raises(TableError) as slow_error:
            parse_csv(data, P, _line_by_line=True)
        assert str(slow_error.value) == str(exc)
        return
    slow = parse_csv(data, P, _line_by_line=True)
    assert fast.header == slow.header
    assert fast.lines.tolist() == slow.lines.tolist()
    for name in fast.header:
        assert fast.text(name).tolist() == slow.text(name).tolist()


_PLAIN_CELL = st.text(alphabet="ab1.,;|\t \x0b\x1c\u00e9\u20ac", max_size=4)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.lists(_PLAIN_CELL, min_size=0, max_size=3), max_size=7),
    st.sampled_from([",", ";", "\t", "|"]),
    st.booleans(),
    st.booleans(),
)
def test_the_vectorised_path_agrees_with_the_csv_module(
    lines: list[list[str]], delimiter: str, bom: bool, final_newline: bool
) -> None:
    """Files without quotes or CRs skip the csv module: same header, lines, cells and errors
    (blank lines, spaces and other str.strip characters around cells, ragged rows, duplicate
    names, non-ASCII text, another delimiter in a one-column header)."""
    text = "\n".join(delimiter.join(cells) for cells in lines) + ("\n" if final_newline else "")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    fmt = CsvFormat(delimiter, ",") if delimiter == ";" else CsvFormat(delimiter)
    # the path itself is private; asserting that it applied keeps this test from comparing
    # the csv module with itself
    body = data[3:] if bom else data
    try:
        plain = tables._parse_plain(body, body.decode(), P, fmt)
    except TableError as exc:
        with pytest.raises(TableError) as slow_error:
            parse_csv(data, P, fmt, _csv_module=True)
        assert str(slow_error.value) == str(exc)
        assert slow_error.value.location == exc.location
        return
    assert plain is not None
    reference = parse_csv(data, P, fmt, _csv_module=True)
    assert plain.header == reference.header
    assert plain.lines.tolist() == reference.lines.tolist()
    for name in plain.header:
        assert plain.text(name).dtype == reference.text(name).dtype
        assert plain.text(name).tolist() == reference.text(name).tolist()
    assert parse_csv(data, P, fmt).lines.tolist() == reference.lines.tolist()


@pytest.mark.parametrize(
    "data",
    [
        b's,x\n"a",1\n',  # a quote
        b"s,x\r\na,1\r\n",  # CR
        b"s,x\na\x00,1\n",  # NUL
        "s,x\na\u00a0,1\n".encode(),  # a space str.strip knows outside ASCII
        b"s,x\n" + b"a" * 200_000 + b",1\n",  # longer than the csv module's field limit
        b"s,x\n" + b"a" * 20_000 + b",1\n" + b"b,2\n" * 50,  # one long cell among short ones
    ],
)
def test_files_the_vectorised_path_leaves_to_the_csv_module(data: bytes) -> None:
    # private path, asserted directly: each of these must reach the csv module (None here)
    assert tables._parse_plain(data, data.decode(), P, CsvFormat()) is None
    try:
        expected: Table | str = parse_csv(data, P, _csv_module=True)
    except TableError as exc:
        expected = str(exc)
    try:
        got: Table | str = parse_csv(data, P)
    except TableError as exc:
        got = str(exc)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert isinstance(got, Table)
        assert got.lines.tolist() == expected.lines.tolist()
        assert got.text("s").tolist() == expected.text("s").tolist()


def test_the_wide_space_class_is_every_non_ascii_space() -> None:
    spaces = "".join(c for c in map(chr, range(0x80, 0x110000)) if c.isspace())
    assert tables._WIDE_SPACE.findall(spaces) == list(spaces)
    assert (
        tables._WIDE_SPACE.search(
            "".join(map(chr, range(0x80, 0x3100))).translate({ord(c): None for c in spaces})
        )
        is None
    )


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**60), 2**60), st.integers(0, 25), st.integers(-3, 3))
def test_integral_reads_whole_numbers_as_written(whole: int, zeros: int, shift: int) -> None:
    """Table.integral: a whole number its double holds exactly, whatever its spelling
    (trailing zeros, exponents); a digit beyond the double's precision makes it not whole."""
    digits = str(abs(whole))
    sign = "-" if whole < 0 else ""
    cells = [f"{sign}{digits}", f"{sign}{digits}." + "0" * zeros]
    if shift > 0 and len(digits) > shift:
        cells.append(f"{sign}{digits[:-shift]}.{digits[-shift:]}e{shift}")
    cells.append(f"{sign}{digits}.{'0' * zeros}1")  # never whole
    table = Table.from_columns({"n": cells})
    exact = abs(whole) <= 2**53 or float(whole) == whole
    assert table.integral("n").tolist() == [exact] * (len(cells) - 1) + [False]
