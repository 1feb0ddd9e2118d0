"""The local target's DNS server: the stack's names, and DNS faults injected per name.

The local stack resolves its service names (e.g. `gateway.eu.bascule.internal.`) at connection
time through this server, so DNS failures can be replayed — NXDOMAIN, the empty NOERROR answer
(NODATA) of 2025-10-20, SERVFAIL, or no answer at all:

    dns = DnsServer()                       # zone bascule.internal.
    port = dns.start()                      # UDP and TCP on 127.0.0.1:port
    dns.set_record("gateway.eu", ["127.0.0.1"])
    dns.set_fault("*.eu", DnsFaultMode.NODATA)
    dns.listen("127.61.4.9", 53, asker="kv-scaleway-fr-par-0")  # this listener's queries are its
    dns.stop()

A process bascule did not write resolves through the system resolver, which asks port 53 of the
address in /etc/resolv.conf: `listen` adds such a listener, one per replica, so the server knows
which replica asked (`bascule.targets.local.names` gives each its resolv.conf). `on_lookup` sees
every query the server answers or drops — names outside the zone too — as a `Lookup`.

The server is authoritative for one zone: names outside it are REFUSED, unknown names inside it
get NXDOMAIN, and a known name asked for a type it lacks gets NODATA. Answers have TTL 0 by
default, so nothing between the server and the client caches away a fault. What a fault means
for pooled connections is written in `faultstate` (they never ask again).

Packets are parsed and built with dnslib, but not served by dnslib's `DNSServer`: that one is a
`socketserver.ThreadingMixIn` server, which starts a thread per query. Here one thread serves
UDP and TCP with a selector. Records and faults are replaced as whole immutable tables, so a
change is in force for the very next query the thread reads.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from dnslib import DNSRecord

from bascule.targets.local.dnsanswer import (
    UDP_MAX,
    DnsTable,
    Outcome,
    answer,
    answer_query,
    qualify,
    udp_limit,
)
from bascule.targets.local.faultstate import DnsFaultMode

__all__ = [
    "DEFAULT_ZONE",
    "DnsServer",
    "DnsStats",
    "DnsTable",
    "Lookup",
    "Outcome",
    "answer_query",
    "qualify",
]

DEFAULT_ZONE: Final = "bascule.internal."
_LOOPBACK: Final = "127.0.0.1"
_TCP_IDLE_S: Final = 10.0
_TCP_MAX_CONNECTIONS: Final = 64
_BIND_ATTEMPTS: Final = 20
_JOIN_TIMEOUT_S: Final = 5.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lookup:
    """One query the server read: when (``time.monotonic()``), the name (absolute, lower-case) and
    type asked (``A``, ``AAAA``…), which replica asked — known when it came to that replica's own
    listener (`DnsServer.listen`), else None — and what the server did (an `Outcome` value)."""

    t: float
    name: str
    qtype: str
    asker: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class DnsStats:
    """Counters since the server was created."""

    queries: int
    by_outcome: Mapping[str, int]
    by_name: Mapping[str, int]


@dataclass(slots=True)
class _TcpClient:
    sock: socket.socket
    asker: str | None
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    last_active: float = field(default_factory=time.monotonic)


class DnsServer:
    """An authoritative DNS server for one zone on 127.0.0.1, served by one thread.

    `on_lookup`, when given, is called on the serving thread with a `Lookup` for every query it
    reads (a packet that is no query at all is not one): keep it quick, every answer waits for it.
    An exception it raises is logged and the query answered all the same."""

    def __init__(
        self,
        zone: str = DEFAULT_ZONE,
        *,
        ttl: int = 0,
        on_lookup: Callable[[Lookup], None] | None = None,
    ) -> None:
        if not 0 <= ttl <= 2**31 - 1:
            raise ValueError(f"ttl out of range: {ttl!r}")
        zone = zone.strip().lower().rstrip(".") + "."
        if zone == ".":
            raise ValueError("the zone must not be the root")
        self._table = DnsTable(zone=zone, ttl=ttl)
        self._write_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._queries = 0
        self._by_outcome: dict[str, int] = {}
        self._by_name: dict[str, int] = {}
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._port: int | None = None
        self._on_lookup = on_lookup
        self._listeners: list[tuple[socket.socket, socket.socket, str | None]] = []
        """Every (UDP, TCP, asker) pair bound, the main one on 127.0.0.1 first once started."""
        self._registered = 0
        """How many of them the serving thread has in its selector."""

    @property
    def zone(self) -> str:
        return self._table.zone

    @property
    def port(self) -> int:
        """The port the server answers on (UDP and TCP); only once started."""
        if self._port is None:
            raise RuntimeError("the DNS server is not started")
        return self._port

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- records and faults --

    def set_record(self, name: str, addresses: Iterable[str]) -> None:
        """Answer `name` with these loopback addresses (A for IPv4, AAAA for IPv6)."""
        absolute = qualify(name, self.zone)
        if absolute.startswith("*."):
            raise ValueError("records cannot be wildcards")
        checked: list[str] = []
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if not ip.is_loopback:
                raise ValueError(f"the local target only serves loopback addresses, got {ip}")
            checked.append(str(ip))
        if not checked:
            raise ValueError("a record needs at least one address (use a NODATA fault instead)")
        with self._write_lock:
            records = dict(self._table.records)
            records[absolute] = tuple(checked)
            self._swap(records=records)

    def remove_record(self, name: str) -> None:
        """Forget `name`: it is NXDOMAIN from now on."""
        absolute = qualify(name, self.zone)
        with self._write_lock:
            records = dict(self._table.records)
            records.pop(absolute, None)
            self._swap(records=records)

    def records(self) -> dict[str, tuple[str, ...]]:
        return dict(self._table.records)

    def set_fault(self, name: str, mode: DnsFaultMode) -> None:
        """Fault `name` (or `*.suffix` for every name below suffix; `*` for the whole zone)."""
        absolute = qualify(name, self.zone)
        with self._write_lock:
            faults = dict(self._table.faults)
            faults[absolute] = mode
            self._swap(faults=faults)

    def clear_fault(self, name: str) -> None:
        """Remove the fault set on exactly `name` (a wildcard is cleared by naming it)."""
        absolute = qualify(name, self.zone)
        with self._write_lock:
            faults = dict(self._table.faults)
            faults.pop(absolute, None)
            self._swap(faults=faults)

    def clear_faults(self) -> None:
        with self._write_lock:
            self._swap(faults={})

    def faults(self) -> dict[str, DnsFaultMode]:
        return dict(self._table.faults)

    def stats(self) -> DnsStats:
        with self._stats_lock:
            return DnsStats(
                queries=self._queries,
                by_outcome=MappingProxyType(dict(self._by_outcome)),
                by_name=MappingProxyType(dict(self._by_name)),
            )

    def lookups_of(self, name: str) -> int:
        """Queries read so far for the names a fault set on `name` covers: `name` itself, or for
        ``*.suffix`` every name below suffix (`set_fault`)."""
        absolute = qualify(name, self.zone)
        with self._stats_lock:
            if absolute.startswith("*."):
                below = absolute[1:]
                return sum(count for asked, count in self._by_name.items() if asked.endswith(below))
            return self._by_name.get(absolute, 0)

    def _swap(
        self,
        *,
        records: Mapping[str, tuple[str, ...]] | None = None,
        faults: Mapping[str, DnsFaultMode] | None = None,
    ) -> None:
        old = self._table
        # One attribute store: the serving thread sees the old table or the new one, never a mix.
        self._table = DnsTable(
            zone=old.zone,
            records=MappingProxyType(dict(records)) if records is not None else old.records,
            faults=MappingProxyType(dict(faults)) if faults is not None else old.faults,
            ttl=old.ttl,
        )

    # -- serving --

    def listen(self, address: str, port: int, *, asker: str) -> None:
        """Answer on `address`:`port` too (UDP and TCP), taking every query there as `asker`'s:
        a replica whose resolver asks this address alone. Before or after `start`; a loopback
        address only. Raises OSError when the address is taken (binding port 53 needs root)."""
        if not ipaddress.ip_address(address).is_loopback:
            raise ValueError(f"the local target only listens on loopback addresses, got {address}")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            udp.bind((address, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((address, udp.getsockname()[1]))  # port 0: the one UDP got
            tcp.listen(64)
        except OSError:
            udp.close()
            tcp.close()
            raise
        udp.setblocking(False)
        tcp.setblocking(False)
        with self._write_lock:
            self._listeners.append((udp, tcp, asker))
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"+")

    def listening(self) -> dict[str, tuple[str, int]]:
        """Each asker's own listener: its address and port."""
        return {a: u.getsockname()[:2] for u, _, a in list(self._listeners) if a is not None}

    def start(self) -> int:
        """Bind UDP and TCP on 127.0.0.1 (one free port for both), start the thread; the port."""
        if self._thread is not None:
            raise RuntimeError("the DNS server is already started")
        self._udp, self._tcp = self._bind()
        self._port = self._udp.getsockname()[1]
        self._wake = socket.socketpair()
        for sock in (self._udp, self._tcp, *self._wake):
            sock.setblocking(False)
        with self._write_lock:
            self._listeners.insert(0, (self._udp, self._tcp, None))
        self._registered = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="bascule-dns", daemon=True)
        self._thread.start()
        return self._port

    def stop(self) -> None:
        """Stop the thread and close every socket."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        if self._wake is not None:
            with contextlib.suppress(OSError):
                self._wake[1].send(b"x")
        thread.join(_JOIN_TIMEOUT_S)
        with self._write_lock:
            listeners, self._listeners = self._listeners, []
        for sock in (*(s for u, t, _ in listeners for s in (u, t)), *(self._wake or ())):
            sock.close()
        self._udp = self._tcp = self._wake = None
        self._thread = None
        self._port = None

    @staticmethod
    def _bind() -> tuple[socket.socket, socket.socket]:
        # UDP picks the port; TCP must get the same one, which some other socket may hold.
        for _ in range(_BIND_ATTEMPTS):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind((_LOOPBACK, 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((_LOOPBACK, udp.getsockname()[1]))
                tcp.listen(64)
            except OSError:
                udp.close()
                tcp.close()
                continue
            return udp, tcp
        raise OSError("could not bind UDP and TCP to one free port on 127.0.0.1")

    def _answer(self, packet: bytes, asker: str | None) -> bytes | None:
        """Answer one packet with the table in force, count it and tell the observer."""
        response, outcome, name, qtype = answer(packet, self._table)
        with self._stats_lock:
            self._queries += 1
            self._by_outcome[outcome.value] = self._by_outcome.get(outcome.value, 0) + 1
            if name is not None:
                self._by_name[name] = self._by_name.get(name, 0) + 1
        if self._on_lookup is not None and name is not None:
            try:
                self._on_lookup(Lookup(time.monotonic(), name, qtype, asker, outcome.value))
            except Exception:
                # An observer's bug must not take the stack's names down with it.
                _log.exception("the DNS lookup observer failed")
        return response

    def _register_new(self, selector: selectors.BaseSelector) -> None:
        with self._write_lock:
            new = self._listeners[self._registered :]
            self._registered = len(self._listeners)
        for udp, tcp, asker in new:
            selector.register(udp, selectors.EVENT_READ, ("udp", asker))
            selector.register(tcp, selectors.EVENT_READ, ("accept", asker))

    def _serve(self) -> None:
        wake = self._wake
        assert wake is not None
        clients: dict[int, _TcpClient] = {}
        with selectors.DefaultSelector() as selector:
            self._register_new(selector)
            selector.register(wake[0], selectors.EVENT_READ, ("wake", None))
            try:
                while not self._stopping:
                    for key, events in selector.select(timeout=1.0):
                        what, asker = key.data
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        if what == "udp":
                            self._read_udp(sock, asker)
                        elif what == "accept":
                            self._accept(sock, asker, selector, clients)
                        elif what == "wake":
                            # A byte per call: "+" when a listener was added, "x" to stop.
                            with contextlib.suppress(OSError):
                                sock.recv(64)
                            if self._stopping:
                                return
                            self._register_new(selector)
                        else:
                            self._tcp_event(sock, events, selector, clients)
                    self._reap_idle(selector, clients)
            finally:
                for client in clients.values():
                    client.sock.close()

    def _read_udp(self, udp: socket.socket, asker: str | None) -> None:
        # Drain what is queued, but bounded, so that TCP clients are not starved.
        for _ in range(64):
            try:
                packet, peer = udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            response = self._answer(packet, asker)
            if response is None:
                continue
            if len(response) > UDP_MAX and len(response) > udp_limit(packet):
                response = DNSRecord.parse(response).truncate().pack()
            try:
                udp.sendto(response, peer)
            except OSError:
                continue

    def _accept(
        self,
        tcp: socket.socket,
        asker: str | None,
        selector: selectors.BaseSelector,
        clients: dict[int, _TcpClient],
    ) -> None:
        try:
            sock, _ = tcp.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        if len(clients) >= _TCP_MAX_CONNECTIONS:
            sock.close()
            return
        sock.setblocking(False)
        clients[sock.fileno()] = _TcpClient(sock, asker)
        selector.register(sock, selectors.EVENT_READ, ("tcp", asker))

    def _tcp_event(
        self,
        sock: socket.socket,
        events: int,
        selector: selectors.BaseSelector,
        clients: dict[int, _TcpClient],
    ) -> None:
        client = clients[sock.fileno()]
        client.last_active = time.monotonic()
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._drop_tcp(client, selector, clients)
                return
            if data:
                client.inbox += data
            while len(client.inbox) >= 2:
                size = int.from_bytes(client.inbox[:2], "big")
                if len(client.inbox) < 2 + size:
                    break
                packet = bytes(client.inbox[2 : 2 + size])
                del client.inbox[: 2 + size]
                response = self._answer(packet, client.asker)
                if response is not None:
                    client.outbox += len(response).to_bytes(2, "big") + response
        if client.outbox:
            try:
                sent = sock.send(client.outbox)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop_tcp(client, selector, clients)
                return
            del client.outbox[:sent]
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        if selector.get_key(sock).events != wanted:
            selector.modify(sock, wanted, ("tcp", client.asker))

    @staticmethod
    def _drop_tcp(
        client: _TcpClient, selector: selectors.BaseSelector, clients: dict[int, _TcpClient]
    ) -> None:
        clients.pop(client.sock.fileno(), None)
        selector.unregister(client.sock)
        client.sock.close()

    def _reap_idle(self, selector: selectors.BaseSelector, clients: dict[int, _TcpClient]) -> None:
        if not clients:
            return
        deadline = time.monotonic() - _TCP_IDLE_S
        for client in [c for c in clients.values() if c.last_active < deadline]:
            self._drop_tcp(client, selector, clients)
