"""The fault plane records each HTTP request it relays as a hop, keyed by the request's W3C trace
id: relayed or answered by a fault, its status and the time to the first byte of its answer."""

from __future__ import annotations

import contextlib
import socket
import time

import httpx
import pytest

from bascule.journal import RouteHop
from bascule.targets.local.faultstate import Blackhole, HttpError, Latency, Throttle, TokenRate
from bascule.targets.local.proxy import FaultPlane, Upstream
from bascule.tracecontext import new_trace_id, traceparent
from tests.test_proxy import _Upstream, client

pytest_plugins = ["tests.test_proxy"]


def _wait_hops(plane: FaultPlane, count: int, timeout: float = 2.0) -> list[RouteHop]:
    hops: list[RouteHop] = []
    deadline = time.monotonic() + timeout
    while len(hops) < count and time.monotonic() < deadline:
        hops += plane.take_hops()
        time.sleep(0.01)
    return hops


def test_each_relayed_request_is_a_hop_with_its_trace_id(plane: FaultPlane, port: int) -> None:
    traces = [new_trace_id() for _ in range(5)]
    before = time.monotonic()
    with client(port) as http:
        for trace in traces:
            assert http.get("/x", headers={"traceparent": traceparent(trace)}).status_code == 200
        assert http.post("/y", content=b"body").status_code == 200  # no trace context
    hops = _wait_hops(plane, 6)
    assert [h.trace_id for h in hops] == [*traces, None]
    assert all(h.route == "eu/llm" and h.relayed and h.status == 200 for h in hops)
    assert all(before <= h.started <= time.monotonic() for h in hops)
    assert all(h.took is not None and 0 <= h.took < 1.0 for h in hops)
    assert plane.take_hops() == []


def test_an_invalid_traceparent_counts_as_none(plane: FaultPlane, port: int) -> None:
    with client(port) as http:
        http.get("/x", headers={"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"})
        http.get("/x", headers={"TraceParent": traceparent("ab" * 16)})
    hops = _wait_hops(plane, 2)
    assert [h.trace_id for h in hops] == [None, "ab" * 16]


def test_a_fault_answer_is_a_hop_not_relayed(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", Throttle(retry_after=1.0))
    trace = new_trace_id()
    with client(port) as http:
        assert http.get("/x", headers={"traceparent": traceparent(trace)}).status_code == 429
    plane.set_fault("eu/llm", HttpError(statuses=(503,), ratio=1.0))
    with client(port) as http:
        assert http.get("/x", headers={"traceparent": traceparent(trace)}).status_code == 503
    hops = _wait_hops(plane, 2)
    assert [(h.trace_id, h.status, h.relayed) for h in hops] == [(trace, 429, False), (trace, 503, False)]


def test_a_request_relayed_under_an_http_fault_is_a_relayed_hop(plane: FaultPlane, port: int) -> None:
    traces = [new_trace_id() for _ in range(2)]
    # One that reads every request (it counts them) and one that strikes nothing (relayed unread).
    for trace, fault in zip(
        traces, (HttpError(every=10**6), HttpError(statuses=(503,), ratio=0.0)), strict=True
    ):
        plane.set_fault("eu/llm", fault)
        with client(port) as http:
            assert http.get("/x", headers={"traceparent": traceparent(trace)}).status_code == 200
    hops = _wait_hops(plane, 2)
    assert [(h.trace_id, h.status, h.relayed) for h in hops] == [(t, 200, True) for t in traces]


def test_token_rate_relays_requests_unread_while_tokens_are_left(plane: FaultPlane, port: int) -> None:
    # A budget of one token: the first answer with a body spends it, and the next request is refused.
    plane.set_fault("eu/llm", TokenRate(tokens_per_minute=1))
    with client(port) as http:  # unread, a chunked body passes (its answer has none: no token spent)
        assert http.post("/echo", content=iter([b""])).status_code == 200
    _wait_hops(plane, 1)
    traces = [new_trace_id() for _ in range(2)]
    with client(port) as http:
        first = http.get("/x", headers={"traceparent": traceparent(traces[0])})
        assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "1"
        refused = http.get("/x", headers={"traceparent": traceparent(traces[1])})
        assert refused.status_code == 429 and refused.headers["x-bascule-fault"] == "token-rate"
    hops = _wait_hops(plane, 2)
    assert [(h.trace_id, h.status, h.relayed) for h in hops] == [
        (traces[0], 200, True),
        (traces[1], 429, False),
    ]
    assert plane.stats("eu/llm").requests_faulted == 1


def test_a_token_budget_spent_on_one_connection_refuses_the_next_request_on_another(
    plane: FaultPlane, port: int
) -> None:
    """While tokens are left a connection's requests pass unread (the relay's fast path); once an
    answer on another connection spends the budget, this one's next request is read and refused."""
    plane.set_fault("eu/llm", TokenRate(tokens_per_minute=4))  # "ok:/x" costs 2: two answers' worth
    with client(port) as first, client(port) as second:
        assert first.get("/x").status_code == 200
        assert second.get("/x").status_code == 200  # the budget is spent here
        refused = first.get("/x")
        assert refused.status_code == 429 and refused.headers["x-bascule-fault"] == "token-rate"
        assert second.get("/x").status_code == 429
    assert plane.stats("eu/llm").requests_faulted == 2


def test_latency_shows_in_the_time_to_first_byte(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", Latency(fixed=0.2))
    with client(port) as http:
        http.get("/x", headers={"traceparent": traceparent(new_trace_id())})
    (hop,) = _wait_hops(plane, 1)
    assert hop.relayed and hop.status == 200
    assert hop.took is not None and hop.took >= 0.2


def test_a_blackholed_request_is_a_hop_with_no_answer(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", Blackhole())
    trace = new_trace_id()
    with client(port, timeout=0.3) as http, contextlib.suppress(httpx.TimeoutException):
        http.get("/x", headers={"traceparent": traceparent(trace)})
    (hop,) = _wait_hops(plane, 1)
    assert (hop.trace_id, hop.status, hop.took, hop.relayed) == (trace, None, None, False)


def test_a_connection_that_is_not_http_is_one_opaque_hop(plane: FaultPlane, upstream: _Upstream) -> None:
    """A database's or a cache's own protocol: no request can be told apart on it, so the
    connection is recorded once as opaque (the paths report counts it as unknown), however much it
    carries; an HTTP connection on the same route is recorded request by request as before."""
    port = plane.add_route("tcp", Upstream("127.0.0.1", upstream.port))
    before = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")  # RESP, as a Redis client sends
        sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError):
            sock.recv(100)
        sock.sendall(b"\x16\x03\x01 not http\r\n\r\n")
        with contextlib.suppress(TimeoutError):
            sock.recv(100)
    (hop,) = _wait_hops(plane, 1)
    assert (hop.route, hop.opaque, hop.trace_id, hop.status, hop.took) == ("tcp", True, None, None, None)
    assert before <= hop.started <= time.monotonic()
    time.sleep(0.1)
    assert plane.take_hops() == []
    trace = new_trace_id()
    with client(port) as http:
        http.get("/x", headers={"traceparent": traceparent(trace)})
    (hop,) = _wait_hops(plane, 1)
    assert (hop.trace_id, hop.opaque) == (trace, False)


def _read_answer(sock: socket.socket) -> bytes:
    """One answer's head (and what came with it) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("fault", [None, Latency(fixed=0.2)], ids=["no fault", "latency"])
def test_a_request_sent_after_100_continue_is_one_hop(
    plane: FaultPlane, port: int, fault: Latency | None
) -> None:
    """``Expect: 100-continue`` (curl's, for large bodies): the callee's ``100 Continue`` does not
    end the request — its body follows, and is neither a new request nor opaque, nor delayed a
    second time by a latency charged per request."""
    if fault is not None:
        plane.set_fault("eu/llm", fault)
    trace = new_trace_id()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
            + f"traceparent: {traceparent(trace)}\r\n\r\n".encode()
        )
        assert _read_answer(sock).startswith(b"HTTP/1.1 100")
        sock.sendall(b"body")
        answer = _read_answer(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer
    (hop,) = _wait_hops(plane, 1)
    assert (hop.trace_id, hop.status, hop.relayed, hop.opaque) == (trace, 200, True, False)
    assert hop.took is not None and hop.took < (0.2 + 0.15 if fault else 0.15)
    time.sleep(0.1)
    assert plane.take_hops() == []


def test_a_body_sent_after_an_early_answer_is_not_a_new_request(plane: FaultPlane, port: int) -> None:
    """A callee that answers before a request's body has come (the test upstream reads no body of
    a GET): the body's bytes then arrive after an answer, where a request would begin. They are the
    end of a recorded request, not a connection of another protocol (no opaque hop)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET /early HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert _read_answer(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"1\r\na\r\n0\r\n\r\n")
        sock.settimeout(0.3)
        with contextlib.suppress(TimeoutError, ConnectionError):
            sock.recv(4096)  # the upstream reads these bytes as a request line of its own: 400
    (hop,) = _wait_hops(plane, 1)
    assert (hop.trace_id, hop.status, hop.opaque) == (None, 200, False)
    time.sleep(0.1)
    assert plane.take_hops() == []


def test_a_plane_without_hop_recording_keeps_none(upstream: _Upstream) -> None:
    with FaultPlane(record_hops=False) as quiet:
        port = quiet.add_route("eu/llm", Upstream("127.0.0.1", upstream.port))
        with client(port) as http:
            http.get("/x", headers={"traceparent": traceparent(new_trace_id())})
        assert quiet.take_hops() == []


def test_a_request_to_a_replica_that_is_down_did_not_reach_it(plane: FaultPlane) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]  # nothing listens there once the socket closes
    port = plane.add_route("eu/down", Upstream("127.0.0.1", dead))
    trace = new_trace_id()
    with client(port) as http, contextlib.suppress(httpx.TransportError):
        http.get("/x", headers={"traceparent": traceparent(trace)})
    (hop,) = _wait_hops(plane, 1)
    assert (hop.trace_id, hop.status, hop.relayed) == (trace, None, False)


def test_a_request_sent_after_every_upstream_refused_is_still_a_hop(plane: FaultPlane) -> None:
    """The plane tries the upstream as soon as a client connects; when every replica refuses before
    the request's bytes arrive (a slow client, a busy machine), the request is still recorded."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]
    port = plane.add_route("eu/down-late", Upstream("127.0.0.1", dead))
    trace = new_trace_id()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        time.sleep(0.1)  # the upstream's refusal comes first
        sock.sendall(f"GET /x HTTP/1.1\r\nHost: a\r\ntraceparent: {traceparent(trace)}\r\n\r\n".encode())
        with contextlib.suppress(OSError):
            assert sock.recv(100) == b""  # reset or closed: never an answer
    (hop,) = _wait_hops(plane, 1)
    assert (hop.trace_id, hop.status, hop.relayed) == (trace, None, False)
