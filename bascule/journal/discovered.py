"""Discovered dependencies: hosts outside the design that a started service reached during a run.

A design declares its regions and components; a service may still call a token service, a
telemetry endpoint or a model API the design never names. The local target sees such calls two
ways: its egress proxy (every own service is started with ``HTTP_PROXY``/``HTTPS_PROXY`` naming it)
records each request to a host outside the run, and its DNS server reports each lookup of a name
outside the design's zone. Each is an `OutsideReach`; the runner ties those that carry a W3C trace id
to the request that caused them (`bascule.runner.discovered`) and folds them, per host, into a
`DiscoveredDependency` — the ``discovered-dependencies`` journal record. Pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "UNKNOWN",
    "DiscoveredDependency",
    "OutsideReach",
    "ReachVia",
    "dependency_from_json",
    "dependency_to_json",
]

UNKNOWN = "unknown"
"""The jurisdiction and level of a host whose operator the endpoint catalog does not know."""


class ReachVia(StrEnum):
    """How a reach was seen."""

    HTTP = "http"
    """A plain HTTP request through the egress proxy: its head (and trace context) was read."""
    CONNECT = "connect"
    """A ``CONNECT`` (HTTPS) through the egress proxy: the host is known, the request inside is not."""
    DNS = "dns"
    """A lookup of the name through the stack's DNS server."""
    OTLP = "otlp"
    """A client span a service exported over OTLP, calling the host (its trace id is the request's)."""


@dataclass(frozen=True, slots=True)
class OutsideReach:
    """One request (or lookup) of the stack to a host the design does not declare."""

    host: str
    via: ReachVia
    started: float
    """``time.monotonic()`` when it was seen."""
    trace_id: str | None = None
    """From the request's ``traceparent`` (plain HTTP only); None when it carried none."""
    asker: str | None = None
    """The replica that asked (its egress listener tells), or what the DNS server knew of it."""
    region: str | None = None
    """The asker's region in the design, where known."""
    port: int | None = None
    method: str | None = None
    path: str | None = None
    """The request's path, its query left out (it may hold credentials)."""
    outcome: str | None = None
    """What bascule answered: ``502`` (not relayed), a DNS outcome (``NXDOMAIN``…)."""
    count: int = 1
    """Reaches this record stands for: lookups are aggregated per name and asker between two takes
    (they carry no trace context, so nothing is lost), requests are one record each."""


@dataclass(frozen=True)
class DiscoveredDependency:
    """A host outside the design, what operates it, and who reached it with what."""

    host: str
    provider: str | None
    """The provider id from the endpoint catalog (``aws``), None when it does not know the host."""
    operator: str | None
    jurisdiction: str
    """``US``, ``EU``… or ``unknown``."""
    sovereignty: str
    """``sovereign``, ``trusted``, ``exposed``, ``foreign`` or ``unknown`` (judged as foreign)."""
    catalog_region: str | None = None
    """A catalog region the host names (``aws/eu-west-3``), which set its jurisdiction and level."""
    regions: tuple[str, ...] = ()
    """The design's regions whose replicas reached it."""
    askers: tuple[str, ...] = ()
    """The replicas (or DNS askers) that reached it."""
    classes: Mapping[str, int] = field(default_factory=dict)
    """Data class → requests of that class of bascule's load and probes that reached it (those the
    sovereignty verdict judges: the steady-state checks are not counted, as there)."""
    violations: int = 0
    """Of those, requests whose class requires a level above the host's: each is one of the run's
    sovereignty violations."""
    requests: int = 0
    """Plain HTTP requests through the egress proxy."""
    tunnels: int = 0
    """``CONNECT`` requests (HTTPS) through the egress proxy."""
    lookups: int = 0
    """DNS lookups of the name."""
    spans: int = 0
    """Client spans received over OTLP that called the host."""
    attributed: int = 0
    """Reaches tied to a request of bascule's by their trace id."""
    unattributed: int = 0
    """Reaches while bascule's traffic ran that no request could be tied to (no trace context, a
    tunnel, a lookup, or a trace of no request of bascule's): what data went there is unknown."""
    at_start: int = 0
    """Reaches before bascule sent any request (the stack starting): no request's data in them."""
    unanswered: int = 0
    """Reaches of requests of bascule's whose answer never came (in flight when the traffic
    stopped): not judged, like the rest of those requests' paths."""
    first: float | None = None
    """Run seconds of the first reach."""
    last: float | None = None


def dependency_to_json(dep: DiscoveredDependency) -> dict[str, Any]:
    return {
        "host": dep.host,
        "provider": dep.provider,
        "operator": dep.operator,
        "jurisdiction": dep.jurisdiction,
        "sovereignty": dep.sovereignty,
        "catalog_region": dep.catalog_region,
        "regions": list(dep.regions),
        "askers": list(dep.askers),
        "classes": dict(dep.classes),
        "violations": dep.violations,
        "requests": dep.requests,
        "tunnels": dep.tunnels,
        "lookups": dep.lookups,
        "spans": dep.spans,
        "attributed": dep.attributed,
        "unattributed": dep.unattributed,
        "at_start": dep.at_start,
        "unanswered": dep.unanswered,
        "first": dep.first,
        "last": dep.last,
    }


def dependency_from_json(data: Mapping[str, Any]) -> DiscoveredDependency:
    def count(key: str) -> int:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def instant(key: str) -> float | None:
        value = data.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    classes = data.get("classes")
    return DiscoveredDependency(
        host=str(data.get("host", "")),
        provider=text("provider"),
        operator=text("operator"),
        jurisdiction=text("jurisdiction") or UNKNOWN,
        sovereignty=text("sovereignty") or UNKNOWN,
        catalog_region=text("catalog_region"),
        regions=tuple(str(r) for r in data.get("regions") or ()),
        askers=tuple(str(a) for a in data.get("askers") or ()),
        classes={str(k): int(v) for k, v in classes.items() if isinstance(v, int)}
        if isinstance(classes, Mapping)
        else {},
        violations=count("violations"),
        requests=count("requests"),
        tunnels=count("tunnels"),
        lookups=count("lookups"),
        spans=count("spans"),
        attributed=count("attributed"),
        unattributed=count("unattributed"),
        at_start=count("at_start"),
        unanswered=count("unanswered"),
        first=instant("first"),
        last=instant("last"),
    )
