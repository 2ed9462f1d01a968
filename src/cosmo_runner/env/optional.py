"""The gate's own third-party dependencies, imported defensively.

The smoke gate checks an environment that may be broken, so it must not depend on what it
checks. Its core (manifest, lock, Python, platform, installed versions) runs on the standard
library alone; ``packaging`` (PEP 440 specifiers, PEP 508 markers, wheel tags) and
``jsonschema`` (the manifest's schema) are used when they import and are *reported* when
they do not: :func:`problem` returns the reason, which the gate turns into an error-level
check naming the module and where it was found.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache

# What the gate imports of each dependency: all of it must import for the dependency to count.
GATE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "packaging": (
        "packaging.markers",
        "packaging.requirements",
        "packaging.specifiers",
        "packaging.tags",
        "packaging.utils",
        "packaging.version",
    ),
    "jsonschema": ("jsonschema", "jsonschema.validators"),
}


def _where(name: str) -> str:
    """Where ``name`` would be imported from, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:
        return f"not importable ({type(exc).__name__})"
    if spec is None:
        return "not found on sys.path"
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        return f"found at {spec.origin}"
    locations = list(spec.submodule_search_locations or [])
    return f"found as a namespace package at {', '.join(locations)}" if locations else "found"


@cache
def problem(name: str) -> str | None:
    """Why the gate dependency ``name`` is unusable (one line), or None when it imports.

    Any exception while importing counts (a deleted package folder, a shadowing module in
    the current directory, a syntax error in an edited file); the text names the exception
    and where the module was found.
    """
    for module in GATE_DEPENDENCIES[name]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any failure of the checked code is a finding, not a crash
            text = " ".join(f"{type(exc).__name__}: {exc}".split())
            if len(text) > 300:
                text = text[:297] + "..."
            return f"{module} cannot be imported: {text} ({name} {_where(name)})"
    return None


def available(name: str) -> bool:
    """True when every module the gate uses of ``name`` imports."""
    return problem(name) is None
