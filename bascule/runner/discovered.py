"""Which requests reached hosts the design does not declare: the target's `OutsideReach` records
(its egress proxy, its DNS server) tied to the request that caused them by W3C trace id, and folded
per host into discovered dependencies. Pure: the runner feeds it and asks, like `paths.PathJoiner`.

    found = DependencyJoiner(design, origin=journal.origin, since=now)
    found.observe(target.take_outside())   # after a batch of samples, like the hops
    sample = found.attach(sample)          # an ``egress`` hop per outside host its trace reached
    found.expire(now)                      # traces no sample claimed within `keep` s: unattributed
    found.report()                         # one `DiscoveredDependency` per host
    found.observe(reaches_from_spans(spans))  # OTLP client spans to outside hosts, where received

A request's outside calls are made while it is served, before its answer: so, as with hops, every
sample of a batch finds its reaches already here. The hop a sample gets is judged like any other
(`probes.sovereignty.violations`): a confidential request that reached a host of a foreign
operator is a violation there, and a host the endpoint catalog does not know is held to
``foreign``, never assumed sovereign.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from bascule.journal.discovered import UNKNOWN, DiscoveredDependency, OutsideReach, ReachVia
from bascule.journal.samples import Hop, HopSource, RequestSample
from bascule.journal.spans import SpanRecord
from bascule.model.design import Design
from bascule.model.endpoints import EndpointOwner, lookup_endpoint
from bascule.probes.base import hop_level

__all__ = ["DependencyJoiner", "outside_hop", "reaches_from_spans"]


_TRACED = (ReachVia.HTTP, ReachVia.OTLP)
"""Reaches that carry the request's trace id."""


def reaches_from_spans(spans: Iterable[SpanRecord]) -> list[OutsideReach]:
    """The client spans among `spans` that called a host the design does not declare (the receiver
    sets ``host`` on those), as reaches: the service that exported it asked, from its region."""
    return [
        OutsideReach(
            span.host,
            ReachVia.OTLP,
            span.started,
            trace_id=span.trace_id,
            asker=span.service_name or None,
            region=span.region,
            method=span.attribute("http.request.method"),
            outcome=None if span.http_status is None else str(span.http_status),
        )
        for span in spans
        if span.host
    ]


def outside_hop(reach: OutsideReach) -> Hop:
    """The hop a request took to an outside host, with what the endpoint catalog says of it."""
    host = _key(reach.host)
    owner = lookup_endpoint(host)
    status = int(reach.outcome) if reach.outcome is not None and reach.outcome.isdigit() else None
    return Hop(
        component=host,
        region="" if owner is None or owner.region is None else owner.region,
        provider="" if owner is None else owner.provider,
        jurisdiction="" if owner is None else owner.jurisdiction,
        sovereignty="" if owner is None else owner.sovereignty.value,
        via=HopSource.OTLP if reach.via is ReachVia.OTLP else HopSource.EGRESS,
        status=status,
        relayed=True,
    )


def _nobody(trace_id: str) -> bool:
    return False


@dataclass
class _Host:
    owner: EndpointOwner | None
    regions: set[str] = field(default_factory=set)
    askers: set[str] = field(default_factory=set)
    classes: Counter[str] = field(default_factory=Counter)
    violations: int = 0
    by_via: Counter[ReachVia] = field(default_factory=Counter)
    attributed: int = 0
    unattributed: int = 0
    at_start: int = 0
    unanswered: int = 0
    first: float | None = None
    last: float | None = None


class DependencyJoiner:
    """Outside reaches by trace id until their sample claims them, and per-host counts."""

    def __init__(
        self,
        design: Design,
        *,
        origin: float = 0.0,
        keep: float = 120.0,
        since: float = float("-inf"),
    ) -> None:
        self.design = design
        self.origin = origin
        """The run's origin on the monotonic clock: `report` gives instants as run seconds."""
        self.keep = keep
        self.since = since
        """Reaches before this instant (the stack starting) carry no request's data: counted apart."""
        self._hosts: dict[str, _Host] = {}
        self._pending: dict[str, list[OutsideReach]] = {}

    def observe(self, reaches: Iterable[OutsideReach]) -> None:
        for reach in reaches:
            host = self._host(reach)
            host.by_via[reach.via] += reach.count
            if reach.asker is not None:
                host.askers.add(reach.asker)
            if reach.region is not None:
                host.regions.add(reach.region)
            t = reach.started - self.origin
            host.first = t if host.first is None else min(host.first, t)
            host.last = t if host.last is None else max(host.last, t)
            if reach.started < self.since:
                host.at_start += reach.count
            elif reach.trace_id is None or reach.via not in _TRACED:
                host.unattributed += reach.count
            else:
                self._pending.setdefault(reach.trace_id, []).append(reach)

    def bookkeeping(self, trace_id: str) -> None:
        """A request of bascule's that makes no sample (a canary read-back): its reaches are its own,
        of no data class the run judges."""
        for reach in self._pending.pop(trace_id, ()):
            self._hosts[_key(reach.host)].attributed += 1

    def attach(self, sample: RequestSample, *, judged: bool = True) -> RequestSample:
        """`sample` with one ``egress`` hop per outside host its trace reached, after its own hops.
        Its class and violations are counted when it is `judged` (load and continuous probes); the
        steady-state checks', which the sovereignty verdict does not judge either, are claimed only."""
        if sample.trace_id is None:
            return sample
        found = self._pending.pop(sample.trace_id, None)
        if not found:
            return sample
        added: dict[str, Hop] = {}
        for reach in sorted(found, key=lambda r: r.started):
            key = _key(reach.host)
            self._hosts[key].attributed += 1
            added.setdefault(key, outside_hop(reach))
        if not judged:
            return replace(sample, hops=sample.hops + tuple(added.values()))
        klass = sample.data_class or "-"
        policy = self.design.data_classes.get(klass)
        for key, hop in added.items():
            host = self._hosts[key]
            host.classes[klass] += 1
            if policy is not None and not hop_level(hop, self.design).satisfies(policy.min_sovereignty):
                host.violations += 1
        return replace(sample, hops=sample.hops + tuple(added.values()))

    def expire(self, now: float, ours: Callable[[str], bool] = _nobody) -> None:
        """Reaches of traces no sample claimed for `keep` seconds: unanswered when `ours` says the
        trace was a request of bascule's (`PathJoiner.entered`), else unattributed."""
        limit = now - self.keep
        for trace_id in [t for t, found in self._pending.items() if found[0].started < limit]:
            self._unclaimed(self._pending.pop(trace_id), ours(trace_id))

    def report(self, ours: Callable[[str], bool] = _nobody) -> tuple[DiscoveredDependency, ...]:
        """One entry per outside host, the most reached first; traces still unclaimed are counted as
        in `expire` (the run is over: their sample never came)."""
        for trace_id, found in self._pending.items():
            self._unclaimed(found, ours(trace_id))
        self._pending.clear()
        out = [_entry(name, host) for name, host in self._hosts.items()]
        return tuple(sorted(out, key=lambda d: (-(d.requests + d.tunnels + d.lookups), d.host)))

    def _unclaimed(self, found: list[OutsideReach], ours: bool) -> None:
        for reach in found:
            host = self._hosts[_key(reach.host)]
            if ours:
                host.unanswered += 1
            else:
                host.unattributed += 1

    def _host(self, reach: OutsideReach) -> _Host:
        key = _key(reach.host)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(lookup_endpoint(key))
        return host


def _key(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _entry(name: str, host: _Host) -> DiscoveredDependency:
    owner = host.owner
    return DiscoveredDependency(
        host=name,
        provider=None if owner is None else owner.provider,
        operator=None if owner is None else owner.name,
        jurisdiction=UNKNOWN if owner is None else owner.jurisdiction,
        sovereignty=UNKNOWN if owner is None else owner.sovereignty.value,
        catalog_region=None if owner is None else owner.region,
        regions=tuple(sorted(host.regions)),
        askers=tuple(sorted(host.askers)),
        classes=dict(sorted(host.classes.items())),
        violations=host.violations,
        requests=host.by_via[ReachVia.HTTP],
        tunnels=host.by_via[ReachVia.CONNECT],
        lookups=host.by_via[ReachVia.DNS],
        spans=host.by_via[ReachVia.OTLP],
        attributed=host.attributed,
        unattributed=host.unattributed,
        at_start=host.at_start,
        unanswered=host.unanswered,
        first=None if host.first is None else round(host.first, 6),
        last=None if host.last is None else round(host.last, 6),
    )
