"""The design file: the system under test — regions, components and where they run, the shared
dependencies regions rely on, and the routing, replication and data-class policies.

Regions named in the built-in catalog (``bascule.model.catalog``) inherit provider, jurisdiction and
sovereignty level; every field can be overridden. ``Design.check()`` returns the cross-references
that do not resolve, by path, so that the loader can place them at ``file:line:column``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from bascule.errors import PathElement
from bascule.model.canary import AnswerCanary
from bascule.model.catalog import CATALOG, Sovereignty
from bascule.model.durations import Duration, Interval, Lifetime, Timeout
from bascule.model.names import ZONE, host_name, region_slug
from bascule.model.own import CommandSpec, OwnReplication, WipeSpec
from bascule.model.placeholders import placeholder_problems
from bascule.model.selector import RegionId
from bascule.model.source import SourceMap
from bascule.model.suggest import unknown_name as _unknown

__all__ = [
    "ZONE",
    "CircuitBreaker",
    "ComponentKind",
    "ComponentSpec",
    "ConnectionPool",
    "CostRates",
    "DataClassPolicy",
    "DependencyKind",
    "DependencySpec",
    "Design",
    "Failback",
    "HealthCheck",
    "Hedging",
    "OwnReplication",
    "Placement",
    "Region",
    "RegionSpec",
    "Replication",
    "ReplicationMode",
    "RetryPolicy",
    "Routing",
    "RoutingMode",
    "Timeouts",
    "WipeSpec",
    "host_name",
    "region_slug",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=40)]


class CostRates(_Spec):
    """Prices in ``currency``: per replica and hour, and per GB leaving the region."""

    replica_hour: Annotated[float, Field(ge=0)] | None = None
    egress_gb: Annotated[float, Field(ge=0)] | None = None
    currency: str = "USD"


class RegionSpec(_Spec):
    id: RegionId
    provider: str | None = None
    jurisdiction: str | None = None
    sovereignty: Sovereignty | None = None
    cost: CostRates | None = None
    depends_on: tuple[str, ...] = ()
    """Ids of shared dependencies (identity, DNS, registry…) this region's services rely on."""

    @model_validator(mode="after")
    def _known_or_complete(self) -> RegionSpec:
        if self.id in CATALOG:
            return self
        missing = [f for f in ("jurisdiction", "sovereignty") if getattr(self, f) is None]
        if missing:
            raise ValueError(
                f"region {self.id!r} is not in the built-in catalog: give {' and '.join(missing)} "
                "(see `bascule regions`)"
            )
        return self


@dataclass(frozen=True)
class Region:
    """A region as the design resolves it: catalog values with the design's overrides."""

    id: str
    provider: str
    jurisdiction: str
    sovereignty: Sovereignty
    cost: CostRates | None
    depends_on: tuple[str, ...]

    @property
    def slug(self) -> str:
        return region_slug(self.id)


class ComponentKind(StrEnum):
    GATEWAY = "gateway"
    RETRIEVER = "retriever"
    STORE = "store"
    LLM = "llm"
    SERVICE = "service"
    """The user's own: a ``command`` bascule starts, or a ``url`` it only fronts."""
    IDENTITY = "identity"
    """The user's own token service (``command`` or ``url``): what the ``identity`` fault acts on."""


class Placement(_Spec):
    """Replicas of a component in one region. ``max_replicas`` above ``replicas`` means the region
    scales up on failover (pilot light) — which needs a working control plane."""

    replicas: Annotated[int, Field(ge=0, le=64)]
    max_replicas: Annotated[int, Field(ge=0, le=64)] | None = None
    model: str | None = None
    """For llm components: the model name served in this region (e.g. ``mistral-small-latest``)."""
    max_inflight: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """For gateway components: requests one replica serves at once (its worker slots); beyond,
    it sheds load with 503 ``overloaded``. What a pilot-light region scales up on. Unset: no limit."""

    @model_validator(mode="before")
    @classmethod
    def _from_count(cls, value: object) -> object:
        return {"replicas": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _max_not_below(self) -> Placement:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError("max_replicas must be ≥ replicas")
        return self

    @property
    def ceiling(self) -> int:
        return self.max_replicas if self.max_replicas is not None else self.replicas


class ComponentSpec(_Spec):
    """A component and its placement: ``{replicas: {aws/us-east-1: 2, scaleway/fr-par: 1}}``."""

    kind: ComponentKind | None = None
    """Defaults to the component's name when that is a known kind (gateway, retriever, store, llm),
    and to ``service`` for a component with a ``command`` or a ``url``."""
    replicas: dict[RegionId, Placement]
    command: CommandSpec | None = None
    """An own service that bascule starts (``kind: service``)."""
    url: dict[RegionId, str] | None = None
    """An own service already running, by region, that bascule only fronts with its fault routes."""
    entry: bool = False
    """Clients (load, probes) reach the service here, through the edge — instead of a gateway."""
    replication: OwnReplication | None = None
    """An own service (``command``) whose regions replicate: which region is the primary."""
    calls: tuple[str, ...] = ()
    """Other components this one calls (``command`` only): each in the caller's region when placed
    there, else in the first region of the routing order where it is — and in every region a
    ``{NAME@REGION.…}`` placeholder names."""

    @field_validator("replicas")
    @classmethod
    def _some_region(cls, value: dict[str, Placement]) -> dict[str, Placement]:
        if not value:
            raise ValueError("place the component in at least one region")
        return value

    @field_validator("url")
    @classmethod
    def _http_urls(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for region, url in (value or {}).items():
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or parts.port is None:
                raise ValueError(
                    f"{region}: {url!r} — give http://HOST:PORT (the fault route speaks plain TCP to it)"
                )
        return value

    @model_validator(mode="after")
    def _own_service(self) -> ComponentSpec:
        if self.command is not None and self.url is not None:
            raise ValueError("give either command (bascule starts it) or url (already running), not both")
        own = self.command is not None or self.url is not None
        if own and self.kind not in (None, ComponentKind.SERVICE, ComponentKind.IDENTITY):
            raise ValueError("a component with a command or a url is of kind service (or identity)")
        if self.kind in (ComponentKind.SERVICE, ComponentKind.IDENTITY) and not own:
            raise ValueError(
                f"a {self.kind} component is a service of your own: give it a command (bascule starts "
                "it) or a url"
            )
        if self.url is not None and self.calls:
            raise ValueError("a url component is already running: bascule cannot tell it what to call")
        if self.replication is not None and self.command is None:
            raise ValueError(
                "replication: bascule gives the replicas of a command the route to their primary; a "
                "url service is already running and cannot be told it"
            )
        return self

    @property
    def own(self) -> bool:
        return self.command is not None or self.url is not None


class DependencyKind(StrEnum):
    IDENTITY = "identity"
    DNS = "dns"
    REGISTRY = "registry"
    OTHER = "other"


class DependencySpec(_Spec):
    """A shared service regions rely on, which lives in one region — perhaps not theirs."""

    kind: DependencyKind
    region: RegionId
    token_ttl: Lifetime = 300.0
    """For identity services: how long an issued token stays valid (real seconds of the run)."""
    refresh_before: Duration = 0.2
    """Refresh a token when this fraction of its lifetime remains, in [0, 1)."""
    description: str = ""

    @field_validator("refresh_before")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 <= value < 1:
            raise ValueError("refresh_before is a fraction of the token lifetime, in [0, 1)")
        return value


class RoutingMode(StrEnum):
    ACTIVE_PASSIVE = "active-passive"
    ACTIVE_ACTIVE = "active-active"
    PILOT_LIGHT = "pilot-light"


class HealthCheck(_Spec):
    interval: Interval = 1.0
    timeout: Timeout = 0.5
    unhealthy_after: Annotated[int, Field(ge=1, le=1000)] = 3
    healthy_after: Annotated[int, Field(ge=1, le=1000)] = 3


class RetryPolicy(_Spec):
    attempts: Annotated[int, Field(ge=1, le=10)] = 3
    budget: Annotated[float, Field(ge=0, le=1)] = 0.2
    """Retries allowed as a fraction of requests, so that retries cannot multiply an overload."""
    min_retries_per_second: Annotated[float, Field(ge=0, le=100_000)] = 10.0
    """Retries always allowed on top of the budget, so that a quiet service can still retry
    (Finagle's RetryBudget default)."""
    backoff_base: Duration = 0.05
    backoff_max: Duration = 1.0
    jitter: bool = True


class CircuitBreaker(_Spec):
    failure_threshold: Annotated[int, Field(ge=1, le=100_000)] = 5
    window: Interval = 10.0
    open_for: Duration = 5.0
    half_open_probes: Annotated[int, Field(ge=1, le=1000)] = 1


class Timeouts(_Spec):
    connect: Timeout = 0.5
    request: Timeout = 5.0


class Hedging(_Spec):
    after: Duration
    """Send a second request to the next region when the first has not answered after this long."""


class ConnectionPool(_Spec):
    """Client connection pools between components. Pooled connections survive DNS faults that spare
    existing connections (2025-10-20): the longer they live, the less such a fault hurts."""

    max_connections: Annotated[int, Field(ge=1, le=10_000)] = 20
    keepalive_expiry: Duration = 30.0
    max_age: Duration | None = None


class Failback(_Spec):
    after_healthy_for: Duration = 10.0
    """Hysteresis: return to a recovered region only once it has been healthy this long."""


class Routing(_Spec):
    mode: RoutingMode = RoutingMode.ACTIVE_PASSIVE
    order: tuple[RegionId, ...] = ()
    """Regions in order of preference; defaults to the order of ``regions``."""
    sovereignty_guard: bool = True
    """Refuse to route a data class to a region below its minimum level (fail closed). Turning it
    off models a deployment that does not enforce residency: violations then happen and are scored."""
    scale_up_delay: Duration = 20.0
    """Pilot light: how long a standby takes to reach its ``max_replicas`` (needs the control plane)."""
    health_check: HealthCheck = HealthCheck()
    retry: RetryPolicy = RetryPolicy()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    timeouts: Timeouts = Timeouts()
    hedging: Hedging | None = None
    connection_pool: ConnectionPool = ConnectionPool()
    failback: Failback = Failback()
    canary: AnswerCanary | None = None
    """Ask each region's llm golden questions and route away from wrong answers (None: no canary)."""


class ReplicationMode(StrEnum):
    ASYNC = "async"
    SYNC = "sync"
    NONE = "none"


class Replication(_Spec):
    mode: ReplicationMode = ReplicationMode.ASYNC
    lag: Duration = 1.0
    """Async mode: how long a write waits before it is shipped to peers."""


class DataClassPolicy(_Spec):
    min_sovereignty: Sovereignty = Sovereignty.FOREIGN
    description: str = ""


_DEFAULT_CLASSES = {
    "public": DataClassPolicy(min_sovereignty=Sovereignty.FOREIGN),
    "internal": DataClassPolicy(min_sovereignty=Sovereignty.FOREIGN),
    "confidential": DataClassPolicy(min_sovereignty=Sovereignty.SOVEREIGN),
}


class Design(_Spec):
    """A failover design: the system under test."""

    id: Identifier
    title: str = ""
    description: str = ""
    regions: tuple[RegionSpec, ...]
    components: dict[Identifier, ComponentSpec]
    dependencies: dict[Identifier, DependencySpec] = {}
    routing: Routing = Routing()
    replication: Replication = Replication()
    data_classes: dict[Identifier, DataClassPolicy] = Field(default_factory=lambda: dict(_DEFAULT_CLASSES))

    _source: SourceMap | None = PrivateAttr(default=None)

    @field_validator("regions")
    @classmethod
    def _some_regions(cls, value: tuple[RegionSpec, ...]) -> tuple[RegionSpec, ...]:
        if not value:
            raise ValueError("a design needs at least one region")
        return value

    # -- resolved views ------------------------------------------------------------------------

    @cached_property
    def region_map(self) -> dict[str, Region]:
        out: dict[str, Region] = {}
        for spec in self.regions:
            known = CATALOG.get(spec.id)
            provider = spec.provider or (known.provider if known else spec.id.split("/", 1)[0])
            jurisdiction = spec.jurisdiction or (known.jurisdiction if known else "")
            level = spec.sovereignty or (known.sovereignty if known else Sovereignty.FOREIGN)
            out[spec.id] = Region(spec.id, provider, jurisdiction, level, spec.cost, spec.depends_on)
        return out

    def region(self, region_id: str) -> Region:
        """A region of the design, or — for dependencies placed outside it — a catalog region."""
        if region_id in self.region_map:
            return self.region_map[region_id]
        known = CATALOG.get(region_id)
        if known is None:
            raise KeyError(region_id)
        return Region(region_id, known.provider, known.jurisdiction, known.sovereignty, None, ())

    def component_kind(self, name: str) -> ComponentKind | None:
        spec = self.components[name]
        if spec.kind is not None:
            return spec.kind
        if spec.own:
            return ComponentKind.SERVICE
        try:
            return ComponentKind(name)
        except ValueError:
            return None

    def components_of(self, kind: ComponentKind) -> list[str]:
        return [name for name in self.components if self.component_kind(name) is kind]

    @property
    def routing_order(self) -> tuple[str, ...]:
        return self.routing.order or tuple(spec.id for spec in self.regions)

    def providers(self) -> list[str]:
        return sorted({r.provider for r in self.region_map.values()})

    def allowed_regions(self, data_class: str) -> tuple[str, ...]:
        """Regions, in routing order, that may serve ``data_class`` (all of them when the guard is off)."""
        minimum = self.data_classes[data_class].min_sovereignty
        order = self.routing_order
        if not self.routing.sovereignty_guard:
            return order
        return tuple(r for r in order if self.region(r).sovereignty.satisfies(minimum))

    # -- cross-reference checks ----------------------------------------------------------------

    def check(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """Cross-references that do not resolve, as ``(path, message)``: regions, dependencies,
        routing order. Pure; the loader places them in the file."""
        problems: list[tuple[tuple[PathElement, ...], str]] = []
        declared = [spec.id for spec in self.regions]
        seen: set[str] = set()
        for i, rid in enumerate(declared):
            if rid in seen:
                problems.append((("regions", i, "id"), f"region {rid!r} is declared twice"))
            seen.add(rid)
        for i, spec in enumerate(self.regions):
            for j, dep in enumerate(spec.depends_on):
                if dep not in self.dependencies:
                    problems.append(
                        (("regions", i, "depends_on", j), _unknown("dependency", dep, self.dependencies))
                    )
        for name, dep_spec in self.dependencies.items():
            if dep_spec.region not in self.region_map and dep_spec.region not in CATALOG:
                problems.append(
                    (
                        ("dependencies", name, "region"),
                        f"region {dep_spec.region!r} is neither declared in the design nor in the catalog",
                    )
                )
        for name, comp in self.components.items():
            for rid, placement in comp.replicas.items():
                if rid not in self.region_map:
                    problems.append(
                        (("components", name, "replicas", rid), _unknown("region", rid, declared))
                    )
                if placement.model is not None and self.component_kind(name) is not ComponentKind.LLM:
                    problems.append(
                        (
                            ("components", name, "replicas", rid, "model"),
                            "only the reference llm takes a model (a component named llm, without "
                            "command: or url:); a service of your own says its model in its answers, "
                            "and a model-swap fault needs no model: here",
                        )
                    )
                is_gateway = self.component_kind(name) is ComponentKind.GATEWAY
                if placement.max_inflight is not None and not is_gateway:
                    problems.append(
                        (
                            ("components", name, "replicas", rid, "max_inflight"),
                            "only gateway components take max_inflight",
                        )
                    )
        for i, rid in enumerate(self.routing.order):
            if rid not in self.region_map:
                problems.append((("routing", "order", i), _unknown("region", rid, declared)))
        if len(set(self.routing.order)) != len(self.routing.order):
            problems.append((("routing", "order"), "a region appears twice in the routing order"))
        problems += self._own_problems()
        entries = [n for n, c in self.components.items() if c.entry]
        if not self.components_of(ComponentKind.GATEWAY) and not entries:
            problems.append(
                (("components",), "a design needs an entry point: a gateway, or a service with entry: true")
            )
        problems += self._scale_up_problems()
        return problems

    def entry_component(self) -> str | None:
        """The own service clients reach, when the design has one instead of a gateway."""
        return next((n for n, c in self.components.items() if c.entry), None)

    def _own_problems(self) -> list[tuple[tuple[PathElement, ...], str]]:
        problems: list[tuple[tuple[PathElement, ...], str]] = []
        entries = [n for n, c in self.components.items() if c.entry]
        for name in entries[1:]:
            problems.append((("components", name, "entry"), f"only one entry point: {entries[0]} is one"))
        if entries and self.components_of(ComponentKind.GATEWAY):
            problems.append(
                (("components", entries[0], "entry"), "a design with a gateway enters through it")
            )
        for name, comp in self.components.items():
            if comp.entry and not comp.own:
                problems.append((("components", name, "entry"), "only a service (command or url) enters"))
            for i, callee in enumerate(comp.calls):
                if callee not in self.components or callee == name:
                    problems.append(
                        (("components", name, "calls", i), _unknown("component", callee, self.components))
                    )
            if comp.command is not None:
                placed = {
                    n: [r for r, p in c.replicas.items() if p.ceiling > 0] for n, c in self.components.items()
                }
                problems += [
                    (("components", name, "command", *where), message)
                    for where, message in placeholder_problems(
                        comp.command.templates(), comp.calls, placed, replication=comp.replication is not None
                    )
                ]
            problems += self._replication_problems(name, comp)
            if self.component_kind(name) is ComponentKind.IDENTITY and not comp.own:
                problems.append(
                    (
                        ("components", name),
                        "an identity component is a token service of your own: give it a command "
                        "(bascule starts it) or a url",
                    )
                )
            if comp.url is not None:
                for rid in comp.replicas:
                    if rid not in comp.url:
                        problems.append((("components", name, "url"), f"no url for {rid}, where it runs"))
                for rid in comp.url:
                    if rid not in comp.replicas:
                        problems.append((("components", name, "url", rid), f"{name} is not placed in {rid}"))
                for rid, placement in comp.replicas.items():
                    if placement.replicas != 1 or placement.max_replicas not in (None, 1):
                        problems.append(
                            (
                                ("components", name, "replicas", rid),
                                "a url component is one running service per region: replicas: 1",
                            )
                        )
        return problems

    def _replication_problems(
        self, name: str, comp: ComponentSpec
    ) -> list[tuple[tuple[PathElement, ...], str]]:
        if comp.replication is None:
            return []
        placed = [r for r, p in comp.replicas.items() if p.ceiling > 0]
        where: tuple[PathElement, ...] = ("components", name, "replication", "primary")
        if comp.replication.primary not in placed:
            return [
                (
                    where,
                    f"{name} is not placed in {comp.replication.primary}: "
                    + _unknown("region", comp.replication.primary, placed),
                )
            ]
        if len(placed) < 2:
            return [(where, f"{name} is placed in one region only: there is nothing to replicate to")]
        return []

    def growing_regions(self) -> list[str]:
        """Regions where some component has ``max_replicas`` above ``replicas``."""
        return sorted(
            {
                rid
                for spec in self.components.values()
                for rid, placement in spec.replicas.items()
                if placement.ceiling > placement.replicas
            }
        )

    def _scale_up_problems(self) -> list[tuple[tuple[PathElement, ...], str]]:
        # A region scales up on its gateways' load (as an autoscaler on concurrency would): without
        # a running gateway that has a slot count, nothing could ever tell it to grow.
        problems: list[tuple[tuple[PathElement, ...], str]] = []
        gateways = self.components_of(ComponentKind.GATEWAY)
        for rid in self.growing_regions():
            placements = [self.components[g].replicas.get(rid) for g in gateways]
            if not any(p is not None and p.replicas >= 1 and p.max_inflight for p in placements):
                name = next((g for g in gateways if rid in self.components[g].replicas), None)
                where: tuple[PathElement, ...] = (
                    ("components", name, "replicas", rid) if name else ("components",)
                )
                problems.append(
                    (
                        where,
                        f"{rid} scales up (max_replicas) on its gateways' load, so it needs a gateway "
                        "there with replicas ≥ 1 and max_inflight",
                    )
                )
        return problems

    def attach_source(self, source: SourceMap) -> Design:
        self._source = source
        return self

    @property
    def source_map(self) -> SourceMap | None:
        return self._source
