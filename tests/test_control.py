"""The local target's control channel (`bascule.targets.local.control`) and the fault values it
carries (`faultstate`): token required, loopback only, and faults that really take effect."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.resolver
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bascule.errors import TargetError
from bascule.targets.local.control import ControlClient, ControlError, ControlServer
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.faultstate import (
    Blackhole,
    DnsFaultMode,
    Hang,
    HttpError,
    Latency,
    LatencyPer,
    Pass,
    ProxyFault,
    Refuse,
    Throttle,
    dump_proxy_fault,
    parse_proxy_fault,
)
from bascule.targets.local.proxy import FaultPlane, Upstream


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Stack:
    def __init__(self, plane: FaultPlane, dns_server: DnsServer, control: ControlServer) -> None:
        self.plane = plane
        self.dns = dns_server
        self.control = control
        self.route_port = plane.port("eu/llm")


@pytest.fixture
def stack() -> Iterator[_Stack]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    upstream.daemon_threads = True
    upstream_thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    upstream_thread.start()
    plane = FaultPlane()
    dns_server = DnsServer()
    control = ControlServer(plane=plane, dns=dns_server)
    try:
        plane.start()
        plane.add_route("eu/llm", Upstream("127.0.0.1", int(upstream.server_address[1])))
        dns_server.start()
        dns_server.set_record("llm.eu", ["127.0.0.1"])
        control.start()
        yield _Stack(plane, dns_server, control)
    finally:
        control.stop()
        dns_server.stop()
        plane.stop()
        upstream.shutdown()
        upstream.server_close()
        upstream_thread.join(5)


@pytest.fixture
def ctl(stack: _Stack) -> Iterator[ControlClient]:
    with ControlClient(stack.control.url, stack.control.token) as c:
        yield c


def test_401_without_or_with_a_wrong_token(stack: _Stack) -> None:
    with httpx.Client(base_url=stack.control.url, trust_env=False) as raw:
        response = raw.get("/v1/state")
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        wrong = raw.put(
            "/v1/routes/eu%2Fllm/fault",
            json={"mode": "blackhole"},
            headers={"authorization": "Bearer " + "x" * 43},
        )
        assert wrong.status_code == 401
        basic = raw.get("/v1/state", headers={"authorization": f"Basic {stack.control.token}"})
        assert basic.status_code == 401
    assert stack.plane.fault("eu/llm") == Pass()
    with ControlClient(stack.control.url, "not-the-token-at-all") as bad, pytest.raises(ControlError) as info:
        bad.state()
    assert info.value.status == 401
    assert isinstance(info.value, TargetError)


def test_token_is_random_and_long() -> None:
    tokens = {ControlServer().token for _ in range(5)}
    assert len(tokens) == 5
    assert all(len(t) >= 43 for t in tokens)  # token_urlsafe(32)
    with pytest.raises(ValueError):
        ControlServer(token="short")


def test_binds_only_127_0_0_1(stack: _Stack) -> None:
    port = stack.control.port
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    assert found == {"0100007F"}


def test_client_refuses_non_loopback_urls() -> None:
    for url in ("http://10.0.0.1:80", "http://localhost:80", "https://127.0.0.1:80"):
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            ControlClient(url, "t" * 43)


def test_route_faults_set_and_cleared_take_effect(stack: _Stack, ctl: ControlClient) -> None:
    url = f"http://127.0.0.1:{stack.route_port}/"
    with httpx.Client(trust_env=False, timeout=2) as web:
        assert web.get(url).status_code == 200
        ctl.set_route_fault("eu/llm", HttpError(statuses=(502,)))
        assert stack.plane.fault("eu/llm") == HttpError(statuses=(502,))
        assert web.get(url).status_code == 502
        ctl.set_route_fault("eu/llm", Throttle(retry_after=3))
        response = web.get(url)
        assert (response.status_code, response.headers["retry-after"]) == (429, "3")
        ctl.clear_route_fault("eu/llm")
        assert web.get(url).status_code == 200
    ctl.set_route_fault("eu/llm", Refuse())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", stack.route_port), timeout=1)
    ctl.clear_route_fault("eu/llm")
    state = ctl.state()
    route = state["routes"]["eu/llm"]
    assert route["fault"] == {"mode": "pass", "new_connections_only": False}
    assert route["port"] == stack.route_port
    assert route["stats"]["requests_faulted"] == 2


def test_dns_faults_and_records_take_effect(stack: _Stack, ctl: ControlClient) -> None:
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = stack.dns.port
    r.lifetime = 0.3
    r.cache = None
    assert r.resolve("llm.eu.bascule.internal", "A")[0].to_text() == "127.0.0.1"
    ctl.set_dns_fault("*.eu", DnsFaultMode.NODATA)
    with pytest.raises(dns.resolver.NoAnswer):
        r.resolve("llm.eu.bascule.internal", "A")
    assert ctl.state()["dns"]["faults"] == {"*.eu.bascule.internal.": "nodata"}
    ctl.clear_dns_fault("*.eu")
    ctl.set_dns_record("store.eu", ["127.0.0.3"])
    assert r.resolve("store.eu.bascule.internal", "A")[0].to_text() == "127.0.0.3"
    ctl.remove_dns_record("store.eu")
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("store.eu.bascule.internal", "A")
    assert ctl.state()["dns"]["stats"]["queries"] == 4


def test_set_upstream(stack: _Stack, ctl: ControlClient) -> None:
    ctl.set_upstream("eu/llm", "127.0.0.1", 9)
    assert stack.plane.routes()["eu/llm"].upstream == Upstream("127.0.0.1", 9)


def test_errors_are_reported_with_their_status(stack: _Stack, ctl: ControlClient) -> None:
    with pytest.raises(ControlError) as info:
        ctl.set_route_fault("nope", Blackhole())
    assert info.value.status == 404
    with httpx.Client(
        base_url=stack.control.url,
        trust_env=False,
        headers={"authorization": f"Bearer {stack.control.token}"},
    ) as raw:
        assert raw.put("/v1/routes/eu%2Fllm/fault", json={"mode": "melt"}).status_code == 400
        assert raw.put("/v1/routes/eu%2Fllm/fault", content=b"{").status_code == 400
        assert raw.put("/v1/dns/faults/x", json={"mode": "nope"}).status_code == 400
        assert raw.put("/v1/dns/records/x", json={"addresses": ["8.8.8.8"]}).status_code == 400
        assert raw.get("/v1/routes/eu%2Fllm/fault").status_code == 405
        assert raw.get("/v1/nothing").status_code == 404
    assert stack.plane.fault("eu/llm") == Pass()


def test_stop_releases_the_port_and_thread() -> None:
    before = threading.active_count()
    control = ControlServer()
    port = control.start()
    assert threading.active_count() == before + 1
    control.stop()
    assert threading.active_count() == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


# --- the fault values' JSON form -----------------------------------------------------------------

_seconds = st.floats(min_value=0, max_value=3600, allow_nan=False)
_ratio = st.floats(min_value=0, max_value=1, allow_nan=False)
_header_text = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
_faults: st.SearchStrategy[ProxyFault] = st.one_of(
    st.builds(Pass, new_connections_only=st.booleans()),
    st.builds(Blackhole, new_connections_only=st.booleans()),
    st.builds(Refuse, new_connections_only=st.booleans()),
    st.builds(Hang, new_connections_only=st.booleans()),
    st.builds(
        Latency,
        fixed=_seconds,
        jitter=_seconds,
        per=st.sampled_from(LatencyPer),
        new_connections_only=st.booleans(),
    ),
    st.builds(
        HttpError,
        statuses=st.lists(st.integers(400, 599), min_size=1, max_size=4).map(tuple),
        ratio=_ratio,
        new_connections_only=st.booleans(),
    ),
    st.builds(
        Throttle,
        retry_after=_seconds,
        body=st.text(max_size=40).map(str.encode),
        headers=st.lists(st.tuples(_header_text, _header_text), max_size=3).map(tuple),
        ratio=_ratio,
        new_connections_only=st.booleans(),
    ),
)


@given(_faults)
def test_fault_json_round_trip(fault: ProxyFault) -> None:
    assert parse_proxy_fault(dump_proxy_fault(fault)) == fault


def test_fault_values_are_validated() -> None:
    with pytest.raises(ValueError, match="ratio"):
        HttpError(ratio=1.5)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        HttpError(statuses=(200,))
    with pytest.raises(ValueError, match="fixed"):
        Latency(fixed=-1)
    with pytest.raises(ValueError, match="unknown key"):
        parse_proxy_fault({"mode": "blackhole", "fixed": 1})
    with pytest.raises(ValueError, match="unknown proxy fault mode"):
        parse_proxy_fault({"mode": "melt"})
    assert parse_proxy_fault({"mode": "throttle", "headers": {"a": "b"}}) == Throttle(headers=(("a", "b"),))
    assert Throttle(body="é").body_bytes == "é".encode()
    assert Throttle(retry_after=0.2).retry_after_header == "1"


def test_failures_of_the_plane_are_answered_500() -> None:
    idle_plane = FaultPlane()  # never started
    with (
        ControlServer(plane=idle_plane) as control,
        ControlClient(control.url, control.token) as ctl,
        pytest.raises(ControlError) as info,
    ):
        ctl.set_route_fault("r", Blackhole())
    assert info.value.status == 500
    assert "not running" in info.value.message
