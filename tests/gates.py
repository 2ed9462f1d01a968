"""The test suite's gate: the real one, observed and checked once per distinct environment.

Kept free of pytest so that the fork server (tests/forkserver.py) can import it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosmo_runner.env.gate import Gate

if TYPE_CHECKING:
    from cosmo_runner.env.smoke import ImportProbes, SmokeReport
    from cosmo_runner.env.snapshot import EnvironmentState


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


#: Variables that say where the suite is, not what the environment is: pytest sets
#: PYTEST_CURRENT_TEST to each test's id, so keying on it observed afresh in every test.
#: cosmo_runner never reads it and the snapshot does not record it (env.probes' allow-list).
NOT_THE_ENVIRONMENT = frozenset({"PYTEST_CURRENT_TEST"})


class ReusedGate(Gate):
    """The real gate, observed and checked once per distinct environment for the session.

    An observation is reused only when everything it depends on is unchanged: the manifest
    found (path and bytes), the lock it names (bytes), every environment variable (but
    :data:`NOT_THE_ENVIRONMENT`) and ``sys.path``. A test that changes any of them gets a
    fresh, real observation. Live
    import probes (``imports``) are never reused. Callers get copies: nothing they do to a
    log can change what the next test sees.
    """

    def __init__(self) -> None:
        self._states: dict[tuple[Any, ...], EnvironmentState] = {}
        self._verdicts: dict[tuple[Any, ...], SmokeReport] = {}
        self.observed = 0  # real observations taken (the fixture's own test reads these)
        self.checked = 0

    @staticmethod
    def _key(manifest: str | None, cwd: Path | None) -> tuple[Any, ...]:
        from cosmo_runner.env.manifest import locate

        path, source = locate(manifest, cwd)
        lock: str | None = None
        try:
            lock_path = json.loads(path.read_text(encoding="utf-8"))["lock"]["path"]
            lock = _digest(path.parent / lock_path)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # the observation records the manifest's problem; key on its bytes alone
        return (
            str(path.resolve()),
            source,
            _digest(path),
            lock,
            tuple(sorted(i for i in os.environ.items() if i[0] not in NOT_THE_ENVIRONMENT)),
            tuple(sys.path),
        )

    def observe(self, manifest: str | None, cwd: Path | None) -> EnvironmentState:
        key = self._key(manifest, cwd)
        if key not in self._states:
            self._states[key] = super().observe(manifest, cwd)
            self.observed += 1
        state = self._states[key]
        return dataclasses.replace(state, observed=copy.deepcopy(state.observed))

    def check(
        self,
        state: EnvironmentState,
        *,
        strict: bool,
        imports: ImportProbes | None,
        probe_all: bool,
    ) -> SmokeReport:
        if imports is not None:  # live probes of this run: their outcome is the point
            return super().check(state, strict=strict, imports=imports, probe_all=probe_all)
        document = json.dumps(state.document(), sort_keys=True, default=str)
        key = (hashlib.sha256(document.encode()).hexdigest(), strict, probe_all)
        if key not in self._verdicts:
            self._verdicts[key] = super().check(
                state, strict=strict, imports=None, probe_all=probe_all
            )
            self.checked += 1
        return self._verdicts[key]
