"""The environment gate as a run takes it: observe the environment, then check it.

:class:`Gate` is the seam between a run (``run``, ``validate``, ``verify``'s replay) and the
environment: :meth:`Gate.observe` takes the snapshot that goes into the first run log, and
:meth:`Gate.check` runs the smoke checks on it once that log is on disk. The default
observes and checks afresh every time. A caller that runs many specs in one process, where
the environment cannot change between them (the test suite's session fixture, a batch
worker), may pass a subclass that reuses a verified observation; the pipeline cannot tell
the difference, so it keeps one code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cosmo_runner.env.smoke import ImportProbes, SmokeReport
    from cosmo_runner.env.snapshot import EnvironmentState


class Gate:
    """Observe, then check; a fresh observation and a fresh verdict at every call."""

    def observe(self, manifest: str | None, cwd: Path | None) -> EnvironmentState:
        """The environment snapshot for ``--manifest`` ``manifest`` seen from ``cwd``."""
        from cosmo_runner.env.snapshot import capture

        return capture(manifest, cwd)

    def check(
        self,
        state: EnvironmentState,
        *,
        strict: bool,
        imports: ImportProbes | None,
        probe_all: bool,
    ) -> SmokeReport:
        """The smoke checks on ``state`` (see :func:`cosmo_runner.env.smoke.run_checks`)."""
        from cosmo_runner.env.smoke import run_checks

        return run_checks(state, strict=strict, imports=imports, probe_all=probe_all)
