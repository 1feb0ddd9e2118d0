"""What a relayed connection records of each HTTP request it carries (`bascule.journal.RouteHop`):
when its first bytes came and the trace id its ``traceparent`` names, then when its answer's first
bytes came and their status — or that a fault answered it, or that no answer came; and a
connection whose bytes are not HTTP/1.x once, as opaque. On the plane's
loop; `relay.ClientSide` records through it."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Final

from bascule.targets.local.proxy.scan import FINAL_STATUS_LINES, request_start, traceparent

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["HopRecorder", "interim_only"]

_INTERIM: Final = re.compile(rb"(?:HTTP/1\.[01] 1(?!01)\d\d[ \r][^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n)+")


def interim_only(data: bytes) -> bool:
    """Whether `data`, an answer's first bytes, are informational (1xx) heads and nothing else: the
    request they answer is not over (after a ``100 Continue`` its client sends the body)."""
    return _INTERIM.fullmatch(data) is not None


def _after_interim(data: bytes) -> bytes:
    """`data` without the informational (1xx) heads it begins with."""
    interim = _INTERIM.match(data)
    return data if interim is None else data[interim.end() :]


def _status(data: bytes) -> int | None:
    """The status of the answer `data` begins (after its informational heads), if it is HTTP/1.x."""
    if data[9:10] == b"1":  # the status of the head after 1xx ones
        data = _after_interim(data)
    if data.startswith(b"HTTP/1.") and data[12:13] in (b" ", b"\r"):
        digits = data[9:12]
        if digits.isdigit():
            return int(digits)
    return None


class HopRecorder:
    """The hop under way on one connection (one request at a time: clients do not pipeline)."""

    route: Route
    tracing: bool
    """Requests are recorded: off when the plane records none, or the bytes are not HTTP/1.x."""
    reached: bool
    """An upstream accepted this connection: bytes relayed did get to a process."""
    hop_started: float | None
    hop_trace: str | bytes | None
    """The request's ``traceparent`` header as it came (`FaultPlane.take_hops` reads it)."""
    hop_relayed: bool
    spoke_http: bool
    """A request in HTTP/1.x has come on this connection: it is not of another protocol."""

    def no_hop_yet(self, *, tracing: bool) -> None:
        self.tracing = tracing
        self.hop_started = None
        self.hop_trace = None
        self.hop_relayed = False
        self.spoke_http = False

    def trace_request(self, data: bytes, relayed: bool, at: float | None = None) -> None:
        """`data`, a request's first bytes, read for its request line and ``traceparent`` only."""
        if not request_start(data):
            if self.spoke_http:
                # The rest of a request its callee answered before it ended (a body sent after an
                # early 4xx), or what follows a 101 Switching Protocols: part of a request recorded.
                return
            # Not HTTP/1.x (or a head cut before its first line ends): this connection's requests
            # cannot be told apart from here on. Recorded once, as an opaque hop, so that what it
            # carried is counted as unknown rather than not there (`RouteHop.opaque`).
            self.tracing = False
            at = time.monotonic() if at is None else at
            self.route.plane.record_hop((self.route.name, None, at, None, None, relayed, True))
            return
        found = traceparent(data)
        # `hop_begins`, inline: this runs at every request.
        if self.hop_started is not None:
            self.hop_done(None, None)
        self.hop_started = time.monotonic() if at is None else at
        self.spoke_http = True
        self.hop_trace = found
        self.hop_relayed = relayed

    def hop_begins(self, header: str | bytes | None, *, relayed: bool, at: float | None = None) -> None:
        if self.hop_started is not None:
            self.hop_done(None, None)
        self.hop_started = time.monotonic() if at is None else at
        self.spoke_http = True
        self.hop_trace = header
        self.hop_relayed = relayed

    def hop_answered(self, data: bytes, at: float) -> None:
        """The callee's first bytes of an answer, come `at`: its status line, if it is HTTP."""
        status = FINAL_STATUS_LINES.get(data[:13])  # else, `_status`'s five steps
        if status is None:
            status = _status(data)
        # `hop_done`, inline: this runs at every answer (answered, the hop is relayed).
        started = self.hop_started
        assert started is not None
        self.hop_started = None
        self.hop_relayed = True
        route = self.route
        route.plane.record_hop((route.name, self.hop_trace, started, at - started, status, True, False))

    def hop_faulted(self, header: str | None, answer: bytes) -> None:
        self.hop_begins(header, relayed=False)
        self.hop_done(int(answer[9:12]), 0.0)

    def hop_done(self, status: int | None, took: float | None) -> None:
        started, self.hop_started = self.hop_started, None
        assert started is not None
        # Unanswered, it reached the callee only if some upstream took the connection (a crashed
        # replica refuses it, and the request's bytes never left the plane).
        relayed = self.hop_relayed and (took is not None or self.reached)
        self.route.plane.record_hop((self.route.name, self.hop_trace, started, took, status, relayed, False))
