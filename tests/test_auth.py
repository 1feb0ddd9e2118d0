"""Tokens between services (`bascule.stack.auth`) and the identity service that issues them.

The identity service runs for real: as ``python -m bascule.stack.identity --port 0`` in a
subprocess (stopped to play the 2025-10-20 STS failure) or in a uvicorn thread.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bascule.stack.auth import (
    AuthConfig,
    Claims,
    InvalidToken,
    InvalidTokenReason,
    RequireToken,
    TokenSource,
    TokenUnavailable,
    add_auth_arguments,
    auth_config_from_args,
    issue_token,
    verify_token,
)
from bascule.stack.identity import IdentityConfig, create_app, parse_args

SECRET = "test-secret"
NOW = 1_760_942_880.0  # 2025-10-20 06:48 UTC


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), timeout=20))


# --- tokens ----------------------------------------------------------------------------------


def test_issue_and_verify_round_trip() -> None:
    token = issue_token(SECRET, "gateway", "scaleway/fr-par", 300, NOW)
    assert verify_token(SECRET, token, NOW + 299.9) == Claims("gateway", "scaleway/fr-par", NOW, NOW + 300)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


@given(principal=st.text(max_size=50), region=st.text(max_size=50))
def test_any_names_round_trip(principal: str, region: str) -> None:
    claims = verify_token(SECRET, issue_token(SECRET, principal, region, 1.5, NOW), NOW)
    assert (claims.principal, claims.region) == (principal, region)


def test_expired_token() -> None:
    token = issue_token(SECRET, "gateway", "aws/us-east-1", 60, NOW)
    with pytest.raises(InvalidToken) as info:
        verify_token(SECRET, token, NOW + 60)
    assert info.value.reason is InvalidTokenReason.EXPIRED


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_tampered_token() -> None:
    token = issue_token(SECRET, "gateway", "aws/us-east-1", 60, NOW)
    payload, signature = token.split(".")
    for forged in (f"{_flip(payload, 5)}.{signature}", f"{payload}.{_flip(signature, 3)}"):
        with pytest.raises(InvalidToken) as info:
            verify_token(SECRET, forged, NOW)
        assert info.value.reason is InvalidTokenReason.BAD_SIGNATURE


def test_wrong_secret() -> None:
    token = issue_token("another-secret", "gateway", "aws/us-east-1", 60, NOW)
    with pytest.raises(InvalidToken) as info:
        verify_token(SECRET, token, NOW)
    assert info.value.reason is InvalidTokenReason.BAD_SIGNATURE


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "abc.!!!", "abc.", ".abc"])
def test_malformed_token(token: str) -> None:
    with pytest.raises(InvalidToken) as info:
        verify_token(SECRET, token, NOW)
    assert info.value.reason is InvalidTokenReason.MALFORMED


# --- the identity service --------------------------------------------------------------------


@contextmanager
def identity_process(ttl: float) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``python -m bascule.stack.identity`` on an ephemeral port; yields (base URL, process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bascule.stack.identity", "--port", "0", "--ttl", str(ttl)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BASCULE_TOKEN_SECRET": SECRET},
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout=15)
        line = proc.stdout.readline().strip() if ready else ""
        assert line.startswith("listening on http://127.0.0.1:"), (line, proc.poll())
        yield line.removeprefix("listening on "), proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """An ASGI app in a uvicorn thread on an ephemeral port; yields its base URL."""
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only for
    # sockets that name their protocol; without it every pooled request stalls ~40 ms (Nagle and
    # delayed ACK), which would hide the latencies these tests compare.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "server thread died during startup"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "server thread did not stop"


def test_identity_service_issues_verifiable_tokens() -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).json() == {"status": "ready"}
            before = time.time()
            response = await client.post(
                "/v1/token", json={"principal": "retriever", "region": "ovhcloud/gra"}
            )
            assert response.status_code == 200
            body = response.json()
            assert body["ttl"] == 42.0
            assert before + 42 <= body["expires_at"] <= time.time() + 42
            claims = verify_token(SECRET, body["token"], time.time())
            assert (claims.principal, claims.region) == ("retriever", "ovhcloud/gra")
            assert claims.expires_at == body["expires_at"]
            for bad in ({"principal": "retriever"}, {"principal": "", "region": "x"}, ["x"]):
                assert (await client.post("/v1/token", json=bad)).status_code == 400
            assert (await client.post("/v1/token", content=b"{")).status_code == 400

    with serve(create_app(IdentityConfig(secret=SECRET, ttl=42))) as url:
        asyncio.run(asyncio.wait_for(scenario(url), timeout=20))


def test_identity_arguments() -> None:
    config = parse_args(["--port", "0", "--ttl", "2.5"], {"BASCULE_TOKEN_SECRET": "s"})
    assert (config.port, config.ttl, config.secret) == (0, 2.5, "s")
    for argv in ([], ["--secret", "s", "--ttl", "0"]):
        with pytest.raises(SystemExit) as info:
            parse_args(argv, {})
        assert info.value.code == 2


# --- TokenSource -----------------------------------------------------------------------------


def test_token_source_caches_one_token_for_many_calls() -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            source = TokenSource(client, url, "gateway", "scaleway/fr-par")
            concurrent = await asyncio.gather(*(source.token() for _ in range(20)))
            sequential = [await source.token() for _ in range(50)]
            assert len(set(concurrent + sequential)) == 1
            assert source.fetches == 1, "concurrent callers shared one fetch"
            claims = verify_token(SECRET, concurrent[0], time.time())
            assert (claims.principal, claims.region) == ("gateway", "scaleway/fr-par")
            assert await source.headers() == {"authorization": f"Bearer {concurrent[0]}"}
            await source.aclose()

    with identity_process(ttl=30) as (url, _):
        run(lambda: scenario(url))


def test_token_source_refreshes_before_expiry() -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            source = TokenSource(client, url, "gateway", "scaleway/fr-par", refresh_before=0.5)
            first = await source.token()
            old = source.cached
            assert old is not None
            await asyncio.sleep(0.3)
            assert await source.token() == first, "not yet in the refresh window"
            assert source.fetches == 1
            await asyncio.sleep(max(0.0, old.expires_at - old.ttl * 0.4 - time.time()))
            # In the window: the caller gets the valid cached token, a refresh starts behind it.
            assert await source.token() == first
            deadline = time.monotonic() + 2
            while source.cached is old:
                assert time.monotonic() < deadline, "no refresh happened"
                await asyncio.sleep(0.01)
            assert time.time() < old.expires_at, "refreshed before the old token expired"
            assert source.fetches == 2
            fresh = await source.token()
            assert fresh != first
            assert source.cached is not None
            assert source.cached.expires_at > old.expires_at
            await source.aclose()

    with identity_process(ttl=2.0) as (url, _):
        run(lambda: scenario(url))


def test_identity_down_serves_the_cached_token_until_it_expires() -> None:
    """2025-10-20: STS failed; callers with cached credentials lasted until they expired."""

    async def scenario(url: str, proc: subprocess.Popen[str]) -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=1) as client:
            source = TokenSource(
                client, url, "gateway", "aws/us-east-1", refresh_before=0.6, retry_interval=0.1
            )
            token = await source.token()
            cached = source.cached
            assert cached is not None
            stop(proc)  # the identity service is gone: connections are refused

            served = 0
            while time.time() < cached.expires_at - 0.05:
                assert await source.token() == token
                served += 1
                await asyncio.sleep(0.02)
            assert served > 10
            assert source.fetches > 2, "refreshes were tried in the window, at retry_interval"
            assert isinstance(source.last_error, httpx.ConnectError)

            await asyncio.sleep(max(0.0, cached.expires_at - time.time()) + 0.01)
            attempts = source.fetches
            results = await asyncio.gather(*(source.token() for _ in range(10)), return_exceptions=True)
            assert all(isinstance(r, TokenUnavailable) for r in results), results
            assert source.fetches == attempts + 1, "waiting callers shared one fetch"
            with pytest.raises(TokenUnavailable, match="no valid token"):
                await source.headers()
            await source.aclose()

    with identity_process(ttl=1.2) as (url, proc):
        run(lambda: scenario(url, proc))


def test_token_source_rejects_bad_identity_answers() -> None:
    async def broken(request: Request) -> Response:
        return JSONResponse({"token": ""}, status_code=200)

    async def failing(request: Request) -> Response:
        return PlainTextResponse("unavailable", status_code=503)

    async def scenario() -> None:
        app = Starlette(
            routes=[
                Route("/bad/v1/token", broken, methods=["POST"]),
                Route("/down/v1/token", failing, methods=["POST"]),
            ]
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            for base, message in (("http://id/bad", "token"), ("http://id/down", "503")):
                source = TokenSource(client, base, "gateway", "aws/us-east-1")
                with pytest.raises(TokenUnavailable, match=message):
                    await source.token()

    run(scenario)


# --- RequireToken ----------------------------------------------------------------------------


def protected_app() -> Starlette:
    async def data(request: Request) -> Response:
        claims = request.state.token_claims
        return JSONResponse({"principal": claims.principal})

    async def ok(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def socket_endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    return Starlette(
        routes=[
            Route("/data", data),
            Route("/healthz", ok),
            Route("/readyz", ok),
            Route("/metrics", ok),
            WebSocketRoute("/ws", socket_endpoint),
        ],
        middleware=[Middleware(RequireToken, secret=SECRET)],
    )


def test_require_token() -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=protected_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://callee") as client:
            now = time.time()
            cases = {
                "missing token": {},
                "malformed": {"authorization": "Basic abc"},
                "bad signature": {"authorization": f"Bearer {issue_token('x', 'g', 'r', 60, now)}"},
                "expired": {"authorization": f"Bearer {issue_token(SECRET, 'g', 'r', 1, now - 2)}"},
            }
            for reason, headers in cases.items():
                response = await client.get("/data", headers=headers)
                assert response.status_code == 401, reason
                assert response.json() == {"error": "unauthorized", "reason": reason}
                assert response.headers["www-authenticate"] == "Bearer"

            good = {"authorization": f"Bearer {issue_token(SECRET, 'gateway', 'r', 60, now)}"}
            response = await client.get("/data", headers=good)
            assert response.status_code == 200
            assert response.json() == {"principal": "gateway"}
            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await client.get(path)).status_code == 200, path

    run(scenario)


def test_require_token_refuses_websockets_without_a_token() -> None:
    async def scenario() -> None:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
        await protected_app()(scope, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1008, "reason": "missing token"}]

    run(scenario)


def test_token_source_and_require_token_end_to_end() -> None:
    async def scenario(identity_url: str, callee_url: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            source = TokenSource(client, identity_url, "gateway", "scaleway/fr-par")
            response = await client.get(f"{callee_url}/data", headers=await source.headers())
            assert response.status_code == 200
            assert response.json() == {"principal": "gateway"}
            assert (await client.get(f"{callee_url}/data")).status_code == 401
            await source.aclose()

    identity = create_app(IdentityConfig(secret=SECRET, ttl=30))
    with serve(identity) as identity_url, serve(protected_app()) as callee_url:
        run(lambda: scenario(identity_url, callee_url))


# --- configuration ---------------------------------------------------------------------------


def test_auth_flags() -> None:
    parser = argparse.ArgumentParser()
    add_auth_arguments(parser, {"BASCULE_IDENTITY_URL": "http://identity:8000", "BASCULE_TOKEN_SECRET": "s"})
    config = auth_config_from_args(
        parser.parse_args(
            ["--principal", "gateway", "--token-region", "aws/us-east-1", "--token-refresh-before", "0.5"]
        )
    )
    assert config == AuthConfig("http://identity:8000", "s", "gateway", "aws/us-east-1", 0.5)
    assert config.enabled

    with pytest.raises(ValueError, match="--token-secret"):
        AuthConfig(identity_url="http://identity:8000", principal="g", region="r")
    with pytest.raises(SystemExit):
        parser.parse_args(["--token-refresh-before", "1"])

    off = argparse.ArgumentParser()
    add_auth_arguments(off, {})
    disabled = auth_config_from_args(off.parse_args([]))
    assert not disabled.enabled

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            assert disabled.token_source(client) is None
            assert isinstance(config.token_source(client), TokenSource)

    run(scenario)
