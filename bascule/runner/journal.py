"""The run's journal: one directory per run, ``journal.jsonl`` inside, append-only, flushed as it
goes and readable while the run is in progress. Schema ``bascule.journal/1`` (docs/journal.md).

Every record is one JSON object with ``type``, ``t`` (seconds since the run's origin, on the
machine-wide monotonic clock) and ``wall`` (UTC, ISO 8601). Request samples are folded into
windows of ``window`` seconds (1 s by default) as they arrive, so memory stays bounded however long
the run: a window keeps counts per outcome, data class, serving region and sovereignty level, and a
latency sketch whose buckets are mergeable (DDSketch-style, 1 % relative accuracy) — the metrics
merge windows into any span without keeping a list of every latency. Raw samples are written too
only when asked.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bascule.runner.samples import RequestSample, sample_to_json

__all__ = [
    "JOURNAL_FILE",
    "JOURNAL_SCHEMA",
    "Journal",
    "LatencySketch",
    "Window",
    "WindowAggregator",
    "read_journal",
    "served_region",
]

JOURNAL_SCHEMA = "bascule.journal/1"
JOURNAL_FILE = "journal.jsonl"

_ACCURACY = 0.01
_GAMMA = (1 + _ACCURACY) / (1 - _ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_LATENCY = 1e-6


@dataclass
class LatencySketch:
    """Counts of latencies in log-spaced buckets: bucket ``i`` holds values in
    ``(γ^(i-1), γ^i]`` seconds, γ = 1.01/0.99, so any quantile is known within 1 %."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0

    def add(self, seconds: float) -> None:
        index = math.ceil(math.log(max(seconds, _MIN_LATENCY)) / _LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1

    def merge(self, other: LatencySketch) -> None:
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count

    def quantile(self, q: float) -> float | None:
        if self.count == 0:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen > rank:
                return 2 * _GAMMA**index / (_GAMMA + 1)
        return 2 * _GAMMA ** max(self.buckets) / (_GAMMA + 1)

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.buckets.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> LatencySketch:
        buckets = {int(k): int(v) for k, v in data.items()}
        return cls(buckets, sum(buckets.values()))


def served_region(sample: RequestSample) -> str | None:
    """Where a request's work was done: the region of its retriever hop (or of its last hop), else
    the entry point that answered."""
    for hop in sample.hops:
        if hop.component == "retriever":
            return hop.region
    if sample.hops:
        return sample.hops[-1].region
    return sample.entry_region


@dataclass
class Window:
    """Aggregates of the requests that started in ``[start, start + length)`` (run seconds)."""

    start: float
    length: float
    requests: int = 0
    ok: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)
    by_source: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    by_class: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    regions: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    """Successful requests by data class, then by serving region."""
    levels: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    """Successful requests by the lowest sovereignty level among their hops."""
    golden: list[int] = field(default_factory=lambda: [0, 0])
    """Graded answers: [correct, graded]."""
    degraded: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, sample: RequestSample) -> None:
        self.requests += 1
        self.by_source[sample.source][1] += 1
        klass = sample.data_class or "-"
        self.by_class[klass][1] += 1
        if sample.ok:
            self.ok += 1
            self.by_source[sample.source][0] += 1
            self.by_class[klass][0] += 1
            self.latency.add(sample.latency)
            region = served_region(sample)
            if region:
                self.regions[klass][region] += 1
            levels = [h.sovereignty for h in sample.hops if h.sovereignty]
            if levels:
                self.levels[min(levels, key=_LEVEL_RANK.get)] += 1  # type: ignore[arg-type]
        elif sample.error:
            self.errors[sample.error.split(":")[0][:60]] += 1
        if sample.correct is not None:
            self.golden[1] += 1
            self.golden[0] += int(sample.correct)
        self.degraded += int(sample.degraded)

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "window",
            "start": round(self.start, 6),
            "length": self.length,
            "requests": self.requests,
            "ok": self.ok,
            "latency": self.latency.to_json(),
            "p50": _round(self.latency.quantile(0.5)),
            "p95": _round(self.latency.quantile(0.95)),
            "by_source": {k: {"ok": v[0], "requests": v[1]} for k, v in self.by_source.items()},
            "by_class": {k: {"ok": v[0], "requests": v[1]} for k, v in self.by_class.items()},
            "regions": {k: dict(v) for k, v in self.regions.items()},
            "levels": dict(self.levels),
            "golden": {"correct": self.golden[0], "graded": self.golden[1]},
            "degraded": self.degraded,
            "errors": dict(self.errors),
        }


_LEVEL_RANK = {"foreign": 0, "exposed": 1, "trusted": 2, "sovereign": 3}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


class WindowAggregator:
    """Folds samples into windows by start time. Pure: the caller says when time has moved on."""

    def __init__(self, origin: float, length: float = 1.0, *, grace: float = 2.0) -> None:
        if not 0 < length <= 1.0:
            raise ValueError("windows are at most 1 s long")
        self.origin = origin
        self.length = length
        self.grace = grace
        self._open: dict[int, Window] = {}

    def add(self, sample: RequestSample) -> None:
        index = math.floor((sample.started - self.origin) / self.length)
        window = self._open.get(index)
        if window is None:
            window = self._open[index] = Window(index * self.length, self.length)
        window.add(sample)

    def close_before(self, now: float) -> list[Window]:
        """Windows that ended more than ``grace`` seconds before ``now`` (monotonic): requests
        that started in them have had the time to report. A request slower than that lands in a
        new window with the same start, written later: readers merge windows by start."""
        limit = math.floor((now - self.origin - self.grace) / self.length)
        done = sorted(i for i in self._open if i < limit)
        return [self._open.pop(i) for i in done]

    def close_all(self) -> list[Window]:
        done = [self._open.pop(i) for i in sorted(self._open)]
        return done

    def recent(self) -> list[Window]:
        return [self._open[i] for i in sorted(self._open)]


class Journal:
    """The append-only JSONL journal of one run. Thread-safe; every record is flushed at once, and
    records that matter for recovery (faults) are also fsynced."""

    def __init__(self, run_dir: Path, origin: float, *, raw_samples: bool = False) -> None:
        self.run_dir = run_dir
        self.path = run_dir / JOURNAL_FILE
        self.origin = origin
        self.raw_samples = raw_samples
        run_dir.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._closed = False

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
            if self._closed:
                return
            self._file.write(line + "\n")
            self._file.flush()
            if durable:
                os.fsync(self._file.fileno())

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
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._closed = True


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


def read_journal(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a journal (its file or its run directory), in order. A last line cut short by
    a crash is skipped."""
    path = Path(path)
    file = path / JOURNAL_FILE if path.is_dir() else path
    with file.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record
