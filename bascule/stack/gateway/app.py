"""The gateway's HTTP side: its routes over one `Gateway`, and `main`."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bascule.errors import ScenarioError
from bascule.model.design import Design
from bascule.model.loading import read_design
from bascule.stack.gateway.config import GatewayConfig, parse_args
from bascule.stack.gateway.core import ClientFactory, Gateway, HeadersProvider
from bascule.stack.gateway.wire import error_response
from bascule.stack.metrics import GatewayCollector, ServiceMetrics
from bascule.stack.service import ServedBy, create_service_app, ready_response, serve_wired
from bascule.stack.wiring import Wiring

__all__ = ["create_app", "main"]


class _GatewayErrors:
    """`ServiceErrors` as the gateway's ``{"error", "message"}`` bodies."""

    def http_error(self, status: int, detail: str) -> Response:
        return error_response(status, "http", str(detail))

    def internal_error(self, exc: Exception) -> Response:
        return error_response(500, "internal", "internal error")


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
    gateway = Gateway(
        config,
        design,
        client_factory or _default_client_factory(design),
        headers_provider,
        clock,
    )

    metrics = ServiceMetrics("gateway", config.region, config.name)
    metrics.add(GatewayCollector(gateway, metrics.labels))

    async def ask(request: Request) -> Response:
        return await gateway.admit(gateway.ask, request)

    async def documents(request: Request) -> Response:
        return await gateway.admit(gateway.write_document, request)

    async def status(request: Request) -> Response:
        return JSONResponse(gateway.status())

    async def readiness() -> Response:
        return ready_response(region=config.region)

    @contextlib.asynccontextmanager
    async def lifecycle() -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    return create_service_app(
        [
            Route("/v1/ask", ask, methods=["POST"]),
            Route("/v1/documents", documents, methods=["POST"]),
            Route("/v1/status", status, methods=["GET"]),
        ],
        served_by=ServedBy("gateway", config.region, config.name),
        errors=_GatewayErrors(),
        lifecycle=lifecycle,
        readiness=readiness,
        middleware=middleware,
        metrics=metrics,
    )


# --- process entry point ---------------------------------------------------------------------


def _wired(config: GatewayConfig, wiring: Wiring) -> Starlette:
    try:
        design = read_design(config.design)
        return create_app(
            config,
            design,
            client_factory=wiring.client_factory(config.region),
            middleware=wiring.incoming(config.region),
        )
    except (ScenarioError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the gateway until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    serve_wired(argv, parse_args, _wired)
