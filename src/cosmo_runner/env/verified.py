"""An environment observed and gated once, for a process that runs many specs (a batch worker).

:meth:`VerifiedEnvironment.capture` takes the snapshot and runs the smoke gate once. It is a
:class:`~cosmo_runner.env.gate.Gate` (the pipeline's one environment seam,
``RunOptions.gate``): :meth:`~VerifiedEnvironment.observe` hands each run a copy of that
snapshot instead of observing again, and :meth:`~VerifiedEnvironment.check` answers with
the gate's verdict plus :meth:`VerifiedEnvironment.recheck`, run before each spec: a cheap
look (about a millisecond) at what ``importlib.metadata`` would find, i.e. the
distribution metadata folders (``*.dist-info``, ``*.egg-info``) and ``.pth`` files in every
``sys.path`` directory, with their mtimes, and each directory's own mtime. An install, an
uninstall, an upgrade or a new ``.pth`` in mid-batch changes it; a file edited in place
inside a package does not (the full RECORD check of the gate catches that at the next
worker start).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from cosmo_runner.env.gate import Gate
from cosmo_runner.env.smoke import Check, ImportProbes, SmokeReport
from cosmo_runner.env.snapshot import EnvironmentState

#: entry name -> mtime_ns, per ``sys.path`` directory ("" keys the directory's own mtime)
Fingerprint = dict[str, dict[str, int]]

_WATCHED = (".dist-info", ".egg-info", ".pth")


def fingerprint(paths: list[str] | None = None) -> Fingerprint:
    """What the metadata finder sees on ``paths`` (default ``sys.path``), with mtimes."""
    found: Fingerprint = {}
    for entry in sys.path if paths is None else paths:
        directory = entry or os.getcwd()
        try:
            own = os.stat(directory).st_mtime_ns
            with os.scandir(directory) as listing:
                names = {
                    item.name: item.stat(follow_symlinks=True).st_mtime_ns
                    for item in listing
                    if item.name.endswith(_WATCHED)
                }
        except OSError:  # a missing or unreadable entry (a zip, a removed folder)
            continue
        names[""] = own
        found[directory] = names
    return found


def fingerprint_changes(before: Fingerprint, after: Fingerprint) -> list[str]:
    """One line per change between two fingerprints (sorted; empty when equal)."""
    changes: list[str] = []
    for directory in sorted(set(before) | set(after)):
        old, new = before.get(directory), after.get(directory)
        if old is None or new is None:
            changes.append(f"{directory}: {'appeared' if old is None else 'disappeared'}")
            continue
        for name in sorted((set(old) | set(new)) - {""}):
            if name not in old:
                changes.append(f"{directory}/{name}: added")
            elif name not in new:
                changes.append(f"{directory}/{name}: removed")
            elif old[name] != new[name]:
                changes.append(f"{directory}/{name}: modified")
    return changes


@dataclass(frozen=True)
class VerifiedEnvironment(Gate):
    """A snapshot and its smoke verdict, computed once; ``baseline`` is what the gate saw.

    As a :class:`~cosmo_runner.env.gate.Gate` it answers for the environment it captured,
    from any working directory (a process that gates once has decided its manifest). A run
    asking for another ``--manifest``, for live import probes (``probe_all``) or another
    ``strict`` than the capture's is observed and checked afresh, by the default gate.
    """

    state: EnvironmentState
    smoke: SmokeReport
    baseline: Fingerprint
    manifest: str | None = None  # the --manifest of the capture
    strict: bool = False

    @classmethod
    def capture(
        cls,
        manifest: str | None = None,
        cwd: Path | None = None,
        *,
        strict: bool = False,
        gate: Gate | None = None,
    ) -> VerifiedEnvironment:
        """Fingerprint, snapshot and gate (the ``run`` gate: vouched imports not probed).

        ``gate``: how to observe and check (default: afresh, as :class:`Gate` does); the batch
        client takes ``cli.main``'s, so a caller that reuses a verified observation for its
        runs (the test suite) reuses it for a batch's client too. A worker gates afresh."""
        baseline = fingerprint()
        gate = gate or Gate()
        state = gate.observe(manifest, cwd)
        smoke = gate.check(state, strict=strict, imports=None, probe_all=False)
        return cls(state, smoke, baseline, manifest, strict)

    def observe(self, manifest: str | None, cwd: Path | None) -> EnvironmentState:
        """A copy of the captured snapshot (``cwd`` does not matter; see the class)."""
        if manifest is not None and manifest != self.manifest:
            return super().observe(manifest, cwd)
        return dataclasses.replace(self.state, observed=copy.deepcopy(self.state.observed))

    def check(
        self,
        state: EnvironmentState,
        *,
        strict: bool,
        imports: ImportProbes | None,
        probe_all: bool,
    ) -> SmokeReport:
        """The capture's verdict plus the re-check, for the captured snapshot; else afresh."""
        if (
            imports is not None
            or probe_all
            or strict != self.strict
            or state.manifest_path != self.state.manifest_path
            or state.observed != self.state.observed
        ):
            return super().check(state, strict=strict, imports=imports, probe_all=probe_all)
        return self.rechecked()

    def rechecked(self) -> SmokeReport:
        """The gate's verdict, plus the check ``recheck``: nothing was installed since."""
        changes = self.recheck()
        if not changes:
            check = Check(
                "recheck",
                "ok",
                "installed distributions unchanged since this process's gate",
                observed={"env_id": self.env_id},
            )
        else:
            more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
            check = Check(
                "recheck",
                "error",
                f"installed distributions changed since this process's gate: {changes[0]}{more}",
                observed=changes,
            )
        return SmokeReport([*self.smoke.checks, check])

    @cached_property
    def _document(self) -> dict[str, Any]:
        return self.state.document()

    @property
    def env_id(self) -> str:
        return str(self._document["env_id"])

    def document(self) -> dict[str, Any]:
        """The run log's ``environment`` section (a fresh copy each time)."""
        return copy.deepcopy(self._document)

    def recheck(self) -> list[str]:
        """What changed since the gate (empty: nothing); a change means the gate is stale."""
        return fingerprint_changes(self.baseline, fingerprint(list(self.baseline)))
