"""The skeleton every reference service shares: the app around its routes, and its ``main``.

A service brings only what is its own — its routes, what it starts and stops (`Lifecycle`),
what ``/readyz`` says once started (`Readiness`), the shape of its error bodies when it is not
the stack's ``{"error", "reason"}`` (`ServiceErrors`) — and `create_service_app` adds the rest:

- ``GET /healthz``: ``{"status": "ok"}`` as soon as the process serves;
- ``GET /readyz``: 503 ``{"status": "starting"}`` until the lifecycle has started and once it
  begins to stop; in between, the service's readiness (by default ``{"status": "ready"}``);
- ``GET /metrics`` for a service that names its hop: its requests, errors and latency in
  Prometheus's text format (`bascule.stack.metrics`, docs/metrics.md);
- the W3C trace context of each request passed on to the calls it makes, inside an OpenTelemetry
  server span when the environment asks for spans (`bascule.stack.tracing`), outermost; then the
  request counted and timed for ``/metrics``; then the ``x-bascule-served-by`` header naming the
  hop (`ServedBy`), then the service's middleware (authentication, …) in the order given;
- ``HTTPException`` and unhandled errors answered in the service's error shape.

`serve_wired` is every service's ``main`` but the identity's: it takes the stack's shared
wiring flags (DNS, tokens) out of the command line, parses the rest, builds the app and serves
it until SIGINT/SIGTERM; `wired_caller` wires a service that calls others.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from bascule.stack.metrics import MetricsMiddleware, ServiceMetrics
from bascule.stack.serve import (
    SERVED_BY_HEADER,
    BodyTooLargeError,
    ServedByMiddleware,
    serve,
    served_by_value,
)
from bascule.stack.tracing import TraceContextMiddleware, start_tracing
from bascule.stack.wiring import Wiring, read_wiring

__all__ = [
    "CallerAppFactory",
    "Lifecycle",
    "Readiness",
    "ReasonErrors",
    "ServedBy",
    "ServiceConfig",
    "ServiceErrors",
    "bad_body",
    "create_service_app",
    "describe",
    "ready_response",
    "reason_error",
    "serve_wired",
    "wired_caller",
]

Lifecycle = Callable[[], AbstractAsyncContextManager[None]]
"""What a service starts before it is ready and stops after it stops being ready."""
Readiness = Callable[[], Awaitable[Response]]
"""The ``/readyz`` answer of a started service."""


class ServiceErrors(Protocol):
    """A service's answers to errors its handlers did not answer themselves."""

    def http_error(self, status: int, detail: str) -> Response:
        """The answer to an ``HTTPException`` (404 of an unknown path, 405, …)."""
        ...

    def internal_error(self, exc: Exception) -> Response:
        """The 500 answer to an unhandled exception."""
        ...


@dataclass(frozen=True)
class ServedBy:
    """The hop a service's responses name in ``x-bascule-served-by``."""

    component: str
    region: str
    replica: str

    @property
    def header(self) -> str:
        return served_by_value(self.component, self.region, self.replica)

    def middleware(self) -> Middleware:
        return Middleware(
            ServedByMiddleware, component=self.component, region=self.region, replica=self.replica
        )


# --- the ``{"error", "reason"}`` answers of the store and the retriever ----------------------


def describe(exc: Exception) -> str:
    """An exception as ``Type: message``, or ``Type`` when it has no message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def reason_error(status: int, error: str, reason: str, **extra: Any) -> JSONResponse:
    """An ``{"error", "reason", …}`` answer."""
    return JSONResponse({"error": error, "reason": reason, **extra}, status_code=status)


def bad_body(exc: BodyTooLargeError | ValidationError) -> JSONResponse:
    """413 for a body over its bound, 422 naming each mismatch of a body that does not parse."""
    if isinstance(exc, BodyTooLargeError):
        return reason_error(413, "body too large", str(exc))
    # Inputs are left out: they can be whole documents.
    details = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False)
    ]
    return reason_error(422, "invalid request", "the body does not match", detail=details)


@dataclass(frozen=True)
class ReasonErrors:
    """`ServiceErrors` as ``{"error", "reason"}`` bodies."""

    served_by: ServedBy

    def http_error(self, status: int, detail: str) -> Response:
        return reason_error(status, detail, detail)

    def internal_error(self, exc: Exception) -> Response:
        response = reason_error(500, "internal error", describe(exc))
        # Unhandled errors are answered outside every middleware: name the hop here.
        response.headers[SERVED_BY_HEADER] = self.served_by.header
        return response


# --- the app ---------------------------------------------------------------------------------


def ready_response(**details: object) -> JSONResponse:
    """``{"status": "ready", **details}``."""
    return JSONResponse({"status": "ready", **details})


async def _ready() -> Response:
    return ready_response()


def create_service_app(
    routes: Sequence[BaseRoute],
    *,
    served_by: ServedBy | None = None,
    errors: ServiceErrors | None = None,
    lifecycle: Lifecycle | None = None,
    readiness: Readiness = _ready,
    middleware: Sequence[Middleware] = (),
    metrics: ServiceMetrics | None = None,
) -> Starlette:
    """A service's ASGI app: its `routes` with ``/healthz`` and ``/readyz`` added, and
    ``/metrics`` for a service that names its hop (`metrics`: a service's own, with collectors
    added; by default a new one).

    `errors` defaults to the stack's ``{"error", "reason"}`` bodies (`ReasonErrors`) for a
    service that names its hop; without `served_by`, responses name no hop and Starlette's
    plain error answers stand unless `errors` is given.
    """
    started = False

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not started:
            return JSONResponse({"status": "starting"}, status_code=503)
        return await readiness()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal started
        async with lifecycle() if lifecycle is not None else contextlib.nullcontext():
            started = True
            try:
                yield
            finally:
                started = False

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {}
    if errors is None and served_by is not None:
        errors = ReasonErrors(served_by)
    if errors is not None:
        answers = errors

        async def on_error(request: Request, exc: Exception) -> Response:
            if isinstance(exc, HTTPException):
                return answers.http_error(exc.status_code, exc.detail)
            return answers.internal_error(exc)

        handlers = {HTTPException: on_error, Exception: on_error}
    outer: list[Middleware] = []
    own: list[BaseRoute] = []
    if served_by is not None:
        # Outermost: the server span covers the whole answer, and every call the request makes
        # continues its trace (`bascule.stack.tracing`).
        start_tracing(served_by.component, served_by.region, served_by.replica)
        if metrics is None:
            metrics = ServiceMetrics(served_by.component, served_by.region, served_by.replica)
        own = [metrics.route()]
        outer = [
            Middleware(TraceContextMiddleware, component=served_by.component),
            Middleware(MetricsMiddleware, metrics=metrics),
            served_by.middleware(),
        ]
    return Starlette(
        routes=[
            *routes,
            *own,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=[*outer, *middleware],
        exception_handlers=handlers,
        lifespan=lifespan,
    )


# --- the process entry point -----------------------------------------------------------------


class ServiceConfig(Protocol):
    """What the skeleton reads of a service's configuration: where it listens, its region."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def region(self) -> str: ...


C = TypeVar("C", bound=ServiceConfig)
C_contra = TypeVar("C_contra", bound=ServiceConfig, contravariant=True)


class CallerAppFactory(Protocol[C_contra]):
    """The ``create_app`` of a service that calls others (the store, the retriever)."""

    def __call__(
        self,
        config: C_contra,
        *,
        client_factory: Callable[[], httpx.AsyncClient],
        middleware: Sequence[Middleware],
    ) -> Starlette: ...


def wired_caller(create_app: CallerAppFactory[C]) -> Callable[[C, Wiring], ASGIApp]:
    """`create_app` wired into the stack: its client resolves names through the stack's DNS
    and carries tokens, and calls into it are checked for theirs."""

    def create(config: C, wiring: Wiring) -> ASGIApp:
        return create_app(
            config,
            client_factory=wiring.client_factory(config.region),
            middleware=wiring.incoming(config.region),
        )

    return create


def serve_wired(
    argv: Sequence[str] | None,
    parse: Callable[[list[str]], C],
    create: Callable[[C, Wiring], ASGIApp],
) -> None:
    """Serve a service until SIGINT/SIGTERM: the shared wiring flags are taken out of `argv`
    (default: ``sys.argv``), `parse` reads the rest, and `create` makes the app."""
    rest, wiring = read_wiring(sys.argv[1:] if argv is None else argv)
    config = parse(rest)
    serve(create(config, wiring), config.host, config.port)
