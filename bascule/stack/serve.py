"""Serving helpers shared by the reference stack's services.

Every service is configured only by flags with ``BASCULE_<SERVICE>_*`` environment fallbacks
(`FlagParser`), answers with an ``x-bascule-served-by`` header naming its hop
(`ServedByMiddleware`), reads request bodies with a size bound (`read_body`), and is served by
uvicorn on a socket bound before uvicorn starts, so that ``--port 0`` works and the real
address is printed as ``listening on http://HOST:PORT`` once connections are accepted
(`serve`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "SERVED_BY_HEADER",
    "BodyTooLargeError",
    "FlagParser",
    "ServedByMiddleware",
    "base_url",
    "bind",
    "hop",
    "non_empty",
    "non_negative_float",
    "non_negative_int",
    "port",
    "positive_float",
    "positive_int",
    "read_body",
    "serve",
    "served_by_value",
]

SERVED_BY_HEADER = "x-bascule-served-by"

# --- flag value types (argparse `type=` callables) -------------------------------------------


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port; 0 asks the kernel for a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def non_empty(text: str) -> str:
    """The text without surrounding blanks, refused when nothing is left."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()


def base_url(text: str) -> str:
    """An ``http(s)://host[:port][/prefix]`` URL without a trailing slash."""
    value = text.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) base URL: {text!r}")
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"a base URL has no query or fragment: {text!r}")
    return value


# --- flags with environment fallbacks --------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class FlagParser:
    """An argparse parser whose every flag falls back to an environment variable.

    ``--replication-lag`` reads ``<prefix>REPLICATION_LAG``. A repeatable flag's variable holds
    comma-separated values and is used only when the flag is not given at all; a switch's
    variable is one of 1/true/yes/on or 0/false/no/off. Invalid values, from a flag or a
    variable, exit with argparse's usage message (status 2), as any CLI does.
    """

    def __init__(
        self, prog: str, description: str, env_prefix: str, environ: Mapping[str, str] | None = None
    ) -> None:
        self._parser = argparse.ArgumentParser(prog=prog, description=description)
        self._prefix = env_prefix
        self._environ = os.environ if environ is None else environ
        self._repeated: dict[str, tuple[str, Callable[[str], Any]]] = {}

    def variable(self, flag: str) -> str:
        """The environment variable backing `flag`."""
        return self._prefix + flag.removeprefix("--").replace("-", "_").upper()

    def option(
        self,
        flag: str,
        kind: Callable[[str], Any],
        default: object,
        text: str,
        *,
        variable: str | None = None,
    ) -> None:
        """A single-valued flag, backed by `variable` (default: the prefix's); a `default` of
        None leaves the flag None when neither it nor its variable is given."""
        variable = variable or self.variable(flag)
        shown = "" if default is None else f", default {default}"
        # argparse runs `type` on string defaults, so a bad variable is reported like a flag.
        self._parser.add_argument(
            flag,
            type=kind,
            default=self._environ.get(variable, None if default is None else str(default)),
            help=f"{text} (env {variable}{shown})",
        )

    def listen(self, default_host: str, default_port: int) -> None:
        """``--host`` and ``--port``: where the service listens (port 0 picks a free one)."""
        self.option("--host", non_empty, default_host, "address to bind")
        self.option("--port", port, default_port, "port to bind; 0 picks a free one")

    def replica(self, default_region: str, default_name: str) -> None:
        """``--region`` and ``--name``: the hop this replica is in ``served_by``."""
        self.option("--region", non_empty, default_region, "region this replica runs in")
        self.option("--name", non_empty, default_name, "replica name, unique in its region")

    def choice(self, flag: str, choices: Sequence[str], default: str, text: str) -> None:
        """A flag taking one of `choices`."""
        known = list(choices)

        def one_of(value: str) -> str:
            if value not in known:
                raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(known)}")
            return value

        # A `type` check rather than `choices`: argparse checks choices on flags only, while a
        # string default (the variable) does go through `type`.
        self.option(flag, one_of, default, f"{text}, one of {{{','.join(known)}}}")

    def repeated(self, flag: str, kind: Callable[[str], Any], text: str) -> None:
        """A flag that may be given several times; its values keep their order."""
        variable = self.variable(flag)
        dest = flag.removeprefix("--").replace("-", "_")
        self._repeated[dest] = (variable, kind)
        self._parser.add_argument(
            flag,
            type=kind,
            action="append",
            dest=dest,
            default=None,
            help=f"{text}; repeatable (env {variable}, comma-separated)",
        )

    def switch(self, flag: str, text: str) -> None:
        """An on/off flag (``--x`` / ``--no-x``), off unless its variable says otherwise."""
        variable = self.variable(flag)
        raw = self._environ.get(variable, "").strip().lower()
        if raw not in _TRUE | _FALSE:
            self._parser.error(f"{variable} must be one of 1/true/yes/on or 0/false/no/off")
        self._parser.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=raw in _TRUE,
            help=f"{text} (env {variable})",
        )

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        """The parsed flags; repeated flags not given are read from their variables."""
        args = self._parser.parse_args(list(argv))
        for dest, (variable, kind) in self._repeated.items():
            if getattr(args, dest) is not None:
                continue
            raw = self._environ.get(variable, "")
            values = []
            for item in (part.strip() for part in raw.split(",")):
                if not item:
                    continue
                try:
                    values.append(kind(item))
                except argparse.ArgumentTypeError as exc:
                    self._parser.error(f"{variable}: {exc}")
            setattr(args, dest, values)
        return args

    def error(self, message: str) -> None:
        """Exit with the usage message and `message` (status 2)."""
        self._parser.error(message)


# --- the served-by header --------------------------------------------------------------------


def hop(component: str, region: str, replica: str) -> dict[str, str]:
    """One entry of a ``served_by`` trace."""
    return {"component": component, "region": region, "replica": replica}


def served_by_value(component: str, region: str, replica: str) -> str:
    """The ``x-bascule-served-by`` header value naming one hop."""
    return json.dumps(hop(component, region, replica), separators=(",", ":"))


class ServedByMiddleware:
    """Adds ``x-bascule-served-by: {"component", "region", "replica"}`` to every response."""

    def __init__(self, app: ASGIApp, component: str, region: str, replica: str) -> None:
        self._app = app
        value = served_by_value(component, region, replica)
        self._header = (SERVED_BY_HEADER.encode(), value.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self._header]}
            await send(message)

        await self._app(scope, receive, send_with_header)


# --- request bodies --------------------------------------------------------------------------


class BodyTooLargeError(Exception):
    """A request body exceeded the size its endpoint accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (`BodyTooLargeError`) before buffering more than `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


# --- serving ---------------------------------------------------------------------------------


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints its URL once it accepts connections."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(f"listening on {self._url}", flush=True)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (not yet listening)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serve `app` until SIGINT/SIGTERM, printing ``listening on URL`` once it accepts."""
    # Binding before uvicorn starts is what makes the real port of `--port 0` known.
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    server = _AnnouncingServer(
        uvicorn.Config(app, log_level="warning", lifespan="on"),
        url=f"http://{shown_host}:{bound_port}",
    )
    with sock:
        server.run(sockets=[sock])
