"""The service's edge as its clients see it: the health-checked global traffic manager (DNS
failover, a global load balancer) that real deployments put in front of each region's gateways.

bascule runs it in the client — ``bascule stack ask``, the probes and the load generator — so that
clients fail over between regional entry points the way the design routes them: in routing order,
only to regions allowed for the request's data class while the sovereignty guard is on, skipping a
region whose circuit breaker is open (with the design's thresholds, so a flapping region is not
ping-ponged). Without an edge, a gateway outage (the health-check flapping of 2025-10-20, a region
blackholed) would be unrecoverable however good the gateways' own failover is.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from bascule.eventstream import EventStream, is_event_stream, read_event_stream
from bascule.model.design import Design, RoutingMode
from bascule.stack.breaker import CircuitBreaker
from bascule.tracecontext import TRACEPARENT, traceparent

__all__ = [
    "NOT_JSON",
    "Edge",
    "EdgeAttempt",
    "EdgeResponse",
    "NoEntryError",
    "region_failed",
    "request_headers",
]


class _NotJson:
    def __repr__(self) -> str:
        return "NOT_JSON"


NOT_JSON: Final = _NotJson()
"""`EdgeResponse.value` of an answer whose body is not JSON (or that had no body)."""


class NoEntryError(Exception):
    """No entry point may take this data class: the edge fails closed."""


@dataclass(frozen=True)
class EdgeAttempt:
    region: str
    status: int | None
    error: str | None
    seconds: float


@dataclass(frozen=True)
class EdgeResponse:
    """The answer a client got, and every regional entry point it tried on the way."""

    status: int | None
    body: dict[str, Any] | None
    """The answer's body when it is a JSON object (what the service's own API answers)."""
    region: str | None
    attempts: tuple[EdgeAttempt, ...]
    seconds: float
    value: Any = NOT_JSON
    """The answer's whole JSON value — an object, a list, a string… — or `NOT_JSON`."""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def error(self) -> str | None:
        if self.ok:
            return None
        last = self.attempts[-1] if self.attempts else None
        if last is not None and last.error:
            return last.error
        if self.body and isinstance(self.body.get("message"), str):
            return str(self.body["message"])
        return f"HTTP {self.status}" if self.status is not None else "no entry point"


def region_failed(status: int) -> bool:
    """A 5xx or a 429 says the region cannot serve now: try the next one. Other 4xx are answers
    about the request itself (a sovereignty refusal included) and end the attempt."""
    return status >= 500 or status == 429


class Edge:
    def __init__(
        self,
        design: Design,
        entries: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.design = design
        self.entries = dict(entries)
        self._clock = clock
        self.breakers = {
            region: CircuitBreaker.from_policy(design.routing.circuit_breaker, clock=clock)
            for region in entries
        }
        self._turn = itertools.count()
        timeouts = design.routing.timeouts
        self.timeout = httpx.Timeout(timeouts.request + timeouts.connect, connect=timeouts.connect)

    def candidates(self, data_class: str) -> list[str]:
        """Entry regions for ``data_class``, in the order they are tried."""
        if data_class not in self.design.data_classes:
            known = ", ".join(self.design.data_classes)
            raise NoEntryError(f"unknown data class {data_class!r}; the design has: {known}")
        order = [r for r in self.design.allowed_regions(data_class) if r in self.entries]
        if not order:
            raise NoEntryError(f"no region of the design may serve {data_class!r}: the edge fails closed")
        if self.design.routing.mode is RoutingMode.ACTIVE_ACTIVE and len(order) > 1:
            shift = next(self._turn) % len(order)
            order = order[shift:] + order[:shift]
        return order

    async def post(
        self,
        client: httpx.AsyncClient,
        path: str,
        payload: Mapping[str, Any] | None,
        data_class: str,
        *,
        method: str = "POST",
        trace_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EdgeResponse:
        """`method` `path` at the entry points allowed for `data_class`, in routing order, failing
        over on a transport error, a 5xx or a 429. `payload` is the JSON body (none when None).
        Every attempt carries `headers` and, with `trace_id`, a ``traceparent`` of that trace (one
        span per attempt), so that the hops of every attempt belong to the one request."""
        began = self._clock()
        attempts: list[EdgeAttempt] = []
        last: tuple[int | None, Any, str | None] = (None, NOT_JSON, None)
        order = self.candidates(data_class)
        # Regions whose breaker refuses are tried last, so that a total outage still gets an answer.
        tickets = [(region, self.breakers[region].acquire()) for region in order]
        ranked = [t for t in tickets if t[1] is not None] + [t for t in tickets if t[1] is None]
        tried: set[str] = set()
        try:
            for region, ticket in ranked:
                tried.add(region)
                breaker = self.breakers[region]
                started = self._clock()
                try:
                    response = await client.request(
                        method,
                        self.entries[region] + path,
                        json=None if payload is None else dict(payload),
                        headers=request_headers(headers, trace_id),
                        timeout=self.timeout,
                    )
                except httpx.HTTPError as exc:
                    if ticket is not None:
                        breaker.fail(ticket)
                    attempts.append(
                        EdgeAttempt(region, None, f"{type(exc).__name__}: {exc}", self._clock() - started)
                    )
                    last = (None, NOT_JSON, region)
                    continue
                except asyncio.CancelledError:
                    # The caller gave up on this region (its own deadline is shorter than ours): to
                    # the client that is a failure of the region, and the breaker must hear of it,
                    # or a blackholed region would keep every caller with a short deadline.
                    if ticket is not None:
                        breaker.fail(ticket)
                    raise
                value = answer_value(response)
                if isinstance(value, EventStream) and (cut := value.cut_reason()) is not None:
                    # The status came, the whole answer did not: a failure of the region, as a
                    # body its connection cut short is (httpx raises for that one).
                    if ticket is not None:
                        breaker.fail(ticket)
                    attempts.append(EdgeAttempt(region, None, cut, self._clock() - started))
                    last = (None, NOT_JSON, region)
                    continue
                attempts.append(EdgeAttempt(region, response.status_code, None, self._clock() - started))
                last = (response.status_code, value, region)
                if region_failed(response.status_code):
                    if ticket is not None:
                        breaker.fail(ticket)
                    continue
                if ticket is not None:
                    breaker.succeed(ticket)
                break
        finally:
            # Tickets of regions never tried go back, so that a half-open breaker's trial calls
            # are not used up by requests that never reached it.
            for region, ticket in ranked:
                if ticket is not None and region not in tried:
                    self.breakers[region].release(ticket)
        status, value, answered_by = last
        body = value if isinstance(value, dict) else None
        return EdgeResponse(status, body, answered_by, tuple(attempts), self._clock() - began, value)

    async def ask(self, client: httpx.AsyncClient, question: str, data_class: str) -> EdgeResponse:
        return await self.post(
            client, "/v1/ask", {"question": question, "data_class": data_class}, data_class
        )

    async def write(self, client: httpx.AsyncClient, document: Mapping[str, Any]) -> EdgeResponse:
        data_class = str(document.get("data_class", "internal"))
        return await self.post(client, "/v1/documents", document, data_class)

    def ask_once(self, question: str, data_class: str) -> EdgeResponse:
        """One ask from synchronous code (the CLI)."""

        async def go() -> EdgeResponse:
            async with httpx.AsyncClient(trust_env=False) as client:
                return await self.ask(client, question, data_class)

        return asyncio.run(go())


def request_headers(headers: Mapping[str, str] | None, trace_id: str | None) -> dict[str, str]:
    """`headers`, plus a ``traceparent`` of `trace_id` (a new span) when there is one."""
    out = dict(headers or {})
    if trace_id is not None:
        out[TRACEPARENT] = traceparent(trace_id)
    return out


def answer_value(response: httpx.Response) -> Any:
    """The answer's JSON value; an event stream's events (`EventStream`); else `NOT_JSON`."""
    if is_event_stream(response.headers.get("content-type")):
        return read_event_stream(response.content)
    try:
        return response.json()
    except ValueError:
        return NOT_JSON
