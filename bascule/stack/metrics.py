"""The reference services' Prometheus metrics, served at ``GET /metrics`` (docs/metrics.md).

Every service that names its hop gets `ServiceMetrics` from the skeleton (`bascule.stack.service`):
requests by route, method and status, and their latency as a histogram, each series labelled with
the replica's ``component``, ``region`` and ``replica`` — so that a PromQL steady state can be
written per service and per region without any relabelling. The gateway adds `GatewayCollector`:
which upstream region served each data class, degraded answers, the state of each breaker, shed
requests; read from the gateway's own state when Prometheus scrapes, so that serving a request only
bumps plain integers.

Each app has a registry of its own (tests run several apps in one process); nothing is exported to
the process-wide default registry.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bascule.stack.breaker import BreakerSnapshot, BreakerState

__all__ = [
    "BREAKER_STATE_VALUES",
    "METRICS_PATH",
    "GatewayCollector",
    "GatewayTally",
    "ServiceMetrics",
]

METRICS_PATH = "/metrics"
OTHER_ROUTE = "other"
"""The ``route`` label of a request no route matched (404): paths are not labels, or a scan of
random paths would make a series each."""
BREAKER_STATE_VALUES: Mapping[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}
_REPLICA_LABELS = ("component", "region", "replica")


class ServiceMetrics:
    """One service replica's request metrics and the ``/metrics`` route that serves them."""

    def __init__(self, component: str, region: str, replica: str) -> None:
        self.registry = CollectorRegistry()
        self.labels = (component, region, replica)
        self.requests = Counter(
            "bascule_stack_requests",
            "Requests answered, by route template, method and HTTP status (5xx: errors).",
            [*_REPLICA_LABELS, "route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "bascule_stack_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer (a stream's last byte).",
            [*_REPLICA_LABELS, "route", "method"],
            registry=self.registry,
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(*self.labels, route, method, str(status)).inc()
        self.duration.labels(*self.labels, route, method).observe(seconds)

    def add(self, collector: Collector) -> None:
        """Serve `collector`'s metrics too (the gateway's)."""
        self.registry.register(collector)

    def route(self) -> Route:
        """``GET /metrics`` in Prometheus's text format. Rendered on the event loop, not in a worker
        thread: collectors read state that only the loop changes."""

        async def metrics(request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return Route(METRICS_PATH, metrics, methods=["GET"])


class MetricsMiddleware:
    """Times and counts every HTTP request but the scrapes themselves."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == METRICS_PATH:
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        # An error no handler answered becomes a 500 outside this middleware.
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, receive, send_counted)
        finally:
            # The router notes the route it matched in the scope it was given: this one.
            matched = scope.get("route")
            template = getattr(matched, "path", None)
            route = template if isinstance(template, str) else OTHER_ROUTE
            method = str(scope.get("method", "GET"))
            self._metrics.observe(route, method, status, time.perf_counter() - started)


# --- the gateway's own -------------------------------------------------------------------------


@dataclass
class GatewayTally:
    """What the gateway counts as it serves: plain integers, exposed by `GatewayCollector`."""

    served: Tally[tuple[str, str, str]] = field(default_factory=Tally)
    """(upstream component, upstream region, data class) → calls that upstream answered."""
    degraded: Tally[str] = field(default_factory=Tally)
    """data class → answers given from retrieval alone (no llm answered)."""
    shed: int = 0
    """Requests refused with 503 ``overloaded`` (``--max-inflight`` reached)."""
    inflight: int = 0


class GatewayState(Protocol):
    """What `GatewayCollector` reads of a gateway."""

    @property
    def tally(self) -> GatewayTally: ...

    def breaker_snapshots(self) -> Iterable[tuple[str, str, BreakerSnapshot]]:
        """(upstream component, upstream region, snapshot) for every breaker."""
        ...


class GatewayCollector(Collector):
    """The gateway's routing state as metrics, read at each scrape."""

    def __init__(self, gateway: GatewayState, labels: tuple[str, str, str]) -> None:
        self._gateway = gateway
        self._labels = list(labels)

    def collect(self) -> Iterator[Metric]:
        tally = self._gateway.tally
        own = list(_REPLICA_LABELS)
        served = CounterMetricFamily(
            "bascule_gateway_upstream_served",
            "Calls an upstream answered, by upstream component, its region and the data class.",
            labels=[*own, "upstream", "upstream_region", "data_class"],
        )
        for (component, region, data_class), count in sorted(tally.served.items()):
            served.add_metric([*self._labels, component, region, data_class], count)
        degraded = CounterMetricFamily(
            "bascule_gateway_degraded",
            "Answers given from retrieval alone because no allowed llm answered, by data class.",
            labels=[*own, "data_class"],
        )
        for data_class, count in sorted(tally.degraded.items()):
            degraded.add_metric([*self._labels, data_class], count)
        state = GaugeMetricFamily(
            "bascule_gateway_breaker_state",
            "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.",
            labels=[*own, "upstream", "upstream_region"],
        )
        trips = CounterMetricFamily(
            "bascule_gateway_breaker_trips",
            "Times a breaker opened, per upstream.",
            labels=[*own, "upstream", "upstream_region"],
        )
        for component, region, snap in self._gateway.breaker_snapshots():
            state.add_metric([*self._labels, component, region], BREAKER_STATE_VALUES[snap.state])
            trips.add_metric([*self._labels, component, region], snap.trips)
        shed = CounterMetricFamily(
            "bascule_gateway_shed",
            "Requests refused with 503 overloaded: every slot (--max-inflight) was busy.",
            labels=own,
        )
        shed.add_metric(self._labels, tally.shed)
        inflight = GaugeMetricFamily(
            "bascule_gateway_inflight", "Asks and writes being served now.", labels=own
        )
        inflight.add_metric(self._labels, tally.inflight)
        yield from (served, degraded, state, trips, shed, inflight)
