"""The autoscaler of pilot-light regions: the pure decision, and the loop against real gateways'
status endpoints (stand-ins serving ``/v1/status``) and real parked processes."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from bascule.stack.supervisor import ProcessSpec, ProcessState, Supervisor
from bascule.targets.local.scaler import WINDOW, Autoscaler, GatewayLoad, ScaleEvent, read_load, should_scale

SERVER = """
import http.server, pathlib, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = pathlib.Path(sys.argv[1]).read_bytes()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
with socketserver.TCPServer(("127.0.0.1", 0), H) as s:
    print(f"listening on http://127.0.0.1:{s.server_address[1]}", flush=True)
    s.serve_forever()
"""


def busy(inflight: int, slots: int = 6, shed: int = 0) -> GatewayLoad:
    return GatewayLoad(inflight, slots, shed)


def test_scales_on_sustained_utilisation_not_on_a_burst() -> None:
    steady = [busy(2), busy(3), busy(1), busy(6)] * 3
    assert len(steady) == WINDOW and not should_scale(steady)
    assert not should_scale([busy(6)] * (WINDOW - 1)), "too few samples to judge"
    assert should_scale([*steady, *([busy(6)] * WINDOW)])
    # 80 % on average over the window: 5 of 6 slots busy is enough, 4 is not.
    assert should_scale([busy(5)] * WINDOW) and not should_scale([busy(4)] * WINDOW)
    assert not should_scale([busy(0, slots=0)] * WINDOW), "no slots declared: nothing to measure"


def test_scales_on_requests_shed_within_the_window_even_when_slots_are_free_on_average() -> None:
    # A flapping primary sends failover traffic in bursts: slots fill, requests are shed, and the
    # slots empty again before the mean reaches 80 %.
    bursts = [busy(8 if i % 4 == 0 else 1, slots=8, shed=3 * (i // 4)) for i in range(WINDOW)]
    assert sum(b.utilisation for b in bursts) / WINDOW < 0.8
    assert should_scale(bursts, shed_at=5) and not should_scale(bursts, shed_at=7)
    # Sheds long ago do not count: only the last window does.
    old = [busy(1, shed=40)] * WINDOW
    assert not should_scale([busy(1, shed=0), *old])


class _Status(BaseHTTPRequestHandler):
    load: ClassVar[dict[str, int]] = {"inflight": 0, "max_inflight": 6, "shed": 0}

    def do_GET(self) -> None:
        body = json.dumps({"load": type(self).load}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, type[_Status]]]:
    handler = type("Status", (_Status,), {"load": dict(_Status.load)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_read_load_sums_the_gateways_that_answer(gateway: tuple[str, type[_Status]]) -> None:
    url, handler = gateway
    handler.load = {"inflight": 4, "max_inflight": 6, "shed": 2}
    with httpx.Client(timeout=1.0) as client:
        assert read_load(client, [url, url]) == GatewayLoad(8, 12, 4)
        assert read_load(client, ["http://127.0.0.1:9"]) is None


def test_the_loop_starts_the_reserves_after_the_delay_once_the_gateways_run_hot(tmp_path: Path) -> None:
    status = tmp_path / "status.json"
    status.write_text(json.dumps({"load": {"inflight": 1, "max_inflight": 6, "shed": 0}}))
    argv = (sys.executable, "-c", SERVER, str(status))
    sup = Supervisor(tmp_path / "logs")
    events: list[ScaleEvent] = []
    scaler = Autoscaler(
        sup, gateways={"fr-par": ["gw"]}, reserves={"fr-par": ["gw-reserve"]}, delay=0.5, interval=0.02
    )
    scaler.subscribe(events.append)
    try:
        sup.start([ProcessSpec("gw", argv, group="fr-par")])
        sup.park([ProcessSpec("gw-reserve", argv, group="fr-par")])
        scaler.start()
        time.sleep(0.2 + WINDOW * 0.02 * 2)
        assert not events, "a gateway with idle slots does not scale its region"
        assert sup.replica("gw-reserve").state is ProcessState.PARKED
        status.write_text(json.dumps({"load": {"inflight": 6, "max_inflight": 6, "shed": 3}}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(e.kind == "started" for e in events):
            time.sleep(0.02)
        requested, started = events[0], events[-1]
        assert (requested.kind, started.kind) == ("requested", "started")
        assert requested.region == "fr-par" and requested.replicas == ("gw-reserve",)
        assert requested.due is not None and started.at >= requested.due
        assert sup.replica("gw-reserve").state is ProcessState.RUNNING
        assert scaler.scale_up("fr-par") is None, "a region scales up once"
    finally:
        scaler.stop()
        sup.stop(timeout=2)
