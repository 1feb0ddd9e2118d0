"""The local target's egress: where a started service's requests to hosts outside the design end.

Every own service (a design component with ``command:``) is started with ``HTTP_PROXY`` and
``HTTPS_PROXY`` (and their lower-case spellings) naming a listener of its own here on 127.0.0.1,
and ``NO_PROXY`` covering loopback and the stack's own zone (`proxy_environment`). A client that
honours those variables (urllib, requests, httpx, curl, Go's net/http…) then sends every request to
a host the design does not declare here instead of to the internet. The egress relays nothing:

- a plain HTTP request (``GET http://sts.amazonaws.com/… HTTP/1.1``) is read — host, port, method,
  path without its query, the W3C trace id of its ``traceparent`` — recorded, and answered
  ``502 Bad Gateway`` with a body saying that bascule does not relay outside the run;
- a ``CONNECT host:443`` (HTTPS) is recorded with its host and refused with the same 502: what the
  tunnel would have carried, trace context included, is not seen.

Each listener belongs to one replica, so a record names the replica (and region) that asked. The
records wait in a bounded queue for `Egress.take` (the runner takes them a few times a second);
beyond `KEPT`, the oldest are dropped and counted per host. A client that ignores the proxy
variables (or a raw socket) is not seen this way; the stack's DNS server is the other witness.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from typing import Final
from urllib.parse import urlsplit

from bascule.journal.discovered import OutsideReach, ReachVia
from bascule.model.names import ZONE
from bascule.targets.local.proxy.framing import HttpParseError, parse_request_head, render_response
from bascule.targets.local.proxy.loop import LoopThread
from bascule.tracecontext import parse_traceparent

__all__ = ["KEPT", "NO_PROXY", "Egress", "proxy_environment"]

KEPT: Final = 100_000
"""Records held between two `take` calls."""

NO_PROXY: Final = ",".join(["127.0.0.1", "localhost", "::1", ZONE, f".{ZONE}"])
"""What services reach directly: loopback (their fault routes) and the stack's own names."""

_HEAD_LIMIT: Final = 64 * 1024
_BODY_LIMIT: Final = 1024 * 1024
"""A request body up to this size is read (and dropped) before the answer; a larger one is not,
and the connection is closed after the answer."""
_IDLE: Final = 30.0


def proxy_environment(port: int) -> dict[str, str]:
    """The environment that sends a service's outside requests to the egress listener at `port`."""
    url = f"http://127.0.0.1:{port}"
    return {
        "HTTP_PROXY": url,
        "http_proxy": url,
        "HTTPS_PROXY": url,
        "https_proxy": url,
        "NO_PROXY": NO_PROXY,
        "no_proxy": NO_PROXY,
    }


def _refusal(host: str) -> bytes:
    return (
        f"bascule does not relay requests outside the run: {host} is not part of the design; the "
        "request was recorded as a discovered dependency and not sent.\n"
    ).encode()


class Egress:
    """One listener per asking replica on 127.0.0.1, sharing a loop in a thread of their own."""

    def __init__(self, *, kept: int = KEPT) -> None:
        self._thread = LoopThread("bascule-egress")
        self._servers: dict[str, asyncio.Server] = {}
        self._ports: dict[str, int] = {}
        self._open: set[asyncio.StreamWriter] = set()
        self._kept = kept
        # Appended on the loop, taken from another thread: deque's append and popleft are atomic.
        self._reaches: deque[OutsideReach] = deque()
        self.dropped: Counter[str] = Counter()
        """Host → records dropped because `take` was not called in time."""

    @property
    def ports(self) -> dict[str, int]:
        """Asker → its listener's port."""
        return dict(self._ports)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Close every listener and connection, then stop the loop."""
        self._thread.stop(self._shutdown)

    def listen(self, asker: str, region: str | None = None) -> int:
        """A listener for `asker` (a replica name) on a free port of 127.0.0.1; its port. Calling it
        again for the same asker returns the same port."""
        if asker in self._ports:
            return self._ports[asker]

        async def serve() -> int:
            server = await asyncio.start_server(
                lambda r, w: self._serve(r, w, asker, region), "127.0.0.1", 0, limit=_HEAD_LIMIT
            )
            self._servers[asker] = server
            port: int = server.sockets[0].getsockname()[1]
            return port

        port = asyncio.run_coroutine_threadsafe(serve(), self._thread.loop).result(5.0)
        self._ports[asker] = port
        return port

    def take(self) -> list[OutsideReach]:
        """What was recorded since the last call, oldest first."""
        taken: list[OutsideReach] = []
        while True:
            try:
                taken.append(self._reaches.popleft())
            except IndexError:
                return taken

    # -- the loop's side --

    def _record(self, reach: OutsideReach) -> None:
        if len(self._reaches) >= self._kept:
            self.dropped[self._reaches.popleft().host] += 1
        self._reaches.append(reach)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, asker: str, region: str | None
    ) -> None:
        self._open.add(writer)
        try:
            while await self._one(reader, writer, asker, region):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, asker: str, region: str | None
    ) -> bool:
        """Answer one request; whether the connection may carry another."""
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _IDLE)
        started = time.monotonic()
        try:
            head = parse_request_head(raw[:-4])
        except HttpParseError:
            writer.write(render_response(400, b"not an HTTP/1.x request\n", keep_alive=False))
            await writer.drain()
            return False
        if head.method == "CONNECT":
            host, _, port = head.target.rpartition(":")
            host = host.strip("[]") or head.target
            self._record(
                OutsideReach(
                    host.lower(),
                    ReachVia.CONNECT,
                    started,
                    asker=asker,
                    region=region,
                    port=int(port) if port.isdigit() else None,
                    method="CONNECT",
                    outcome="502",
                )
            )
            writer.write(render_response(502, _refusal(host), content_type="text/plain", keep_alive=False))
            await writer.drain()
            return False
        parts = urlsplit(head.target)
        host = parts.hostname or (head.header("host") or "").rpartition(":")[0] or head.header("host") or ""
        try:
            port_told = parts.port
        except ValueError:
            port_told = None
        keep = head.keep_alive
        try:
            length = head.body_length
        except (HttpParseError, ValueError):
            length, keep = _BODY_LIMIT + 1, False
        if (head.header("expect") or "").lower() == "100-continue":
            keep = False  # the client waits for a go-ahead before its body: it never gets one
        elif length <= _BODY_LIMIT:
            await asyncio.wait_for(reader.readexactly(length), _IDLE)
        else:
            keep = False
        self._record(
            OutsideReach(
                host.lower(),
                ReachVia.HTTP,
                started,
                trace_id=parse_traceparent(head.header("traceparent")),
                asker=asker,
                region=region,
                port=port_told or (443 if parts.scheme == "https" else 80),
                method=head.method,
                path=parts.path or "/",
                outcome="502",
            )
        )
        body = _refusal(host or "the host")
        writer.write(render_response(502, body, content_type="text/plain", keep_alive=keep))
        await writer.drain()
        return keep

    async def _shutdown(self) -> None:
        for server in self._servers.values():
            server.close()
        for writer in list(self._open):
            writer.close()
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
