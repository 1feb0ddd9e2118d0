"""The reference store: writes, search, data-class limits, wipe and replication between peers.

Stores run for real on 127.0.0.1 port 0, as uvicorn servers in threads (one as a subprocess
through the module's entry point). Partitions and gray failures are made by `FaultProxy`, a
TCP proxy between two stores that can pass, refuse or hang connections.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bascule.stack import embedding, serve
from bascule.stack.corpus import DataClass, load_documents
from bascule.stack.store.app import create_app
from bascule.stack.store.config import ReplicationMode, StoreConfig, parse_args
from bascule.stack.store.index import StoredDocument
from bascule.stack.store.log import LogEntry, ReplicationLog
from bascule.stack.store.replica import Store

DOCS = [
    {
        "id": "MOOR-001",
        "title": "Mooring the SF-220 islands",
        "text": "Each SF-220 island is moored by helical anchors screwed 18 m into the lake bed.",
        "data_class": "internal",
        "tags": ["mooring"],
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
        "text": "The confidential floor price for the Lac de Vassivière tender is 61 euros per MWh.",
        "data_class": "confidential",
    },
    {
        "id": "PANEL-001",
        "title": "Panels",
        "text": "Bifacial modules rated at 550 W tilt by 12 degrees on the floats.",
        "data_class": "public",
    },
]


# --- servers and a fault proxy ---------------------------------------------------------------


def bound_socket() -> socket.socket:
    """A socket bound to an ephemeral port, not listening: connections to it are refused."""
    # serve.bind gives the socket its TCP protocol number, which asyncio needs to set
    # TCP_NODELAY on accepted connections (without it every answer waits ~40 ms).
    return serve.bind("127.0.0.1", 0)


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def refused_url() -> Iterator[str]:
    with bound_socket() as sock:
        yield url_of(sock)


@contextmanager
def serve_app(app: ASGIApp, sock: socket.socket | None = None) -> Iterator[str]:
    """Run `app` in a uvicorn thread on `sock` (default: an ephemeral port); yield its URL."""
    sock = bound_socket() if sock is None else sock
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "server thread died during startup"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"


def store_config(**changes: Any) -> StoreConfig:
    return replace(StoreConfig(region="fr-par", name="a"), **changes)


@contextmanager
def serve_store(config: StoreConfig, **options: Any) -> Iterator[str]:
    with serve_app(create_app(config, **options)) as url:
        yield url


class FaultProxy:
    """A TCP proxy to `upstream` whose mode is ``pass``, ``refuse`` or ``hang``.

    ``refuse`` resets every open connection and every new one; ``hang`` accepts connections and
    never answers. It runs its own event loop in a thread, stopped by `close`.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self.mode = "pass"
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "proxy did not start"
        self.url = f"http://127.0.0.1:{self._port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            if self.mode == "hang":
                await reader.read()
                return
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def set_mode(self, mode: str) -> None:
        def apply() -> None:
            self.mode = mode
            for writer in list(self._writers):
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "proxy thread did not stop"
        self._loop.close()


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Seconds until `condition` held; fails the test after `timeout`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(step)
    return time.monotonic() - started


def has_document(url: str, doc_id: str) -> bool:
    return httpx.get(f"{url}/v1/documents/{doc_id}").status_code == 200


def write(url: str, document: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/v1/documents", json=document, timeout=10)


def status(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/v1/replication").json()
    return answer


# --- writes, reads, search -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lone_store() -> Iterator[str]:
    with serve_store(store_config(replication=ReplicationMode.NONE)) as url:
        for document in DOCS:
            assert write(url, document).status_code == 200
        yield url


def test_write_then_read_and_generated_ids(lone_store: str) -> None:
    got = httpx.get(f"{lone_store}/v1/documents/MOOR-001").json()
    assert got["title"] == "Mooring the SF-220 islands"
    assert got["data_class"] == "internal"
    assert got["tags"] == ["mooring"]
    assert got["origin"] == "fr-par/a"

    answer = write(lone_store, {"text": "No id given here.", "data_class": "public"})
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"id", "seq", "acknowledged_at", "replicated"}
    assert body["id"] and body["replicated"] is False
    assert abs(body["acknowledged_at"] - time.time()) < 5
    assert httpx.get(f"{lone_store}/v1/documents/{body['id']}").json()["title"] == body["id"]

    missing = httpx.get(f"{lone_store}/v1/documents/NOPE-404")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not found"


def test_lookup_answers_for_many_ids_what_each_read_would(lone_store: str) -> None:
    ids = ["MOOR-001", "NOPE-404", "MOOR-001", "NOPE-405"]
    answer = httpx.post(f"{lone_store}/v1/documents/lookup", json={"ids": ids})
    assert answer.status_code == 200
    body = answer.json()
    assert body["found"] == ["MOOR-001"]
    assert body["missing"] == ["NOPE-404", "NOPE-405"]
    for doc_id in body["found"]:
        assert httpx.get(f"{lone_store}/v1/documents/{doc_id}").status_code == 200
    for doc_id in body["missing"]:
        assert httpx.get(f"{lone_store}/v1/documents/{doc_id}").status_code == 404
    # A document called "lookup" is still read by its own route.
    assert httpx.get(f"{lone_store}/v1/documents/lookup").status_code == 404
    for bad in ({"ids": []}, {"ids": ["bad id"]}, {"ids": [f"D-{n}" for n in range(1001)]}, {}):
        assert httpx.post(f"{lone_store}/v1/documents/lookup", json=bad).status_code in (400, 422)


def test_sequence_numbers_increase_and_upsert_replaces(lone_store: str) -> None:
    first = write(lone_store, {"id": "UPS-001", "text": "first version", "data_class": "public"})
    second = write(lone_store, {"id": "UPS-001", "text": "second version", "data_class": "public"})
    assert second.json()["seq"] == first.json()["seq"] + 1
    assert httpx.get(f"{lone_store}/v1/documents/UPS-001").json()["text"] == "second version"


def test_search_ranks_the_document_sharing_the_query_words_first(lone_store: str) -> None:
    answer = httpx.post(
        f"{lone_store}/v1/search",
        json={"query": "how deep are the helical anchors screwed", "k": 3, "max_class": "internal"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["region"] == "fr-par"
    results = body["results"]
    assert results[0]["id"] == "MOOR-001"
    assert set(results[0]) == {"id", "title", "text", "data_class", "score"}
    assert all(result["score"] > 0 for result in results)
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)

    by_vector = httpx.post(
        f"{lone_store}/v1/search",
        json={
            "vector": embedding.embed("how deep are the helical anchors screwed").tolist(),
            "k": 3,
            "max_class": "internal",
        },
    ).json()
    assert by_vector["results"] == results


def test_search_filters_above_max_class_and_honours_k(lone_store: str) -> None:
    def ids(max_class: str, k: int = 10) -> list[str]:
        body = {"query": "confidential floor price tender divers panels", "k": k, "max_class": max_class}
        return [r["id"] for r in httpx.post(f"{lone_store}/v1/search", json=body).json()["results"]]

    assert "FIN-001" in ids("confidential")
    assert ids("confidential")[0] == "FIN-001"
    assert "FIN-001" not in ids("internal")
    assert set(ids("public")) <= {"SAFE-001", "PANEL-001"}
    assert len(ids("confidential", k=1)) == 1
    nothing = {"query": "zeppelin", "k": 5, "max_class": "confidential"}
    assert httpx.post(f"{lone_store}/v1/search", json=nothing).json()["results"] == []


def test_synthetic_documents_are_stored_but_never_searched(lone_store: str) -> None:
    """Load writes and canaries carry the synthetic tag: readable, but out of every answer."""
    text = "zeppelin mooring zeppelin anchors zeppelin"
    write(lone_store, {"id": "SYN-001", "text": text, "data_class": "public", "tags": ["synthetic"]})
    write(lone_store, {"id": "REAL-001", "text": text, "data_class": "public"})
    assert httpx.get(f"{lone_store}/v1/documents/SYN-001").json()["tags"] == ["synthetic"]
    body = {"query": "zeppelin", "k": 5, "max_class": "confidential"}
    found = [r["id"] for r in httpx.post(f"{lone_store}/v1/search", json=body).json()["results"]]
    assert found == ["REAL-001"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "anchors", "k": 3},
        {"query": "anchors", "vector": [0.0] * embedding.DIMENSIONS, "max_class": "public"},
        {"k": 3, "max_class": "public"},
        {"query": "anchors", "k": 0, "max_class": "public"},
        {"query": "anchors", "max_class": "secret"},
        {"vector": [1.0, 2.0], "max_class": "public"},
    ],
)
def test_bad_search_bodies_get_422(lone_store: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{lone_store}/v1/search", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid request"


@pytest.mark.parametrize(
    "body",
    [
        {"text": "x", "data_class": "top-secret"},
        {"text": "   ", "data_class": "public"},
        {"id": "has/slash", "text": "x", "data_class": "public"},
        {"title": "no text", "data_class": "public"},
    ],
)
def test_bad_writes_get_422(lone_store: str, body: dict[str, Any]) -> None:
    assert write(lone_store, body).status_code == 422


def test_every_response_names_the_store(lone_store: str) -> None:
    for response in (
        httpx.get(f"{lone_store}/healthz"),
        httpx.get(f"{lone_store}/readyz"),
        httpx.get(f"{lone_store}/v1/documents/NOPE-404"),
        httpx.get(f"{lone_store}/no/such/route"),
        httpx.post(f"{lone_store}/v1/search", json={}),
    ):
        served_by = json.loads(response.headers["x-bascule-served-by"])
        assert served_by == {"component": "store", "region": "fr-par", "replica": "a"}
    assert httpx.get(f"{lone_store}/readyz").json()["status"] == "ready"


def test_wipe_drops_everything_and_keeps_serving() -> None:
    with serve_store(store_config(replication=ReplicationMode.NONE)) as url:
        for document in DOCS:
            write(url, document)
        query = {"query": "helical anchors", "k": 5, "max_class": "confidential"}
        assert httpx.post(f"{url}/v1/search", json=query).json()["results"]
        last_seq = write(url, {"text": "before the fire", "data_class": "public"}).json()["seq"]

        wiped = httpx.post(f"{url}/v1/admin/wipe").json()
        assert wiped["wiped"]["documents"] == len(DOCS) + 1

        assert httpx.post(f"{url}/v1/search", json=query).json()["results"] == []
        stats = httpx.get(f"{url}/v1/admin/stats").json()
        assert stats["documents"] == 0
        assert stats["by_class"] == {"public": 0, "internal": 0, "confidential": 0}
        assert stats["wipes"] == 1
        assert not has_document(url, "MOOR-001")
        # The sequence goes on, so peers do not mistake new writes for ones already applied.
        assert write(url, DOCS[0]).json()["seq"] == last_seq + 1
        assert httpx.get(f"{url}/v1/admin/stats").json()["documents"] == 1


def test_max_class_refuses_writes_above_it() -> None:
    with serve_store(store_config(max_class=DataClass.INTERNAL)) as url:
        refused = write(url, DOCS[2])
        assert refused.status_code == 403
        body = refused.json()
        assert body["error"] == "data class not allowed"
        assert "internal" in body["reason"] and "confidential" in body["reason"]
        assert body["max_class"] == "internal"
        assert not has_document(url, "FIN-001")
        assert httpx.get(f"{url}/v1/admin/stats").json()["documents"] == 0
        assert write(url, DOCS[0]).status_code == 200
        assert status(url)["max_class"] == "internal"


def test_middleware_is_added_inside_the_served_by_header() -> None:
    class RequireToken:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            headers = dict(scope.get("headers", []))
            if scope["type"] == "http" and headers.get(b"authorization") != b"Bearer ok":
                await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    config = store_config(replication=ReplicationMode.NONE)
    with serve_store(config, middleware=[Middleware(RequireToken)]) as url:
        denied = httpx.get(f"{url}/v1/admin/stats")
        assert denied.status_code == 401
        assert json.loads(denied.headers["x-bascule-served-by"])["component"] == "store"
        allowed = httpx.get(f"{url}/v1/admin/stats", headers={"authorization": "Bearer ok"})
        assert allowed.status_code == 200


def test_seed_corpus_respects_max_class() -> None:
    corpus = load_documents()
    allowed = [doc for doc in corpus if doc.data_class is not DataClass.CONFIDENTIAL]
    confidential = next(doc for doc in corpus if doc.data_class is DataClass.CONFIDENTIAL)
    config = store_config(seed_corpus=True, max_class=DataClass.INTERNAL)
    with serve_store(config) as url:
        stats = httpx.get(f"{url}/v1/admin/stats").json()
        assert stats["documents"] == len(allowed)
        assert stats["by_class"]["confidential"] == 0
        assert not has_document(url, confidential.id)
        assert has_document(url, allowed[0].id)
        replication = status(url)
        # Seeded documents are not writes of this replica: nothing to ship, seq still 0.
        assert replication["last_seq"] == 0
        assert replication["applied"] == {"seed": len(corpus)}


# --- replication -----------------------------------------------------------------------------


def test_async_replication_ships_after_the_lag() -> None:
    with serve_store(store_config(name="b", replication=ReplicationMode.NONE)) as b_url:
        config = store_config(peers=(b_url,), replication_lag=0.3)
        with serve_store(config) as a_url:
            started = time.monotonic()
            answer = write(a_url, DOCS[0])
            acknowledged = time.monotonic() - started
            assert answer.status_code == 200
            assert acknowledged < 0.25
            assert answer.json()["replicated"] is False
            assert not has_document(b_url, "MOOR-001")

            wait_for(lambda: has_document(b_url, "MOOR-001"), timeout=2)
            visible = time.monotonic() - started
            assert 0.3 <= visible < 2.0

            replicated = httpx.get(f"{b_url}/v1/documents/MOOR-001").json()
            assert replicated["origin"] == "fr-par/a"
            assert replicated["seq"] == answer.json()["seq"]
            peer = status(a_url)["peers"][b_url]
            assert peer["last_shipped_seq"] == answer.json()["seq"]
            assert peer["pending"] == 0 and peer["lag_seconds"] == 0.0
            assert peer["max_class"] == "confidential" and peer["last_error"] is None
            assert status(b_url)["applied"] == {"fr-par/a": answer.json()["seq"]}


def test_sync_replication_is_visible_on_the_peer_when_acknowledged() -> None:
    with serve_store(store_config(name="b", replication=ReplicationMode.NONE)) as b_url:
        config = store_config(peers=(b_url,), replication=ReplicationMode.SYNC, replication_lag=5)
        with serve_store(config) as a_url:
            for document in DOCS:
                answer = write(a_url, document)
                assert answer.status_code == 200
                assert answer.json()["replicated"] is True
                assert has_document(b_url, document["id"])


def test_sync_write_with_a_dead_peer_is_acknowledged_unreplicated() -> None:
    with refused_url() as dead:
        config = store_config(peers=(dead,), replication=ReplicationMode.SYNC, sync_timeout=3)
        check_sync_write_to_dead_peer(config, dead)


def check_sync_write_to_dead_peer(config: StoreConfig, dead: str) -> None:
    with serve_store(config) as a_url:
        started = time.monotonic()
        answer = write(a_url, DOCS[0])
        assert answer.status_code == 200
        assert answer.json()["replicated"] is False
        assert time.monotonic() - started < 1.5
        peer = status(a_url)["peers"][dead]
        assert peer["reachable"] is False
        assert "ConnectError" in peer["last_error"]
        assert peer["pending"] == 1


def test_sync_write_to_a_hanging_peer_times_out_with_503() -> None:
    with (
        serve_store(store_config(name="b", replication=ReplicationMode.NONE)) as b_url,
        fault_proxy(b_url) as proxy,
    ):
        proxy.set_mode("hang")
        config = store_config(
            peers=(proxy.url,), replication=ReplicationMode.SYNC, sync_timeout=0.5, peer_timeout=5
        )
        with serve_store(config) as a_url:
            started = time.monotonic()
            answer = write(a_url, DOCS[0])
            elapsed = time.monotonic() - started
            assert answer.status_code == 503
            assert answer.json()["error"] == "replication timeout"
            assert answer.json()["id"] == "MOOR-001"
            assert 0.5 <= elapsed < 1.5
            # Not acknowledged, but applied here and still shipped once the peer answers.
            assert has_document(a_url, "MOOR-001")
            proxy.set_mode("pass")
            wait_for(lambda: has_document(b_url, "MOOR-001"), timeout=8)


def test_partition_grows_the_lag_and_the_peer_catches_up() -> None:
    with (
        serve_store(store_config(name="b", replication=ReplicationMode.NONE)) as b_url,
        fault_proxy(b_url) as proxy,
        serve_store(store_config(peers=(proxy.url,))) as a_url,
    ):
        assert write(a_url, DOCS[0]).status_code == 200
        # B applying it is not enough: A must have read B's answer before the cut.
        wait_for(lambda: status(a_url)["peers"][proxy.url]["pending"] == 0, timeout=2)
        assert has_document(b_url, "MOOR-001")

        proxy.set_mode("refuse")
        for document in DOCS[1:]:
            assert write(a_url, document).status_code == 200
        wait_for(lambda: status(a_url)["peers"][proxy.url]["last_error"] is not None, 2)
        first = status(a_url)["peers"][proxy.url]
        time.sleep(0.3)
        second = status(a_url)["peers"][proxy.url]
        assert first["pending"] == second["pending"] == len(DOCS) - 1
        assert second["lag_seconds"] >= first["lag_seconds"] + 0.25
        assert second["reachable"] is False
        assert not has_document(b_url, "SAFE-001")

        proxy.set_mode("pass")
        caught_up = wait_for(lambda: status(a_url)["peers"][proxy.url]["pending"] == 0, 3)
        assert caught_up < 2.0  # back-off is capped at 1 s
        assert all(has_document(b_url, document["id"]) for document in DOCS)
        healed = status(a_url)["peers"][proxy.url]
        assert healed["reachable"] is True and healed["last_error"] is None
        assert healed["lag_seconds"] == 0.0


def test_confidential_documents_are_never_shipped_to_an_internal_peer() -> None:
    b_config = store_config(name="b", replication=ReplicationMode.NONE, max_class=DataClass.INTERNAL)
    with serve_store(b_config) as b_url, serve_store(store_config(peers=(b_url,))) as a_url:
        for document in DOCS:
            assert write(a_url, document).status_code == 200
        wait_for(lambda: status(a_url)["peers"][b_url]["pending"] == 0, timeout=2)
        assert has_document(b_url, "MOOR-001") and has_document(b_url, "SAFE-001")
        assert not has_document(b_url, "FIN-001")
        peer = status(a_url)["peers"][b_url]
        assert peer["max_class"] == "internal"
        assert peer["withheld"] == 1 and peer["shipped"] == len(DOCS) - 1
        # Withheld by the sender: the receiver never saw it, so it refused nothing.
        assert httpx.get(f"{b_url}/v1/admin/stats").json()["refused"] == 0


def test_replicate_is_idempotent_and_refuses_classes_above_max() -> None:
    config = store_config(name="b", replication=ReplicationMode.NONE, max_class=DataClass.INTERNAL)

    def entry(seq: int, doc: dict[str, Any]) -> dict[str, Any]:
        return {"seq": seq, "doc": {"tags": [], "written_at": 1000.0 + seq, **doc}}

    batch = {
        "origin": "de-fra/a",
        "entries": [entry(1, DOCS[0]), entry(2, DOCS[2]), entry(3, DOCS[1])],
    }
    with serve_store(config) as url:
        first = httpx.post(f"{url}/v1/replicate", json=batch).json()
        assert first["applied"] == 3 and first["stored"] == 2
        assert first["refused"] == [2] and first["max_class"] == "internal"
        again = httpx.post(f"{url}/v1/replicate", json=batch).json()
        assert again["applied"] == 3 and again["stored"] == 0 and again["duplicates"] == 3
        assert not has_document(url, "FIN-001")
        assert status(url)["applied"] == {"de-fra/a": 3}
        loop = httpx.post(f"{url}/v1/replicate", json={"origin": "fr-par/b", "entries": []})
        assert loop.status_code == 409


def test_two_way_replication_converges_on_the_last_writer() -> None:
    # Both sockets are bound first: each store must know the other's URL before it starts.
    a_sock, b_sock = bound_socket(), bound_socket()
    a_config = store_config(name="a", peers=(url_of(b_sock),))
    b_config = store_config(name="b", peers=(url_of(a_sock),))
    with (
        serve_app(create_app(a_config), a_sock) as a_url,
        serve_app(create_app(b_config), b_sock) as b_url,
    ):
        write(a_url, {"id": "DUP-001", "text": "written on a", "data_class": "public"})
        time.sleep(0.01)
        write(b_url, {"id": "DUP-001", "text": "written on b later", "data_class": "public"})

        def converged() -> bool:
            texts = {httpx.get(f"{url}/v1/documents/DUP-001").json()["text"] for url in (a_url, b_url)}
            return texts == {"written on b later"}

        wait_for(converged, timeout=3)


# --- the pure core ---------------------------------------------------------------------------


def stored(doc_id: str, written_at: float, origin: str = "x/a", seq: int = 1) -> StoredDocument:
    return StoredDocument(
        id=doc_id,
        title=doc_id,
        text=f"text of {doc_id} " * 10,
        data_class=DataClass.PUBLIC,
        tags=(),
        origin=origin,
        seq=seq,
        written_at=written_at,
    )


def test_log_is_bounded_in_entries_and_bytes() -> None:
    log = ReplicationLog(max_entries=3, max_bytes=10_000)
    evicted = [log.append(LogEntry(seq, stored(f"D-{seq}", 1.0), 0.0)) for seq in range(1, 6)]
    assert [len(e) for e in evicted] == [0, 0, 0, 1, 1]
    assert len(log) == 3 and log.first_after(0) is not None
    assert [entry.seq for entry in log.batch_after(0, 1.0, 10, 10**6)] == [3, 4, 5]
    assert log.count_after(4) == 1 and log.first_after(5) is None

    size = stored("D-1", 1.0).size
    small = ReplicationLog(max_entries=100, max_bytes=2 * size)
    for seq in range(1, 5):
        small.append(LogEntry(seq, stored(f"D-{seq}", 1.0), 0.0))
    assert len(small) == 2 and small.bytes <= 2 * size
    assert [e.seq for e in small.batch_after(0, 1.0, 10, size)] == [3]  # at least one entry
    assert small.batch_after(0, accepted_by=-1.0, max_entries=10, max_bytes=10**6) == []
    small.trim_through(3)
    assert [e.seq for e in small.batch_after(0, 1.0, 10, 10**6)] == [4]


def test_evicted_entries_count_as_dropped_for_lagging_peers() -> None:
    config = store_config(peers=("http://peer-b", "http://peer-c"), log_max_entries=2)
    store = Store(config)
    store.peers["http://peer-b"].shipped_seq = 0
    store.peers["http://peer-c"].shipped_seq = 0
    for number in range(5):
        store.write(f"D-{number}", "t", "some text", DataClass.PUBLIC, [])
    assert len(store.log) == 2
    assert {peer.dropped for peer in store.peers.values()} == {3}
    status = store.status()
    assert status["peers"]["http://peer-b"]["pending"] == 2
    store.wipe()
    assert {peer.dropped for peer in store.peers.values()} == {5}


def test_last_writer_wins_and_local_writes_stay_visible() -> None:
    store = Store(store_config(), wall_clock=lambda: 100.0)
    store.apply("x/b", [(1, stored("D-1", written_at=200.0, origin="x/b"))])
    store.apply("x/b", [(2, stored("D-1", written_at=50.0, origin="x/b", seq=2))])
    held = store.index.get("D-1")
    assert held is not None and held.written_at == 200.0
    # The local clock is behind the replicated version: the local write still wins here.
    document = store.write("D-1", "t", "local text", DataClass.PUBLIC, [])
    assert document.written_at > 200.0
    held = store.index.get("D-1")
    assert held is not None and held.text == "local text"


def test_index_grows_and_search_breaks_ties_by_id() -> None:
    store = Store(store_config())
    for number in reversed(range(100)):
        store.write(f"T-{number:03d}", "same", "identical words everywhere", DataClass.PUBLIC, [])
    assert store.index.capacity >= 100 and len(store.index) == 100
    found = store.search(embedding.embed("identical words"), 3, DataClass.PUBLIC)
    assert [document.id for document, _ in found] == ["T-000", "T-001", "T-002"]
    assert store.search(np.zeros(embedding.DIMENSIONS, dtype=np.float32), 3, DataClass.PUBLIC) == []


# --- configuration and the process -----------------------------------------------------------


def test_parse_args_flags_and_environment() -> None:
    config = parse_args(
        [
            "--port", "0", "--region", "ovh/gra", "--name", "s1",
            "--peer", "http://b:1/", "--peer", "http://c:2",
            "--replication", "sync", "--replication-lag", "0.3", "--max-class", "internal",
            "--seed-corpus",
        ],
        environ={},
    )  # fmt: skip
    assert config.peers == ("http://b:1", "http://c:2")
    assert config.replication is ReplicationMode.SYNC
    assert config.replication_lag == 0.3 and config.max_class is DataClass.INTERNAL
    assert config.seed_corpus and config.origin == "ovh/gra/s1"

    from_env = parse_args(
        [],
        environ={
            "BASCULE_STORE_PEER": "http://b:1, http://c:2",
            "BASCULE_STORE_REPLICATION": "none",
            "BASCULE_STORE_SEED_CORPUS": "yes",
            "BASCULE_STORE_LOG_MAX_ENTRIES": "50",
        },
    )
    assert from_env.peers == ("http://b:1", "http://c:2")
    assert from_env.replication is ReplicationMode.NONE
    assert from_env.seed_corpus and from_env.log_max_entries == 50
    assert parse_args(["--peer", "http://d:3"], environ={"BASCULE_STORE_PEER": "http://b:1"}).peers == (
        "http://d:3",
    )

    for bad in (["--peer", "ftp://x"], ["--replication", "eventual"], ["--replication-lag", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(bad, environ={})
    with pytest.raises(SystemExit):
        parse_args([], environ={"BASCULE_STORE_MAX_CLASS": "secret"})


def test_runs_as_a_module() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bascule.stack.store", "--port", "0", "--region", "scw/fr-par"],
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
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready_answer = httpx.get(f"{url}/readyz")
        assert ready_answer.status_code == 200
        assert json.loads(ready_answer.headers["x-bascule-served-by"])["region"] == "scw/fr-par"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
