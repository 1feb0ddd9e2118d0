"""The fault proxy's compiled byte searches (`_scan.c`, issue 18) answer what their pure-Python twins
in `scan.py` answer, on generated requests and answers and on arbitrary bytes; and they are built wherever a C
compiler is (``pip install -e .`` runs hatch_build.py), never silently left out."""

from __future__ import annotations

import os
import shlex
import shutil
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.targets.local.proxy import scan
from tests.test_response_glance import responses

# .ci/run sets BASCULE_REQUIRE_COMPILED: there, the compiled searches must be built and tested.
REQUIRED = bool(os.environ.get("BASCULE_REQUIRE_COMPILED"))


def _can_compile() -> bool:
    linker = sysconfig.get_config_var("LDSHARED")
    include = Path(sysconfig.get_paths()["include"])
    return (
        bool(linker) and shutil.which(shlex.split(linker)[0]) is not None and (include / "Python.h").is_file()
    )


compiled = pytest.mark.skipif(
    not (scan.COMPILED or REQUIRED), reason="no compiled _scan here (no C compiler at install)"
)


@pytest.mark.skipif(
    not (REQUIRED or _can_compile()),
    reason="no C compiler or no Python.h here: bascule runs on the pure-Python twins",
)
def test_the_compiled_searches_are_built_where_a_compiler_is() -> None:
    assert scan.COMPILED, (
        "a C compiler is here but bascule/targets/local/proxy/_scan*.so is not built: "
        "run `pip install -e .` again (hatch_build.py compiles it)"
    )
    module = Path(scan.__file__).with_name("_scan" + str(sysconfig.get_config_var("EXT_SUFFIX")))
    source = module.with_name("_scan.c")
    if module.is_file() and source.is_file():
        assert module.stat().st_mtime >= source.stat().st_mtime, (
            "_scan.c changed since _scan*.so was built: run `pip install -e .` again"
        )


def _bodies() -> st.SearchStrategy[bytes]:
    usage = st.builds(
        lambda before, space, number, after: (
            before + b'"total_tokens"' + space + b":" + space + number + after
        ),
        st.sampled_from([b"", b'{"usage": {', b'data: {"x": 1, ']),
        st.sampled_from([b"", b" ", b"\n\t ", b"\x0b\x0c"]),
        st.sampled_from(
            [
                b"17",
                b"0",
                b"007",
                b"",
                b"x",
                b"123456789012345678",
                b"9999999999999999999",
                b"1234567890123456789012345",
            ]
        ),
        st.sampled_from([b"", b"}}", b', "total_tokens": 3}', b'"total_tokens"']),
    )
    return usage | st.binary(max_size=40)


@st.composite
def _answers(draw: st.DrawFn) -> bytes:
    """Answers of every shape `glance` tells apart, with bodies that name their tokens or not."""
    data = draw(responses())
    end = data.find(b"\r\n\r\n")
    if end >= 0 and draw(st.booleans()):
        body = draw(_bodies())
        head = data[: end + 4].replace(
            b"content-length: %d" % (len(data) - end - 4), b"content-length: %d" % len(body)
        )
        data = head + body
    return _cut_now_and_then(draw, data, 6)


def _cut_now_and_then(draw: st.DrawFn, data: bytes, one_in: int) -> bytes:
    """`data`, or once in `one_in` draws cut anywhere (a head not whole)."""
    return data[: draw(st.integers(0, len(data)))] if draw(st.integers(1, one_in)) == 1 else data


def _or_noise(whole: st.SearchStrategy[bytes], start: bytes) -> st.SearchStrategy[bytes]:
    """`whole`, or arbitrary bytes, or arbitrary bytes after a line that begins as `whole` does."""
    return whole | st.binary(max_size=60) | st.builds(lambda rest: start + rest, st.binary())


@compiled
@settings(max_examples=2000, deadline=None)
@given(_or_noise(_answers(), b"HTTP/1.1 200 OK\r\n"))
def test_the_compiled_glance_is_its_twin(data: bytes) -> None:
    assert scan.glance(data) == scan._glance(data)


_EVENT_HEADS = st.builds(
    lambda status, kind, tail: b"HTTP/1.1 %d OK\r\ncontent-type: %b\r\n\r\n%b" % (status, kind, tail),
    st.sampled_from([100, 200, 204, 404]),
    st.sampled_from(
        [b"text/event-stream", b"Text/Event-Stream; charset=utf-8", b"text/plain", b"event-strea"]
    ),
    st.sampled_from([b"", b"data: 1\n\n", b"event-stream"]),
)


@compiled
@settings(max_examples=2000, deadline=None)
@given(_answers() | _EVENT_HEADS | st.binary(max_size=60))
def test_the_compiled_plain_head_is_its_twin(data: bytes) -> None:
    assert scan.plain_head(data) is scan._plain_head(data)


@compiled
@settings(max_examples=2000, deadline=None)
@given(_answers())
def test_the_compiled_tokens_are_their_twins(data: bytes) -> None:
    end = scan._glance(data)
    ends = [end] if end >= 0 else []
    ends += [i + 2 for i in range(len(data) - 1) if data[i : i + 2] == b"\r\n" and i + 4 <= len(data)]
    for at in ends:
        assert scan.answer_tokens(data, at) == scan._answer_tokens(data, at), at


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    """A request's first bytes, often well formed, with a ``traceparent`` now and then."""
    method = draw(st.sampled_from([b"GET", b"POST", b"get", b"", b"A" * 16, b"A" * 17, b"M-SEARCH"]))
    target = draw(st.sampled_from([b"/", b"/v1/chat/completions?x=1", b"", b"/a b", b"/\tx", b"*"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.", b"http/1.1"]))
    ending = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r", b"", b"\r\r\n"]))
    lines = [b"host: bench", b"accept: */*"]
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from([b"traceparent", b"TraceParent", b"x-traceparent", b"traceparent2"]))
        gap = draw(st.sampled_from([b": ", b":", b" \t: \t", b" ", b"::"]))
        trace = b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"
        value = draw(st.sampled_from([trace, b"", b"x y ", b"\t", b"a\nb"]))
        lines.insert(draw(st.integers(0, len(lines))), name + gap + value)
    body = draw(st.sampled_from([b"", b"traceparent: in-the-body", b"\r\ntraceparent: 1"]))
    data = b"%b %b %b%b" % (method, target, version, ending) + b"\r\n".join(lines) + b"\r\n\r\n" + body
    return _cut_now_and_then(draw, data, 4)


@compiled
@settings(max_examples=3000, deadline=None)
@given(_or_noise(_requests(), b"GET / HTTP/1.1\r\n"))
def test_the_compiled_request_searches_are_their_twins(data: bytes) -> None:
    assert scan.request_start(data) is scan._request_start(data)
    assert scan.traceparent(data) == scan._traceparent(data)


@compiled
def test_the_compiled_searches_refuse_what_their_twins_refuse() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    for bad in (-1, 0, 1, len(answer) - 1, len(answer) + 5):
        for search in (scan.answer_tokens, scan._answer_tokens):
            with pytest.raises(ValueError, match="no head of that length"):
                search(answer, bad)
    with pytest.raises(TypeError):
        scan.glance("HTTP/1.1 200 OK\r\n\r\n")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scan.answer_tokens(bytearray(answer), 17)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scan.plain_head(memoryview(answer))  # type: ignore[arg-type]
    for search in (scan.request_start, scan.traceparent):
        with pytest.raises(TypeError):
            search(None)  # type: ignore[arg-type]


def test_the_searches_read_what_the_docs_say() -> None:
    # Whichever twin runs here (the compiled one where it is built).
    request = b"POST /v1/chat HTTP/1.1\r\nHost: a\r\nTraceParent: \t00-ab-cd-01\r\n\r\ntraceparent: body"
    assert scan.request_start(request) and scan.traceparent(request) == b"00-ab-cd-01"
    assert scan.traceparent(request.replace(b"TraceParent", b"X-Trace")) is None  # not in the body
    assert scan.traceparent(b"GET / HTTP/1.0\ntraceparent:\r\n\r\n") is None  # a bare LF ends no line
    assert scan.traceparent(b"GET / HTTP/1.1\r\ntraceparent: 00-a") == b"00-a"  # as far as it goes
    assert scan.request_start(b"GET / HTTP/1.0\n") and not scan.request_start(b"GET / HTTP/1.1")
    assert not scan.request_start(b"\x16\x03\x01\x02\x00")  # a TLS hello

    answer = b'HTTP/1.1 200 OK\r\nContent-Length: 31\r\n\r\n{"usage": {"total_tokens": 17}}'
    assert scan.glance(answer) == answer.index(b"\r\n\r\n") + 2
    assert scan.answer_tokens(answer, scan.glance(answer)) == 17
    assert scan.answer_tokens(answer.replace(b"200 OK", b"503 No"), scan.glance(answer)) == 0
    unsaid = b"HTTP/1.0 201 Created\r\ncontent-length: 9\r\n\r\n123456789"
    assert scan.answer_tokens(unsaid, scan.glance(unsaid)) == 3  # a token a 4 bytes, rounded up
    own = b"HTTP/1.1 200 OK\r\nX-RateLimit-Limit-Tokens: 9\r\ncontent-length: 2\r\n\r\nok"
    assert scan.answer_tokens(own, scan.glance(own)) == -1
    for other in (
        b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n",
        b"HTTP/2 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ):
        assert scan.glance(other) == -1, other
    assert scan.plain_head(answer) and scan.plain_head(b"HTTP/1.0 204 No Content\r\n\r\n")
    stream = b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream\r\n\r\ndata: 1\n\n"
    assert not scan.plain_head(stream) and not scan.plain_head(stream[:30])
    assert not scan.plain_head(b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n")
