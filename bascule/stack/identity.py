"""The reference stack's identity service: short-lived tokens, the STS of a design.

A region whose design names an ``identity`` dependency gets its services' tokens here (see
`bascule.stack.auth`); an ``identity`` fault on this service then hurts as STS failing did on
2025-10-20 — once the tokens the services cached expire.

- ``POST /v1/token`` with ``{"principal": "...", "region": "..."}`` answers
  ``{"token": ..., "expires_at": epoch_seconds, "ttl": seconds}``: an HMAC-SHA256 token
  (`bascule.stack.auth.issue_token`) under the secret the callees verify with.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (the app has started).

Run it with ``python -m bascule.stack.identity --port 0 --ttl 300 --secret S`` (or
``BASCULE_TOKEN_SECRET``); once it accepts connections it prints ``listening on http://HOST:PORT``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bascule.stack.auth import issue_token
from bascule.stack.serve import FlagParser, non_empty, positive_float, serve
from bascule.stack.service import create_service_app

__all__ = ["ENV_PREFIX", "IdentityConfig", "create_app", "main", "parse_args"]

ENV_PREFIX = "BASCULE_IDENTITY_"
SECRET_VARIABLE = "BASCULE_TOKEN_SECRET"
_MAX_NAME = 200


@dataclass(frozen=True)
class IdentityConfig:
    """How the identity service is served and what it issues."""

    secret: str
    host: str = "127.0.0.1"
    port: int = 8000
    ttl: float = 300.0
    """Seconds an issued token stays valid."""

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("the token secret must not be empty")
        if not (math.isfinite(self.ttl) and self.ttl > 0):
            raise ValueError("ttl must be a finite number > 0")


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> IdentityConfig:
    """The configuration from flags, falling back to ``BASCULE_IDENTITY_*`` and
    ``BASCULE_TOKEN_SECRET``. Invalid values exit with argparse's usage message (status 2)."""
    flags = FlagParser(
        prog="python -m bascule.stack.identity",
        description="Reference identity service issuing short-lived HMAC tokens.",
        env_prefix=ENV_PREFIX,
        environ=environ,
    )
    flags.listen("127.0.0.1", 8000)
    flags.option("--ttl", positive_float, 300.0, "seconds a token stays valid")
    flags.option(
        "--secret",
        non_empty,
        None,
        "HMAC secret shared with the services that verify tokens",
        variable=SECRET_VARIABLE,
    )
    ns = flags.parse(argv)
    if ns.secret is None:
        flags.error(f"give --secret or set {SECRET_VARIABLE}")
    return IdentityConfig(secret=ns.secret, host=ns.host, port=ns.port, ttl=ns.ttl)


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "message": message}, status_code=400)


def _name(body: object, key: str) -> str | None:
    value = body.get(key) if isinstance(body, dict) else None
    if isinstance(value, str) and value.strip() and len(value) <= _MAX_NAME:
        return value.strip()
    return None


def create_app(config: IdentityConfig, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The identity ASGI app; ``clock`` gives epoch seconds (the time base of ``expires_at``)."""

    async def token(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _bad_request("the body must be JSON")
        principal, region = _name(body, "principal"), _name(body, "region")
        if principal is None or region is None:
            return _bad_request(
                f"give 'principal' and 'region' as non-empty strings of at most {_MAX_NAME} characters"
            )
        now = clock()
        return JSONResponse(
            {
                "token": issue_token(config.secret, principal, region, config.ttl, now),
                "expires_at": now + config.ttl,
                "ttl": config.ttl,
            }
        )

    # Tokens are fetched beside requests, not on their path: no served-by hop.
    return create_service_app([Route("/v1/token", token, methods=["POST"])])


def main(argv: Sequence[str] | None = None) -> None:
    """Serve tokens until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    config = parse_args(sys.argv[1:] if argv is None else argv)
    serve(create_app(config), config.host, config.port)


if __name__ == "__main__":
    main()
