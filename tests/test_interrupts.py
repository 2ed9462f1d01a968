"""SignalGuard's rules in process (real signals to the process are in pipeline/test_signals).

These tests call the guard's handler ``_handle`` and write to its wakeup pipe ``_wakeup``
directly, on purpose: both are private, but a real signal's handler runs at a moment the
test cannot choose, and the arrival order the wakeup fd records cannot be forced with real
signals (Python runs pending handlers by signal number).
"""

from __future__ import annotations

import os
import signal

import pytest

from cosmo_runner.errors import Interrupted
from cosmo_runner.interrupts import SignalGuard


def test_install_and_restore_put_everything_back() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    with SignalGuard() as guard:
        assert signal.getsignal(signal.SIGINT) == guard._handle
        assert signal.getsignal(signal.SIGTERM) == guard._handle
    assert {s: signal.getsignal(s) for s in before} == before
    assert signal.set_wakeup_fd(wakeup_before) == wakeup_before


def test_the_first_raises_once_later_ones_are_recorded() -> None:
    with SignalGuard() as guard:
        with pytest.raises(Interrupted) as caught:
            guard._handle(signal.SIGTERM, None)
        assert caught.value.signum == signal.SIGTERM
        guard._handle(signal.SIGINT, None)  # ignored
        guard._handle(signal.SIGTERM, None)
        assert guard.first == signal.SIGTERM
        assert guard.ignored == [signal.SIGINT, signal.SIGTERM]
        with pytest.raises(Interrupted):  # swallowed by someone: raised again at a step
            guard.check()
        guard.close()
        guard.check()  # closed: the outcome is decided, nothing raises any more


def test_after_close_even_a_first_signal_is_ignored() -> None:
    with SignalGuard() as guard:
        guard.close()
        guard._handle(signal.SIGINT, None)
        assert guard.first is None and guard.ignored == [signal.SIGINT]


def test_arrival_order_comes_from_the_wakeup_fd() -> None:
    """Python runs pending handlers by signal number; the wakeup fd keeps arrival order."""
    with SignalGuard() as guard:
        assert guard._wakeup is not None
        os.write(guard._wakeup[1], bytes([signal.SIGCHLD, signal.SIGTERM, signal.SIGINT]))
        with pytest.raises(Interrupted) as caught:
            guard._handle(signal.SIGINT, None)  # INT's handler runs first (number 2 < 15)
        assert caught.value.signum == signal.SIGTERM and guard.first == signal.SIGTERM


def test_restore_with_ignore_leaves_sig_ign() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    guard = SignalGuard()
    assert guard.install()
    assert not guard.install()  # once
    try:
        guard.restore(ignore=True)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
