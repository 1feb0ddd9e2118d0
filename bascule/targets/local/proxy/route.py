"""A route of the fault plane: a listening port on 127.0.0.1, its upstreams (round robin), its fault
state and its counters; and the records the control surface lists routes with."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import (
    Degrade,
    EmbeddingMismatch,
    HttpError,
    Pass,
    ProxyFault,
    ProxyMode,
    Refuse,
    Throttle,
    TokenRate,
    in_force,
)
from bascule.targets.local.proxy.answers import new_answer_memory
from bascule.targets.local.proxy.framing import RequestHead, fault_response
from bascule.targets.local.proxy.relay import ClientSide
from bascule.targets.local.proxy.tokens import TokenBudget, token_answer

if TYPE_CHECKING:
    from bascule.targets.local.proxy.plane import FaultPlane

__all__ = ["LOOPBACK", "Route", "RouteInfo", "RouteStats", "Upstream"]

LOOPBACK: Final = "127.0.0.1"
_BACKLOG: Final = 1024

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a route relays to: an IP literal and a port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"upstream host must be an IP literal, got {self.host!r}") from None
        if not 0 < self.port < 65536:
            raise ValueError(f"upstream port out of range: {self.port!r}")


@dataclass(frozen=True, slots=True)
class RouteStats:
    """Counters of one route since it was added."""

    connections_accepted: int
    connections_open: int
    connections_reset: int
    upstream_connect_failures: int
    bytes_from_clients: int
    bytes_from_upstream: int
    bytes_dropped: int
    requests_faulted: int
    requests_rejected: int


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A route as the control surface lists it."""

    name: str
    port: int
    upstream: Upstream | None
    """The first upstream, or ``None`` while the route has none."""
    fault: ProxyFault
    stats: RouteStats
    upstreams: tuple[Upstream, ...] = ()


class Route:
    """A listening port, its upstream and its fault state (loop thread only)."""

    def __init__(
        self,
        plane: FaultPlane,
        loop: asyncio.AbstractEventLoop,
        *,
        name: str,
        upstreams: Sequence[Upstream],
        port: int,
        seed: int,
    ) -> None:
        self.plane = plane
        self.loop = loop
        self.name = name
        self.upstreams: tuple[Upstream, ...] = tuple(upstreams)
        self.turn = 0
        self.state: ProxyFault = Pass()
        self.acting: ProxyFault = self.state
        """What its connections carry out: `state`, or `Pass` while `state` strikes nothing."""
        self.rng = random.Random(seed)
        self.counted = 0
        """Requests (or connections) a counted state has met since it was set."""
        self.tokens: TokenBudget | None = None
        """The token budget while the route is in a `TokenRate` state (full when it was set)."""
        self.answers = new_answer_memory()
        self.conns: set[ClientSide] = set()
        self.closing = False
        self.connections_accepted = 0
        self.connections_open = 0
        self.connections_reset = 0
        self.upstream_connect_failures = 0
        self.bytes_from_clients = 0
        self.bytes_from_upstream = 0
        self.bytes_dropped = 0
        self.requests_faulted = 0
        self.requests_rejected = 0
        self.listener: socket.socket | None = None
        self.port = port
        self.listen()
        # Holds the port while `Refuse` has the listener closed, so that nothing else takes it
        # and the route can listen again on the same port. It never listens: the kernel refuses
        # connections to a port with no listener.
        self.holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.holder.bind((LOOPBACK, self.port))
        except OSError:
            self.holder.close()
            self.stop_listening()
            raise

    def listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((LOOPBACK, self.port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self.listener = sock
        self.loop.add_reader(sock.fileno(), self._accept)

    def stop_listening(self) -> None:
        if self.listener is not None:
            self.loop.remove_reader(self.listener.fileno())
            self.listener.close()
            self.listener = None

    def _accept(self) -> None:
        listener = self.listener
        if listener is None:
            return
        for _ in range(_BACKLOG):
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:
                _log.exception("route %s: accept failed", self.name)
                return
            self.connections_accepted += 1
            # asyncio only disables Nagle on sockets whose proto says TCP, which accept() does
            # not; left on, it holds the last bytes of a response for the client's delayed ACK.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.plane.spawn(self.loop.connect_accepted_socket(lambda: ClientSide(self), sock))

    def set_fault(self, state: ProxyFault) -> None:
        if isinstance(state, TokenRate):
            if state != self.state or self.tokens is None:
                self.tokens = TokenBudget(state.tokens_per_minute, on_spent=self.tokens_spent)
        else:
            self.tokens = None
        if isinstance(state, Degrade) and state != self.state:
            self.answers.clear()
        if state != self.state:
            self.counted = 0
        self.state = state
        self.acting = in_force(state)
        counted_refuse = isinstance(state, Refuse) and state.counted
        if state.mode is ProxyMode.REFUSE and not counted_refuse:
            self.stop_listening()
        elif self.listener is None:
            self.listen()
        if not state.new_connections_only and not counted_refuse:
            for conn in list(self.conns):
                conn.apply(self.acting)

    def tokens_spent(self) -> None:
        """The token budget is spent: its connections read each request again (to answer 429)."""
        for conn in list(self.conns):
            conn.refresh_fast()

    def answer(self, state: ProxyFault, head: RequestHead) -> bytes | None:
        """The answer a fault that reads requests (`state`, this route's) gives `head` itself, or
        None to relay the request."""
        if isinstance(state, EmbeddingMismatch):
            return None
        if isinstance(state, TokenRate):
            return None if self.tokens is None else token_answer(state, self.tokens, head)
        if isinstance(state, HttpError):
            struck = self.strikes(state.count, state.every, state.ratio)
        else:
            assert isinstance(state, Throttle)
            struck = self.rng.random() < state.ratio
        return fault_response(state, head, self.rng) if struck else None

    def strikes(self, count: int | None, every: int | None, ratio: float) -> bool:
        """Whether the next request (or connection) a fault state meets is faulted: the first
        `count`, every `every`-th, or a random `ratio` of them."""
        if count is None and every is None:
            return self.rng.random() < ratio
        self.counted += 1
        if count is not None:
            return self.counted <= count
        assert every is not None
        return self.counted % every == 0

    def close(self) -> None:
        self.closing = True
        self.stop_listening()
        self.holder.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.abort()
            if conn.up is not None:
                conn.up.abort()

    def stats(self) -> RouteStats:
        return RouteStats(
            connections_accepted=self.connections_accepted,
            connections_open=self.connections_open,
            connections_reset=self.connections_reset,
            upstream_connect_failures=self.upstream_connect_failures,
            bytes_from_clients=self.bytes_from_clients,
            bytes_from_upstream=self.bytes_from_upstream,
            bytes_dropped=self.bytes_dropped,
            requests_faulted=self.requests_faulted,
            requests_rejected=self.requests_rejected,
        )

    def info(self) -> RouteInfo:
        first = self.upstreams[0] if self.upstreams else None
        return RouteInfo(self.name, self.port, first, self.state, self.stats(), self.upstreams)

    def next_upstreams(self) -> list[Upstream]:
        """The upstreams in the order a new connection tries them (round robin)."""
        if not self.upstreams:
            return []
        start = self.turn % len(self.upstreams)
        self.turn += 1
        return [*self.upstreams[start:], *self.upstreams[:start]]
