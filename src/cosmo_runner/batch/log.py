"""``DIR/batch_log.json`` (schema ``schemas/batch_log.schema.json``) and ``batch_log.jsonl``.

Each spec's final state is appended to ``batch_log.jsonl`` as it is committed (one JSON
object a line, cheap at 100 000 specs); ``batch_log.json`` is rewritten atomically at most
once a second (:data:`REWRITE_S`) and at least :data:`REWRITE_SHARE` times as long after
the previous rewrite as that took (so rewriting a log of 100 000 specs takes at most 5% of
the client's time), at least every heartbeat, and completed at the end:
on Ctrl-C too, with every unfinished spec ``interrupted``. Just before that final write the
batch's page, ``DIR/report.html`` (:func:`cosmo_runner.share.report.write_batch_report`), is
written from the completed document, and the log's ``report`` says whether it was.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cosmo_runner.runlog import dumps, utc_now, write_atomic
from cosmo_runner.runstate import HEARTBEAT_S, process_identity

BATCH_LOG_NAME = "batch_log.json"
EVENTS_NAME = "batch_log.jsonl"
REWRITE_S = 1.0
#: a rewrite waits at least this many times as long as the last one took
REWRITE_SHARE = 20
BATCH_LOG_VERSION = 1
SPEC_STATUSES = ("succeeded", "failed", "interrupted", "lost", "reused", "pending")


class BatchLog:
    """The batch log of ``out_dir`` (thread-safe; a daemon thread keeps the heartbeat)."""

    def __init__(self, out_dir: Path, batch_id: str, command: list[str]) -> None:
        self.out_dir = out_dir
        self.path = out_dir / BATCH_LOG_NAME
        self.events = out_dir / EVENTS_NAME
        self._lock = threading.RLock()
        self._saved = 0.0
        self._interval = REWRITE_S
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.doc: dict[str, Any] = {
            "batch_log_version": BATCH_LOG_VERSION,
            "batch_id": batch_id,
            "status": "running",
            "exit_code": None,
            "command": command,
            "cwd": os.getcwd(),
            "started_at": utc_now(),
            "updated_at": None,
            "ended_at": None,
            "process": process_identity(),
            "expected_env_id": None,
            "cluster": None,
            "options": {},
            "specs": [],
            "workers": [],
            "runs": [],
            "totals": {},
            "error": None,
            "report": None,  # the final log: report.html written, or why not
        }
        self._index: dict[str, dict[str, Any]] = {}
        self._final = False

    def add_specs(self, entries: list[dict[str, Any]]) -> None:
        with self._lock:
            for entry in entries:
                self.doc["specs"].append(entry)
                self._index[entry["key"]] = entry

    def spec(self, key: str) -> dict[str, Any]:
        return self._index[key]

    def start(self) -> None:
        self.save(force=True)
        self._beat = threading.Thread(target=self._heartbeat, name="batch-log", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.save(force=True)

    def record(self, key: str, **fields: Any) -> None:
        """Update one spec's entry, append the event, rewrite the log if a second passed."""
        with self._lock:
            entry = self._index[key]
            entry.update(fields)
            event = {"at": utc_now(), "event": "spec", **entry}
            with self.events.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, sort_keys=True) + "\n")
        self.save()

    def event(self, kind: str, **fields: Any) -> None:
        with self._lock, self.events.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"at": utc_now(), "event": kind, **fields}) + "\n")

    def totals(self) -> dict[str, int]:
        counts = Counter(entry["status"] for entry in self.doc["specs"])
        return {status: counts.get(status, 0) for status in SPEC_STATUSES} | {
            "specs": len(self.doc["specs"])
        }

    def _refresh(self) -> None:
        """``updated_at``, ``totals`` and ``runs`` from the spec entries."""
        self.doc["updated_at"] = utc_now()
        self.doc["totals"] = self.totals()
        self.doc["runs"] = [
            {"path": entry["key"]} | ({"run_id": entry["run_id"]} if entry["run_id"] else {})
            for entry in self.doc["specs"]
            if entry.get("run_dir") is not None
        ]

    def save(self, *, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if self._final or (not force and now - self._saved < self._interval):
                return
            self._refresh()
            write_atomic(self.path, dumps(self.doc))
            self._saved = time.monotonic()
            self._interval = max(REWRITE_S, REWRITE_SHARE * (self._saved - now))

    def finish(
        self,
        status: str,
        exit_code: int,
        error: dict[str, Any] | None = None,
        before_write: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """The final log: unfinished specs ``interrupted``, then ``before_write`` (called with
        the completed document, which it may amend; it must not raise), then the write."""
        self._stop.set()
        with self._lock:
            for entry in self.doc["specs"]:
                if entry["status"] == "pending":
                    entry["status"] = "interrupted"
            self.doc.update(status=status, exit_code=exit_code, ended_at=utc_now(), error=error)
            self._refresh()
            if before_write is not None:
                before_write(self.doc)
            self._final = True  # no heartbeat after this; the page and the log agree
            write_atomic(self.path, dumps(self.doc))
