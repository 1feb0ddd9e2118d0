"""Answers that came with a 200 but not whole: an event stream ended before its protocol's end
mark, a body cut short by its connection. locust's client hands both on as if whole; the load must
count them as failed requests (docs/load.md, "The edge"), not as answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bascule.eventstream import is_event_stream, read_event_stream
from bascule.journal.samples import RequestSample
from bascule.load.generator import LoadGenerator
from bascule.model.scenario import Load
from bascule.probes.base import read_path

ROOT = Path(__file__).resolve().parent.parent
APS_PATH = ROOT / "designs" / "active-passive-sovereign.yaml"


def _chunk(text: str) -> dict[str, object]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}


def _sse(*data: object, done: bool) -> bytes:
    events = [f"data: {json.dumps(d)}\n\n" for d in data] + (["data: [DONE]\n\n"] if done else [])
    return "".join(events).encode()


def test_a_chat_stream_is_whole_only_with_its_end_mark() -> None:
    whole = read_event_stream(_sse(_chunk("Thirty-six "), _chunk("months."), done=True))
    assert whole.ended is True and whole.cut_reason() is None
    assert read_path(whole, "choices.0.delta.content") == "Thirty-six months."
    cut = read_event_stream(_sse(_chunk("Thirty-six "), done=False))
    assert cut.ended is False
    assert cut.cut_reason() == (
        "StreamCut: the event stream ended after 1 event without data: [DONE]: an answer cut short"
    )
    crlf = read_event_stream(b'data: {"choices": []}\r\n\r\ndata: [DONE]\r\n\r\n')
    assert crlf.ended is True


def test_anthropic_and_responses_streams_end_with_their_own_events() -> None:
    start = 'event: message_start\ndata: {"type": "message_start"}\n\n'
    delta = 'event: content_block_delta\ndata: {"type": "content_block_delta", "delta": {"text": "hi"}}\n\n'
    stop = 'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    assert read_event_stream(start + delta + stop).ended is True
    cut = read_event_stream(start + delta)
    assert cut.ended is False and "without event: message_stop" in (cut.cut_reason() or "")
    assert read_path(read_event_stream(start + delta), "delta.text") == "hi"
    created = 'data: {"type": "response.created"}\n\n'
    assert read_event_stream(created + 'data: {"type": "response.completed"}\n\n').ended is True
    assert read_event_stream(created + 'data: {"type": "response.output_text.delta"}\n\n').ended is False


def test_a_stream_of_no_known_protocol_is_not_judged_but_an_empty_one_is_no_answer() -> None:
    ticker = read_event_stream('event: tick\ndata: {"price": 3}\n\n: comment\n\ndata: plain text\n\n')
    assert ticker.ended is None and ticker.cut_reason() is None
    assert ticker.data == ({"price": 3}, "plain text")
    assert read_event_stream(b"").cut_reason() == (
        "StreamCut: the event stream ended after 0 events without any event: an answer cut short"
    )
    assert is_event_stream("text/event-stream; charset=utf-8") and not is_event_stream("application/json")


# -- locust for real, against services that cut their answers -----------------------------------


def _read_request(conn: socket.socket, buffer: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end]).lower()
    length = 0
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(buffer) < end + length:
        data = conn.recv(65536)
        if not data:
            return None
        buffer += data
    body = bytes(buffer[end : end + length])
    del buffer[: end + length]
    return body


def _streamed(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


Answer = Callable[[bytes], tuple[bytes, bool]]
"""The bytes to answer a request body with, and whether to close the connection after them."""


def _answer_aws(request: bytes) -> tuple[bytes, bool]:
    return _streamed(_sse(_chunk("Thirty-six "), done=False)), False  # ended cleanly, cut short


def _answer_par(request: bytes) -> tuple[bytes, bool]:
    data_class = json.loads(request)["data_class"]
    if data_class == "confidential":
        return _streamed(_sse(_chunk("Thirty-six "), _chunk("months."), done=True)), False
    if data_class == "internal":  # a Content-Length the connection never delivers
        return (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 90\r\n\r\n"
            b'{"answer": "Thirt',
            True,
        )
    return _streamed(_sse(_chunk("Thirty-six "), done=False)), False


class _Service:
    """A keep-alive HTTP/1.1 service on 127.0.0.1 answering every request with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            conn.settimeout(10)
            while not self.stopping.is_set():
                try:
                    request = _read_request(conn, buffer)
                except OSError:
                    return
                if request is None:
                    return
                self.requests += 1
                data, close = self.answer(request)
                conn.sendall(data)
                if close:
                    return

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def services() -> Iterator[dict[str, _Service]]:
    running = {"aws/us-east-1": _Service(_answer_aws), "scaleway/fr-par": _Service(_answer_par)}
    try:
        yield running
    finally:
        for service in running.values():
            service.stop()


def test_answers_cut_short_are_failed_requests_and_fail_over(
    services: dict[str, _Service], tmp_path: Path
) -> None:
    load = Load.model_validate(
        {
            "users": 3,
            "think_time": 0.05,
            "mix": {"data_classes": {"public": 1, "internal": 1, "confidential": 1}, "writes": 0},
            "requests": {
                "ask_path": "/v1/chat/completions",
                "ask": {
                    "stream": True,
                    "messages": [{"role": "user", "content": "{question}"}],
                    "data_class": "{data_class}",
                },
                "questions": ["How long is the Lyon contract?"],
            },
        }
    )
    origin, duration = time.monotonic() + 2.5, 3.0
    entries = {region: service.url for region, service in services.items()}
    samples: list[RequestSample] = []
    with LoadGenerator.start(APS_PATH, entries, load, duration, tmp_path, origin=origin, seed=5) as gen:
        samples.extend(gen.samples())  # locust exits 1 after failures of its own count
    by_class = {k: [s for s in samples if s.data_class == k] for k in ("public", "internal", "confidential")}
    assert all(len(found) >= 5 for found in by_class.values()), {k: len(v) for k, v in by_class.items()}
    assert services["aws/us-east-1"].requests >= len(by_class["public"]) + len(by_class["internal"])
    # Cut in both regions: failed, with why.
    assert not any(s.ok for s in by_class["public"])
    assert {s.error for s in by_class["public"]} == {
        "StreamCut: the event stream ended after 1 event without data: [DONE]: an answer cut short"
    }
    assert not any(s.ok for s in by_class["internal"])
    assert all(
        (s.error or "").startswith("IncompleteBody: the connection ended 17 bytes")
        for s in by_class["internal"]
    )
    # Whole where it was served: answers.
    assert all(s.ok and s.entry_region == "scaleway/fr-par" for s in by_class["confidential"])


# -- probes: a streamed answer read as its client assembles it ----------------------------------


def test_a_rag_probe_reads_a_streamed_answer_and_fails_one_cut_short() -> None:
    import asyncio

    import httpx
    from pydantic import TypeAdapter

    from bascule.model.loading import read_design
    from bascule.model.probes import AnyProbe, ProbeSpec
    from bascule.probes.base import ProbeContext, make_probe, sample_once

    streams = {
        "aws.test": _sse(_chunk("Pumps run "), _chunk("24 h a day."), done=False),
        "par.test": _sse(_chunk("Pumps run "), _chunk("24 h a day."), done=True),
    }

    def service(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx.Response(200, content=streams[request.url.host], headers=headers)

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(service))

    design = read_design(APS_PATH)
    entries = {"aws/us-east-1": "http://aws.test", "scaleway/fr-par": "http://par.test"}
    context = ProbeContext(design=design, client_factory=client, entries=entries)
    specs: TypeAdapter[ProbeSpec] = TypeAdapter(AnyProbe)

    def sample(fields: dict[str, object]) -> RequestSample:
        probe = make_probe(
            specs.validate_python(
                {
                    "kind": "rag",
                    "question": "How long do pumps run?",
                    "facts": ["24 h"],
                    "data_class": "internal",
                    "request": {"stream": True, "messages": [{"role": "user", "content": "{question}"}]},
                    "paths": {"answer": "choices.0.delta.content"},
                    **fields,
                }
            ),
            context,
        )

        async def go() -> RequestSample:
            async with client() as c:
                return await sample_once(probe, c, time.monotonic())

        return asyncio.run(go())

    # Through the edge: the cut stream in aws/us-east-1 is a failure of that region; fr-par answers.
    through = sample({"url": "/v1/chat/completions"})
    assert through.ok and through.correct is True and through.entry_region == "scaleway/fr-par"
    whole = sample({"url": "http://par.test/v1/chat/completions"})
    assert whole.ok and whole.correct is True
    cut = sample({"url": "http://aws.test/v1/chat/completions"})
    assert not cut.ok and cut.error == (
        "StreamCut: the event stream ended after 2 events without data: [DONE]: an answer cut short"
    )
