"""The gateway itself: the state one app holds and how it serves an ask or a write.

Routing, breakers and their background probes, retries under the budget, hedging, the
degraded answer, and the status the live view reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from bascule.model.design import ComponentKind, Design
from bascule.stack.breaker import BreakerSnapshot, RetryBudget, Ticket
from bascule.stack.gateway.canary import AnswerCanaryLoop
from bascule.stack.gateway.config import DEFAULT_MODEL, GatewayConfig
from bascule.stack.gateway.upstream import (
    Attempt,
    BudgetStop,
    Cursor,
    ExhaustedError,
    NoCredentialsError,
    RejectedError,
    UpstreamError,
    describe,
)
from bascule.stack.gateway.wire import (
    AskRequest,
    ChatResponse,
    DocumentRequest,
    HopIn,
    RetrieveResponse,
    error_response,
    hop_from_header,
    retrieval_only_answer,
    served_by_hop,
    validation_error,
)
from bascule.stack.metrics import GatewayTally
from bascule.stack.prompt import Passage, build_messages, message_text, parse_citations
from bascule.stack.routing import Probe, Router, UnknownDataClassError
from bascule.stack.routing import Route as RegionRoute
from bascule.stack.serve import BodyTooLargeError, read_body
from bascule.stack.tracing import detached

__all__ = ["RETRY_BUDGET_WINDOW", "ClientFactory", "Gateway", "HeadersProvider"]

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

T = TypeVar("T")


class Gateway:
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
        self.hop = served_by_hop(design, "gateway", config.region, replica=config.name)
        self._client_factory = client_factory
        self._headers_provider = headers_provider
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        timeouts = design.routing.timeouts
        self._timeout = httpx.Timeout(timeouts.request, connect=timeouts.connect)
        self.tally = GatewayTally()
        """What ``/metrics`` exposes (`bascule.stack.metrics`): counted as requests are served."""
        self.canary: AnswerCanaryLoop | None = None
        """The design's answer canary, once started (``routing.canary``)."""

    # -- admission -------------------------------------------------------------------------------

    async def admit(self, serve: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
        """Serve `request` if a slot is free; otherwise shed it with 503 ``overloaded`` and a
        ``Retry-After``, as a replica out of worker slots does (one event loop: no lock needed)."""
        limit = self.config.max_inflight
        tally = self.tally
        if limit is not None and tally.inflight >= limit:
            tally.shed += 1
            response = error_response(
                503, "overloaded", f"this gateway replica serves {limit} requests at once and all are busy"
            )
            response.headers["retry-after"] = "1"
            return response
        tally.inflight += 1
        try:
            return await serve(request)
        finally:
            tally.inflight -= 1

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = self._client_factory()
        self._spawn(self._probe_loop())
        policy, llms = self.design.routing.canary, self.upstreams["llm"]
        if policy is not None and llms:
            self.canary = AnswerCanaryLoop(policy, self.design, llms, self.router, self.post, self.model_for)
            self._spawn(self.canary.run())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = detached(work)
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
        except NoCredentialsError:
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
            raise NoCredentialsError(f"the headers provider failed: {exc}") from exc

    async def post(self, url: str, payload: Mapping[str, Any]) -> httpx.Response:
        headers = await self._headers()
        try:
            response = await self.client.post(url, json=payload, headers=headers, timeout=self._timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UpstreamError(describe(exc), processed=False) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(describe(exc), processed=True) from exc
        status = response.status_code
        if status in (429, 503):
            raise UpstreamError(f"HTTP {status}", processed=False)
        if status >= 500 or status == 408:
            raise UpstreamError(f"HTTP {status}", processed=True)
        if status >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise RejectedError(status, body)
        return response

    async def call(
        self,
        component: str,
        route: RegionRoute,
        send: Callable[[str, str], Awaitable[T]],
        attempts: list[Attempt],
        *,
        idempotent: bool,
    ) -> tuple[str, T]:
        """`send(region, base_url)` on the route's regions until one succeeds, as the
        design's retry, timeout and hedging policies say."""
        urls = self.upstreams[component]
        cursor = Cursor(component, [r for r in route.order if r in urls], self.router)
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
            except RejectedError as exc:
                # The upstream is alive and answered: its breaker has no reason to open.
                healthy, outcome = True, f"rejected: HTTP {exc.status}"
                exc.component, exc.region = component, region
                raise
            except NoCredentialsError as exc:
                outcome = str(exc)
                raise
            except TimeoutError as exc:
                healthy, outcome = False, f"no answer within {routing.timeouts.request:g}s"
                raise UpstreamError(outcome, processed=True) from exc
            except UpstreamError as exc:
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
                attempts.append(Attempt(component, region, outcome))

        async def attempt() -> tuple[str, T]:
            slot = cursor.next()
            if slot is None:
                raise ExhaustedError()
            if routing.hedging is None or not idempotent:
                return await once(*slot)
            return await self._hedged(once, slot, cursor, routing.hedging.after)

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, UpstreamError) and (idempotent or not exc.processed)

        policy = routing.retry
        wait: wait_base
        if policy.jitter:
            wait = wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)
        else:
            wait = wait_exponential(multiplier=policy.backoff_base, max=policy.backoff_max)
        retrying = AsyncRetrying(
            # Attempts first: a retry that will not happen must not spend the budget.
            stop=stop_after_attempt(policy.attempts) | BudgetStop(self.budget),
            wait=wait,
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        return await retrying(attempt)

    async def _hedged(
        self,
        once: Callable[[str, Ticket], Awaitable[tuple[str, T]]],
        slot: tuple[str, Ticket],
        cursor: Cursor,
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

    def unavailable(self, route: RegionRoute, what: str, attempts: list[Attempt]) -> JSONResponse:
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
            return error_response(
                403,
                "sovereignty",
                message,
                data_class=data_class,
                min_sovereignty=minimum.value,
                allowed=list(allowed),
                refused=refused,
                attempts=[a.as_json() for a in attempts],
            )
        return error_response(
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
            body = AskRequest.model_validate_json(await read_body(request, _MAX_ASK_BODY))
        except BodyTooLargeError as exc:
            return error_response(413, "too-large", str(exc))
        except ValidationError as exc:
            return validation_error(exc)
        try:
            route = self.router.route(body.data_class, _ASK_COMPONENTS)
        except UnknownDataClassError as exc:
            return error_response(400, "unknown-data-class", str(exc), known=list(exc.known))
        attempts: list[Attempt] = []

        async def retrieve(region: str, url: str) -> tuple[RetrieveResponse, HopIn | None]:
            payload = {"question": body.question, "data_class": body.data_class}
            response = await self.post(f"{url}/v1/retrieve", {**payload, "k": self.config.top_k})
            try:
                parsed = RetrieveResponse.model_validate_json(response.content)
            except ValidationError as exc:
                raise UpstreamError("invalid retriever response", processed=True) from exc
            return parsed, hop_from_header(response)

        try:
            retriever_region, (retrieved, header) = await self.call(
                "retriever", route, retrieve, attempts, idempotent=True
            )
        except RejectedError as exc:
            return self.rejected(exc)
        except NoCredentialsError as exc:
            return error_response(503, "credentials", str(exc), attempts=[a.as_json() for a in attempts])
        except (UpstreamError, ExhaustedError):
            return self.unavailable(route, "retriever", attempts)

        self.tally.served["retriever", retriever_region, body.data_class] += 1
        served_by = [self.hop]
        reported = retrieved.served_by or ([header] if header is not None else [])
        if not reported:
            reported = [HopIn(component="retriever", region=retriever_region)]
        served_by += [served_by_hop(self.design, h.component, h.region, replica=h.replica) for h in reported]
        ranked = sorted(retrieved.passages, key=lambda p: -p.score)
        passages = [Passage(p.doc_id, p.title, p.text) for p in ranked]

        async def chat(region: str, url: str) -> tuple[str, str, HopIn | None]:
            model = self.model_for(region)
            payload = {"model": model, "messages": build_messages(body.question, passages)}
            response = await self.post(f"{url}/v1/chat/completions", payload)
            try:
                parsed = ChatResponse.model_validate_json(response.content)
            except ValidationError as exc:
                raise UpstreamError("invalid llm response", processed=True) from exc
            text = message_text(parsed.choices[0].message.content).strip()
            if not text:
                raise UpstreamError("empty llm answer", processed=True)
            return text, parsed.model or model, hop_from_header(response)

        llm_attempts: list[Attempt] = []
        degraded_reason: str | None = None
        try:
            llm_region, (answer, model, llm_header) = await self.call(
                "llm", route, chat, llm_attempts, idempotent=True
            )
            citations = parse_citations(answer)
            self.tally.served["llm", llm_region, body.data_class] += 1
            where = (llm_header.region if llm_header is not None else None) or llm_region
            replica = llm_header.replica if llm_header is not None else None
            served_by.append(served_by_hop(self.design, "llm", where, replica=replica, model=model))
        except (UpstreamError, ExhaustedError, RejectedError, NoCredentialsError):
            self.tally.degraded[body.data_class] += 1
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
            body = DocumentRequest.model_validate_json(raw)
        except BodyTooLargeError as exc:
            return error_response(413, "too-large", str(exc))
        except ValidationError as exc:
            return validation_error(exc)
        try:
            route = self.router.route(body.data_class, _WRITE_COMPONENTS, spread=False)
        except UnknownDataClassError as exc:
            return error_response(400, "unknown-data-class", str(exc), known=list(exc.known))
        attempts: list[Attempt] = []
        payload = body.model_dump(exclude_none=True)

        async def write(region: str, url: str) -> tuple[dict[str, Any], HopIn | None]:
            response = await self.post(f"{url}/v1/documents", payload)
            try:
                ack = response.json()
            except ValueError:
                ack = None
            if not isinstance(ack, dict) or "id" not in ack:
                raise UpstreamError("invalid store acknowledgement", processed=True)
            return ack, hop_from_header(response)

        try:
            region, (ack, header) = await self.call("store", route, write, attempts, idempotent=False)
        except RejectedError as exc:
            return self.rejected(exc)
        except NoCredentialsError as exc:
            return error_response(503, "credentials", str(exc), attempts=[a.as_json() for a in attempts])
        except (UpstreamError, ExhaustedError):
            return self.unavailable(route, "store", attempts)
        self.tally.served["store", region, body.data_class] += 1
        where = (header.region if header is not None else None) or region
        replica = header.replica if header is not None else None
        store_hop = served_by_hop(self.design, "store", where, replica=replica)
        result = {
            **ack,
            "data_class": body.data_class,
            "served_by": [self.hop, store_hop],
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
        }
        return JSONResponse(result)

    def rejected(self, exc: RejectedError) -> JSONResponse:
        message = f"the {exc.component} in {exc.region} refused the request (HTTP {exc.status})"
        upstream = {"component": exc.component, "region": exc.region, "body": exc.body}
        return error_response(exc.status, "rejected", message, upstream=upstream)

    def breaker_snapshots(self) -> list[tuple[str, str, BreakerSnapshot]]:
        return [(c, r, breaker.snapshot()) for (c, r), breaker in self.router.breakers.items()]

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
                    **served_by_hop(self.design, "region", region),
                    "health": self.router.health(region, _ASK_COMPONENTS).value,
                }
                for region in self.design.routing_order
            ],
            "breakers": breakers,
            "canary": None
            if self.canary is None
            else {
                "distrusted": sorted(self.router.distrusted),
                "asked": self.canary.verdicts.asked,
                "wrong": self.canary.verdicts.wrong_total,
            },
            "load": {
                "inflight": self.tally.inflight,
                "max_inflight": self.config.max_inflight,
                "shed": self.tally.shed,
            },
            "retry_budget": {
                "budget": usage.budget,
                "window": usage.window,
                "requests": usage.requests,
                "retries": usage.retries,
                "ratio": usage.ratio,
            },
        }
