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
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cosmo_runner.env import distmeta, optional, origins
from cosmo_runner.env.lock import canonicalize_name
from cosmo_runner.env.manifest import Manifest
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
    return _probes_for(found)


def _probes_for(manifest: Manifest, modules: list[str] | None = None) -> ImportProbes:
    """Probes of ``modules`` (default: every required import) with the manifest's timeout."""
    imports = manifest.data["imports"]
    timeout = imports.get("timeout_seconds", DEFAULT_IMPORT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        timeout = DEFAULT_IMPORT_TIMEOUT  # only when the schema could not be checked: gate fails
    chosen = imports["modules"] if modules is None else modules
    return ImportProbes(chosen, manifest.severity("imports"), float(timeout))


def run_checks(
    state: EnvironmentState,
    *,
    strict: bool = False,
    pip_check: bool = False,
    imports: ImportProbes | None = None,
    probe_all: bool = True,
) -> SmokeReport:
    """All checks, in a fixed order. ``strict`` makes extra distributions errors.

    ``probe_all`` (``smoke``) imports every required module in fresh interpreters;
    without it (``run``, ``validate``) only the required imports that no locked
    distribution installs are probed, since the others are vouched for in-process by their
    origin and their distribution's RECORD (see bench/results.md for the measurements).
    """
    checks: list[Check] = []
    manifest = state.manifest
    if manifest is None:
        if imports is not None:
            imports.close()
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
    required: list[str] = manifest.data["imports"]["modules"]
    owned = _locked_top_levels(state)
    wanted = required if probe_all else [m for m in required if m.split(".")[0] not in owned]
    if imports is not None and imports.modules != wanted:
        imports.close()
        imports = None
    if imports is None and wanted:
        imports = _probes_for(manifest, wanted)
    checks.extend(_check_platform(state))
    checks.extend(_check_tools(state))
    checks.extend(_check_packages(state, strict=strict))
    checks.extend(_check_records(state))
    checks.extend(_check_requirements(state.distributions))
    checks.extend(_check_origins(state))
    checks.extend(_check_wheels(state))
    checks.extend(_check_direct_urls(state))
    if not probe_all:
        vouched = len(required) - len(wanted)
        checks.append(
            Check(
                "imports",
                "ok",
                f"{vouched} of {len(required)} required imports vouched for in-process by their "
                f"origin and locked distribution (not probed; 'cosmo-runner smoke' imports "
                f"them all); {len(wanted)} probed in fresh interpreters",
                observed={"probed": wanted},
            )
        )
    checks.extend(imports.collect() if imports is not None else [])
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


# Runs in a fresh interpreter: imports each module named on the command line and reports on
# a private copy of stdout (fd 1 itself is pointed at stderr, so whatever the imported code
# prints cannot garble the report), one JSON line as each import starts and one as it ends.
_IMPORT_PROBE = """
import importlib, json, os, sys
report = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
def say(**fields):
    report.write(json.dumps(fields) + "\\n")
    report.flush()
for name in sys.argv[1:]:
    say(start=name)
    try:
        importlib.import_module(name)
        say(done=name, error=None)
    except BaseException as exc:
        say(done=name, error=": ".join(filter(None, (type(exc).__name__, str(exc)))))
"""

DEFAULT_IMPORT_TIMEOUT = 60.0
MESSAGE_LIMIT = 500


def one_line(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """A multi-line message (numpy's ImportError) joined on one line, at most ``limit`` long.

    A longer one keeps its head and its tail around `` ... ``: numpy puts the cause last
    ("Original error was: ...").
    """
    joined = " ".join(text.split())
    if len(joined) <= limit:
        return joined
    head = (limit - 5) // 2
    return f"{joined[:head]} ... {joined[len(joined) - (limit - 5 - head) :]}"


def isolation_flags() -> list[str]:
    """The interpreter options a probe needs to see what this process sees.

    ``-P`` always: the probe runs ``-c`` code, which would put the current directory on
    ``sys.path`` although the run itself (a console script) does not have it there; this
    process's own ``sys.path`` is judged in-process by :mod:`cosmo_runner.env.origins`.
    Then the parent's ``-I``, or its ``-E`` and ``-s``.
    """
    flags = ["-P"]
    if sys.flags.isolated:
        return [*flags, "-I"]
    if sys.flags.ignore_environment:
        flags.append("-E")
    if sys.flags.no_user_site:
        flags.append("-s")
    return flags


class ImportProbes:
    """Required imports, checked in fresh interpreters running side by side.

    A fresh interpreter sees exactly what a pipeline run would import, unaffected by what
    this process already loaded, with the run's isolation (:func:`isolation_flags`). The
    top-level packages are spread over as many interpreters as there are CPUs (more would
    only import numpy again and again), the packages with the most required modules first,
    each to the least loaded interpreter. Each import has ``timeout`` seconds (the first one
    counts from the interpreter's start): an interpreter still on one import then is killed
    with its process group, the import is reported as hanging, and the modules after it in
    that interpreter as not checked.
    """

    def __init__(
        self, modules: list[str], severity: str, timeout: float = DEFAULT_IMPORT_TIMEOUT
    ) -> None:
        self.modules = modules
        self.severity = severity
        self.timeout = timeout
        packages: dict[str, list[str]] = {}
        for module in modules:
            packages.setdefault(module.split(".")[0], []).append(module)
        bins: list[list[str]] = [[] for _ in range(max(1, min(os.cpu_count() or 1, len(packages))))]
        for group in sorted(packages.values(), key=len, reverse=True):
            min(bins, key=len).extend(group)
        command = [sys.executable, *isolation_flags(), "-c", _IMPORT_PROBE]
        self.probes: list[_Probe] = []
        try:
            for group in bins:
                if group:
                    proc = subprocess.Popen(
                        [*command, *group],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        start_new_session=True,  # a timeout kills what the import started too
                    )
                    deadline = time.monotonic() + timeout
                    self.probes.append(_Probe(group, proc, deadline, started=group[0]))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill every probe still running (with its process group), reap it, close its pipes."""
        for probe in self.probes:
            probe.stop()

    def collect(self) -> list[Check]:
        """Wait for the probes (each import until its deadline); their reports as checks."""
        try:
            self._wait()
        finally:
            self.close()
        outcome: dict[str, str | None] = {}
        for probe in self.probes:
            outcome.update(probe.outcome(self.timeout))
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
                        f"import {module} {text}",
                        observed=text,
                    )
                )
        return checks

    def _wait(self) -> None:
        """Read every probe's pipes until they close, killing a probe past its deadline."""
        with selectors.DefaultSelector() as selector:
            for probe in self.probes:
                for stream in (probe.proc.stdout, probe.proc.stderr):
                    if stream is not None:
                        selector.register(stream, selectors.EVENT_READ, probe)
            while selector.get_map():
                now = time.monotonic()
                for probe in self.probes:
                    if not probe.eof and now >= probe.deadline:
                        _unregister(selector, probe)
                        probe.timed_out = True
                        probe.stop()
                waiting = [p.deadline for p in self.probes if not p.eof]
                if not waiting:
                    break
                for key, _ in selector.select(max(0.0, min(waiting) - now)):
                    probe = key.data
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fileobj)
                        probe.eof = not any(k.data is probe for k in selector.get_map().values())
                    elif key.fileobj is probe.proc.stdout:
                        probe.read_report(data, self.timeout)
                    else:
                        probe.err = (probe.err + data)[-_STDERR_KEPT:]


_STDERR_KEPT = 65536


def _unregister(selector: selectors.BaseSelector, probe: _Probe) -> None:
    for key in list(selector.get_map().values()):
        if key.data is probe:
            selector.unregister(key.fileobj)


@dataclass
class _Probe:
    """One probe interpreter: its modules, process, deadline and what it reported so far."""

    group: list[str]
    proc: subprocess.Popen[bytes]
    deadline: float
    out: bytes = b""
    err: bytes = b""
    started: str | None = None  # the import under way (the first one from the start)
    timed_out: bool = False
    eof: bool = False  # both pipes closed: the interpreter is exiting or gone
    done: dict[str, str | None] = field(default_factory=dict)  # module -> None | error text

    def read_report(self, data: bytes, timeout: float) -> None:
        """Take complete report lines; each start and end moves the deadline on."""
        self.out += data
        *lines, self.out = self.out.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if "start" in event:
                self.started = str(event["start"])
            elif "done" in event:
                error = event.get("error")
                self.done[str(event["done"])] = None if error is None else str(error)
            self.deadline = time.monotonic() + timeout

    def stop(self) -> None:
        """Reap the interpreter: one that closed its pipes gets until its deadline to exit,
        any other is killed at once with its process group. Then close the pipes."""
        if self.proc.returncode is None:
            try:
                if self.eof:
                    self.proc.wait(max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            if self.proc.poll() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def outcome(self, timeout: float) -> dict[str, str | None]:
        """``{module: None (imported) | why not}`` for this interpreter's modules."""
        result: dict[str, str | None] = {}
        for module in self.group:
            if module in self.done:
                error = self.done[module]
                result[module] = None if error is None else "failed: " + one_line(error)
            elif self.timed_out and module == self.started:
                result[module] = (
                    f"timed out after {timeout:g} s (the import hung; probe killed; "
                    "set imports.timeout_seconds in the manifest to allow longer)"
                )
            elif self.timed_out:
                result[module] = f"not checked: the probe timed out importing {self.started}"
            else:
                last = (self.err.decode(errors="replace").strip().splitlines() or [""])[-1]
                result[module] = f"failed: the probe interpreter {self._exit_text()}" + (
                    f": {one_line(last)}" if last else ""
                )
        return result

    def _exit_text(self) -> str:
        code = self.proc.returncode
        if code is not None and code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code} before reporting"


def _locked_top_levels(state: EnvironmentState) -> list[str]:
    """The top-level modules the installed locked distributions install (from their RECORDs)."""
    names: dict[str, None] = {}
    for name in sorted(state.lock.pins if state.lock else {}):
        dist = state.distributions.get(name)
        if dist is not None:
            names.update(dict.fromkeys(origins.top_level_modules(dist)))
    return list(names)


def _checked_modules(state: EnvironmentState) -> list[str]:
    """The manifest's required imports, then the top-level modules of each locked distribution."""
    assert state.manifest is not None
    names = dict.fromkeys(state.manifest.data["imports"]["modules"])
    names.update(dict.fromkeys(_locked_top_levels(state)))
    return list(names)


def _check_origins(state: EnvironmentState) -> list[Check]:
    """Each checked module resolves inside the environment's site-packages or the stdlib."""
    found = origins.resolve(_checked_modules(state))
    bad = [o for o in found if not o.inside]
    checks = [
        Check(
            "origins",
            "ok",
            f"{len(found) - len(bad)} of {len(found)} required and locked modules resolve "
            "inside the environment's site-packages or the standard library",
        )
    ]
    checks += [
        Check(
            f"origin:{o.module}",
            "error",
            o.message,
            observed={"path": o.path, "why": o.why, "imported": o.imported},
        )
        for o in bad
    ]
    return checks


def _check_wheels(state: EnvironmentState) -> list[Check]:
    """Each locked distribution's WHEEL has a tag this interpreter can use."""
    if state.lock is None:
        return []
    recorded: dict[str, list[str]] = state.observed.get("wheel_tags") or {}
    supported = distmeta.supported_tags()
    checks = []
    for name in sorted(state.lock.pins):
        if name not in state.distributions:
            continue  # reported as not installed
        tags = recorded.get(name)
        if tags is None:
            checks.append(
                Check(
                    f"wheel:{name}",
                    "warn",
                    f"{name}: no WHEEL file (not installed from a wheel); tags not checked",
                )
            )
        elif supported is None:
            checks.append(
                Check(
                    f"wheel:{name}",
                    "warn",
                    f"{name}: WHEEL tags {', '.join(tags)} recorded, not checked{_UNCHECKED}",
                    observed=tags,
                )
            )
        elif not distmeta.usable(tags, supported):
            checks.append(
                Check(
                    f"wheel:{name}",
                    "error",
                    f"{name}: WHEEL tag {', '.join(tags)} is not supported by this interpreter "
                    f"(python {state.observed['python']['version_short']} on "
                    f"{state.observed['machine']}); reinstall it from the lock",
                    observed=tags,
                )
            )
    return checks


def _check_direct_urls(state: EnvironmentState) -> list[Check]:
    """No locked name is installed editable or from a local path (PEP 610 direct_url.json)."""
    if state.lock is None or state.manifest is None:
        return []
    severity = (
        "warn" if state.manifest.data["lock"].get("direct_url_severity") == "warn" else "error"
    )
    checks = []
    for name in sorted(state.lock.pins):
        dist = state.distributions.get(name)
        found = distmeta.direct_url(dist) if dist is not None else None
        if found is None:
            continue
        how = {
            "editable": f"installed editable from {found.url}",
            "local": f"installed from a local path {found.url}",
            "url": f"installed from the url {found.url}, not from the lock's index",
            "invalid": f"has an unreadable direct_url.json: {found.detail}",
        }[found.kind]
        checks.append(
            Check(
                f"direct-url:{name}",
                _status(False, severity if found.local else "warn"),
                f"{name}: {how} (direct_url.json); the lock pins {name}=={state.lock.pins[name]}",
                observed={"kind": found.kind, "url": found.url},
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


def _check_records(state: EnvironmentState) -> list[Check]:
    """Installed files against RECORD (:mod:`cosmo_runner.env.records`): one error per
    distribution naming its first files, after one summary line."""
    found = state.records
    if found is None:
        return []  # no lock: the lock check has said so
    summary = found.summary()
    bytecode = found.bytecode
    text = (
        f"{summary['distributions']} locked distributions: {found.files} files "
        f"({found.bytes / 1e6:.1f} MB) checked against RECORD"
    )
    if bytecode is not None:
        text += f", {bytecode['checked']} .pyc files against their source"
    text += f" ({found.seconds:.2f} s, {found.cache['hits']} cached)"
    checks = [Check("records", "ok", text, observed=summary["digest"])]
    for dist in found.problems:
        checks.append(
            Check(
                f"records:{dist.name}",
                "error",
                dist.message() or dist.name,
                observed={
                    "changed": dist.changed,
                    "missing": dist.missing,
                    "bytecode": dist.bytecode,
                    "problems": dist.problems,
                    "duplicates": dist.duplicates,
                },
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
