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
  A counted `Refuse` (`count`, `every`) keeps listening, to count new connections: those it names
  are accepted and reset, the others relayed.
- `Blackhole` accepts and reads, and drops bytes in both directions; a connection that lost bytes
  is reset when it ends (its stream has a hole TCP would never leave). `Hang` stops reading on
  both sides and lets bytes wait in kernel buffers until the fault ends.
- `Latency` delays client→upstream bytes through an order-preserving delay line.
- `HttpError` and `Throttle` read whole HTTP/1.x requests (head and Content-Length body) and
  answer a ratio of them locally (at ratio 0, as `Latency` of 0 s, they strike nothing and the
  route relays as in `Pass`: `faultstate.strikes_nothing`). A connection that was mid-request
  when the fault arrived is parsed from its next request on; bytes that are not HTTP/1.x pass
  untouched; a chunked body is read to its last chunk, a client waiting for ``100 Continue`` is
  given one, and a body in another transfer coding is answered 501 and the connection closed.
  Clients are assumed not to pipeline requests, as no mainstream HTTP/1.1 client does. A
  counted `HttpError` (`count`, `every`) answers the requests it names from the route's count
  since the state was set.
- `Ttft`, `StreamCut`, `TokenRate`, `Degrade`, `ModelSwap`, `PartialIndex` and
  `EmbeddingMismatch` act on the answers: the upstream's bytes go through a `Shaper` (`answers`,
  `modelswap`, `retrieval`, `embeddings`) that cuts them into responses (`responses`) and holds,
  cuts, annotates or rewrites them; `TokenRate` also reads requests once its budget is spent, to
  answer 429 (while tokens are left they pass unread), and `EmbeddingMismatch` to remap their
  query vectors. `Bandwidth`, `LimitData`, `Slicer` and `SlowClose` go through a shaper too, on
  the raw bytes (nothing parsed, `transport`): paced, the connection ended after some bytes, cut
  into delayed pieces, or its close held back. Routes in any other state never parse a response.

The package, by concern: `plane` (`FaultPlane`, the synchronous front), `route` (a listening port,
its upstreams, state and counters), `relay` (one connection and how each state acts on its bytes —
the hot path), `hops` (what a connection records of each HTTP request it carries), `delay` (the
latency state's delay line), `answers`, `tokens`, `modelswap`, `retrieval` and `embeddings` (the
faults on answers; `jsonanswers`, the shaper of whole JSON answers they share), `transport` (the transport
faults on answers' bytes), `shapers` (which shaper for which state), `responses` (responses cut
from an upstream's bytes, pure), `scan` (the byte searches made at each answer, pure, with their
compiled twins in `_scan.c`, built at install where a C compiler is), `framing` (HTTP/1.x heads,
requests and responses, pure) and `loop` (uvloop and the thread that runs it).
"""

from bascule.targets.local.proxy.framing import (
    HttpParseError,
    RequestHead,
    UnsupportedRequestError,
    parse_request_head,
    render_response,
)
from bascule.targets.local.proxy.loop import EVENT_LOOP_ENV, LoopThread, new_event_loop
from bascule.targets.local.proxy.plane import FaultPlane
from bascule.targets.local.proxy.route import LOOPBACK, RouteInfo, RouteStats, Upstream

__all__ = [
    "EVENT_LOOP_ENV",
    "LOOPBACK",
    "FaultPlane",
    "HttpParseError",
    "LoopThread",
    "RequestHead",
    "RouteInfo",
    "RouteStats",
    "UnsupportedRequestError",
    "Upstream",
    "new_event_loop",
    "parse_request_head",
    "render_response",
]
