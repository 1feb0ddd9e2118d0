"""Request samples folded into windows of ``window`` seconds (1 s by default) as they arrive, so
memory stays bounded however long the run: a window keeps counts per outcome, data class, serving
region and sovereignty level, and a latency sketch whose buckets are mergeable (DDSketch-style, 1 %
relative accuracy) — the metrics merge windows into any span without keeping a list of every
latency. Pure.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bascule.journal.samples import RequestSample

__all__ = ["LatencySketch", "Window", "WindowAggregator", "answered_region", "served_region"]

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

    def upper(self) -> float | None:
        """The largest latency counted, from above (its bucket's upper edge); None when empty."""
        return _GAMMA ** max(self.buckets) if self.buckets else None

    def to_json(self) -> dict[str, int]:
        return {str(k): v for k, v in sorted(self.buckets.items())}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> LatencySketch:
        buckets = {int(k): int(v) for k, v in data.items()}
        return cls(buckets, sum(buckets.values()))


def served_region(sample: RequestSample) -> str | None:
    """Where a request's work was done: the region of its retriever hop, else of the last hop
    that served it (hops are in the order they were taken; a hop a fault answered, or that
    answered 5xx or 429, did not serve), else the entry point that answered."""
    last = None
    for hop in sample.hops:
        if hop.served:
            if hop.component == "retriever":
                return hop.region
            last = hop.region
    return last or sample.entry_region


def answered_region(sample: RequestSample) -> str | None:
    """Where a request's answer was written: the region of the last llm hop that served it, else
    `served_region` — a wrong answer is the llm's, wherever the passages came from."""
    for hop in reversed(sample.hops):
        if hop.served and hop.component == "llm":
            return hop.region
    return served_region(sample)


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
    golden_by_region: dict[str, list[int]] = field(default_factory=dict)
    """Graded answers by the region that wrote them (`answered_region`): [correct, graded]."""
    degraded: int = 0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_region: dict[str, tuple[list[int], LatencySketch]] = field(default_factory=dict)
    """Every request by the region that served it — failed, the region it entered (`served_region`):
    [ok, requests] and the latency sketch of its successes (the live page's figures per region)."""

    def add(self, sample: RequestSample) -> None:
        self.requests += 1
        self.by_source[sample.source][1] += 1
        klass = sample.data_class or "-"
        self.by_class[klass][1] += 1
        counts, sketch = self.by_region.setdefault(served_region(sample) or "-", ([0, 0], LatencySketch()))
        counts[1] += 1
        if sample.ok:
            counts[0] += 1
            sketch.add(sample.latency)
            self.ok += 1
            self.by_source[sample.source][0] += 1
            self.by_class[klass][0] += 1
            self.latency.add(sample.latency)
            region = served_region(sample)
            if region:
                self.regions[klass][region] += 1
            levels = [h.sovereignty for h in sample.hops if h.sovereignty and h.relayed]
            if levels:
                self.levels[min(levels, key=_LEVEL_RANK.get)] += 1  # type: ignore[arg-type]
        elif sample.error:
            self.errors[sample.error.split(":")[0][:60]] += 1
        if sample.correct is not None:
            self.golden[1] += 1
            self.golden[0] += int(sample.correct)
            graded = self.golden_by_region.setdefault(answered_region(sample) or "-", [0, 0])
            graded[0] += int(sample.correct)
            graded[1] += 1
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
            "golden_by_region": {
                k: {"correct": c, "graded": n} for k, (c, n) in sorted(self.golden_by_region.items())
            },
            "degraded": self.degraded,
            "errors": dict(self.errors),
            "by_region": {
                k: {
                    "ok": c[0],
                    "requests": c[1],
                    "p95": _round(sketch.quantile(0.95)),
                    "latency": sketch.to_json(),
                }
                for k, (c, sketch) in sorted(self.by_region.items())
            },
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
