"""Where each request went: the hops a target observed (the fault plane's routes, keyed by the W3C
trace id every request of load and probes carries) attached to the request's sample, and what
could not be tied to any request counted per route. Pure: the runner feeds it and asks.

    paths = PathJoiner(design)
    paths.observe(target.take_hops())    # before the samples that the hops belong to
    sample = paths.attach(sample)        # its hops, in the order they were taken
    paths.expire(now)                    # hops no sample claimed within `keep` seconds
    paths.report()                       # counts for the journal: traced, untraced, unclaimed, opaque

A hop arrives before its sample: a route records it at the first byte of the answer, which the
client reads after. So the runner takes the target's hops after it has taken a batch of samples,
and every sample of the batch finds its hops already here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from bascule.journal import Hop, HopSource, PathHop, RequestSample
from bascule.model.design import Design

__all__ = ["OpaqueCall", "PathJoiner", "PathReport", "add_hops", "hop_of"]

OpaqueCall = tuple[str, str, str]
"""(calling component, its region, component called) of a connection that was not HTTP/1.x."""


@dataclass(frozen=True)
class PathReport:
    """What the fault plane saw, and how much of it was tied to a request."""

    hops: int = 0
    """Every hop observed."""
    claimed: int = 0
    """Hops attached to a sample."""
    untraced: dict[str, int] = field(default_factory=dict)
    """Route → hops that carried no trace context: requests of a service that does not propagate
    it (or of a client other than bascule's)."""
    unclaimed: dict[str, int] = field(default_factory=dict)
    """Route → hops whose trace no sample claimed and that did not enter through a client's route:
    a trace a service started itself."""
    unanswered: int = 0
    """Requests of bascule's (their trace entered through a client's route) whose sample never came:
    in flight when the load stopped."""
    relayed: dict[str, dict[str, int]] = field(default_factory=dict)
    """Route → data class → requests of that class the route relayed to its callee: the fault
    plane's own count of where each class's data went."""
    opaque: dict[str, int] = field(default_factory=dict)
    """Route → connections whose bytes were not HTTP/1.x (a database's or a cache's own protocol,
    TLS): what they carried, and for which request, the fault plane cannot tell."""
    opaque_calls: frozenset[OpaqueCall] = frozenset()
    """Who called whom over those connections, from where (`SovereigntyJudge.report`)."""

    @property
    def incomplete_routes(self) -> list[str]:
        """Routes between components (not the clients' entry routes) with hops no request owns, or
        connections that were not HTTP: there, where a request went could not be told."""
        routes = set(self.untraced) | set(self.unclaimed) | set(self.opaque)
        return sorted(r for r in routes if not r.startswith("clients->"))


def hop_of(path: PathHop, design: Design) -> Hop:
    """The sample's view of a hop: the component called, where, with the design's facts."""
    try:
        region = design.region(path.region)
        provider, jurisdiction, level = region.provider, region.jurisdiction, region.sovereignty.value
    except KeyError:
        provider = jurisdiction = level = ""
    return Hop(
        component=path.component,
        region=path.region,
        provider=provider,
        jurisdiction=jurisdiction,
        sovereignty=level,
        via=HopSource.FAULT_PLANE,
        status=path.status,
        relayed=path.relayed,
    )


def add_hops(sample: RequestSample, hops: tuple[Hop, ...]) -> RequestSample:
    """`sample` with `hops` added after those it has, but for a component and region it already
    names: a request's path is judged once per place, whichever sources told it."""
    known = {(h.component, h.region) for h in sample.hops}
    added = tuple(h for h in hops if (h.component, h.region) not in known)
    return replace(sample, hops=sample.hops + added) if added else sample


class PathJoiner:
    """Hops by trace id until their sample claims them (or `keep` seconds pass)."""

    def __init__(self, design: Design, *, keep: float = 120.0, since: float = float("-inf")) -> None:
        self.design = design
        self.keep = keep
        self.since = since
        """Hops that started before this instant (the stack starting up, before any request of
        bascule's) belong to no request and are not counted against the paths."""
        self._pending: dict[str, list[PathHop]] = {}
        self._hops = 0
        self._claimed = 0
        self._untraced: Counter[str] = Counter()
        self._unclaimed: Counter[str] = Counter()
        self._unanswered = 0
        self._own: set[str] = set()
        self._relayed: Counter[tuple[str, str]] = Counter()
        self._opaque: Counter[str] = Counter()
        self._opaque_calls: set[OpaqueCall] = set()

    def bookkeeping(self, trace_id: str) -> None:
        """`trace_id` is a request of bascule's own that makes no sample (a canary read-back): its
        hops are claimed as they come."""
        self._own.add(trace_id)
        for _hop in self._pending.pop(trace_id, ()):
            self._claimed += 1

    def observe(self, hops: Iterable[PathHop]) -> None:
        for hop in hops:
            if hop.started < self.since:
                continue
            if hop.opaque:  # a connection, not a request: counted apart
                self._opaque[hop.route] += 1
                if hop.caller is not None and hop.caller_region is not None:
                    self._opaque_calls.add((hop.caller, hop.caller_region, hop.component))
                continue
            self._hops += 1
            if hop.trace_id in self._own:
                self._claimed += 1
            elif hop.trace_id is None:
                self._untraced[hop.route] += 1
            else:
                self._pending.setdefault(hop.trace_id, []).append(hop)

    def attach(self, sample: RequestSample) -> RequestSample:
        """`sample` with the hops of its trace added after those it already has (its service's own
        report), leaving out a hop its service already reported (same component and region)."""
        return add_hops(sample, self.claim(sample))

    def claim(self, sample: RequestSample) -> tuple[Hop, ...]:
        """Every hop of `sample`'s trace, in the order they were taken (none left here)."""
        if sample.trace_id is None:
            return ()
        found = self._pending.pop(sample.trace_id, None)
        if not found:
            return ()
        self._claimed += len(found)
        klass = sample.data_class or "-"
        for route in {h.route for h in found if h.relayed}:
            self._relayed[route, klass] += 1
        return tuple(hop_of(h, self.design) for h in sorted(found, key=lambda h: h.started))

    def entered(self, trace_id: str) -> bool:
        """Whether `trace_id`, which no sample has claimed yet, entered through a client's route: a
        request of bascule's (whose sample may never come: in flight when the load stopped)."""
        return any(hop.caller is None for hop in self._pending.get(trace_id, ()))

    def expire(self, now: float) -> None:
        """Forget hops that started more than `keep` seconds before `now`, counting them unclaimed."""
        limit = now - self.keep
        for trace_id in [t for t, hops in self._pending.items() if hops[0].started < limit]:
            self._unanswered += _forget(self._pending.pop(trace_id), self._unclaimed)

    def report(self) -> PathReport:
        unclaimed = Counter(self._unclaimed)
        unanswered = self._unanswered + sum(_forget(hops, unclaimed) for hops in self._pending.values())
        relayed: dict[str, dict[str, int]] = {}
        for (route, klass), n in sorted(self._relayed.items()):
            relayed.setdefault(route, {})[klass] = n
        return PathReport(
            hops=self._hops,
            claimed=self._claimed,
            untraced=dict(self._untraced),
            unclaimed=dict(unclaimed),
            unanswered=unanswered,
            relayed=relayed,
            opaque=dict(self._opaque),
            opaque_calls=frozenset(self._opaque_calls),
        )


def _forget(hops: list[PathHop], unclaimed: Counter[str]) -> int:
    """Count a trace no sample claimed: 1 when it was a request of bascule's (it entered through a
    client's route) that only lost its sample, else 0 and its hops unclaimed on their routes."""
    if any(hop.caller is None for hop in hops):
        return 1
    for hop in hops:
        unclaimed[hop.route] += 1
    return 0
