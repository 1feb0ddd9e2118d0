"""Where a span ran, in the design's terms, and which undeclared host it called. Pure: a span and
the design in, an attribution out.

A span's region is told by the first rule that applies (resource attributes first, then the span's
own, under the OpenTelemetry semantic conventions):

1. ``cloud.provider`` and ``cloud.region`` (or ``cloud.availability_zone``) name a region of the
   design. Provider spellings are folded (``google``/``gcp``, ``microsoft``/``azure``,
   ``amazon``/``aws``, ``ovh``/``ovhcloud``…); a zone (``us-east-1a``, ``fr-par-2``) counts for
   its region. A catalog region outside the design (``aws/us-west-2``) leaves the span
   unattributed, but with that region's provider, jurisdiction and level.
2. ``service.name`` is a component placed in exactly one region of the design.
3. ``cloud.provider`` alone, when the design has exactly one region of that provider.

Else the span is unattributed, and its ``reason`` says what was missing.

A client (or producer) span's peer — ``server.address``, ``net.peer.name``, the host of
``url.full`` or ``http.url`` — is a *discovered dependency* when the design does not declare it:
not a component's name (``peer.service``), not bascule's own names (``*.bascule.internal``,
loopback, the hosts of ``url:`` services), not a cluster-internal name (``*.svc.cluster.local``,
a bare service name). Its provider, jurisdiction and level come from the provider endpoint
catalog (``bascule.model.endpoints``), empty when the name does not tell.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from bascule.journal.spans import SpanKind, SpanRecord
from bascule.model.catalog import CATALOG
from bascule.model.design import Design, Region
from bascule.model.endpoints import lookup_endpoint
from bascule.model.names import ZONE
from bascule.traces.decode import AttributeValue, WireSpan, attribute_text

__all__ = ["KEPT_ATTRIBUTES", "Attribution", "Attributor", "provider_id"]

_ALIASES = {
    "amazon": "aws",
    "amazon-web-services": "aws",
    "google": "gcp",
    "google-cloud": "gcp",
    "google-cloud-platform": "gcp",
    "microsoft": "azure",
    "microsoft-azure": "azure",
    "scw": "scaleway",
    "ovh": "ovhcloud",
    "ovh-cloud": "ovhcloud",
    "clevercloud": "clever-cloud",
    "3ds-outscale": "outscale",
}


def provider_id(name: str) -> str:
    """A provider as the catalog spells it: ``Google_Cloud`` → ``gcp``, ``AWS`` → ``aws``."""
    folded = re.sub(r"[\s_]+", "-", name.strip().lower())
    return _ALIASES.get(folded, folded)


KEPT_ATTRIBUTES = frozenset(
    {
        "service.name",
        "service.namespace",
        "service.instance.id",
        "cloud.provider",
        "cloud.platform",
        "cloud.region",
        "cloud.availability_zone",
        "deployment.environment",
        "deployment.environment.name",
        "k8s.cluster.name",
        "k8s.namespace.name",
        "server.address",
        "server.port",
        "net.peer.name",
        "net.peer.port",
        "peer.service",
        "url.full",
        "http.url",
        "url.path",
        "http.target",
        "http.route",
        "http.request.method",
        "http.method",
        "http.response.status_code",
        "http.status_code",
        "error.type",
        "rpc.system",
        "rpc.service",
        "db.system",
        "messaging.system",
    }
)
"""What a span record keeps of its attributes (plus every ``bascule.*`` key): where and what, no
payloads."""

_PEER_KEYS = ("server.address", "net.peer.name")
_URL_KEYS = ("url.full", "http.url")
_ZONE_SUFFIX = re.compile(r"^-?[a-z0-9]$")


@dataclass(frozen=True)
class Attribution:
    region: str | None
    provider: str = ""
    jurisdiction: str = ""
    sovereignty: str = ""
    attributed_by: str = ""
    reason: str = ""
    host: str | None = None
    host_provider: str = ""
    host_jurisdiction: str = ""
    host_sovereignty: str = ""
    outside: str = ""
    """The catalog region the span named when it is none of the design's (`SpanRecord.outside`)."""


class Attributor:
    """The design's regions, components and declared hosts, indexed once for many spans."""

    def __init__(self, design: Design) -> None:
        self._regions: dict[tuple[str, str], Region] = {}
        self._by_provider: dict[str, list[Region]] = {}
        for region in design.region_map.values():
            name = region.id.split("/", 1)[1]
            self._regions[(provider_id(region.provider), name)] = region
            self._regions.setdefault((provider_id(region.id.split("/", 1)[0]), name), region)
            self._by_provider.setdefault(provider_id(region.provider), []).append(region)
        self._region_map = dict(design.region_map)
        self._placed = {name: tuple(spec.replicas) for name, spec in design.components.items()}
        self._declared = {*design.components, *design.dependencies}
        self._url_hosts = {
            (urlsplit(url).hostname or "").lower()
            for spec in design.components.values()
            for url in (spec.url or {}).values()
        }

    def attribute(self, span: WireSpan) -> Attribution:
        found = {**span.attributes, **span.resource}
        region = self._region(found)
        peer = self._peer(span.kind, found)
        if peer is None:
            return region
        owner = lookup_endpoint(peer)
        if owner is None:
            return _with_host(region, peer, "", "", "")
        return _with_host(region, peer, owner.name, owner.jurisdiction, owner.sovereignty.value)

    def record(self, span: WireSpan, offset_ns: int) -> SpanRecord:
        """The journal's record of `span`; `offset_ns` is ``time.time_ns() - time.monotonic_ns()``."""
        where = self.attribute(span)
        found = {**span.attributes, **span.resource}
        return SpanRecord(
            trace_id=span.trace_id,
            span_id=span.span_id,
            parent_span_id=span.parent_span_id,
            name=span.name,
            kind=span.kind,
            service_name=attribute_text(found.get("service.name")),
            started=(span.start_unix_nano - offset_ns) / 1e9,
            ended=(span.end_unix_nano - offset_ns) / 1e9,
            status=span.status,
            http_status=_http_status(found),
            attributes=_kept(found),
            region=where.region,
            provider=where.provider,
            jurisdiction=where.jurisdiction,
            sovereignty=where.sovereignty,
            attributed_by=where.attributed_by,
            reason=where.reason,
            outside=where.outside,
            host=where.host,
            host_provider=where.host_provider,
            host_jurisdiction=where.host_jurisdiction,
            host_sovereignty=where.host_sovereignty,
        )

    # -- the region ----------------------------------------------------------------------------

    def _region(self, found: Mapping[str, AttributeValue]) -> Attribution:
        provider = provider_id(attribute_text(found.get("cloud.provider")))
        cloud_region = attribute_text(found.get("cloud.region")).strip().lower()
        zone = attribute_text(found.get("cloud.availability_zone")).strip().lower()
        service = attribute_text(found.get("service.name"))
        notes: list[str] = []
        if provider and (cloud_region or zone):
            for name in (cloud_region, zone):
                region = self._named(provider, name)
                if region is not None:
                    return _attributed(region, "cloud.region")
            rid = f"{provider}/{cloud_region.split('/')[-1]}"
            known = CATALOG.get(rid)
            if known is not None:
                return Attribution(
                    None,
                    known.provider,
                    known.jurisdiction,
                    known.sovereignty.value,
                    reason=f"{rid} (cloud.provider, cloud.region) is not a region of the design",
                    outside=rid,
                )
            told = f"cloud.provider={provider} cloud.region={cloud_region or zone}"
            notes.append(f"{told} is no region of the design")
        elif not provider:
            notes.append("no cloud.provider")
        if service in self._placed:
            regions = self._placed[service]
            if len(regions) == 1:
                return _attributed(self._region_map[regions[0]], "service.name")
            notes.append(f"service.name {service!r} runs in {len(regions)} regions ({', '.join(regions)})")
        elif service:
            notes.append(f"service.name {service!r} is no component of the design")
        else:
            notes.append("no service.name")
        if provider:
            candidates = self._by_provider.get(provider, [])
            if len(candidates) == 1 and not cloud_region:
                return _attributed(candidates[0], "cloud.provider")
            if not cloud_region and not zone:
                notes.append(f"cloud.provider={provider} without cloud.region")
                if len(candidates) != 1:
                    notes.append(f"the design has {len(candidates)} regions of {provider}")
        return Attribution(None, reason="; ".join(notes))

    def _named(self, provider: str, name: str) -> Region | None:
        if not name:
            return None
        name = name.rsplit("/", maxsplit=1)[-1]
        exact = self._regions.get((provider, name))
        if exact is not None:
            return exact
        zoned = [
            r
            for (p, n), r in self._regions.items()
            if p == provider and name.startswith(n) and _ZONE_SUFFIX.match(name[len(n) :])
        ]
        return zoned[0] if len({r.id for r in zoned}) == 1 else None

    # -- the peer ------------------------------------------------------------------------------

    def _peer(self, kind: SpanKind, found: Mapping[str, AttributeValue]) -> str | None:
        if kind not in (SpanKind.CLIENT, SpanKind.PRODUCER):
            return None
        if attribute_text(found.get("peer.service")) in self._declared:
            return None
        host = next((attribute_text(found[k]) for k in _PEER_KEYS if found.get(k)), "")
        if not host:
            url = next((attribute_text(found[k]) for k in _URL_KEYS if found.get(k)), "")
            host = _url_host(url)
        host = host.strip().strip("[]").rstrip(".").lower()
        if not host or self._is_declared(host):
            return None
        return host

    def _is_declared(self, host: str) -> bool:
        if host in self._url_hosts or host == "localhost" or host in self._declared:
            return True
        if host == ZONE or host.endswith("." + ZONE):
            return True
        if host.endswith((".cluster.local", ".clusterset.local", ".svc")) or ".svc." in host:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return "." not in host


def _attributed(region: Region, rule: str) -> Attribution:
    return Attribution(region.id, region.provider, region.jurisdiction, region.sovereignty.value, rule)


def _with_host(where: Attribution, host: str, provider: str, jurisdiction: str, level: str) -> Attribution:
    return Attribution(
        where.region,
        where.provider,
        where.jurisdiction,
        where.sovereignty,
        where.attributed_by,
        where.reason,
        host,
        provider,
        jurisdiction,
        level,
    )


def _url_host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _http_status(found: Mapping[str, AttributeValue]) -> int | None:
    for key in ("http.response.status_code", "http.status_code"):
        value = found.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
    return None


def _kept(found: Mapping[str, AttributeValue]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for key, value in found.items():
        if key in KEPT_ATTRIBUTES or key.startswith("bascule."):
            text = attribute_text(value)
            out.append((key, _without_secrets(text) if key in _URL_KEYS else text))
    return tuple(sorted(out))


def _without_secrets(url: str) -> str:
    # A query string or user:password@ may carry a key; the journal keeps where, not how.
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:
        return ""
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
