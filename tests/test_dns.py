"""The local target's DNS server (`bascule.targets.local.dns`), queried by dnspython over loopback.

Covers the zone's answers, each fault mode as a resolver sees it, one serving thread whatever
the load, and the 2025-10-20 behaviour: a pooled keep-alive connection keeps working while a
name's record is faulted, because it never resolves again; a new client fails to resolve.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest

from bascule.targets.local.dns import DnsServer, DnsTable, Outcome, answer_query, qualify
from bascule.targets.local.faultstate import DnsFaultMode

ZONE = "bascule.internal."


@pytest.fixture
def server() -> Iterator[DnsServer]:
    dns_server = DnsServer(ZONE)
    dns_server.start()
    try:
        dns_server.set_record("gateway.eu", ["127.0.0.1"])
        dns_server.set_record("llm.eu", ["127.0.0.1", "::1"])
        yield dns_server
    finally:
        dns_server.stop()


def resolver(port: int, lifetime: float = 0.3) -> dns.resolver.Resolver:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.lifetime = lifetime
    r.timeout = lifetime
    r.cache = None
    return r


def addresses(r: dns.resolver.Resolver, name: str, rdtype: str = "A") -> list[str]:
    return sorted(rr.to_text() for rr in r.resolve(name, rdtype))


# --- answers -------------------------------------------------------------------------------------


def test_answers_a_and_aaaa_with_ttl_zero(server: DnsServer) -> None:
    r = resolver(server.port)
    assert addresses(r, "gateway.eu.bascule.internal") == ["127.0.0.1"]
    assert addresses(r, "llm.eu.bascule.internal", "AAAA") == ["::1"]
    answer = r.resolve("llm.eu.bascule.internal", "A")
    assert answer.rrset is not None and answer.rrset.ttl == 0
    assert answer.response.flags & dns.flags.AA


def test_unknown_names_outside_zone_and_empty_non_terminals(server: DnsServer) -> None:
    r = resolver(server.port)
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("nope.bascule.internal", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("eu.bascule.internal", "A")  # has names below it
    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("gateway.eu.bascule.internal", "AAAA")  # exists, no IPv6
    query = dns.message.make_query("example.com", "A")
    response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=1)
    assert response.rcode() == dns.rcode.REFUSED


def test_records_change_and_disappear(server: DnsServer) -> None:
    r = resolver(server.port)
    server.set_record("gateway.eu", ["127.0.0.2"])
    assert addresses(r, "gateway.eu.bascule.internal") == ["127.0.0.2"]
    server.remove_record("gateway.eu")
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("gateway.eu.bascule.internal", "A")


def test_only_loopback_records_are_accepted(server: DnsServer) -> None:
    with pytest.raises(ValueError, match="loopback"):
        server.set_record("gateway.eu", ["10.0.0.1"])
    with pytest.raises(ValueError, match="not in zone"):
        server.set_record("gateway.example.com.", ["127.0.0.1"])


def test_tcp_queries_are_answered(server: DnsServer) -> None:
    query = dns.message.make_query("gateway.eu.bascule.internal", "A")
    response = dns.query.tcp(query, "127.0.0.1", port=server.port, timeout=1)
    assert [rr.to_text() for rr in response.answer[0]] == ["127.0.0.1"]
    # Two queries on one TCP connection, sent in one write.
    with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
        wire = query.to_wire()
        sock.sendall((len(wire).to_bytes(2, "big") + wire) * 2)
        data = b""
        while data.count(b"\x7f\x00\x00\x01") < 2:
            data += sock.recv(4096)


def test_malformed_packets_are_counted_and_ignored(server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01garbage", ("127.0.0.1", server.port))
    assert addresses(resolver(server.port), "gateway.eu.bascule.internal") == ["127.0.0.1"]
    assert server.stats().by_outcome["malformed"] == 1


def test_listens_on_loopback_only(server: DnsServer) -> None:
    port = server.port
    bound: set[tuple[str, str]] = set()
    for table in ("/proc/net/udp", "/proc/net/tcp", "/proc/net/udp6", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                address, hex_port = line.split()[1].split(":")
                if int(hex_port, 16) == port:
                    bound.add((table.rsplit("/", 1)[1], address))
    assert ("udp", "0100007F") in bound and ("tcp", "0100007F") in bound
    assert {address for _, address in bound} == {"0100007F"}


# --- faults --------------------------------------------------------------------------------------

_EXPECTED: dict[DnsFaultMode, type[Exception]] = {
    DnsFaultMode.NXDOMAIN: dns.resolver.NXDOMAIN,
    DnsFaultMode.NODATA: dns.resolver.NoAnswer,
    DnsFaultMode.SERVFAIL: dns.resolver.NoNameservers,
    DnsFaultMode.DROP: dns.resolver.LifetimeTimeout,
}


@pytest.mark.parametrize("mode", list(DnsFaultMode))
def test_each_fault_mode_as_a_resolver_sees_it(server: DnsServer, mode: DnsFaultMode) -> None:
    r = resolver(server.port)
    server.set_fault("gateway.eu", mode)
    start = time.perf_counter()
    with pytest.raises(_EXPECTED[mode]):
        r.resolve("gateway.eu.bascule.internal", "A")
    if mode is DnsFaultMode.DROP:
        assert time.perf_counter() - start >= 0.25
    assert addresses(r, "llm.eu.bascule.internal") == ["127.0.0.1"]  # other names unaffected
    server.clear_fault("gateway.eu")
    assert addresses(r, "gateway.eu.bascule.internal") == ["127.0.0.1"]


def test_nodata_is_noerror_with_an_empty_answer(server: DnsServer) -> None:
    server.set_fault("gateway.eu", DnsFaultMode.NODATA)
    query = dns.message.make_query("gateway.eu.bascule.internal", "A")
    response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=1)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []


def test_wildcard_faults_and_precedence(server: DnsServer) -> None:
    r = resolver(server.port)
    server.set_record("gateway.us", ["127.0.0.1"])
    server.set_fault("*.eu", DnsFaultMode.NXDOMAIN)
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("gateway.eu.bascule.internal", "A")
    assert addresses(r, "gateway.us.bascule.internal") == ["127.0.0.1"]
    server.set_fault("llm.eu", DnsFaultMode.NODATA)  # the exact name wins over the wildcard
    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("llm.eu.bascule.internal", "A")
    server.set_fault("*", DnsFaultMode.SERVFAIL)
    with pytest.raises(dns.resolver.NoNameservers):
        r.resolve("gateway.us.bascule.internal", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):  # *.eu is closer than *
        r.resolve("gateway.eu.bascule.internal", "A")
    assert server.faults() == {
        "*.eu.bascule.internal.": DnsFaultMode.NXDOMAIN,
        "llm.eu.bascule.internal.": DnsFaultMode.NODATA,
        "*.bascule.internal.": DnsFaultMode.SERVFAIL,
    }
    server.clear_faults()
    assert addresses(r, "gateway.eu.bascule.internal") == ["127.0.0.1"]


class _UdpEcho:
    """The floor: a thread answering each UDP datagram with itself flagged as a response — a round
    trip through a socket and a thread, as the DNS server's, with no table and no fault."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.sock.sendto(data[:2] + bytes([data[2] | 0x80]) + data[3:], peer)

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


def test_a_fault_is_in_force_for_the_next_query(server: DnsServer) -> None:
    """Every answer after `set_fault`/`clear_fault` returns reflects it; and the call-to-answer
    time stays within a few times a bare UDP round trip measured interleaved with it (an absolute
    bound fails on a loaded machine, where the floor's own p99 is milliseconds)."""
    query = dns.message.make_query("gateway.eu.bascule.internal", "A")
    observed: list[float] = []
    floor: list[float] = []
    echo = _UdpEcho()
    try:
        for i in range(200):
            start = time.perf_counter()
            dns.query.udp(query, "127.0.0.1", port=echo.port, timeout=1)
            floor.append(time.perf_counter() - start)
            mode = DnsFaultMode.NXDOMAIN if i % 2 == 0 else None
            start = time.perf_counter()
            if mode is None:
                server.clear_fault("gateway.eu")
            else:
                server.set_fault("gateway.eu", mode)
            response = dns.query.udp(query, "127.0.0.1", port=server.port, timeout=1)
            observed.append(time.perf_counter() - start)
            expected = dns.rcode.NXDOMAIN if mode else dns.rcode.NOERROR
            assert response.rcode() == expected
    finally:
        echo.stop()

    def p99(values: list[float]) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[98] * 1e3

    print(
        f"\nDNS activation (call → answer observed) p50 {statistics.median(observed) * 1e3:.3f} ms,"
        f" p99 {p99(observed):.3f} ms; bare UDP round trip p50 {statistics.median(floor) * 1e3:.3f} ms,"
        f" p99 {p99(floor):.3f} ms"
    )
    assert statistics.median(observed) <= 3 * statistics.median(floor) + 1e-3
    assert p99(observed) <= 3 * p99(floor) + 2.0


def test_one_thread_serves_every_query(server: DnsServer) -> None:
    server.stop()
    before = threading.active_count()
    port = server.start()
    assert threading.active_count() == before + 1
    # Bursts of 50 UDP queries in flight at once (more would overflow the socket buffers).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        ids: set[int] = set()
        for burst in range(6):
            for i in range(burst * 50, burst * 50 + 50):
                query = dns.message.make_query("gateway.eu.bascule.internal", "A", id=i)
                sock.sendto(query.to_wire(), ("127.0.0.1", port))
            assert threading.active_count() == before + 1
            while len(ids) < burst * 50 + 50:
                ids.add(dns.message.from_wire(sock.recv(4096)).id)
    for _ in range(5):
        dns.query.tcp(dns.message.make_query("llm.eu.bascule.internal", "A"), "127.0.0.1", port=port)
    assert threading.active_count() == before + 1
    assert server.stats().by_name["gateway.eu.bascule.internal."] == 300
    server.stop()
    assert threading.active_count() == before


# --- pooled connections vs new resolutions (2025-10-20) ------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class _ResolvingClient:
    """Resolves its host once, when it connects, and keeps the connection (a one-slot pool)."""

    def __init__(self, r: dns.resolver.Resolver, host: str, port: int) -> None:
        self._resolver = r
        self._host = host
        self._port = port
        self._sock: socket.socket | None = None

    def get(self) -> bytes:
        if self._sock is None:
            address = self._resolver.resolve(self._host, "A")[0].to_text()
            self._sock = socket.create_connection((address, self._port), timeout=2)
        self._sock.sendall(f"GET / HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
        data = b""
        while not data.endswith(b"hello"):
            chunk = self._sock.recv(4096)
            assert chunk, "connection closed"
            data += chunk
        return data

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()


@pytest.mark.parametrize("mode", list(DnsFaultMode))
def test_pooled_connection_survives_a_dns_fault_new_client_fails(
    server: DnsServer, web: int, mode: DnsFaultMode
) -> None:
    host = "gateway.eu.bascule.internal"
    pooled = _ResolvingClient(resolver(server.port), host, web)
    fresh = _ResolvingClient(resolver(server.port), host, web)
    try:
        assert pooled.get().startswith(b"HTTP/1.1 200")
        server.set_fault("gateway.eu", mode)
        for _ in range(3):
            assert pooled.get().startswith(b"HTTP/1.1 200")
        with pytest.raises(_EXPECTED[mode]):
            fresh.get()
        server.clear_fault("gateway.eu")
        assert fresh.get().startswith(b"HTTP/1.1 200")
    finally:
        pooled.close()
        fresh.close()


# --- pure parts ----------------------------------------------------------------------------------


def test_qualify() -> None:
    assert qualify("gateway.eu", ZONE) == "gateway.eu.bascule.internal."
    assert qualify("Gateway.EU.bascule.internal", ZONE) == "gateway.eu.bascule.internal."
    assert qualify("gateway.eu.bascule.internal.", ZONE) == "gateway.eu.bascule.internal."
    assert qualify("*", ZONE) == "*.bascule.internal."
    assert qualify("*.eu", ZONE) == "*.eu.bascule.internal."
    for bad in ("", "a..b", "x.example.com.", "a.*.b", "*x"):
        with pytest.raises(ValueError):
            qualify(bad, ZONE)


def test_answer_query_is_pure() -> None:
    table = DnsTable(zone=ZONE, records={"a.bascule.internal.": ("127.0.0.1",)})
    wire = dns.message.make_query("a.bascule.internal", "A").to_wire()
    response, outcome, name = answer_query(wire, table)
    assert outcome is Outcome.ANSWERED and name == "a.bascule.internal."
    assert response is not None
    assert dns.message.from_wire(response).answer[0][0].to_text() == "127.0.0.1"
    dropped = DnsTable(zone=ZONE, faults={"a.bascule.internal.": DnsFaultMode.DROP})
    assert answer_query(wire, dropped)[:2] == (None, Outcome.DROPPED)
    assert answer_query(b"\x00", table)[:2] == (None, Outcome.MALFORMED)
