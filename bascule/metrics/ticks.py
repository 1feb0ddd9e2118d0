"""Instants from sample records, at 10 ms resolution, in memory bounded by the run's duration.

Each sample record is folded as it streams by: per 10 ms tick, the first and last failure, the first
and last failure of each *stream* (a source and a data class), both at the instant the request was
sent, and the first and last success of each stream per serving region, at the instant its answer
came (sent + latency): a service is back, or has failed over, when it answers, not when a request
it will answer late — held by a fault until the fault ends — was sent. A journal of a million raw
samples thus costs memory in proportion to its duration and its number of streams, never to its
length.

Spans live in flat dicts from ``tick × 4096 + id`` to a float: int keys and float values, which the
cyclic garbage collector does not track, so that folding a million samples does not set off ever
longer collections. At most 4096 distinct names are kept per kind of span; a journal with more
streams than that is not one this module was built for, and the extra ones are ignored.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from bascule.journal import SampleRow

__all__ = ["TICK", "Spans", "Ticks", "served_region", "served_row_region", "tick_of"]

TICK = 0.01
"""Resolution of the instants taken from sample records, s."""
_SLOTS = 1 << 12
_floor = math.floor

Name = TypeVar("Name", bound=Hashable)
Stream = tuple[str, str]
"""(source, data class)."""
Served = tuple[str, str, str]
"""(source, data class, serving region — empty when unknown)."""


def tick_of(t: float) -> int:
    return _floor(t / TICK)


class Spans(Generic[Name]):
    """First and last instant per (tick, name)."""

    __slots__ = ("_index", "first", "ids", "last", "names")

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.ids: dict[Name, int] = {}
        self.names: list[Name] = []
        self._index: dict[int, list[int]] | None = None

    def update(self, tick: int, name: Name, t: float) -> None:
        sid = self.ids.get(name)
        if sid is None:
            if len(self.names) >= _SLOTS:
                return
            sid = self.ids[name] = len(self.names)
            self.names.append(name)
        key = tick * _SLOTS + sid
        first = self.first.get(key)
        if first is None:
            self.first[key] = self.last[key] = t
        elif t < first:
            self.first[key] = t
        elif t > self.last[key]:
            self.last[key] = t

    def ticks(self, name: Name) -> list[int]:
        """The ticks in which ``name`` appears, in order (indexed once, after the stream ended)."""
        if self._index is None:
            index: dict[int, list[int]] = {}
            for key in self.first:
                index.setdefault(key % _SLOTS, []).append(key // _SLOTS)
            for ticks in index.values():
                ticks.sort()
            self._index = index
        sid = self.ids.get(name)
        return [] if sid is None else self._index.get(sid, [])

    def within(self, name: Name, start: float, end: float) -> Iterator[tuple[float, float]]:
        """(first, last) of ``name`` in each tick of ``[start, end)``, in order."""
        sid = self.ids.get(name)
        if sid is None:
            return
        ticks = self.ticks(name)
        for tick in ticks[bisect_left(ticks, tick_of(start)) :]:
            if tick * TICK >= end:
                return
            key = tick * _SLOTS + sid
            yield self.first[key], self.last[key]

    def first_in(self, name: Name, start: float, end: float) -> float | None:
        """The first instant of ``name`` in ``[start, end)`` (to within a tick)."""
        for first, last in self.within(name, start, end):
            if last >= start and first < end:
                return max(first, start)
        return None


class Ticks:
    """What the sample records said, tick by tick."""

    __slots__ = ("_fail_ticks", "fail_first", "fail_last", "failed", "ok")

    def __init__(self) -> None:
        self.fail_first: dict[int, float] = {}
        self.fail_last: dict[int, float] = {}
        self.failed: Spans[Stream] = Spans()
        self.ok: Spans[Served] = Spans()
        self._fail_ticks: list[int] | None = None

    def add(self, t: float, ok: bool, source: str, data_class: str, region: str | None) -> None:
        """`t`: when a failed request was sent, or when a success was answered."""
        tick = _floor(t / TICK)
        if ok:
            self.ok.update(tick, (source, data_class, region or ""), t)
            return
        first = self.fail_first.get(tick)
        if first is None:
            self.fail_first[tick] = self.fail_last[tick] = t
        elif t < first:
            self.fail_first[tick] = t
        elif t > self.fail_last[tick]:
            self.fail_last[tick] = t
        self.failed.update(tick, (source, data_class), t)

    def add_record(self, r: Mapping[str, Any]) -> None:
        """`add` for a journal ``sample`` record. Inlined for successes, the common case: this runs
        once per sample of a journal that may hold a million."""
        t = r.get("t")
        if not isinstance(t, float | int):
            return
        if not r.get("ok"):
            self.add(t, False, r.get("source") or "", r.get("data_class") or "-", None)
            return
        latency = r.get("latency")
        if isinstance(latency, float | int) and latency > 0:
            t += latency  # answered then
        name = (r.get("source") or "", r.get("data_class") or "-", served_region(r) or "")
        spans = self.ok
        sid = spans.ids.get(name)
        if sid is None:
            spans.update(_floor(t / TICK), name, t)
            return
        key = _floor(t / TICK) * _SLOTS + sid
        first = spans.first.get(key)
        if first is None:
            spans.first[key] = spans.last[key] = t
        elif t < first:
            spans.first[key] = t
        elif t > spans.last[key]:
            spans.last[key] = t

    def add_row(self, r: SampleRow) -> None:
        """`add_record` for a sample decoded as a `SampleRow` (`bascule.journal.scan_journal`): the
        same folding, read from attributes instead of a dict."""
        t = r.t
        if t is None:
            return
        if not r.ok:
            self.add(t, False, r.source or "", r.data_class or "-", None)
            return
        if r.latency is not None and r.latency > 0:
            t += r.latency  # answered then
        name = (r.source or "", r.data_class or "-", served_row_region(r) or "")
        spans = self.ok
        sid = spans.ids.get(name)
        if sid is None:
            spans.update(_floor(t / TICK), name, t)
            return
        key = _floor(t / TICK) * _SLOTS + sid
        first = spans.first.get(key)
        if first is None:
            spans.first[key] = spans.last[key] = t
        elif t < first:
            spans.first[key] = t
        elif t > spans.last[key]:
            spans.last[key] = t

    def sources(self) -> set[str]:
        """The sources of the successes sampled one by one (probes; the load with --raw-samples)."""
        return {name[0] for name in self.ok.names}

    def last_instant(self) -> float | None:
        """The last instant a sample told: a failed request's start, a success's answer."""
        last = max(self.ok.last.values(), default=None)
        fail = max(self.fail_last.values(), default=None)
        if last is None or fail is None:
            return fail if last is None else last
        return max(last, fail)

    def first_failure(self, start: float, end: float) -> float | None:
        """The first failed sample started in ``[start, end)``."""
        if self._fail_ticks is None:
            self._fail_ticks = sorted(self.fail_first)
        ticks = self._fail_ticks
        for tick in ticks[bisect_left(ticks, tick_of(start)) :]:
            if tick * TICK >= end:
                return None
            if self.fail_last[tick] >= start and self.fail_first[tick] < end:
                return max(self.fail_first[tick], start)
        return None

    def first_success(self, start: float, end: float, match: Callable[[str, str], bool]) -> float | None:
        """The first success answered in ``[start, end)`` whose data class and serving region ``match``."""
        found = (
            self.ok.first_in(name, start, end)
            for name in self.ok.names
            if name[2] and match(name[1], name[2])
        )
        return min((t for t in found if t is not None), default=None)

    def recovered_at(self, start: float, end: float, answered_by: float | None = None) -> float | None:
        """The first success answered after the last request sent in ``[start, end)`` that failed,
        of a stream that failed there (a class that never failed proves nothing), answered before
        `answered_by` (default `end`); ``None`` when no sample failed there, or none of those
        streams succeeded again in time."""
        failing = [s for s in self.failed.names if any(True for _ in self.failed.within(s, start, end))]
        if not failing:
            return None
        after = max(last for s in failing for _, last in self.failed.within(s, start, end))
        until = end if answered_by is None else max(end, answered_by)
        again = [
            first if first > after else last
            for name in self.ok.names
            if name[:2] in failing
            for first, last in self.ok.within(name, after, until)
            if last > after
        ]
        return min(again, default=None)


def served_row_region(r: SampleRow) -> str | None:
    """`served_region` of a `SampleRow`."""
    last = None
    for hop in r.hops or ():
        status = hop.status
        if hop.relayed and (status is None or (status < 500 and status != 429)):
            if hop.component == "retriever":
                return hop.region or None
            last = hop.region or None
    return last or r.entry_region


def served_region(r: Mapping[str, Any]) -> str | None:
    """`bascule.journal.served_region` of a sample record, without building the sample."""
    last = None
    for hop in r.get("hops") or ():
        status = hop.get("status")
        if hop.get("relayed", True) and (status is None or (status < 500 and status != 429)):
            if hop.get("component") == "retriever":
                return hop.get("region") or None
            last = hop.get("region") or None
    return last or r.get("entry_region")
