"""Short-lived tokens between the reference stack's services, so an ``identity`` fault hurts late.

When a design gives a region an identity dependency, its services fetch a token from that
identity service (`bascule.stack.identity`), cache it and refresh it before it expires; callees
reject calls without a valid one. An identity outage therefore hurts the way STS failing did on
2025-10-20: not at once, but when the cached tokens expire.

- `issue_token` / `verify_token`: pure. A token is ``base64url(JSON claims) "." base64url(HMAC-
  SHA256)`` under a secret shared by the identity service and the callees; the signature is
  compared in constant time and checked before the claims are parsed.
- `TokenSource`: the caller's side. It serves the cached token while it is valid, refreshes it
  in the background once less than ``refresh_before × ttl`` remains (one refresh at a time, a
  failed one retried after ``retry_interval``), and only when no valid token is left makes
  callers wait for a fetch — shared by all of them — raising `TokenUnavailable` if it fails.
- `RequireToken`: the callee's side, a pure ASGI middleware answering 401 to requests without
  a valid ``authorization: Bearer`` token, except on ``/healthz``, ``/readyz`` and ``/metrics``.
- `add_auth_arguments` / `auth_config_from_args`: the flags every service shares. Without an
  identity URL auth is off: no token is fetched and none is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "EXEMPT_PATHS",
    "AuthConfig",
    "AuthError",
    "Claims",
    "InvalidToken",
    "InvalidTokenReason",
    "IssuedToken",
    "RequireToken",
    "TokenSource",
    "TokenUnavailable",
    "add_auth_arguments",
    "auth_config_from_args",
    "issue_token",
    "verify_token",
]

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths a probe or a scraper must reach even when the identity service is down."""


class InvalidTokenReason(StrEnum):
    MISSING = "missing token"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "expired"


class AuthError(Exception):
    """A call could not be authenticated, on either side."""


class InvalidToken(AuthError):  # noqa: N818 (the name issue 3 gives the stack)
    """A token that must be refused, and why."""

    def __init__(self, reason: InvalidTokenReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


class TokenUnavailable(AuthError):  # noqa: N818 (the name issue 3 gives the stack)
    """No valid token: the cached one expired (or none was fetched) and the identity service failed."""


@dataclass(frozen=True)
class Claims:
    """What a token asserts: who holds it, for which region, and when it is valid (epoch seconds)."""

    principal: str
    region: str
    issued_at: float
    expires_at: float


# --- tokens (pure) ---------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or any(c not in _B64_ALPHABET for c in text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _signature(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), payload.encode("ascii"), hashlib.sha256).digest()


def issue_token(secret: str, principal: str, region: str, ttl: float, now: float) -> str:
    """A token for ``principal`` in ``region``, valid from ``now`` for ``ttl`` seconds."""
    if not secret:
        raise ValueError("the token secret must not be empty")
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError("ttl must be a finite number > 0")
    claims = {"sub": principal, "region": region, "iat": now, "exp": now + ttl}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_b64encode(_signature(secret, payload))}"


def verify_token(secret: str, token: str, now: float) -> Claims:
    """The claims of ``token`` if ``secret`` signed it and it has not expired at ``now``.

    Raises `InvalidToken` with reason malformed, bad signature or expired.
    """
    payload, dot, signature_text = token.partition(".")
    if not dot or "." in signature_text:
        raise InvalidToken(InvalidTokenReason.MALFORMED, "expected PAYLOAD.SIGNATURE")
    try:
        signature = _b64decode(signature_text)
        _b64decode(payload)
    except (ValueError, binascii.Error):
        raise InvalidToken(InvalidTokenReason.MALFORMED, "not base64url") from None
    if not hmac.compare_digest(signature, _signature(secret, payload)):
        raise InvalidToken(InvalidTokenReason.BAD_SIGNATURE)
    try:
        data = json.loads(_b64decode(payload))
        claims = Claims(
            principal=_claim(data, "sub", str),
            region=_claim(data, "region", str),
            issued_at=float(_claim(data, "iat", (int, float))),
            expires_at=float(_claim(data, "exp", (int, float))),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidToken(InvalidTokenReason.MALFORMED, str(exc)) from None
    if now >= claims.expires_at:
        raise InvalidToken(InvalidTokenReason.EXPIRED, f"{now - claims.expires_at:.3f} s ago")
    return claims


def _claim(data: object, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"claim {key!r} missing")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"claim {key!r} has the wrong type")
    return value


# --- the caller's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    """A token as the identity service hands it out."""

    token: str
    expires_at: float
    ttl: float

    @classmethod
    def from_json(cls, data: object) -> IssuedToken:
        token = _claim(data, "token", str)
        expires_at = float(_claim(data, "expires_at", (int, float)))
        ttl = float(_claim(data, "ttl", (int, float)))
        if not token or not (math.isfinite(ttl) and ttl > 0):
            raise ValueError("empty token or non-positive ttl")
        return cls(token, expires_at, ttl)


class TokenSource:
    """Tokens for one principal, fetched from the identity service and cached.

    The cached token is served while it is valid. Once less than ``refresh_before × ttl`` of it
    remains, the first caller starts a refresh in the background and still gets the cached
    token; a failed refresh is retried no sooner than ``retry_interval`` later. Callers wait
    only when no valid token is left: they share one fetch, and get `TokenUnavailable` if it
    fails. ``clock`` gives epoch seconds, the time base of the tokens' ``expires_at``.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        identity_url: str,
        principal: str,
        region: str,
        *,
        refresh_before: float = 0.2,
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= refresh_before < 1:
            raise ValueError("refresh_before is a fraction of the token lifetime, in [0, 1)")
        if retry_interval < 0:
            raise ValueError("retry_interval must be ≥ 0")
        self._client = client
        self._url = identity_url.rstrip("/") + "/v1/token"
        self._request = {"principal": principal, "region": region}
        self._refresh_before = refresh_before
        self._retry_interval = retry_interval
        self._clock = clock
        self._cached: IssuedToken | None = None
        self._inflight: asyncio.Task[IssuedToken | Exception] | None = None
        self._failed_at: float | None = None
        self.fetches = 0
        """Fetch attempts made, successful or not."""
        self.last_error: Exception | None = None
        """Why the last fetch failed; None once one succeeds."""

    @property
    def cached(self) -> IssuedToken | None:
        return self._cached

    async def token(self) -> str:
        now = self._clock()
        cached = self._cached
        if cached is not None and now < cached.expires_at:
            if now >= cached.expires_at - self._refresh_before * cached.ttl and self._may_retry(now):
                self._refresh()
            return cached.token
        # asyncio.shield: a caller that gives up must not cancel the fetch the others wait on.
        outcome = await asyncio.shield(self._refresh())
        if isinstance(outcome, Exception):
            raise TokenUnavailable(
                f"no valid token for {self._request['principal']!r} and {self._url} failed: {outcome}"
            ) from outcome
        return outcome.token

    async def headers(self) -> dict[str, str]:
        """``{"authorization": "Bearer …"}``, or `TokenUnavailable`."""
        return {"authorization": f"Bearer {await self.token()}"}

    async def aclose(self) -> None:
        """Stop a refresh in flight (the client is the caller's to close)."""
        task, self._inflight = self._inflight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _may_retry(self, now: float) -> bool:
        if self._inflight is not None:
            return False
        return self._failed_at is None or now - self._failed_at >= self._retry_interval

    def _refresh(self) -> asyncio.Task[IssuedToken | Exception]:
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch())
        return self._inflight

    async def _fetch(self) -> IssuedToken | Exception:
        # Failures are returned, not raised: a background refresh nobody awaits must not leave
        # an unretrieved exception behind.
        self.fetches += 1
        try:
            response = await self._client.post(self._url, json=self._request)
            if response.status_code != 200:
                raise TokenUnavailable(f"identity service answered {response.status_code}")
            issued = IssuedToken.from_json(response.json())
        except (httpx.HTTPError, TokenUnavailable, ValueError, TypeError) as exc:
            self._failed_at = self._clock()
            self.last_error = exc
            return exc
        finally:
            self._inflight = None
        self._cached = issued
        self._failed_at = None
        self.last_error = None
        return issued


# --- the callee's side -----------------------------------------------------------------------


class RequireToken:
    """ASGI middleware: HTTP requests need a valid bearer token, except on ``exempt`` paths.

    A refused request gets 401 with ``{"error": "unauthorized", "reason": …}``; a websocket is
    closed with 1008 (policy violation) before it is accepted. The verified `Claims` are left in
    the request state as ``token_claims``.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret: str,
        *,
        exempt: Iterable[str] = EXEMPT_PATHS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise ValueError("the token secret must not be empty")
        self.app = app
        self._secret = secret
        self._exempt = frozenset(exempt)
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in self._exempt:
            await self.app(scope, receive, send)
            return
        try:
            claims = verify_token(self._secret, _bearer(scope), self._clock())
        except InvalidToken as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": exc.reason.value})
            else:
                await _unauthorized(send, exc.reason)
            return
        scope.setdefault("state", {})["token_claims"] = claims
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise InvalidToken(InvalidTokenReason.MALFORMED, "expected 'Bearer TOKEN'")
            return str(token.strip())
    raise InvalidToken(InvalidTokenReason.MISSING)


async def _unauthorized(send: Send, reason: InvalidTokenReason) -> None:
    body = json.dumps({"error": "unauthorized", "reason": reason.value}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthConfig:
    """Whether a service fetches and checks tokens, and as whom."""

    identity_url: str | None = None
    """Base URL of the identity service; None turns auth off."""
    secret: str | None = None
    """Shared HMAC secret callees verify tokens with."""
    principal: str = ""
    region: str = ""
    refresh_before: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.refresh_before < 1:
            raise ValueError("refresh_before is a fraction of the token lifetime, in [0, 1)")
        if self.identity_url is None:
            return
        missing = [
            flag
            for flag, value in (
                ("--token-secret", self.secret),
                ("--principal", self.principal),
                ("--token-region", self.region),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"--identity-url needs {', '.join(missing)} as well")

    @property
    def enabled(self) -> bool:
        return self.identity_url is not None

    def token_source(self, client: httpx.AsyncClient) -> TokenSource | None:
        """The source of this service's outgoing tokens; None when auth is off."""
        if self.identity_url is None:
            return None
        return TokenSource(
            client,
            self.identity_url,
            self.principal,
            self.region,
            refresh_before=self.refresh_before,
        )


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _optional_text(text: str) -> str | None:
    return text.strip() or None


_FLAGS: tuple[tuple[str, str, str, Callable[[str], Any], str], ...] = (
    ("--identity-url", "identity_url", "BASCULE_IDENTITY_URL", _optional_text, "identity service"),
    ("--token-secret", "secret", "BASCULE_TOKEN_SECRET", _optional_text, "shared token secret"),
    ("--principal", "principal", "BASCULE_PRINCIPAL", str.strip, "who this service is"),
    ("--token-region", "region", "BASCULE_TOKEN_REGION", str.strip, "region asked for in tokens"),
    (
        "--token-refresh-before",
        "refresh_before",
        "BASCULE_TOKEN_REFRESH_BEFORE",
        _fraction,
        "refresh when this fraction of the lifetime remains",
    ),
)
_DEST_PREFIX = "auth_"


def add_auth_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Add the token flags every service shares; without ``--identity-url`` auth is off."""
    env = os.environ if environ is None else environ
    defaults = AuthConfig()
    group = parser.add_argument_group("tokens")
    for flag, field, variable, parse, text in _FLAGS:
        default = getattr(defaults, field)
        # The secret's value must not end up in --help.
        shown = "none" if default is None or field == "secret" else repr(default)
        group.add_argument(
            flag,
            dest=_DEST_PREFIX + field,
            type=parse,
            default=env.get(variable, None if default is None else str(default)),
            help=f"{text} (env {variable}, default {shown})",
        )


def auth_config_from_args(ns: argparse.Namespace) -> AuthConfig:
    """The `AuthConfig` given by flags added with `add_auth_arguments`.

    Raises ``ValueError`` when ``--identity-url`` comes without the secret, principal or region.
    """
    return AuthConfig(**{field: getattr(ns, _DEST_PREFIX + field) for _, field, *_ in _FLAGS})
