"""How a design becomes processes and routes on one machine. Pure: no ports are opened here.

Every component replica is one process. Every hop of the design (``bascule.model.topology``) is a
*route*: a listening address owned by the target, forwarding to the callee's replicas. A caller
reaches a callee by its DNS name and the route's port — ``http://retriever.scaleway-fr-par.bascule.internal:41234``
— so the name resolves through the stack's DNS server at connection time and the port selects the
hop, which is what lets a fault act on the hop from aws/us-east-1 to scaleway/fr-par and on nothing
else. Identity dependencies run as processes too; other dependency kinds have no process in the
reference stack.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from bascule.model.catalog import Sovereignty
from bascule.model.design import ComponentKind, DependencyKind, Design, host_name, region_slug
from bascule.model.topology import Endpoint, Link, LinkPurpose, callee_region, links

__all__ = [
    "OwnCommand",
    "OwnWipe",
    "ProcessKind",
    "ReplicaSpec",
    "RouteSpec",
    "StackLayout",
    "layout",
    "max_class_for",
    "own_command",
    "replica_argv",
]


class ProcessKind(StrEnum):
    GATEWAY = "gateway"
    RETRIEVER = "retriever"
    STORE = "store"
    LLM = "llm"
    IDENTITY = "identity"
    SERVICE = "service"
    """The user's own ``command``."""


@dataclass(frozen=True, order=True)
class ReplicaSpec:
    component: str
    region: str
    index: int
    kind: ProcessKind
    reserve: bool = False
    """Above the placement's ``replicas``, up to ``max_replicas``: started only when the region
    scales up (pilot light)."""

    @property
    def name(self) -> str:
        """Unique, readable: ``retriever-aws-us-east-1-0``."""
        return f"{self.component}-{region_slug(self.region)}-{self.index}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.component, self.region)


@dataclass(frozen=True)
class RouteSpec:
    """One hop as a listening address: callers in ``hop.source`` reach ``hop.target`` through it."""

    hop: Link

    @property
    def name(self) -> str:
        source = (
            f"{self.hop.source.name}@{region_slug(self.hop.source.region)}" if self.hop.source else "clients"
        )
        return f"{source}->{self.hop.target.name}@{region_slug(self.hop.target.region)}"

    @property
    def host(self) -> str:
        return host_name(self.hop.target.name, self.hop.target.region)


@dataclass(frozen=True)
class StackLayout:
    design_id: str
    replicas: tuple[ReplicaSpec, ...]
    routes: tuple[RouteSpec, ...]
    fronted: tuple[str, ...] = ()
    """Components that run already (``url:``): routes lead to them, no process is started."""
    named_routes: frozenset[str] = frozenset()
    """The routes whose caller (an own service) was given the callee by DNS name
    (``{NAME.dns_url}``…), so that a ``dns`` fault on the callee's name reaches that caller."""
    resolving: frozenset[str] = frozenset()
    """The own services given a callee by DNS name: each replica runs with a resolver that asks the
    stack's DNS server."""

    def reserves(self, region: str) -> list[ReplicaSpec]:
        """The replicas a region starts when it scales up."""
        return [r for r in self.replicas if r.reserve and r.region == region]

    def replicas_of(self, endpoint: Endpoint) -> list[ReplicaSpec]:
        return [r for r in self.replicas if r.endpoint == endpoint]

    def routes_from(self, source: Endpoint | None, purpose: LinkPurpose | None = None) -> list[RouteSpec]:
        return [
            r for r in self.routes if r.hop.source == source and (purpose is None or r.hop.purpose is purpose)
        ]

    def ingress(self) -> list[RouteSpec]:
        return self.routes_from(None, LinkPurpose.INGRESS)

    def hosts(self) -> list[str]:
        return sorted({r.host for r in self.routes})

    @property
    def forks(self) -> bool:
        """Whether it starts a reference service, which a fork server forks: own services start cold."""
        return any(r.kind is not ProcessKind.SERVICE for r in self.replicas)


_KINDS = {
    ComponentKind.SERVICE: ProcessKind.SERVICE,
    ComponentKind.IDENTITY: ProcessKind.SERVICE,
    ComponentKind.GATEWAY: ProcessKind.GATEWAY,
    ComponentKind.RETRIEVER: ProcessKind.RETRIEVER,
    ComponentKind.STORE: ProcessKind.STORE,
    ComponentKind.LLM: ProcessKind.LLM,
}


def layout(design: Design) -> StackLayout:
    replicas: list[ReplicaSpec] = []
    for name, spec in design.components.items():
        kind = design.component_kind(name)
        if kind is None or spec.url is not None:
            # Nothing to start: an unknown kind has no process, a url service is already running.
            continue
        for region, placement in spec.replicas.items():
            replicas += [
                ReplicaSpec(name, region, i, _KINDS[kind], reserve=i >= placement.replicas)
                for i in range(placement.ceiling)
            ]
    identity = {n for n, d in design.dependencies.items() if d.kind is DependencyKind.IDENTITY}
    for name in sorted(identity):
        replicas.append(ReplicaSpec(name, design.dependencies[name].region, 0, ProcessKind.IDENTITY))
    routes = [
        RouteSpec(h)
        for h in links(design)
        if h.purpose is not LinkPurpose.DEPENDENCY or h.target.name in identity
    ]
    fronted = tuple(sorted(n for n, c in design.components.items() if c.url is not None))
    stack = StackLayout(design.id, tuple(sorted(replicas)), tuple(routes), fronted)
    named = _named_routes(design, stack)
    resolving = frozenset(
        n for n, c in design.components.items() if c.command is not None and c.command.named_callees()
    )
    return StackLayout(stack.design_id, stack.replicas, stack.routes, fronted, named, resolving)


def _named_routes(design: Design, stack: StackLayout) -> frozenset[str]:
    """The call routes whose caller names the callee with a ``dns_`` placeholder."""
    named: set[str] = set()
    for name, spec in design.components.items():
        wanted = spec.command.named_callees() if spec.command is not None else set()
        if not wanted:
            continue
        for region in spec.replicas:
            for route in stack.routes_from(Endpoint(name, region), LinkPurpose.CALL):
                target = route.hop.target
                default = target.region == callee_region(design, target.name, region)
                if f"{target.name}@{target.region}" in wanted or (default and target.name in wanted):
                    named.add(route.name)
    return frozenset(named)


_CLASS_ORDER = ("public", "internal", "confidential")


def max_class_for(design: Design, region: str) -> str:
    """The most sensitive of the reference classes a region's store may hold. Without the guard,
    nothing is enforced: every store may hold everything (and the plan says so)."""
    if not design.routing.sovereignty_guard:
        return _CLASS_ORDER[-1]
    level: Sovereignty = design.region(region).sovereignty
    allowed = [
        c
        for c in _CLASS_ORDER
        if c not in design.data_classes or level.satisfies(design.data_classes[c].min_sovereignty)
    ]
    return allowed[-1] if allowed else _CLASS_ORDER[0]


def _url(route: RouteSpec, ports: Mapping[str, int]) -> str:
    return f"http://{route.host}:{ports[route.name]}"


def replica_argv(
    design: Design,
    stack: StackLayout,
    replica: ReplicaSpec,
    *,
    design_path: str,
    route_ports: Mapping[str, int],
    dns_server: tuple[str, int],
    python: str,
) -> list[str]:
    """The command line of one replica. Secrets are not on it: they travel in the environment."""
    argv = [python, "-m", f"bascule.stack.{replica.kind.value}", "--host", "127.0.0.1", "--port", "0"]
    if replica.kind is ProcessKind.IDENTITY:
        ttl = design.dependencies[replica.component].token_ttl
        return [*argv, "--ttl", f"{ttl:g}"]
    me = replica.endpoint
    region = design.region(replica.region)
    argv += ["--region", replica.region, "--name", replica.name]
    if replica.kind is ProcessKind.LLM:
        placement = design.components[replica.component].replicas[replica.region]
        argv += ["--provider", region.provider]
        if placement.model:
            argv += ["--model", placement.model]
    pool = design.routing.connection_pool
    timeouts = design.routing.timeouts
    argv += [
        "--dns-server",
        f"{dns_server[0]}:{dns_server[1]}",
        "--pool-max-connections",
        str(pool.max_connections),
        "--pool-keepalive-expiry",
        f"{pool.keepalive_expiry:g}",
        "--connect-timeout",
        f"{timeouts.connect:g}",
        "--request-timeout",
        f"{timeouts.request:g}",
    ]
    if pool.max_age is not None:
        argv += ["--pool-max-age", f"{pool.max_age:g}"]
    # An llm calls nobody; it gets the identity flags only to check the tokens of its callers.
    identity_routes = stack.routes_from(me, LinkPurpose.DEPENDENCY)
    if identity_routes:
        argv += [
            "--identity-url",
            _url(identity_routes[0], route_ports),
            "--principal",
            replica.name,
            "--token-region",
            replica.region,
        ]
    if replica.kind is ProcessKind.STORE:
        peers = stack.routes_from(me, LinkPurpose.REPLICATE)
        for route in peers:
            argv += ["--peer", _url(route, route_ports)]
        argv += [
            "--replication",
            design.replication.mode.value,
            "--replication-lag",
            f"{design.replication.lag:g}",
            "--max-class",
            max_class_for(design, replica.region),
            "--seed-corpus",
        ]
    elif replica.kind is ProcessKind.RETRIEVER:
        for route in stack.routes_from(me, LinkPurpose.SEARCH):
            argv += ["--store", _url(route, route_ports)]
    elif replica.kind is ProcessKind.GATEWAY:
        argv += ["--design", design_path]
        slots = design.components[replica.component].replicas[replica.region].max_inflight
        if slots is not None:
            argv += ["--max-inflight", str(slots)]
        for route in stack.routes_from(me, LinkPurpose.RETRIEVE):
            argv += ["--retriever", f"{route.hop.target.region}={_url(route, route_ports)}"]
        for route in stack.routes_from(me, LinkPurpose.GENERATE):
            argv += ["--llm", f"{route.hop.target.region}={_url(route, route_ports)}"]
            model = design.components[route.hop.target.name].replicas[route.hop.target.region].model
            if model:
                argv += ["--llm-model", f"{route.hop.target.region}={model}"]
        for route in stack.routes_from(me, LinkPurpose.WRITE):
            argv += ["--store", f"{route.hop.target.region}={_url(route, route_ports)}"]
    return argv


@dataclass(frozen=True)
class OwnCommand:
    """How one replica of an own service is started: its command line and environment with every
    placeholder filled, its working directory and readiness."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    port: int
    ready_path: str | None
    data_dir: str
    wipe: OwnWipe | None = None


@dataclass(frozen=True)
class OwnWipe:
    """How to wipe one replica of an own service: run ``argv`` in ``cwd`` while it is stopped."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    timeout: float


@dataclass(frozen=True)
class _Otlp:
    url: str


@dataclass(frozen=True)
class _Callee:
    url: str
    host: str
    port: int
    dns_url: str = ""
    dns_host: str = ""
    """The route by its DNS name; only callees have one (``{replication.…}`` gives no name)."""


def own_command(
    design: Design,
    stack: StackLayout,
    replica: ReplicaSpec,
    *,
    port: int,
    route_ports: Mapping[str, int],
    base_dir: str,
    data_dir: str,
    otlp_endpoint: str | None = None,
) -> OwnCommand:
    """The command of one replica of an own service (``command:``), placeholders filled: the
    callees it names are reached through their fault routes — ``{NAME.url}`` the route to the
    callee's default region, ``{NAME@REGION.url}`` the one to it in REGION — at 127.0.0.1, or by
    the route's DNS name for ``{NAME.dns_url}`` and ``{NAME.dns_host}`` (the stack's DNS server
    answers it with 127.0.0.1); ``{otlp.url}`` the run's OTLP trace receiver (empty when the run
    receives no spans); ``{replication.url}`` the route to its primary (its own address, in the
    primary); ``{data_dir}`` a directory of the run kept across its restarts."""
    command = design.components[replica.component].command
    if command is None:
        raise ValueError(f"{replica.component} has no command")
    values: dict[str, object] = {
        "port": port,
        "host": "127.0.0.1",
        "region": replica.region,
        "replica": replica.name,
        "python": sys.executable,
        "otlp": _Otlp(otlp_endpoint or ""),
        "data_dir": data_dir,
    }
    if design.components[replica.component].replication is not None:
        # A standby streams through its route to the primary; the primary is given its own address.
        upstream = stack.routes_from(replica.endpoint, LinkPurpose.REPLICATE)
        via = route_ports[upstream[0].name] if upstream else port
        values["replication"] = _Callee(f"http://127.0.0.1:{via}", "127.0.0.1", via)
    for route in stack.routes_from(replica.endpoint, LinkPurpose.CALL):
        callee_port = route_ports[route.name]
        target = route.hop.target
        callee = _Callee(
            f"http://127.0.0.1:{callee_port}",
            "127.0.0.1",
            callee_port,
            f"http://{route.host}:{callee_port}",
            route.host,
        )
        values[f"{target.name}@{target.region}"] = callee
        if target.region == callee_region(design, target.name, replica.region):
            values[target.name] = callee
    argv = tuple(a.format_map(values) for a in command.argv)
    env = {k: v.format_map(values) for k, v in command.env.items()}
    cwd = os.path.normpath(os.path.join(base_dir, command.cwd or "."))
    wipe = None
    if command.wipe is not None:
        wipe = OwnWipe(tuple(a.format_map(values) for a in command.wipe.argv), env, cwd, command.wipe.timeout)
    return OwnCommand(argv, env, cwd, port, command.ready.path, data_dir, wipe)
