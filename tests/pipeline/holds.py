"""Hold a ``cosmo-runner`` process at a pipeline step until the test says go.

:func:`install` wraps the chosen steps (validators, one plugin validator, the final log, the
summary printed after it): each creates ``HOLD/NAME.ready`` and waits for ``HOLD/NAME.go``;
when the first signal interrupts the wait it creates ``HOLD/NAME.interrupted`` and carries
on. Called in the process under test just before ``cli.main()``: as a fork server prelude
(tests/forkserver.py), or by :data:`FRESH` in a fresh interpreter. No pytest here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The same, for ``python -c FRESH HOLD POINTS ARGS...`` (a fresh interpreter; ROOT on sys.path)
FRESH = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from tests.pipeline.holds import install; install(sys.argv.pop(1), sys.argv.pop(1)); "
    "from cosmo_runner.cli import main; sys.exit(main())"
)


def install(hold: str, points: str) -> None:
    """Hold at each of ``points`` (comma-separated), signalling through folder ``hold``."""
    from cosmo_runner import pipeline, validators
    from cosmo_runner.triage import report

    folder = Path(hold)
    wanted = points.split(",")

    def wait(name: str) -> None:
        (folder / f"{name}.ready").touch()
        try:
            while not (folder / f"{name}.go").exists():
                time.sleep(0.01)
        except BaseException:  # the first signal has been taken: say so, then carry on
            (folder / f"{name}.interrupted").touch()
            raise

    def held(owner: Any, attr: str, name: str, swallow: bool = False) -> None:
        original: Callable[..., Any] = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                wait(name)
            except Exception:  # a careless plugin: catches the interrupt and carries on
                if not swallow:
                    raise
            return original(*args, **kwargs)

        setattr(owner, attr, wrapper)

    # private on purpose: the holds wrap pipeline steps (the runner's methods) that have no
    # public hook, so that a signal lands inside the chosen step and not before or after it
    if "validators" in wanted:
        held(pipeline._Runner, "_run_validators", "validators")
    if "plugin" in wanted:
        held(validators, "run_validator", "plugin", swallow=True)
    if "finish" in wanted:
        held(pipeline._Runner, "finish", "finish")
    if "summary" in wanted:
        held(report, "run_summary", "summary")
