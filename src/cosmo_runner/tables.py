"""CSV tables: parsed once from an input's bytes into typed columns, and places named one way.

The format (README, "CSV tables"): UTF-8 text (a byte-order mark is skipped; any other
encoding is an error naming the line), ``\\n``, ``\\r\\n`` or ``\\r`` line ends, the csv
module's quoting (a quoted cell may span lines), a header row, blank lines ignored, spaces
around a cell ignored. ``format.delimiter`` (default ``,``) and ``format.decimal``
(default ``.``; ``;`` with ``,`` for European exports) come from the spec's input entry.

Numbers are strict (:data:`NUMBER`): ASCII decimal or scientific notation only; ``1_000``,
non-ASCII digits, ``inf``, ``nan``, hexadecimal or thousands separators are invalid cells.
An empty cell is *missing* (the validators' ``missing`` setting decides what happens).

A place in a table is always written as :func:`describe` does::

    bcg.csv line 5 (study 'Aronson 1948'), column tpos

Lines are 1-based lines of the file (the header is line 1 when the file starts with it; a
quoted cell spanning lines makes its row start on its first line), the study label is
given when the table has one. :meth:`Location.as_dict` is the same place for a finding's
``location``: ``{"file", "line", "column", "study"}``.
"""

from __future__ import annotations

import csv
import gc
import io
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cosmo_runner.errors import InputError

__all__ = [
    "NUMBER",
    "CsvFormat",
    "Location",
    "Numbers",
    "Table",
    "TableError",
    "describe",
    "parse_csv",
]

StrArray = NDArray[Any]  # dtype StringDType
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

#: A number cell, for each decimal mark: ASCII digits, optional sign, decimal and exponent.
NUMBER = {
    ".": re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"),
    ",": re.compile(r"[+-]?(?:[0-9]+(?:,[0-9]*)?|,[0-9]+)(?:[eE][+-]?[0-9]+)?"),
}

_CHUNK_ROWS = 1 << 16  # rows turned into column arrays at a time (bounds the peak memory)
_STR = np.dtypes.StringDType()
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_LABEL_MAX = 80  # characters of a study label shown in a message


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV input is written: field delimiter and decimal mark."""

    delimiter: str = ","
    decimal: str = "."

    @classmethod
    def from_spec(cls, entry: Mapping[str, Any]) -> CsvFormat:
        """From an input's ``format`` object (already checked against the spec schema)."""
        return cls(str(entry.get("delimiter", ",")), str(entry.get("decimal", ".")))


def _column_text(column: str) -> str:
    return column if _PLAIN_NAME.fullmatch(column) else repr(column)


def _study_text(study: str) -> str:
    if len(study) > _LABEL_MAX:
        study = study[: _LABEL_MAX - 3] + "..."
    return repr(study)


def describe(
    file: str, line: int | None = None, study: str | None = None, column: str | None = None
) -> str:
    """The one way to name a place: ``bcg.csv line 5 (study 'Aronson 1948'), column tpos``."""
    text = file
    if line is not None:
        text += f" line {line}"
    if study:
        text += f" (study {_study_text(study)})"
    if column is not None:
        text += f", column {_column_text(column)}"
    return text


@dataclass(frozen=True)
class Location:
    """A place in a table (any part may be unknown)."""

    file: str
    line: int | None = None
    column: str | None = None
    study: str | None = None

    def text(self) -> str:
        return describe(self.file, self.line, self.study, self.column)

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "study": self.study}


class TableError(InputError):
    """A CSV input cannot be read as a table (encoding, quoting, ragged rows, header...).

    ``location`` names the file and, when known, the line and column.
    """

    def __init__(self, location: Location, problem: str) -> None:
        self.location = location
        self.problem = problem
        super().__init__(f"{location.text()}: {problem}")


@dataclass(frozen=True)
class Numbers:
    """A column read as numbers: ``values`` (NaN where ``empty`` or ``invalid``)."""

    values: FloatArray
    empty: BoolArray
    invalid: BoolArray


#: The characters of :data:`NUMBER`. Within them numpy's float parsing accepts exactly the
#: strings NUMBER matches (tests/tables check this), which makes the common case one pass.
_NUMBER_CHARS = {".": b"0123456789.eE+-", ",": b"0123456789,eE+-"}
_ALLOWED = {
    mark: np.isin(np.arange(256), np.frombuffer(chars + b"\0", dtype=np.uint8))
    for mark, chars in _NUMBER_CHARS.items()
}  # byte -> allowed in a number cell (NUL pads the fixed-width cells)


def _fast_numbers(text: StrArray, empty: BoolArray, decimal: str) -> FloatArray | None:
    """All cells numbers or empty: their values in one vectorised pass; else None."""
    if text.size == 0:
        return np.empty(0)
    width = max(1, int(np.strings.str_len(text).max()))
    try:
        ascii_cells = text.astype(f"S{width}")  # fixed-width bytes; non-ASCII cannot encode
    except UnicodeEncodeError:
        return None
    if ascii_cells.size and not _ALLOWED[decimal][ascii_cells.view(np.uint8)].all():
        return None
    convert = np.where(empty, "0", text) if bool(empty.any()) else text
    if decimal != ".":
        convert = np.strings.replace(convert, decimal, ".")
    try:
        with np.errstate(all="ignore"):  # 1e400 -> inf (reported as not finite), 1e-400 -> 0
            values: FloatArray = convert.astype(np.float64)
    except ValueError:  # e.g. '1.2.3' or '+-1': find the bad cells one by one
        return None
    values[empty] = np.nan
    return values


def _parse_numbers(text: StrArray, decimal: str) -> Numbers:
    empty = np.asarray(text == "", dtype=bool)
    n = int(text.shape[0])
    fast = _fast_numbers(text, empty, decimal)
    if fast is not None:
        return Numbers(fast, empty, np.zeros(n, dtype=bool))
    match = NUMBER[decimal].fullmatch
    invalid = np.fromiter(
        (cell != "" and match(cell) is None for cell in text.tolist()), dtype=bool, count=n
    )
    convert = text if decimal == "." else np.strings.replace(text, ",", ".")
    good = ~(empty | invalid)
    with np.errstate(all="ignore"):  # 1e400 -> inf (reported as not finite), 1e-400 -> 0
        if bool(good.all()):
            values = convert.astype(np.float64)
        else:
            values = np.full(n, np.nan)
            values[good] = convert[good].astype(np.float64)
    return Numbers(values, empty, invalid)


class Table:
    """A parsed CSV table: header, the file line of each data row, typed columns.

    Column text is kept as numpy string arrays (no lists of strings); :meth:`numbers` parses
    a column into floats once and caches it. Row indices are 0-based data rows; ``lines``
    maps them to 1-based file lines.
    """

    def __init__(
        self,
        path: Path,
        header: Sequence[str],
        lines: IntArray,
        text: Mapping[str, StrArray],
        fmt: CsvFormat | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.path = path
        self.name = name or path.name
        self.header = tuple(header)
        self.lines = lines
        self.format = fmt or CsvFormat()
        self._text = dict(text)
        self._numbers: dict[str, Numbers] = {}

    @classmethod
    def from_columns(cls, columns: Mapping[str, Sequence[Any]], name: str = "table") -> Table:
        """A table from in-memory columns (library use): lines numbered as if the header
        were line 1 and each row one line."""
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise InputError(f"{name}: columns of different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        text = {
            key: np.strings.strip(np.array([str(v) for v in values], dtype=_STR))
            for key, values in columns.items()
        }
        return cls(Path(name), list(columns), np.arange(2, n + 2, dtype=np.int64), text, name=name)

    def __len__(self) -> int:
        return int(self.lines.shape[0])

    def __contains__(self, column: object) -> bool:
        return column in self._text

    def text(self, column: str) -> StrArray:
        """The cells of ``column`` as a numpy string array (surrounding spaces removed)."""
        return self._text[column]

    def numbers(self, column: str) -> Numbers:
        """``column`` as strict numbers (parsed once per table)."""
        if column not in self._numbers:
            self._numbers[column] = _parse_numbers(self._text[column], self.format.decimal)
        return self._numbers[column]

    def integral(self, column: str) -> BoolArray:
        """Cells written as a whole number that their double holds exactly (``12``, ``12.0``,
        ``1.2e1``). A double is whole also for ``9007199254740993`` (2^53 + 1, read as 2^53)
        or ``1.0000000000000001``, so a cell of more than 15 characters whose double is whole
        is compared exactly, as written (a decimal of at most 15 significant digits with a
        whole double is that whole number)."""
        values = self.numbers(column).values
        out: BoolArray = np.floor(values) == values  # NaN (empty, invalid) is not whole
        text = self._text[column]
        for row in np.flatnonzero(out & (np.strings.str_len(text) > 15)).tolist():
            cell = str(text[row]).replace(self.format.decimal, ".")
            out[row] = Fraction(cell) == Fraction(float(values[row]))
        return out

    def location(
        self, row: int | None, column: str | None = None, study_column: str | None = "study"
    ) -> Location:
        """Data row ``row`` (0-based; None: the whole table), with its study label when the
        table has a ``study_column``."""
        if row is None:
            return Location(self.name, None, column, None)
        study = None
        if study_column is not None and study_column in self._text:
            study = str(self._text[study_column][row]) or None
        return Location(self.name, int(self.lines[row]), column, study)

    def subset(self, keep: BoolArray) -> Table:
        """The rows where ``keep`` is true; file lines (and parsed numbers) stay with them."""
        table = Table(
            self.path,
            self.header,
            self.lines[keep],
            {key: values[keep] for key, values in self._text.items()},
            self.format,
            name=self.name,
        )
        table._numbers = {
            key: Numbers(num.values[keep], num.empty[keep], num.invalid[keep])
            for key, num in self._numbers.items()
        }
        return table

    def delimiter_hint(self) -> str:
        """A hint when the header looks written with another delimiter ("" otherwise)."""
        return _delimiter_hint(self.header, self.format)


def _delimiter_hint(header: Sequence[str], fmt: CsvFormat) -> str:
    """A hint when a one-column header looks written with another delimiter."""
    if len(header) != 1:
        return ""
    for other, name in ((";", "';'"), ("\t", "'\\t' (tab)"), ("|", "'|'")):
        if other != fmt.delimiter and other in header[0]:
            other_text = "\\t" if other == "\t" else other
            decimal = ' (with "decimal": "," for decimal commas)' if other == ";" else ""
            return (
                f"; the header is one column {_study_text(header[0])}: the file looks "
                f'delimited by {name}, set the input\'s "format": {{"delimiter": "{other_text}"}}'
                f"{decimal}"
            )
    return ""


def _decode(data: bytes, location: Location) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        line = data[:start].count(b"\n") + 1
        byte = data[start : start + 1].hex()
        raise TableError(
            Location(location.file, line),
            f"not UTF-8 text (byte 0x{byte} at offset {start}); save the file as UTF-8",
        ) from exc


@contextmanager
def _no_gc() -> Iterator[None]:
    """Millions of short-lived row lists make the cyclic GC dominate parsing; pause it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _columns(chunk: list[list[str]], width: int, strip: bool) -> list[StrArray]:
    if not chunk:
        return [np.array([], dtype=_STR) for _ in range(width)]
    columns = [np.array(col, dtype=_STR) for col in zip(*chunk, strict=True)]
    return [np.strings.strip(col) for col in columns] if strip else columns


def _read_chunk(
    reader: Any, size: int, previous_end: int, name: str, *, one_line_records: bool
) -> tuple[list[list[str]], NDArray[np.int64]]:
    """Up to ``size`` records and the file line each starts on.

    ``one_line_records`` (no quote character in the file): every line is one record (a
    blank line an empty one), so the lines are consecutive and need no bookkeeping.
    """
    records: list[list[str]] = []
    ends: list[int] = []
    add, mark = records.append, ends.append
    try:
        if one_line_records:
            records = list(itertools.islice(reader, size))
            return records, np.arange(1, len(records) + 1, dtype=np.int64) + previous_end
        for record in itertools.islice(reader, size):
            add(record)
            mark(reader.line_num)
    except csv.Error as exc:  # the record that failed starts after the last one read
        start = (ends[-1] if ends else previous_end) + 1
        raise TableError(Location(name, start), f"not valid CSV: {exc}") from exc
    starts = np.empty(len(ends), dtype=np.int64)
    if ends:
        starts[0] = previous_end + 1
        starts[1:] = np.asarray(ends[:-1], dtype=np.int64) + 1
    return records, starts


#: The ASCII bytes str.strip() removes, other than line ends (no cell holds one on this path)
_PLAIN_SPACE = np.isin(np.arange(256), [9, 11, 12, 28, 29, 30, 31, 32])
#: Every non-ASCII character str.isspace() knows (tests/tables checks the list): a cell edge
#: holding one is stripped by the csv path only, so a file with one takes that path
_WIDE_SPACE = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_CELL_BYTES = 8  # fixed-width cells may take this many times the column's bytes, else csv path


def _parse_plain(body: bytes, text: str, path: Path, fmt: CsvFormat) -> Table | None:
    """The common file -- no quote, CR or NUL character -- in a few vectorised passes over its
    bytes (no Python object per row or cell): the same table, and the same errors, as the
    csv module's path below (tests/tables compares the two on generated files).

    ``body`` is the file's bytes without a byte-order mark, ``text`` the same decoded. None
    where this path does not apply (then the csv path runs): a quote, CR or NUL anywhere, a
    non-ASCII space character, a line the csv module may find too long, very uneven cells.
    """
    if b'"' in body or b"\r" in body or b"\0" in body:
        return None
    if not body.isascii() and _WIDE_SPACE.search(text):
        return None
    arr = np.frombuffer(body, dtype=np.uint8)
    n = int(arr.size)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [n]))
    if starts[-1] == n:  # the file ends with a line end (or is empty): no line after it
        starts, ends = starts[:-1], ends[:-1]
    if starts.size and int((ends - starts).max()) >= csv.field_size_limit():
        return None  # the csv module's own error may apply
    marks = np.flatnonzero(arr == ord(fmt.delimiter))
    line_of = np.searchsorted(newlines, marks)  # the 0-based line of each delimiter
    fields = np.bincount(line_of, minlength=starts.size)[: starts.size] + 1
    fields[starts == ends] = 0  # an empty line is no record
    records = np.flatnonzero(fields)
    if records.size == 0:
        raise TableError(Location(path.name), "empty file (no header row)")
    first = int(records[0])
    header = [name.strip() for name in _fields_of(body, starts[first], ends[first], fmt)]
    width = len(header)
    _check_header(header, Location(path.name, first + 1))
    rows = records[1:]
    ragged = rows[fields[rows] != width]
    if ragged.size:
        line = int(ragged[0])
        raise _ragged(path.name, line + 1, int(fields[line]), header, fmt)
    is_row = np.zeros(starts.size, dtype=bool)
    is_row[rows] = True
    inner = marks[is_row[line_of]].reshape(rows.size, width - 1)
    lo = np.concatenate((starts[rows, None], inner + 1), axis=1)
    hi = np.concatenate((inner, ends[rows, None]), axis=1)
    last = max(n - 1, 0)
    while True:  # spaces around cells (str.strip's ASCII ones)
        move = (lo < hi) & _PLAIN_SPACE[arr[np.minimum(lo, last)]]
        if not move.any():
            break
        lo += move
    while True:
        move = (lo < hi) & _PLAIN_SPACE[arr[np.maximum(hi - 1, 0)]]
        if not move.any():
            break
        hi -= move
    size = hi - lo
    if size.size and int(size.max(initial=0)) * rows.size > _CELL_BYTES * (
        int(size.sum()) + rows.size * width
    ):
        return None  # a few long cells: fixed-width columns would be mostly padding
    ascii_text = body.isascii()
    columns = {name: _cells(arr, lo[:, j], size[:, j], ascii_text) for j, name in enumerate(header)}
    return Table(path, header, rows.astype(np.int64) + 1, columns, fmt)


def _fields_of(body: bytes, start: Any, end: Any, fmt: CsvFormat) -> list[str]:
    """The fields of one line of a plain file (no quotes): the csv module's reading."""
    return body[int(start) : int(end)].decode("utf-8").split(fmt.delimiter)


def _cells(arr: NDArray[np.uint8], lo: IntArray, size: IntArray, ascii_text: bool) -> StrArray:
    """One column's cells (byte offsets ``lo``, lengths ``size`` in ``arr``) as a string
    array, gathered into fixed-width bytes a block of rows at a time."""
    width = max(1, int(size.max(initial=0)))
    cells = np.empty(lo.size, dtype=f"S{width}")
    offsets = np.arange(width)
    last = max(int(arr.size) - 1, 0)
    block = max(1, (_CHUNK_ROWS * 16) // width)
    for start in range(0, lo.size, block):
        index = lo[start : start + block, None] + offsets
        chars = arr[np.minimum(index, last)]
        chars[offsets >= size[start : start + block, None]] = 0  # NUL pads a shorter cell
        cells[start : start + block] = chars.view(f"S{width}")[:, 0]
    if ascii_text:
        return cells.astype(_STR)
    return np.asarray(np.strings.decode(cells, "utf-8"), dtype=_STR)


def _ragged(name: str, line: int, fields: int, header: Sequence[str], fmt: CsvFormat) -> TableError:
    return TableError(
        Location(name, line),
        f"{fields} field{'s' if fields != 1 else ''}, the header has {len(header)}"
        + _delimiter_hint(header, fmt),
    )


def _needs_strip(text: str, delimiter: str) -> bool:
    """Whether some cell may start or end with whitespace (then every cell is stripped)."""
    if '"' in text:  # a quoted cell may hold spaces inside its quotes
        return True
    d = re.escape(delimiter)
    edge = rf"[^\S\r\n](?:{d}|\r|\n|$)|(?:^|{d}|\r|\n)[^\S\r\n]"
    return re.search(edge, text) is not None


def parse_csv(
    data: bytes,
    path: Path,
    fmt: CsvFormat | None = None,
    *,
    _csv_module: bool = False,
    _line_by_line: bool = False,
) -> Table:
    """Parse a CSV input's bytes into a :class:`Table`; any problem is a :class:`TableError`
    naming the file and line (empty file, encoding, quoting, duplicate header names, a row
    with more or fewer fields than the header). A file without quotes or CRs takes the
    vectorised path (:func:`_parse_plain`), the others the csv module. ``_csv_module``
    forces the csv module, ``_line_by_line`` also its general line bookkeeping (tests
    compare the three paths)."""
    fmt = fmt or CsvFormat()
    text = _decode(data, Location(path.name))
    if not (_csv_module or _line_by_line):
        body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
        table = _parse_plain(body, text, path, fmt)
        if table is not None:
            return table
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=fmt.delimiter, strict=True)
    one_line = '"' not in text and not _line_by_line
    strip = _line_by_line or _needs_strip(text, fmt.delimiter)
    header: list[str] | None = None
    width = 0
    chunks: list[list[StrArray]] = []
    line_parts: list[NDArray[np.int64]] = []
    end = 0
    with _no_gc():
        while True:
            records, starts = _read_chunk(
                reader, _CHUNK_ROWS, end, path.name, one_line_records=one_line
            )
            if not records:
                break
            if one_line and reader.line_num != end + len(records):
                return parse_csv(data, path, fmt, _line_by_line=True)  # never expected
            end = reader.line_num
            sizes = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
            if header is None:
                first = int(np.flatnonzero(sizes)[0]) if sizes.any() else None
                if first is None:
                    continue  # blank lines before the header
                header = [name.strip() for name in records[first]]
                width = len(header)
                _check_header(header, Location(path.name, int(starts[first])))
                sizes[: first + 1] = 0  # the header and the blank lines before it
            ragged = np.flatnonzero((sizes != width) & (sizes != 0))
            if ragged.size:
                row = int(ragged[0])
                raise _ragged(path.name, int(starts[row]), int(sizes[row]), header, fmt)
            rows = sizes != 0  # blank lines carry no data
            if not rows.all():
                records = [r for r, keep in zip(records, rows.tolist(), strict=True) if keep]
                starts = starts[rows]
            chunks.append(_columns(records, width, strip))
            line_parts.append(starts)
    if header is None:
        raise TableError(Location(path.name), "empty file (no header row)")
    columns = {
        name: np.concatenate([c[j] for c in chunks]) if chunks else np.array([], dtype=_STR)
        for j, name in enumerate(header)
    }
    lines = np.concatenate(line_parts) if line_parts else np.array([], dtype=np.int64)
    return Table(path, header, lines, columns, fmt)


def _check_header(header: list[str], where: Location) -> None:
    seen: set[str] = set()
    repeated: list[str] = []
    for name in header:
        if name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    if repeated:
        raise TableError(
            where,
            "duplicate column name(s) in the header: " + ", ".join(repr(n) for n in repeated),
        )
