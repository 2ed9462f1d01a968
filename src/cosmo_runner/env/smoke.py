"""The smoke test: a few seconds that confirm the environment before any step runs.

Pure checks over an :class:`~cosmo_runner.env.snapshot.EnvironmentState`: each returns
:class:`Check` records naming expected and observed values. Only the import probes and the
optional ``pip_check`` start subprocesses; everything else is in-process.

The core (manifest, lock sha256, Python, platform, installed versions against the lock)
needs the standard library only, so the gate never crashes on its own dependencies: when
``packaging`` or ``jsonschema`` cannot be imported that is an error-level check
(``gate-dependency:<name>``) and the checks that need them say what they skipped
(see :mod:`cosmo_runner.env.optional`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmo_runner.env import optional
from cosmo_runner.env.lock import canonicalize_name
from cosmo_runner.env.manifest import load as load_manifest
from cosmo_runner.env.probes import TOOLING
from cosmo_runner.env.snapshot import EnvironmentState, lock_drift
from cosmo_runner.errors import ManifestError


@dataclass(frozen=True)
class Check:
    """One smoke check. ``status`` is ``ok``, ``warn`` or ``error``."""

    name: str
    status: str
    message: str
    expected: Any = None
    observed: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SmokeReport:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.status != "error" for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [c.message for c in self.checks if c.status == "error"]

    def as_dict(self) -> dict[str, Any]:
        counts = {s: sum(c.status == s for c in self.checks) for s in ("ok", "warn", "error")}
        return {
            "passed": self.passed,
            "counts": counts,
            "checks": [c.as_dict() for c in self.checks],
        }


def _status(ok: bool, severity: str) -> str:
    return "ok" if ok else ("error" if severity == "error" else "warn")


_UNCHECKED = " (packaging is unavailable; see gate-dependency:packaging)"


def _check_gate_dependencies(schema_problem: str | None) -> list[Check]:
    """The gate's own dependencies import (error-level: the gate is only partly able without)."""
    checks = []
    for name in optional.GATE_DEPENDENCIES:
        problem = optional.problem(name)
        if problem is None:
            checks.append(Check(f"gate-dependency:{name}", "ok", f"{name} imports"))
        else:
            skipped = {
                "packaging": "PEP 440 specifiers, lock markers and requirements are not checked",
                "jsonschema": "the manifest is not checked against its schema",
            }[name]
            checks.append(
                Check(
                    f"gate-dependency:{name}",
                    "error",
                    f"gate dependency {name} is unusable: {problem}; {skipped}",
                    observed=problem,
                )
            )
    if schema_problem is not None and all(c.status == "ok" for c in checks):
        checks.append(Check("manifest-schema", "error", schema_problem))
    return checks


_CLAUSE = re.compile(r"^(===|==|!=|<=|>=|<|>|~=)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?$")


def specifier_contains(specifier: str, version: str) -> bool | None:
    """Whether ``version`` satisfies the PEP 440 ``specifier`` (pre-releases allowed).

    Uses ``packaging`` when it imports. Without it, a fallback evaluates plain release
    clauses (``>=3.11,<3.14``, ``==3.11.*``) on integer tuples and returns None for anything
    else (local versions, pre-releases, ``~=``), so the gate reports "not checked" rather
    than guessing.
    """
    if optional.available("packaging"):
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion

        try:
            return SpecifierSet(specifier).contains(version, prereleases=True)
        except (InvalidSpecifier, InvalidVersion):
            return None
    if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)*", version):
        return None
    have = tuple(int(p) for p in version.split("."))
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = _CLAUSE.match(clause)
        if match is None or match[1] in ("~=", "==="):
            return None
        op, want = match[1], tuple(int(p) for p in match[2].split("."))
        if match[3]:  # prefix match: ==X.Y.* / !=X.Y.*
            if op not in ("==", "!="):
                return None
            same = have[: len(want)] == want
            if same != (op == "=="):
                return False
            continue
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if not {"==": a == b, "!=": a != b, "<=": a <= b, ">=": a >= b, "<": a < b, ">": a > b}[op]:
            return False
    return True


def start_import_probes(
    manifest_arg: str | None = None, cwd: Path | None = None
) -> ImportProbes | None:
    """Start the required-import probes early, so they overlap with :func:`capture`.

    Returns None when the manifest cannot be read (the checks then report that).
    """
    try:
        found = load_manifest(manifest_arg, cwd)
    except ManifestError:
        return None
    return ImportProbes(found.data["imports"]["modules"], found.severity("imports"))


def run_checks(
    state: EnvironmentState,
    *,
    strict: bool = False,
    pip_check: bool = False,
    imports: ImportProbes | None = None,
) -> SmokeReport:
    """All checks, in a fixed order. ``strict`` makes extra distributions errors."""
    checks: list[Check] = []
    manifest = state.manifest
    if manifest is None:
        checks.append(
            Check(
                "manifest",
                "error",
                f"{state.manifest_error}; pass --manifest PATH or set $COSMO_MANIFEST",
                expected=str(state.manifest_path),
            )
        )
        return SmokeReport(checks)
    checks.append(
        Check(
            "manifest",
            "ok",
            f"manifest {manifest.path} ({manifest.source})",
            observed=str(manifest.path),
        )
    )
    checks.extend(_check_gate_dependencies(manifest.schema_problem))
    checks.append(_check_lock(state))
    if imports is None or imports.modules != manifest.data["imports"]["modules"]:
        imports = ImportProbes(manifest.data["imports"]["modules"], manifest.severity("imports"))
    checks.extend(_check_platform(state))
    checks.extend(_check_tools(state))
    checks.extend(_check_packages(state, strict=strict))
    checks.extend(_check_requirements(state.distributions))
    checks.extend(imports.collect())
    if pip_check:
        checks.append(_real_pip_check())
    return SmokeReport(checks)


def _check_lock(state: EnvironmentState) -> Check:
    assert state.manifest is not None
    expected = state.manifest.data["lock"]["sha256"]
    severity = state.manifest.severity("lock")
    if state.lock is None:
        return Check(
            "lock",
            "error",
            f"{state.lock_error}; run 'make lock' or fix manifest /lock/path",
            expected=expected,
        )
    ok = state.lock.sha256 == expected
    message = (
        f"lock {state.lock.path} sha256 matches the manifest"
        if ok
        else f"lock {state.lock.path}: sha256 {state.lock.sha256[:12]}... differs from the "
        f"manifest's {expected[:12]}...; run 'make lock' to re-sync"
    )
    return Check(
        "lock", _status(ok, severity), message, expected=expected, observed=state.lock.sha256
    )


def _check_platform(state: EnvironmentState) -> list[Check]:
    assert state.manifest is not None
    data, obs = state.manifest.data, state.observed
    version = obs["python"]["version_short"]
    spec = data["python"]["specifier"]
    contained = specifier_contains(spec, version)
    ok = bool(contained)
    where = "within" if ok else "outside" if contained is not None else "not checked against"
    checks = [
        Check(
            "python",
            _status(ok, state.manifest.severity("python")),
            f"python {version} {where} {spec}" + _UNCHECKED * (contained is None),
            expected=spec,
            observed=version,
        )
    ]
    impl = data["python"].get("implementation")
    if impl:
        ok = impl == obs["python"]["implementation"]
        checks.append(
            Check(
                "python-implementation",
                _status(ok, state.manifest.severity("python")),
                f"python implementation: manifest {impl}, running {obs['python']['implementation']}",
                expected=impl,
                observed=obs["python"]["implementation"],
            )
        )
    for name, key in (("os_family", "os_family"), ("machine", "machines")):
        allowed = data[key]["allowed"]
        value = obs[name]
        ok = value in allowed
        checks.append(
            Check(
                name,
                _status(ok, state.manifest.severity(key)),
                f"{name.replace('_', ' ')} {value} {'in' if ok else 'not in'} {allowed}",
                expected=allowed,
                observed=value,
            )
        )
    return checks


# Runs in a fresh interpreter: imports each module named on the command line and prints
# {"module": null | "ExceptionType: message"} as JSON.
_IMPORT_PROBE = """
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        out[name] = None
    except BaseException as exc:
        out[name] = (type(exc).__name__ + ": " + str(exc)).splitlines()[0]
print(json.dumps(out))
"""


class ImportProbes:
    """Required imports, checked in fresh interpreters running side by side.

    A fresh interpreter sees exactly what a pipeline run would import, unaffected by what
    this process already loaded. The top-level packages are spread over as many
    interpreters as there are CPUs (more would only import numpy again and again), the
    packages with the most required modules first, each to the least loaded interpreter.
    """

    def __init__(self, modules: list[str], severity: str) -> None:
        self.modules = modules
        self.severity = severity
        packages: dict[str, list[str]] = {}
        for module in modules:
            packages.setdefault(module.split(".")[0], []).append(module)
        bins: list[list[str]] = [[] for _ in range(max(1, min(os.cpu_count() or 1, len(packages))))]
        for group in sorted(packages.values(), key=len, reverse=True):
            min(bins, key=len).extend(group)
        self.procs = [
            (
                group,
                subprocess.Popen(
                    [sys.executable, "-c", _IMPORT_PROBE, *group],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for group in bins
            if group
        ]

    def collect(self) -> list[Check]:
        outcome: dict[str, str | None] = {}
        for group, proc in self.procs:
            out, err = proc.communicate()
            try:
                outcome.update(json.loads(out.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                last = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
                outcome.update(dict.fromkeys(group, f"interpreter failed: {last}"))
        checks = []
        for module in self.modules:
            text = outcome.get(module)
            if text is None:
                checks.append(Check(f"import:{module}", "ok", f"import {module}"))
            else:
                checks.append(
                    Check(
                        f"import:{module}",
                        _status(False, self.severity),
                        f"import {module} failed: {text}",
                        observed=text,
                    )
                )
        return checks


def _check_tools(state: EnvironmentState) -> list[Check]:
    assert state.manifest is not None
    checks = []
    for tool in state.manifest.data["tools"]:
        name = canonicalize_name(tool["name"])
        spec = tool["specifier"]
        dist = state.distributions.get(name)
        found = dist.version if dist else None
        contained = specifier_contains(spec, found) if found is not None else False
        shown = found or "not installed"
        checks.append(
            Check(
                f"tool:{name}",
                _status(bool(contained), tool.get("severity", "error")),
                f"{name}: manifest {spec or 'any'}, installed {shown}"
                + _UNCHECKED * (contained is None),
                expected=spec,
                observed=found,
            )
        )
    return checks


def _check_packages(state: EnvironmentState, *, strict: bool) -> list[Check]:
    assert state.manifest is not None
    if state.lock is None:
        return []
    severity = state.manifest.severity("lock")
    checks = []
    for item in lock_drift(state.lock, state.distributions):
        name, locked, installed = item["name"], item["locked"], item["installed"]
        checks.append(
            Check(
                f"package:{name}",
                _status(False, severity),
                f"{name}: lock {locked}, "
                + (f"installed {installed}" if installed is not None else "not installed"),
                expected=locked,
                observed=installed,
            )
        )
    total = len(state.lock.pins) + len(state.lock.unevaluated)
    unevaluated = (
        f"; {len(state.lock.unevaluated)} pin(s) with markers not evaluated{_UNCHECKED}"
        if state.lock.unevaluated
        else ""
    )
    checks.insert(
        0,
        Check(
            "packages",
            "ok",
            f"{total - len(checks)} of {total} locked packages installed at their pins"
            + unevaluated,
        ),
    )
    in_lock = {pin.name for pin in state.lock.entries} | set(state.lock.pins)
    extras = sorted(
        f"{n}=={d.version}"
        for n, d in state.distributions.items()
        if n not in in_lock and n not in TOOLING
    )
    if extras:
        extras_severity = (
            "error" if strict else state.manifest.data["lock"].get("extras_severity", "warn")
        )
        checks.append(
            Check(
                "extras",
                _status(False, extras_severity),
                f"{len(extras)} installed distributions not in the lock: {', '.join(extras)}",
                observed=extras,
            )
        )
    return checks


def _check_requirements(dists: dict[str, metadata.Distribution]) -> list[Check]:
    """What ``pip check`` reports, in-process: unmet or conflicting requirements."""
    if not optional.available("packaging"):
        return [Check("requirements", "warn", "installed requirements not checked" + _UNCHECKED)]
    from packaging.markers import UndefinedEnvironmentName
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    problems = []
    for name, dist in sorted(dists.items()):
        for text in dist.requires or []:
            try:
                req = Requirement(text)
                if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                    continue
            except (InvalidRequirement, UndefinedEnvironmentName):
                continue
            dep = dists.get(canonicalize_name(req.name))
            if dep is None:
                problems.append(f"{name} {dist.version} requires {req}, which is not installed")
                continue
            try:
                if not req.specifier.contains(Version(dep.version), prereleases=True):
                    problems.append(
                        f"{name} {dist.version} requires {req}, installed {dep.version}"
                    )
            except InvalidVersion:
                problems.append(f"{name}: installed {req.name} has invalid version {dep.version!r}")
    if not problems:
        return [Check("requirements", "ok", "installed requirements are consistent")]
    return [Check("requirements", "error", p) for p in problems]


def _real_pip_check() -> Check:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0:
        return Check("pip-check", "ok", "pip check: " + (out.splitlines()[0] if out else "ok"))
    return Check("pip-check", "error", "pip check: " + "; ".join(out.splitlines()), observed=out)
