"""The reference stack's gateway: the entry point that routes each request across regions.

- ``POST /v1/ask {question, data_class, tenant?}`` retrieves passages from a retriever, asks an
  llm over them (``POST /v1/chat/completions`` with `bascule.stack.prompt.build_messages`) and
  answers ``{answer, citations, degraded, served_by, latency_ms, data_class}``. When no llm the
  data class may use answers, the answer is the top passages' first sentences, cited, with
  ``degraded: true`` and a ``degraded_reason``.
- ``POST /v1/documents {id?, title?, text, data_class}`` writes through to the first allowed
  healthy store and returns the store's acknowledgement with ``served_by``.
- ``GET /v1/status``: breaker states per upstream, the preferred region per data class, region
  health and retry-budget usage, for the live view. A breaker's ``healthy_for`` is null unless
  it is closed after a trip.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (its client is up).

Routing follows the design (`bascule.stack.routing`): the sovereignty guard keeps a data class
away from regions below its minimum level and, when no allowed region can serve, the gateway
fails closed with ``403 {"error": "sovereignty", "message": "no region allowed for '…' is
available…"}`` rather than use a refused region. Each upstream ``(component, region)`` has a
circuit breaker (`bascule.stack.breaker`); half-open breakers are probed in the background
(``GET /readyz``, ``GET /v1/models`` for llms), so that a user request is a trial call only as
a last resort. Failed calls are retried with tenacity — each retry on the next
region of the route, after a jittered exponential back-off, only while the retry budget allows
— within the design's connect and request timeouts; with ``routing.hedging`` an idempotent call
still unanswered after ``hedging.after`` is also sent to the next region, the first success
wins, and the hedge is paid from the retry budget. Writes are retried only when the store
certainly did not process them (connection not established, 429, 503), and never hedged.

``served_by`` lists every hop as ``{component, region, provider, jurisdiction, sovereignty}``
(plus ``replica`` or ``model`` when known): the gateway, the hops the retriever reports (itself
and the store it read), then the llm. A region the design does not know, or a hop that does not
name its region (recorded as ``unknown``), counts at the ``foreign`` level, the least sovereign,
so that an unidentified hop is never mistaken for a safe one.

Other errors are ``{"error", "message"}`` bodies: 400 ``unknown-data-class``, 413
``too-large``, 422 ``invalid-request``, 503 ``unavailable`` (nothing served and no region was
refused) or ``credentials`` (the headers provider failed), and an upstream's own 4xx passed
through as ``rejected``.

Run it with ``python -m bascule.stack.gateway --design D.yaml --region R --retriever R=URL
--llm R=URL --store R=URL``; flags fall back to ``BASCULE_GATEWAY_*`` variables, and once it
accepts connections it prints ``listening on http://HOST:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from bascule.errors import ScenarioError
from bascule.model.catalog import Sovereignty
from bascule.model.design import ComponentKind, Design, region_slug
from bascule.model.loading import read_design
from bascule.stack.breaker import RetryBudget, Ticket
from bascule.stack.prompt import (
    NO_CONTEXT_ANSWER,
    Passage,
    build_messages,
    message_text,
    parse_citations,
)
from bascule.stack.routing import Probe, Router, UnknownDataClassError
from bascule.stack.routing import Route as RegionRoute
from bascule.stack.serve import (
    SERVED_BY_HEADER,
    BodyTooLargeError,
    FlagParser,
    ServedByMiddleware,
    base_url,
    non_empty,
    non_negative_int,
    port,
    positive_int,
    read_body,
    serve,
)
from bascule.stack.wiring import read_wiring

__all__ = [
    "DEFAULT_MODEL",
    "ENV_PREFIX",
    "RETRY_BUDGET_WINDOW",
    "ClientFactory",
    "GatewayConfig",
    "HeadersProvider",
    "create_app",
    "main",
    "parse_args",
    "retrieval_only_answer",
]

ENV_PREFIX = "BASCULE_GATEWAY_"
DEFAULT_MODEL = "mistral-small-latest"
RETRY_BUDGET_WINDOW = 10.0
"""Seconds over which the retry budget compares retries with requests."""

ClientFactory = Callable[[], httpx.AsyncClient]
"""Makes the gateway's outgoing client once, at startup. The gateway sets its own timeouts on
every request, so a factory need only care about name resolution and pooling."""
HeadersProvider = Callable[[], Awaitable[dict[str, str]]]
"""Headers added to every outgoing request (credentials); called once per request."""

_ASK_COMPONENTS = ("retriever", "llm")
_WRITE_COMPONENTS = ("store",)
_PROBE_PATHS = {"retriever": "/readyz", "store": "/readyz", "llm": "/v1/models"}
_MAX_ASK_BODY = 64 * 1024
_MAX_DOCUMENT_BODY = 4 * 1024 * 1024
_DEGRADED_SENTENCES = 2
_FIRST_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")

T = TypeVar("T")


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    """How one gateway replica is served and which upstreams it reaches, by region."""

    region: str
    design: str = ""
    """Path of the design file; `main` reads it, `create_app` takes the design itself."""
    host: str = "127.0.0.1"
    port: int = 8000
    name: str = "gateway"
    """This replica's name in ``served_by``."""
    retrievers: Mapping[str, str] = field(default_factory=dict)
    llms: Mapping[str, str] = field(default_factory=dict)
    stores: Mapping[str, str] = field(default_factory=dict)
    """Base URLs by region; stores are used for writes."""
    llm_models: Mapping[str, str] = field(default_factory=dict)
    """Model asked in each region; otherwise the design's placement model, else DEFAULT_MODEL."""
    top_k: int = 4
    """Passages asked of the retriever."""
    max_inflight: int | None = None
    """Asks and writes served at once; beyond, 503 ``overloaded`` (None: no limit)."""

    def upstreams(self) -> dict[str, Mapping[str, str]]:
        return {"retriever": self.retrievers, "llm": self.llms, "store": self.stores}


def _pair(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ValueError(f"expected REGION={what}, got {text!r}")
    return key.strip(), value.strip()


def _region_url(text: str) -> tuple[str, str]:
    try:
        region, url = _pair(text, "URL")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return region, base_url(url)


def _region_model(text: str) -> tuple[str, str]:
    try:
        return _pair(text, "MODEL")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """The configuration from command-line flags, falling back to ``BASCULE_GATEWAY_*`` variables.

    Repeatable flags (``--retriever REGION=URL`` …) fall back to a comma-separated variable.
    Invalid values exit with argparse's usage message (status 2), as any CLI does.
    """
    env = os.environ if environ is None else environ
    defaults = GatewayConfig(region="")
    flags = FlagParser(
        "python -m bascule.stack.gateway",
        "Reference gateway: routes questions and writes across regions.",
        ENV_PREFIX,
        env,
    )
    flags.option("--host", non_empty, defaults.host, "address to bind")
    flags.option("--port", port, defaults.port, "port to bind; 0 picks a free one")
    flags.option("--region", str, "", "region this gateway runs in (required)")
    flags.option("--name", non_empty, defaults.name, "replica name in served_by")
    flags.option("--design", str, "", "design file (required)")
    flags.option("--top-k", positive_int, defaults.top_k, "passages asked of the retriever")
    flags.option(
        "--max-inflight", non_negative_int, 0, "asks and writes served at once; beyond, 503 (0: no limit)"
    )
    flags.repeated("--retriever", _region_url, "retriever base URL of a region, REGION=URL")
    flags.repeated("--llm", _region_url, "llm base URL of a region, REGION=URL")
    flags.repeated("--store", _region_url, "store base URL of a region for writes, REGION=URL")
    flags.repeated("--llm-model", _region_model, "model to ask in a region, REGION=MODEL")
    args = flags.parse(argv)
    for required in ("region", "design"):
        if not str(getattr(args, required)).strip():
            flags.error(f"--{required} is required (or {flags.variable('--' + required)})")
    maps: dict[str, dict[str, str]] = {}
    for dest in ("retriever", "llm", "store", "llm_model"):
        pairs: list[tuple[str, str]] = getattr(args, dest)
        seen: dict[str, str] = {}
        for region, value in pairs:
            if region in seen:
                flags.error(f"--{dest.replace('_', '-')}: region {region!r} given twice")
            seen[region] = value
        maps[dest] = seen
    return GatewayConfig(
        region=args.region.strip(),
        design=args.design.strip(),
        host=args.host,
        port=args.port,
        name=args.name,
        retrievers=maps["retriever"],
        llms=maps["llm"],
        stores=maps["store"],
        llm_models=maps["llm_model"],
        top_k=args.top_k,
        max_inflight=args.max_inflight or None,
    )


# --- wire bodies -----------------------------------------------------------------------------

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _AskRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    data_class: _Text
    tenant: str | None = None


_Tag = Annotated[str, Field(min_length=1, max_length=100)]


class _DocumentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: _Text | None = None
    title: str | None = None
    text: _Text
    data_class: _Text
    tags: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=64)] | None
    ) = None
    """Passed to the store; ``synthetic`` keeps test writes out of search results."""


class _HopIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    component: str
    region: str | None = None
    replica: str | None = None


class _PassageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    doc_id: str
    title: str = ""
    text: str
    score: float = 0.0


class _RetrieveResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    passages: list[_PassageIn]
    served_by: list[_HopIn] = []


class _ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: str | list[dict[str, Any]] | None = None


class _ChatChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: _ChatMessage


class _ChatResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    choices: Annotated[list[_ChatChoice], Field(min_length=1)]


def _error(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def _validation_error(exc: ValidationError) -> JSONResponse:
    details = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False)
    ]
    return _error(422, "invalid-request", "the request body is not valid", detail=details)


# --- the degraded answer ---------------------------------------------------------------------


def retrieval_only_answer(
    passages: Sequence[Passage], limit: int = _DEGRADED_SENTENCES
) -> tuple[str, tuple[str, ...]]:
    """The first sentence of each of the first `limit` passages, each cited as ``[doc:ID]``,
    and the cited ids: what the gateway answers when no llm can."""
    parts = []
    for passage in passages[:limit]:
        first = _FIRST_SENTENCE_RE.split(passage.text.strip(), maxsplit=1)[0].strip()
        if first:
            parts.append(f"{first} [doc:{passage.doc_id}]")
    if not parts:
        return NO_CONTEXT_ANSWER, ()
    text = " ".join(parts)
    return text, parse_citations(text)


# --- calling upstreams -----------------------------------------------------------------------


class _UpstreamError(Exception):
    """One call to one upstream failed in a way that counts against its breaker."""

    def __init__(self, reason: str, *, processed: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.processed = processed
        """False only when the upstream certainly did not act on the request."""


class _RejectedError(Exception):
    """The upstream answered, but refused the request itself (a 4xx): passed on, not retried."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.component = ""
        self.region = ""


class _ExhaustedError(Exception):
    """Every region of the route was tried or refused by its breaker."""


class _NoCredentialsError(Exception):
    """The headers provider failed, so no request could be sent."""


@dataclass(frozen=True)
class _Attempt:
    component: str
    region: str
    outcome: str

    def as_json(self) -> dict[str, str]:
        return {"component": self.component, "region": self.region, "outcome": self.outcome}


class _BudgetStop(stop_base):
    """Stops retrying when the retry budget has no room, and pays for the retry otherwise."""

    def __init__(self, budget: RetryBudget) -> None:
        self._budget = budget

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self._budget.try_spend()


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    kind = type(exc).__name__
    return f"{kind}: {text}" if text else kind


class _Cursor:
    """Walks a route's regions round and round, skipping those whose breaker refuses a call."""

    def __init__(self, component: str, regions: Sequence[str], router: Router) -> None:
        self._component = component
        self._regions = list(regions)
        self._router = router
        self._position = 0

    def next(self) -> tuple[str, Ticket] | None:
        count = len(self._regions)
        for step in range(count):
            region = self._regions[(self._position + step) % count]
            breaker = self._router.breaker(self._component, region)
            ticket = breaker.acquire() if breaker is not None else None
            if ticket is not None:
                self._position += step + 1
                return region, ticket
        return None


# --- the app ---------------------------------------------------------------------------------


_UNKNOWN_REGION = "unknown"


def _hop(design: Design, component: str, region: str | None, **extra: str | None) -> dict[str, str]:
    """A ``served_by`` entry; `region` may be a region id, its slug (``aws-us-east-1``), or None
    when the upstream did not say — recorded as ``unknown`` at the ``foreign`` level."""
    slugs = {region_slug(r): r for r in design.region_map}
    region_id = slugs.get(region, region) if region else _UNKNOWN_REGION
    try:
        known = design.region(region_id)
        provider, jurisdiction, level = known.provider, known.jurisdiction, known.sovereignty
    except KeyError:
        provider, jurisdiction, level = region_id.split("/", 1)[0], "", Sovereignty.FOREIGN
    hop = {
        "component": component,
        "region": region_id,
        "provider": provider,
        "jurisdiction": jurisdiction,
        "sovereignty": level.value,
    }
    hop.update({key: value for key, value in extra.items() if value is not None})
    return hop


def _served_by_header(response: httpx.Response) -> _HopIn | None:
    raw = response.headers.get(SERVED_BY_HEADER)
    if raw is None:
        return None
    try:
        return _HopIn.model_validate_json(raw)
    except ValidationError:
        return None


class _Gateway:
    """The state one gateway app holds: router, breakers, budget, client and probe tasks."""

    def __init__(
        self,
        config: GatewayConfig,
        design: Design,
        client_factory: ClientFactory,
        headers_provider: HeadersProvider | None,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.design = design
        self.upstreams = config.upstreams()
        self.router = Router(
            design,
            [(c, r) for c, urls in self.upstreams.items() for r in urls],
            clock=clock,
        )
        retry = design.routing.retry
        self.budget = RetryBudget(
            retry.budget, RETRY_BUDGET_WINDOW, min_per_second=retry.min_retries_per_second, clock=clock
        )
        self.hop = _hop(design, "gateway", config.region, replica=config.name)
        self._client_factory = client_factory
        self._headers_provider = headers_provider
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        timeouts = design.routing.timeouts
        self._timeout = httpx.Timeout(timeouts.request, connect=timeouts.connect)
        self.ready = False
        self.inflight = 0
        self.shed = 0

    # -- admission -------------------------------------------------------------------------------

    async def admit(self, serve: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
        """Serve `request` if a slot is free; otherwise shed it with 503 ``overloaded`` and a
        ``Retry-After``, as a replica out of worker slots does (one event loop: no lock needed)."""
        limit = self.config.max_inflight
        if limit is not None and self.inflight >= limit:
            self.shed += 1
            response = _error(
                503, "overloaded", f"this gateway replica serves {limit} requests at once and all are busy"
            )
            response.headers["retry-after"] = "1"
            return response
        self.inflight += 1
        try:
            return await serve(request)
        finally:
            self.inflight -= 1

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = self._client_factory()
        self._spawn(self._probe_loop())
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the gateway has not started")
        return self._client

    # -- probes --------------------------------------------------------------------------------

    async def _probe_loop(self) -> None:
        interval = max(self.design.routing.health_check.interval, 0.05)
        while True:
            self.launch_probes()
            await asyncio.sleep(interval)

    def launch_probes(self) -> None:
        for probe in self.router.take_probes():
            self._spawn(self._probe(probe))

    async def _probe(self, probe: Probe) -> None:
        breaker = self.router.breaker(probe.component, probe.region)
        if breaker is None:
            return
        url = self.upstreams[probe.component][probe.region] + _PROBE_PATHS[probe.component]
        timeout = self.design.routing.health_check.timeout
        healthy: bool | None = None
        try:
            headers = await self._headers()
            async with asyncio.timeout(timeout):
                response = await self.client.get(url, headers=headers, timeout=timeout)
            healthy = response.is_success
        except (httpx.HTTPError, TimeoutError):
            healthy = False
        except _NoCredentialsError:
            healthy = None
        finally:
            if healthy is True:
                breaker.succeed(probe.ticket)
            elif healthy is False:
                breaker.fail(probe.ticket)
            else:
                breaker.release(probe.ticket)

    # -- one call, retried across regions -----------------------------------------------------

    async def _headers(self) -> dict[str, str]:
        if self._headers_provider is None:
            return {}
        try:
            return dict(await self._headers_provider())
        except Exception as exc:
            raise _NoCredentialsError(f"the headers provider failed: {exc}") from exc

    async def post(self, url: str, payload: Mapping[str, Any]) -> httpx.Response:
        headers = await self._headers()
        try:
            response = await self.client.post(url, json=payload, headers=headers, timeout=self._timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _UpstreamError(_describe(exc), processed=False) from exc
        except httpx.HTTPError as exc:
            raise _UpstreamError(_describe(exc), processed=True) from exc
        status = response.status_code
        if status in (429, 503):
            raise _UpstreamError(f"HTTP {status}", processed=False)
        if status >= 500 or status == 408:
            raise _UpstreamError(f"HTTP {status}", processed=True)
        if status >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise _RejectedError(status, body)
        return response

    async def call(
        self,
        component: str,
        route: RegionRoute,
        send: Callable[[str, str], Awaitable[T]],
        attempts: list[_Attempt],
        *,
        idempotent: bool,
    ) -> tuple[str, T]:
        """`send(region, base_url)` on the route's regions until one succeeds, as the
        design's retry, timeout and hedging policies say."""
        urls = self.upstreams[component]
        cursor = _Cursor(component, [r for r in route.order if r in urls], self.router)
        routing = self.design.routing
        self.budget.record_request()

        async def once(region: str, ticket: Ticket) -> tuple[str, T]:
            breaker = self.router.breaker(component, region)
            assert breaker is not None
            # Every ticket goes back to its breaker, or a half-open breaker would wait forever
            # for a trial call that ended without a verdict.
            outcome = "cancelled"
            healthy: bool | None = None
            try:
                async with asyncio.timeout(routing.timeouts.request):
                    result = await send(region, urls[region])
            except _RejectedError as exc:
                # The upstream is alive and answered: its breaker has no reason to open.
                healthy, outcome = True, f"rejected: HTTP {exc.status}"
                exc.component, exc.region = component, region
                raise
            except _NoCredentialsError as exc:
                outcome = str(exc)
                raise
            except TimeoutError as exc:
                healthy, outcome = False, f"no answer within {routing.timeouts.request:g}s"
                raise _UpstreamError(outcome, processed=True) from exc
            except _UpstreamError as exc:
                healthy, outcome = False, exc.reason
                raise
            except Exception as exc:
                outcome = f"gateway error: {type(exc).__name__}"
                raise
            else:
                healthy, outcome = True, "ok"
                return region, result
            finally:
                if healthy is True:
                    breaker.succeed(ticket)
                elif healthy is False:
                    breaker.fail(ticket)
                else:
                    breaker.release(ticket)
                attempts.append(_Attempt(component, region, outcome))

        async def attempt() -> tuple[str, T]:
            slot = cursor.next()
            if slot is None:
                raise _ExhaustedError()
            if routing.hedging is None or not idempotent:
                return await once(*slot)
            return await self._hedged(once, slot, cursor, routing.hedging.after)

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, _UpstreamError) and (idempotent or not exc.processed)

        policy = routing.retry
        wait: wait_base
        if policy.jitter:
            wait = wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)
        else:
            wait = wait_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)
        retrying = AsyncRetrying(
            # Attempts first: a retry that will not happen must not spend the budget.
            stop=stop_after_attempt(policy.attempts) | _BudgetStop(self.budget),
            wait=wait,
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        return await retrying(attempt)

    async def _hedged(
        self,
        once: Callable[[str, Ticket], Awaitable[tuple[str, T]]],
        slot: tuple[str, Ticket],
        cursor: _Cursor,
        after: float,
    ) -> tuple[str, T]:
        tasks = [asyncio.ensure_future(once(*slot))]
        try:
            done, _ = await asyncio.wait(tasks, timeout=after)
            if not done and self.budget.allows():
                second = cursor.next()
                if second is not None:
                    self.budget.spend()
                    tasks.append(asyncio.ensure_future(once(*second)))
            first_failure: BaseException | None = None
            pending = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    if not task.done() or task in pending:
                        continue
                    failure = task.exception()
                    if failure is None:
                        return task.result()
                    first_failure = first_failure or failure
            assert first_failure is not None
            raise first_failure
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- failures as responses -----------------------------------------------------------------

    def unavailable(self, route: RegionRoute, what: str, attempts: list[_Attempt]) -> JSONResponse:
        data_class = route.data_class
        tried = "; ".join(f"{a.region} {a.component}: {a.outcome}" for a in attempts)
        allowed = self.design.allowed_regions(data_class)
        if not allowed:
            tried = "the design has no region at that level"
        elif not route.order:
            tried = f"no {what} is configured in {', '.join(allowed)}"
        elif not tried:
            tried = f"every {what} breaker in {', '.join(route.order)} is open"
        if route.refused:
            minimum = self.design.data_classes[data_class].min_sovereignty
            refused = [
                {"region": r, "sovereignty": self.design.region(r).sovereignty.value} for r in route.refused
            ]
            shown = ", ".join(f"{r['region']} ({r['sovereignty']})" for r in refused)
            message = (
                f"no region allowed for {data_class!r} is available ({tried}); failing closed "
                f"rather than sending it below {minimum.value} to {shown}"
            )
            return _error(
                403,
                "sovereignty",
                message,
                data_class=data_class,
                min_sovereignty=minimum.value,
                allowed=list(allowed),
                refused=refused,
                attempts=[a.as_json() for a in attempts],
            )
        return _error(
            503,
            "unavailable",
            f"no region could serve {data_class!r} ({tried})",
            data_class=data_class,
            allowed=list(allowed),
            attempts=[a.as_json() for a in attempts],
        )

    # -- endpoints -----------------------------------------------------------------------------

    def model_for(self, region: str) -> str:
        if region in self.config.llm_models:
            return self.config.llm_models[region]
        for name in self.design.components_of(ComponentKind.LLM):
            placement = self.design.components[name].replicas.get(region)
            if placement is not None and placement.model is not None:
                return placement.model
        return DEFAULT_MODEL

    async def ask(self, request: Request) -> Response:
        started = time.perf_counter()
        self.launch_probes()
        try:
            body = _AskRequest.model_validate_json(await read_body(request, _MAX_ASK_BODY))
        except BodyTooLargeError as exc:
            return _error(413, "too-large", str(exc))
        except ValidationError as exc:
            return _validation_error(exc)
        try:
            route = self.router.route(body.data_class, _ASK_COMPONENTS)
        except UnknownDataClassError as exc:
            return _error(400, "unknown-data-class", str(exc), known=list(exc.known))
        attempts: list[_Attempt] = []

        async def retrieve(region: str, url: str) -> tuple[_RetrieveResponse, _HopIn | None]:
            payload = {"question": body.question, "data_class": body.data_class}
            response = await self.post(f"{url}/v1/retrieve", {**payload, "k": self.config.top_k})
            try:
                parsed = _RetrieveResponse.model_validate_json(response.content)
            except ValidationError as exc:
                raise _UpstreamError("invalid retriever response", processed=True) from exc
            return parsed, _served_by_header(response)

        try:
            retriever_region, (retrieved, header) = await self.call(
                "retriever", route, retrieve, attempts, idempotent=True
            )
        except _RejectedError as exc:
            return self.rejected(exc)
        except _NoCredentialsError as exc:
            return _error(503, "credentials", str(exc), attempts=[a.as_json() for a in attempts])
        except (_UpstreamError, _ExhaustedError):
            return self.unavailable(route, "retriever", attempts)

        served_by = [self.hop]
        reported = retrieved.served_by or ([header] if header is not None else [])
        if not reported:
            reported = [_HopIn(component="retriever", region=retriever_region)]
        served_by += [_hop(self.design, h.component, h.region, replica=h.replica) for h in reported]
        ranked = sorted(retrieved.passages, key=lambda p: -p.score)
        passages = [Passage(p.doc_id, p.title, p.text) for p in ranked]

        async def chat(region: str, url: str) -> tuple[str, str, _HopIn | None]:
            model = self.model_for(region)
            payload = {"model": model, "messages": build_messages(body.question, passages)}
            response = await self.post(f"{url}/v1/chat/completions", payload)
            try:
                parsed = _ChatResponse.model_validate_json(response.content)
            except ValidationError as exc:
                raise _UpstreamError("invalid llm response", processed=True) from exc
            text = message_text(parsed.choices[0].message.content).strip()
            if not text:
                raise _UpstreamError("empty llm answer", processed=True)
            return text, parsed.model or model, _served_by_header(response)

        llm_attempts: list[_Attempt] = []
        degraded_reason: str | None = None
        try:
            llm_region, (answer, model, llm_header) = await self.call(
                "llm", route, chat, llm_attempts, idempotent=True
            )
            citations = parse_citations(answer)
            where = (llm_header.region if llm_header is not None else None) or llm_region
            replica = llm_header.replica if llm_header is not None else None
            served_by.append(_hop(self.design, "llm", where, replica=replica, model=model))
        except (_UpstreamError, _ExhaustedError, _RejectedError, _NoCredentialsError):
            answer, citations = retrieval_only_answer(passages)
            tried = "; ".join(f"{a.region}: {a.outcome}" for a in llm_attempts)
            allowed = ", ".join(r for r in route.order if r in self.upstreams["llm"]) or "none"
            degraded_reason = f"no allowed llm answered (allowed: {allowed}; {tried or 'none tried'})"
        result: dict[str, Any] = {
            "answer": answer,
            "citations": list(citations),
            "degraded": degraded_reason is not None,
            "served_by": served_by,
            "data_class": body.data_class,
        }
        if degraded_reason is not None:
            result["degraded_reason"] = degraded_reason
        if body.tenant is not None:
            result["tenant"] = body.tenant
        result["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        return JSONResponse(result)

    async def write_document(self, request: Request) -> Response:
        started = time.perf_counter()
        self.launch_probes()
        try:
            raw = await read_body(request, _MAX_DOCUMENT_BODY)
            body = _DocumentRequest.model_validate_json(raw)
        except BodyTooLargeError as exc:
            return _error(413, "too-large", str(exc))
        except ValidationError as exc:
            return _validation_error(exc)
        try:
            route = self.router.route(body.data_class, _WRITE_COMPONENTS, spread=False)
        except UnknownDataClassError as exc:
            return _error(400, "unknown-data-class", str(exc), known=list(exc.known))
        attempts: list[_Attempt] = []
        payload = body.model_dump(exclude_none=True)

        async def write(region: str, url: str) -> tuple[dict[str, Any], _HopIn | None]:
            response = await self.post(f"{url}/v1/documents", payload)
            try:
                ack = response.json()
            except ValueError:
                ack = None
            if not isinstance(ack, dict) or "id" not in ack:
                raise _UpstreamError("invalid store acknowledgement", processed=True)
            return ack, _served_by_header(response)

        try:
            region, (ack, header) = await self.call("store", route, write, attempts, idempotent=False)
        except _RejectedError as exc:
            return self.rejected(exc)
        except _NoCredentialsError as exc:
            return _error(503, "credentials", str(exc), attempts=[a.as_json() for a in attempts])
        except (_UpstreamError, _ExhaustedError):
            return self.unavailable(route, "store", attempts)
        where = (header.region if header is not None else None) or region
        replica = header.replica if header is not None else None
        store_hop = _hop(self.design, "store", where, replica=replica)
        result = {
            **ack,
            "data_class": body.data_class,
            "served_by": [self.hop, store_hop],
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
        }
        return JSONResponse(result)

    def rejected(self, exc: _RejectedError) -> JSONResponse:
        message = f"the {exc.component} in {exc.region} refused the request (HTTP {exc.status})"
        upstream = {"component": exc.component, "region": exc.region, "body": exc.body}
        return _error(exc.status, "rejected", message, upstream=upstream)

    def status(self) -> dict[str, Any]:
        breakers = []
        for (component, region), breaker in self.router.breakers.items():
            snap = breaker.snapshot()
            healthy_for = snap.healthy_for if snap.trips and snap.healthy_for is not None else None
            breakers.append(
                {
                    "component": component,
                    "region": region,
                    "url": self.upstreams[component][region],
                    "state": snap.state.value,
                    "failures": snap.failures,
                    "trips": snap.trips,
                    "open_remaining": snap.open_remaining,
                    "healthy_for": healthy_for,
                }
            )
        classes = list(self.design.data_classes)
        usage = self.budget.usage()
        return {
            "gateway": self.hop,
            "mode": self.design.routing.mode.value,
            "sovereignty_guard": self.design.routing.sovereignty_guard,
            "preferred": {dc: self.router.preferred(dc, _ASK_COMPONENTS) for dc in classes},
            "preferred_store": {dc: self.router.preferred(dc, _WRITE_COMPONENTS) for dc in classes},
            "regions": [
                {
                    **_hop(self.design, "region", region),
                    "health": self.router.health(region, _ASK_COMPONENTS).value,
                }
                for region in self.design.routing_order
            ],
            "breakers": breakers,
            "load": {"inflight": self.inflight, "max_inflight": self.config.max_inflight, "shed": self.shed},
            "retry_budget": {
                "budget": usage.budget,
                "window": usage.window,
                "requests": usage.requests,
                "retries": usage.retries,
                "ratio": usage.ratio,
            },
        }


def _check(config: GatewayConfig, design: Design) -> None:
    try:
        design.region(config.region)
    except KeyError:
        raise ValueError(
            f"the gateway's region {config.region!r} is neither in the design nor in the catalog"
        ) from None
    known = set(design.routing_order)
    for component, urls in {**config.upstreams(), "llm-model": config.llm_models}.items():
        for region in urls:
            if region not in known:
                raise ValueError(
                    f"{component} region {region!r} is not in the design's routing order "
                    f"({', '.join(design.routing_order)})"
                )


def _default_client_factory(design: Design) -> ClientFactory:
    pool = design.routing.connection_pool

    def make() -> httpx.AsyncClient:
        limits = httpx.Limits(
            max_connections=pool.max_connections,
            max_keepalive_connections=pool.max_connections,
            keepalive_expiry=pool.keepalive_expiry,
        )
        # The stack's hops must go where the design says, not through an environment proxy.
        return httpx.AsyncClient(limits=limits, trust_env=False)

    return make


def create_app(
    config: GatewayConfig,
    design: Design,
    *,
    client_factory: ClientFactory | None = None,
    middleware: Sequence[Middleware] = (),
    headers_provider: HeadersProvider | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """A new gateway ASGI app; apps share no state, so tests can run several.

    `client_factory` makes the outgoing client at startup, and the app closes it at shutdown
    (default: a plain pooled ``httpx.AsyncClient`` sized by ``routing.connection_pool``).
    `middleware` is added inside the ``x-bascule-served-by`` header, outermost first
    (authentication, …). `headers_provider` adds headers to every outgoing request. `clock`
    drives breakers and the retry budget. Raises ``ValueError`` when the configuration names a
    region the design's routing does not have.
    """
    _check(config, design)
    gateway = _Gateway(
        config,
        design,
        client_factory or _default_client_factory(design),
        headers_provider,
        clock,
    )

    async def ask(request: Request) -> Response:
        return await gateway.admit(gateway.ask, request)

    async def documents(request: Request) -> Response:
        return await gateway.admit(gateway.write_document, request)

    async def status(request: Request) -> Response:
        return JSONResponse(gateway.status())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not gateway.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready", "region": config.region})

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return _error(exc.status_code, "http", str(exc.detail))
        return _error(500, "internal", "internal error")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        Exception: http_error,
    }
    served_by = Middleware(ServedByMiddleware, component="gateway", region=config.region, replica=config.name)
    return Starlette(
        routes=[
            Route("/v1/ask", ask, methods=["POST"]),
            Route("/v1/documents", documents, methods=["POST"]),
            Route("/v1/status", status, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=[served_by, *middleware],
        exception_handlers=handlers,
        lifespan=lifespan,
    )


# --- process entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the gateway until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    rest, wiring = read_wiring(sys.argv[1:] if argv is None else argv)
    config = parse_args(rest)
    try:
        design = read_design(config.design)
        app = create_app(
            config,
            design,
            client_factory=wiring.client_factory(config.region),
            middleware=wiring.incoming(config.region),
        )
    except (ScenarioError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    serve(app, config.host, config.port)


if __name__ == "__main__":
    main()
