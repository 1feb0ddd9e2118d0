"""The local target's DNS server: the stack's names, and DNS faults injected per name.

The local stack resolves its service names (e.g. `gateway.eu.bascule.internal.`) at connection
time through this server, so DNS failures can be replayed — NXDOMAIN, the empty NOERROR answer
(NODATA) of 2025-10-20, SERVFAIL, or no answer at all:

    dns = DnsServer()                       # zone bascule.internal.
    port = dns.start()                      # UDP and TCP on 127.0.0.1:port
    dns.set_record("gateway.eu", ["127.0.0.1"])
    dns.set_fault("*.eu", DnsFaultMode.NODATA)
    dns.stop()

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
import selectors
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Final

from dnslib import AAAA, QTYPE, RCODE, RR, SOA, A, DNSError, DNSRecord

from bascule.targets.local.faultstate import DnsFaultMode

__all__ = [
    "DEFAULT_ZONE",
    "DnsServer",
    "DnsStats",
    "DnsTable",
    "Outcome",
    "answer_query",
    "qualify",
]

DEFAULT_ZONE: Final = "bascule.internal."
_LOOPBACK: Final = "127.0.0.1"
_UDP_MAX: Final = 512
_TCP_IDLE_S: Final = 10.0
_TCP_MAX_CONNECTIONS: Final = 64
_BIND_ATTEMPTS: Final = 20
_JOIN_TIMEOUT_S: Final = 5.0


class Outcome(Enum):
    """What the server did with one query."""

    ANSWERED = "answered"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    DROPPED = "dropped"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class DnsTable:
    """Everything a query's answer depends on: the zone, its records and its faults."""

    zone: str
    records: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    faults: Mapping[str, DnsFaultMode] = field(default_factory=dict)
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class DnsStats:
    """Counters since the server was created."""

    queries: int
    by_outcome: Mapping[str, int]
    by_name: Mapping[str, int]


def qualify(name: str, zone: str) -> str:
    """The absolute, lower-case form of `name` in `zone`.

    `gateway.eu` and `gateway.eu.bascule.internal` both give `gateway.eu.bascule.internal.`;
    `*` stands for every name of the zone (`*.bascule.internal.`). An absolute name outside the
    zone is a `ValueError`.
    """
    zone = zone.lower().rstrip(".") + "."
    name = name.strip().lower()
    if not name or name == ".":
        raise ValueError("empty DNS name")
    if name.endswith("."):
        absolute = name
    elif (name + ".").endswith("." + zone) or name + "." == zone:
        absolute = name + "."
    else:
        absolute = f"{name}.{zone}"
    if absolute != zone and not absolute.endswith("." + zone):
        raise ValueError(f"{name!r} is not in zone {zone!r}")
    labels = absolute[:-1].split(".")
    if any(not label or len(label) > 63 for label in labels) or len(absolute) > 254:
        raise ValueError(f"invalid DNS name {name!r}")
    if "*" in absolute and not (absolute.startswith("*.") and "*" not in absolute[1:]):
        raise ValueError(f"a wildcard may only be a leading '*.' label, got {name!r}")
    return absolute


def _find_fault(name: str, table: DnsTable) -> DnsFaultMode | None:
    """The fault for `name`: its own, else the closest enclosing wildcard's."""
    faults = table.faults
    if not faults:
        return None
    mode = faults.get(name)
    if mode is not None:
        return mode
    rest = name
    while rest != table.zone:
        rest = rest.split(".", 1)[1]
        mode = faults.get("*." + rest)
        if mode is not None:
            return mode
    return None


def _soa(table: DnsTable) -> RR:
    return RR(
        table.zone,
        QTYPE.SOA,
        rdata=SOA(f"ns.{table.zone}", f"hostmaster.{table.zone}", (1, 60, 60, 600, table.ttl)),
        ttl=table.ttl,
    )


def answer_query(packet: bytes, table: DnsTable) -> tuple[bytes | None, Outcome, str | None]:
    """The response to a query packet (None: send nothing), what happened, and the name asked."""
    try:
        request = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError):
        return None, Outcome.MALFORMED, None
    if request.header.qr or request.header.opcode != 0 or not request.questions:
        return None, Outcome.MALFORMED, None
    question = request.questions[0]
    name = str(question.qname).lower()
    qtype = question.qtype
    reply = request.reply(ra=0, aa=1)
    if name != table.zone and not name.endswith("." + table.zone):
        reply.header.aa = 0
        reply.header.rcode = RCODE.REFUSED
        return bytes(reply.pack()), Outcome.REFUSED, name
    fault = _find_fault(name, table)
    if fault is DnsFaultMode.DROP:
        return None, Outcome.DROPPED, name
    if fault is DnsFaultMode.SERVFAIL:
        reply.header.aa = 0
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack()), Outcome.SERVFAIL, name
    if fault is DnsFaultMode.NXDOMAIN:
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NXDOMAIN, name
    if fault is DnsFaultMode.NODATA:
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NODATA, name
    addresses = table.records.get(name)
    if addresses is None:
        if name == table.zone and qtype in (QTYPE.SOA, QTYPE.ANY):
            reply.add_answer(_soa(table))
            return bytes(reply.pack()), Outcome.ANSWERED, name
        # An empty non-terminal (a name with records below it) exists, without data.
        below = "." + name
        if name != table.zone and not any(n.endswith(below) for n in table.records):
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(_soa(table))
            return bytes(reply.pack()), Outcome.NXDOMAIN, name
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NODATA, name
    for address in addresses:
        if ":" in address and qtype in (QTYPE.AAAA, QTYPE.ANY):
            reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=table.ttl))
        elif ":" not in address and qtype in (QTYPE.A, QTYPE.ANY):
            reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=table.ttl))
    if not reply.rr:
        reply.add_auth(_soa(table))
        return bytes(reply.pack()), Outcome.NODATA, name
    return bytes(reply.pack()), Outcome.ANSWERED, name


def _udp_limit(packet: bytes) -> int:
    """The response size the client accepts over UDP: 512, or its EDNS payload size."""
    try:
        request = DNSRecord.parse(packet)
    except (DNSError, ValueError, IndexError):
        return _UDP_MAX
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(_UDP_MAX, int(rr.rclass))
    return _UDP_MAX


@dataclass(slots=True)
class _TcpClient:
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    last_active: float = field(default_factory=time.monotonic)


class DnsServer:
    """An authoritative DNS server for one zone on 127.0.0.1, served by one thread."""

    def __init__(self, zone: str = DEFAULT_ZONE, *, ttl: int = 0) -> None:
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

    def start(self) -> int:
        """Bind UDP and TCP on 127.0.0.1 (one free port for both), start the thread; the port."""
        if self._thread is not None:
            raise RuntimeError("the DNS server is already started")
        self._udp, self._tcp = self._bind()
        self._port = self._udp.getsockname()[1]
        self._wake = socket.socketpair()
        for sock in (self._udp, self._tcp, *self._wake):
            sock.setblocking(False)
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
        for sock in (self._udp, self._tcp, *(self._wake or ())):
            if sock is not None:
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

    def _count(self, outcome: Outcome, name: str | None) -> None:
        with self._stats_lock:
            self._queries += 1
            self._by_outcome[outcome.value] = self._by_outcome.get(outcome.value, 0) + 1
            if name is not None:
                self._by_name[name] = self._by_name.get(name, 0) + 1

    def _serve(self) -> None:
        udp, tcp, wake = self._udp, self._tcp, self._wake
        assert udp is not None and tcp is not None and wake is not None
        clients: dict[int, _TcpClient] = {}
        with selectors.DefaultSelector() as selector:
            selector.register(udp, selectors.EVENT_READ, "udp")
            selector.register(tcp, selectors.EVENT_READ, "accept")
            selector.register(wake[0], selectors.EVENT_READ, "wake")
            try:
                while not self._stopping:
                    for key, events in selector.select(timeout=1.0):
                        if key.data == "udp":
                            self._read_udp(udp)
                        elif key.data == "accept":
                            self._accept(tcp, selector, clients)
                        elif key.data == "wake":
                            return
                        elif isinstance(key.fileobj, socket.socket):
                            self._tcp_event(key.fileobj, events, selector, clients)
                    self._reap_idle(selector, clients)
            finally:
                for client in clients.values():
                    client.sock.close()

    def _read_udp(self, udp: socket.socket) -> None:
        # Drain what is queued, but bounded, so that TCP clients are not starved.
        for _ in range(64):
            try:
                packet, peer = udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            response, outcome, name = answer_query(packet, self._table)
            self._count(outcome, name)
            if response is None:
                continue
            if len(response) > _UDP_MAX and len(response) > _udp_limit(packet):
                response = DNSRecord.parse(response).truncate().pack()
            try:
                udp.sendto(response, peer)
            except OSError:
                continue

    def _accept(
        self,
        tcp: socket.socket,
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
        clients[sock.fileno()] = _TcpClient(sock)
        selector.register(sock, selectors.EVENT_READ, "tcp")

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
                response, outcome, name = answer_query(packet, self._table)
                self._count(outcome, name)
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
            selector.modify(sock, wanted, "tcp")

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
