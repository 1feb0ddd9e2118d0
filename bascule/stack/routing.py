"""Where the reference gateway sends a request: the design's routing policy over breaker states.

For a data class, the candidate regions are the design's routing order, restricted by the
sovereignty guard to the regions whose level the class accepts (`Design.allowed_regions`); the
other regions are *refused* and never tried. Candidates are then ranked by health:

- ``settled``: every breaker of the region is closed and has stayed closed for at least
  ``failback.after_healthy_for`` since its last trip (a region that never tripped is settled);
- ``recovering``: every breaker is closed, but one closed too recently. This is the failback
  hysteresis: a recovered region gets traffic back only once it has stayed healthy, so a
  flapping upstream does not drag traffic back and forth;
- ``unhealthy``: some breaker is open or half-open, or — for requests that need an llm — the
  design's answer canary distrusts the region's llm (`distrust`). Such a region is kept last, as a
  last resort; whether it is called at all is its breakers' decision.

Active-passive and pilot-light put the first settled region in routing order first;
active-active spreads over the settled regions by smooth weighted round-robin (nginx's
algorithm), weighted by the retriever replicas each region runs. Everything here is pure apart
from the breakers' and the round-robin's own state; time comes from the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bascule.model.design import ComponentKind, Design, RoutingMode
from bascule.stack.breaker import BreakerState, CircuitBreaker, Ticket

__all__ = [
    "Probe",
    "RegionHealth",
    "Route",
    "Router",
    "UnknownDataClassError",
]


class RegionHealth(StrEnum):
    SETTLED = "settled"
    RECOVERING = "recovering"
    UNHEALTHY = "unhealthy"


class UnknownDataClassError(KeyError):
    """A request named a data class the design does not define."""

    def __init__(self, data_class: str, known: Iterable[str]) -> None:
        super().__init__(data_class)
        self.data_class = data_class
        self.known = tuple(known)

    def __str__(self) -> str:
        return f"unknown data class {self.data_class!r}; the design defines {', '.join(self.known)}"


@dataclass(frozen=True)
class Route:
    """The regions one request may use, most preferred first, and those the guard refuses.

    ``order`` holds only allowed regions with an upstream of at least one of the components
    asked about: a region the gateway cannot reach there is no candidate."""

    data_class: str
    order: tuple[str, ...]
    refused: tuple[str, ...]


@dataclass(frozen=True)
class Probe:
    """A half-open trial call to make: the upstream and the ticket its breaker issued."""

    component: str
    region: str
    ticket: Ticket


class Router:
    """Breakers for every upstream ``(component, region)`` and the ranking of regions."""

    def __init__(
        self,
        design: Design,
        upstreams: Iterable[tuple[str, str]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._design = design
        self._clock = clock
        policy = design.routing.circuit_breaker
        self._breakers = {
            (component, region): CircuitBreaker.from_policy(policy, clock=clock)
            for component, region in upstreams
        }
        self._weights = {region: _retriever_replicas(design, region) for region in design.routing_order}
        self._round_robin: dict[tuple[str, ...], dict[str, float]] = {}
        self._distrusted: set[str] = set()

    @property
    def design(self) -> Design:
        return self._design

    @property
    def breakers(self) -> Mapping[tuple[str, str], CircuitBreaker]:
        return self._breakers

    def breaker(self, component: str, region: str) -> CircuitBreaker | None:
        return self._breakers.get((component, region))

    @property
    def distrusted(self) -> frozenset[str]:
        return frozenset(self._distrusted)

    def distrust(self, region: str, distrusted: bool) -> None:
        """The answer canary's verdict on a region's llm (`bascule.stack.gateway.canary`): while
        distrusted, the region ranks unhealthy for requests that need an llm — a last resort."""
        if distrusted:
            self._distrusted.add(region)
        else:
            self._distrusted.discard(region)

    def health(self, region: str, components: Sequence[str]) -> RegionHealth:
        """The region's health as seen through the breakers of `components` there (and the answer
        canary, for requests that need an llm)."""
        if region in self._distrusted and "llm" in components:
            return RegionHealth.UNHEALTHY
        now = self._clock()
        settled = True
        for component in components:
            breaker = self._breakers.get((component, region))
            if breaker is None:
                continue
            since = breaker.healthy_since
            if since is None:
                return RegionHealth.UNHEALTHY
            if now - since < self._design.routing.failback.after_healthy_for:
                settled = False
        return RegionHealth.SETTLED if settled else RegionHealth.RECOVERING

    def route(self, data_class: str, components: Sequence[str], *, spread: bool = True) -> Route:
        """The regions for one request of `data_class`, ranked by the health of `components`.

        ``spread=False`` ranks without advancing the active-active round-robin (for status).
        """
        if data_class not in self._design.data_classes:
            raise UnknownDataClassError(data_class, self._design.data_classes)
        allowed = self._design.allowed_regions(data_class)
        refused = tuple(r for r in self._design.routing_order if r not in allowed)
        groups: dict[RegionHealth, list[str]] = {health: [] for health in RegionHealth}
        for region in allowed:
            if not any((c, region) in self._breakers for c in components):
                continue
            groups[self.health(region, components)].append(region)
        settled = groups[RegionHealth.SETTLED]
        if spread and self._design.routing.mode is RoutingMode.ACTIVE_ACTIVE and settled:
            first = self._next_round_robin(allowed, settled)
            settled = [first, *(r for r in settled if r != first)]
        order = (*settled, *groups[RegionHealth.RECOVERING], *groups[RegionHealth.UNHEALTHY])
        return Route(data_class, order, refused)

    def preferred(self, data_class: str, components: Sequence[str]) -> str | None:
        """The region a request of `data_class` would go to first, unless none is healthy."""
        for region in self.route(data_class, components, spread=False).order:
            if self.health(region, components) is not RegionHealth.UNHEALTHY:
                return region
        return None

    def take_probes(self) -> list[Probe]:
        """Tickets for the trial calls that half-open breakers admit now; the caller makes
        each call and reports its outcome to the breaker."""
        probes = []
        for (component, region), breaker in self._breakers.items():
            if breaker.state is not BreakerState.HALF_OPEN:
                continue
            ticket = breaker.acquire()
            if ticket is not None:
                probes.append(Probe(component, region, ticket))
        return probes

    def _next_round_robin(self, key: tuple[str, ...], members: Sequence[str]) -> str:
        current = self._round_robin.setdefault(key, {})
        for region in list(current):
            # A region that left the rotation rejoins without the credit it had.
            if region not in members:
                del current[region]
        total = sum(self._weights.get(r, 1) for r in members)
        for region in members:
            current[region] = current.get(region, 0.0) + self._weights.get(region, 1)
        chosen = max(members, key=lambda r: current[r])
        current[chosen] -= total
        return chosen


def _retriever_replicas(design: Design, region: str) -> int:
    replicas = sum(
        design.components[name].replicas[region].replicas
        for name in design.components_of(ComponentKind.RETRIEVER)
        if region in design.components[name].replicas
    )
    return max(1, replicas)
