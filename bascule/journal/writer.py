"""The run's journal as it is written: one directory per run, ``journal.jsonl`` inside,
append-only, flushed as it goes and readable while the run is in progress. Schema
``bascule.journal/1`` (docs/journal.md).

Every record is one JSON object with ``type``, ``t`` (seconds since the run's origin, on the
machine-wide monotonic clock) and ``wall`` (UTC, ISO 8601). Request samples are folded into
windows (`bascule.journal.windows`); raw samples are written too only when asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bascule.journal.reader import JOURNAL_FILE
from bascule.journal.samples import RequestSample, sample_to_json
from bascule.journal.windows import Window

__all__ = ["Journal"]


class Journal:
    """The append-only JSONL journal of one run. Thread-safe; every record is flushed at once, and
    records that matter for recovery (faults) are also fsynced.

    A write that fails (the disk full) never raises into the writer — a supervisor's or a probe's
    thread — : the journal stops writing, keeps the error in `failure`, and tells `on_failure`
    once (the runner ends the run)."""

    def __init__(
        self,
        run_dir: Path,
        origin: float,
        *,
        raw_samples: bool = False,
        on_failure: Callable[[OSError], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.path = run_dir / JOURNAL_FILE
        self.origin = origin
        self.raw_samples = raw_samples
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._closed = False
        self.failure: OSError | None = None
        self._on_failure = on_failure
        self._listeners: list[Callable[[dict[str, Any]], None]] = []

    def subscribe(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Give `listener` every record from now on, as written (the live game-day page). It is
        called in the writer's thread, in the journal's order, under the journal's lock: it must
        only hand the record on (a queue), never block or write to the journal. A listener that
        raises is dropped; the journal goes on."""
        with self._lock:
            self._listeners.append(listener)

    def write(
        self, record_type: str, *, durable: bool = False, at: float | None = None, **fields: Any
    ) -> None:
        now = time.monotonic() if at is None else at
        record = {
            "type": record_type,
            "t": round(now - self.origin, 6),
            "wall": datetime.now(UTC).isoformat(timespec="milliseconds"),
            **fields,
        }
        line = json.dumps(record, ensure_ascii=False, default=_default, separators=(",", ":"))
        with self._lock:
            if self._closed or self.failure is not None:
                return
            try:
                self._file.write(line + "\n")
                self._file.flush()
                if durable:
                    os.fsync(self._file.fileno())
                self._tell(record)
                return
            except OSError as exc:
                self.failure = failure = exc
        if self._on_failure is not None:
            self._on_failure(failure)

    def _tell(self, record: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:  # a page that fails must not stop the run's journal
                self._listeners.remove(listener)

    def window(self, window: Window) -> None:
        record = window.to_record()
        record.pop("type")
        self.write("window", at=self.origin + window.start + window.length, **record)

    def sample(self, sample: RequestSample) -> None:
        """Probe samples always (a few per second, and what detection and recovery are timed
        from); load samples only with ``raw_samples``."""
        if self.raw_samples or sample.source != "load":
            self.write("sample", at=sample.started, **sample_to_json(sample))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._file.flush()
                    os.fsync(self._file.fileno())
                except OSError as exc:
                    self.failure = self.failure or exc
                finally:
                    with contextlib.suppress(OSError):
                        self._file.close()


def _default(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
