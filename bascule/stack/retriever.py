"""The reference stack's retriever service: embeds a question and searches its region's store.

API (every response carries ``x-bascule-served-by: {"component": "retriever", "region",
"replica"}``):

- ``POST /v1/retrieve {question, data_class, k?}`` → ``{passages: [{doc_id, title, text,
  data_class, score}], served_by: [retriever hop, store hop]}``. The question is embedded with
  `bascule.stack.embedding` (the deterministic hashing embedding the llm's ``/v1/embeddings``
  serves, so no model is downloaded) and sent as a vector to the store's ``/v1/search`` with
  ``max_class = data_class``: a request never sees a document more sensitive than its class.
  The store hop is read from the store's ``x-bascule-served-by`` header (null region and
  replica when a store does not send it). ``k`` defaults to ``--top-k``.
- Stores are tried in ``--store`` order; a store that cannot be reached, takes longer than
  ``--store-timeout`` or answers anything but 200 with a well-formed body is skipped for the
  next one. When none answers, 502 ``{error: "store unavailable", reason, attempts: [{store,
  error}]}``.
- ``GET /healthz``: the process answers. ``GET /readyz``: ready once a store has answered at
  least once (a search, or that store's ``/readyz`` with 200, which ``/readyz`` asks while not
  ready). It stays ready afterwards: a later store outage is answered per request (fallback,
  then 502), which tells the gateway more than a retriever leaving its pool would.

Run it with ``python -m bascule.stack.retriever --port 0 --store http://127.0.0.1:8001``; once it
accepts connections it prints ``listening on http://HOST:PORT`` on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bascule.stack.corpus import DataClass
from bascule.stack.embedding import embed
from bascule.stack.serve import (
    SERVED_BY_HEADER,
    BodyTooLargeError,
    FlagParser,
    base_url,
    hop,
    positive_float,
    positive_int,
    read_body,
)
from bascule.stack.service import (
    ServedBy,
    bad_body,
    create_service_app,
    describe,
    ready_response,
    reason_error,
    serve_wired,
    wired_caller,
)

__all__ = [
    "COMPONENT",
    "ENV_PREFIX",
    "MAX_K",
    "RetrieverConfig",
    "create_app",
    "main",
    "parse_args",
]

COMPONENT = "retriever"
ENV_PREFIX = "BASCULE_RETRIEVER_"
MAX_K = 100
_BODY_LIMIT = 64 * 1024
_READY_PROBE_TIMEOUT = 1.0


@dataclass(frozen=True)
class RetrieverConfig:
    """How one retriever replica is served and which stores it searches."""

    stores: tuple[str, ...]
    """Base URLs of its region's stores, in the order they are tried."""
    host: str = "127.0.0.1"
    port: int = 8000
    region: str = "local"
    name: str = "retriever"
    top_k: int = 4
    """Passages returned when a request gives no ``k``."""
    store_timeout: float = 2.0
    """Seconds one search on one store may take before the next store is tried."""

    def __post_init__(self) -> None:
        if not self.stores:
            raise ValueError("a retriever needs at least one store URL")
        if not 1 <= self.top_k <= MAX_K:
            raise ValueError(f"top_k must be within 1..{MAX_K}, got {self.top_k}")


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> RetrieverConfig:
    """The configuration from flags, falling back to ``BASCULE_RETRIEVER_*`` variables.

    Invalid values exit with argparse's usage message (status 2), as any CLI does.
    """
    defaults = RetrieverConfig(stores=("http://127.0.0.1:8000",))
    flags = FlagParser(
        prog="python -m bascule.stack.retriever",
        description="Reference retriever service: embeds questions and searches a store.",
        env_prefix=ENV_PREFIX,
        environ=environ,
    )
    flags.listen(defaults.host, defaults.port)
    flags.replica(defaults.region, defaults.name)
    flags.repeated("--store", base_url, "base URL of a store of this region, in fallback order")
    flags.option("--top-k", positive_int, defaults.top_k, f"default passages, 1..{MAX_K}")
    flags.option("--store-timeout", positive_float, defaults.store_timeout, "seconds per store search")
    args = flags.parse(argv)
    if not args.store:
        flags.error(f"at least one --store (or {flags.variable('--store')}) is required")
    if args.top_k > MAX_K:
        flags.error(f"--top-k must be at most {MAX_K}")
    return RetrieverConfig(
        stores=tuple(dict.fromkeys(args.store)),
        host=args.host,
        port=args.port,
        region=args.region,
        name=args.name,
        top_k=args.top_k,
        store_timeout=args.store_timeout,
    )


# --- request and store bodies ----------------------------------------------------------------


class _RetrieveIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: Annotated[str, Field(min_length=1, max_length=10_000)]
    data_class: DataClass
    k: Annotated[int, Field(ge=1, le=MAX_K)] | None = None


class _StoreResult(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    title: str
    text: str
    data_class: DataClass
    score: float


class _StoreAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[_StoreResult]


def _store_hop(response: httpx.Response) -> dict[str, str | None]:
    """The store's hop from its header; null region and replica when it sent none."""
    unknown: dict[str, str | None] = {"component": "store", "region": None, "replica": None}
    raw = response.headers.get(SERVED_BY_HEADER)
    if raw is None:
        return unknown
    try:
        value = json.loads(raw)
    except ValueError:
        return unknown
    if not isinstance(value, dict):
        return unknown
    fields = ("component", "region", "replica")
    return {key: str(value[key]) if value.get(key) is not None else unknown[key] for key in fields}


class _StoreError(Exception):
    """A store answered, but not with a search result."""


# --- the app ---------------------------------------------------------------------------------


def _default_client() -> httpx.AsyncClient:
    # trust_env=False: proxy variables of the host must not reroute traffic to the store.
    return httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False)


@dataclass
class _Runtime:
    client: httpx.AsyncClient | None = None
    store_answered: bool = False


def create_app(
    config: RetrieverConfig,
    *,
    client_factory: Callable[[], httpx.AsyncClient] = _default_client,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """A new retriever ASGI app for `config`; apps share no state, so tests can run several.

    `client_factory` makes the client used to reach the stores (called at startup; the app
    closes it at shutdown), so the integrator can inject one that resolves names through the
    stack's DNS. `middleware` is added inside the ``x-bascule-served-by`` header.
    """
    runtime = _Runtime()
    own_hop = hop(COMPONENT, config.region, config.name)

    def client() -> httpx.AsyncClient:
        if runtime.client is None:
            raise HTTPException(503, "the retriever is not started")
        return runtime.client

    async def search_store(
        url: str, payload: dict[str, Any]
    ) -> tuple[list[_StoreResult], dict[str, str | None]]:
        async with asyncio.timeout(config.store_timeout):
            response = await client().post(url + "/v1/search", json=payload)
        if response.status_code != 200:
            excerpt = response.content[:200].decode("utf-8", errors="replace")
            raise _StoreError(f"HTTP {response.status_code}: {excerpt}")
        answer = _StoreAnswer.model_validate_json(response.content)
        return answer.results, _store_hop(response)

    async def retrieve(request: Request) -> Response:
        try:
            body = _RetrieveIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except (BodyTooLargeError, ValidationError) as exc:
            return bad_body(exc)
        payload = {
            "vector": embed(body.question).tolist(),
            "k": body.k or config.top_k,
            "max_class": body.data_class.value,
        }
        attempts = []
        for url in config.stores:
            try:
                results, store_hop = await search_store(url, payload)
            except TimeoutError:
                attempts.append({"store": url, "error": f"no answer within {config.store_timeout} s"})
                continue
            except ValidationError:
                attempts.append({"store": url, "error": "malformed search answer"})
                continue
            except _StoreError as exc:
                attempts.append({"store": url, "error": str(exc)})
                continue
            except httpx.HTTPError as exc:
                attempts.append({"store": url, "error": describe(exc)})
                continue
            runtime.store_answered = True
            passages = [
                {
                    "doc_id": result.id,
                    "title": result.title,
                    "text": result.text,
                    "data_class": result.data_class.value,
                    "score": result.score,
                }
                for result in results
            ]
            return JSONResponse({"passages": passages, "served_by": [own_hop, store_hop]})
        return reason_error(
            502,
            "store unavailable",
            f"none of the {len(config.stores)} stores answered the search",
            attempts=attempts,
            served_by=[own_hop],
        )

    async def readiness() -> Response:
        problems = []
        for url in () if runtime.store_answered else config.stores:
            try:
                async with asyncio.timeout(_READY_PROBE_TIMEOUT):
                    response = await client().get(url + "/readyz")
            except (TimeoutError, httpx.HTTPError) as exc:
                problems.append({"store": url, "error": describe(exc)})
                continue
            if response.status_code == 200:
                runtime.store_answered = True
                break
            problems.append({"store": url, "error": f"HTTP {response.status_code}"})
        if not runtime.store_answered:
            return JSONResponse({"status": "waiting for a store", "attempts": problems}, status_code=503)
        return ready_response()

    @contextlib.asynccontextmanager
    async def lifecycle() -> AsyncIterator[None]:
        runtime.client = client_factory()
        try:
            yield
        finally:
            http = runtime.client
            runtime.client = None
            await http.aclose()

    return create_service_app(
        [Route("/v1/retrieve", retrieve, methods=["POST"])],
        served_by=ServedBy(COMPONENT, config.region, config.name),
        lifecycle=lifecycle,
        readiness=readiness,
        middleware=middleware,
    )


# --- process entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a retriever until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    serve_wired(argv, parse_args, wired_caller(create_app))


if __name__ == "__main__":
    main()
