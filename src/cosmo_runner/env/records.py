"""Installed files verified against their RECORD (standard library only).

For every distribution the lock pins, each hashed RECORD entry's file must exist and have
that hash (urlsafe base64 without padding, as the wheel spec writes it). Entries without a
hash (RECORD itself, ``.pyc`` files pip compiled) are skipped, as pip does. A second
``*.dist-info`` folder for one normalised name in site-packages is a problem too.

Bytecode (``deep``): Python runs a ``__pycache__`` ``.pyc`` whenever its header matches the
source (source mtime and size, or a source hash), whatever the rest holds. Each such
``.pyc`` of a verified source is unmarshalled and compared with the code its source
compiles to. Code objects are compared, not bytes: marshal's output depends on reference
counts and on the file name the compiler was given, so not one of the 4 023 genuine ``.pyc``
files of this project's ``.venv`` is byte-identical to a recompile, while every one is equal
as code (bytecode, constants, names, line and exception tables; not the file name).

Hashes are cached outside the environment (:func:`cache_dir`) per file, keyed by path,
size, mtime_ns, ctime_ns and inode: any write changes ctime, even when mtime is put back
with :func:`os.utime`, and a file replaced by another has another inode. The device number
is left out on purpose: an overlay file system (a container) gets a new one at every mount,
while the inodes and ctimes of its image layers stay. A file changed less
than :data:`RACY_NS` before it was hashed is not cached, since a second write within the
file system's timestamp granularity could leave all five unchanged (git's "racily clean").
An unusable cache directory means no cache; a corrupt cache file is ignored.

The digest is a sha256 over ``relative path, observed hash`` of the hashed entries inside
the install root (site-packages), sorted; it leaves out ``__pycache__`` and the installer's
bookkeeping (``INSTALLER``, ``RECORD``, ``REQUESTED``, ``direct_url.json``) and everything
outside site-packages (``../../../bin/`` scripts start with the venv's own path). Two venvs
installed from one lock at different paths get the same digest.

This module must work when packaging or jsonschema are broken: standard library only, and
it never prints or raises for what it finds (problems are data).
"""

from __future__ import annotations

import _imp
import base64
import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import marshal
import os
import re
import stat
import sys
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

CACHE_FORMAT = 2  # 2: no device number in the stat key
# A file whose ctime is this close to the moment it was hashed is not cached (see above).
RACY_NS = 2_000_000_000
# How many file names a message shows before "and N more".
SHOWN = 3
# Hash algorithms a RECORD may use (the wheel spec forbids anything weaker than sha256).
ALGORITHMS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"})
# Installer bookkeeping in a .dist-info folder: differs between installs of one wheel.
BOOKKEEPING = frozenset({"INSTALLER", "RECORD", "REQUESTED", "direct_url.json"})
_OPTIMIZATIONS: tuple[tuple[str | int, int], ...] = (("", 0), (1, 1), (2, 2))
_CHUNK = 1 << 20

# Stat key of a file: size, mtime_ns, ctime_ns, inode.
StatKey = tuple[int, int, int, int]


def normalize(name: str) -> str:
    """PEP 503 name normalisation (as packaging.utils.canonicalize_name)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def site_dirs() -> list[Path]:
    """The environment's site-packages directories (purelib, platlib), existing ones only."""
    paths = sysconfig.get_paths()
    found: list[Path] = []
    for key in ("purelib", "platlib"):
        path = Path(paths[key])
        if path.is_dir() and path not in found:
            found.append(path)
    return found


def cache_dir() -> Path | None:
    """``$COSMO_CACHE_DIR``, else ``$XDG_CACHE_HOME/cosmo-runner``, else ``~/.cache/cosmo-runner``.

    None when no home directory is known. Whether it is writable is found out on use.
    """
    explicit = os.environ.get("COSMO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative path is invalid, ignore it
        return Path(xdg) / "cosmo-runner"
    try:
        return Path.home() / ".cache" / "cosmo-runner"
    except (RuntimeError, KeyError):  # no $HOME and no passwd entry
        return None


@dataclass
class DistRecords:
    """What one distribution's RECORD check found; file names as written in RECORD."""

    name: str
    version: str
    files: int = 0
    bytes: int = 0
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    bytecode: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.bytecode or self.problems)

    def message(self) -> str | None:
        """One line naming the distribution and its first few files, or None when all is well."""
        parts = []
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} dist-info folders: {_first(self.duplicates)}")
        if self.problems:
            parts.append(self.problems[0] + _more(self.problems[1:]))
        if self.changed:
            verb = "file differs" if len(self.changed) == 1 else "files differ"
            parts.append(f"{len(self.changed)} {verb} from RECORD: {_first(self.changed)}")
        if self.missing:
            noun = "file" if len(self.missing) == 1 else "files"
            parts.append(f"{len(self.missing)} {noun} missing: {_first(self.missing)}")
        if self.bytecode:
            noun = ".pyc does" if len(self.bytecode) == 1 else ".pyc files do"
            parts.append(
                f"{len(self.bytecode)} {noun} not match the source: {_first(self.bytecode)}"
            )
        if not parts:
            return None
        label = f"{self.name} {self.version}" if self.version else self.name
        return f"{label}: {'; '.join(parts)}"


@dataclass
class Records:
    """The whole check: per distribution results, the digest and what it cost."""

    dists: list[DistRecords]
    distributions: int  # how many locked distributions were installed and checked
    digest: str
    files: int
    bytes: int
    seconds: float
    cache: dict[str, Any]
    bytecode: dict[str, int] | None  # None unless deep

    @property
    def problems(self) -> list[DistRecords]:
        return [d for d in self.dists if d.message() is not None]

    def summary(self) -> dict[str, Any]:
        """The snapshot's ``observed.records`` (JSON-ready)."""
        return {
            "digest": self.digest,
            "distributions": self.distributions,
            "files": self.files,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "cache": self.cache,
            "bytecode": self.bytecode,
            "problems": [m for d in self.problems if (m := d.message()) is not None],
        }


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + _more(items[SHOWN:])


def _more(rest: list[str]) -> str:
    return f" and {len(rest)} more" if rest else ""


def _stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class _Cache:
    """Per-root JSON file of ``relative path -> [*stat key, value]``; never raises."""

    def __init__(self, directory: Path | None, root: str) -> None:
        self.root = root
        self.path = (
            directory / f"records-{hashlib.sha256(root.encode()).hexdigest()[:16]}.json"
            if directory is not None
            else None
        )
        self.old: dict[str, dict[str, list[Any]]] = {"files": {}, "bytecode": {}}
        self.new: dict[str, dict[str, list[Any]]] = {"files": {}, "bytecode": {}}
        self.hits = self.misses = 0
        self.started_ns = time.time_ns()
        self.dirty = False
        if self.path is None:
            return
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):  # absent, unreadable, not JSON: none
            return
        if (
            isinstance(doc, dict)
            and doc.get("format") == CACHE_FORMAT
            and doc.get("root") == root
            and doc.get("cache_tag") == _cache_tag()
        ):
            for kind in ("files", "bytecode"):
                table = doc.get(kind)
                if isinstance(table, dict):
                    self.old[kind] = table

    def get(self, kind: str, rel: str, key: tuple[int, ...]) -> str | None:
        entry = self.old[kind].get(rel)
        if (
            type(entry) is list
            and len(entry) == len(key) + 1
            and tuple(entry[:-1]) == key
            and type(entry[-1]) is str
        ):
            self.hits += 1
            self.new[kind][rel] = entry
            return entry[-1]
        self.misses += 1
        return None

    def put(self, kind: str, rel: str, key: tuple[int, ...], value: str, ctime_ns: int) -> None:
        if ctime_ns > self.started_ns - RACY_NS:
            return  # racily clean: a second write in the same timestamp tick would not show
        self.new[kind][rel] = [*key, value]
        self.dirty = True

    def save(self) -> bool:
        """Write atomically (temp file + rename) when anything changed; False if it cannot."""
        if self.path is None:
            return False
        if not self.dirty and all(self.new[k].keys() == self.old[k].keys() for k in self.new):
            return True
        doc = {"format": CACHE_FORMAT, "root": self.root, "cache_tag": _cache_tag(), **self.new}
        tmp_name = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".records-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(doc, handle, separators=(",", ":"))
            os.replace(tmp_name, self.path)
            return True
        except OSError:  # read-only container, unwritable $HOME, full disk: no cache
            if tmp_name is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_name)
            return False


def _cache_tag() -> str:
    return str(sys.implementation.cache_tag)


def _hash_file(path: str, algorithm: str) -> str:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, algorithm)
    return algorithm + "=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


@dataclass
class _Source:
    """A verified ``.py`` file: what the bytecode check needs."""

    dist: DistRecords
    root: str
    full: str
    stat: os.stat_result


def verify(
    names: Iterable[str],
    dists: Mapping[str, metadata.Distribution],
    *,
    cache: Path | None,
    deep: bool = False,
    sites: list[Path] | None = None,
) -> Records:
    """Check the RECORD of every distribution in ``names`` that ``dists`` holds.

    ``dists`` maps normalised names to the distribution import would see; a name it lacks
    is skipped (the package check reports it). ``cache`` is the cache directory
    (:func:`cache_dir`), None for none. ``sites`` are the directories scanned for duplicate
    dist-info folders (default :func:`site_dirs`). ``deep`` adds the bytecode check.
    """
    started = time.perf_counter()
    wanted = sorted({normalize(n) for n in names})
    duplicates = find_duplicates(site_dirs() if sites is None else sites)
    caches: dict[str, _Cache] = {}
    results: list[DistRecords] = []
    entries: list[str] = []
    sources: list[_Source] = []
    versions: list[tuple[DistRecords, metadata.Distribution]] = []
    for name in wanted:
        dist = dists.get(name)
        if dist is None:
            if name in duplicates:
                results.append(DistRecords(name, "", duplicates=duplicates[name]))
            continue
        result = DistRecords(name, "", duplicates=duplicates.get(name, []))
        results.append(result)
        root = _root(dist)
        if root is None:
            result.problems.append("not installed as files; its RECORD cannot be checked")
        else:
            if root not in caches:
                caches[root] = _Cache(cache, root)
            _DistCheck(root, result, caches[root], entries, sources if deep else None).run(dist)
        versions.append((result, dist))
    for name in sorted(set(duplicates) - set(wanted)):
        results.append(DistRecords(name, "", duplicates=duplicates[name]))
    bytecode = _verify_bytecode(sources, caches) if deep else None
    for result, dist in versions:
        if not result.ok or result.duplicates:  # METADATA is parsed only for a message
            result.version = dist.version or ""
    saved = [c.save() for c in caches.values()]
    entries.sort()
    digest = hashlib.sha256("".join(entries).encode("utf-8", "surrogateescape")).hexdigest()
    return Records(
        dists=results,
        distributions=len(versions),
        digest=digest,
        files=sum(r.files for r in results),
        bytes=sum(r.bytes for r in results),
        seconds=time.perf_counter() - started,
        cache={
            "hits": sum(c.hits for c in caches.values()),
            "misses": sum(c.misses for c in caches.values()),
            "written": bool(saved) and all(saved),
        },
        bytecode=bytecode,
    )


def find_duplicates(sites: list[Path]) -> dict[str, list[str]]:
    """Normalised name -> its ``*.dist-info`` folders, for names with two or more."""
    folders: dict[str, list[str]] = {}
    for site in sites:
        try:
            names = sorted(os.listdir(site))
        except OSError:
            continue
        for entry in names:
            if entry.endswith(".dist-info") and os.path.isdir(os.path.join(site, entry)):
                # name-version.dist-info, '-' in the name escaped to '_' (wheel spec)
                stem = entry[: -len(".dist-info")].split("-", 1)[0]
                folders.setdefault(normalize(stem), []).append(entry)
    return {name: found for name, found in folders.items() if len(found) > 1}


def _root(dist: metadata.Distribution) -> str | None:
    """The directory RECORD paths are relative to (site-packages), or None."""
    try:
        root = os.path.abspath(str(dist.locate_file("")))
    except (NotImplementedError, TypeError, OSError):
        return None
    return root if os.path.isdir(root) else None


@dataclass
class _DistCheck:
    """One distribution's RECORD walk; collects into ``result``, ``entries``, ``sources``
    (``sources`` is None unless the bytecode check follows)."""

    root: str
    result: DistRecords
    cache: _Cache
    entries: list[str]
    sources: list[_Source] | None

    def run(self, dist: metadata.Distribution) -> None:
        try:
            text = dist.read_text("RECORD")
        except (OSError, UnicodeDecodeError) as exc:
            self.result.problems.append(f"RECORD unreadable: {exc}")
            return
        if text is None:
            self.result.problems.append("no RECORD; its files cannot be verified")
            return
        seen: set[str] = set()
        rows = 0
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            for row in reader:
                if not row or row == [""]:
                    continue
                rows += 1
                if len(row) != 3:
                    self.result.problems.append(
                        f"RECORD line {reader.line_num} has {len(row)} fields, not 3 "
                        "(path, hash, size)"
                    )
                    continue
                path, recorded, size = row
                if not recorded or path in seen:
                    continue  # unhashed (RECORD itself, .pyc), or listed twice
                seen.add(path)
                self._entry(reader.line_num, path, recorded, size)
        except csv.Error as exc:
            self.result.problems.append(f"RECORD unreadable as CSV: {exc}")
            return
        if not rows:
            self.result.problems.append("RECORD is empty; its files cannot be verified")

    def _entry(self, line: int, path: str, recorded: str, size: str) -> None:
        """Check one hashed entry. The hot loop of a warm run (~5 000 entries for the
        runtime lock, all served by the cache): kept flat, one function per entry."""
        result = self.result
        algorithm, _, value = recorded.partition("=")
        if algorithm not in ALGORITHMS or not value:
            result.problems.append(f"RECORD line {line}: unusable hash {recorded!r}")
            return
        if "\0" in path:
            result.problems.append(f"RECORD line {line}: a path with a NUL byte")
            return
        if size and not size.isdecimal():
            result.problems.append(f"RECORD line {line}: size {size!r} is not a number")
            return
        if path.startswith(("/", "./", "../")) or "/." in path or "//" in path or "\\" in path:
            full = os.path.normpath(os.path.join(self.root, path))
            rel = _relative(full, self.root)
        else:  # the common case, already normal: no normpath
            full, rel = self.root + os.sep + path, path
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            result.missing.append(path)
            observed = "missing"
        except OSError as exc:
            result.changed.append(f"{path} ({exc.strerror})")
            observed = "unreadable"
        else:
            observed = self._observe(st, full, algorithm, size, rel)
            if observed != recorded:
                result.changed.append(path if observed[0] != "(" else f"{path} {observed}")
        if rel is None:
            return  # outside site-packages (bin/ scripts): verified, never in the digest
        if "__pycache__" not in rel and not (
            rel.count("/") == 1 and rel.rpartition("/")[2] in BOOKKEEPING
        ):
            self.entries.append(f"{rel}\t{observed}\n")
        if self.sources is not None and observed == recorded and rel.endswith(".py"):
            self.sources.append(_Source(result, self.root, full, st))

    def _observe(
        self, st: os.stat_result, full: str, algorithm: str, size: str, rel: str | None
    ) -> str:
        """A file's hash, from the cache while its stat key matches; ``(...)`` when it is
        not a regular file or cannot be read, ``size=N`` when its size is not RECORD's."""
        if not stat.S_ISREG(st.st_mode):
            return "(not a file)"
        self.result.files += 1
        self.result.bytes += st.st_size
        if size and int(size) != st.st_size:
            return f"size={st.st_size}"
        key = _stat_key(st)
        cache_key = rel if rel is not None else full
        observed = self.cache.get("files", cache_key, key)
        if observed is None or not observed.startswith(algorithm + "="):
            try:
                observed = _hash_file(full, algorithm)
            except OSError as exc:
                return f"({exc.strerror})"
            self.cache.put("files", cache_key, key, observed, st.st_ctime_ns)
        return observed


def _relative(full: str, root: str) -> str | None:
    """``full`` relative to ``root`` with '/' separators, or None when it lies outside."""
    prefix = root.rstrip(os.sep) + os.sep
    return full[len(prefix) :].replace(os.sep, "/") if full.startswith(prefix) else None


def _verify_bytecode(sources: list[_Source], caches: dict[str, _Cache]) -> dict[str, int]:
    """Every ``__pycache__`` ``.pyc`` Python would run for a verified source must match it."""
    counts = {"checked": 0, "stale": 0, "differ": 0}
    for source in sources:
        cache = caches[source.root]
        for optimization, level in _OPTIMIZATIONS:
            try:
                pyc = importlib.util.cache_from_source(source.full, optimization=optimization)
                pyc_stat = os.stat(pyc)
            except (OSError, NotImplementedError, ValueError):
                continue
            shown = _relative(pyc, source.root) or pyc
            key = _stat_key(pyc_stat) + _stat_key(source.stat)
            verdict = cache.get("bytecode", shown, key)
            if verdict is None:
                verdict = _bytecode_verdict(pyc, source, level)
                if verdict != "differs":
                    ctime = max(pyc_stat.st_ctime_ns, source.stat.st_ctime_ns)
                    cache.put("bytecode", shown, key, verdict, ctime)
            if verdict == "stale":
                counts["stale"] += 1
                continue
            counts["checked"] += 1
            if verdict == "differs":
                counts["differ"] += 1
                source.dist.bytecode.append(shown)
    return counts


def _bytecode_verdict(pyc: str, source: _Source, level: int) -> str:
    """``stale`` (Python would recompile), ``match`` or ``differs`` (Python runs other code).

    Follows ``importlib._bootstrap_external.SourceLoader.get_code``: the magic number and
    flags (PEP 552), then the source's mtime and size, or its hash when the flags ask for it.
    """
    try:
        with open(pyc, "rb") as handle:
            data = handle.read()
        with open(source.full, "rb") as handle:
            source_bytes = handle.read()
    except OSError:
        return "stale"
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER:
        return "stale"
    flags = int.from_bytes(data[4:8], "little")
    if flags & ~0b11:
        return "stale"
    if flags & 0b1:  # hash-based
        check_source = bool(flags & 0b10)
        mode = getattr(_imp, "check_hash_based_pycs", "default")
        checked = mode != "never" and (check_source or mode == "always")
        if checked and data[8:16] != importlib.util.source_hash(source_bytes):
            return "stale"
    else:
        mtime = int(source.stat.st_mtime) & 0xFFFFFFFF
        if (
            int.from_bytes(data[8:12], "little") != mtime
            or int.from_bytes(data[12:16], "little") != source.stat.st_size & 0xFFFFFFFF
        ):
            return "stale"
    try:
        loaded = marshal.loads(data[16:])
    except (ValueError, EOFError, TypeError):
        return "differs"  # Python would fail to import it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compiled = compile(source_bytes, source.full, "exec", dont_inherit=True, optimize=level)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return "differs"  # Python would run the .pyc of a source that does not compile
    return "match" if loaded == compiled else "differs"
