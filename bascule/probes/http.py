"""The ``http`` probe: one request whose status, latency and JSON body must match the spec.

`check_response` and `check_assertion` decide (pure); `HttpProbe.sample` sends the request.
"""

from __future__ import annotations

import time

import httpx

from bascule.edge import NOT_JSON, Edge, NoEntryError, request_headers
from bascule.errors import ProbeError
from bascule.journal.samples import RequestSample
from bascule.model import probes as specs
from bascule.model.design import Design
from bascule.probes.base import MISSING, Probe, describe_error, new_request_id, read_path, register
from bascule.tracecontext import new_trace_id

__all__ = ["HttpProbe", "check_assertion", "check_response"]


def _same(value: object, expected: object) -> bool:
    # JSON's true is not 1: compare booleans only with booleans.
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    return value == expected


def check_assertion(assertion: specs.JsonAssertion, body: object) -> str | None:
    """Why ``body`` fails ``assertion``, or ``None`` when it holds. An assertion that states
    nothing else asserts that the path exists."""
    value = read_path(body, assertion.path)
    where = assertion.path or "(body)"
    if assertion.exists is False:
        return None if value is MISSING else f"{where} is present"
    if assertion.not_empty is False:
        return None if value is MISSING or value in ("", [], {}) else f"{where} is not empty"
    if value is MISSING:
        return f"{where} is missing"
    if assertion.equals is not None and not _same(value, assertion.equals):
        return f"{where} is {value!r}, expected {assertion.equals!r}"
    if assertion.not_empty and (not isinstance(value, str | list | dict) or not value):
        return f"{where} is empty" if isinstance(value, str | list | dict) else f"{where} is {value!r}"
    if assertion.contains is not None:
        if isinstance(value, str):
            if str(assertion.contains) not in value:
                return f"{where} does not contain {assertion.contains!r}"
        elif isinstance(value, list):
            if not any(_same(item, assertion.contains) for item in value):
                return f"{where} does not contain {assertion.contains!r}"
        else:
            return f"{where} is {type(value).__name__}, cannot contain {assertion.contains!r}"
    return None


def check_response(spec: specs.HttpProbe, status: int, latency: float, body: object) -> list[str]:
    """Every way the response falls short of ``spec``; empty when it matches. ``body`` is the parsed
    JSON, or `MISSING` when the body is not JSON."""
    problems: list[str] = []
    if status not in spec.expect_status:
        expected = ", ".join(str(s) for s in spec.expect_status)
        problems.append(f"HTTP {status}, expected {expected}")
    if spec.max_latency is not None and latency > spec.max_latency:
        problems.append(f"took {latency:.3f} s, more than {spec.max_latency:g} s")
    if spec.assertions and body is MISSING:
        problems.append("the body is not JSON")
        return problems
    for assertion in spec.assertions:
        problem = check_assertion(assertion, body)
        if problem is not None:
            problems.append(problem)
    return problems


@register
class HttpProbe(Probe[specs.HttpProbe]):
    kind = "http"
    spec_type = specs.HttpProbe
    sample_kind = "http"
    _edge: Edge | None = None

    @property
    def data_class(self) -> str | None:
        if not self.spec.url.startswith("/"):
            return self.spec.data_class
        return self.spec.data_class or least_demanding_class(self.context.design)

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        spec = self.spec
        trace_id = new_trace_id()
        if spec.url.startswith("/"):
            return await self._through_edge(client, now, trace_id)
        try:
            response = await client.request(
                spec.method,
                spec.url,
                json=spec.json_body,
                headers=request_headers(self.headers, trace_id),
                timeout=spec.timeout,
            )
        except httpx.HTTPError as exc:
            return self._sample(now, [describe_error(exc)], trace_id=trace_id)
        latency = time.monotonic() - now
        try:
            body: object = response.json()
        except ValueError:
            body = MISSING
        problems = check_response(spec, response.status_code, latency, body)
        return self._sample(now, problems, status=response.status_code, latency=latency, trace_id=trace_id)

    async def _through_edge(self, client: httpx.AsyncClient, now: float, trace_id: str) -> RequestSample:
        spec = self.spec
        data_class = self.data_class
        assert data_class is not None
        if self._edge is None:
            if not self.context.entries:
                raise ProbeError(f"no entry point to send {spec.url} to: give the probe a full `url`")
            self._edge = Edge(self.context.design, self.context.entries)
        try:
            answer = await self._edge.post(
                client,
                spec.url,
                spec.json_body,
                data_class,
                method=spec.method,
                trace_id=trace_id,
                headers=self.headers,
            )
        except NoEntryError as exc:
            return self._sample(now, [str(exc)], data_class=data_class, trace_id=trace_id)
        latency = time.monotonic() - now
        if answer.status is None:
            error = answer.error or "no answer"
            return self._sample(now, [error], data_class=data_class, latency=latency, trace_id=trace_id)
        body = MISSING if answer.value is NOT_JSON else answer.value
        problems = check_response(spec, answer.status, latency, body)
        return self._sample(
            now,
            problems,
            status=answer.status,
            data_class=data_class,
            region=answer.region,
            latency=latency,
            trace_id=trace_id,
        )

    def _sample(
        self,
        now: float,
        problems: list[str],
        *,
        status: int | None = None,
        data_class: str | None = None,
        region: str | None = None,
        latency: float | None = None,
        trace_id: str | None = None,
    ) -> RequestSample:
        return RequestSample(
            source=self.name,
            kind=self.sample_kind,
            started=now,
            latency=time.monotonic() - now if latency is None else latency,
            ok=not problems,
            status=status,
            data_class=data_class,
            entry_region=region,
            error="; ".join(problems) or None,
            request_id=new_request_id(),
            trace_id=trace_id,
        )


def least_demanding_class(design: Design) -> str:
    """The data class the most regions may serve (the first such, in the design's order)."""
    classes = list(design.data_classes)
    return max(classes, key=lambda c: len(design.allowed_regions(c)))
