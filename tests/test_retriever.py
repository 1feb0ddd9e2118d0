"""The reference retriever: embeds questions, searches its region's store, reports its hops.

The retriever and its stores run for real on 127.0.0.1 port 0 as uvicorn servers in threads
(the retriever once as a subprocess through the module's entry point); a dead store is a port
bound without listening, so connections to it are refused.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from bascule.stack import retriever, serve, store
from bascule.stack.retriever import RetrieverConfig, parse_args

DOCS = [
    {
        "id": "MOOR-001",
        "title": "Mooring the SF-220 islands",
        "text": "Each SF-220 island is moored by helical anchors screwed 18 m into the lake bed.",
        "data_class": "internal",
    },
    {
        "id": "SAFE-001",
        "title": "Diving safety",
        "text": "Divers always work in pairs and never dive when the wind exceeds 40 km/h.",
        "data_class": "public",
    },
    {
        "id": "FIN-001",
        "title": "Tariff negotiation",
        "text": "The confidential floor price for the anchors tender is 61 euros per MWh.",
        "data_class": "confidential",
    },
]
QUESTION = "How deep are the helical anchors of the SF-220 islands screwed?"


def bound_socket() -> socket.socket:
    """A socket bound to an ephemeral port, not listening: connections to it are refused."""
    # serve.bind gives the socket its TCP protocol number, which asyncio needs to set
    # TCP_NODELAY on accepted connections (without it every answer waits ~40 ms).
    return serve.bind("127.0.0.1", 0)


@contextmanager
def serve_app(app: ASGIApp) -> Iterator[str]:
    """Run `app` in a uvicorn thread on an ephemeral port; yield its base URL."""
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "server thread died during startup"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"


@contextmanager
def dead_store() -> Iterator[str]:
    with bound_socket() as sock:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    config = store.StoreConfig(region="scw/fr-par", name="store-1", replication=store.ReplicationMode.NONE)
    with serve_app(store.create_app(config)) as url:
        for document in DOCS:
            assert httpx.post(f"{url}/v1/documents", json=document).status_code == 200
        yield url


@contextmanager
def serve_retriever(*stores: str, **options: Any) -> Iterator[str]:
    config = RetrieverConfig(stores=stores, region="scw/fr-par", name="retriever-1", store_timeout=2.0)
    with serve_app(retriever.create_app(config, **options)) as url:
        yield url


def retrieve(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/retrieve", json=body, timeout=10)


def test_retrieves_the_relevant_passage_with_both_hops(store_url: str) -> None:
    with serve_retriever(store_url) as url:
        answer = retrieve(url, question=QUESTION, data_class="internal")
        assert answer.status_code == 200
        body = answer.json()
        passages = body["passages"]
        assert passages[0]["doc_id"] == "MOOR-001"
        assert passages[0]["title"] == "Mooring the SF-220 islands"
        assert "18 m" in passages[0]["text"]
        assert passages[0]["score"] > 0
        assert set(passages[0]) == {"doc_id", "title", "text", "data_class", "score"}
        assert body["served_by"] == [
            {"component": "retriever", "region": "scw/fr-par", "replica": "retriever-1"},
            {"component": "store", "region": "scw/fr-par", "replica": "store-1"},
        ]
        assert json.loads(answer.headers["x-bascule-served-by"]) == body["served_by"][0]


def test_data_class_caps_what_is_retrieved(store_url: str) -> None:
    with serve_retriever(store_url) as url:

        def ids(data_class: str, **extra: Any) -> list[str]:
            body = retrieve(url, question="anchors tender price", data_class=data_class, **extra).json()
            return [passage["doc_id"] for passage in body["passages"]]

        assert "FIN-001" in ids("confidential")
        assert "FIN-001" not in ids("internal")
        assert "MOOR-001" in ids("internal")
        assert ids("public") == []
        assert len(ids("confidential", k=1)) == 1


def test_store_down_gives_502_with_a_reason() -> None:
    with dead_store() as dead, serve_retriever(dead) as url:
        answer = retrieve(url, question=QUESTION, data_class="internal")
        assert answer.status_code == 502
        body = answer.json()
        assert body["error"] == "store unavailable"
        assert body["reason"]
        assert body["attempts"][0]["store"] == dead
        assert "ConnectError" in body["attempts"][0]["error"]
        assert body["served_by"] == [
            {"component": "retriever", "region": "scw/fr-par", "replica": "retriever-1"}
        ]
        # Never answered: not ready, but alive.
        assert httpx.get(f"{url}/readyz").status_code == 503
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_falls_back_to_the_next_store(store_url: str) -> None:
    with dead_store() as dead, serve_retriever(dead, store_url) as url:
        answer = retrieve(url, question=QUESTION, data_class="internal")
        assert answer.status_code == 200
        assert answer.json()["passages"][0]["doc_id"] == "MOOR-001"


def test_ready_once_a_store_answered(store_url: str) -> None:
    with serve_retriever(store_url) as url:
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready"}


def test_store_errors_and_malformed_answers_give_502() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        if request.url.host == "broken":
            return httpx.Response(500, json={"error": "boom"})
        return httpx.Response(200, json={"unexpected": True})

    def factory() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    with serve_retriever("http://broken", "http://odd", client_factory=factory) as url:
        answer = retrieve(url, question=QUESTION, data_class="public", k=7)
        assert answer.status_code == 502
        attempts = answer.json()["attempts"]
        assert attempts[0] == {"store": "http://broken", "error": 'HTTP 500: {"error":"boom"}'}
        assert attempts[1] == {"store": "http://odd", "error": "malformed search answer"}
    # The store gets the question's embedding, k and the request's class as its ceiling.
    assert seen[0]["k"] == 7 and seen[0]["max_class"] == "public"
    assert len(seen[0]["vector"]) == 1024 and "question" not in seen[0]


def test_store_without_header_is_an_unknown_hop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": []})

    def factory() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    with serve_retriever("http://anonymous", client_factory=factory) as url:
        body = retrieve(url, question=QUESTION, data_class="public").json()
        assert body["passages"] == []
        assert body["served_by"][1] == {"component": "store", "region": None, "replica": None}


@pytest.mark.parametrize(
    "body",
    [
        {"question": QUESTION},
        {"question": "", "data_class": "public"},
        {"question": QUESTION, "data_class": "secret"},
        {"question": QUESTION, "data_class": "public", "k": 0},
    ],
)
def test_bad_requests_get_422(store_url: str, body: dict[str, Any]) -> None:
    with serve_retriever(store_url) as url:
        answer = httpx.post(f"{url}/v1/retrieve", json=body)
        assert answer.status_code == 422
        assert answer.json()["error"] == "invalid request"


def test_parse_args_flags_and_environment() -> None:
    config = parse_args(
        ["--store", "http://s1:80/", "--store", "http://s2:80", "--top-k", "7", "--region", "ovh/gra"],
        environ={},
    )
    assert config.stores == ("http://s1:80", "http://s2:80")
    assert config.top_k == 7 and config.region == "ovh/gra"
    from_env = parse_args([], environ={"BASCULE_RETRIEVER_STORE": "http://s1:80,http://s2:80"})
    assert from_env.stores == ("http://s1:80", "http://s2:80")
    for bad in ([], ["--store", "s1:80"], ["--store", "http://s1", "--top-k", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad, environ={})
    with pytest.raises(ValueError, match="at least one store"):
        RetrieverConfig(stores=())


def test_runs_as_a_module(store_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bascule.stack.retriever", "--port", "0", "--store", store_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=15)
        line = proc.stdout.readline().strip() if ready else ""
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
        url = line.removeprefix("listening on ")
        assert httpx.get(f"{url}/readyz").status_code == 200
        answer = retrieve(url, question=QUESTION, data_class="internal")
        assert answer.json()["passages"][0]["doc_id"] == "MOOR-001"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_unexpected_errors_are_500_and_still_name_the_hop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("transport bug")

    def factory() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    with serve_retriever("http://store", client_factory=factory) as url:
        answer = retrieve(url, question=QUESTION, data_class="public")
        assert answer.status_code == 500
        assert answer.json()["reason"] == "RuntimeError: transport bug"
        assert json.loads(answer.headers["x-bascule-served-by"])["component"] == "retriever"
