"""Static lock check, no network (run by ``make test`` / ``make lock-check``).

The locks are universal (``uv pip compile --universal``): one file for every supported
interpreter, with PEP 508 markers where a pin applies to some only. For every *target* --
each CPython minor that pyproject.toml's ``requires-python`` admits (scripts/pyversions.py)
on Linux x86_64 and aarch64, each evaluated at its first release (X.Y.0) and a late one
(X.Y.99) -- the markers are evaluated (``packaging``) and this checks, per lock:

- every pin applies at both ends of a minor series or at neither (a marker must not split
  3.12.0 from 3.12.99), and no name applies more than once;
- every root requirement (runtime lock: ``project.dependencies``, ``build-system.requires``
  and requirements/build.in; dev lock: requirements/dev.in on top of the runtime lock;
  bench lock: pyproject, build.in and bench.in) whose own marker holds is pinned, by a pin
  that satisfies it;
- the set is closed: each pin's declared requirements (its ``Requires-Dist``, with markers
  and extras evaluated for the target) are pinned and satisfied. The requirements are read
  from the installed metadata of the interpreter running the check, for each pin installed
  here at exactly the pinned version (requirements rarely differ between the wheels of one
  release); the pins not installed here are listed, and for them only the next check holds;
- every pin that applies is needed there: it is a root, or one of its ``# via`` parents
  applies too (no pin rides along on a marker wider than its parent's);
- the dev lock agrees with the runtime lock on every shared name that applies.

And for the files as a whole: every entry has a ``--hash``, no machine-specific index
option leaked in, and the manifest and package-data copies are in step with the lock.
Not checked (it needs the index): that each pin has a wheel for each target. ``make lock``
is deterministic (two runs give identical files; checked by hand, it needs the network).
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

import sync_package_data  # noqa: E402

from cosmo_runner.env.lock import Pin, _logical_lines, marker_applies, parse_entries  # noqa: E402
from pyversions import MACHINES, supported_minors  # noqa: E402

RUNTIME, DEV, BENCH = (
    "requirements.lock.txt",
    "requirements-dev.lock.txt",
    "requirements-bench.lock.txt",
)
LOCKS = (RUNTIME, DEV, BENCH)
PATCHES = (0, 99)  # the first and a late release of each minor series

# (name, version) -> its Requires-Dist lines, or None when they are not known here.
Requires = Callable[[str, str], Sequence[str] | None]


@dataclass(frozen=True)
class Target:
    """CPython X.Y on Linux/machine: the interpreters one universal lock must serve."""

    minor: str
    machine: str

    def __str__(self) -> str:
        return f"CPython {self.minor} linux/{self.machine}"

    def environment(self, patch: int) -> dict[str, str]:
        """PEP 508 marker variables of CPython X.Y.patch on Linux/machine."""
        full = f"{self.minor}.{patch}"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": full,
            "python_version": self.minor,
            "sys_platform": "linux",
        }


def targets(root: Path = ROOT) -> list[Target]:
    return [Target(minor, machine) for minor in supported_minors(root) for machine in MACHINES]


@dataclass(frozen=True)
class LockFile:
    """One lock: its entries (with markers) and, per PEP 503 name, its ``# via`` parents."""

    name: str
    entries: tuple[Pin, ...]
    via: dict[str, tuple[str, ...]]


def read_lock_file(path: Path) -> LockFile:
    """Entries via cosmo_runner.env.lock (one parser of pins); ``# via`` from the comments
    uv writes under each entry (``# via x`` or ``# via`` then ``#   x`` lines)."""
    text = path.read_text(encoding="utf-8")
    via: dict[str, list[str]] = {}
    current: str | None = None
    in_via = False
    for raw in text.splitlines():
        line = raw.strip()
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", raw)
        if pin:
            current, in_via = canonicalize_name(pin.group(1)), False
            via.setdefault(current, [])
        elif current and line.startswith("# via"):
            in_via = True
            rest = line[len("# via") :].strip()
            if rest:
                via[current].append(rest)
        elif current and in_via and line.startswith("#   "):
            via[current].append(line[1:].strip())
        elif not line.startswith("--hash"):
            in_via = False
    return LockFile(
        path.name, tuple(parse_entries(text, path.name)), {k: tuple(v) for k, v in via.items()}
    )


@functools.cache  # the installed metadata is read once per process, not per target and lock
def installed_requires(name: str, version: str) -> tuple[str, ...] | None:
    """Requires-Dist of ``name`` as installed here, if it is installed at ``version``."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    return tuple(dist.requires or ())


@functools.cache  # the same requirement strings recur for every target and lock
def _requirement(text: str) -> Requirement:
    return Requirement(text)


def _applies(requirement: Requirement, env: dict[str, str], extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**env, "extra": e}) for e in ("", *extras))


def _select(lock: LockFile, target: Target, problems: list[str]) -> dict[str, str]:
    """The pins of ``lock`` that apply to ``target`` (name -> version), problems noted."""
    chosen: dict[str, list[str]] = {}
    for pin in lock.entries:
        verdicts = {marker_applies(pin.marker, target.environment(p)) for p in PATCHES}
        if None in verdicts:
            problems.append(
                f"{lock.name}: {pin.name}=={pin.version}: invalid marker {pin.marker!r}"
            )
            continue
        if len(verdicts) > 1:
            problems.append(
                f"{lock.name}: {pin.name}=={pin.version} ; {pin.marker}: applies to some "
                f"CPython {target.minor} releases only"
            )
        if True in verdicts:
            chosen.setdefault(pin.name, []).append(pin.version)
    for name, versions in chosen.items():
        if len(versions) > 1:
            problems.append(
                f"{lock.name}: {name} is pinned {len(versions)} times for {target} "
                f"({', '.join(versions)})"
            )
    return {name: versions[0] for name, versions in chosen.items()}


def check_target(  # noqa: PLR0915 - every rule for one target, in the README's order
    lock: LockFile,
    roots: Sequence[tuple[str, str]],
    target: Target,
    requires: Requires,
    base: dict[str, str] | None = None,
) -> tuple[list[str], set[str]]:
    """Problems of ``lock`` for ``target``, and the names whose requirements were unknown.

    ``roots`` are (requirement text, where it is declared); ``base`` is the set installed
    underneath (the runtime lock's, for the dev lock): reachable, but not this lock's own.
    """
    problems: list[str] = []
    own = _select(lock, target, problems)
    pinned = {**(base or {}), **own}
    for name in set(own) & set(base or {}):
        if own[name] != (base or {})[name]:
            problems.append(
                f"{lock.name}: {name}=={own[name]} but {RUNTIME} pins {(base or {})[name]} "
                f"for {target}"
            )
    env = target.environment(0)
    queue: list[tuple[str, frozenset[str]]] = []
    for text, where in roots:
        req = _requirement(text)
        if not _applies(req, env, ()):
            continue
        name = canonicalize_name(req.name)
        if name not in pinned:
            problems.append(
                f"{lock.name}: {name} ({where}) is missing for {target}; run 'make lock'"
            )
        elif not req.specifier.contains(pinned[name], prereleases=True):
            problems.append(
                f"{lock.name}: {name}=={pinned[name]} does not satisfy {req} ({where}); "
                "run 'make lock'"
            )
        else:
            queue.append((name, frozenset(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    unknown: set[str] = set()
    reached: set[str] = {name for name, _ in queue}

    def walk(queue: list[tuple[str, frozenset[str]]]) -> None:
        while queue:
            name, extras = queue.pop()
            if (name, extras) in seen:
                continue
            seen.add((name, extras))
            declared = requires(name, pinned[name])
            if declared is None:
                unknown.add(name)
                continue
            for text in declared:
                req = _requirement(text)
                if not _applies(req, env, extras):
                    continue
                child = canonicalize_name(req.name)
                if child not in pinned:
                    problems.append(
                        f"{lock.name}: {name}=={pinned[name]} requires {req} on {target}, "
                        "which the lock does not pin there"
                    )
                elif not req.specifier.contains(pinned[child], prereleases=True):
                    problems.append(
                        f"{lock.name}: {name}=={pinned[name]} requires {req}, but the lock "
                        f"pins {child}=={pinned[child]} for {target}"
                    )
                else:
                    reached.add(child)
                    queue.append((child, frozenset(req.extras)))

    walk(queue)
    # A pin not reached through requirements known here is still needed when a parent of
    # its '# via' applies and that parent's requirements are unknown (then its own are
    # walked too); else nothing needs it on this target.
    while True:
        accepted = [
            name
            for name in sorted(set(own) - reached)
            if any(
                canonicalize_name(parent) in pinned
                and requires(canonicalize_name(parent), pinned[canonicalize_name(parent)]) is None
                for parent in lock.via.get(name, ())
                if " " not in parent
            )
        ]
        if not accepted:
            break
        reached.update(accepted)
        walk([(name, frozenset()) for name in accepted])
    for name in sorted(set(own) - reached):
        parents = lock.via.get(name, ())
        problems.append(
            f"{lock.name}: {name}=={own[name]} applies to {target} but nothing there "
            f"needs it (# via {', '.join(parents) or 'nothing'})"
        )
    return problems, unknown


def lock_roots(root: Path, problems: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The requirements each lock is resolved from (requirement text, where declared)."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = [(t, "project.dependencies") for t in pyproject["project"]["dependencies"]]
    project += [(t, "build-system.requires") for t in pyproject["build-system"]["requires"]]

    def infile(name: str) -> list[tuple[str, str]]:
        path = root / "requirements" / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(
                f"requirements/{name}: unreadable ({exc.strerror}); its roots are unchecked"
            )
            return []
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        return [(line, f"requirements/{name}") for line in lines if line]

    return {
        RUNTIME: project + infile("build.in"),
        DEV: infile("dev.in"),
        BENCH: project + infile("build.in") + infile("bench.in"),
    }


def check_universal(
    root: Path = ROOT, requires: Requires = installed_requires
) -> tuple[list[str], list[str]]:
    """(problems, notes) of the per-target checks over the three locks."""
    locks = {name: read_lock_file(root / name) for name in LOCKS}
    problems: list[str] = []
    roots = lock_roots(root, problems)
    unknown: dict[str, set[str]] = {name: set() for name in LOCKS}
    for target in targets(root):
        scratch: list[str] = []
        runtime = _select(locks[RUNTIME], target, scratch)
        for name in LOCKS:
            found, missing_metadata = check_target(
                locks[name], roots[name], target, requires, runtime if name == DEV else None
            )
            problems += found
            unknown[name] |= missing_metadata
    notes = [
        f"{name}: requirements of {len(names)} pin(s) not read (not installed here at the "
        f"pinned version), checked through '# via' only: {', '.join(sorted(names))}"
        for name, names in unknown.items()
        if names
    ]
    return list(dict.fromkeys(problems)), notes


def check_files(root: Path = ROOT) -> list[str]:
    """Hashes and index options, line by line, in every lock."""
    problems: list[str] = []
    for name in LOCKS:
        text = (root / name).read_text(encoding="utf-8")
        for line in _logical_lines(text):
            if not line.startswith("-") and "--hash=sha256:" not in line:
                problems.append(f"{name}: {line.split()[0]} has no --hash")
            if "file://" in line or line.startswith(
                ("--index-url", "--extra-index-url", "--find-links")
            ):
                problems.append(f"{name}: machine-specific index option: {line}")
    return problems


def check(root: Path = ROOT) -> tuple[list[str], list[str]]:
    problems, notes = check_universal(root)
    problems += check_files(root)
    if sync_package_data.main(["--check"]) != 0:
        problems.append(
            "environment.manifest.json or src/cosmo_runner/data/ out of step; run 'make lock'"
        )
    return problems, notes


if __name__ == "__main__":
    found, notes = check()
    for note in notes:
        print(f"check_lock: note: {note}")
    for problem in found:
        print(f"check_lock: {problem}", file=sys.stderr)
    covered = ", ".join(str(t) for t in targets())
    print(
        "check_lock: "
        + ("FAILED" if found else f"locks consistent with pyproject.toml for {covered}")
    )
    sys.exit(1 if found else 0)
