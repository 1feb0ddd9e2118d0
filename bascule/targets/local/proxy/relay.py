"""The relay of one client connection: its fault state applied to the bytes in both directions
(everything here runs on the plane's loop). The hot path: in `Pass` the bytes go from one transport
to the other with no parsing and no call beyond the protocol callbacks — except once per HTTP
request, at its first bytes, where its trace id is read (`request_begins`) for the plane to record
its hop (`bascule.journal.RouteHop`), completed at the first byte of its answer; a connection whose
first bytes are not an HTTP/1.x request line is not looked at again. Under a fault on answers or
their bytes that reads no requests, requests take the same path (the shaper told where each
begins), and the answers go straight to the connection's shaper."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from typing import TYPE_CHECKING, Final, cast

from bascule.targets.local.answerstate import ANSWER_MODES
from bascule.targets.local.faultstate import (
    EmbeddingMismatch,
    Latency,
    LatencyPer,
    Pass,
    ProxyFault,
    ProxyMode,
    Refuse,
    TokenRate,
)
from bascule.targets.local.proxy.answers import Shaper
from bascule.targets.local.proxy.delay import DelayLine
from bascule.targets.local.proxy.embeddings import mismatch_request
from bascule.targets.local.proxy.framing import (
    HttpParseError,
    RequestReader,
    UnsupportedRequestError,
    render_response,
)
from bascule.targets.local.proxy.hops import HopRecorder, interim_only
from bascule.targets.local.proxy.shapers import shaper_for

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route, Upstream

__all__ = ["ClientSide"]

_RST_LINGER: Final = struct.pack("ii", 1, 0)
# The faults on answers and their bytes: their responses go through a `Shaper`, never the fast path.
_SHAPING: Final = ANSWER_MODES
_FORWARDING: Final = (
    frozenset({ProxyMode.PASS, ProxyMode.LATENCY, ProxyMode.HTTP_ERROR, ProxyMode.THROTTLE}) | _SHAPING
)
_HTTP_MODES: Final = frozenset(
    {ProxyMode.HTTP_ERROR, ProxyMode.THROTTLE, ProxyMode.TOKEN_RATE, ProxyMode.EMBEDDING_MISMATCH}
)
_RELAYING: Final = frozenset({ProxyMode.PASS, ProxyMode.LATENCY}) | (_SHAPING - {ProxyMode.TOKEN_RATE})
# The requests of these pass as they came, on the fast path: a shaper only learns where each begins.
_PLAIN_REQUESTS: Final = frozenset({ProxyMode.PASS}) | (_SHAPING - _HTTP_MODES)
# When every upstream refused before the client sent anything, how long the reset waits for its
# first bytes: an HTTP client sends its request at once, and the hop then names its trace.
_UNHEARD_RESET_S: Final = 0.25


class UpstreamSide(asyncio.Protocol):
    """The proxy's connection to the upstream; all decisions are its `ClientSide`'s."""

    __slots__ = ("_conn",)

    def __init__(self, conn: ClientSide) -> None:
        self._conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's transports are not subclasses of asyncio.Transport.
        self._conn.upstream_made(cast(asyncio.Transport, transport))

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        conn.route.bytes_from_upstream += len(data)
        answering = False  # after a 100 Continue or 103 Early Hints, the request goes on (its body)
        if conn.answered or not (data[9:10] == b"1" and interim_only(data)):
            conn.answered = True
            answering = conn.hop_started is not None
        now = time.monotonic() if answering else 0.0
        if not conn.down_fast:  # recorded first: a fault's shaper may end the connection
            if answering:
                conn.hop_answered(data, now)
            shaper = conn.down_shaper
            if shaper is not None:
                shaper.feed(data)
            else:
                conn.upstream_data(data)
            return
        client = conn.transport  # `write_client`, inline: this is every answer's path with no fault
        if client is not None and not conn.down_eof_sent and not client.is_closing():
            client.write(data)
        else:
            conn.write_client(data)
        if answering:  # on the fast path, once the bytes are on their way
            conn.hop_answered(data, now)

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


class ClientSide(HopRecorder, asyncio.Protocol):
    """One accepted client connection and the fault state that governs it."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.loop = route.loop
        self.state: ProxyFault = route.acting
        self.transport: asyncio.Transport | None = None
        self.up: asyncio.Transport | None = None
        self.connecting: asyncio.Task[object] | None = None
        self.pending_up: list[bytes | None] = []
        self.held_up: list[bytes] = []
        self.held_down: list[bytes] = []
        self.line: DelayLine | None = None
        self.shaper: Shaper | None = None
        self.next_shaper: Shaper | None = None
        """The shaper that takes over once the one leaving has seen its response to the end."""
        self.down_eof_sent = False
        self.parser: RequestReader | None = None
        self.http_raw = False
        self.up_fast = False
        self.down_fast = False
        self.down_shaper: Shaper | None = None
        """While the state forwards through a shaper: that shaper, which the upstream's bytes go to."""
        # True when the upstream spoke last (or nobody has yet): the next client bytes start a
        # new request. Latency charges and HTTP parsing both begin at such a boundary.
        self.answered = True
        self.latency_charged = False
        self.no_hop_yet(tracing=route.plane.hops is not None)
        self.holed = False
        """A blackhole dropped some of this connection's bytes: its stream cannot go on."""
        self.reached = False
        """An upstream accepted this connection: bytes relayed did get to a process."""
        self.heard = False
        """The client has sent bytes."""
        self.unheard_reset: asyncio.TimerHandle | None = None
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
        self.state = route.acting
        if isinstance(self.state, Refuse):
            state = self.state
            if not state.counted or route.strikes(state.count, state.every, 1.0):
                self.reset()
                return
            self.state = Pass()  # spared by a counted refuse: relayed as without a fault
        self.sync_reading()
        if self.state.mode in _SHAPING:
            self.shaper = shaper_for(self.state, self, route, synced=True)
        if self.state.mode in _FORWARDING:
            self.ensure_upstream()
        self.refresh_fast()

    def data_received(self, data: bytes) -> None:
        self.route.bytes_from_clients += len(data)
        self.heard = True
        if self.unheard_reset is not None:  # no upstream took it: record the request, then reset
            self.unheard_reset.cancel()
            self.unheard_reset = None
            if self.answered and self.tracing:
                self.request_begins(data)
            self.reset()
            return
        begins = self.answered and self.tracing
        if self.up_fast and self.up is not None:
            now = time.monotonic()
            if self.answered and self.shaper is not None and self.shaper.frames:
                self.shaper.request(data.startswith(b"HEAD "))
            self.answered = False
            self.up.write(data)
            if begins:  # recorded once the bytes are on their way (every mode here relays)
                self.trace_request(data, True, now)
        else:
            if begins:
                self.request_begins(data)
            self.client_data(data)

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.state.mode in _FORWARDING:
            if self.parser is not None and (rest := self.parser.take()):
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
        if self.unheard_reset is not None:
            self.unheard_reset.cancel()
            self.unheard_reset = None
        if self.hop_started is not None:
            self.hop_done(None, None)
        self.route.conns.discard(self)
        self.route.connections_open -= 1
        if self.line is not None:
            self.line.cancel()
        if self.shaper is not None:
            self.shaper.cancel()
        if self.next_shaper is not None:
            self.next_shaper.cancel()
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
        # An open connection may be mid-answer: a new shaper starts at its next request.
        self.set_shaper(shaper_for(state, self, self.route, synced=False) if mode in _SHAPING else None)
        self.sync_reading()
        if mode in _FORWARDING and (self.up_gone or self.holed):
            # The upstream closed while the fault hid it, or a blackhole dropped bytes the stream
            # needs (TCP would have sent them again): its client finds the connection dead.
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

    def set_shaper(self, shaper: Shaper | None) -> None:
        old = self.shaper
        if old is not None and not old.release():
            self.next_shaper = shaper  # the old one re-framed the answer under way: it ends it
            return
        self.shaper = shaper

    def shaper_done(self) -> None:
        """The leaving shaper has passed the answer it was in to its end."""
        self.shaper, self.next_shaper = self.next_shaper, None
        self.refresh_fast()

    def refresh_fast(self) -> None:
        mode = self.state.mode
        forwards = mode in _FORWARDING and self.transport is not None
        self.down_fast = forwards and self.shaper is None
        self.down_shaper = self.shaper if forwards else None
        self.up_fast = (
            (mode in _PLAIN_REQUESTS or (mode is ProxyMode.TOKEN_RATE and self.tokens_left()))
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
            self.holed = True
        elif mode is ProxyMode.HANG:
            self.held_up.append(data)
        elif mode is ProxyMode.LATENCY:
            self.delay(data)
        elif mode is ProxyMode.REFUSE:
            self.reset()
        elif mode in _HTTP_MODES:
            self.http_data(data)
        else:
            shaper = self.shaper
            if self.answered and shaper is not None:
                shaper.request(data.startswith(b"HEAD "))
            self.answered = False
            self.forward(data)

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
            self.line = DelayLine(self.loop, self.emit_up, self.refresh_fast)
        # Counted from now on the monotonic clock, which the hop's times are read on: the loop's own
        # clock (uvloop's: in whole milliseconds, read once a turn) lags it, and a delay counted
        # from it ended up to a millisecond short of `fixed`. Released once the loop's clock is past
        # that point, a request is never held less than its delay.
        self.line.push(data, time.monotonic() + wait if wait else self.loop.time())

    def http_data(self, data: bytes) -> None:
        if self.http_raw:
            self.answered = False
            self.forward(data)
            return
        if self.answered and isinstance(self.state, TokenRate) and self.unread(data):
            return
        if self.parser is None:
            if not self.answered:
                # Mid-request when the fault arrived: the rest of it passes, and parsing starts
                # at the next request.
                self.forward(data)
                return
            self.parser = RequestReader()
        self.parser.feed(data)
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
                if (go_ahead := self.parser.continue_answer()) is not None:
                    self.write_client(go_ahead)
                return
            raw, head = request
            answer = self.route.answer(self.state, head)
            if answer is not None:
                self.route.requests_faulted += 1
                if self.tracing:
                    self.hop_faulted(head.header("traceparent"), answer)
                self.write_client(answer)
                if not head.keep_alive:
                    self.close()
            else:
                if self.tracing:
                    self.hop_begins(head.header("traceparent"), relayed=True)
                if self.shaper is not None:
                    self.shaper.request(head.method == "HEAD")
                self.answered = False
                if isinstance(self.state, EmbeddingMismatch):
                    raw = mismatch_request(raw, head, self.state) or raw
                self.forward(raw)

    def unread(self, data: bytes) -> bool:
        """A request under `TokenRate` while its budget has tokens left passes unread, as with no
        fault (its hop recorded from its first bytes): only its answer is shaped, and the next
        requests take the fast path (`tokens_left`) until the budget is spent (`Route.tokens_spent`).
        Once it is, requests are read whole again, to be answered 429."""
        if not self.tokens_left():
            return False
        self.parser = None
        if self.tracing:
            self.trace_request(data, True)
        if self.shaper is not None:
            self.shaper.request(data.startswith(b"HEAD "))
        self.answered = False
        self.forward(data)
        self.refresh_fast()
        return True

    def tokens_left(self) -> bool:
        """Under `TokenRate`: the budget has a token left, and no request is partly read."""
        budget = self.route.tokens
        return (
            budget is not None
            and budget.wait() <= 0.0
            and not self.http_raw
            and (self.parser is None or not self.parser.buffered)
        )

    # -- the hops of HTTP requests --

    def request_begins(self, data: bytes, at: float | None = None) -> None:
        """The first bytes of a request outside the HTTP fault modes (which parse whole requests
        and record their hops themselves)."""
        mode = self.state.mode
        if mode not in _HTTP_MODES:
            self.trace_request(data, mode in _RELAYING, at)

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
                        lambda: UpstreamSide(self), upstream.host, upstream.port
                    )
                    return
                except OSError:
                    self.route.upstream_connect_failures += 1
                if self.closed:
                    return
            if self.closed:
                return
            if self.heard or not self.tracing:
                self.reset()
            else:
                self.unheard_reset = self.loop.call_later(_UNHEARD_RESET_S, self.reset)
        finally:
            self.connecting = None

    def upstream_made(self, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.abort()
            return
        self.up = transport
        self.reached = True
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
            if self.shaper is not None:
                self.shaper.feed(data)
            else:
                self.write_client(data)
        else:
            self.route.bytes_dropped += len(data)
            self.holed = True

    def upstream_eof(self) -> None:
        self.up_eof = True
        if self.state.mode in _FORWARDING:
            if self.shaper is not None:
                self.shaper.eof()
            else:
                self.finish_eof()

    def finish_eof(self) -> None:
        """Pass the upstream's end of stream on to the client."""
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
