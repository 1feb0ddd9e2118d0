"""Transport faults on the bytes a hop answers, toxiproxy's way — `bandwidth`, `limit-data`,
`slicer` and `slow-close` —
as httpx and the official `mistralai` client see them through a fault-plane route in front of
the reference llm service; and what Kubernetes makes of them."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kube_world import TARGET, mapping, touch_of
from local_helpers import ROOT, phase
from mistralai.client import Mistral

from bascule.faults import Bandwidth, LimitData, Slicer, SlowClose
from bascule.model.loading import read_design
from bascule.model.selector import Selector
from bascule.stack import prompt
from bascule.stack.layout import layout
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local import faultstate as fs
from bascule.targets.local.effects import RouteFault, compute_effects
from bascule.targets.local.proxy import FaultPlane, Upstream
from tests.test_llm import MODEL, PASSAGES, QUESTION, chat_body

LLM = Selector(component="llm", region="aws/us-east-1")
FACTS = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}


def test_the_kinds_as_data() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    for fault, state in [
        (Bandwidth(rate=1000), fs.Bandwidth(rate=1000)),
        (LimitData(limit=10, reset=True), fs.LimitData(limit=10, reset=True)),
        (
            Slicer(average_size=8, size_variation=2, delay=0.01),
            fs.Slicer(average_size=8, size_variation=2, delay=0.01),
        ),
        (SlowClose(delay=2.0), fs.SlowClose(delay=2.0)),
    ]:
        _, touch = phase(design, fault, LLM)
        effects = compute_effects(fault, touch, layout(design))
        assert effects and all(isinstance(e, RouteFault) and e.state == state for e in effects)
        assert fs.parse_proxy_fault(fs.dump_proxy_fault(state)) == state
    bandwidth = compute_calls(
        Bandwidth(rate=125_000),
        touch_of(Bandwidth(rate=1), LLM),
        mapping(TARGET),
        FACTS,
        run_id="r",
        key="p0",
    )
    (call,) = bandwidth.calls
    assert call.resource.kind == "NetworkChaos" and call.body is not None
    assert call.body["spec"]["action"] == "bandwidth"
    assert call.body["spec"]["bandwidth"]["rate"] == "1000000bps"
    assert any("shared by its connections" in n for n in bandwidth.notes)
    limited = compute_calls(
        LimitData(limit=1), touch_of(LimitData(limit=1), LLM), mapping(TARGET), FACTS, run_id="r", key="p0"
    )
    assert limited.refusal is not None and limited.refusal.rule is RefusalRule.UNSUPPORTED
    for fault in (Slicer(average_size=8), SlowClose(delay=1.0)):
        plan = compute_calls(fault, touch_of(fault, LLM), mapping(TARGET), FACTS, run_id="r", key="p0")
        assert plan.refusal is not None and plan.refusal.rule is RefusalRule.UNSUPPORTED
        assert fault.kind in plan.refusal.message and "NetworkChaos" in plan.refusal.message
    with pytest.raises(ValueError, match="size_variation"):
        Slicer(average_size=4, size_variation=4)
    with pytest.raises(ValueError, match="delay"):
        SlowClose(delay=0.0)


def test_bandwidth_paces_the_answers(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=20.0) as client:
        started = time.monotonic()
        plain = client.post(f"{route}/v1/chat/completions", json=chat_body())
        quick = time.monotonic() - started
        size = len(plain.content) + 300  # the body and about its head
        plane.set_fault("r", fs.Bandwidth(rate=1000))
        started = time.monotonic()
        slow = client.post(f"{route}/v1/chat/completions", json=chat_body())
        took = time.monotonic() - started
    assert slow.status_code == 200 and slow.json()["choices"] == plain.json()["choices"]
    assert took >= 0.8 * size / 1000 and took > quick + 0.5, (took, quick, size)


def test_bandwidth_seen_by_the_mistral_client_streaming(plane: FaultPlane, route: str) -> None:
    plane.set_fault("r", fs.Bandwidth(rate=2000))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="k", server_url=route) as client:
        started = time.monotonic()
        seen = []
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            for _event in stream:
                seen.append(time.monotonic() - started)
    assert len(seen) > 5 and seen[-1] - seen[0] >= 0.5, "events trickle in at the link's pace"


@pytest.mark.parametrize(("reset", "error"), [(False, httpx.RemoteProtocolError), (True, httpx.HTTPError)])
def test_limit_data_cuts_the_connection_after_n_bytes(
    plane: FaultPlane, route: str, reset: bool, error: type[Exception]
) -> None:
    plane.set_fault("r", fs.LimitData(limit=400, reset=reset))
    with httpx.Client(timeout=10.0) as client, pytest.raises(error):
        client.post(f"{route}/v1/chat/completions", json=chat_body())
    # Small answers fit: a new connection gets the limit afresh, and is cut only past it.
    assert httpx.get(f"{route}/healthz", timeout=5.0).status_code == 200
    stats = plane.stats("r")
    assert stats.requests_faulted == 1 and stats.connections_reset == (1 if reset else 0)


def test_slicer_cuts_answers_into_delayed_pieces(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=20.0) as client:
        plain = client.post(f"{route}/v1/chat/completions", json=chat_body())
        size = len(plain.content) + 200  # the body and at least its head
        plane.set_fault("r", fs.Slicer(average_size=16, size_variation=8, delay=0.01))
        started = time.monotonic()
        chunks: list[bytes] = []
        with client.stream("POST", f"{route}/v1/chat/completions", json=chat_body()) as sliced:
            chunks.extend(sliced.iter_raw())
        took = time.monotonic() - started
    body = b"".join(chunks)
    assert (
        sliced.status_code == 200
        and httpx.Response(200, content=body).json()["choices"] == (plain.json()["choices"])
    )
    pieces = size // 24  # at least this many pieces of at most 16 + 8 bytes
    assert took >= 0.8 * (pieces - 1) * 0.01, (took, pieces)
    # The pieces arrive apart: the client reads the body in many small reads, not one.
    assert len(chunks) >= len(body) // 48, [len(c) for c in chunks]
    assert plane.stats("r").bytes_dropped == 0


def test_slicer_seen_by_the_mistral_client_streaming(plane: FaultPlane, route: str) -> None:
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)

    def answer() -> str:
        with (
            Mistral(api_key="k", server_url=route) as client,
            client.chat.stream(model=MODEL, messages=messages) as stream,
        ):
            return "".join(
                str(event.data.choices[0].delta.content or "") for event in stream if event.data.choices
            )

    whole = answer()
    plane.set_fault("r", fs.Slicer(average_size=7, size_variation=3, delay=0.002))
    assert whole and answer() == whole, "events split across reads are put back together"


class _CloseDelimited(socketserver.BaseRequestHandler):
    """An HTTP/1.1 answer with neither a length nor chunking: its body ends when the server closes."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nhello")
        self.request.shutdown(socket.SHUT_WR)


@pytest.fixture
def close_delimited(plane: FaultPlane) -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _CloseDelimited)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = plane.add_route("eof", Upstream("127.0.0.1", server.server_address[1]))
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


def test_slow_close_holds_an_answer_read_to_its_close(plane: FaultPlane, close_delimited: str) -> None:
    started = time.monotonic()
    assert httpx.get(close_delimited, timeout=10.0).text == "hello"
    quick = time.monotonic() - started
    plane.set_fault("eof", fs.SlowClose(delay=1.5))
    started = time.monotonic()
    late = httpx.get(close_delimited, timeout=10.0)
    took = time.monotonic() - started
    assert late.text == "hello" and took >= 1.4 and took > quick + 1.0, (took, quick)
    assert plane.stats("eof").requests_faulted == 1


def test_slow_close_leaves_framed_answers_alone(plane: FaultPlane, route: str) -> None:
    """A framed answer (Content-Length, or chunked as every stream) ends before the close: neither
    httpx nor the mistralai client streaming waits for it."""
    plane.set_fault("r", fs.SlowClose(delay=5.0))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    started = time.monotonic()
    with httpx.Client(timeout=20.0) as client:
        assert client.post(f"{route}/v1/chat/completions", json=chat_body()).status_code == 200
    with (
        Mistral(api_key="k", server_url=route) as mistral,
        mistral.chat.stream(model=MODEL, messages=messages) as stream,
    ):
        assert sum(1 for _ in stream) > 1
    assert time.monotonic() - started < 4.0
