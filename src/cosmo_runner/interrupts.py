"""SIGINT and SIGTERM during a command: the first signal decides, nothing can break the end.

:class:`SignalGuard` replaces the handlers of SIGINT and SIGTERM while it is installed:

- the **first** signal raises :class:`~cosmo_runner.errors.Interrupted` once, wherever the
  main thread is, and decides the exit code (130 for SIGINT, 143 for SIGTERM);
- **later** signals are ignored: Ctrl-C pressed twice, or TERM, TERM, INT, cannot interrupt
  the writing of the final log nor change the code;
- once :meth:`SignalGuard.close` is called (the run's outcome is decided and its final log
  is being written), **every** signal is ignored, so the exit code always equals the one
  in the final log.

A first signal swallowed by code that catches ``Exception`` (a plugin) is not lost:
:meth:`SignalGuard.check` raises it again at the next step, and :attr:`SignalGuard.first`
says it happened. Standard library only: the CLI installs a guard before any heavy import.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

from cosmo_runner.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """See the module docstring. Use as a context manager (installs, then restores)."""

    def __init__(self) -> None:
        self.first: int | None = None  # the signal that decided, if any
        self.closed = False
        self.ignored: list[int] = []  # signals after the first, or after close, in order
        self._previous: dict[int, Any] = {}
        self._wakeup: tuple[int, int] | None = None  # (read end, write end)
        self._previous_wakeup = -1

    def install(self) -> bool:
        """Take over SIGINT and SIGTERM (False, and nothing changed, off the main thread).

        Python runs pending handlers in signal-number order, so TERM then INT sent back to
        back would reach us as INT first. The wakeup fd receives each signal number in
        arrival order; the handler reads it to know which signal really came first.
        """
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return False
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._wakeup = (read_end, write_end)
        self._previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return True

    def restore(self, *, ignore: bool = False) -> None:
        """Put the previous handlers back (a no-op when :meth:`install` did nothing).

        ``ignore``: set SIGINT and SIGTERM to ``SIG_IGN`` instead, for a process whose
        outcome is final and that is about to exit (Python resets its own handlers to the
        default at shutdown; ``SIG_IGN`` stays, so a late signal cannot kill it).
        """
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if ignore else handler)
        if self._wakeup is not None:
            signal.set_wakeup_fd(self._previous_wakeup)
            for fd in self._wakeup:
                os.close(fd)
            self._wakeup = None

    def _arrived(self, signum: int) -> int:
        """The first of ours among the signals that arrived since the last look (in order)."""
        if self._wakeup is None:
            return signum
        arrived = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._wakeup[0], 512):
                arrived += chunk
        return next((s for s in arrived if s in SIGNALS), signum)

    def close(self) -> None:
        """The outcome is decided: from now on every signal is ignored."""
        self.closed = True

    def check(self) -> None:
        """Raise the first signal again if it fired and was swallowed (a step boundary)."""
        if self.first is not None and not self.closed:
            raise Interrupted(self.first)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.first is None and not self.closed:
            self.first = self._arrived(signum)
            raise Interrupted(self.first)
        self.ignored.append(signum)

    def __enter__(self) -> SignalGuard:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()
