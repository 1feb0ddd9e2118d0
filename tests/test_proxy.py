"""The local target's fault proxy (`bascule.targets.local.proxy`), over real loopback sockets.

A small threaded HTTP/1.1 server is the upstream; clients are httpx (keep-alive pools) or raw
sockets. Every fault is checked from the client's side: what error type, how fast, and whether
connections that were already open are spared when `new_connections_only` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bascule.errors import TargetError
from bascule.targets.local.faultstate import (
    MISTRAL_RATE_LIMIT_BODY,
    Blackhole,
    Hang,
    HttpError,
    Latency,
    LatencyPer,
    Pass,
    ProxyFault,
    Refuse,
    Throttle,
)
from bascule.targets.local.proxy import (
    FaultPlane,
    HttpParseError,
    UnsupportedRequestError,
    Upstream,
    parse_request_head,
    render_response,
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Upstream

    def do_GET(self) -> None:
        self._answer(f"ok:{self.path}".encode())

    def do_POST(self) -> None:
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            self._answer(self.rfile.read(int(self.headers.get("content-length", "0"))))
            return
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b""):  # trailers
            pass
        self._answer(body)

    def _answer(self, body: bytes) -> None:
        with self.server.lock:
            self.server.requests += 1
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def plane() -> Iterator[FaultPlane]:
    fault_plane = FaultPlane()
    fault_plane.start()
    try:
        yield fault_plane
    finally:
        fault_plane.stop()


@pytest.fixture
def port(plane: FaultPlane, upstream: _Upstream) -> int:
    return plane.add_route("eu/llm", Upstream("127.0.0.1", upstream.port))


def client(port: int, timeout: float = 2.0) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout, trust_env=False)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of TCP sockets listening on `port`, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


# --- pass ----------------------------------------------------------------------------------------


def test_pass_relays_requests_on_keep_alive_connections(port: int, upstream: _Upstream) -> None:
    with client(port) as c:
        assert c.get("/a").text == "ok:/a"
        assert c.post("/echo", content=b"x" * 10).content == b"x" * 10
        big = bytes(range(256)) * 8192  # 2 MiB: more than the socket buffers, so flow control
        assert c.post("/echo", content=big).content == big
    assert upstream.requests == 3


def test_pass_counts_connections_and_bytes(plane: FaultPlane, port: int) -> None:
    with client(port) as c:
        for i in range(3):
            c.get(f"/{i}")
    stats = plane.stats("eu/llm")
    assert stats.connections_accepted == 1
    assert stats.bytes_from_clients > 0
    assert stats.bytes_from_upstream > 0
    assert stats.requests_faulted == 0


def test_only_loopback_is_listened_on(port: int) -> None:
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_unknown_route_and_bad_upstream_are_refused(plane: FaultPlane) -> None:
    with pytest.raises(KeyError, match="nope"):
        plane.set_fault("nope", Blackhole())
    with pytest.raises(ValueError, match="IP literal"):
        Upstream("localhost", 80)


def test_set_upstream_moves_new_connections(plane: FaultPlane, port: int, upstream: _Upstream) -> None:
    other = _Upstream()
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        with client(port) as old:
            old.get("/")
            plane.set_upstream("eu/llm", "127.0.0.1", other.port)
            old.get("/")
            with client(port) as new:
                new.get("/")
        assert (upstream.requests, other.requests) == (2, 1)
    finally:
        other.shutdown()
        other.server_close()
        thread.join(5)


def test_upstream_down_resets_the_client(plane: FaultPlane) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    dead_port = free.getsockname()[1]
    free.close()
    port = plane.add_route("dead", Upstream("127.0.0.1", dead_port))
    with client(port) as c, pytest.raises(httpx.TransportError):
        c.get("/")
    assert plane.stats("dead").upstream_connect_failures == 1


# --- blackhole, refuse, hang ---------------------------------------------------------------------


def test_blackhole_gives_timeouts_not_refusals(plane: FaultPlane, port: int) -> None:
    with client(port) as c:
        c.get("/warm")
        plane.set_fault("eu/llm", Blackhole())
        with pytest.raises(httpx.TimeoutException):
            c.get("/pooled", timeout=0.3)
    with client(port) as fresh, pytest.raises(httpx.TimeoutException):
        fresh.get("/new", timeout=0.3)
    assert plane.stats("eu/llm").bytes_dropped > 0
    plane.clear_fault("eu/llm")
    with client(port) as c:
        assert c.get("/after").status_code == 200


def test_a_connection_a_blackhole_dropped_bytes_of_is_reset_when_it_ends(plane: FaultPlane) -> None:
    """A database's replication stream or a pooled connection that lost bytes to the blackhole
    cannot go on where its bytes resume (TCP would have sent them again): it is reset when the
    fault ends, and its client reconnects. One that sent nothing meanwhile goes on."""
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(4)
    conns: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = echo.accept()
                conns.append(conn)
                threading.Thread(target=_echo_until_closed, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        port = plane.add_route("db", Upstream("127.0.0.1", echo.getsockname()[1]))
        holed = socket.create_connection(("127.0.0.1", port), timeout=2)
        spared = socket.create_connection(("127.0.0.1", port), timeout=2)
        for sock in (holed, spared):
            sock.sendall(b"a")
            assert sock.recv(10) == b"a"
        plane.set_fault("db", Blackhole())
        holed.sendall(b"lost")
        time.sleep(0.1)
        plane.clear_fault("db")
        with pytest.raises(ConnectionResetError):
            holed.sendall(b"b")
            assert holed.recv(10) == b""  # never an answer after the hole
            raise ConnectionResetError
        spared.sendall(b"c")
        assert spared.recv(10) == b"c"
        holed.close()
        spared.close()
    finally:
        echo.close()
        for conn in conns:
            conn.close()


def _echo_until_closed(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := conn.recv(4096):
            conn.sendall(data)


def test_refuse_is_connection_refused_within_50ms(plane: FaultPlane, port: int) -> None:
    with client(port) as pooled:
        pooled.get("/warm")
        plane.set_fault("eu/llm", Refuse())
        durations = []
        for _ in range(5):
            with client(port) as fresh, pytest.raises(httpx.ConnectError) as info:
                start = time.perf_counter()
                try:
                    fresh.get("/")
                finally:
                    durations.append(time.perf_counter() - start)
            cause = info.value.__cause__
            while cause is not None and not isinstance(cause, ConnectionRefusedError):
                cause = cause.__cause__ or cause.__context__
            assert isinstance(cause, ConnectionRefusedError)
        print(f"\nrefuse: connect error after {max(durations) * 1e3:.2f} ms at most")
        assert max(durations) < 0.05
        # The pooled connection was reset, and its replacement is refused.
        with pytest.raises(httpx.TransportError):
            pooled.get("/pooled")
    plane.clear_fault("eu/llm")
    with client(port) as c:
        assert c.get("/back").status_code == 200
    assert listening_addresses(port) == {"0100007F"}


def test_refuse_keeps_the_port_reserved(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", Refuse())
    intruder = socket.socket()
    intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        with pytest.raises(OSError) as info:
            intruder.bind(("127.0.0.1", port))
        assert info.value.errno == errno.EADDRINUSE
    finally:
        intruder.close()


def test_refuse_new_connections_only_spares_open_connections(plane: FaultPlane, port: int) -> None:
    with client(port) as pooled:
        pooled.get("/warm")
        plane.set_fault("eu/llm", Refuse(new_connections_only=True))
        assert pooled.get("/still").text == "ok:/still"
        with client(port) as fresh, pytest.raises(httpx.ConnectError):
            fresh.get("/")
        assert pooled.get("/again").text == "ok:/again"


def test_hang_holds_requests_until_the_fault_ends(plane: FaultPlane, port: int) -> None:
    with client(port) as c:
        c.get("/warm")
        plane.set_fault("eu/llm", Hang())
        with pytest.raises(httpx.TimeoutException):
            c.get("/hung", timeout=0.3)
    results: list[httpx.Response] = []
    with client(port, timeout=5) as late:
        thread = threading.Thread(target=lambda: results.append(late.get("/late")))
        start = time.perf_counter()
        thread.start()
        time.sleep(0.3)
        assert not results
        plane.clear_fault("eu/llm")  # like SIGCONT: the waiting request is served
        thread.join(5)
    assert results[0].text == "ok:/late"
    assert time.perf_counter() - start >= 0.3


def test_blackhole_new_connections_only_spares_open_connections(plane: FaultPlane, port: int) -> None:
    with client(port) as pooled:
        pooled.get("/warm")
        plane.set_fault("eu/llm", Blackhole(new_connections_only=True))
        assert pooled.get("/still").status_code == 200
        with client(port) as fresh, pytest.raises(httpx.TimeoutException):
            fresh.get("/", timeout=0.3)


# --- latency -------------------------------------------------------------------------------------


def test_latency_per_request_adds_at_least_fixed(plane: FaultPlane, port: int) -> None:
    with client(port) as c:
        c.get("/warm")
        base = min(_timed(c) for _ in range(5))
        plane.set_fault("eu/llm", Latency(fixed=0.05, jitter=0.02))
        slow = [_timed(c) for _ in range(5)]
    print(f"\nlatency: base {base * 1e3:.2f} ms, faulted {[round(s * 1e3, 1) for s in slow]} ms")
    assert all(s >= 0.05 for s in slow)
    assert all(s < 0.05 + 0.02 + 0.25 for s in slow)


def test_latency_per_connection_charges_once(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", Latency(fixed=0.1, per=LatencyPer.CONNECTION))
    with client(port) as c:
        first = _timed(c)
        rest = [_timed(c) for _ in range(3)]
    assert first >= 0.1
    assert max(rest) < 0.05


def test_latency_keeps_bytes_in_order(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", Latency(fixed=0.01, jitter=0.03))
    body = bytes(range(256)) * 4096
    with client(port) as c:
        for _ in range(3):
            assert c.post("/echo", content=body).content == body


def _timed(c: httpx.Client) -> float:
    start = time.perf_counter()
    assert c.get("/t").status_code == 200
    return time.perf_counter() - start


# --- HTTP-aware faults ---------------------------------------------------------------------------


def test_http_error_ratio_one_answers_every_request(
    plane: FaultPlane, port: int, upstream: _Upstream
) -> None:
    plane.set_fault("eu/llm", HttpError(statuses=(502, 503), ratio=1.0))
    with client(port) as c:
        responses = [c.get(f"/{i}") for i in range(20)]
        head = c.head("/h")
    assert {r.status_code for r in responses} <= {502, 503}
    assert all(r.headers["x-bascule-fault"] == "http_error" for r in responses)
    assert responses[0].json()["type"] == "bascule_fault"
    assert head.status_code in (502, 503) and head.content == b""
    assert upstream.requests == 0
    assert plane.stats("eu/llm").requests_faulted == 21


def test_http_error_ratio_is_honoured_and_reproducible(plane: FaultPlane, upstream: _Upstream) -> None:
    outcomes = []
    for name in ("a", "b"):
        port = plane.add_route(name, Upstream("127.0.0.1", upstream.port), seed=7)
        plane.set_fault(name, HttpError(statuses=(500,), ratio=0.3))
        with client(port) as c:
            outcomes.append([c.post("/echo", content=b"body").status_code for _ in range(300)])
    assert outcomes[0] == outcomes[1]  # same seed, same draws
    errors = outcomes[0].count(500)
    assert 60 <= errors <= 120
    assert upstream.requests == 2 * (300 - errors)


def test_throttle_answers_429_with_retry_after_and_provider_body(plane: FaultPlane, port: int) -> None:
    plane.set_fault(
        "eu/llm",
        Throttle(retry_after=1.5, headers=(("x-ratelimit-remaining-req-minute", "0"),)),
    )
    with client(port) as c:
        response = c.post("/v1/chat/completions", json={"model": "mistral-small-latest"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["x-ratelimit-remaining-req-minute"] == "0"
    assert response.content == MISTRAL_RATE_LIMIT_BODY
    assert response.json()["type"] == "rate_limited"


def test_http_fault_with_connection_close_closes(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", HttpError())
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 503 ")


def test_chunked_request_bodies_are_read_whole(plane: FaultPlane, port: int, upstream: _Upstream) -> None:
    # A fault that may strike reads every request whole: a chunked one too, to its last chunk.
    plane.set_fault("eu/llm", HttpError(every=10**6))
    with client(port) as c:
        for _ in range(2):
            response = c.post("/echo", content=iter([b"a", b"bc", b""]))
            assert (response.status_code, response.content) == (200, b"abc")
        assert c.post("/echo", content=b"plain").content == b"plain"  # and the next one after it
    plane.set_fault("eu/llm", HttpError(statuses=(503,), ratio=1.0))
    with client(port) as c:
        assert c.post("/echo", content=iter([b"a", b"b"])).status_code == 503
    assert (upstream.requests, plane.stats("eu/llm").requests_rejected) == (3, 0)


def test_a_body_in_another_transfer_coding_is_rejected_clearly(plane: FaultPlane, port: int) -> None:
    plane.set_fault("eu/llm", HttpError(every=10**6))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nxx")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 501 ") and b"gzip" in data
    assert plane.stats("eu/llm").requests_rejected == 1


def test_a_client_waiting_for_100_continue_gets_one(
    plane: FaultPlane, port: int, upstream: _Upstream
) -> None:
    """curl waits up to a second for ``100 Continue`` before a large body: a fault that reads
    requests whole says it at once, and the callee gets the request whole, without ``Expect``
    (else it would send a second one)."""
    plane.set_fault("eu/llm", HttpError(every=10**6))
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert time.monotonic() - started < 0.5
        sock.sendall(b"body")
        data = b""
        while not data.endswith(b"body"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ")
    assert upstream.requests == 1


def test_non_http_bytes_pass_untouched_in_http_mode(plane: FaultPlane) -> None:
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen(1)

    def serve() -> None:
        conn, _ = echo.accept()
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        port = plane.add_route("binary", Upstream("127.0.0.1", echo.getsockname()[1]))
        plane.set_fault("binary", HttpError())
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"\x00\x01binary protocol\r\n\r\n")
            assert sock.recv(4096) == b"\x00\x01binary protocol\r\n\r\n"
    finally:
        echo.close()
        thread.join(5)


def test_new_connections_only_spares_an_open_keep_alive_connection(plane: FaultPlane, port: int) -> None:
    with client(port) as pooled:
        assert pooled.get("/warm").status_code == 200
        plane.set_fault("eu/llm", HttpError(statuses=(503,), new_connections_only=True))
        with client(port) as fresh:
            assert fresh.get("/new").status_code == 503
        assert pooled.get("/pooled").status_code == 200
        plane.clear_fault("eu/llm")
        with client(port) as fresh:
            assert fresh.get("/new").status_code == 200


def test_a_fault_set_mid_request_waits_for_the_next_request(plane: FaultPlane, port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
        time.sleep(0.05)
        plane.set_fault("eu/llm", HttpError())
        sock.sendall(b"cd")
        first = _read_response(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        second = _read_response(sock)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"abcd")
    assert second.startswith(b"HTTP/1.1 503")


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


# --- activation latency --------------------------------------------------------------------------


def test_activation_latency_p99_under_10ms(plane: FaultPlane, port: int) -> None:
    """From the start of the switching call to the first request that sees the new state.

    The probe is a raw keep-alive socket, so that the figure is the proxy's and not an HTTP
    client's; faults are observed on the open connection (503, 429, then 200 again once cleared)
    and, for refusal, on a new connection.
    """
    call_s: list[float] = []
    observed_s: list[float] = []
    floor_s: list[float] = []
    """One request on the same connection with no switch before it, after each switch: the floor
    the activation is judged against (an absolute bound fails on a loaded machine)."""
    extra_requests = 0
    states: list[tuple[ProxyFault, bytes]] = [
        (HttpError(statuses=(503,)), b"503"),
        (Pass(), b"200"),
        (Throttle(), b"429"),
        (Pass(), b"200"),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
        probe.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def status() -> bytes:
            probe.sendall(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n")
            return _read_response(probe)[9:12]

        assert status() == b"200"
        for i in range(240):
            state, expected = states[i % len(states)]
            start = time.perf_counter()
            plane.set_fault("eu/llm", state)
            call_s.append(time.perf_counter() - start)
            while status() != expected:
                extra_requests += 1
            observed_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            assert status() == expected
            floor_s.append(time.perf_counter() - start)
        for _ in range(30):
            start = time.perf_counter()
            plane.set_fault("eu/llm", Refuse(new_connections_only=True))
            call_s.append(time.perf_counter() - start)
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            observed_s.append(time.perf_counter() - start)
            plane.clear_fault("eu/llm")
            assert status() == b"200"

    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1e3

    print(
        f"\nactivation over {len(observed_s)} switches: set_fault call p50 {p(call_s, 50):.3f} ms"
        f" p99 {p(call_s, 99):.3f} ms; call→first affected request observed p50"
        f" {p(observed_s, 50):.3f} ms p99 {p(observed_s, 99):.3f} ms; requests that still saw"
        f" the old state: {extra_requests}; a request with no switch (the floor) p50"
        f" {p(floor_s, 50):.3f} ms p99 {p(floor_s, 99):.3f} ms"
    )
    assert extra_requests == 0
    assert p(observed_s, 50) <= 3 * p(floor_s, 50) + 1.0
    # 10 ms, unless the floor itself shows the machine's scheduling delays (its p99 in ms).
    assert p(observed_s, 99) <= max(10.0, 3 * p(floor_s, 99) + 2.0)


# --- lifecycle and pure helpers ------------------------------------------------------------------


def test_stop_closes_listeners_connections_and_thread(upstream: _Upstream) -> None:
    before = threading.active_count()
    plane = FaultPlane()
    plane.start()
    port = plane.add_route("r", Upstream("127.0.0.1", upstream.port))
    plane.add_route("r2", Upstream("127.0.0.1", upstream.port))
    assert threading.active_count() == before + 1  # one thread, however many routes
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _read_response(sock).startswith(b"HTTP/1.1 200")
    plane.stop()
    assert sock.recv(10) == b""
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert "bascule-faultplane" not in {t.name for t in threading.enumerate()}
    with pytest.raises(TargetError):
        plane.set_fault("r", Blackhole())


def test_parse_request_head() -> None:
    head = parse_request_head(
        b"POST /v1/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close"
    )
    assert (head.method, head.target, head.version) == ("POST", "/v1/x?y=1", "1.1")
    assert head.header("HOST") == "a"
    assert head.body_length == 12
    assert not head.keep_alive
    assert parse_request_head(b"GET / HTTP/1.0\r\nConnection: keep-alive").keep_alive
    assert not parse_request_head(b"GET / HTTP/1.0").keep_alive
    with pytest.raises(UnsupportedRequestError):
        _ = parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked").body_length
    assert parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked").chunked
    assert not parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 1").chunked
    with pytest.raises(UnsupportedRequestError):
        _ = parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip").chunked
    for bad in (b"\x16\x03\x01", b"GET /", b"GET / HTTP/2.0", b"GET / HTTP/1.1\r\nno colon"):
        with pytest.raises(HttpParseError):
            parse_request_head(bad)
    with pytest.raises(HttpParseError):
        _ = parse_request_head(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2").body_length


def test_render_response() -> None:
    raw = render_response(429, b"{}", headers=(("retry-after", "1"),), keep_alive=False)
    assert raw.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"content-length: 2\r\n" in raw and b"connection: close\r\n" in raw
    assert raw.endswith(b"\r\n\r\n{}")
    assert render_response(503, b"body", head_only=True).endswith(b"\r\n\r\n")


# --- several replicas behind one route -----------------------------------------------------------


def test_new_connections_spread_over_upstreams_and_skip_a_dead_one(plane: FaultPlane) -> None:
    servers = [_Upstream(), _Upstream()]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    dead = _Upstream()
    dead_port = dead.port
    dead.server_close()  # nothing listens there any more: connections are refused
    try:
        targets = [Upstream("127.0.0.1", servers[0].port), Upstream("127.0.0.1", dead_port)]
        targets.append(Upstream("127.0.0.1", servers[1].port))
        port = plane.add_route("eu/store", targets)
        for _ in range(6):
            with client(port) as c:  # a new connection each time
                assert c.get("/x").status_code == 200
        assert servers[0].requests >= 2 and servers[1].requests >= 2
        assert servers[0].requests + servers[1].requests == 6
        assert plane.stats("eu/store").upstream_connect_failures >= 1
        assert plane.routes()["eu/store"].upstreams == tuple(targets)
        plane.set_upstreams("eu/store", [])
        with client(port) as c, pytest.raises(httpx.TransportError):
            c.get("/x")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_a_fault_answer_after_the_upstream_ended_the_connection_is_dropped_not_raised(
    plane: FaultPlane,
) -> None:
    # An upstream that answers once and half-closes (as an HTTP/1.0 server does): the relay ends
    # the client side too. A request the client sends meanwhile, under an http-error fault, would
    # be answered after that end: the answer is dropped and the client sees the close, instead of
    # an error in the fault plane's event loop.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.shutdown(socket.SHUT_WR)
            time.sleep(0.5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    errors: list[dict[str, object]] = []
    try:
        port = plane.add_route("one-shot", Upstream("127.0.0.1", server.getsockname()[1]))
        plane.spawn(_capture_loop_errors(errors))
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_response(sock).endswith(b"ok")
            time.sleep(0.1)  # the upstream's end has reached the client side
            plane.set_fault("one-shot", HttpError())
            sock.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(4096) == b"", "the client sees the connection end, not a 503 after it"
        time.sleep(0.1)
        assert errors == []
        assert plane.stats("one-shot").bytes_dropped > 0
    finally:
        server.close()
        thread.join(5)


async def _capture_loop_errors(errors: list[dict[str, object]]) -> None:
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
