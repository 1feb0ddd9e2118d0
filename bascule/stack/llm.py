"""The reference stack's llm service: a stand-in for a Mistral API endpoint.

It speaks the Mistral wire format closely enough for the official ``mistralai`` client and for
the gateway, so the gateway can be pointed at a real provider instead:

- ``POST /v1/chat/completions`` answers extractively from the context in the prompt (see
  `bascule.stack.prompt`), as JSON or, with ``stream: true``, as server-sent events ending in
  ``data: [DONE]``; ``usage`` counts whitespace-separated tokens, an approximation that is
  stable and cheap, not Mistral's tokenizer.
- ``POST /v1/embeddings`` serves ``mistral-embed`` (1024 dimensions, `bascule.stack.embedding`).
- ``GET /v1/models`` and ``GET /v1/models/{id}`` list the configured chat model and
  ``mistral-embed``; any other model is refused with a Mistral-shaped 400.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (the app has started).

A latency profile (time to first token, tokens per second) makes it behave like a remote model;
both zero answer at once, for benchmarks. Optional per-minute request and token limits
(sliding 60 s window) refuse with Mistral's 429 body; the ``x-ratelimit-*`` header pair of each
configured limit is on every ``/v1`` response and omitted when that limit is off. Sampling
parameters (temperature, top_p, random_seed), tools and response_format are accepted and
ignored: the answer is deterministic text. Every response names the model and provider in
``x-bascule-model`` and ``x-bascule-provider``.

Run it with ``python -m bascule.stack.llm --port 0 --model mistral-small-latest``; once it
accepts connections it prints ``listening on http://HOST:PORT`` on stdout.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bascule.stack.prompt import extract_answer, message_text, parse_context
from bascule.stack.serve import FlagParser, non_empty, non_negative_float, non_negative_int
from bascule.stack.service import ServedBy, create_service_app, ready_response, serve_wired
from bascule.stack.wiring import Wiring

__all__ = [
    "EMBEDDING_MODEL",
    "ENV_PREFIX",
    "LlmConfig",
    "create_app",
    "main",
    "parse_args",
]

EMBEDDING_MODEL = "mistral-embed"
DIMENSIONS = 1024
"""mistral-embed's dimension; `bascule.stack.embedding` (numpy) is loaded on the first embedding
request only, so that a chat-only replica starts without it."""
ENV_PREFIX = "BASCULE_LLM_"
_WINDOW_SECONDS = 60.0
_TOKEN_RE = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class LlmConfig:
    """How one llm replica is served and how it behaves."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "mistral-small-latest"
    provider: str = "mistral"
    region: str = "local"
    name: str = "llm"
    ttft: float = 0.0
    """Seconds before the first token (the first streamed chunk)."""
    tokens_per_second: float = 0.0
    """Generation speed after the first token; 0 emits every token at once."""
    rate_limit_per_minute: int = 0
    """Requests admitted per sliding minute; 0 means no limit."""
    tokens_limit_per_minute: int = 0
    """Prompt plus completion tokens per sliding minute; 0 means no limit."""


# --- configuration ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> LlmConfig:
    """The configuration from command-line flags, falling back to ``BASCULE_LLM_*`` variables.

    Invalid values exit with argparse's usage message (status 2), as any CLI does.
    """
    d = LlmConfig()
    flags = FlagParser(
        "python -m bascule.stack.llm",
        "Reference llm service speaking the Mistral API.",
        ENV_PREFIX,
        environ,
    )
    flags.listen(d.host, d.port)
    flags.replica(d.region, d.name)
    flags.option("--model", non_empty, d.model, "chat model id served")
    flags.option("--provider", non_empty, d.provider, "provider label for response headers")
    flags.option("--ttft", non_negative_float, d.ttft, "seconds to first token")
    flags.option(
        "--tokens-per-second", non_negative_float, d.tokens_per_second, "generation speed, 0 for instant"
    )
    flags.option(
        "--rate-limit-per-minute",
        non_negative_int,
        d.rate_limit_per_minute,
        "requests per minute, 0 for none",
    )
    flags.option(
        "--tokens-limit-per-minute",
        non_negative_int,
        d.tokens_limit_per_minute,
        "tokens per minute, 0 for none",
    )
    args = flags.parse(argv)
    return LlmConfig(
        host=args.host,
        port=args.port,
        region=args.region,
        name=args.name,
        model=args.model,
        provider=args.provider,
        ttft=args.ttft,
        tokens_per_second=args.tokens_per_second,
        rate_limit_per_minute=args.rate_limit_per_minute,
        tokens_limit_per_minute=args.tokens_limit_per_minute,
    )


# --- request bodies --------------------------------------------------------------------------


class _ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class _ResponseFormat(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")

    type: Literal["text", "json_object", "json_schema"] = "text"


class _ChatRequest(BaseModel):
    # Fields newer clients add are ignored rather than refused, so a client upgrade does not
    # turn into an outage of the reference stack.
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    messages: Annotated[list[_ChatMessage], Field(min_length=1)]
    temperature: Annotated[float, Field(ge=0.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    stream: bool = False
    stop: str | list[str] | None = None
    random_seed: Annotated[int, Field(ge=0)] | None = None
    response_format: _ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "any", "required"] | dict[str, Any] | None = None
    safe_prompt: bool = False


class _EmbeddingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    model: str
    input: str | Annotated[list[str], Field(min_length=1)]
    output_dimension: Annotated[int, Field(ge=1)] | None = None
    output_dtype: Literal["float"] | None = None
    encoding_format: Literal["float"] | None = None


# --- responses -------------------------------------------------------------------------------


def _error(status: int, message: object, kind: str, code: str | None = None) -> JSONResponse:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": code}
    return JSONResponse(body, status_code=status)


def _validation_error(exc: ValidationError) -> JSONResponse:
    details = []
    for error in exc.errors(include_url=False, include_context=False):
        detail = {**error, "loc": ["body", *error["loc"]]}
        raw = detail.get("input")
        # An unparsable body is reported with its raw bytes, which JSON cannot carry.
        if isinstance(raw, bytes):
            detail["input"] = raw.decode("utf-8", errors="replace")
        details.append(detail)
    return _error(422, {"detail": details}, "invalid_request_message_error")


def _invalid_model(model: str) -> JSONResponse:
    return _error(400, f"Invalid model: {model}", "invalid_model", "1500")


def _count_tokens(text: str) -> int:
    return len(text.split())


def _cut_at_stop(text: str, stop: str | list[str] | None) -> str:
    markers = [stop] if isinstance(stop, str) else (stop or [])
    cut = min((text.find(m) for m in markers if m and m in text), default=len(text))
    return text[:cut]


def _model_card(model: str, created: int, chat: bool) -> dict[str, Any]:
    return {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "mistralai",
        "name": model,
        "description": "bascule reference " + ("chat model" if chat else "embedding model"),
        "max_context_length": 32768,
        "aliases": [],
        "deprecation": None,
        "default_model_temperature": 0.3 if chat else None,
        "capabilities": {
            "completion_chat": chat,
            "completion_fim": False,
            "function_calling": False,
            "fine_tuning": False,
            "vision": False,
            "classification": False,
        },
        "type": "base",
    }


# --- rate limiting ---------------------------------------------------------------------------


class _RateLimiter:
    """Sliding one-minute windows of admitted requests and of the tokens they used."""

    def __init__(self, requests: int, tokens: int, clock: Callable[[], float]) -> None:
        self._request_limit = requests
        self._token_limit = tokens
        self._clock = clock
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_total = 0

    def _expire(self, now: float) -> None:
        horizon = now - _WINDOW_SECONDS
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= horizon:
            self._token_total -= self._tokens.popleft()[1]

    def admit(self) -> float | None:
        """Record a request and return None, or return the seconds to wait if refused."""
        now = self._clock()
        self._expire(now)
        waits = []
        if self._request_limit and len(self._requests) >= self._request_limit:
            waits.append(self._requests[0] + _WINDOW_SECONDS - now)
        if self._token_limit and self._token_total >= self._token_limit:
            waits.append(self._tokens[0][0] + _WINDOW_SECONDS - now)
        if waits:
            return max(waits)
        self._requests.append(now)
        return None

    def spend(self, tokens: int) -> None:
        if tokens > 0:
            self._tokens.append((self._clock(), tokens))
            self._token_total += tokens

    def headers(self) -> list[tuple[bytes, bytes]]:
        self._expire(self._clock())
        values: list[tuple[str, int]] = []
        if self._request_limit:
            remaining = max(0, self._request_limit - len(self._requests))
            values += [("limit-req-minute", self._request_limit)]
            values += [("remaining-req-minute", remaining)]
        if self._token_limit:
            remaining = max(0, self._token_limit - self._token_total)
            values += [("limit-tokens-minute", self._token_limit)]
            values += [("remaining-tokens-minute", remaining)]
        return [(f"x-ratelimit-{name}".encode(), str(value).encode()) for name, value in values]


class _HeadersMiddleware:
    """Adds the model/provider headers, and the rate-limit headers on ``/v1``, to responses."""

    def __init__(self, app: ASGIApp, config: LlmConfig, limiter: _RateLimiter) -> None:
        self._app = app
        self._limiter = limiter
        self._static = [
            (b"x-bascule-model", config.model.encode()),
            (b"x-bascule-provider", config.provider.encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limited = str(scope.get("path", "")).startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), *self._static]
                if limited:
                    headers += self._limiter.headers()
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)


# --- the app ---------------------------------------------------------------------------------


class _MistralErrors:
    """`ServiceErrors` as Mistral's error bodies."""

    def http_error(self, status: int, detail: str) -> Response:
        return _error(status, detail, "invalid_request_error")

    def internal_error(self, exc: Exception) -> Response:
        return _error(500, "Internal Server Error", "invalid_request_error")


def create_app(
    config: LlmConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """A new llm ASGI app for `config`; apps share no state, so tests can run several."""
    limiter = _RateLimiter(config.rate_limit_per_minute, config.tokens_limit_per_minute, clock)
    created = int(time.time())
    cards = {
        config.model: _model_card(config.model, created, chat=True),
        EMBEDDING_MODEL: _model_card(EMBEDDING_MODEL, created, chat=False),
    }

    def refuse_if_limited() -> JSONResponse | None:
        wait = limiter.admit()
        if wait is None:
            return None
        body = {
            "object": "error",
            "message": "Rate limit exceeded",
            "type": "rate_limited",
            "param": None,
            "code": "1300",
        }
        retry_after = str(max(1, math.ceil(wait)))
        return JSONResponse(body, status_code=429, headers={"retry-after": retry_after})

    async def pace(deadline: float) -> None:
        delay = deadline - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def chat_completions(request: Request) -> Response:
        started = asyncio.get_running_loop().time()
        refused = refuse_if_limited()
        if refused is not None:
            return refused
        try:
            body = _ChatRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _validation_error(exc)
        if body.model != config.model:
            return _invalid_model(body.model)
        messages = [{"role": m.role, "content": m.content} for m in body.messages]
        question, passages = parse_context(messages)
        answer = _cut_at_stop(extract_answer(question, passages).text, body.stop)
        tokens = _TOKEN_RE.findall(answer)
        finish_reason = "stop"
        if body.max_tokens is not None and len(tokens) > body.max_tokens:
            tokens = tokens[: body.max_tokens]
            finish_reason = "length"
        if tokens:
            tokens[-1] = tokens[-1].rstrip()
        prompt_tokens = sum(_count_tokens(message_text(m["content"])) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        limiter.spend(usage["total_tokens"])
        completion_id = uuid.uuid4().hex
        now = int(time.time())
        step = 1.0 / config.tokens_per_second if config.tokens_per_second else 0.0
        if not body.stream:
            await pace(started + config.ttft + step * len(tokens))
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": now,
                    "model": config.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(tokens),
                                "tool_calls": None,
                            },
                            "finish_reason": finish_reason,
                        }
                    ],
                    "usage": usage,
                }
            )

        def event(delta: dict[str, str], finish: str | None, **extra: object) -> bytes:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": now,
                "model": config.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            first = started + config.ttft
            await pace(first)
            yield event({"role": "assistant", "content": ""}, None)
            for position, token in enumerate(tokens, start=1):
                # Deadlines from the start, not sleeps per token, so pacing does not drift.
                await pace(first + step * position)
                yield event({"content": token}, None)
            yield event({"content": ""}, finish_reason, usage=usage)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def embeddings(request: Request) -> Response:
        refused = refuse_if_limited()
        if refused is not None:
            return refused
        try:
            body = _EmbeddingRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return _validation_error(exc)
        if body.model != EMBEDDING_MODEL:
            return _invalid_model(body.model)
        if body.output_dimension not in (None, DIMENSIONS):
            message = f"{EMBEDDING_MODEL} only supports output_dimension {DIMENSIONS}"
            return _error(400, message, "invalid_request_error")
        texts = [body.input] if isinstance(body.input, str) else body.input
        prompt_tokens = sum(_count_tokens(text) for text in texts)
        limiter.spend(prompt_tokens)
        data = [
            {"object": "embedding", "embedding": _embed(text), "index": index}
            for index, text in enumerate(texts)
        ]
        return JSONResponse(
            {
                "id": uuid.uuid4().hex,
                "object": "list",
                "model": EMBEDDING_MODEL,
                "data": data,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": 0,
                    "total_tokens": prompt_tokens,
                },
            }
        )

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": list(cards.values())})

    async def retrieve_model(request: Request) -> Response:
        model = str(request.path_params["model_id"])
        if model not in cards:
            return _error(404, f"Model not found: {model}", "invalid_model", "1500")
        return JSONResponse(cards[model])

    async def readiness() -> Response:
        return ready_response(model=config.model)

    return create_service_app(
        [
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", retrieve_model, methods=["GET"]),
        ],
        served_by=ServedBy("llm", config.region, config.name),
        errors=_MistralErrors(),
        readiness=readiness,
        middleware=[*middleware, Middleware(_HeadersMiddleware, config=config, limiter=limiter)],
    )


def _embed(text: str) -> list[float]:
    from bascule.stack import embedding

    vector: list[float] = embedding.embed(text).tolist()
    return vector


# --- process entry point ---------------------------------------------------------------------


def _wired(config: LlmConfig, wiring: Wiring) -> Starlette:
    return create_app(config, middleware=wiring.incoming(config.region))


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the llm until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    serve_wired(argv, parse_args, _wired)


if __name__ == "__main__":
    main()
