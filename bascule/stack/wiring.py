"""How a reference service is wired into a stack: the flags every service shares (names resolved
through the stack's DNS server, pools, timeouts, tokens), the outgoing client they configure, and
the check of incoming tokens.

Tokens model a cloud's IAM *within a region*: a service whose region relies on an identity service
attaches a token to each call to a service of its own region, and such a callee refuses a call
from its own region that carries no valid token. Calls between regions are taken to be
authenticated by other means (a private interconnect), so one region's identity outage reaches
another region only if that region relies on the same identity service — which is what the
planner's hidden-dependency finding is about. When no token can be had, the call fails before it
leaves, as an SDK that cannot sign does: an ``httpx.RequestError``, which callers treat as an
upstream failure and fail over from.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from bascule.model.names import ZONE, region_slug
from bascule.stack.auth import (
    AuthConfig,
    AuthError,
    RequireToken,
    TokenSource,
    add_auth_arguments,
    auth_config_from_args,
)
from bascule.stack.net import (
    NetConfig,
    add_net_arguments,
    make_async_client,
    make_transport,
    net_config_from_args,
)
from bascule.stack.tracing import TRACEPARENT, outgoing_traceparent

__all__ = ["CALLER_REGION_HEADER", "CredentialsError", "SameRegionTokens", "Wiring", "read_wiring"]

CALLER_REGION_HEADER = "x-bascule-caller-region"


class CredentialsError(httpx.RequestError):
    """No valid token could be had for a call to the caller's own region."""


def _callee_region_slug(host: str) -> str | None:
    # retriever.aws-us-east-1.bascule.internal → aws-us-east-1 (the local target's names);
    # retriever--aws-us-east-1.rag.svc.cluster.local → aws-us-east-1 (rendered Kubernetes Services).
    suffix = "." + ZONE
    if host.endswith(suffix):
        labels = host[: -len(suffix)].split(".")
        return labels[-1] if len(labels) >= 2 else None
    _, sep, slug = host.split(".", 1)[0].rpartition("--")
    return slug if sep else None


class _WiredClient(httpx.AsyncClient):
    """An AsyncClient that also closes the client its token source uses."""

    def __init__(self, *, companions: Sequence[httpx.AsyncClient], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._companions = list(companions)
        self.tokens: TokenSource | None = None

    async def aclose(self) -> None:
        if self.tokens is not None:
            await self.tokens.aclose()
        for companion in self._companions:
            await companion.aclose()
        await super().aclose()


@dataclass(frozen=True)
class Wiring:
    net: NetConfig
    auth: AuthConfig

    def client_factory(self, region: str) -> Callable[[], httpx.AsyncClient]:
        """A factory of the service's outgoing client: names resolved at connection time through
        the stack's DNS server, the caller's region and the trace context of the request being
        served stamped on every call, a token attached to calls into the caller's own region."""
        own = region_slug(region)

        def make() -> httpx.AsyncClient:
            companions: list[httpx.AsyncClient] = []
            tokens: TokenSource | None = None
            if self.auth.enabled:
                token_client = make_async_client(self.net)
                companions.append(token_client)
                tokens = self.auth.token_source(token_client)

            async def stamp(request: httpx.Request) -> None:
                request.headers[CALLER_REGION_HEADER] = region
                parent = outgoing_traceparent()
                if parent is not None and TRACEPARENT not in request.headers:
                    request.headers[TRACEPARENT] = parent
                if tokens is None or _callee_region_slug(request.url.host) != own:
                    return
                try:
                    request.headers.update(await tokens.headers())
                except AuthError as exc:
                    raise CredentialsError(
                        f"no credentials for {request.url.host}: {exc}", request=request
                    ) from exc

            client = _WiredClient(
                companions=companions,
                transport=make_transport(self.net),
                timeout=self.net.timeout,
                trust_env=False,
                event_hooks={"request": [stamp]},
            )
            client.tokens = tokens
            return client

        return make

    def incoming(self, region: str) -> list[Middleware]:
        """The check of incoming tokens, when this service's region relies on an identity service."""
        if not self.auth.enabled or not self.auth.secret:
            return []
        return [Middleware(SameRegionTokens, secret=self.auth.secret, region=region)]


class SameRegionTokens:
    """Require a valid token from callers of the same region (see the module docstring)."""

    def __init__(self, app: ASGIApp, secret: str, region: str) -> None:
        self._app = app
        self._checked = RequireToken(app, secret)
        self._region = region.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._from_own_region(scope):
            await self._checked(scope, receive, send)
        else:
            await self._app(scope, receive, send)

    def _from_own_region(self, scope: Scope) -> bool:
        header = CALLER_REGION_HEADER.encode()
        return any(name.lower() == header and value == self._region for name, value in scope["headers"])


def read_wiring(argv: Sequence[str]) -> tuple[list[str], Wiring]:
    """Take the shared flags out of ``argv``; the rest is the service's own."""
    parser = argparse.ArgumentParser(add_help=False)
    add_net_arguments(parser)
    add_auth_arguments(parser)
    namespace, rest = parser.parse_known_args(list(argv))
    try:
        auth = auth_config_from_args(namespace)
    except ValueError as exc:
        parser.error(str(exc))
    return rest, Wiring(net_config_from_args(namespace), auth)
