"""Answers that come whole in one read pass the shapers that can take them so (stream-cut's and
token-rate's) after a glance at their head instead of a parse (issue 18): the glance agrees with the
full parser on every answer it takes, and a shaper writes byte for byte what its hooks would. The
transport shapers' fast paths: a paced piece due within the loop's resolution leaves at once, and
pacing still holds over the pieces."""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.targets.local import faultstate as fs
from bascule.targets.local.proxy.answers import Shaper
from bascule.targets.local.proxy.hops import _status
from bascule.targets.local.proxy.responses import (
    Body,
    End,
    Framing,
    Head,
    ResponseParser,
)
from bascule.targets.local.proxy.scan import FINAL_STATUS_LINES
from bascule.targets.local.proxy.shapers import shaper_for
from bascule.targets.local.proxy.tokens import TokenBudget

_CONTENT_TYPES = [
    b"text/plain",
    b"application/json",
    b"text/event-stream",
    b"Text/Event-Stream; charset=utf-8",
]


_HEAD_ONLY = st.integers(0, 4).map(lambda n: n == 0)
"""Whether a request was ``HEAD``: now and then."""


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """One response, often well formed, sometimes with a framing only the full parser reads."""
    status = draw(st.sampled_from([200, 200, 200, 100, 101, 201, 204, 206, 301, 304, 404, 429, 500, 503]))
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    reason = draw(st.sampled_from([b" OK", b"", b" Not Found"]))
    body = draw(
        st.sampled_from([b"", b"ok", b'{"usage": {"total_tokens": 17}}', b"data: 1\n\ndata: 2\n\n"])
        | st.binary(max_size=30)
    )
    lines = [b"HTTP/%b %d%b" % (version, status, reason)]
    if draw(st.booleans()):
        lines.append(b"content-type: " + draw(st.sampled_from(_CONTENT_TYPES)))
    length = draw(
        st.sampled_from(
            [
                b"content-length: %d" % len(body),
                b"content-length: %d" % len(body),
                b"content-length: %d" % len(body),
                b"Content-Length: %d" % len(body),
                b"content-length:%d  " % len(body),
                b"content-length : %d" % len(body),
                b"content-length: %d" % (len(body) + 1),
                b"content-length: x",
                b"",
            ]
        )
    )
    if length:
        lines.append(length)
    if draw(st.integers(0, 9)) == 0:
        lines.append(b"content-length: %d" % len(body))  # twice
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.sampled_from([b"transfer-encoding: chunked", b"Transfer-Encoding: gzip"])))
    if draw(st.integers(0, 4)) == 0:
        lines.append(b"X-RateLimit-Remaining-Tokens: 9")
    lines.insert(draw(st.integers(1, len(lines))), b"x-other: 1")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(max_examples=400, deadline=None)
@given(responses(), _HEAD_ONLY)
def test_a_glance_agrees_with_the_full_parser(data: bytes, head_only: bool) -> None:
    glancing, parsing = ResponseParser(), ResponseParser()
    for parser in (glancing, parsing):
        parser.expect(head_only)
    head = glancing.glance(data)
    pieces = parsing.feed(data)
    assert glancing.feed(data) == pieces, "a glance consumes nothing"
    if head < 0:
        return
    end = head + 2
    assert data[head:end] == b"\r\n"
    body = data[end:]
    seen = pieces[0]
    assert isinstance(seen, Head) and seen.head.raw == data[:end] and seen.head.status >= 200
    assert seen.head.framing is (Framing.LENGTH if body else Framing.NONE)
    assert pieces[1:] == ([Body(body)] if body else []) + [End()]
    assert parsing.between


class _Client:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def write_client(self, data: bytes) -> None:
        self.out.append(data)

    def finish_eof(self) -> None:
        self.out.append(b"<eof>")

    def shaper_done(self) -> None:
        pass

    def close(self) -> None:
        self.out.append(b"<close>")

    def reset(self) -> None:
        self.out.append(b"<reset>")


class _Route:
    def __init__(self, tokens: TokenBudget | None) -> None:
        self.bytes_dropped = 0
        self.requests_faulted = 0
        self.rng = random.Random(7)
        self.tokens = tokens
        self.loop = None


def _through(
    state: fs.ProxyFault, answers: list[tuple[bytes, bool]], *, glances: bool
) -> tuple[bytes, int, int, float | None]:
    """What a shaper of `state` writes for `answers` (each with whether its request was HEAD),
    its counters and what is left of the token budget."""
    budget = TokenBudget(6000, clock=lambda: 0.0) if isinstance(state, fs.TokenRate) else None
    route, client = _Route(budget), _Client()
    shaper: Shaper = shaper_for(state, client, route, synced=True)  # type: ignore[arg-type]
    shaper.glances = glances and shaper.glances
    for data, head_only in answers:
        shaper.request(head_only)
        shaper.feed(data)
    level = budget.level() if budget is not None else None
    return b"".join(client.out), route.bytes_dropped, route.requests_faulted, level


_STATES: list[fs.ProxyFault] = [
    fs.StreamCut(after_events=1),
    fs.StreamCut(after_events=10**15),
    fs.StreamCut(after_bytes=3, how=fs.CutHow.EOF),
    fs.StreamCut(after_bytes=0, how=fs.CutHow.RESET),
    fs.TokenRate(tokens_per_minute=6000),
]


def _framed(answer: tuple[bytes, bool]) -> bool:
    """Whether the full parser finds `answer` to be exactly one response (it is then between two)."""
    parser = ResponseParser()
    parser.expect(answer[1])
    return bool(parser.feed(answer[0])) and parser.between


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.tuples(responses(), _HEAD_ONLY).filter(_framed), min_size=1, max_size=4),
    st.sampled_from(_STATES),
)
def test_a_glancing_shaper_writes_what_its_hooks_would(
    answers: list[tuple[bytes, bool]], state: fs.ProxyFault
) -> None:
    assert _through(state, answers, glances=True) == _through(state, answers, glances=False)


def test_token_rate_adds_its_lines_and_charges_a_glanced_answer() -> None:
    answer = b'HTTP/1.1 200 OK\r\ncontent-length: 31\r\n\r\n{"usage": {"total_tokens": 17}}'
    state = fs.TokenRate(tokens_per_minute=6000)
    out, _dropped, _faulted, level = _through(state, [(answer, False)], glances=True)
    assert out == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 31\r\nx-ratelimit-limit-tokens: 6000\r\n"
        b"x-ratelimit-remaining-tokens: 6000\r\nx-ratelimit-reset-tokens: 0.000s\r\n\r\n"
        b'{"usage": {"total_tokens": 17}}'
    )
    assert level == 6000 - 17
    unsaid = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nno usage!!"  # charged a token a 4 bytes
    failed = b"HTTP/1.1 503 Busy\r\ncontent-length: 9\r\n\r\nno usage."
    three = [(answer, False), (unsaid, False), (failed, False)]
    assert _through(state, three, glances=True)[3] == 6000 - 17 - 3
    budget = TokenBudget(600, clock=lambda: 0.0)
    budget.spend(1)
    lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in budget.headers())
    assert budget.header_lines() == lines


class _Loop:
    """A clock the test moves, and the timers a delay line sets on it."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Loop:
        self.timers.append((when, callback))
        return self

    def cancel(self) -> None:
        self.timers.clear()

    def run_until(self, when: float) -> None:
        self.now = when
        while self.timers and self.timers[0][0] <= when:
            _at, callback = self.timers.pop(0)
            callback()


def _paced(rate: int) -> tuple[Shaper, _Client, _Loop]:
    route, client, loop = _Route(None), _Client(), _Loop()
    route.loop = loop  # type: ignore[assignment]
    return shaper_for(fs.Bandwidth(rate=rate), client, route, synced=True), client, loop  # type: ignore[arg-type]


def test_bandwidth_sends_a_piece_due_within_a_millisecond_at_once_and_paces_the_rest() -> None:
    shaper, client, loop = _paced(10_000)  # 10 bytes a millisecond
    shaper.feed(b"a" * 5)
    shaper.feed(b"b" * 4)  # due 0.9 ms from now: at once, as the loop's timers would
    assert client.out == [b"a" * 5, b"b" * 4] and not loop.timers
    shaper.feed(b"c" * 20)  # due 2.9 ms from now
    shaper.feed(b"d")  # behind it, whatever it costs
    assert client.out == [b"a" * 5, b"b" * 4] and [round(t, 6) for t, _ in loop.timers] == [100.0029]
    loop.run_until(100.0029)
    assert client.out[2:] == [b"c" * 20] and [round(t, 6) for t, _ in loop.timers] == [100.003]
    loop.run_until(100.003)
    assert client.out[3:] == [b"d"] and not loop.timers
    shaper.feed(b"e" * 100)  # 10 ms of the link, after the 3 ms already spent
    assert [round(t, 6) for t, _ in loop.timers] == [100.013]


def test_an_unreachable_rate_sets_no_timer() -> None:
    # A piece's time at 10^15 B/s may round up to one ulp of the clock: it used to set a timer,
    # and every later piece then waited behind it for a turn of the loop.
    shaper, client, loop = _paced(10**15)
    for _ in range(100):
        shaper.feed(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        loop.now += 1e-6
    assert len(client.out) == 100 and not loop.timers


def test_limit_data_counts_every_byte_to_the_limit() -> None:
    route, client = _Route(None), _Client()
    shaper = shaper_for(fs.LimitData(limit=10), client, route, synced=True)  # type: ignore[arg-type]
    for piece in (b"1234", b"5678", b"9abc", b"def"):
        shaper.feed(piece)
    assert client.out == [b"1234", b"5678", b"9a", b"<close>"]
    assert route.bytes_dropped == 2 + 3 and route.requests_faulted == 1


_EVENTS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"12\r\ndata: 1\n\ndata: 2\n\n\r\n0\r\n\r\n"
)


def test_stream_cut_passes_an_answer_that_is_no_event_stream_to_the_next_request() -> None:
    route, client = _Route(None), _Client()
    shaper = shaper_for(fs.StreamCut(after_events=1), client, route, synced=True)  # type: ignore[arg-type]
    shaper.request(False)
    plain = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\r\nhello"
    for piece in (plain, b" wor", b"ld!"):  # its body in three reads: each passes as it came
        shaper.feed(piece)
    assert client.out == [plain, b" wor", b"ld!"] and route.requests_faulted == 0
    shaper.request(False)
    shaper.feed(b"HTTP/1.1 100 Continue\r\n\r\n")  # informational: the final answer follows
    shaper.feed(_EVENTS)
    head = _EVENTS[: _EVENTS.index(b"\r\n\r\n") + 4]
    cut = b"HTTP/1.1 100 Continue\r\n\r\n" + head + b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"  # after one event
    assert b"".join(client.out[3:]) == cut and route.requests_faulted == 1


@settings(max_examples=400, deadline=None)
@given(
    first=st.sampled_from(
        [b"HTTP/1.1 ", b"HTTP/1.0 ", b"HTTP/1.2 ", b"HTTP/1.1  ", b"HTTP/2 ", b"HTTP/1.1\t"]
    ),
    status=st.integers(0, 1000) | st.sampled_from([100, 101, 103, 200, 204, 304, 999]),
    after=st.sampled_from([b" OK\r\n", b"\r\n", b"x", b"", b"0 OK\r\n"]),
    then=st.sampled_from([b"", b"\r\n", b"HTTP/1.1 200 OK\r\n\r\nok", b"HTTP/1.1 500 x\r\n\r\n"]),
)
def test_the_status_table_reads_what_the_parse_reads(
    first: bytes, status: int, after: bytes, then: bytes
) -> None:
    # The relay reads an answer's status by one look-up (`FINAL_STATUS_LINES`), else by the parse
    # (`hops._status`, which skips informational heads first): the look-up may only ever agree.
    data = first + b"%d" % status + after + then
    parsed = _status(data)
    looked_up = FINAL_STATUS_LINES.get(data[:13])
    assert looked_up is None or looked_up == parsed
    if first in (b"HTTP/1.1 ", b"HTTP/1.0 ") and 200 <= status <= 999 and after[:1] in (b" ", b"\r"):
        assert looked_up == parsed == status  # the common case never goes to the parse


def test_a_charge_is_the_lines_then_the_spend() -> None:
    # `charge`, what a glanced answer costs the budget, is `header_lines` then `spend`, in one call.
    now = [0.0]
    spent: list[str] = []
    one = TokenBudget(600, clock=lambda: now[0], on_spent=lambda: spent.append("one"))
    two = TokenBudget(600, clock=lambda: now[0], on_spent=lambda: spent.append("two"))
    for tokens, later in [(0, 0.0), (17, 0.5), (400, 0.1), (500, 3.0), (0, 0.0), (1, 60.0)]:
        now[0] += later
        lines = two.header_lines()
        if tokens:
            two.spend(tokens)
        assert one.charge(tokens) == lines
        assert one.figures() == two.figures()
    assert spent == ["two", "one"]  # spent once, by the 500 (then refilled by the minute)
