"""A design's reference stack running on this machine: processes, routes and names.

``LocalStack.start`` lays the design out (``bascule.stack.layout``), starts the stack's DNS server
and fault plane, opens one route per hop, starts every replica at once under the supervisor and
waits until all are ready. Routes follow the replicas: when a replica (re)starts on a new port, the
routes to its component are pointed at it. ``stop`` undoes all of it. Faults act on these parts —
the plane's routes, the DNS server's names and the supervisor's processes.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bascule.errors import TargetError
from bascule.model.design import Design
from bascule.plan.topology import Endpoint
from bascule.stack.layout import ProcessKind, ReplicaSpec, StackLayout, layout, replica_argv
from bascule.stack.supervisor import ProcessSpec, ProcessState, Supervisor, SupervisorEvent
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.proxy import FaultPlane, Upstream

__all__ = ["LocalStack", "StackTimings"]

STATE_FILE = "stack.json"


@dataclass
class StackTimings:
    """Seconds from the call to ``start`` until each step was done."""

    network: float = 0.0
    announced: float = 0.0
    ready: float = 0.0


@dataclass
class LocalStack:
    design: Design
    design_path: Path
    run_dir: Path
    layout: StackLayout
    dns: DnsServer
    plane: FaultPlane
    supervisor: Supervisor
    route_ports: dict[str, int]
    timings: StackTimings = field(default_factory=StackTimings)

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        design: Design,
        design_path: Path,
        run_dir: Path,
        *,
        timeout: float = 30.0,
        progress: Callable[[str], None] | None = None,
    ) -> LocalStack:
        say = progress or (lambda _: None)
        began = time.monotonic()
        stack_layout = layout(design)
        run_dir.mkdir(parents=True, exist_ok=True)
        dns = DnsServer()
        plane = FaultPlane()
        supervisor: Supervisor | None = None
        try:
            dns_port = dns.start()
            for host in stack_layout.hosts():
                dns.set_record(host, ["127.0.0.1"])
            plane.start()
            ports = {route.name: plane.add_route(route.name, []) for route in stack_layout.routes}
            say(f"DNS on 127.0.0.1:{dns_port}, {len(ports)} routes")
            timings = StackTimings(network=time.monotonic() - began)
            supervisor = Supervisor(run_dir / "logs")
            stack = cls(
                design, design_path.resolve(), run_dir, stack_layout, dns, plane, supervisor, ports, timings
            )
            supervisor.subscribe(stack._on_event)
            specs = stack._specs(dns_port)
            say(f"starting {len(specs)} processes")
            supervisor.start(specs, timeout=timeout)
            timings.announced = time.monotonic() - began
            say("waiting for readiness")
            supervisor.wait_ready(timeout=max(1.0, timeout - timings.announced))
            timings.ready = time.monotonic() - began
            stack.write_state()
            return stack
        except BaseException:
            if supervisor is not None:
                supervisor.stop(timeout=3.0)
            plane.stop()
            dns.stop()
            raise

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop every process, then the routes and the DNS server."""
        try:
            self.supervisor.stop(timeout=timeout)
        finally:
            self.plane.stop()
            self.dns.stop()
            (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    # -- wiring ----------------------------------------------------------------------------------

    def _specs(self, dns_port: int) -> list[ProcessSpec]:
        identity_secrets = {
            r.component: secrets.token_urlsafe(32)
            for r in self.layout.replicas
            if r.kind is ProcessKind.IDENTITY
        }
        specs: list[ProcessSpec] = []
        for replica in self.layout.replicas:
            argv = replica_argv(
                self.design,
                self.layout,
                replica,
                design_path=str(self.design_path),
                route_ports=self.route_ports,
                dns_server=("127.0.0.1", dns_port),
                python=sys.executable,
            )
            env: dict[str, str] = {}
            secret = self._secret_for(replica, identity_secrets)
            if secret is not None:
                env["BASCULE_TOKEN_SECRET"] = secret
            specs.append(ProcessSpec(replica.name, tuple(argv), group=replica.region, env=env))
        return specs

    def _secret_for(self, replica: ReplicaSpec, identity_secrets: dict[str, str]) -> str | None:
        if replica.kind is ProcessKind.IDENTITY:
            return identity_secrets[replica.component]
        for dep in self.design.region(replica.region).depends_on:
            if dep in identity_secrets:
                return identity_secrets[dep]
        return None

    def _on_event(self, event: SupervisorEvent) -> None:
        if event.kind in ("started", "killed", "exited"):
            spec = self.replica_spec(event.name)
            if spec is not None:
                self.refresh_routes(spec.endpoint)

    def refresh_routes(self, endpoint: Endpoint) -> None:
        """Point every route to ``endpoint`` at its replicas that are up."""
        upstreams: list[Upstream] = []
        for spec in self.layout.replicas_of(endpoint):
            replica = self.supervisor.replica(spec.name)
            if replica.url and replica.state in (ProcessState.RUNNING, ProcessState.PAUSED):
                parts = urlsplit(replica.url)
                assert parts.hostname is not None and parts.port is not None
                upstreams.append(Upstream(parts.hostname, parts.port))
        for route in self.layout.routes:
            if route.hop.target == endpoint:
                self.plane.set_upstreams(route.name, upstreams)

    # -- views -----------------------------------------------------------------------------------

    def replica_spec(self, name: str) -> ReplicaSpec | None:
        return next((r for r in self.layout.replicas if r.name == name), None)

    def entries(self) -> dict[str, str]:
        """The client entry point of each region: its gateways, behind their ingress route."""
        return {
            route.hop.target.region: f"http://127.0.0.1:{self.route_ports[route.name]}"
            for route in self.layout.ingress()
        }

    def state(self) -> dict[str, object]:
        return {
            "design": self.design.id,
            "design_path": str(self.design_path),
            "entries": self.entries(),
            "dns": {"host": "127.0.0.1", "port": self.dns.port},
            "processes": [
                {
                    "name": r.spec.name,
                    "region": r.spec.group,
                    "pid": r.pid,
                    "start_time": r.start_time,
                    "url": r.url,
                    "state": r.state.value,
                }
                for r in self.supervisor.replicas()
            ],
            "routes": {name: port for name, port in self.route_ports.items()},
        }

    def write_state(self) -> Path:
        path = self.run_dir / STATE_FILE
        path.write_text(json.dumps(self.state(), indent=2))
        return path


def read_state(run_dir: Path) -> dict[str, object]:
    """The state a running ``bascule stack up`` wrote, for ``bascule stack ask``."""
    path = run_dir / STATE_FILE
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TargetError(f"no running stack found at {run_dir} (start one with `bascule stack up`)") from exc
    return data
