"""readfile: every way a named file can be odd, and strict JSON (duplicates, NaN, depth)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmo_runner.errors import EXIT_USAGE, FileError, exit_code_for, shorten
from cosmo_runner.readfile import parse_json, read_regular


def _fifo(tmp: Path) -> Path:
    path = tmp / "fifo"
    os.mkfifo(path)
    return path


def _socket(tmp: Path) -> Path:
    path = tmp / "sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays
    return path


def _symlink_to_fifo(tmp: Path) -> Path:
    link = tmp / "link"
    link.symlink_to(_fifo(tmp))
    return link


def _loop(tmp: Path) -> Path:
    (tmp / "a").symlink_to(tmp / "b")
    (tmp / "b").symlink_to(tmp / "a")
    return tmp / "a"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "plain").write_text("x")
    return tmp / "plain" / "spec.json"


ODD_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "fifo": (_fifo, "not a regular file (a FIFO)"),
    "char-device": (lambda tmp: Path("/dev/zero"), "not a regular file (a character device)"),
    "directory": (lambda tmp: tmp, "not a regular file (a directory)"),
    "socket": (_socket, "not a regular file (a socket)"),
    "symlink-to-fifo": (_symlink_to_fifo, "not a regular file (a FIFO)"),
    "missing": (lambda tmp: tmp / "nope.json", "file not found"),
    "dangling-symlink": (
        lambda tmp: (tmp / "dangling").symlink_to(tmp / "gone") or tmp / "dangling",
        "file not found",
    ),
    "symlink-loop": (_loop, "cannot read: Too many levels of symbolic links"),
    "path-through-a-file": (_under_a_file, "cannot read: Not a directory"),
}


@pytest.mark.parametrize("name", sorted(ODD_FILES))
def test_odd_files_are_one_clear_exit_2_error(name: str, tmp_path: Path) -> None:
    make, reason = ODD_FILES[name]
    path = make(tmp_path)
    with pytest.raises(FileError) as caught:
        read_regular(path, limit=1024)
    assert caught.value.problems == [reason]
    assert str(caught.value) == f"{path}: {reason}"
    assert exit_code_for(caught.value) == EXIT_USAGE


def test_a_fifo_with_a_writer_waiting_is_refused_without_blocking(tmp_path: Path) -> None:
    """In a subprocess with a timeout: a blocking open would hang, not fail."""
    fifo = _fifo(tmp_path)
    code = (
        "import sys; from pathlib import Path\n"
        "from cosmo_runner.readfile import read_regular\n"
        "from cosmo_runner.errors import FileError\n"
        "try:\n    read_regular(Path(sys.argv[1]))\n"
        "except FileError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.strip() == f"{fifo}: not a regular file (a FIFO)", proc.stderr


def test_size_cap_is_exact(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular(path, limit=100) == b"x" * 100
    with pytest.raises(FileError) as caught:
        read_regular(path, limit=99)
    assert caught.value.problems == ["too large: 100 bytes (limit 99 bytes)"]
    with pytest.raises(FileError, match=r"too large: 3145728 bytes \(limit 2 MiB\)"):
        path.write_bytes(b"y" * (3 * 1024 * 1024))
        read_regular(path, limit=2 * 1024 * 1024)


def test_regular_files_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = bytes(range(256)) * 10_000  # several read chunks
    path.write_bytes(data)
    assert read_regular(path) == data
    link = tmp_path / "link"
    link.symlink_to(path)
    assert read_regular(link, limit=len(data)) == data
    (tmp_path / "empty").write_bytes(b"")
    assert read_regular(tmp_path / "empty", limit=0) == b""


def test_proc_files_with_size_zero_are_read() -> None:
    assert b"Name:" in read_regular(Path("/proc/self/status"), limit=1 << 20)


# ---------------------------------------------------------------- strict JSON


def _json_error(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    raise AssertionError(f"{text!r} parsed")


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ('{"a": 1, "a": 2}', ["/a: duplicate key 'a'"]),
        (
            '{"analyses": [{"method": "REML", "id": "x", "method": "DL"}]}',
            ["/analyses/0/method: duplicate key 'method'"],
        ),
        ('{"a/b": {"~": 1, "~": 1}}', ["/a~1b/~0: duplicate key '~'"]),
        ('{"x": NaN}', ["/x: NaN is not allowed (JSON numbers are finite)"]),
        (
            "[Infinity, -Infinity]",
            [
                "/0: Infinity is not allowed (JSON numbers are finite)",
                "/1: -Infinity is not allowed (JSON numbers are finite)",
            ],
        ),
        ('{"level": 1e400}', ["/level: 1e400 is not allowed (JSON numbers are finite)"]),
        ("NaN", ["/: NaN is not allowed (JSON numbers are finite)"]),
        (
            '{"b": NaN, "a": 1, "a": 1}',
            ["/a: duplicate key 'a'", "/b: NaN is not allowed (JSON numbers are finite)"],
        ),
        # the json module's own wording, which changed in 3.13 ("Illegal trailing comma ...")
        ('{"a": 1,}', ["not valid JSON: " + _json_error('{"a": 1,}')]),
        ("", ["not valid JSON: Expecting value (line 1, column 1)"]),
        ("[1] [2]", ["not valid JSON: Extra data (line 1, column 5)"]),
    ],
)
def test_strict_json_problems_name_their_pointer(text: str, problems: list[str]) -> None:
    with pytest.raises(FileError) as caught:
        parse_json(text.encode(), "spec.json")
    assert caught.value.problems == problems
    assert caught.value.path == "spec.json"


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
@pytest.mark.parametrize("opener", ["[", '{"k":'])
def test_too_deep_is_an_error_not_a_recursion_error(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = opener * depth + "1" + closer * depth
    with pytest.raises(FileError) as caught:
        parse_json(text.encode(), "deep.json", max_depth=64)
    (problem,) = caught.value.problems
    assert problem.endswith("nested deeper than 64 levels (the limit)")


def test_depth_at_the_limit_parses() -> None:
    assert parse_json(b"[" * 64 + b"]" * 64, "x", max_depth=64) is not None
    assert parse_json(b'{"a": {"b": []}}', "x", max_depth=3) == {"a": {"b": []}}
    with pytest.raises(FileError):
        parse_json(b'{"a": {"b": []}}', "x", max_depth=2)


def test_encoding_problems() -> None:
    assert parse_json('\ufeff{"a": "é"}'.encode(), "x") == {"a": "é"}
    with pytest.raises(FileError) as caught:
        parse_json(b'{"a": "\xff"}', "x")
    assert caught.value.problems == ["not UTF-8 text: invalid start byte at byte 7"]


def test_an_integer_beyond_the_digit_limit_is_a_clear_error() -> None:
    with pytest.raises(FileError) as caught:
        parse_json(b"1" * 5000, "x")
    (problem,) = caught.value.problems
    assert problem.startswith("not valid JSON: ") and len(problem) < 300


def test_a_huge_duplicate_key_is_shortened() -> None:
    key = "k" * 100_000
    with pytest.raises(FileError) as caught:
        parse_json(json.dumps({key: 1}).replace("}", f', "{key}": 2}}').encode(), "x")
    (problem,) = caught.value.problems
    assert len(problem) < 1_000 and "(100002 characters)" in problem


def test_shorten() -> None:
    assert shorten("abc") == "abc"
    long = "x" * 10_000
    assert shorten(long) == "x" * 160 + "... (10000 characters)"
    assert len(shorten(long)) <= 200


json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_documents)
def test_strict_parsing_agrees_with_json_on_strict_documents(document: object) -> None:
    raw = json.dumps(document).encode()
    assert parse_json(raw, "x") == json.loads(raw)
