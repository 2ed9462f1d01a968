"""Reading a file the user named, safely: regular files only, size-capped, strict JSON.

Every file cosmo-runner reads on a user's behalf (specs, inputs, schema files, run logs)
goes through :func:`read_regular`: it opens with ``O_NONBLOCK`` and checks ``fstat`` before
reading, so a FIFO, a device (``/dev/zero``) or a directory is refused at once instead of
blocking or reading without end, and it never reads more than ``limit`` bytes.

:func:`parse_json` is JSON as a spec needs it: duplicate keys, ``NaN``/``Infinity`` (and
numbers that overflow to infinity) and nesting deeper than ``max_depth`` are problems
named by their JSON pointer, never a silent last-key-wins, a NaN or a RecursionError.

Both raise :class:`~cosmo_runner.errors.FileError` (exit 2) carrying the path and every
problem; callers re-raise it as their own subclass (a :class:`~cosmo_runner.errors.SpecError`
for the spec) when they want to.

Inside :func:`shipped_files` (a batch worker without a shared file system), files are not
read from the disk but from the bytes the client shipped, under the client's absolute paths,
so the run reads and records exactly what the client saw; a path the client could not read
fails with the client's reason, and a path that was not shipped fails as unreadable.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from cosmo_runner.errors import FileError, on_one_line, shorten

MiB = 1024 * 1024

_CHUNK = 1024 * 1024
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def describe_limit(limit: int) -> str:
    """``16 MiB`` for a whole number of MiB, else the byte count."""
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit} bytes"


#: client path -> its bytes, or the client's one-line reason it could not be read
Shipped = Mapping[str, bytes | str]
_SHIPPED: ContextVar[Shipped | None] = ContextVar("cosmo_runner_shipped", default=None)


@contextmanager
def shipped_files(files: Shipped) -> Iterator[None]:
    """Within the block (this thread or task only), :func:`read_regular` reads ``files``."""
    token = _SHIPPED.set(files)
    try:
        yield
    finally:
        _SHIPPED.reset(token)


def _read_shipped(files: Shipped, path: Path, limit: int | None) -> bytes:
    found = files.get(str(path))
    if found is None:
        found = files.get(os.path.abspath(path))
    if found is None:
        raise FileError(
            str(path), ["cannot read: not shipped to this worker (use --shared-fs to read here)"]
        )
    if isinstance(found, str):
        raise FileError(str(path), [found])
    if limit is not None and len(found) > limit:
        raise FileError(str(path), [_too_large(len(found), limit)])
    return found


def read_regular(path: Path, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` bytes (None: no cap).

    Raises :class:`FileError` with one reason: ``file not found``, ``not a regular file
    (a FIFO)``, ``cannot read: Permission denied``, ``too large: ... (limit 16 MiB)``.
    Never blocks on a FIFO or device: the open is non-blocking and the type is checked
    on the open descriptor (no race between a check and the read).
    """
    shipped = _SHIPPED.get()
    if shipped is not None:
        return _read_shipped(shipped, path, limit)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise FileError(str(path), ["file not found"]) from exc
    except OSError as exc:  # a socket cannot be opened at all (ENXIO): say what it is
        raise FileError(str(path), [_not_regular(path) or f"cannot read: {exc.strerror}"]) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileError(str(path), [_kind(info.st_mode)])
        if limit is not None and info.st_size > limit:
            raise FileError(str(path), [_too_large(info.st_size, limit)])
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        total = 0
        while True:
            want = _CHUNK if limit is None else min(_CHUNK, limit + 1 - total)
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if limit is not None and total > limit:  # it grew while we read it
                raise FileError(str(path), [_too_large(total, limit, at_least=True)])
    except OSError as exc:
        raise FileError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    finally:
        os.close(fd)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"not a regular file ({kind})"


def _not_regular(path: Path) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else _kind(mode)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> str:
    more = "more than " if at_least else ""
    return f"too large: {more}{size} bytes (limit {describe_limit(limit)})"


class _NonFinite:
    """Placeholder for a NaN/Infinity literal or an overflowing number, found by the walk."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Keys(dict[str, Any]):
    """A JSON object that remembers the keys it saw more than once."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.duplicates: list[str] = []
        if len(self) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen and key not in self.duplicates:
                    self.duplicates.append(key)
                seen.add(key)


def _parse_float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def parse_json(raw: bytes, path: str, *, max_depth: int = 64) -> Any:
    """Strict JSON from ``raw`` (UTF-8, a BOM tolerated), checked as the module says.

    Every problem at once, as ``'<json pointer>: <message>'``; the value is returned only
    when there is none. Objects come back as plain ``dict`` instances.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileError(path, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from exc
    try:
        data = json.loads(
            text,
            object_pairs_hook=_Keys,
            parse_constant=_NonFinite,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as exc:
        raise FileError(
            path, [f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]
        ) from exc
    except RecursionError as exc:
        raise FileError(path, [_too_deep(max_depth)]) from exc
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise FileError(path, [f"not valid JSON: {shorten(str(exc))}"]) from exc
    problems: list[str] = []
    root = _plain(data, "", 1, max_depth, problems)
    if problems:
        raise FileError(path, problems)
    return root


def _too_deep(max_depth: int) -> str:
    return f"nested deeper than {max_depth} levels (the limit)"


def _plain(value: Any, pointer: str, depth: int, max_depth: int, problems: list[str]) -> Any:
    """The document with plain dicts, recording duplicates, non-finite numbers and depth.

    Iterative (an explicit stack), so depth is checked without recursion.
    """
    top: list[Any] = [None]
    stack: list[tuple[Any, str, int, Any, Any]] = [(value, pointer, depth, top, 0)]
    while stack:
        node, where, level, parent, slot = stack.pop()
        if isinstance(node, _NonFinite):
            problems.append(
                f"{_at(where)}: {shorten(node.text)} is not allowed (JSON numbers are finite)"
            )
            parent[slot] = None
            continue
        if not isinstance(node, dict | list):
            parent[slot] = node
            continue
        if level > max_depth:
            problems.append(f"{_at(where)}: {_too_deep(max_depth)}")
            parent[slot] = None
            continue
        if isinstance(node, _Keys):
            problems.extend(
                f"{_at(f'{where}/{_escape(key)}')}: duplicate key {shorten(repr(key))}"
                for key in node.duplicates
            )
            plain: dict[str, Any] = dict(node)
            parent[slot] = plain
            for key, child in plain.items():
                stack.append((child, f"{where}/{_escape(key)}", level + 1, plain, key))
        else:
            items = list(node)
            parent[slot] = items
            for index, child in enumerate(items):
                stack.append((child, f"{where}/{index}", level + 1, items, index))
    problems.sort(key=_pointer_order)
    return top[0]


def _at(pointer: str) -> str:
    """A JSON pointer for a message: the root as ``/``, a line break in a key escaped, a
    huge key cut short."""
    return shorten(on_one_line(pointer or "/"))


def _pointer_order(problem: str) -> list[str]:
    return problem.split(": ", 1)[0].split("/")
