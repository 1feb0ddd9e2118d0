"""``--metrics-port``: the live view's figures as Prometheus metrics, on 127.0.0.1 only, for the
dashboards an SRE already watches during a game day. Updated from each closed 1 s window."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from bascule.errors import TargetError
from bascule.journal import Window

__all__ = ["MetricsEndpoint"]


class MetricsEndpoint:
    """A private registry (so that two runs in one process do not collide) served over HTTP."""

    def __init__(self, port: int, scenario: str, design: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"scenario": scenario, "design": design}
        self._labels = labels
        names = list(labels)
        self.requests = Counter(
            "bascule_requests",
            "Requests made by load and probes.",
            [*names, "outcome"],
            registry=self.registry,
        )
        self.success_ratio = Gauge(
            "bascule_success_ratio",
            "Success ratio of the last closed 1 s window.",
            names,
            registry=self.registry,
        )
        self.p95 = Gauge(
            "bascule_latency_p95_seconds",
            "p95 latency of the last closed 1 s window.",
            names,
            registry=self.registry,
        )
        self.served = Counter(
            "bascule_served_requests",
            "Successful requests by data class and serving region.",
            [*names, "data_class", "region"],
            registry=self.registry,
        )
        self.violations = Counter(
            "bascule_sovereignty_violations",
            "Hops below their data class's minimum level.",
            names,
            registry=self.registry,
        )
        self.active_faults = Gauge("bascule_active_faults", "Faults in force.", names, registry=self.registry)
        self.elapsed = Gauge(
            "bascule_plan_elapsed_seconds", "Seconds since the plan started.", names, registry=self.registry
        )
        # Every series from the start: "0 violations so far" is a figure, no series reads as no data.
        for outcome in ("ok", "failed"):
            self.requests.labels(**labels, outcome=outcome)
        self.violations.labels(**labels)
        self.active_faults.labels(**labels).set(0)
        try:
            server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:  # one line and exit 4, before anything starts; not a traceback
            raise TargetError(
                f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}"
            ) from exc
        self._server: WSGIServer = server
        self.port = int(server.server_address[1])

    def observe(self, window: Window, *, active_faults: int, elapsed: float, violations: int = 0) -> None:
        self.requests.labels(**self._labels, outcome="ok").inc(window.ok)
        self.requests.labels(**self._labels, outcome="failed").inc(window.requests - window.ok)
        if window.requests:
            self.success_ratio.labels(**self._labels).set(window.ok / window.requests)
        p95 = window.latency.quantile(0.95)
        if p95 is not None:
            self.p95.labels(**self._labels).set(p95)
        for data_class, regions in window.regions.items():
            for region, n in regions.items():
                self.served.labels(**self._labels, data_class=data_class, region=region).inc(n)
        self.active_faults.labels(**self._labels).set(active_faults)
        self.elapsed.labels(**self._labels).set(elapsed)
        if violations:
            self.violations.labels(**self._labels).inc(violations)

    def add_violations(self, count: int) -> None:
        self.violations.labels(**self._labels).inc(count)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
