"""The text of ``cosmo-runner runs``: one aligned line per run, then why runs are lost."""

from __future__ import annotations

from cosmo_runner.triage.runs import RunEntry, RunListing

_HEADER = ("RUN ID", "STATUS", "EXIT", "STARTED", "ENV ID", "SPEC", "PATH")


def _status(entry: RunEntry) -> str:
    if entry.totals is None:
        return entry.status
    totals = ", ".join(f"{count} {status}" for status, count in entry.totals.items())
    return f"{entry.status} (batch: {totals or 'no runs'})"


def _row(entry: RunEntry) -> tuple[str, ...]:
    return (
        entry.run_id or "-",
        _status(entry),
        "-" if entry.exit_code is None else str(entry.exit_code),
        entry.started_at or "-",
        entry.env_id or "-",
        entry.spec_name or "-",
        entry.path,
    )


def runs_table(listing: RunListing) -> str:
    """The listing as text; an empty folder says so."""
    if not listing.entries:
        return f"no runs in {listing.directory}"
    rows = [_HEADER, *(_row(e) for e in listing.entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for entry in listing.entries:
        if entry.reason:
            lines.append(f"{entry.status}: {entry.path}: {entry.reason}")
    counts = ", ".join(f"{n} {status}" for status, n in listing.counts().items())
    n = len(listing.entries)
    lines.append(f"{n} {'entry' if n == 1 else 'entries'} in {listing.directory}: {counts}")
    return "\n".join(lines)
