"""W3C trace context through the reference stack, and its OpenTelemetry spans when asked.

Every service continues the ``traceparent`` of the request it serves on the calls it makes to other
services (`TraceContextMiddleware` notes it, `outgoing_traceparent` gives it to the outgoing
client's hook): the fault plane then ties every hop of a request's tree to the request, not only
its entry hop.

When the standard OpenTelemetry variables name an exporter endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``bascule run --otlp`` sets them to its receiver, a user
may set them to any collector), `start_tracing` sets up the OpenTelemetry SDK: one ``server`` span
per request served, child of the incoming ``traceparent``, with the resource attributes
``service.name`` (the component), ``cloud.provider`` and ``cloud.region`` (from the replica's
region), ``service.instance.id`` (the replica); spans leave through a ``BatchSpanProcessor``, in a
thread of the SDK's, so that a request never waits for an export. Outgoing calls then carry the
server span as their parent. The SDK is an optional extra (``pip install 'bascule[otel]'``): asked
for without it, the service refuses to start and says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
from collections.abc import Coroutine, Mapping
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ENDPOINT_VARIABLES",
    "TRACEPARENT",
    "TraceContextMiddleware",
    "detached",
    "exporting_requested",
    "outgoing_traceparent",
    "start_tracing",
    "stop_tracing",
]

TRACEPARENT = "traceparent"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Health checks make no span: they are the stack's own chatter, not a request's path."""
_incoming: ContextVar[str | None] = ContextVar("bascule_traceparent", default=None)


class _Tracing:
    tracer: Any = None
    """The SDK's tracer once `start_tracing` has set it up; None: trace context is passed on as is."""
    provider: Any = None


_state = _Tracing()


def exporting_requested(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for spans: an OTLP endpoint named, the SDK not disabled and the
    traces exporter not ``none``."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def start_tracing(
    component: str, region: str, replica: str, environ: Mapping[str, str] | None = None
) -> bool:
    """Set up the SDK when the environment asks for spans (see the module docstring); once per
    process. Exits with a message when it asks and the SDK is not installed."""
    env = os.environ if environ is None else environ
    if _state.tracer is not None or not exporting_requested(env):
        return _state.tracer is not None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        names = " or ".join(n for n in ENDPOINT_VARIABLES if env.get(n))
        sys.exit(
            f"{component} ({region}): {names} asks for OpenTelemetry spans, but the OpenTelemetry SDK "
            f"is not installed ({exc.name}): pip install 'bascule[otel]', or unset {names}"
        )
    provider, _, place = region.partition("/")
    attributes = {"service.name": component, "service.instance.id": replica}
    if place:
        attributes |= {"cloud.provider": provider, "cloud.region": place}
    tracer_provider = TracerProvider(resource=Resource.create(attributes))
    # The exporter reads the OTEL_EXPORTER_OTLP_* variables; the processor OTEL_BSP_*.
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _state.provider = tracer_provider
    _state.tracer = tracer_provider.get_tracer("bascule.stack")
    return True


def stop_tracing() -> None:
    """Export the spans still batched and stop (the SDK also does it when the process exits)."""
    provider, _state.provider, _state.tracer = _state.provider, None, None
    if provider is not None:
        provider.shutdown()


def outgoing_traceparent() -> str | None:
    """The ``traceparent`` a call made while serving a request carries: the request's server span
    as parent when spans are exported, else the incoming header as it came."""
    if _state.tracer is not None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        if TRACEPARENT in carrier:
            return carrier[TRACEPARENT]
    return _incoming.get()


def detached(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for background work started while serving a request (a breaker's trial call): run in
    a context of its own, so that its calls carry no trace of that request. Started in the
    request's context, a health check to a foreign region would name a confidential request's
    trace, and the fault plane would count it as that request reaching the foreign region."""
    return asyncio.get_running_loop().create_task(work, context=contextvars.Context())


class TraceContextMiddleware:
    """Notes the incoming ``traceparent`` for the calls the request makes; with the SDK set up,
    serves the request inside a ``server`` span of its trace."""

    def __init__(self, app: ASGIApp, component: str) -> None:
        self._app = app
        self._component = component

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = _header(scope, TRACEPARENT.encode())
        token = _incoming.set(header)
        try:
            if _state.tracer is None or scope.get("path") in _UNTRACED_PATHS:
                await self._app(scope, receive, send)
            else:
                await self._traced(scope, receive, send, header)
        finally:
            _incoming.reset(token)

    async def _traced(self, scope: Scope, receive: Receive, send: Send, header: str | None) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent = TraceContextTextMapPropagator().extract({TRACEPARENT: header} if header else {})
        method = str(scope.get("method", "GET"))
        path = str(scope.get("path", "/"))
        span = _state.tracer.start_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        attached = context.attach(trace.set_span_in_context(span))

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            await send(message)

        try:
            await self._app(scope, receive, send_traced)
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()
            context.detach(attached)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
