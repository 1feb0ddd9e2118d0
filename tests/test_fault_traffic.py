"""A fault that reached no traffic while it was in force is flagged, never passed over in silence:
the local target counts what reached the routes and names each fault held (`FaultBoard.traffic`),
the runner journals it at each revert, and the metrics, result.json and every report say so."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
from journal_factory import (
    PRIMARY,
    STANDBY,
    FaultSpan,
    JournalSpec,
    Served,
    build_records,
    one_phase_scenario,
    reference_design,
)
from rich.console import Console

from bascule.metrics import compute_metrics
from bascule.reports.compare import build_comparison, render_compare_markdown
from bascule.reports.html import render_html
from bascule.reports.junit import render_junit
from bascule.reports.markdown import render_markdown
from bascule.reports.result import build_result
from bascule.reports.terminal import render_terminal
from bascule.score import score
from bascule.stack.supervisor import Supervisor
from bascule.targets.base import FaultTraffic
from bascule.targets.local import faultstate as fs
from bascule.targets.local.board import FaultBoard
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.effects import DnsFault, Freeze, ResetConnections, RouteFault
from bascule.targets.local.proxy import FaultPlane, Upstream

ZERO = {"connections": 0, "bytes": 0, "lookups": 0, "resets": 0}


# -- the count, on a board of real parts ------------------------------------------------------------


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[FaultBoard, FaultPlane, DnsServer]]:
    plane, dns_server, supervisor = FaultPlane(), DnsServer(), Supervisor(tmp_path / "logs")
    upstream = socket.create_server(("127.0.0.1", 0))  # connections wait in its backlog, held open
    try:
        plane.start()
        dns_server.start()
        plane.add_route("r", [Upstream("127.0.0.1", upstream.getsockname()[1])])
        plane.add_route("s", [])
        yield FaultBoard(plane, dns_server, supervisor), plane, dns_server
    finally:
        supervisor.stop()
        dns_server.stop()
        plane.stop()
        upstream.close()


def _ask(dns_server: DnsServer, name: str) -> None:
    query = dns.message.make_query(name, "A")
    dns.query.udp(query, "127.0.0.1", port=dns_server.port, timeout=2.0)


def _send(plane: FaultPlane, route: str, data: bytes) -> None:
    with socket.create_connection(("127.0.0.1", plane.port(route)), timeout=2.0) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + 2.0
        while plane.stats(route).bytes_from_clients < len(data) and time.monotonic() < deadline:
            time.sleep(0.01)


@contextlib.contextmanager
def _held_open(plane: FaultPlane, route: str) -> Iterator[None]:
    """A client connection open on `route` (its upstream holds it) while the block runs."""
    held = socket.create_connection(("127.0.0.1", plane.port(route)), timeout=2.0)
    try:
        held.sendall(b"x")
        deadline = time.monotonic() + 2.0
        while plane.stats(route).connections_open < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        yield
    finally:
        held.close()


def test_a_fault_nothing_used_counts_zero_and_one_in_use_counts_what_reached_it(
    board: tuple[FaultBoard, FaultPlane, DnsServer],
) -> None:
    fb, plane, dns_server = board
    _send(plane, "r", b"before")  # before the fault: not its traffic
    _ask(dns_server, "x.bascule.internal")
    fb.apply("a", [RouteFault("r", fs.Latency(fixed=0.0)), DnsFault("x", fs.DnsFaultMode.NXDOMAIN)])
    _send(plane, "s", b"elsewhere")  # a route the fault does not hold
    _ask(dns_server, "y.bascule.internal")
    idle = fb.traffic("a")
    assert idle == FaultTraffic() and not idle.reached

    _send(plane, "r", b"GET / HTTP/1.1\r\n\r\n")
    _ask(dns_server, "x.bascule.internal")
    _ask(dns_server, "X.Bascule.Internal.")
    used = fb.traffic("a")
    assert used == FaultTraffic(connections=1, bytes=18, lookups=2) and used.reached
    assert fb.revert("a") and fb.traffic("a") is None


def test_wildcards_resets_and_faults_on_processes_only(
    board: tuple[FaultBoard, FaultPlane, DnsServer],
) -> None:
    fb, plane, dns_server = board
    fb.apply("w", [DnsFault("*.eu", fs.DnsFaultMode.SERVFAIL)])
    _ask(dns_server, "a.eu.bascule.internal")
    _ask(dns_server, "b.c.eu.bascule.internal")
    _ask(dns_server, "eu-not.bascule.internal")
    counted = fb.traffic("w")
    assert counted is not None and counted.lookups == 2
    fb.revert("w")

    fb.apply("frozen", [Freeze("eu")])
    assert fb.traffic("frozen") is None  # nothing counted: not "reached nothing"
    fb.revert("frozen")

    with _held_open(plane, "r"):
        fb.apply("reset", [DnsFault("r", fs.DnsFaultMode.NODATA), ResetConnections("r")])
        counted = fb.traffic("reset")
        assert counted is not None and counted.resets == 1 and counted.reached
        fb.revert("reset")


# -- from the journal to every report -----------------------------------------------------------------


def _healthy(t: float, source: str, data_class: str) -> Served:
    return Served(True, STANDBY if data_class == "confidential" else PRIMARY, correct=True)


def _result(faults: list[FaultSpan]) -> Any:
    spec = JournalSpec(
        reference_design(), one_phase_scenario(length=12.0), _healthy, length=30.0, faults=faults
    )
    metrics = compute_metrics(build_records(spec))
    return metrics, build_result(metrics, score(metrics, metrics.objectives, metrics.weights))


def test_a_phase_that_reached_nothing_is_flagged_everywhere() -> None:
    metrics, result = _result([FaultSpan(0, 0.0, 12.0, traffic=ZERO)])
    phase = metrics.phases[0]
    assert phase.traffic is not None and not phase.traffic.reached
    assert any(e.text.endswith("no traffic reached it while it was in force") for e in metrics.events)
    assert result.phases[0].reached is False
    assert result.phases[0].traffic is not None and result.phases[0].traffic.connections == 0

    summary = render_markdown(result)
    assert "reached no traffic while it was in force" in summary
    assert "| nothing |" in summary
    assert "reached no traffic while it was in force" in render_html(result)
    console = Console(width=200, record=True)
    console.print(render_terminal(result))
    assert "reached no traffic while it was in force" in console.export_text()
    junit = render_junit([result])
    assert 'name="bascule.faults_unreached" value="1"' in junit
    assert "warning: Phase 0" in junit
    assert "reached no traffic: phase 0 " in render_compare_markdown(build_comparison([result]))


@pytest.mark.parametrize(
    ("cycles", "reached"),
    [
        ([dict(ZERO, bytes=120)], True),
        ([ZERO, None], None),  # one cycle not counted: it may have been reached
        ([dict(ZERO, lookups=3), None], True),  # one counted cycle was: whatever the other
        ([ZERO, ZERO], False),
        ([None], None),
    ],
)
def test_a_phase_over_its_cycles(cycles: list[dict[str, int] | None], reached: bool | None) -> None:
    spans = [FaultSpan(0, 2.0 * i, 2.0 * i + 1.0, cycle=i, traffic=t) for i, t in enumerate(cycles)]
    _, result = _result(spans)
    assert result.phases[0].reached is reached
    flagged = "reached no traffic" in render_markdown(result)
    assert flagged is (reached is False)
    property_value = "null" if reached is None else ("1" if reached is False else "0")
    assert f'name="bascule.faults_unreached" value="{property_value}"' in render_junit([result])


def test_a_time_to_fail_over_a_window_told_reads_as_a_bound_not_an_instant() -> None:
    """Load is folded into windows of up to 1 s; with no sample to time it (no probe served elsewhere,
    no --raw-samples), the first success elsewhere is known to its window: a new user read "Time to
    fail over 0 s" where the services' logs said 0.1 s."""
    from bascule.reports._summary import compute_figures

    def failing_over(t: float, source: str, data_class: str) -> Served:
        if data_class == "internal" and 0.0 <= t < 12.0:
            return Served(True, STANDBY, correct=True)
        return _healthy(t, source, data_class)

    spec = JournalSpec(
        reference_design(),
        one_phase_scenario(length=12.0, at=0.3),
        failing_over,
        length=30.0,
        probes=(),
        canary_period=None,
    )
    metrics = compute_metrics(build_records(spec))
    result = build_result(metrics, score(metrics, metrics.objectives, metrics.weights))
    ttf, earliest = result.figures.time_to_failover, result.figures.time_to_failover_earliest
    assert ttf is not None and earliest is not None and earliest < ttf <= earliest + 1.0
    shown = next(f for f in compute_figures(result) if f.label == "Time to fail over")
    assert "to a window of load requests" in shown.note and ("≤" in shown.value or " to " in shown.value)

    told = JournalSpec(reference_design(), one_phase_scenario(length=12.0, at=0.3), failing_over, length=30.0)
    metrics = compute_metrics(build_records(told))  # probes served elsewhere too: the first bounds it
    assert metrics.time_to_failover is not None and metrics.time_to_failover <= 0.1
    assert metrics.time_to_failover_earliest == 0.0  # the load's window may have been first


def test_a_refuse_turns_clients_away_unseen_so_nothing_counted_is_not_nothing_reached(
    board: tuple[FaultBoard, FaultPlane, DnsServer],
) -> None:
    """A new user's refuse on the entry every client hit read "reached no traffic": with its listener
    closed, the kernel refuses the connections and nothing counts them."""
    fb, plane, _ = board
    fb.apply("refuse", [RouteFault("r", fs.Refuse())])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", plane.port("r")), timeout=2.0)
    assert fb.traffic("refuse") is None  # not counted: neither reached nor not
    fb.revert("refuse")

    with _held_open(plane, "r"):
        fb.apply("refuse", [RouteFault("r", fs.Refuse())])  # resets the connection open
        counted = fb.traffic("refuse")
        assert counted is not None and counted.resets == 1 and counted.reached
        fb.revert("refuse")


def test_traffic_that_left_for_a_region_a_later_phase_impairs_did_fail_over() -> None:
    """A new user's fr-par API failed at 0 s and traffic went to us-east-1; a later phase slowed
    us-east-1 at 20 s. No region is outside both, and the run read "Time to fail over —" while its
    first phase said 0.19 s."""
    from bascule.model.scenario import Scenario

    scenario = one_phase_scenario(length=12.0)
    later = {**scenario.model_dump(mode="json", by_alias=True)}
    later["phases"] = [
        later["phases"][0],
        {
            "name": "standby slowed",
            "at": 20.0,
            "for": 4.0,
            "fault": {"kind": "latency", "fixed": "50ms"},
            "target": {"region": STANDBY},
        },
    ]
    two = Scenario.model_validate(later)

    def failing_over(t: float, source: str, data_class: str) -> Served:
        if data_class == "internal" and 0.0 <= t < 12.0:
            return Served(True, STANDBY, correct=True)
        return _healthy(t, source, data_class)

    metrics = compute_metrics(build_records(JournalSpec(reference_design(), two, failing_over, length=30.0)))
    assert metrics.phases[0].time_to_failover is not None
    assert metrics.time_to_failover is not None and metrics.time_to_failover <= 1.0


# -- faults on answers: reached only where they changed one ---------------------------------------

_JSON = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"a": "ok"}'
_STREAM_BODY = b"".join(b'data: {"choices": [{"delta": {"content": "w%d"}}]}\n\n' % i for i in range(8))
_STREAM = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(_STREAM_BODY), _STREAM_BODY)
)


@pytest.fixture
def answering(tmp_path: Path) -> Iterator[tuple[FaultBoard, FaultPlane]]:
    """A route to a service answering ``/json`` with JSON and anything else with an event stream."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2.0)
                with contextlib.suppress(OSError):
                    head = conn.recv(65536)
                    conn.sendall(_JSON if head.startswith(b"GET /json") else _STREAM)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    plane, dns_server, supervisor = FaultPlane(), DnsServer(), Supervisor(tmp_path / "logs")
    try:
        plane.start()
        dns_server.start()
        plane.add_route("llm", [Upstream("127.0.0.1", server.getsockname()[1])])
        yield FaultBoard(plane, dns_server, supervisor), plane
    finally:
        stop.set()
        thread.join(timeout=5)
        supervisor.stop()
        dns_server.stop()
        plane.stop()
        server.close()


def _get(plane: FaultPlane, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", plane.port("llm")), timeout=2.0) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nhost: llm\r\nconnection: close\r\n\r\n" % path.encode())
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_a_stream_cut_on_routes_that_carried_no_event_stream_reached_nothing(
    answering: tuple[FaultBoard, FaultPlane],
) -> None:
    """A new user's stream-cut on an llm asked only for JSON answers read "reached: true" (bytes
    flowed) and passed: it had changed nothing the service used."""
    fb, plane = answering
    fb.apply("cut", [RouteFault("llm", fs.StreamCut(after_events=2))])
    assert _get(plane, "/json").endswith(b'{"a": "ok"}')
    json_only = fb.traffic("cut")
    assert json_only is not None and json_only.connections == 1 and json_only.on_answers
    assert json_only.faulted == 0 and not json_only.reached
    streamed = _get(plane, "/stream")
    assert b"w1" in streamed and b"w2" not in streamed  # cut after two events
    cut = fb.traffic("cut")
    assert cut is not None and cut.faulted == 1 and cut.reached
    fb.revert("cut")

    fb.apply("lat", [RouteFault("llm", fs.Latency(fixed=0.0))])  # not a fault on answers: bytes count
    _get(plane, "/json")
    latency = fb.traffic("lat")
    assert latency is not None and not latency.on_answers and latency.reached
    fb.revert("lat")


def test_a_phase_whose_answer_fault_changed_nothing_says_so() -> None:
    from bascule.reports._summary import compute_unreached

    traffic: dict[str, Any] = {**ZERO, "connections": 9, "bytes": 900, "on_answers": True}
    _, result = _result([FaultSpan(0, 0.0, 12.0, traffic=traffic)])
    (phase,) = result.phases
    assert phase.reached is False and phase.traffic.on_answers
    (sentence,) = [s for s in compute_unreached(result) if s.startswith("Phase")]
    assert "changed no answer while it was in force (9 connections, no answer changed: " in sentence
    cut = result.model_copy(update={"phases": (phase.model_copy(update={"kind": "stream-cut"}),)})
    (sentence,) = [s for s in compute_unreached(cut) if s.startswith("Phase")]
    assert "no answer changed: no event stream, or no body long enough, to cut" in sentence


def test_the_phases_table_counts_the_requests_a_fault_answered_itself() -> None:
    """A new user's token-rate refused 603 requests with 429: no figure said so."""
    from bascule.reports._summary import compute_phase_rows

    traffic: dict[str, Any] = {**ZERO, "connections": 412, "bytes": 9000, "faulted": 603}
    _, result = _result([FaultSpan(0, 0.0, 12.0, traffic=traffic)])
    (row,) = compute_phase_rows(result)
    assert "412 connections, 603 answered by the fault" in str(row)
