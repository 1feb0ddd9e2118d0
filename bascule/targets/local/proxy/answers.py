"""The faults that act on answers on their way back to the client: `Ttft`, `StreamCut` and
`Degrade`, and the `Shaper` every fault on answers or their bytes builds on (everything here runs on
the plane's loop; `shapers` says which shaper carries out which state, `tokens` has token-rate's,
`transport` the shapers of the transport faults on the same bytes).

A connection in one of these states gives the bytes its upstream sends to a `Shaper`, which cuts
them into responses (`responses.ResponseParser`) and writes to the client what the fault makes of
each: the first body bytes held back (ttft), an event stream cut short (stream-cut), rate-limit
headers and a charge to the route's token budget (token-rate), a JSON answer rewritten
(degrade). A shaper set on a connection that is already open starts at the next request its
client sends (the response under way, if any, passes untouched); one that leaves flushes what it
holds. Routes in no such state never reach this module.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import TYPE_CHECKING, Final, Protocol, cast

from bascule.targets.local.faultstate import (
    CutHow,
    Degrade,
    DegradeHow,
    ProxyFault,
    StreamCut,
    Ttft,
)
from bascule.targets.local.proxy.degradetext import (
    answer_texts,
    corrupt_events,
    degrade_text,
    rewrite_answers,
)
from bascule.targets.local.proxy.delay import DelayLine
from bascule.targets.local.proxy.responses import (
    END_CHUNK,
    Body,
    End,
    Framing,
    Head,
    Piece,
    Raw,
    ResponseHead,
    ResponseParser,
    encode_body,
)
from bascule.targets.local.proxy.scan import plain_head

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = [
    "Client",
    "CutShaper",
    "DegradeShaper",
    "DelayedShaper",
    "Shaper",
    "TtftShaper",
    "degrade_text",
    "new_answer_memory",
]

_EVENT_END: Final = re.compile(rb"\r?\n\r?\n")


class Client(Protocol):
    """What a shaper writes to: the client side of the relay."""

    def write_client(self, data: bytes) -> None: ...

    def finish_eof(self) -> None:
        """The upstream's end of stream, passed on as the relay does without a fault."""

    def shaper_done(self) -> None:
        """A leaving shaper has passed the response under way to its end."""

    def close(self) -> None: ...

    def reset(self) -> None: ...


# -- shapers --------------------------------------------------------------------------------------


class Shaper:
    """Passes responses re-framed as they came; each fault's subclass changes what it needs."""

    frames = True
    """Whether this shaper cuts the bytes into responses (and so must learn of each request)."""
    glances = False
    """Whether this shaper takes a response that comes whole in one read before it is parsed
    (`glanced`, after `ResponseParser.glance`): a few byte searches instead of pieces and hooks."""

    def __init__(self, state: ProxyFault, client: Client, route: Route, *, synced: bool) -> None:
        self.state = state
        self.client = client
        self.route = route
        self.parser = ResponseParser()
        self.synced = synced
        self.head: ResponseHead | None = None
        self.done = False
        self.passing = False
        """The response under way is one the fault does not act on (`acts_on`)."""
        self.leaving = False
        """The state has left: the response under way passes as it comes, re-framed (see `release`)."""
        self.batch: list[bytes] | None = None
        """While `pieces` runs: what it writes to the client, gathered into one write."""

    def request(self, head_only: bool) -> None:
        """A request goes to the upstream: its response is the next one."""
        self.synced = True
        self.parser.expect(head_only)

    def feed(self, data: bytes) -> None:
        if self.done:
            self.route.bytes_dropped += len(data)
        elif not self.synced:
            self.emit(data)
        elif self.glances and (end := self.parser.glance(data)) >= 0 and self.glanced(data, end):
            self.parser.skip()
        else:
            self.pieces(self.parser.feed(data))

    def glanced(self, data: bytes, end: int) -> bool:
        """`data`, exactly one whole response, before it is parsed (`end`: its head's length,
        `ResponseParser.glance`): write what the fault makes of it and return True, or return False
        (nothing written) to have it parsed and passed through the hooks as any other. Called only
        when `glances`."""
        return False

    def eof(self) -> None:
        if not self.done:
            if self.synced:
                self.pieces(self.parser.eof())
            self.emit_eof()

    def pieces(self, pieces: list[Piece]) -> None:
        # What the pieces of one upstream read give the client leaves in one write, as with no
        # fault (`batch`). A response the fault does not act on (`acts_on`) goes out as it came,
        # with no hook called.
        out: list[bytes] = []
        self.batch = out
        try:
            for piece in pieces:
                if self.done:
                    break
                kind = type(piece)
                if kind is Head:
                    head = cast(Head, piece).head
                    self.head = head
                    self.passing = not self.acts_on(head)
                    if self.passing:
                        out.append(head.render())
                    else:
                        self.on_head(head)
                elif kind is Body:
                    payload = cast(Body, piece).payload
                    if not self.passing:
                        self.on_body(payload)
                    elif self.framing is Framing.CHUNKED:
                        out.append(encode_body(Framing.CHUNKED, payload))
                    else:
                        out.append(payload)
                elif kind is End:
                    if not self.passing:
                        self.on_end()
                    elif self.framing is Framing.CHUNKED:
                        out.append(END_CHUNK)
                    self.passing = False
                    self.head = None
                    if self.leaving:
                        self.flush_batch()
                        self.leaving = False
                        self.client.shaper_done()
                        self.done = True  # what follows is the next shaper's, or the relay's
                else:
                    out.append(cast(Raw, piece).data)
        finally:
            self.flush_batch()
            self.batch = None

    def flush_batch(self) -> None:
        """Write what this read's pieces have given so far: before anything else reaches the
        client (a reset, a close, the end of stream, bytes leaving through a delay line)."""
        out = self.batch
        if out:
            data = b"".join(out)
            out.clear()
            if data:
                self.client.write_client(data)

    def acts_on(self, head: ResponseHead) -> bool:
        """Whether the fault may change the response `head` begins (called at its head, before
        `on_head`); when not, the response passes with no hook called, as the base class frames it."""
        return True

    @property
    def framing(self) -> Framing:
        return self.head.framing if self.head is not None else Framing.NONE

    def on_head(self, head: ResponseHead) -> None:
        self.emit(head.render())

    def on_body(self, payload: bytes) -> None:
        self.emit(encode_body(self.framing, payload))

    def on_end(self) -> None:
        if self.framing is Framing.CHUNKED:
            self.emit(END_CHUNK)

    def emit(self, data: bytes) -> None:
        if data:
            if self.batch is not None:
                self.batch.append(data)
            else:
                self.client.write_client(data)

    def emit_eof(self) -> None:
        self.flush_batch()
        self.client.finish_eof()

    def release(self) -> bool:
        """The state leaves the connection: write what is held. True when the shaper can go now;
        False when a response it has begun to re-frame is under way: it then passes the rest of
        that response as it comes and calls `Client.shaper_done` at its end."""
        self.flush()
        if self.done or not self.synced or self.parser.between:
            return True
        self.leaving = True
        return False

    def flush(self) -> None:
        """Write what the fault holds back."""

    def cancel(self) -> None:
        """The connection is gone: drop what is held."""


class DelayedShaper(Shaper):
    """A shaper whose bytes leave through a delay line (`line`): an end of stream waits behind
    what the line holds, and a connection that goes drops it."""

    def __init__(self, state: ProxyFault, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.line = DelayLine(route.loop, self.sink, lambda: None)

    def emit_eof(self) -> None:
        if self.line.busy:
            self.line.push(None, 0.0)
        else:
            super().emit_eof()

    def sink(self, data: bytes | None) -> None:
        self.flush_batch()  # a line that releases at once must not overtake what this read gave
        if data is None:
            self.client.finish_eof()
        elif data:
            self.client.write_client(data)

    def flush(self) -> None:
        self.line.flush()

    def cancel(self) -> None:
        self.line.cancel()


class TtftShaper(DelayedShaper):
    """Each response's head goes out at once; from its first body bytes on, everything it sends
    leaves `delay` seconds after it came (in order): the stream starts late and keeps its pace."""

    def __init__(self, state: Ttft, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.delay = state.delay
        self.first = False
        self.shifting = False

    def on_head(self, head: ResponseHead) -> None:
        self.shifting = False
        super().on_head(head)
        self.first = True

    def on_body(self, payload: bytes) -> None:
        if self.first and payload:
            self.first = False
            self.shifting = True
            self.route.requests_faulted += 1
        super().on_body(payload)

    def emit(self, data: bytes) -> None:
        if self.shifting or self.line.busy:
            self.line.push(data, self.route.loop.time() + (self.delay if self.shifting else 0.0))
        else:
            super().emit(data)

    def flush(self) -> None:
        self.shifting = False
        self.first = False
        super().flush()


class CutShaper(Shaper):
    """Cuts each event stream after N events, or each body after N bytes (`StreamCut`)."""

    glances = True

    def __init__(self, state: StreamCut, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.cut_state = state
        self.counting = False
        self.count = 0
        self.carry = b""
        self.skipping = False
        self.bypass = False
        """The answer under way is no event stream, and this cut counts events: its bytes pass as
        they come, unparsed, until the client's next request."""
        self.sniffs = state.after_bytes is None
        """This cut counts events: an answer that is no event stream can be told by its head."""

    def request(self, head_only: bool) -> None:
        self.bypass = False
        self.synced = True
        self.parser.expect(head_only)

    def feed(self, data: bytes) -> None:
        # Counting events, an answer whose head does not even name an event stream is passed on,
        # and what follows it until the next request, without framing it: no event of it counts.
        if self.bypass:
            self.client.write_client(data)
        elif self.sniffs and self.synced and not self.done and plain_head(data) and self.parser.between:
            self.bypass = True
            self.parser.skip()
            self.client.write_client(data)
        else:
            super().feed(data)

    def glanced(self, data: bytes, end: int) -> bool:
        # Cutting after N bytes, a body shorter than that passes as it came; anything else goes
        # through `acts_on` (counting events, `feed` has already passed what it could).
        limit = self.cut_state.after_bytes
        if limit is None or len(data) - end - 2 >= limit:
            return False
        self.client.write_client(data)
        return True

    def acts_on(self, head: ResponseHead) -> bool:
        self.count = 0
        self.carry = b""
        self.skipping = False
        limit = self.cut_state.after_bytes
        if head.framing is Framing.NONE:
            self.counting = False
        elif limit is None:
            self.counting = head.content_type == b"text/event-stream"
        else:
            self.counting = True
            if head.framing is Framing.LENGTH:
                length = head.header(b"content-length")
                return length is None or int(length) >= limit  # a shorter body is never cut
        return self.counting

    def on_head(self, head: ResponseHead) -> None:
        super().on_head(head)
        if self.counting and (self.cut_state.after_events == 0 or self.cut_state.after_bytes == 0):
            self.cut()

    def on_body(self, payload: bytes) -> None:
        if self.skipping:
            self.route.bytes_dropped += len(payload)
            return
        if not self.counting:
            super().on_body(payload)
            return
        limit = self.cut_state.after_bytes
        if limit is not None:
            room = limit - self.count
            self.count += len(payload)
            super().on_body(payload[:room])
            if self.count >= limit:
                self.route.bytes_dropped += max(0, len(payload) - room)
                self.cut()
            return
        wanted = self.cut_state.after_events
        assert wanted is not None
        data = self.carry + payload
        sent = 0
        for found in _EVENT_END.finditer(data):
            self.count += 1
            sent = found.end()
            if self.count >= wanted:
                super().on_body(data[:sent])
                self.route.bytes_dropped += len(data) - sent
                self.cut()
                return
        super().on_body(data[:sent])
        self.carry = data[sent:]

    def on_end(self) -> None:
        if self.skipping:
            self.skipping = False
            return
        if self.carry:
            super().on_body(self.carry)
            self.carry = b""
        super().on_end()

    def flush(self) -> None:
        self.counting = False
        if self.carry:
            Shaper.on_body(self, self.carry)
            self.carry = b""

    def cut(self) -> None:
        self.route.requests_faulted += 1
        how = self.cut_state.how
        if how is CutHow.END and self.framing is Framing.CHUNKED:
            self.emit(END_CHUNK)
            self.skipping = True  # the rest of this response is dropped; the connection lives on
        elif how is CutHow.RESET:
            self.done = True
            self.flush_batch()
            self.client.reset()
        else:
            self.done = True
            self.flush_batch()
            self.client.close()


class DegradeShaper(Shaper):
    """Rewrites a ratio of 2xx JSON answers (each read whole first), status unchanged; with
    `DegradeHow.CORRUPT` or `DegradeHow.TOKENS`, a ratio of 2xx chunked event streams too, event by
    event. Sticky, the ratio is drawn once for the connection (`stuck`), not for each answer."""

    def __init__(self, state: Degrade, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.degrade = state
        self.body: bytearray | None = None
        self.events: bytes | None = None
        """The bytes of an event not yet whole, while a stream is corrupted."""
        self.stuck = state.sticky and route.rng.random() < state.ratio
        """Sticky: this connection was drawn once, and all its answers are degraded (or none)."""

    def strikes(self) -> bool:
        """Whether the answer under way is degraded."""
        return self.stuck if self.degrade.sticky else self.route.rng.random() < self.degrade.ratio

    def change(self, text: str, before: str | None) -> str:
        d = self.degrade
        return degrade_text(text, d.how, before, tokens=d.tokens, draw=self.route.rng.random)

    def acts_on(self, head: ResponseHead) -> bool:
        return 200 <= head.status < 300 and (self.streamed(head) or self.json_whole(head))

    def streamed(self, head: ResponseHead) -> bool:
        """An event stream this fault corrupts event by event."""
        return (
            head.framing in (Framing.CHUNKED, Framing.CLOSE)
            and self.degrade.how in (DegradeHow.CORRUPT, DegradeHow.TOKENS)
            and head.content_type == b"text/event-stream"
        )

    @staticmethod
    def json_whole(head: ResponseHead) -> bool:
        return head.framing is not Framing.NONE and head.content_type == b"application/json"

    def on_head(self, head: ResponseHead) -> None:
        self.events = None
        if 200 <= head.status < 300 and self.streamed(head):
            self.body = None
            if self.strikes():
                self.route.requests_faulted += 1
                self.events = b""
            super().on_head(head)
            return
        if 200 <= head.status < 300 and self.json_whole(head):
            self.body = bytearray()  # the head waits: its Content-Length may change
        else:
            self.body = None
            super().on_head(head)

    def on_body(self, payload: bytes) -> None:
        if self.events is not None:
            data = self.events + payload
            whole = 0
            for found in _EVENT_END.finditer(data):
                whole = found.end()
            super().on_body(corrupt_events(data[:whole], lambda t: self.change(t, None)))
            self.events = data[whole:]
        elif self.body is not None:
            self.body += payload
        else:
            super().on_body(payload)

    def on_end(self) -> None:
        head = self.head
        if self.events is not None:
            super().on_body(corrupt_events(self.events, lambda t: self.change(t, None)))
            self.events = None
        if self.body is None or head is None:
            super().on_end()
            return
        body = self.rewrite(bytes(self.body))
        self.body = None
        if head.framing is Framing.LENGTH:
            self.emit(
                head.render(drop=frozenset({b"content-length"}), add=(("content-length", str(len(body))),))
            )
        else:
            self.emit(head.render())
        super().on_body(body)
        super().on_end()

    def flush(self) -> None:
        if self.events:
            super().on_body(self.events)
        self.events = None
        if self.body is not None and self.head is not None:
            # Mid-answer when the fault ends: the answer goes out as it came.
            self.emit(self.head.render())
            self.emit(encode_body(self.head.framing, bytes(self.body)))
            self.body = None

    def rewrite(self, body: bytes) -> bytes:
        try:
            document = json.loads(body)
        except ValueError:
            return body
        texts = answer_texts(document)
        if not texts:
            return body
        memory = self.route.answers
        before = next((t for t in reversed(memory) if t not in texts), None)
        for text in texts:
            if text not in memory:
                memory.append(text)
        if not self.strikes():
            return body
        self.route.requests_faulted += 1
        changed = rewrite_answers(document, lambda t: self.change(t, before))
        return json.dumps(changed, ensure_ascii=False, separators=(",", ":")).encode()


def new_answer_memory() -> deque[str]:
    """The answers a route remembers for `DegradeHow.SWAP`."""
    return deque(maxlen=16)
