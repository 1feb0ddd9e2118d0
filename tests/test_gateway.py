"""The reference gateway: routing, sovereignty guard, breakers, failback, retries, hedging.

The gateway and fake upstreams (retriever, llm, store per region, written here) run as real
uvicorn servers on 127.0.0.1 ephemeral ports, so connection refusals and timeouts are real.
Breakers, the retry budget and the router are also tested alone on a fake clock.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bascule.model.loading import parse_design
from bascule.stack import prompt
from bascule.stack.breaker import BreakerState, CircuitBreaker, RetryBudget
from bascule.stack.gateway.app import create_app
from bascule.stack.gateway.config import GatewayConfig, parse_args
from bascule.stack.gateway.wire import retrieval_only_answer
from bascule.stack.routing import RegionHealth, Router, UnknownDataClassError

AWS = "aws/us-east-1"
PAR = "scaleway/fr-par"
REGIONS = (AWS, PAR)
QUESTION = "How are the floats moored?"
DOCUMENTS = [
    {
        "doc_id": "MOOR-001",
        "title": "Mooring",
        "text": "Each float is moored by four helical anchors. They are inspected every spring.",
        "score": 0.9,
    },
    {
        "doc_id": "PAN-002",
        "title": "Panels",
        "text": "The panels are bifacial modules rated at 550 W. They tilt by 12 degrees.",
        "score": 0.4,
    },
]


def design_text(
    *,
    mode: str = "active-passive",
    guard: bool = True,
    budget: float = 1.0,
    attempts: int = 3,
    request_timeout: str = "2s",
    hedging: str | None = None,
    aws_retrievers: int = 1,
) -> str:
    hedge = f"\n  hedging: {{after: {hedging}}}" if hedging else ""
    return f"""
id: gateway-test
regions:
  - id: {AWS}
  - id: {PAR}
components:
  gateway: {{replicas: {{{AWS}: 1, {PAR}: 1}}}}
  retriever: {{replicas: {{{AWS}: {aws_retrievers}, {PAR}: 1}}}}
  store: {{replicas: {{{AWS}: 1, {PAR}: 1}}}}
  llm:
    replicas:
      {AWS}: {{replicas: 1, model: mistral-large-latest}}
      {PAR}: {{replicas: 1, model: mistral-small-latest}}
routing:
  mode: {mode}
  order: [{AWS}, {PAR}]
  sovereignty_guard: {str(guard).lower()}
  health_check: {{interval: 100ms, timeout: 200ms}}
  retry:
    attempts: {attempts}
    budget: {budget}
    min_retries_per_second: 0
    backoff_base: 5ms
    backoff_max: 20ms
  circuit_breaker: {{failure_threshold: 2, window: 10s, open_for: 300ms, half_open_probes: 1}}
  timeouts: {{connect: 200ms, request: {request_timeout}}}
  failback: {{after_healthy_for: 500ms}}{hedge}
data_classes:
  internal: {{min_sovereignty: foreign}}
  confidential: {{min_sovereignty: sovereign}}
"""


# --- servers ---------------------------------------------------------------------------------


class ThreadServer:
    """An ASGI app served by uvicorn in a thread; restartable on the same port."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=0.2)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "server thread died during startup"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)

    def request_stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def stop(self) -> None:
        self.request_stop()
        if self._server is None or self._thread is None or self._sock is None:
            return
        self._thread.join(timeout=10)
        self._sock.close()
        alive = self._thread.is_alive()
        self._server = self._thread = self._sock = None
        assert not alive, "server thread did not stop"


@dataclass
class Upstream:
    """A fake retriever, llm or store of one region, and what it received."""

    component: str
    region: str
    status: int | None = None
    """Answer every /v1 request with this status instead."""
    delay: float = 0.0
    """Seconds before answering /v1 requests."""
    reported: list[dict[str, Any]] | None = None
    """A retriever's ``served_by`` to report instead of its own and its store's hops."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    server: ThreadServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def data_classes(self) -> list[str]:
        return [str(r.get("data_class")) for r in self.requests]


def _served_by(upstream: Upstream) -> dict[str, str]:
    hop = {"component": upstream.component, "region": upstream.region, "replica": "r0"}
    return {"x-bascule-served-by": json.dumps(hop)}


def fake_app(upstream: Upstream) -> Starlette:
    seq = {"n": 0}

    async def gate(request: Request) -> tuple[dict[str, Any], Response | None]:
        body = await request.json()
        upstream.requests.append(body)
        upstream.headers.append(dict(request.headers))
        if upstream.delay:
            await asyncio.sleep(upstream.delay)
        if upstream.status is not None:
            refusal = JSONResponse({"message": "injected"}, status_code=upstream.status)
            return body, refusal
        return body, None

    async def retrieve(request: Request) -> Response:
        body, refusal = await gate(request)
        if refusal is not None:
            return refusal
        hops = [
            {"component": "retriever", "region": upstream.region, "replica": "retriever-0"},
            {"component": "store", "region": upstream.region, "replica": "store-0"},
        ]
        reported = hops if upstream.reported is None else upstream.reported
        return JSONResponse({"passages": DOCUMENTS[: body.get("k", 4)], "served_by": reported})

    async def chat(request: Request) -> Response:
        body, refusal = await gate(request)
        if refusal is not None:
            return refusal
        question, passages = prompt.parse_context(body["messages"])
        answer = prompt.extract_answer(question, passages)
        message = {"role": "assistant", "content": answer.text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        completion = {"id": "x", "object": "chat.completion", "model": body["model"]}
        return JSONResponse({**completion, "choices": [choice]}, headers=_served_by(upstream))

    async def documents(request: Request) -> Response:
        body, refusal = await gate(request)
        if refusal is not None:
            return refusal
        seq["n"] += 1
        ack = {
            "id": body.get("id") or uuid.uuid4().hex,
            "seq": seq["n"],
            "acknowledged_at": time.time(),
            "replicated": False,
        }
        return JSONResponse(ack, headers=_served_by(upstream))

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "ready"})

    return Starlette(
        routes=[
            Route("/v1/retrieve", retrieve, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/documents", documents, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/readyz", ready, methods=["GET"]),
            Route("/healthz", ready, methods=["GET"]),
        ]
    )


@dataclass
class Stack:
    upstreams: dict[tuple[str, str], Upstream]
    gateway: ThreadServer
    client: httpx.Client

    def up(self, component: str, region: str) -> Upstream:
        return self.upstreams[(component, region)]

    def ask(self, data_class: str = "internal", question: str = QUESTION) -> httpx.Response:
        return self.client.post("/v1/ask", json={"question": question, "data_class": data_class})

    def write(self, data_class: str = "internal", **fields: str) -> httpx.Response:
        body = {"text": "Anchors are checked every spring.", "data_class": data_class, **fields}
        return self.client.post("/v1/documents", json=body)

    def status(self) -> dict[str, Any]:
        response = self.client.get("/v1/status")
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result

    def breaker(self, component: str, region: str) -> dict[str, Any]:
        for entry in self.status()["breakers"]:
            if entry["component"] == component and entry["region"] == region:
                return dict(entry)
        raise KeyError((component, region))


def hops(body: dict[str, Any], component: str) -> list[str]:
    return [hop["region"] for hop in body["served_by"] if hop["component"] == component]


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack() -> Iterator[StackFactory]:
    servers: list[ThreadServer] = []
    clients: list[httpx.Client] = []

    def make(text: str | None = None, *, max_inflight: int | None = None, **app_options: Any) -> Stack:
        design = parse_design(text or design_text())
        upstreams = {}
        for component in ("retriever", "llm", "store"):
            for region in REGIONS:
                upstream = Upstream(component, region)
                upstream.server = ThreadServer(fake_app(upstream))
                servers.append(upstream.server)
                upstream.server.start()
                upstreams[(component, region)] = upstream

        def urls(component: str) -> dict[str, str]:
            return {r: upstreams[(component, r)].url for r in REGIONS}

        config = GatewayConfig(
            region=PAR,
            name="gateway-test",
            retrievers=urls("retriever"),
            llms=urls("llm"),
            stores=urls("store"),
            max_inflight=max_inflight,
        )
        gateway = ThreadServer(create_app(config, design, **app_options))
        servers.insert(0, gateway)
        gateway.start()
        client = httpx.Client(base_url=gateway.url, timeout=10, trust_env=False)
        clients.append(client)
        return Stack(upstreams, gateway, client)

    try:
        yield make
    finally:
        for client in clients:
            client.close()
        # Stopping all at once: each uvicorn server takes a tick or two to notice.
        for server in servers:
            server.request_stop()
        for server in servers:
            server.stop()


# --- (a), (b), (h): where asks go ------------------------------------------------------------


def test_internal_ask_is_served_by_the_first_region_when_healthy(make_stack: StackFactory) -> None:
    stack = make_stack()
    response = stack.ask("internal")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["degraded"] is False
    assert hops(body, "gateway") == [PAR]
    assert hops(body, "retriever") == [AWS]
    assert hops(body, "store") == [AWS]
    assert hops(body, "llm") == [AWS]
    llm_hop = body["served_by"][-1]
    assert llm_hop["provider"] == "aws"
    assert llm_hop["jurisdiction"] == "US"
    assert llm_hop["sovereignty"] == "foreign"
    assert llm_hop["model"] == "mistral-large-latest"
    assert body["citations"] == ["MOOR-001"]
    assert "[doc:MOOR-001]" in body["answer"]
    assert body["latency_ms"] > 0
    assert response.headers["x-bascule-served-by"]
    with_tenant = {"question": QUESTION, "data_class": "internal", "tenant": "acme"}
    assert stack.client.post("/v1/ask", json=with_tenant).json()["tenant"] == "acme"
    assert stack.up("retriever", AWS).requests[0] == {
        "question": QUESTION,
        "data_class": "internal",
        "k": 4,
    }


def test_confidential_ask_never_touches_a_foreign_region(make_stack: StackFactory) -> None:
    stack = make_stack()
    for _ in range(3):
        response = stack.ask("confidential")
        assert response.status_code == 200, response.text
        body = response.json()
        assert {hop["region"] for hop in body["served_by"]} == {PAR}
        assert {hop["sovereignty"] for hop in body["served_by"]} == {"sovereign"}
    assert stack.write("confidential").status_code == 200
    for component in ("retriever", "llm", "store"):
        assert stack.up(component, AWS).requests == []
    assert stack.up("retriever", PAR).data_classes() == ["confidential"] * 3
    assert stack.up("store", PAR).data_classes() == ["confidential"]


def test_without_the_guard_confidential_data_goes_to_aws(make_stack: StackFactory) -> None:
    stack = make_stack(design_text(guard=False))
    body = stack.ask("confidential").json()
    assert hops(body, "retriever") == [AWS]
    assert hops(body, "llm") == [AWS]
    assert "foreign" in {hop["sovereignty"] for hop in body["served_by"]}
    assert stack.up("retriever", AWS).data_classes() == ["confidential"]


def test_hops_are_recorded_as_reported_and_unknown_ones_count_as_foreign(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    stack.up("retriever", AWS).reported = [
        {"component": "retriever", "region": "scaleway-fr-par", "replica": "r9"},
        {"component": "store", "region": None, "replica": None},
    ]
    body = stack.ask("internal").json()
    retriever_hop, store_hop = body["served_by"][1:3]
    assert retriever_hop == {
        "component": "retriever",
        "region": PAR,
        "provider": "scaleway",
        "jurisdiction": "EU",
        "sovereignty": "sovereign",
        "replica": "r9",
    }
    assert store_hop == {
        "component": "store",
        "region": "unknown",
        "provider": "unknown",
        "jurisdiction": "",
        "sovereignty": "foreign",
    }


# --- (c): fail closed -------------------------------------------------------------------------


def test_guard_fails_closed_when_the_sovereign_region_is_down(make_stack: StackFactory) -> None:
    stack = make_stack()
    for component in ("retriever", "llm", "store"):
        server = stack.up(component, PAR).server
        assert server is not None
        server.stop()
    # The first asks find fr-par down; later ones find its breaker open: both fail closed.
    for _ in range(3):
        response = stack.ask("confidential")
        assert response.status_code == 403, response.text
        body = response.json()
        assert body["error"] == "sovereignty"
        assert "no region allowed for 'confidential' is available" in body["message"]
        assert AWS in body["message"]
        assert body["refused"] == [{"region": AWS, "sovereignty": "foreign"}]
        assert body["allowed"] == [PAR]
    write = stack.write("confidential")
    assert write.status_code == 403
    assert "no region allowed for 'confidential' is available" in write.json()["message"]
    for component in ("retriever", "llm", "store"):
        assert stack.up(component, AWS).requests == []
    assert stack.ask("internal").status_code == 200


def test_a_class_with_no_region_at_its_level_fails_closed_without_calls(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(design_text() + "  secret: {min_sovereignty: sovereign}\n")
    # Only fr-par is sovereign; routing it out of the design's order leaves nothing allowed.
    text = design_text().replace(f"order: [{AWS}, {PAR}]", f"order: [{AWS}]")
    router = Router(parse_design(text), [("retriever", AWS)])
    route = router.route("confidential", ("retriever", "llm"))
    assert (route.order, route.refused) == ((), (AWS,))
    assert stack.ask("secret").status_code == 200
    stack.up("retriever", PAR).status = 503
    response = stack.ask("secret")
    assert response.status_code == 403
    assert "no region allowed for 'secret' is available" in response.json()["message"]
    assert stack.up("retriever", AWS).requests == []


# --- (d): failover, breaker, failback with hysteresis ----------------------------------------


def test_failover_opens_the_breaker_and_fails_back_after_hysteresis(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    assert hops(stack.ask().json(), "retriever") == [AWS]
    aws_retriever = stack.up("retriever", AWS).server
    assert aws_retriever is not None
    aws_retriever.stop()

    for _ in range(3):
        response = stack.ask()
        assert response.status_code == 200, response.text
        assert hops(response.json(), "retriever") == [PAR]
    breaker = stack.breaker("retriever", AWS)
    assert breaker["state"] != "closed"
    assert breaker["trips"] >= 1
    assert stack.status()["preferred"]["internal"] == PAR

    aws_retriever.start()
    restarted = time.monotonic()
    returned_after = None
    saw_recovering = False
    while time.monotonic() - restarted < 5:
        status = stack.status()
        entry = next(b for b in status["breakers"] if b["component"] == "retriever" and b["region"] == AWS)
        recent = entry["healthy_for"] is not None and entry["healthy_for"] < 0.4
        if entry["state"] == "closed" and recent:
            # Recovered but not yet trusted: traffic stays on the fallback (hysteresis).
            assert status["preferred"]["internal"] == PAR
            saw_recovering = True
        body = stack.ask().json()
        if hops(body, "retriever") == [AWS]:
            returned_after = time.monotonic() - restarted
            break
        time.sleep(0.03)
    assert returned_after is not None, "traffic never returned to aws/us-east-1"
    assert returned_after >= 0.5
    assert saw_recovering
    assert stack.breaker("retriever", AWS)["state"] == "closed"
    assert stack.status()["preferred"]["internal"] == AWS


def test_a_hanging_upstream_times_out_and_fails_over(make_stack: StackFactory) -> None:
    stack = make_stack(design_text(request_timeout="300ms"))
    stack.up("retriever", AWS).delay = 3.0
    started = time.monotonic()
    response = stack.ask()
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert hops(response.json(), "retriever") == [PAR]
    assert elapsed < 2.0


def test_a_replica_out_of_slots_sheds_with_503_and_retry_after_and_counts_it(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(max_inflight=2)
    for region in REGIONS:
        stack.up("retriever", region).delay = 0.6
    body = {"question": QUESTION, "data_class": "internal"}
    with (
        httpx.Client(base_url=stack.gateway.url, timeout=10, trust_env=False) as other,
        ThreadPoolExecutor(4) as pool,
    ):
        slow = [pool.submit(other.post, "/v1/ask", json=body) for _ in range(2)]
        time.sleep(0.3)  # both in flight, waiting on the retriever
        assert stack.status()["load"] == {"inflight": 2, "max_inflight": 2, "shed": 0}
        shed = stack.ask()
        write = stack.write()
        assert [f.result().status_code for f in slow] == [200, 200]
    for refused in (shed, write):
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "overloaded"
    assert stack.status()["load"] == {"inflight": 0, "max_inflight": 2, "shed": 2}
    assert stack.ask().status_code == 200, "a freed slot serves again"


def test_max_inflight_comes_from_a_flag_or_the_environment() -> None:
    base = ["--region", AWS, "--design", "d.yaml"]
    assert parse_args(base).max_inflight is None
    assert parse_args([*base, "--max-inflight", "8"]).max_inflight == 8
    assert parse_args(base, {"BASCULE_GATEWAY_MAX_INFLIGHT": "3"}).max_inflight == 3


# --- (e): degraded mode -----------------------------------------------------------------------


def test_llm_down_everywhere_allowed_gives_a_cited_retrieval_only_answer(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    par_llm = stack.up("llm", PAR).server
    assert par_llm is not None
    par_llm.stop()
    # Only fr-par may serve confidential asks: its llm being down degrades them, while the aws
    # llm keeps serving internal asks and never sees a confidential one.
    body = stack.ask("confidential").json()
    assert body["degraded"] is True
    assert body["citations"] == ["MOOR-001", "PAN-002"]
    assert body["answer"] == (
        "Each float is moored by four helical anchors. [doc:MOOR-001] "
        "The panels are bifacial modules rated at 550 W. [doc:PAN-002]"
    )
    assert hops(body, "llm") == []
    assert hops(body, "retriever") == [PAR]
    assert "no allowed llm answered" in body["degraded_reason"]
    assert stack.up("llm", AWS).requests == []
    internal = stack.ask("internal").json()
    assert internal["degraded"] is False
    assert hops(internal, "llm") == [AWS]

    aws_llm = stack.up("llm", AWS).server
    assert aws_llm is not None
    aws_llm.stop()
    for _ in range(3):
        body = stack.ask("internal").json()
        assert body["degraded"] is True
        assert body["citations"]
        for citation in body["citations"]:
            assert f"[doc:{citation}]" in body["answer"]


def test_retrieval_only_answer_cites_first_sentences() -> None:
    passages = [
        prompt.Passage("A-1", "t", "First one. Second one."),
        prompt.Passage("B-2", "t", "Line without a stop\nnext line"),
        prompt.Passage("C-3", "t", "Never reached."),
    ]
    text, citations = retrieval_only_answer(passages)
    assert text == "First one. [doc:A-1] Line without a stop [doc:B-2]"
    assert citations == ("A-1", "B-2")
    assert retrieval_only_answer([]) == (prompt.NO_CONTEXT_ANSWER, ())


# --- (f): retry budget ------------------------------------------------------------------------


@pytest.mark.parametrize(("budget", "retried"), [(0.0, False), (1.0, True)])
def test_retry_budget_zero_means_no_retry(make_stack: StackFactory, budget: float, retried: bool) -> None:
    stack = make_stack(design_text(budget=budget))
    stack.up("retriever", AWS).status = 503
    response = stack.ask()
    assert len(stack.up("retriever", AWS).requests) == 1
    if retried:
        assert response.status_code == 200
        assert hops(response.json(), "retriever") == [PAR]
        assert stack.status()["retry_budget"]["retries"] == 1
    else:
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "unavailable"
        assert stack.up("retriever", PAR).requests == []
        assert stack.status()["retry_budget"]["retries"] == 0


# --- hedging and active-active ----------------------------------------------------------------


def test_hedging_takes_the_first_answer(make_stack: StackFactory) -> None:
    stack = make_stack(design_text(hedging="100ms"))
    stack.up("llm", AWS).delay = 1.5
    started = time.monotonic()
    body = stack.ask().json()
    elapsed = time.monotonic() - started
    assert hops(body, "llm") == [PAR]
    assert body["degraded"] is False
    assert elapsed < 1.2
    assert len(stack.up("llm", AWS).requests) == 1
    assert len(stack.up("llm", PAR).requests) == 1
    # The slow leg was cancelled, not counted as a failure.
    assert stack.breaker("llm", AWS)["state"] == "closed"


def test_active_active_spreads_by_weight_and_keeps_the_guard(make_stack: StackFactory) -> None:
    stack = make_stack(design_text(mode="active-active", aws_retrievers=2))
    served = [hops(stack.ask().json(), "retriever")[0] for _ in range(9)]
    assert served.count(AWS) == 6
    assert served.count(PAR) == 3
    for _ in range(3):
        assert hops(stack.ask("confidential").json(), "retriever") == [PAR]
    assert stack.up("retriever", AWS).data_classes() == ["internal"] * 6


# --- documents --------------------------------------------------------------------------------


def test_documents_write_through_to_the_first_allowed_store(make_stack: StackFactory) -> None:
    stack = make_stack()
    response = stack.write("internal", id="doc-1", title="Anchors")
    assert response.status_code == 200, response.text
    ack = response.json()
    assert ack["id"] == "doc-1"
    assert ack["seq"] == 1
    assert ack["replicated"] is False
    assert "acknowledged_at" in ack
    assert [hop["component"] for hop in ack["served_by"]] == ["gateway", "store"]
    assert ack["served_by"][1]["region"] == AWS
    assert ack["served_by"][1]["replica"] == "r0"
    assert stack.up("store", AWS).requests == [
        {
            "id": "doc-1",
            "title": "Anchors",
            "text": "Anchors are checked every spring.",
            "data_class": "internal",
        }
    ]
    store = stack.up("store", AWS).server
    assert store is not None
    store.stop()
    moved = stack.write("internal")
    assert moved.status_code == 200
    assert moved.json()["served_by"][1]["region"] == PAR


def test_a_store_refusal_is_passed_on_and_not_retried(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.up("store", AWS).status = 409
    response = stack.write("internal")
    assert response.status_code == 409
    assert response.json()["error"] == "rejected"
    assert stack.up("store", PAR).requests == []
    assert stack.breaker("store", AWS)["state"] == "closed"


def test_a_write_the_store_may_have_processed_is_not_retried(make_stack: StackFactory) -> None:
    stack = make_stack()
    stack.up("store", AWS).status = 500
    response = stack.write("internal")
    assert response.status_code == 503
    assert stack.up("store", PAR).requests == []


# --- requests the gateway refuses -------------------------------------------------------------


def test_bad_requests(make_stack: StackFactory) -> None:
    stack = make_stack()
    unknown = stack.ask("top-secret")
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "unknown-data-class"
    assert "top-secret" in unknown.json()["message"]
    invalid = stack.client.post("/v1/ask", json={"question": "  ", "data_class": "internal"})
    assert invalid.status_code == 422
    garbage = stack.client.post("/v1/ask", content=b"{not json")
    assert garbage.status_code == 422
    huge = stack.client.post("/v1/ask", content=b"x" * 100_000)
    assert huge.status_code == 413
    assert stack.client.get("/healthz").status_code == 200
    assert stack.client.get("/readyz").json()["status"] == "ready"
    for component in ("retriever", "llm", "store"):
        for region in REGIONS:
            assert stack.up(component, region).requests == []


# --- injection points -------------------------------------------------------------------------


class _Stamp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"x-stamp", b"1")]}
            await send(message)

        await self.app(scope, receive, stamped)


def test_client_factory_middleware_and_headers_provider(make_stack: StackFactory) -> None:
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        client = httpx.AsyncClient(trust_env=False)
        made.append(client)
        return client

    async def credentials() -> dict[str, str]:
        return {"authorization": "Bearer token-1"}

    stack = make_stack(client_factory=factory, middleware=[Middleware(_Stamp)], headers_provider=credentials)
    response = stack.ask()
    assert response.status_code == 200
    assert response.headers["x-stamp"] == "1"
    assert len(made) == 1
    assert stack.up("retriever", AWS).headers[0]["authorization"] == "Bearer token-1"
    assert stack.up("llm", AWS).headers[0]["authorization"] == "Bearer token-1"


def test_a_failing_headers_provider_is_reported(make_stack: StackFactory) -> None:
    async def broken() -> dict[str, str]:
        raise RuntimeError("token service unreachable")

    stack = make_stack(headers_provider=broken)
    response = stack.ask()
    assert response.status_code == 503
    assert response.json()["error"] == "credentials"
    assert "token service unreachable" in response.json()["message"]
    assert stack.breaker("retriever", AWS)["state"] == "closed"


def test_create_app_refuses_regions_outside_the_design() -> None:
    design = parse_design(design_text())
    with pytest.raises(ValueError, match="ovhcloud/gra"):
        create_app(GatewayConfig(region=PAR, retrievers={"ovhcloud/gra": "http://x"}), design)
    with pytest.raises(ValueError, match="nowhere/x"):
        create_app(GatewayConfig(region="nowhere/x"), design)


# --- flags and the process entry point --------------------------------------------------------


def test_parse_args_reads_flags_and_environment() -> None:
    config = parse_args(
        [
            "--design",
            "d.yaml",
            "--region",
            PAR,
            "--retriever",
            f"{AWS}=http://r1:80/",
            "--retriever",
            f"{PAR}=http://r2:80",
            "--llm-model",
            f"{PAR}=ministral-8b-latest",
        ],
        {"BASCULE_GATEWAY_PORT": "0", "BASCULE_GATEWAY_LLM": f"{AWS}=http://l1, {PAR}=http://l2"},
    )
    assert config.port == 0
    assert config.region == PAR
    assert config.retrievers == {AWS: "http://r1:80", PAR: "http://r2:80"}
    assert config.llms == {AWS: "http://l1", PAR: "http://l2"}
    assert config.stores == {}
    assert config.llm_models == {PAR: "ministral-8b-latest"}
    from_env = parse_args([], {"BASCULE_GATEWAY_DESIGN": "d.yaml", "BASCULE_GATEWAY_REGION": AWS})
    assert (from_env.design, from_env.region, from_env.name) == ("d.yaml", AWS, "gateway")


@pytest.mark.parametrize(
    "argv",
    [
        ["--region", PAR],
        ["--design", "d.yaml"],
        ["--design", "d.yaml", "--region", PAR, "--retriever", "no-equals-sign"],
        ["--design", "d.yaml", "--region", PAR, "--llm", f"{PAR}=ftp://x"],
        ["--design", "d.yaml", "--region", PAR, "--llm", f"{PAR}=http://a", "--llm", f"{PAR}=http://b"],
    ],
)
def test_parse_args_refuses_bad_flags(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv, {})
    assert exited.value.code == 2


def test_module_entry_point_serves_and_announces(tmp_path: Path) -> None:
    design = tmp_path / "design.yaml"
    design.write_text(design_text(), encoding="utf-8")
    command = [sys.executable, "-m", "bascule.stack.gateway", "--port", "0"]
    command += ["--design", str(design), "--region", PAR, "--retriever", f"{PAR}=http://127.0.0.1:9"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=20)
        line = proc.stdout.readline().strip() if ready else ""
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
        url = line.removeprefix("listening on ")
        with httpx.Client(base_url=url, trust_env=False, timeout=5) as client:
            assert client.get("/readyz").json()["status"] == "ready"
            status = client.get("/v1/status").json()
            assert status["preferred"] == {"internal": PAR, "confidential": PAR}
            assert [b["region"] for b in status["breakers"]] == [PAR]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_module_entry_point_rejects_a_region_outside_the_design(tmp_path: Path) -> None:
    design = tmp_path / "design.yaml"
    design.write_text(design_text(), encoding="utf-8")
    command = [sys.executable, "-m", "bascule.stack.gateway", "--port", "0"]
    command += ["--design", str(design), "--region", PAR, "--llm", "ovhcloud/gra=http://x"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "ovhcloud/gra" in done.stderr


# --- (g): breaker, budget and router on a fake clock ------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_breaker_opens_after_threshold_within_window() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, window=10, open_for=5, clock=clock)
    for _ in range(2):
        ticket = breaker.acquire()
        assert ticket is not None
        breaker.fail(ticket)
        clock.advance(6)
    # The first failure has left the window: two failures in it, still closed.
    assert breaker.state is BreakerState.CLOSED
    for _ in range(2):
        ticket = breaker.acquire()
        assert ticket is not None
        breaker.fail(ticket)
    assert breaker.state is BreakerState.OPEN
    assert breaker.acquire() is None
    assert breaker.snapshot().open_remaining == 5


def test_breaker_half_open_probes_close_or_reopen() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, window=10, open_for=2, half_open_probes=2, clock=clock)
    first = breaker.acquire()
    late = breaker.acquire()
    assert first is not None and late is not None
    breaker.fail(first)
    assert breaker.state is BreakerState.OPEN
    clock.advance(2)
    assert breaker.state is BreakerState.HALF_OPEN
    probes = [breaker.acquire(), breaker.acquire()]
    assert None not in probes
    assert breaker.acquire() is None
    # A call admitted before the breaker opened reports late: it no longer counts.
    breaker.fail(late)
    assert breaker.state is BreakerState.HALF_OPEN
    probe = probes[0]
    assert probe is not None
    breaker.fail(probe)
    assert breaker.state is BreakerState.OPEN
    assert breaker.snapshot().trips == 2
    clock.advance(2)
    probe = breaker.acquire()
    assert probe is not None
    breaker.release(probe)
    probe = breaker.acquire()
    assert probe is not None
    clock.advance(0.5)
    breaker.succeed(probe)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.healthy_since == clock.now
    clock.advance(1)
    assert breaker.snapshot().healthy_for == 1


def test_breaker_from_policy() -> None:
    design = parse_design(design_text())
    breaker = CircuitBreaker.from_policy(design.routing.circuit_breaker, clock=FakeClock())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().healthy_for == float("inf")


_EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "succeed", "fail", "release"]),
        st.floats(min_value=0, max_value=3, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(events=_EVENTS, probes=st.integers(min_value=1, max_value=3))
def test_breaker_invariants(events: list[tuple[str, float]], probes: int) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, window=5, open_for=2, half_open_probes=probes, clock=clock)
    held = []
    opened_at = None
    for action, pause in events:
        clock.advance(pause)
        state = breaker.state
        if state is BreakerState.OPEN:
            assert opened_at is not None and clock.now - opened_at < 2
            assert breaker.acquire() is None
        if action == "acquire":
            ticket = breaker.acquire()
            if state is BreakerState.CLOSED:
                assert ticket is not None and not ticket.probe
            if ticket is not None:
                held.append(ticket)
        elif held:
            ticket = held.pop(0)
            before = breaker.state
            getattr(breaker, action)(ticket)
            if breaker.state is BreakerState.OPEN and before is not BreakerState.OPEN:
                opened_at = clock.now
        in_flight = sum(1 for t in held if t.probe and breaker.state is BreakerState.HALF_OPEN)
        assert in_flight <= probes or breaker.state is not BreakerState.HALF_OPEN


@settings(max_examples=150, deadline=None)
@given(
    budget=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    events=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0, max_value=4, allow_nan=False)),
        max_size=80,
    ),
)
def test_retry_budget_never_exceeds_its_ratio(budget: float, events: list[tuple[bool, float]]) -> None:
    clock = FakeClock()
    limiter = RetryBudget(budget, window=10, clock=clock)
    for is_retry, pause in events:
        clock.advance(pause)
        if not is_retry:
            limiter.record_request()
            continue
        before = limiter.usage()
        if limiter.try_spend():
            usage = limiter.usage()
            assert usage.retries <= budget * usage.requests + 1e-9
            assert budget > 0
        else:
            assert limiter.usage() == before


def test_retry_budget_floor_lets_a_quiet_service_retry() -> None:
    clock = FakeClock()
    strict = RetryBudget(0.2, window=10, clock=clock)
    floored = RetryBudget(0.2, window=10, min_per_second=0.5, clock=clock)
    for limiter in (strict, floored):
        limiter.record_request()
    assert not strict.try_spend()
    # 0.5 retries/s over a 10 s window: 5 retries on top of the ratio, then no more.
    assert [floored.try_spend() for _ in range(6)] == [True] * 5 + [False]
    clock.advance(10)
    assert floored.try_spend()


def test_retry_budget_window_slides() -> None:
    clock = FakeClock()
    limiter = RetryBudget(0.5, window=10, clock=clock)
    assert not limiter.try_spend()
    limiter.record_request()
    limiter.record_request()
    assert limiter.try_spend()
    assert not limiter.try_spend()
    clock.advance(10)
    assert limiter.usage().requests == 0
    assert not limiter.allows()
    limiter.record_request()
    limiter.record_request()
    assert limiter.allows()
    with pytest.raises(ValueError):
        RetryBudget(1.5)


def test_router_ranks_by_health_with_failback_hysteresis() -> None:
    clock = FakeClock()
    design = parse_design(design_text())
    upstreams = [(c, r) for c in ("retriever", "llm") for r in REGIONS]
    router = Router(design, upstreams, clock=clock)
    components = ("retriever", "llm")
    assert router.route("internal", components).order == (AWS, PAR)
    assert router.route("confidential", components).order == (PAR,)
    assert router.route("confidential", components).refused == (AWS,)
    with pytest.raises(UnknownDataClassError):
        router.route("nope", components)

    breaker = router.breaker("llm", AWS)
    assert breaker is not None
    for _ in range(2):
        ticket = breaker.acquire()
        assert ticket is not None
        breaker.fail(ticket)
    assert router.health(AWS, components) is RegionHealth.UNHEALTHY
    assert router.route("internal", components).order == (PAR, AWS)
    assert router.preferred("internal", components) == PAR
    assert router.take_probes() == []
    clock.advance(0.5)
    (probe,) = router.take_probes()
    assert (probe.component, probe.region) == ("llm", AWS)
    assert router.take_probes() == []
    breaker.succeed(probe.ticket)
    assert router.health(AWS, components) is RegionHealth.RECOVERING
    assert router.route("internal", components).order == (PAR, AWS)
    clock.advance(0.25)
    assert router.preferred("internal", components) == PAR
    clock.advance(0.25)
    assert router.health(AWS, components) is RegionHealth.SETTLED
    assert router.route("internal", components).order == (AWS, PAR)
    # The retriever alone decides a write's route: the llm's trip does not matter there.
    assert router.health(AWS, ("retriever",)) is RegionHealth.SETTLED


def test_router_pilot_light_uses_the_first_settled_region() -> None:
    design = parse_design(design_text(mode="pilot-light"))
    router = Router(design, [("retriever", r) for r in REGIONS], clock=FakeClock())
    orders = {router.route("internal", ("retriever",)).order for _ in range(4)}
    assert orders == {(AWS, PAR)}


def test_router_spreads_active_active_by_retriever_replicas() -> None:
    design = parse_design(design_text(mode="active-active", aws_retrievers=3))
    router = Router(design, [("retriever", r) for r in REGIONS], clock=FakeClock())
    firsts = [router.route("internal", ("retriever",)).order[0] for _ in range(8)]
    assert firsts.count(AWS) == 6
    assert firsts.count(PAR) == 2
    assert router.route("internal", ("retriever",), spread=False).order == (AWS, PAR)
