"""An in-memory target for the run logic's tests, registered through the same registry as `local`
and `kubernetes` — its package (this module's ``PACKAGE``) and one registry entry, nothing else.

Its service is an HTTP server in a thread of the test's process on 127.0.0.1: every region's entry
answers ``GET /healthz`` with 200, or 503 while an ``http-error`` fault is in force, so that probes
really answer and faults really show; each request is also the hop a fault plane would have seen
(`take_hops`), so that where requests went is measured as on a real target. Every prepare, apply
and revert is logged (`FakeTarget.log`),
and it can be told to fail where a real target might: at start, in `check`, in `apply`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bascule.errors import FaultError, RevertError, TargetError
from bascule.journal.discovered import OutsideReach, ReachVia
from bascule.journal.hops import PathHop
from bascule.model.design import Design
from bascule.plan.model import Action, Plan, Touch
from bascule.targets.base import JsonFields, LedgerTarget, Refusal, StartRequest, Target, TargetEvent
from bascule.targets.registry import Entry, OptionValue, PlanDescription, TargetOption
from bascule.tracecontext import new_span_id, parse_traceparent

__all__ = ["COLD_FOR", "ENTRY", "PACKAGE", "SECRET", "FakeStarter", "FakeTarget"]

SECRET = "tok-3f9a"
"""The token ``POST /things`` hands out; ``GET /private…`` wants it in ``x-token``."""

COLD_FOR = 1.5
"""Seconds a ``cold`` fake service answers 503 after it started."""


class _Service(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    faulty: set[str]
    unhealthy: bool
    warm_at: float
    """``time.monotonic()`` from which a cold service answers 200."""
    component: str
    region: str
    hops: list[PathHop]
    """Every request, as the hop a fault plane in front of the service would have recorded."""
    otlp: str | None
    """The run's trace receiver: each request is also exported as a server span (OTLP/JSON)."""
    outside: list[OutsideReach]
    """A request whose path starts with ``/call-out`` also calls sts.amazonaws.com, propagating its
    trace context (``/call-out-untraced``: without it), as an egress would have recorded."""


class _Handler(BaseHTTPRequestHandler):
    server: _Service

    def do_GET(self) -> None:
        started = time.monotonic()
        cold = started < self.server.warm_at
        status = 503 if self.server.faulty or self.server.unhealthy or cold else 200
        if self.path.startswith("/private") and self.headers.get("x-token") != SECRET:
            status = 401
        service = self.server
        route = f"clients->{service.component}@{service.region}"
        trace_id = parse_traceparent(self.headers.get("traceparent"))
        hop = PathHop(
            trace_id, started, 0.0, status, True, route, None, None, service.component, service.region
        )
        service.hops.append(hop)  # list.append is atomic: the runner's thread takes them
        if service.otlp is not None and trace_id is not None:
            _export_span(service.otlp, trace_id, service.component, service.region, status, started)
        if self.path.startswith("/call-out"):
            traced = None if self.path.startswith("/call-out-untraced") else trace_id
            service.outside.append(
                OutsideReach(
                    "sts.amazonaws.com",
                    ReachVia.HTTP,
                    time.monotonic(),
                    trace_id=traced,
                    asker=f"{service.component}-0",
                    region=service.region,
                    port=80,
                    method="GET",
                    path="/",
                    outcome="502",
                )
            )
        body = json.dumps({"ok": status == 200, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """``POST /things`` creates a thing: 201 with its id and a token (what setup requests save)."""
        length = int(self.headers.get("content-length") or 0)
        sent = json.loads(self.rfile.read(length) or b"{}")
        status = 201 if self.path == "/things" else 404
        body = json.dumps({"id": f"t-{sent.get('n', 0)}", "token": SECRET}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _export_span(endpoint: str, trace_id: str, component: str, region: str, status: int, at: float) -> None:
    """One server span of `trace_id`, as an instrumented service would export it (OTLP/JSON)."""
    provider, _, place = region.partition("/")
    unix = time.time_ns() - int((time.monotonic() - at) * 1e9)
    resource = {"service.name": component, "cloud.provider": provider, "cloud.region": place}
    span = {
        "traceId": trace_id,
        "spanId": new_span_id(),
        "name": "GET",
        "kind": 2,
        "startTimeUnixNano": str(unix),
        "endTimeUnixNano": str(unix + 1000),
        "attributes": [{"key": "http.response.status_code", "value": {"intValue": str(status)}}],
    }
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]
                },
                "scopeSpans": [{"spans": [span]}],
            }
        ]
    }
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        endpoint + "/v1/traces", data, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=2.0) as answer:
        assert answer.status == 200


class FakeTarget(LedgerTarget[str]):
    """Faults held in memory: the ledger is `log`. `fail`: ``unhealthy`` (every entry answers 503),
    ``cold`` (every entry answers 503 for its first `COLD_FOR` seconds),
    ``refuse`` (check refuses every phase), ``check`` (check raises), ``apply`` (applying a fault
    of any phase after the first raises), ``hurry`` (two SIGINTs to this process while applying),
    ``revert`` (reverting raises: the fault stays in force)."""

    name = "fake"

    def __init__(self, design: Design, fail: str | None, otlp: str | None = None) -> None:
        self.design = design
        self.fail = fail
        self.log: list[tuple[str, str]] = []
        self.listeners: list[Callable[[TargetEvent], None]] = []
        self.stopped: bool | None = None
        """None while running; then whether it was stopped in a hurry."""
        self._service = _Service(("127.0.0.1", 0), _Handler)
        self._service.faulty = set()
        self._service.unhealthy = fail == "unhealthy"
        self._service.warm_at = time.monotonic() + COLD_FOR if fail == "cold" else 0.0
        self._service.component = design.entry_component() or "gateway"
        self._service.region = design.regions[0].id
        self._service.hops = []
        self._service.otlp = otlp
        self._service.outside = []
        self._thread = threading.Thread(
            target=self._service.serve_forever, args=(0.01,), name="fake-target", daemon=True
        )
        self._thread.start()
        self._start_ledger("fake")

    @property
    def url(self) -> str:
        host, port = self._service.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- what the runner reads --

    @property
    def entries(self) -> dict[str, str]:
        return {region.id: self.url for region in self.design.regions}

    @property
    def store_urls(self) -> dict[str, list[str]]:
        return {}

    def started_record(self) -> JsonFields:
        return {"entries": self.entries}

    def transition_fields(self) -> JsonFields:
        return {"fake_log": len(self.log)}

    def take_hops(self) -> list[PathHop]:
        hops, self._service.hops = self._service.hops, []
        return hops

    def take_outside(self) -> list[OutsideReach]:
        reaches, self._service.outside = self._service.outside, []
        return reaches

    def subscribe(self, listener: Callable[[TargetEvent], None]) -> None:
        self.listeners.append(listener)
        listener(TargetEvent("fake-event", {"note": "subscribed"}, message="the fake target says hello"))

    def check(self, plan: Plan) -> list[str]:
        if self.fail == "refuse":
            return [f"phase {p.index} ({p.name}): the fake refuses it" for p in plan.phases]
        if self.fail == "check":
            raise TargetError("the fake target broke while checking the plan")
        return []

    def stop(self, *, hurry: bool) -> None:
        self.stopped = hurry
        self._service.shutdown()
        self._service.server_close()

    # -- the bookkeeping (`LedgerTarget`) --

    def _compute(self, action: Action, touch: Touch) -> str:
        return f"{action.phase}:{action.fault.kind}"

    def _record(self, key: str, action: Action, held: str) -> None:
        self.log.append(("record", key))

    def _carry_out(self, key: str, held: str) -> tuple[str, ...]:
        phase, kind = held.split(":")
        if self.fail == "apply" and phase != "0":
            self._record_reverted(key, "apply failed")
            raise FaultError(f"fault {key!r}: the fake target broke while applying it")
        self.log.append(("apply", key))
        if kind == "http-error":
            self._service.faulty.add(key)
        if self.fail == "hurry":
            os.kill(os.getpid(), signal.SIGINT)  # held back until the fault is in force and recorded
            time.sleep(0.01)  # lets the first be noted: two signals at once may arrive as one
            os.kill(os.getpid(), signal.SIGINT)
        return (f"{kind} in force",)

    def _undo(self, key: str, held: str) -> tuple[str, ...]:
        if self.fail == "revert":
            raise RevertError(f"fault {key!r}: the fake target could not revert it")
        self.log.append(("revert", key))
        self._service.faulty.discard(key)
        return (f"{held} ended",)

    def _record_reverted(self, key: str, note: str) -> None:
        self.log.append(("reverted", f"{key} {note}".strip()))

    def applied(self) -> list[str]:
        return [key for op, key in self.log if op == "apply"]

    def reverted(self) -> list[str]:
        return [key for op, key in self.log if op == "revert"]


@dataclass(frozen=True)
class FakeStarter:
    fail: str | None = None
    name: str = "fake"
    started: list[FakeTarget] = field(default_factory=list)
    """The targets started (one per run), for the test to look at."""
    otlp_endpoints: list[str | None] = field(default_factory=list)
    """The trace receiver each start was given."""

    def start(self, request: StartRequest) -> Target | Refusal:
        request.progress("starting the fake target")
        if self.fail == "start":
            raise TargetError("the fake target could not start")
        self.otlp_endpoints.append(request.otlp_endpoint)
        target = FakeTarget(request.design, self.fail, request.otlp_endpoint)
        self.started.append(target)
        return target


class FakePackage:
    def choose(self, values: Mapping[str, OptionValue]) -> FakeStarter:
        fail = values.get("fake_fail")
        return FakeStarter(fail if isinstance(fail, str) else None)

    def describe_plan(
        self, built: Plan, design: Design, values: Mapping[str, OptionValue]
    ) -> PlanDescription | Refusal:
        return PlanDescription(tuple(f"fake: {a.op.value} {a.key}" for a in built.actions))

    def recover(self, run_dir: Path, *, grace: float) -> None:
        return None

    def unfinished_runs(self, root: Path) -> list[Path]:
        return []


PACKAGE = FakePackage()


ENTRY = Entry(
    "fake", "fake_target", (TargetOption("fake_fail", "text", "Fake: where to fail.", verbs=("run",)),)
)
"""The fake's one registry entry (`bascule.targets.registry.register`)."""
