"""The links of a design: who calls whom, across which regions. Pure.

Every hop is a client connection a fault can sit on: clients → gateways, gateway → retriever and
llm of every region it may route to (and → stores, for writes), retriever → its region's store,
store → peer stores (replication), and every component of a region → the shared dependencies
that region relies on. A design of the user's own services has instead: clients → its entry
service, and each service → every component it ``calls`` (in its own region when placed there,
else in the first region of the routing order where it is, and in every region its
``{NAME@REGION.…}`` placeholders name); and each standby region of a service that replicates →
its primary (``replication: {primary: REGION}``), the connection a standby opens to stream from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bascule.model.design import ComponentKind, Design, ReplicationMode

__all__ = [
    "Endpoint",
    "Link",
    "LinkPurpose",
    "blind_services",
    "callee_region",
    "links",
    "replicated_into",
    "uncalled_services",
]


@dataclass(frozen=True, order=True)
class Endpoint:
    """A component or a dependency, in a region."""

    name: str
    region: str

    def __str__(self) -> str:
        return f"{self.name}@{self.region}"


class LinkPurpose(StrEnum):
    INGRESS = "ingress"
    RETRIEVE = "retrieve"
    GENERATE = "generate"
    SEARCH = "search"
    WRITE = "write"
    REPLICATE = "replicate"
    DEPENDENCY = "dependency"
    CALL = "call"


@dataclass(frozen=True, order=True)
class Link:
    """A caller (``None`` for the service's clients) reaching a callee."""

    source: Endpoint | None
    target: Endpoint
    purpose: LinkPurpose

    def __str__(self) -> str:
        return f"{self.source or 'clients'} -> {self.target}"

    def regions(self) -> set[str]:
        return {self.target.region} | ({self.source.region} if self.source else set())


def _placed(design: Design, kind: ComponentKind) -> list[Endpoint]:
    return [
        Endpoint(name, region)
        for name in design.components_of(kind)
        for region, placement in design.components[name].replicas.items()
        if placement.ceiling > 0
    ]


def links(design: Design) -> tuple[Link, ...]:
    order = {region: i for i, region in enumerate(design.routing_order)}
    gateways = _placed(design, ComponentKind.GATEWAY)
    retrievers = _placed(design, ComponentKind.RETRIEVER)
    llms = _placed(design, ComponentKind.LLM)
    stores = _placed(design, ComponentKind.STORE)
    out: list[Link] = [Link(None, g, LinkPurpose.INGRESS) for g in gateways]
    for g in gateways:
        out += [Link(g, r, LinkPurpose.RETRIEVE) for r in retrievers if r.region in order]
        out += [Link(g, m, LinkPurpose.GENERATE) for m in llms if m.region in order]
        out += [Link(g, s, LinkPurpose.WRITE) for s in stores if s.region in order]
    for r in retrievers:
        local = [s for s in stores if s.region == r.region]
        out += [Link(r, s, LinkPurpose.SEARCH) for s in (local or stores)]
    if design.replication.mode is not ReplicationMode.NONE:
        out += [Link(a, b, LinkPurpose.REPLICATE) for a in stores for b in stores if a.region != b.region]
    for region in design.region_map.values():
        callers = [e for e in gateways + retrievers + llms + stores if e.region == region.id]
        for dep_id in region.depends_on:
            dep = design.dependencies[dep_id]
            target = Endpoint(dep_id, dep.region)
            out += [Link(c, target, LinkPurpose.DEPENDENCY) for c in callers]
    out += _own_hops(design)
    return tuple(sorted(set(out), key=_hop_key))


def _own_hops(design: Design) -> list[Link]:
    out: list[Link] = []
    entry = design.entry_component()
    if entry is not None:
        out += [
            Link(None, Endpoint(entry, region), LinkPurpose.INGRESS)
            for region, placement in design.components[entry].replicas.items()
            if placement.ceiling > 0
        ]
    for name, spec in design.components.items():
        if spec.replication is not None:
            # The standby connects to its primary: data flows against the link, into its source.
            primary = Endpoint(name, spec.replication.primary)
            out += [
                Link(Endpoint(name, region), primary, LinkPurpose.REPLICATE)
                for region, placement in spec.replicas.items()
                if placement.ceiling > 0 and region != primary.region
            ]
        pinned = spec.command.regional_callees() if spec.command is not None else set()
        for region, placement in spec.replicas.items():
            if placement.ceiling == 0:
                continue
            for callee in spec.calls:
                where = callee_region(design, callee, region)
                wheres = {where} if where is not None else set()
                wheres |= {r for c, r in pinned if c == callee}
                out += [
                    Link(Endpoint(name, region), Endpoint(callee, w), LinkPurpose.CALL)
                    for w in sorted(wheres)
                ]
    return out


def replicated_into(design: Design, hop: Link) -> str:
    """The region a replication link carries data into: a reference store pushes to its peer (the
    link's target); an own standby pulls from its primary (the link's source)."""
    own = design.components.get(hop.target.name)
    if own is not None and own.replication is not None and hop.source is not None:
        return hop.source.region
    return hop.target.region


def callee_region(design: Design, callee: str, caller_region: str) -> str | None:
    """Where a caller in `caller_region` reaches `callee`: its own region when the callee is
    placed there, else the first region of the routing order where it is."""
    placed = [r for r, p in design.components[callee].replicas.items() if p.ceiling > 0]
    if caller_region in placed:
        return caller_region
    ordered = [r for r in design.routing_order if r in placed] or placed
    return ordered[0] if ordered else None


def _hop_key(hop: Link) -> tuple[str, str, str, str, str]:
    src = hop.source
    return (
        hop.purpose.value,
        src.region if src else "",
        src.name if src else "",
        hop.target.region,
        hop.target.name,
    )


def uncalled_services(design: Design) -> tuple[str, ...]:
    """The services of one's own that nothing enters and no declared ``calls`` names: reached, if at
    all, by calls bascule does not relay (a ``url:`` service's, which no design can route)."""
    called = {callee for spec in design.components.values() for callee in spec.calls}
    return tuple(
        name for name, spec in design.components.items() if spec.own and not spec.entry and name not in called
    )


def blind_services(design: Design) -> tuple[str, ...]:
    """The ``url:`` services whose own calls bascule cannot see, where it matters: in a design with
    an `uncalled_services` one, which they may be calling. A path that reached one and that only
    bascule saw is not known whole. Empty when every service is entered or called through routes."""
    if not uncalled_services(design):
        return ()
    return tuple(name for name, spec in design.components.items() if spec.url is not None)
