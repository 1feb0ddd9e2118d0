"""Whole requests cut from a client's byte stream (`framing.RequestReader`): bodies delimited by
their Content-Length or chunked, however the bytes are split, and the ``100 Continue`` a client
that waits for one is given. Pure: no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bascule.targets.local.faultstate import EmbeddingMismatch
from bascule.targets.local.proxy import HttpParseError, UnsupportedRequestError
from bascule.targets.local.proxy.embeddings import mismatch_request
from bascule.targets.local.proxy.framing import RequestReader, chunked_end, dechunk
from bascule.targets.local.proxy.hops import interim_only

CHUNKED = (
    b"POST /v1/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n"
)
PLAIN = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"


def _cut(stream: bytes, cuts: list[int]) -> list[tuple[bytes, str]]:
    reader = RequestReader()
    got: list[tuple[bytes, str]] = []
    last = 0
    for at in [*sorted(cuts), len(stream)]:
        reader.feed(stream[last:at])
        last = at
        while (request := reader.next_request()) is not None:
            got.append((request[0], request[1].target))
    assert not reader.buffered
    return got


@given(st.lists(st.integers(0, len(CHUNKED + PLAIN)), max_size=6))
def test_a_chunked_request_is_cut_whole_however_its_bytes_come(cuts: list[int]) -> None:
    assert _cut(CHUNKED + PLAIN, cuts) == [(CHUNKED, "/v1/x"), (PLAIN, "/next")]


def test_the_end_of_a_chunked_body() -> None:
    body_at = CHUNKED.index(b"\r\n\r\n") + 4
    assert chunked_end(CHUNKED, body_at) == len(CHUNKED)
    for short in range(body_at, len(CHUNKED)):
        assert chunked_end(CHUNKED[:short], body_at) is None
    assert dechunk(CHUNKED[body_at:]) == b"abc0123456789"
    for bad in (b"zz\r\nab\r\n0\r\n\r\n", b"2\r\nabc\r\n0\r\n\r\n", b"-1\r\n"):
        with pytest.raises(HttpParseError):
            chunked_end(bad, 0)


def test_a_transfer_coding_that_is_not_chunked_is_unsupported() -> None:
    reader = RequestReader()
    reader.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx")
    with pytest.raises(UnsupportedRequestError, match="gzip"):
        reader.next_request()


def test_a_client_that_waits_for_100_continue_is_given_one_once() -> None:
    head = b"POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    reader = RequestReader()
    reader.feed(head[:20])
    assert reader.next_request() is None and reader.continue_answer() is None  # head not whole
    reader.feed(head[20:])
    assert reader.next_request() is None
    assert reader.continue_answer() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert reader.continue_answer() is None
    reader.feed(b"body")
    request = reader.next_request()
    assert request is not None
    raw, parsed = request
    assert raw == b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody"  # no Expect
    assert parsed.expects_continue
    # A client that sent its body without waiting, or a request without one, gets none.
    for request_bytes in (head + b"bo", b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"):
        reader = RequestReader()
        reader.feed(request_bytes)
        while reader.next_request() is not None:
            pass
        assert reader.continue_answer() is None


def test_a_chunked_search_is_remapped_like_a_framed_one() -> None:
    vector = [0.5, -0.25, 0.125]
    body = json.dumps({"vector": vector, "k": 3}).encode()
    head = b"POST /v1/search HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\n"
    framed = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]) if part)
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    state = EmbeddingMismatch(model="other")
    remapped = []
    for raw in (framed, chunked):
        reader = RequestReader()
        reader.feed(raw)
        request = reader.next_request()
        assert request is not None
        out = mismatch_request(request[0], request[1], state)
        assert out is not None and b"transfer-encoding" not in out.lower()
        remapped.append(out)
    assert remapped[0] == remapped[1]
    assert json.loads(remapped[0].partition(b"\r\n\r\n")[2])["vector"] != vector


def test_interim_answers_are_told_from_final_ones() -> None:
    go_ahead = b"HTTP/1.1 100 Continue\r\n\r\n"
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    assert interim_only(go_ahead) and interim_only(go_ahead + hints)
    assert not interim_only(hints + final) and not interim_only(final)
    assert not interim_only(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert not interim_only(b"HTTP/1.1 100 Continue\r\n")  # split before its end: taken as final
