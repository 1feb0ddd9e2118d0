"""Where each request went, as the services' own OpenTelemetry spans tell it: the spans received over
OTLP (`bascule.traces`), attributed to the design's regions, tied to the request's sample by the
trace id every request of load and probes carries. The sibling of `runner.paths` (the fault plane's
hops). Pure: the runner feeds it and asks.

    spans = SpanJoiner(since=start)
    spans.observe(receiver.poll())       # spans arrive after their request: samples wait (`hold`)
    found = spans.claim(sample)          # the request's hops, one per server span, in start order
    spans.expire(now)                    # spans no sample claimed within `keep` seconds
    spans.report()                       # counts for the journal

A hop is a ``server`` (or ``consumer``) span: the component that served is its ``service.name``,
where it ran is the region the span was attributed to, its status the span's HTTP status (500 when
the span says ERROR without one). A span with no region (`SpanRecord.reason`) makes no hop: it is counted,
and leaves its request's path open (`RequestSample.unplaced`); client and internal spans make none
either (their callee's server span does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from bascule.journal import Hop, HopSource, RequestSample, SpanKind, SpanRecord, SpanStatus

__all__ = ["SpanJoiner", "SpanReport", "span_hop"]

_SERVING = frozenset({SpanKind.SERVER, SpanKind.CONSUMER})


@dataclass(frozen=True)
class SpanReport:
    """What the services exported, and how much of it was tied to a request."""

    spans: int = 0
    """Spans observed (started after the first request of bascule's)."""
    claimed: int = 0
    """Spans of a trace a sample (or a request of bascule's own) claimed."""
    hops: int = 0
    """Hops those spans gave to samples."""
    unattributed: dict[str, int] = field(default_factory=dict)
    """service.name → claimed server spans whose region could not be told."""
    unclaimed: int = 0
    """Spans of traces no request of bascule's claimed within the time kept (a trace a service
    started itself, or spans that came after their request's sample was judged)."""


def span_hop(span: SpanRecord) -> Hop | None:
    """The hop a span tells, or None (not a server span, or no region). A span that names a region
    outside the design the catalog knows is a hop there, held to that region's level: data served
    in aws/us-west-2 left for the US whether or not the design lists the region."""
    if span.kind not in _SERVING:
        return None
    region = span.region if span.region is not None else span.outside or None
    if region is None:
        return None
    status = span.http_status
    if status is None and span.status is SpanStatus.ERROR:
        status = 500
    return Hop(
        component=span.service_name,
        region=region,
        provider=span.provider,
        jurisdiction=span.jurisdiction,
        sovereignty=span.sovereignty,
        via=HopSource.OTLP,
        status=status,
        relayed=True,
    )


class SpanJoiner:
    """Spans by trace id until their request claims them (or `keep` seconds pass)."""

    def __init__(self, *, keep: float = 120.0, since: float = float("-inf")) -> None:
        self.keep = keep
        self.since = since
        self._pending: dict[str, list[SpanRecord]] = {}
        self._first: dict[str, float] = {}
        self._own: set[str] = set()
        self._spans = 0
        self._claimed = 0
        self._hops = 0
        self._unattributed: Counter[str] = Counter()
        self._unclaimed = 0

    def bookkeeping(self, trace_id: str) -> None:
        """`trace_id` is a request of bascule's own that makes no sample: its spans are claimed."""
        self._own.add(trace_id)
        self._claimed += len(self._pending.pop(trace_id, ()))
        self._first.pop(trace_id, None)

    def observe(self, spans: Iterable[SpanRecord], now: float) -> None:
        for span in spans:
            if span.started < self.since:
                continue
            self._spans += 1
            if span.trace_id in self._own:
                self._claimed += 1
                continue
            self._pending.setdefault(span.trace_id, []).append(span)
            self._first.setdefault(span.trace_id, now)

    def claim(self, sample: RequestSample) -> tuple[Hop, ...]:
        """The hops the spans of `sample`'s trace tell, in the order they started."""
        return self.claim_path(sample)[0]

    def claim_path(self, sample: RequestSample) -> tuple[tuple[Hop, ...], tuple[str, ...]]:
        """The hops the spans of `sample`'s trace tell, in the order they started, and the services
        of its server spans that could not be placed in a region (`RequestSample.unplaced`)."""
        if sample.trace_id is None:
            return (), ()
        found = self._pending.pop(sample.trace_id, None)
        self._first.pop(sample.trace_id, None)
        if not found:
            return (), ()
        self._claimed += len(found)
        hops: list[Hop] = []
        unplaced: list[str] = []
        for span in sorted(found, key=lambda s: s.started):
            hop = span_hop(span)
            if hop is not None:
                hops.append(hop)
            elif span.kind in _SERVING:
                self._unattributed[span.service_name or "?"] += 1
                unplaced.append(span.service_name or "?")
        self._hops += len(hops)
        return tuple(hops), tuple(dict.fromkeys(unplaced))

    def expire(self, now: float) -> None:
        """Forget the spans of traces first seen more than `keep` seconds before `now`."""
        limit = now - self.keep
        for trace_id in [t for t, first in self._first.items() if first < limit]:
            self._unclaimed += len(self._pending.pop(trace_id, ()))
            del self._first[trace_id]

    def report(self) -> SpanReport:
        unclaimed = self._unclaimed + sum(len(spans) for spans in self._pending.values())
        return SpanReport(self._spans, self._claimed, self._hops, dict(self._unattributed), unclaimed)
