"""Connect-time name resolution and connection pools (`bascule.stack.net`).

A one-thread dnslib server on 127.0.0.1 answers A records and can be switched to NXDOMAIN,
NODATA, SERVFAIL or silence; a uvicorn server in a thread answers with the client port of the
connection each request came on, which shows whether a request reused a pooled connection.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import select
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx
import pytest
import uvicorn
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from bascule.model.design import ConnectionPool
from bascule.stack.net import (
    DnsOutcome,
    NetConfig,
    ResolvingBackend,
    ResolvingTransport,
    add_net_arguments,
    dns_outcome,
    make_async_client,
    make_transport,
    net_config_from_args,
    parse_dns_server,
)

NAME = "svc.test.bascule.internal"
MODES = ("answer", "nxdomain", "nodata", "servfail", "drop")


# --- servers ---------------------------------------------------------------------------------


class FakeDns:
    """A DNS server on UDP 127.0.0.1 whose answer for every name is set by ``mode``."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.mode = "answer"
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._sock.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-dns", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        assert not self._thread.is_alive(), "DNS thread did not stop"

    def _serve(self) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([self._sock], [], [], 0.05)
            if not readable:
                continue
            data, peer = self._sock.recvfrom(4096)
            request = DNSRecord.parse(data)
            name = str(request.q.qname).rstrip(".")
            self.queries.append(name)
            mode = self.mode
            if mode == "drop":
                continue
            reply = request.reply()
            if mode == "nxdomain" or (mode == "answer" and name not in self.records):
                reply.header.rcode = RCODE.NXDOMAIN
            elif mode == "servfail":
                reply.header.rcode = RCODE.SERVFAIL
            elif mode == "answer" and request.q.qtype == QTYPE.A:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.records[name]), ttl=60))
            self._sock.sendto(reply.pack(), peer)


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``{"port": client port}``; ``/slow`` first waits 0.8 s."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.8)
    body = json.dumps({"port": scope["client"][1]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def serve_http() -> Iterator[int]:
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that name their protocol; without it every pooled request stalls ~40 ms (Nagle and
    # delayed ACK), which would hide the latencies these tests compare.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(_echo_app, log_level="warning", lifespan="off", timeout_keep_alive=30)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "HTTP server thread died during startup"
            assert time.monotonic() < deadline, "HTTP server did not start"
            time.sleep(0.005)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "HTTP server thread did not stop"


@pytest.fixture(scope="module")
def dns_server() -> Iterator[FakeDns]:
    server = FakeDns({NAME: "127.0.0.1"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns(dns_server: FakeDns) -> Iterator[FakeDns]:
    dns_server.mode = "answer"
    dns_server.queries.clear()
    yield dns_server
    dns_server.mode = "answer"


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    with serve_http() as port:
        yield port


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), timeout=20))


def config(dns: FakeDns, **overrides: Any) -> NetConfig:
    values: dict[str, Any] = {"dns_server": dns.address, "connect_timeout": 0.3}
    values.update(overrides)
    return NetConfig(**values)


async def client_port(client: httpx.AsyncClient, url: str) -> int:
    response = await client.get(url)
    assert response.status_code == 200
    port = response.json()["port"]
    assert isinstance(port, int)
    return port


# --- resolution ------------------------------------------------------------------------------


def test_client_resolves_the_name_through_the_configured_server(dns: FakeDns, http_port: int) -> None:
    async def scenario() -> None:
        async with make_async_client(config(dns)) as client:
            first = await client_port(client, f"http://{NAME}:{http_port}/")
            assert await client_port(client, f"http://{NAME}:{http_port}/") == first
        assert dns.queries == [NAME], "one lookup for the new connection, none for the pooled one"

        # A fully qualified name (trailing dot) is another origin, hence another connection.
        async with make_async_client(config(dns)) as client:
            await client_port(client, f"http://{NAME}.:{http_port}/")
        assert dns.queries == [NAME, NAME]

    run(scenario)


def test_ip_literals_and_localhost_are_not_looked_up(dns: FakeDns, http_port: int) -> None:
    dns.mode = "drop"

    async def scenario() -> None:
        async with make_async_client(config(dns)) as client:
            await client_port(client, f"http://127.0.0.1:{http_port}/")
            await client_port(client, f"http://localhost:{http_port}/")
        assert dns.queries == []

    run(scenario)


def test_unknown_name_is_nxdomain(dns: FakeDns, http_port: int) -> None:
    async def scenario() -> None:
        async with make_async_client(config(dns)) as client:
            with pytest.raises(httpx.ConnectError, match="nxdomain") as info:
                await client.get(f"http://missing.test.bascule.internal:{http_port}/")
        assert dns_outcome(info.value) is DnsOutcome.NXDOMAIN

    run(scenario)


@pytest.mark.parametrize(
    ("mode", "outcome"),
    [
        ("nodata", DnsOutcome.NODATA),
        ("nxdomain", DnsOutcome.NXDOMAIN),
        ("servfail", DnsOutcome.SERVFAIL),
        ("drop", DnsOutcome.TIMEOUT),
    ],
)
def test_dns_fault_spares_pooled_connections_and_fails_new_ones(
    dns: FakeDns, http_port: int, mode: str, outcome: DnsOutcome
) -> None:
    """2025-10-20: the record went empty; warm pools kept working, new connections failed."""
    url = f"http://{NAME}:{http_port}/"

    async def scenario() -> None:
        async with make_async_client(config(dns)) as pooled:
            first = await client_port(pooled, url)
            dns.mode = mode
            lookups = len(dns.queries)
            for _ in range(3):
                assert await client_port(pooled, url) == first
            assert len(dns.queries) == lookups, "the pooled client did not look the name up"

            async with make_async_client(config(dns)) as fresh:
                started = time.monotonic()
                with pytest.raises(httpx.ConnectError) as info:
                    await fresh.get(url)
                elapsed = time.monotonic() - started
            assert outcome.value in str(info.value), str(info.value)
            assert NAME in str(info.value)
            assert dns_outcome(info.value) is outcome
            assert len(dns.queries) > lookups, "the new client asked the DNS server"
            # A silent server costs the whole connect timeout; the others answer at once.
            if mode == "drop":
                assert 0.29 <= elapsed < 0.6, elapsed
            else:
                assert elapsed < 0.25, elapsed

            assert await client_port(pooled, url) == first, "still pooled after the fault"

    run(scenario)


# --- pool settings ---------------------------------------------------------------------------


def test_max_age_replaces_pooled_connections(dns: FakeDns, http_port: int) -> None:
    url = f"http://{NAME}:{http_port}/"

    async def scenario() -> None:
        async with make_async_client(config(dns, max_age=0.5)) as client:
            first = await client_port(client, url)
            await asyncio.sleep(0.2)
            assert await client_port(client, url) == first, "younger than max_age: reused"
            await asyncio.sleep(0.4)
            second = await client_port(client, url)
            assert second != first, "older than max_age: a new connection"
        assert dns.queries == [NAME, NAME], "the new connection resolved the name again"

    run(scenario)


def test_max_age_ends_the_grace_of_pooled_connections_during_a_dns_fault(
    dns: FakeDns, http_port: int
) -> None:
    url = f"http://{NAME}:{http_port}/"

    async def scenario() -> None:
        async with (
            make_async_client(config(dns, max_age=0.5)) as aged,
            make_async_client(config(dns)) as ageless,
        ):
            aged_port = await client_port(aged, url)
            ageless_port = await client_port(ageless, url)
            opened = time.monotonic()
            dns.mode = "nodata"
            await asyncio.sleep(0.1)
            assert await client_port(aged, url) == aged_port, "before max_age: still pooled"
            await asyncio.sleep(0.6 - (time.monotonic() - opened))
            with pytest.raises(httpx.ConnectError, match="nodata"):
                await aged.get(url)
            # Same age, no max_age: the connection is still in the pool and still works.
            assert await client_port(ageless, url) == ageless_port

    run(scenario)


def test_max_age_never_cuts_a_request_in_flight(dns: FakeDns, http_port: int) -> None:
    url = f"http://{NAME}:{http_port}"

    async def scenario() -> None:
        async with make_async_client(config(dns, max_age=0.3)) as client:
            first = await client_port(client, f"{url}/slow")
            assert await client_port(client, f"{url}/") != first

    run(scenario)


def test_keepalive_expiry_closes_idle_connections(dns: FakeDns, http_port: int) -> None:
    url = f"http://{NAME}:{http_port}/"

    async def scenario() -> None:
        async with make_async_client(config(dns, keepalive_expiry=0.2)) as client:
            await client_port(client, url)
            await asyncio.sleep(0.3)
            dns.mode = "nodata"
            with pytest.raises(httpx.ConnectError, match="nodata"):
                await client.get(url)

    run(scenario)


def test_max_connections_bounds_the_pool(dns: FakeDns, http_port: int) -> None:
    url = f"http://{NAME}:{http_port}/slow"

    async def scenario() -> None:
        transport = ResolvingTransport(config(dns, max_connections=2))
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            ports = await asyncio.gather(*(client_port(client, url) for _ in range(4)))
            assert len(set(ports)) == 2
            assert len(transport.pool.connections) == 2

    run(scenario)


# --- the private hook, pinned ----------------------------------------------------------------


def test_guard_pinned_versions_and_private_hook(dns: FakeDns) -> None:
    """Fails loudly when httpx/httpcore change: `make_transport` swaps ``_pool`` by hand."""
    assert httpx.__version__ == "0.28.1", "re-check ResolvingTransport against the new httpx"
    assert httpcore.__version__ == "1.0.9", "re-check _Pool/_AgedConnection against httpcore"

    # httpx sends every request through `self._pool`, which is the attribute replaced.
    source = inspect.getsource(httpx.AsyncHTTPTransport.handle_async_request)
    assert "self._pool.handle_async_request(" in source
    # httpcore opens connections through `create_connection` and retires those `has_expired`.
    pool_source = inspect.getsource(httpcore.AsyncConnectionPool._assign_requests_to_connections)
    assert "self.create_connection(origin)" in pool_source
    assert "connection.has_expired()" in pool_source
    assert "network_backend" in inspect.signature(httpcore.AsyncConnectionPool).parameters

    transport = make_transport(config(dns, max_age=1.0))
    assert isinstance(transport, ResolvingTransport)
    assert isinstance(transport.network_backend, ResolvingBackend)
    assert transport._pool is transport.pool
    assert isinstance(transport.pool, httpcore.AsyncConnectionPool)
    assert transport.pool._network_backend is transport.network_backend


# --- configuration ---------------------------------------------------------------------------


def test_parse_dns_server() -> None:
    assert parse_dns_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_dns_server("[::1]:5353") == ("::1", 5353)
    assert parse_dns_server("10.0.0.2") == ("10.0.0.2", 53)
    assert parse_dns_server("::1") == ("::1", 53)
    for bad in ("dns.example:53", "127.0.0.1:0", "127.0.0.1:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_dns_server(bad)


def test_flags_and_environment() -> None:
    parser = argparse.ArgumentParser()
    add_net_arguments(parser, {"BASCULE_DNS_SERVER": "127.0.0.1:5300", "BASCULE_POOL_MAX_AGE": "90"})
    config = net_config_from_args(
        parser.parse_args(["--pool-max-connections", "4", "--connect-timeout", "0.5"])
    )
    assert config == NetConfig(
        dns_server=("127.0.0.1", 5300), max_connections=4, max_age=90.0, connect_timeout=0.5
    )

    bare = argparse.ArgumentParser()
    add_net_arguments(bare, {})
    assert net_config_from_args(bare.parse_args([])) == NetConfig(dns_server=None)

    for argv in (["--dns-server", "resolver:53"], ["--pool-max-connections", "0"]):
        with pytest.raises(SystemExit):
            bare.parse_args(argv)
    env_parser = argparse.ArgumentParser()
    add_net_arguments(env_parser, {"BASCULE_REQUEST_TIMEOUT": "-1"})
    with pytest.raises(SystemExit):
        env_parser.parse_args([])


def test_config_from_a_design_pool() -> None:
    pool = ConnectionPool(max_connections=3, keepalive_expiry=12.0, max_age=60.0)
    config = NetConfig.from_pool(pool, ("127.0.0.1", 53), connect_timeout=0.5, request_timeout=2)
    assert (config.max_connections, config.keepalive_expiry, config.max_age) == (3, 12.0, 60.0)
    assert config.timeout == httpx.Timeout(2, connect=0.5)
    with pytest.raises(ValueError):
        NetConfig(dns_server=("127.0.0.1", 53), connect_timeout=0)
