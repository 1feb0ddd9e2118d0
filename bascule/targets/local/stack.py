"""A design's reference stack running on this machine: processes, routes and names.

``LocalStack.start`` lays the design out (``bascule.stack.layout``), starts the stack's DNS server
and fault plane, opens one route per hop, starts every replica at once under the supervisor and
waits until all are ready. Routes follow the replicas: when a replica (re)starts on a new port, the
routes to its component are pointed at it. ``stop`` undoes all of it. Faults act on these parts —
the plane's routes, the DNS server's names and the supervisor's processes — through the stack's
`FaultBoard` (``.board``), in this process or, with ``control=True``, from another one over the
token-protected loopback control channel whose URL and token ``stack.json`` (mode 0600) holds.

Before anything starts, the run's undo ledger (``ledger.jsonl``, `ledger.Ledger`) is created in
the run directory; every port bound and every process started is recorded there, and every
process carries the run's marker in its environment, so that `bascule recover` can clean up
after a run that was killed at any instant. A run directory whose previous run did not end
cleanly is refused until it has been recovered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bascule.errors import TargetError
from bascule.model.design import Design
from bascule.model.topology import Endpoint
from bascule.stack.layout import ProcessKind, ReplicaSpec, StackLayout, layout, own_command, replica_argv
from bascule.stack.spawn import ForkServer, fork_refusal
from bascule.stack.supervisor import (
    ProcessSpec,
    ProcessState,
    Supervisor,
    SupervisorEvent,
    process_start_time,
)
from bascule.targets.local.board import FaultBoard
from bascule.targets.local.control import ControlServer, describe_process
from bascule.targets.local.dns import DnsServer, Lookup
from bascule.targets.local.egress import Egress, proxy_environment
from bascule.targets.local.ledger import (
    LEDGER_FILE,
    ClosedRecord,
    Ledger,
    PortRecord,
    ProcessRecord,
)
from bascule.targets.local.lookups import OutsideLookups
from bascule.targets.local.names import (
    ResolverFiles,
    listen_for,
    names_refusal,
    namespace_argv,
    write_resolver,
)
from bascule.targets.local.procfs import MARKER_ENV, process_alive, signal_process
from bascule.targets.local.proxy import FaultPlane, Upstream
from bascule.targets.local.scaler import Autoscaler
from bascule.targets.local.scrape import ScrapeTargets
from bascule.targets.local.shared import lent_fork_server
from bascule.targets.otlp import otlp_environment

__all__ = ["LEDGER_FILE", "STATE_FILE", "LocalStack", "StackTimings", "read_state"]

STATE_FILE: Final = "stack.json"

_log = logging.getLogger(__name__)


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
    ledger: Ledger
    board: FaultBoard
    marker: str
    timings: StackTimings = field(default_factory=StackTimings)
    control: ControlServer | None = None
    """The control channel, when started with ``control=True``."""
    scaler: Autoscaler | None = None
    """Grows pilot-light regions (``max_replicas``) on their gateways' load."""
    otlp_endpoint: str | None = None
    """The run's trace receiver, handed to every process started (``OTEL_EXPORTER_OTLP_*``)."""
    egress: Egress | None = None
    """Where own services' requests to hosts outside the design end (`egress`)."""
    lookups: OutsideLookups | None = None
    """Lookups of names outside the design, from the DNS server's hook (`lookups`)."""
    resolvers: dict[str, ResolverFiles] = field(default_factory=dict)
    """The resolver of each own-service replica given its callees by name (`names`), by replica."""
    scrape: ScrapeTargets | None = None
    """``prometheus-targets.json``: where Prometheus finds every replica's ``/metrics`` (`scrape`)."""
    _recorded: set[tuple[int, int]] = field(default_factory=set, init=False, repr=False)
    _adopted: list[tuple[int, int]] = field(default_factory=list, init=False, repr=False)
    _record_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _stopped: bool = field(default=False, init=False, repr=False)

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
        control: bool = False,
        otlp_endpoint: str | None = None,
        cancel: threading.Event | None = None,
        on_lookup: Callable[[Lookup], None] | None = None,
    ) -> LocalStack:
        """Start the stack; with `control`, also its control channel on 127.0.0.1 (random token);
        with `otlp_endpoint`, every process it starts is pointed at that trace receiver
        (`bascule.targets.otlp`) and ``url:`` services are told of it; `on_lookup` sees every query
        of its DNS server (`dns.Lookup`), after the stack's own consumer (`lookups`). When `cancel`
        is set meanwhile, everything started is stopped, the ledger closed, and `TargetError` raised
        (within about 0.1 s, plus the time the processes take to stop).

        Raises `TargetError` when `run_dir` holds the ledger of a run that is alive or was not
        recovered, when services given names cannot have a resolver of their own here
        (`names.names_refusal`), or when a process does not start and become ready within
        `timeout` (or, for an own service, its ``start_timeout`` when longer).
        """
        say = progress or (lambda _: None)
        began = time.monotonic()
        stack_layout = layout(design)
        refused = names_refusal(stack_layout.resolving)
        if refused is not None:
            raise TargetError(refused)
        run_dir.mkdir(parents=True, exist_ok=True)
        marker = secrets.token_hex(16)
        ledger = Ledger.create(run_dir / LEDGER_FILE, design=design.id, marker=marker)
        lookups = OutsideLookups(stack_layout.hosts(), {r.name: r.region for r in stack_layout.replicas})

        def seen(lookup: Lookup) -> None:
            lookups(lookup)
            if on_lookup is not None:
                on_lookup(lookup)

        dns = DnsServer(on_lookup=seen)
        plane = FaultPlane()
        egress = Egress()
        supervisor: Supervisor | None = None
        server: ControlServer | None = None
        forks: ForkServer | None = None
        lent = False
        try:
            # First: its imports go on while the network is set up. Own services start cold: a
            # design of only those has no use for it.
            if stack_layout.forks:
                forks = _lent_fork_server(ledger, say)
                lent = forks is not None
                if forks is None:
                    forks = _start_fork_server(run_dir, marker, ledger, say)
            dns_port = dns.start()
            for proto in ("udp", "tcp"):
                ledger.append(PortRecord(proto, dns_port, "dns", time.time()))
            for host in stack_layout.hosts():
                dns.set_record(host, ["127.0.0.1"])
            plane.start()
            egress.start()
            ports: dict[str, int] = {}
            for route in stack_layout.routes:
                ports[route.name] = plane.add_route(route.name, [])
                ledger.append(PortRecord("tcp", ports[route.name], f"route {route.name}", time.time()))
            say(f"DNS on 127.0.0.1:{dns_port}, {len(ports)} routes")
            timings = StackTimings(network=time.monotonic() - began)
            supervisor = Supervisor(run_dir / "logs", fork_server=forks, stop_fork_server=not lent)
            board = FaultBoard(plane, dns, supervisor)
            if control:
                server = ControlServer(plane=plane, dns=dns, supervisor=supervisor, board=board)
                control_port = server.start()
                ledger.append(PortRecord("tcp", control_port, "control", time.time()))
                say(f"control channel on 127.0.0.1:{control_port}")
            stack = cls(
                design,
                design_path.resolve(),
                run_dir,
                stack_layout,
                dns,
                plane,
                supervisor,
                ports,
                ledger,
                board,
                marker,
                timings,
                server,
            )
            stack.otlp_endpoint = otlp_endpoint
            stack.egress, stack.lookups = egress, lookups
            # Not in the ledger: these listeners are sockets of this process and die with it.
            for replica in stack_layout.replicas:
                if replica.component in stack_layout.resolving:
                    try:
                        address = listen_for(dns, replica.name)
                    except OSError as exc:
                        raise TargetError(str(exc)) from exc
                    stack.resolvers[replica.name] = write_resolver(run_dir / "resolv", replica.name, address)
            if stack.resolvers:
                say(f"{len(stack.resolvers)} resolvers on port 53 of their own loopback addresses")
            stack.scrape = ScrapeTargets(run_dir)
            supervisor.subscribe(stack._on_event)
            stack._front_running_services()
            if otlp_endpoint is not None:
                for name, component in design.components.items():
                    if component.url is not None:
                        say(
                            f"{name} is a url: service bascule does not start: to measure its paths "
                            f"from its spans, export them to {otlp_endpoint} (OTLP/HTTP)"
                        )
            specs = stack._specs(dns_port)
            reserve = {r.name for r in stack_layout.replicas if r.reserve}
            supervisor.park([s for s in specs if s.name in reserve])
            initial = [s for s in specs if s.name not in reserve]
            parked = f" ({len(reserve)} more parked until their region scales up)" if reserve else ""
            say(f"starting {len(initial)} processes{parked}")
            supervisor.start(initial, timeout=timeout, cancel=cancel)
            timings.announced = time.monotonic() - began
            say("waiting for readiness")
            supervisor.wait_ready(
                [s.name for s in initial], timeout=timeout, spent=timings.announced, cancel=cancel
            )
            timings.ready = time.monotonic() - began
            stack.scaler = stack._autoscaler()
            stack.scaler.start()
            stack.write_state()
            stack.write_scrape_targets()
            return stack
        except BaseException:
            stopped = supervisor is None
            if supervisor is not None:
                with contextlib.suppress(Exception):
                    supervisor.stop(timeout=3.0)
                    stopped = True
            elif forks is not None and not lent:
                forks.stop()
            if server is not None:
                server.stop()
            plane.stop()
            egress.stop()
            dns.stop()
            if stopped:
                ledger.append(ClosedRecord(time.time()))
            ledger.close()
            raise

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop every process, then the routes, the DNS server and the control channel; then
        mark the ledger closed. Calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if self.scaler is not None:
                self.scaler.stop()
            self.supervisor.stop(timeout=timeout)
            self._end_adopted(timeout)
        finally:
            if self.control is not None:
                self.control.stop()
            self.plane.stop()
            if self.egress is not None:
                self.egress.stop()
            self.dns.stop()
            (self.run_dir / STATE_FILE).unlink(missing_ok=True)
            if self.scrape is not None:
                self.scrape.path.unlink(missing_ok=True)
        self.ledger.append(ClosedRecord(time.time()))
        self.ledger.close()

    def record_process(self, name: str, pid: int, start_time: int) -> None:
        """Keep a process the run started besides the stack's (a load generator's) in the ledger,
        so that `bascule recover` ends it should the run be killed; `stop` ends it too, should its
        starter not have, before the ledger is closed. Raises `TargetError` once stopped."""
        with self._record_lock:
            if self._stopped:
                raise TargetError(f"the stack is stopped: {name} (pid {pid}) cannot be recorded")
            self._adopted.append((pid, start_time))
            if (pid, start_time) not in self._recorded:
                self._recorded.add((pid, start_time))
                self.ledger.append(ProcessRecord(name, pid, start_time, time.time()))

    def _end_adopted(self, timeout: float) -> None:
        alive = [p for p in self._adopted if process_alive(*p)]
        for pid, start in alive:
            signal_process(pid, start, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(process_alive(*p) for p in alive) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid, start in alive:
            signal_process(pid, start, signal.SIGKILL)

    # -- wiring ----------------------------------------------------------------------------------

    def _specs(self, dns_port: int) -> list[ProcessSpec]:
        identity_secrets = {
            r.component: secrets.token_urlsafe(32)
            for r in self.layout.replicas
            if r.kind is ProcessKind.IDENTITY
        }
        specs: list[ProcessSpec] = []
        for replica in self.layout.replicas:
            if replica.kind is ProcessKind.SERVICE:
                specs.append(self._own_spec(replica))
                continue
            argv = replica_argv(
                self.design,
                self.layout,
                replica,
                design_path=str(self.design_path),
                route_ports=self.route_ports,
                dns_server=("127.0.0.1", dns_port),
                python=sys.executable,
            )
            env: dict[str, str] = {MARKER_ENV: self.marker, **self._otlp_env(replica)}
            secret = self._secret_for(replica, identity_secrets)
            if secret is not None:
                env["BASCULE_TOKEN_SECRET"] = secret
            specs.append(
                ProcessSpec(
                    replica.name,
                    tuple(argv),
                    group=replica.region,
                    env=env,
                    slow_start_hint=f"component {replica.component}: raise --stack-timeout SECONDS",
                )
            )
        return specs

    def _otlp_env(self, replica: ReplicaSpec) -> dict[str, str]:
        if self.otlp_endpoint is None:
            return {}
        return otlp_environment(self.otlp_endpoint, replica.component, replica.region, replica.name)

    def _own_spec(self, replica: ReplicaSpec) -> ProcessSpec:
        data_dir = self.run_dir / "data" / replica.name
        data_dir.mkdir(parents=True, exist_ok=True)
        command = own_command(
            self.design,
            self.layout,
            replica,
            port=free_port(),
            route_ports=self.route_ports,
            base_dir=str(self.design_path.parent),
            data_dir=str(data_dir.resolve()),
            otlp_endpoint=self.otlp_endpoint,
        )
        if command.wipe is not None:
            self.board.wipes[replica.name] = command.wipe
        spec = self.design.components[replica.component].command
        assert spec is not None
        # Requests to hosts the design does not declare end at the egress, never on the internet:
        # bascule's proxy variables win over the service's own.
        proxy: dict[str, str] = {}
        if self.egress is not None:
            egress_port = self.egress.listen(replica.name, replica.region)
            self.ledger.append(PortRecord("tcp", egress_port, f"egress {replica.name}", time.time()))
            proxy = proxy_environment(egress_port)
        resolver = self.resolvers.get(replica.name)
        return ProcessSpec(
            replica.name,
            namespace_argv(command.argv, resolver) if resolver is not None else command.argv,
            group=replica.region,
            # The command's own environment wins for its collector; the egress proxy variables win
            # over its own (a request to a host outside the design must end at bascule's egress).
            env={**self._otlp_env(replica), **command.env, **proxy, MARKER_ENV: self.marker},
            restart_delay=spec.restart_delay,
            ready_path=command.ready_path,
            cwd=command.cwd,
            port=command.port,
            start_timeout=spec.start_timeout,
            slow_start_hint=f"component {replica.component}: raise start_timeout: under its command: in "
            f"the design, or --stack-timeout SECONDS for the whole stack",
        )

    def _front_running_services(self) -> None:
        """Point the routes to ``url:`` services at them, once: nothing restarts them."""
        for route in self.layout.routes:
            urls = self.design.components.get(route.hop.target.name)
            if urls is None or urls.url is None:
                continue
            parts = urlsplit(urls.url[route.hop.target.region])
            assert parts.hostname is not None and parts.port is not None
            self.plane.set_upstreams(route.name, [Upstream(parts.hostname, parts.port)])

    def _autoscaler(self) -> Autoscaler:
        growing = self.design.growing_regions()
        gateways = {
            region: [
                r.name
                for r in self.layout.replicas
                if r.region == region and r.kind is ProcessKind.GATEWAY and not r.reserve
            ]
            for region in growing
        }
        reserves = {region: [r.name for r in self.layout.reserves(region)] for region in growing}
        return Autoscaler(
            self.supervisor,
            gateways=gateways,
            reserves=reserves,
            delay=self.design.routing.scale_up_delay,
        )

    def _secret_for(self, replica: ReplicaSpec, identity_secrets: dict[str, str]) -> str | None:
        if replica.kind is ProcessKind.IDENTITY:
            return identity_secrets[replica.component]
        for dep in self.design.region(replica.region).depends_on:
            if dep in identity_secrets:
                return identity_secrets[dep]
        return None

    def _on_event(self, event: SupervisorEvent) -> None:
        if event.kind in ("started", "restarting", "launching"):
            self._record_process(event)
        if event.kind in ("started", "killed", "exited"):
            spec = self.replica_spec(event.name)
            if spec is not None:
                self.refresh_routes(spec.endpoint)
        if event.kind in ("started", "killed", "exited"):
            self.write_scrape_targets()

    def _record_process(self, event: SupervisorEvent) -> None:
        # A "restarting" event carries the old PID; the new process is already spawned.
        replica = self.supervisor.replica(event.name)
        pid, start_time, url = replica.pid, replica.start_time, replica.url
        if pid is None or start_time is None:
            return
        port = urlsplit(url).port if url else None
        with self._record_lock:
            if self._stopped:
                return
            try:
                if (pid, start_time) not in self._recorded:
                    self._recorded.add((pid, start_time))
                    self.ledger.append(ProcessRecord(event.name, pid, start_time, time.time()))
                if event.kind == "started" and port is not None:
                    self.ledger.append(PortRecord("tcp", port, f"process {event.name}", time.time()))
            except (OSError, ValueError):
                # Raising here would end the supervisor's watcher thread, and with it every
                # restart; the process still carries the run's marker for `bascule recover`.
                _log.exception("could not record %s (pid %s) in the ledger", event.name, pid)

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
        state: dict[str, object] = {
            "design": self.design.id,
            "design_path": str(self.design_path),
            "entries": self.entries(),
            "dns": {
                "host": "127.0.0.1",
                "port": self.dns.port,
                "resolvers": {name: files.address for name, files in self.resolvers.items()},
            },
            "processes": [describe_process(r) for r in self.supervisor.replicas()],
            "routes": {name: port for name, port in self.route_ports.items()},
            "ledger": str(self.ledger.path),
            "pid": os.getpid(),
        }
        if self.control is not None:
            state["control"] = {"url": self.control.url, "token": self.control.token}
        return state

    def write_scrape_targets(self) -> None:
        """Rewrite ``prometheus-targets.json`` from the replicas up now; never raises (it runs in
        the supervisor's watcher thread, whose end would end every restart)."""
        if self.scrape is None or self._stopped:
            return
        running = {r.spec.name: r for r in self.supervisor.replicas()}
        pairs = [(spec, running[spec.name]) for spec in self.layout.replicas if spec.name in running]
        try:
            self.scrape.write(pairs)
        except OSError:
            _log.exception("could not write %s", self.scrape.path)

    def write_state(self) -> Path:
        """Write ``stack.json`` (mode 0600: it holds the control token), replacing it atomically."""
        path = self.run_dir / STATE_FILE
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(self.state(), indent=2))
        os.replace(temporary, path)
        return path


def _start_fork_server(
    run_dir: Path, marker: str, ledger: Ledger, say: Callable[[str], None]
) -> ForkServer | None:
    """The run's fork server, in the ledger and carrying the run's marker; None (every process
    starts cold) when fork is unsafe or unavailable here, or ``BASCULE_FORK_SERVER=0``."""
    refused = fork_refusal()
    if refused is not None:
        say(f"services start cold ({refused})")
        return None
    try:
        forks = ForkServer.start(run_dir / "logs" / "fork-server.log", env={MARKER_ENV: marker})
    except OSError as exc:
        say(f"services start cold (the fork server did not start: {exc})")
        return None
    start_time = process_start_time(forks.pid)
    if start_time is not None:
        ledger.append(ProcessRecord("fork-server", forks.pid, start_time, time.time()))
    say(f"fork server pid {forks.pid}: the services are forked from it")
    return forks


def _lent_fork_server(ledger: Ledger, say: Callable[[str], None]) -> ForkServer | None:
    """The fork server of the command whose runs share one (`shared`), named in this run's ledger
    too; None when there is none, or it died (the run then starts its own)."""
    forks = lent_fork_server()
    if forks is None:
        return None
    start_time = process_start_time(forks.pid)
    if start_time is None:
        return None
    ledger.append(ProcessRecord("fork-server", forks.pid, start_time, time.time()))
    say(f"fork server pid {forks.pid} (shared by this command's runs): the services are forked from it")
    return forks


def read_state(run_dir: Path) -> dict[str, object]:
    """The state a running ``bascule stack up`` wrote, for ``bascule stack ask``."""
    path = run_dir / STATE_FILE
    try:
        data: dict[str, object] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise TargetError(f"no running stack found at {run_dir} (start one with `bascule stack up`)") from exc
    return data


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a service that must be told where to listen. Another
    process may take it before the service binds it; the start-up timeout then says so."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
