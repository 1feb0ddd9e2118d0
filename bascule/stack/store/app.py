"""The store's HTTP side: its routes over one `Store`, the replicator's lifecycle, and `main`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import numpy as np
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bascule.stack.corpus import load_documents
from bascule.stack.embedding import embed
from bascule.stack.serve import BodyTooLargeError, read_body
from bascule.stack.service import (
    ServedBy,
    bad_body,
    create_service_app,
    ready_response,
    reason_error,
    serve_wired,
    wired_caller,
)
from bascule.stack.store.config import COMPONENT, ReplicationMode, StoreConfig, parse_args
from bascule.stack.store.index import StoredDocument
from bascule.stack.store.replica import ClassNotAllowedError, ReplicationLoopError, Store
from bascule.stack.store.replicator import Replicator
from bascule.stack.store.wire import DocumentIn, IndexIn, LookupIn, ReplicateIn, SearchIn

__all__ = ["create_app", "main"]

_BODY_LIMIT = 4 * 1024 * 1024
_REPLICATE_BODY_LIMIT = 32 * 1024 * 1024
_CATCH_UP_TICK = 0.05
"""Seconds between two steps of an index catching up at a rate."""


def _default_client() -> httpx.AsyncClient:
    # trust_env=False: proxy variables of the host must not reroute traffic between stores.
    return httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False)


def create_app(
    config: StoreConfig,
    *,
    client_factory: Callable[[], httpx.AsyncClient] = _default_client,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """A new store ASGI app for `config`; apps share no state, so tests can run several.

    `client_factory` makes the client used to reach peers (called at startup; the app closes
    it at shutdown), so the integrator can inject one that resolves names through the stack's
    DNS. `middleware` is added inside the ``x-bascule-served-by`` header (authentication, …).
    """
    state = Store(config)
    running: Replicator | None = None
    catching: asyncio.Task[None] | None = None

    def replicator() -> Replicator:
        if running is None:
            raise HTTPException(503, "the store is not started")
        return running

    async def write_document(request: Request) -> Response:
        try:
            body = DocumentIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except (BodyTooLargeError, ValidationError) as exc:
            return bad_body(exc)
        shipper = replicator()
        document_id = body.id or uuid.uuid4().hex
        try:
            document = state.write(
                document_id,
                title=document_id if body.title is None else body.title,
                text=body.text,
                data_class=body.data_class,
                tags=body.tags,
            )
        except ClassNotAllowedError as exc:
            return reason_error(
                403,
                "data class not allowed",
                str(exc),
                data_class=exc.data_class.value,
                max_class=exc.max_class.value,
            )
        if state.peers:
            attempts = shipper.attempts()
            shipper.written()
            if config.replication is ReplicationMode.SYNC and not await shipper.wait_settled(
                document.seq, attempts, config.sync_timeout
            ):
                waiting = [url for url, peer in state.peers.items() if peer.shipped_seq < document.seq]
                return reason_error(
                    503,
                    "replication timeout",
                    f"peers {waiting} did not apply seq {document.seq} within "
                    f"{config.sync_timeout} s; the write is not acknowledged (it stays applied "
                    "here and will still be shipped)",
                    id=document.id,
                    seq=document.seq,
                )
        return JSONResponse(
            {
                "id": document.id,
                "seq": document.seq,
                "acknowledged_at": state.wall_clock(),
                "replicated": state.replicated(document),
            }
        )

    async def read_document(request: Request) -> Response:
        document_id = str(request.path_params["doc_id"])
        document = state.index.get(document_id)
        if document is None:
            return reason_error(404, "not found", f"no document {document_id!r} here", id=document_id)
        return JSONResponse(document.to_json())

    async def lookup(request: Request) -> Response:
        # The bulk form of `read_document`, for the data probe's read-back: one request per
        # replica instead of one per canary.
        try:
            body = LookupIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except (BodyTooLargeError, ValidationError) as exc:
            return bad_body(exc)
        held = {document_id: state.index.get(document_id) is not None for document_id in body.ids}
        found = [document_id for document_id, there in held.items() if there]
        missing = [document_id for document_id, there in held.items() if not there]
        return JSONResponse({"found": found, "missing": missing, "region": config.region})

    async def search(request: Request) -> Response:
        try:
            body = SearchIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except (BodyTooLargeError, ValidationError) as exc:
            return bad_body(exc)
        if body.vector is not None:
            vector = np.asarray(body.vector, dtype=np.float32)
        else:
            vector = embed(body.query or "")
        results = [
            {
                "id": document.id,
                "title": document.title,
                "text": document.text,
                "data_class": document.data_class.value,
                "score": round(score, 6),
            }
            for document, score in state.search(vector, body.k, body.max_class)
        ]
        return JSONResponse({"results": results, "region": config.region})

    async def replicate(request: Request) -> Response:
        try:
            raw = await read_body(request, _REPLICATE_BODY_LIMIT)
            body = ReplicateIn.model_validate_json(raw)
        except (BodyTooLargeError, ValidationError) as exc:
            return bad_body(exc)
        entries = [
            (
                entry.seq,
                StoredDocument(
                    id=entry.doc.id,
                    title=entry.doc.title,
                    text=entry.doc.text,
                    data_class=entry.doc.data_class,
                    tags=tuple(entry.doc.tags),
                    origin=body.origin,
                    seq=entry.seq,
                    written_at=entry.doc.written_at,
                ),
            )
            for entry in body.entries
        ]
        try:
            return JSONResponse(state.apply(body.origin, entries))
        except ReplicationLoopError as exc:
            return reason_error(409, "replication loop", str(exc))

    async def replication_status(request: Request) -> Response:
        return JSONResponse(state.status())

    async def wipe(request: Request) -> Response:
        return JSONResponse({"wiped": state.wipe(), "region": config.region})

    async def index_state(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(state.index_status())
        try:
            body = IndexIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except (BodyTooLargeError, ValidationError) as exc:
            return bad_body(exc)
        if body.frozen:
            return JSONResponse(state.freeze_index())
        answer = state.thaw_index(body.catch_up)
        if state.frozen is not None and state.frozen.catch_up is not None:
            start_catching_up()
        return JSONResponse(answer)

    def start_catching_up() -> None:
        nonlocal catching
        if catching is None or catching.done():
            catching = asyncio.get_running_loop().create_task(catch_up())

    async def catch_up() -> None:
        last = state.clock()
        while state.frozen is not None and state.frozen.catch_up is not None:
            await asyncio.sleep(_CATCH_UP_TICK)
            now = state.clock()
            state.catch_up_step(now - last)
            last = now

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def readiness() -> Response:
        return ready_response(documents=len(state.index))

    @contextlib.asynccontextmanager
    async def lifecycle() -> AsyncIterator[None]:
        nonlocal running
        if config.seed_corpus:
            state.seed(load_documents())
        client = client_factory()
        shipper = running = Replicator(state, client)
        shipper.start()
        try:
            yield
        finally:
            if catching is not None:
                catching.cancel()
            await shipper.stop()
            await client.aclose()

    return create_service_app(
        [
            Route("/v1/documents", write_document, methods=["POST"]),
            Route("/v1/documents/lookup", lookup, methods=["POST"]),
            Route("/v1/documents/{doc_id}", read_document, methods=["GET"]),
            Route("/v1/search", search, methods=["POST"]),
            Route("/v1/replicate", replicate, methods=["POST"]),
            Route("/v1/replication", replication_status, methods=["GET"]),
            Route("/v1/admin/wipe", wipe, methods=["POST"]),
            Route("/v1/admin/index", index_state, methods=["GET", "POST"]),
            Route("/v1/admin/stats", stats, methods=["GET"]),
        ],
        served_by=ServedBy(COMPONENT, config.region, config.name),
        lifecycle=lifecycle,
        readiness=readiness,
        middleware=middleware,
    )


# --- process entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a store until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    serve_wired(argv, parse_args, wired_caller(create_app))
