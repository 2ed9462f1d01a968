"""Where imports resolve, checked in the process that will run the pipeline.

A module is judged by the file Python would load, not by metadata: for each name,
:func:`resolve` finds its spec with :func:`importlib.util.find_spec` for the top-level package
(which imports nothing) and then looks each submodule up under the package's search
locations (which imports nothing either); a module that is already imported is judged by the
module object in :data:`sys.modules`, since that is what the run will use. The file must lie
inside this environment's site-packages (sysconfig purelib/platlib of ``sys.prefix``) or the
standard library of the base interpreter. Anything else is named with the reason it is on
``sys.path``: the current directory (``python -m``), ``PYTHONPATH``, a ``.pth`` file, the user
site-packages.

Standard library only: the gate must work when ``packaging`` or ``jsonschema`` is broken or
shadowed.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from importlib.machinery import ModuleSpec, PathFinder
from importlib.util import find_spec
from types import ModuleType
from typing import Any

# spec.origin values that are not files: modules compiled into the interpreter.
_BUILT_IN = ("built-in", "frozen")
# File suffixes of importable top-level modules listed in a RECORD.
_MODULE_SUFFIXES = (".py", ".so", ".pyd")


@dataclass(frozen=True)
class Origin:
    """Where one module resolves. ``inside`` is False when ``path`` is outside the environment.

    ``path`` is the file (or, for a namespace package, the directory) Python would load, None
    when the module is not found. ``why`` explains an outside path: ``the current directory,
    on sys.path under python -m``, ``PYTHONPATH``, ``added by /.../x.pth``, ...; for a module
    that is not found it says why.
    """

    module: str
    path: str | None
    inside: bool
    why: str
    imported: bool = False  # judged by the module already in sys.modules

    @property
    def message(self) -> str:
        if self.path is None:
            return f"{self.module} cannot be located: {self.why}"
        return f"{self.module} resolves to {self.path} ({self.why})"


@dataclass(frozen=True)
class PthFile:
    """A ``.pth`` file that ``site`` processes: the directories its path lines add (appended
    to ``sys.path``) and its ``import`` lines, code that ran at start-up (and may put a
    directory anywhere on ``sys.path``)."""

    path: str
    adds: list[str]
    code: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "adds": self.adds, "code": self.code}

    def added(self, entry: str) -> bool:
        """Whether this file put ``entry`` on ``sys.path``: a path line, or a code line that
        names the directory literally."""
        return entry in self.adds or any(entry in line for line in self.code)


def environment_dirs() -> list[str]:
    """This interpreter's own site-packages: sysconfig purelib and platlib of ``sys.prefix``."""
    paths = sysconfig.get_paths(vars={"base": sys.prefix, "platbase": sys.exec_prefix})
    return _unique([paths["purelib"], paths["platlib"]])


def stdlib_dirs() -> list[str]:
    """The base interpreter's standard library (``stdlib``, ``platstdlib``, the zip)."""
    paths = sysconfig.get_paths(
        vars={
            "base": sys.base_prefix,
            "platbase": sys.base_exec_prefix,
            "installed_base": sys.base_prefix,
            "installed_platbase": sys.base_exec_prefix,
        }
    )
    zipped = os.path.join(
        sys.base_prefix, sys.platlibdir, f"python{sys.version_info[0]}{sys.version_info[1]}.zip"
    )
    return _unique([paths["stdlib"], paths["platstdlib"], zipped])


def _base_site_dirs() -> list[str]:
    """The base interpreter's site-packages, which lie under its stdlib but are not stdlib."""
    paths = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix})
    return _unique([paths["purelib"], paths["platlib"]])


def _unique(paths: list[str]) -> list[str]:
    return list(dict.fromkeys(os.path.normpath(p) for p in paths))


class _Roots:
    """Directories, kept both as written and with symlinks resolved."""

    def __init__(self, roots: list[str]) -> None:
        self.written = [r.rstrip(os.sep) for r in roots]
        self.resolved = [os.path.realpath(r).rstrip(os.sep) for r in roots]

    def holds(self, path: str) -> bool:
        """``path`` lies in one of the roots, as written or with its symlinks resolved."""
        written = os.path.normpath(os.path.abspath(path))
        if any(_within(written, root) for root in self.written):
            return True
        resolved = os.path.realpath(written)
        return any(_within(resolved, root) for root in self.resolved)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def pth_files() -> list[PthFile]:
    """The ``.pth`` files ``site`` processed at start-up, in its order, with what they add.

    A path line adds a directory when it exists (as ``site.addpackage`` does); lines starting
    with ``import`` are code that ran and are kept as written.
    """
    if sys.flags.no_site:
        return []
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    found = []
    for sitedir in _unique(dirs):
        try:
            names = sorted(n for n in os.listdir(sitedir) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            path = os.path.join(sitedir, name)
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            adds, code = [], []
            for line in lines:
                if not line.strip() or line.startswith("#"):
                    continue
                if line.startswith(("import ", "import\t")):
                    code.append(line)
                    continue
                added = os.path.normpath(os.path.join(sitedir, line.rstrip()))
                if os.path.exists(added):
                    adds.append(added)
            found.append(PthFile(path, adds, code))
    return found


def import_paths() -> dict[str, Any]:
    """``sys.path``, the ``.pth`` files processed and ``sys.flags``, JSON-ready (a probe)."""
    names: tuple[str, ...] = type(sys.flags).__match_args__
    return {
        "sys_path": list(sys.path),
        "pth_files": [p.as_dict() for p in pth_files()],
        "flags": {name: getattr(sys.flags, name) for name in names},
    }


class _Provenance:
    """Why each ``sys.path`` entry is there, computed once per :func:`resolve` call."""

    def __init__(self) -> None:
        cwd = os.getcwd()
        self.reasons: dict[str, str] = {}
        pythonpath = "" if sys.flags.ignore_environment else os.environ.get("PYTHONPATH", "")
        from_env = {_norm(p) for p in pythonpath.split(os.pathsep) if p}
        pths = pth_files()
        user_site = _norm(site.getusersitepackages()) if site.ENABLE_USER_SITE else None
        for index, entry in enumerate(sys.path):
            key = _norm(entry or cwd)
            if key in self.reasons:
                continue
            if key == _norm(cwd):
                reason = (
                    "the current directory, on sys.path under python -m"
                    if index == 0 and not sys.flags.safe_path
                    else "the current directory, on sys.path"
                )
            elif key in from_env:
                reason = "PYTHONPATH"
            elif any(p.added(key) for p in pths):
                reason = "added by " + next(p.path for p in pths if p.added(key))
            elif key == user_site:
                reason = "the user site-packages"
            elif index == 0 and not sys.flags.safe_path:
                reason = "the script's directory, sys.path[0]"
            else:
                reason = f"sys.path entry {entry!r}"
            self.reasons[key] = reason

    def why(self, path: str) -> str:
        """The reason of the longest ``sys.path`` entry that holds ``path``."""
        path = _norm(path)
        best = ""
        for entry in self.reasons:
            if _within(path, entry.rstrip(os.sep)) and len(entry) > len(best):
                best = entry
        return self.reasons[best] if best else "not under any sys.path entry"


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(path))


def top_level_modules(dist: metadata.Distribution) -> list[str]:
    """The importable top-level names a distribution installs: from RECORD, else top_level.txt.

    RECORD lists the files actually installed: ``pkg/...`` gives ``pkg``, ``mod.py`` gives
    ``mod``, ``ext.cpython-311-x86_64-linux-gnu.so`` gives ``ext``; ``*.dist-info``,
    ``*.data``, ``__pycache__``, ``.pth`` files and scripts outside site-packages are skipped.
    """
    names: dict[str, None] = {}
    record = dist.read_text("RECORD")
    if record:
        for line in record.splitlines():
            path = line.split(",", 1)[0].strip('"')
            head, sep, _ = path.partition("/")
            if not sep:
                if not head.endswith(_MODULE_SUFFIXES):
                    continue
                head = head.split(".", 1)[0]
            if head.isidentifier() and head != "__pycache__":
                names.setdefault(head)
    else:
        for line in (dist.read_text("top_level.txt") or "").splitlines():
            if line.strip().isidentifier():
                names.setdefault(line.strip())
    return list(names)


def resolve(modules: list[str]) -> list[Origin]:
    """Where each module (dotted names allowed) resolves, without importing anything."""
    judge = _Judge()
    return [judge.origin(name) for name in modules]


class _Judge:
    def __init__(self) -> None:
        environment = environment_dirs()
        self.environment = _Roots(environment)
        self.stdlib = _Roots(stdlib_dirs())
        self.base_site = _Roots([d for d in _base_site_dirs() if d not in environment])
        self.provenance = _Provenance()

    def origin(self, name: str) -> Origin:
        """Walk ``a``, ``a.b``, ``a.b.c``: each step must resolve inside the environment."""
        parts = name.split(".")
        spec: ModuleSpec | None = None
        search: list[str] | None = None  # the parent package's submodule search locations
        imported = False
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            module = sys.modules.get(prefix)
            if isinstance(module, ModuleType):
                spec, imported = _module_spec(module), True
                path = getattr(module, "__path__", None)
                search = list(path) if path is not None else None
            else:
                imported = False
                if depth == 1:
                    try:
                        spec = find_spec(prefix)
                    except (ImportError, ValueError) as exc:
                        return Origin(name, None, False, f"find_spec failed: {exc}")
                elif search is None:
                    return Origin(name, None, False, f"{parts[depth - 2]} is not a package")
                else:
                    spec = PathFinder.find_spec(prefix, search)
                if spec is None:
                    return Origin(name, None, False, f"{prefix} is not found on sys.path")
                locations = spec.submodule_search_locations
                search = list(locations) if locations is not None else None
            outside = self._outside(spec, search)
            if outside is not None:
                return Origin(name, outside, False, self.provenance.why(outside), imported)
        assert spec is not None
        return Origin(name, _location(spec), True, self._kind(spec), imported)

    def _outside(self, spec: ModuleSpec, search: list[str] | None) -> str | None:
        """The first location of ``spec`` (file or package directories) outside, or None."""
        if spec.origin in _BUILT_IN:
            return None
        locations = [spec.origin] if spec.has_location and spec.origin else []
        locations += search or []
        if not locations:
            return spec.origin or repr(spec.loader)
        for location in locations:
            if self.environment.holds(location):
                continue
            if self.stdlib.holds(location) and not self.base_site.holds(location):
                continue
            return location
        return None

    def _kind(self, spec: ModuleSpec) -> str:
        if spec.origin in _BUILT_IN:
            return str(spec.origin)
        location = _location(spec)
        return "site-packages" if location and self.environment.holds(location) else "stdlib"


def _module_spec(module: ModuleType) -> ModuleSpec:
    """The spec an imported module was loaded by (rebuilt from ``__file__`` when missing)."""
    spec = getattr(module, "__spec__", None)
    if isinstance(spec, ModuleSpec):
        return spec
    file = getattr(module, "__file__", None)
    rebuilt = ModuleSpec(module.__name__, None, origin=file if isinstance(file, str) else None)
    rebuilt.has_location = isinstance(file, str)
    return rebuilt


def _location(spec: ModuleSpec) -> str | None:
    if spec.origin and spec.has_location:
        return spec.origin
    locations = list(spec.submodule_search_locations or [])
    return locations[0] if locations else spec.origin
