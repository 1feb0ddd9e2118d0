"""The local target's fault proxy: one asyncio TCP relay per route, faults switchable at run time.

Every hop between two components of the local stack goes through a route of a `FaultPlane`:
clients connect to `127.0.0.1:<route port>` and the plane relays to the route's upstream. All
routes share one event loop in a thread the plane owns; the rest of bascule drives it from
ordinary synchronous code:

    plane = FaultPlane()
    plane.start()
    port = plane.add_route("eu/llm", Upstream("127.0.0.1", 8001))
    plane.set_fault("eu/llm", Throttle(retry_after=2))   # in force when it returns
    plane.clear_fault("eu/llm")
    plane.stop()

The relay is built on `asyncio.Protocol` rather than streams because a relay's cost is its
per-chunk overhead: in `Pass` the bytes go from one transport to the other with no parsing.
A state change is applied on the loop in one step (every connection of the route is updated
before another callback runs), and `set_fault` returns once it has been applied, so the next
request already sees it — the switch takes one loop wake-up, far below the 10 ms budget.

How each state acts (see `faultstate` for the values):

- `Refuse` closes the route's listening socket, so new connections get ECONNREFUSED from the
  kernel; a second socket bound to the same port with SO_REUSEPORT (never listening) keeps the
  port reserved until the route listens again. Open connections are reset (RST) unless
  `new_connections_only`.
- `Blackhole` accepts and reads, and drops bytes in both directions; `Hang` stops reading on both
  sides and lets bytes wait in kernel buffers until the fault ends.
- `Latency` delays client→upstream bytes through an order-preserving delay line.
- `HttpError` and `Throttle` read whole HTTP/1.x requests (head and Content-Length body) and
  answer a ratio of them locally. A connection that was mid-request when the fault arrived is
  parsed from its next request on; bytes that are not HTTP/1.x pass untouched; requests with a
  chunked body are answered 501 and the connection is closed. Clients are assumed not to
  pipeline requests, as no mainstream HTTP/1.1 client does.

Nothing here listens on anything but 127.0.0.1. Upstreams are IP literals, so connecting never
waits on a resolver thread; name resolution and its faults belong to `dns.DnsServer`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import ipaddress
import json
import logging
import os
import random
import re
import socket
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar, cast

from bascule.errors import TargetError
from bascule.targets.local.faultstate import (
    HttpError,
    Latency,
    LatencyPer,
    Pass,
    ProxyFault,
    ProxyMode,
    Throttle,
)

__all__ = [
    "LOOPBACK",
    "FaultPlane",
    "HttpParseError",
    "LoopThread",
    "RequestHead",
    "RouteInfo",
    "RouteStats",
    "UnsupportedRequestError",
    "Upstream",
    "parse_request_head",
    "render_response",
]

LOOPBACK: Final = "127.0.0.1"
_BACKLOG: Final = 1024
_MAX_HEAD: Final = 64 * 1024
_CONTROL_TIMEOUT: Final = 5.0
_RST_LINGER: Final = struct.pack("ii", 1, 0)
_FORWARDING: Final = frozenset({ProxyMode.PASS, ProxyMode.LATENCY, ProxyMode.HTTP_ERROR, ProxyMode.THROTTLE})
_HTTP_MODES: Final = frozenset({ProxyMode.HTTP_ERROR, ProxyMode.THROTTLE})

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


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


# --- HTTP/1.x framing: pure helpers, shared with the control channel -----------------------------


class HttpParseError(ValueError):
    """The bytes are not an HTTP/1.x request head."""


class UnsupportedRequestError(ValueError):
    """An HTTP request this proxy cannot frame (a chunked or otherwise encoded body)."""


_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (\S+) HTTP/(1\.[01])")
_METHOD_PREFIX = re.compile(rb"[A-Z]{0,16}\Z|[A-Z]{1,16} ")


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and headers (header names lower-cased, in order)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The last value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key == wanted:
                found = value
        return found

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to stay open after the response."""
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def body_length(self) -> int:
        """Bytes of body after the head; raises `UnsupportedRequestError` for encoded bodies."""
        if self.header("transfer-encoding") is not None:
            raise UnsupportedRequestError(
                "request bodies with Transfer-Encoding (chunked) are not supported by bascule's "
                "HTTP-aware fault proxy; send a Content-Length body"
            )
        lengths = {v.strip() for k, v in self.headers if k == "content-length"}
        if not lengths:
            return 0
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise HttpParseError(f"invalid Content-Length: {sorted(lengths)!r}")
        return int(next(iter(lengths)))


def parse_request_head(head: bytes) -> RequestHead:
    """Parse an HTTP/1.x request head (request line and headers, without the final blank line)."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HttpParseError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise HttpParseError(f"malformed header line: {line[:80]!r}")
        headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    method, target, version = (g.decode("ascii") for g in match.groups())
    return RequestHead(method, target, version, tuple(headers))


def render_response(
    status: int,
    body: bytes,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    content_type: str = "application/json",
    keep_alive: bool = True,
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with a Content-Length body."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"content-type: {content_type}",
        f"content-length: {len(body)}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


class _RequestReader:
    """Cuts a client byte stream into whole requests (head + Content-Length body)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def take(self) -> bytes:
        """Everything buffered and not yet returned as a request."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def next_request(self) -> tuple[bytes, RequestHead] | None:
        """The next whole request (raw bytes and head), or None until more bytes arrive."""
        if _METHOD_PREFIX.match(self._buf[:17]) is None:
            raise HttpParseError("the stream does not start with an HTTP method")
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise HttpParseError("no end of request head within 64 KiB")
            return None
        head = parse_request_head(bytes(self._buf[:end]))
        total = end + 4 + head.body_length
        if len(self._buf) < total:
            return None
        raw = bytes(self._buf[:total])
        del self._buf[:total]
        return raw, head


def _fault_response(state: HttpError | Throttle, head: RequestHead, rng: random.Random) -> bytes:
    head_only = head.method == "HEAD"
    if isinstance(state, Throttle):
        return render_response(
            429,
            state.body_bytes,
            headers=(
                ("retry-after", state.retry_after_header),
                *state.headers,
                ("x-bascule-fault", "throttle"),
            ),
            content_type=state.content_type,
            keep_alive=head.keep_alive,
            head_only=head_only,
        )
    status = rng.choice(state.statuses)
    body = json.dumps(
        {
            "object": "error",
            "message": f"HTTP {status} injected by bascule",
            "type": "bascule_fault",
            "code": str(status),
        },
        separators=(",", ":"),
    ).encode()
    return render_response(
        status,
        body,
        headers=(("x-bascule-fault", "http_error"),),
        keep_alive=head.keep_alive,
        head_only=head_only,
    )


# --- the relay (everything below runs on the plane's loop) ---------------------------------------


class _DelayLine:
    """Releases chunks to a sink at given times, never out of order (None stands for EOF)."""

    __slots__ = ("_items", "_loop", "_on_idle", "_sink", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sink: Callable[[bytes | None], None],
        on_idle: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._sink = sink
        self._on_idle = on_idle
        self._items: deque[tuple[float, bytes | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        return bool(self._items)

    def push(self, data: bytes | None, release_at: float) -> None:
        if self._items:
            release_at = max(release_at, self._items[-1][0])
        elif release_at <= self._loop.time():
            self._sink(data)
            return
        self._items.append((release_at, data))
        if self._timer is None:
            self._timer = self._loop.call_at(self._items[0][0], self._release)

    def cancel(self) -> None:
        self._items.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._items and self._items[0][0] <= now:
            self._sink(self._items.popleft()[1])
        if self._items:
            self._timer = self._loop.call_at(self._items[0][0], self._release)
        else:
            self._on_idle()


class _UpstreamSide(asyncio.Protocol):
    """The proxy's connection to the upstream; all decisions are its `_ClientSide`'s."""

    __slots__ = ("_conn",)

    def __init__(self, conn: _ClientSide) -> None:
        self._conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not subclasses of asyncio.Transport.
        self._conn.upstream_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        conn.route.bytes_from_upstream += len(data)
        conn.answered = True
        if conn.down_fast:
            conn.write_client(data)
        else:
            conn.upstream_data(data)

    def eof_received(self) -> bool:
        self._conn.upstream_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._conn.upstream_lost()

    def pause_writing(self) -> None:
        self._conn.upstream_full = True
        self._conn.sync_reading()

    def resume_writing(self) -> None:
        self._conn.upstream_full = False
        self._conn.sync_reading()


class _ClientSide(asyncio.Protocol):
    """One accepted client connection and the fault state that governs it."""

    def __init__(self, route: _Route) -> None:
        self.route = route
        self.loop = route.loop
        self.state: ProxyFault = route.state
        self.transport: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        self.connecting: asyncio.Task[object] | None = None
        self.pending_up: list[bytes | None] = []
        self.held_up: list[bytes] = []
        self.held_down: list[bytes] = []
        self.line: _DelayLine | None = None
        self.down_eof_sent = False
        self.parser: _RequestReader | None = None
        self.http_raw = False
        self.up_fast = False
        self.down_fast = False
        # True when the upstream spoke last (or nobody has yet): the next client bytes start a
        # new request. Latency charges and HTTP parsing both begin at such a boundary.
        self.answered = True
        self.latency_charged = False
        self.upstream_full = False
        self.client_full = False
        self.client_eof = False
        self.up_eof = False
        self.up_gone = False
        self.closed = False

    # -- client transport callbacks --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.transport = transport
        route = self.route
        if route.closing:
            transport.abort()
            return
        route.conns.add(self)
        route.connections_open += 1
        # The route's state now, not at accept(): a fault set in between must reach this
        # connection, since it was not open when the fault was set.
        self.state = route.state
        if self.state.mode is ProxyMode.REFUSE:
            self.reset()
            return
        self.sync_reading()
        if self.state.mode in _FORWARDING:
            self.ensure_upstream()
        self.refresh_fast()

    def data_received(self, data: bytes) -> None:
        self.route.bytes_from_clients += len(data)
        up = self.up
        if self.up_fast and up is not None:
            self.answered = False
            up.write(data)
        else:
            self.client_data(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.state.mode in _FORWARDING:
            if self.parser is not None:
                rest = self.parser.take()
                if rest:
                    self.forward(rest)
            self.forward(None)
        else:
            self.close()
        if self.up_eof:
            self.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.route.conns.discard(self)
        self.route.connections_open -= 1
        if self.line is not None:
            self.line.cancel()
        if self.connecting is not None:
            self.connecting.cancel()
        if self.up is not None:
            self.up.close()

    def pause_writing(self) -> None:
        self.client_full = True
        self.sync_reading()

    def resume_writing(self) -> None:
        self.client_full = False
        self.sync_reading()

    # -- state --

    def apply(self, state: ProxyFault) -> None:
        old = self.state
        if state == old:
            return
        self.state = state
        mode = state.mode
        if mode is ProxyMode.REFUSE:
            self.reset()
            return
        if old.mode in _HTTP_MODES and mode not in _HTTP_MODES and self.parser is not None:
            rest = self.parser.take()
            self.parser = None
            self.http_raw = False
            if rest:
                self.forward(rest)
        if mode is ProxyMode.LATENCY:
            self.latency_charged = False
        self.sync_reading()
        if mode in _FORWARDING and self.up_gone:
            # The upstream closed while the fault hid it; a client would find its connection
            # dead once the network healed.
            self.reset()
            return
        if old.mode is ProxyMode.HANG and mode is not ProxyMode.HANG:
            held_up, self.held_up = self.held_up, []
            held_down, self.held_down = self.held_down, []
            for chunk in held_down:
                self.upstream_data(chunk)
            for chunk in held_up:
                self.client_data(chunk)
        if mode in _FORWARDING:
            self.ensure_upstream()
        self.refresh_fast()

    def refresh_fast(self) -> None:
        mode = self.state.mode
        self.down_fast = mode in _FORWARDING and self.transport is not None
        self.up_fast = (
            mode is ProxyMode.PASS
            and self.up is not None
            and not self.pending_up
            and (self.line is None or not self.line.busy)
        )

    def sync_reading(self) -> None:
        hang = self.state.mode is ProxyMode.HANG
        if self.transport is not None:
            if hang or self.upstream_full:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
        if self.up is not None:
            if hang or self.client_full:
                self.up.pause_reading()
            else:
                self.up.resume_reading()

    # -- client → upstream --

    def client_data(self, data: bytes) -> None:
        mode = self.state.mode
        if mode is ProxyMode.PASS:
            self.answered = False
            self.forward(data)
        elif mode is ProxyMode.BLACKHOLE:
            self.route.bytes_dropped += len(data)
        elif mode is ProxyMode.HANG:
            self.held_up.append(data)
        elif mode is ProxyMode.LATENCY:
            self.delay(data)
        elif mode is ProxyMode.REFUSE:
            self.reset()
        else:
            self.http_data(data)

    def delay(self, data: bytes) -> None:
        state = self.state
        assert isinstance(state, Latency)
        wait = 0.0
        if self.answered and (state.per is LatencyPer.REQUEST or not self.latency_charged):
            wait = state.fixed
            if state.jitter:
                wait += self.route.rng.uniform(0.0, state.jitter)
            self.latency_charged = True
        self.answered = False
        if self.line is None:
            self.line = _DelayLine(self.loop, self.emit_up, self.refresh_fast)
        self.line.push(data, self.loop.time() + wait)

    def http_data(self, data: bytes) -> None:
        if self.http_raw:
            self.answered = False
            self.forward(data)
            return
        if self.parser is None:
            if not self.answered:
                # Mid-request when the fault arrived: the rest of it passes, and parsing starts
                # at the next request.
                self.forward(data)
                return
            self.parser = _RequestReader()
        self.parser.feed(data)
        state = self.state
        assert isinstance(state, HttpError | Throttle)
        while not self.closed:
            try:
                request = self.parser.next_request()
            except UnsupportedRequestError as exc:
                self.route.requests_rejected += 1
                self.write_client(
                    render_response(
                        501,
                        str(exc).encode(),
                        content_type="text/plain; charset=utf-8",
                        headers=(("x-bascule-fault", "unsupported"),),
                        keep_alive=False,
                    )
                )
                self.close()
                return
            except HttpParseError:
                self.http_raw = True
                self.answered = False
                self.forward(self.parser.take())
                return
            if request is None:
                return
            raw, head = request
            if self.route.rng.random() < state.ratio:
                self.route.requests_faulted += 1
                self.write_client(_fault_response(state, head, self.route.rng))
                if not head.keep_alive:
                    self.close()
            else:
                self.answered = False
                self.forward(raw)

    def forward(self, data: bytes | None) -> None:
        if self.line is not None and self.line.busy:
            self.line.push(data, 0.0)
        else:
            self.emit_up(data)

    def emit_up(self, data: bytes | None) -> None:
        up = self.up
        if up is None or self.pending_up:
            self.pending_up.append(data)
            self.ensure_upstream()
        elif data is None:
            if up.can_write_eof():
                up.write_eof()
        else:
            up.write(data)

    def ensure_upstream(self) -> None:
        if self.up is not None or self.connecting is not None or self.closed or self.up_gone:
            return
        self.connecting = self.route.plane.spawn(self._connect(self.route.next_upstreams()))

    async def _connect(self, candidates: list[Upstream]) -> None:
        # Like a load balancer's target group: each new connection goes to the next replica, and
        # a replica that refuses (crashed, restarting) is skipped for the next one.
        try:
            for upstream in candidates:
                try:
                    await self.loop.create_connection(
                        lambda: _UpstreamSide(self), upstream.host, upstream.port
                    )
                    return
                except OSError:
                    self.route.upstream_connect_failures += 1
                if self.closed:
                    return
            if not self.closed:
                self.reset()
        finally:
            self.connecting = None

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.abort()
            return
        self.up = transport
        pending, self.pending_up = self.pending_up, []
        for data in pending:
            self.emit_up(data)
        self.sync_reading()
        self.refresh_fast()

    # -- upstream → client --

    def upstream_data(self, data: bytes) -> None:
        mode = self.state.mode
        if mode is ProxyMode.HANG:
            self.held_down.append(data)
        elif mode in _FORWARDING:
            self.write_client(data)
        else:
            self.route.bytes_dropped += len(data)

    def upstream_eof(self) -> None:
        self.up_eof = True
        if self.state.mode in _FORWARDING:
            if self.transport is not None and self.transport.can_write_eof():
                self.transport.write_eof()
                self.down_eof_sent = True
            if self.client_eof:
                self.close()

    def upstream_lost(self) -> None:
        self.up = None
        self.up_fast = False
        if self.closed:
            return
        if self.state.mode in _FORWARDING:
            self.close()
        else:
            self.up_gone = True

    def write_client(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.down_eof_sent or transport.is_closing():
            # The client side is already half-closed (the upstream ended it) or closing: a fault's
            # answer to a request sent meanwhile cannot reach it; the client sees the close instead.
            self.route.bytes_dropped += len(data)
            return
        transport.write(data)

    # -- ending --

    def close(self) -> None:
        """Close both sides after flushing what is already written."""
        if self.transport is not None:
            self.transport.close()
        if self.up is not None:
            self.up.close()

    def reset(self) -> None:
        """Reset the client connection (RST) and drop the upstream one."""
        self.route.connections_reset += 1
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
            self.transport.abort()
        if self.up is not None:
            self.up.abort()


class _Route:
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
        self.rng = random.Random(seed)
        self.conns: set[_ClientSide] = set()
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
            self.plane.spawn(self.loop.connect_accepted_socket(lambda: _ClientSide(self), sock))

    def set_fault(self, state: ProxyFault) -> None:
        self.state = state
        if state.mode is ProxyMode.REFUSE:
            self.stop_listening()
        elif self.listener is None:
            self.listen()
        if not state.new_connections_only:
            for conn in list(self.conns):
                conn.apply(state)

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


EVENT_LOOP_ENV: Final = "BASCULE_EVENT_LOOP"
"""``asyncio`` forces the standard library's event loop even where uvloop is installed."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed — a relayed request costs about half as much CPU in
    it — unless ``BASCULE_EVENT_LOOP=asyncio``; the standard library's otherwise."""
    if os.environ.get(EVENT_LOOP_ENV, "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """An asyncio event loop running in a daemon thread, driven from other threads.

    `call` runs a function on the loop and returns its result; from the loop's own thread it
    runs inline. `stop` runs an optional shutdown coroutine on the loop, then ends the thread.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise TargetError(f"{self._name} is not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already started")
        loop = new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
        self._loop = loop
        self._thread = thread
        thread.start()
        if not ready.wait(_CONTROL_TIMEOUT):
            raise RuntimeError(f"{self._name}: the event loop did not start")

    def stop(self, shutdown: Callable[[], Coroutine[object, object, None]] | None = None) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            try:
                if shutdown is not None:
                    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_CONTROL_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_CONTROL_TIMEOUT)
        self._loop = None
        self._thread = None

    def call(self, fn: Callable[[], _T]) -> _T:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            raise TargetError(f"{self._name} is not running")
        if threading.get_ident() == thread.ident:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(_CONTROL_TIMEOUT)

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


class FaultPlane:
    """Named fault-proxy routes sharing one event loop in a thread of their own.

    Every public method is thread-safe and returns once the loop has carried it out; called from
    the plane's own loop (a callback on it), it runs inline.
    """

    def __init__(self) -> None:
        self._thread = LoopThread("bascule-faultplane")
        self._routes: dict[str, _Route] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    def __enter__(self) -> FaultPlane:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread.running

    def start(self) -> None:
        """Start the plane's thread and loop."""
        self._thread.start()

    def stop(self) -> None:
        """Close every route and connection, then stop the loop and join its thread."""
        self._thread.stop(self._shutdown)

    def add_route(
        self, name: str, upstream: Upstream | Sequence[Upstream], *, port: int = 0, seed: int | None = None
    ) -> int:
        """Listen on 127.0.0.1:`port` (0: any free port) and relay to `upstream` — or to several,
        one new connection after the other; returns the port. With no upstream, connections are
        accepted and reset, like a load balancer without healthy targets.

        `seed` seeds the route's random draws (jitter, error ratios); it defaults to a hash of
        the name, so that a run is reproducible.
        """
        route_seed = zlib.crc32(name.encode()) if seed is None else seed

        def add() -> int:
            if name in self._routes:
                raise ValueError(f"route {name!r} exists already")
            upstreams = [upstream] if isinstance(upstream, Upstream) else list(upstream)
            route = _Route(
                self, self._thread.loop, name=name, upstreams=upstreams, port=port, seed=route_seed
            )
            self._routes[name] = route
            return route.port

        return self._thread.call(add)

    def remove_route(self, name: str) -> None:
        """Stop listening and close the route's connections."""

        def remove() -> None:
            self._route(name).close()
            del self._routes[name]

        self._thread.call(remove)

    def set_upstream(self, name: str, host: str, port: int) -> None:
        """Relay the route's new connections to `host:port`; open connections keep theirs."""
        upstream = Upstream(host, port)

        self.set_upstreams(name, [upstream])

    def set_upstreams(self, name: str, upstreams: Sequence[Upstream]) -> None:
        """Spread the route's new connections over `upstreams`; open connections keep theirs."""
        chosen = tuple(upstreams)

        def set_upstreams() -> None:
            self._route(name).upstreams = chosen

        self._thread.call(set_upstreams)

    def set_fault(self, name: str, state: ProxyFault) -> None:
        """Put route `name` in `state`; in force for the next bytes and connections on return."""
        self._thread.call(lambda: self._route(name).set_fault(state))

    def set_faults(self, states: Mapping[str, ProxyFault]) -> None:
        """Put several routes in their states in one step of the loop: no connection sees some of
        them changed and others not. Unknown names raise `KeyError` before anything changes."""
        chosen = dict(states)

        def set_all() -> None:
            routes = [(self._route(name), state) for name, state in chosen.items()]
            for route, state in routes:
                route.set_fault(state)

        self._thread.call(set_all)

    def clear_fault(self, name: str) -> None:
        """Back to `Pass` for every connection of the route."""
        self.set_fault(name, Pass())

    def fault(self, name: str) -> ProxyFault:
        """The route's current state."""
        return self._thread.call(lambda: self._route(name).state)

    def port(self, name: str) -> int:
        """The route's listening port."""
        return self._thread.call(lambda: self._route(name).port)

    def stats(self, name: str) -> RouteStats:
        """The route's counters."""
        return self._thread.call(lambda: self._route(name).stats())

    def routes(self) -> dict[str, RouteInfo]:
        """Every route with its port, upstream, state and counters."""
        return self._thread.call(lambda: {name: r.info() for name, r in self._routes.items()})

    # -- internals --

    def spawn(self, coro: Coroutine[object, object, object]) -> asyncio.Task[object]:
        """Run `coro` on the loop as a task that `stop` cancels (loop thread only)."""
        task = self._thread.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        # A client that resets before its transport is set up fails connect_accepted_socket;
        # that is the client's business, not an error of the plane.
        if not task.cancelled() and task.exception() is not None:
            _log.debug("route task ended with %r", task.exception())

    def _route(self, name: str) -> _Route:
        try:
            return self._routes[name]
        except KeyError:
            raise KeyError(f"no route named {name!r}") from None

    async def _shutdown(self) -> None:
        for route in self._routes.values():
            route.close()
        self._routes.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Let the aborted transports deliver connection_lost before the loop stops.
        for _ in range(3):
            await asyncio.sleep(0)
