"""Is a ``running`` run still alive? The one place that decides ``running`` or ``lost``.

A run log records who writes it (``process``: pid, host name, boot id and the process's
start time in clock ticks since boot, from ``/proc/<pid>/stat``) and a heartbeat
``updated_at`` that the writer refreshes at every step and at least every
:data:`HEARTBEAT_S` seconds during long steps. A log whose status is ``running`` is
**lost** when

- it was written on this host during this boot and its pid is gone, or the pid now
  belongs to another process (the start time differs: the pid was reused); or
- its heartbeat (``updated_at``, else ``started_at``) is older than :data:`LOST_AFTER_S`
  seconds. For another host or another boot this is the only evidence there is.

Reading never rewrites the log. Used by ``cosmo-runner runs``, ``verify`` and ``env diff``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HEARTBEAT_S = 30.0
LOST_AFTER_S = 120.0
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str | None:
    """This kernel's boot id (Linux), or None where there is none."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    None when the process does not exist or ``/proc`` cannot tell.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may itself hold spaces or ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def process_identity() -> dict[str, Any]:
    """What a run log records about the process that writes it."""
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "boot_id": boot_id(),
        "start_ticks": process_start_ticks(pid),
    }


def parse_time(value: object) -> datetime | None:
    """A log timestamp (``2026-12-01T09:00:00.000000Z``) as an aware datetime, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Liveness:
    """The status a reader should show (``lost`` for a dead ``running`` run) and why."""

    status: str
    reason: str | None = None

    @property
    def lost(self) -> bool:
        return self.status == "lost"


def _pid_verdict(process: dict[str, Any]) -> str | None:
    """Why the writer is certainly gone (same host and boot only), or None if it may live."""
    pid, ticks = process.get("pid"), process.get("start_ticks")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    here_boot = boot_id()
    if (
        process.get("host") != socket.gethostname()
        or here_boot is None
        or process.get("boot_id") != here_boot
    ):
        return None
    now_ticks = process_start_ticks(pid)
    if now_ticks is None:
        return f"process {pid} on this host is gone"
    if isinstance(ticks, int) and ticks != now_ticks:
        return f"process {pid} on this host is gone (the pid now belongs to another process)"
    return None


def liveness(log: dict[str, Any], now: datetime | None = None) -> Liveness:
    """``Liveness(log status)``, or ``Liveness("lost", reason)`` by the rule above."""
    status = log.get("status")
    if status != "running":
        return Liveness(str(status))
    process = log.get("process")
    if isinstance(process, dict):
        gone = _pid_verdict(process)
        if gone is not None:
            return Liveness("lost", gone)
    beat = parse_time(log.get("updated_at")) or parse_time(log.get("started_at"))
    if beat is None:
        return Liveness("lost", "the log records no heartbeat (updated_at)")
    age = ((now or datetime.now(UTC)) - beat).total_seconds()
    if age > LOST_AFTER_S:
        return Liveness(
            "lost",
            f"no heartbeat for {age:.0f} s (limit {LOST_AFTER_S:.0f} s; last {beat:%Y-%m-%dT%H:%M:%SZ})",
        )
    return Liveness("running")
