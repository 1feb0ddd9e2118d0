"""HTTP clients for the reference stack: names resolved when a connection opens, pools as designed.

Services reach each other by names such as ``retriever.aws-us-east-1.bascule.internal``. A
client made here resolves such a name only when its pool opens a *new* connection, by asking the
DNS server given with ``--dns-server`` (no resolver cache, no system configuration). A DNS fault
therefore behaves as on 2025-10-20: connections already in the pool keep working, new ones fail
with `DnsResolutionError`, which httpx surfaces as ``httpx.ConnectError`` naming the outcome
(``nxdomain``, ``nodata``, ``servfail`` or ``timeout``). IP literals and ``localhost`` are not
looked up; without a DNS server every name goes to the system resolver.

How long pooled connections live is a design parameter (`bascule.model.design.ConnectionPool`):
``max_connections`` bounds the pool, ``keepalive_expiry`` closes connections idle that long
(httpcore), and ``max_age`` — which httpcore lacks — closes a connection once it is that old:
its age is counted from the moment it started opening, and when a request arrives the pool's own
clean-up closes every *idle* connection past ``max_age``, so the request opens a fresh one (and
resolves the name again). A connection busy with a request is never cut; it is retired at the
first clean-up that finds it idle.

httpx 0.28.1 offers no public way to give its transport a network backend, so `make_transport`
replaces ``httpx.AsyncHTTPTransport._pool`` with an httpcore pool of its own. httpx and
httpcore are pinned for this, and ``tests/test_net.py`` fails if the versions or the hook change.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import anyio
import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import httpcore
import httpx

if TYPE_CHECKING:
    from bascule.model.design import ConnectionPool


__all__ = [
    "DnsOutcome",
    "DnsResolutionError",
    "NetConfig",
    "ResolvingBackend",
    "ResolvingTransport",
    "add_net_arguments",
    "dns_outcome",
    "make_async_client",
    "make_transport",
    "net_config_from_args",
    "parse_dns_server",
]

_UNRESOLVED = frozenset({"localhost"})


class DnsOutcome(StrEnum):
    """Why a name did not resolve, in the vocabulary of the ``dns`` fault."""

    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    """The name exists but has no A record: the empty answer of 2025-10-20."""
    SERVFAIL = "servfail"
    """The server failed (SERVFAIL, REFUSED or an unusable reply)."""
    TIMEOUT = "timeout"
    """No answer before the connect timeout ran out."""


class DnsResolutionError(httpcore.ConnectError):
    """A name could not be resolved, so no connection was opened.

    It is an ``httpcore.ConnectError``, so httpx raises ``httpx.ConnectError`` with the same
    message and this error as ``__cause__`` (see `dns_outcome`).
    """

    def __init__(self, host: str, outcome: DnsOutcome, server: tuple[str, int], detail: str) -> None:
        self.host = host
        self.outcome = outcome
        self.server = server
        super().__init__(f"DNS {outcome.value} for {host!r} from {_show_address(server)}: {detail}")


def dns_outcome(exc: BaseException) -> DnsOutcome | None:
    """The DNS outcome behind an exception raised by a client of this module, if DNS was the cause."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, DnsResolutionError):
            return current.outcome
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _show_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


# --- network backend -------------------------------------------------------------------------


class ResolvingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's AnyIO backend, with host names resolved through one DNS server at connect time.

    Each ``connect_tcp`` asks ``dns_server`` for the A records of the name (a fresh query: no
    cache) and connects to the first address. Resolution and the TCP connection share the
    connect timeout, as they do inside ``getaddrinfo``-based clients.
    """

    def __init__(self, dns_server: tuple[str, int], *, default_timeout: float = 1.0) -> None:
        if not _is_ip_literal(dns_server[0]):
            raise ValueError(f"the DNS server must be an IP address, got {dns_server[0]!r}")
        if default_timeout <= 0:
            raise ValueError("default_timeout must be > 0")
        self.dns_server = dns_server
        self._default_timeout = default_timeout
        self._inner = httpcore.AnyIOBackend()
        self._resolver = dns.asyncresolver.Resolver(configure=False)
        self._resolver.nameservers = [dns_server[0]]
        self._resolver.port = dns_server[1]
        # No cache: every new connection asks the server, so a DNS fault hits it at once.
        self._resolver.cache = None

    async def resolve(self, host: str, timeout: float | None = None) -> str:
        """The first IPv4 address of ``host``, or `DnsResolutionError`."""
        lifetime = self._default_timeout if timeout is None else timeout
        try:
            # dnspython checks its lifetime only between attempts and overshoots it by ~0.1 s;
            # the deadline keeps resolution within the connect timeout it is part of.
            with anyio.fail_after(lifetime):
                answer = await self._resolver.resolve(
                    dns.name.from_text(host), "A", lifetime=lifetime, search=False
                )
        except TimeoutError as exc:
            raise DnsResolutionError(
                host, DnsOutcome.TIMEOUT, self.dns_server, f"no answer within {lifetime:.3f} s"
            ) from exc
        except dns.resolver.NXDOMAIN as exc:
            raise self._failure(host, DnsOutcome.NXDOMAIN, exc) from exc
        except dns.resolver.NoAnswer as exc:
            raise self._failure(host, DnsOutcome.NODATA, exc) from exc
        except dns.exception.Timeout as exc:
            raise self._failure(host, DnsOutcome.TIMEOUT, exc) from exc
        except dns.exception.DNSException as exc:
            # NoNameservers (the only server answered SERVFAIL or REFUSED) and malformed replies:
            # either way the server did not give a usable answer.
            raise self._failure(host, DnsOutcome.SERVFAIL, exc) from exc
        for record in answer:
            return str(record.address)
        raise self._failure(host, DnsOutcome.NODATA, None)

    def _failure(
        self, host: str, outcome: DnsOutcome, exc: dns.exception.DNSException | None
    ) -> DnsResolutionError:
        detail = str(exc) if exc is not None else "answer without an A record"
        return DnsResolutionError(host, outcome, self.dns_server, detail)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        name = host.rstrip(".").lower()
        if _is_ip_literal(name) or name in _UNRESOLVED:
            return await self._inner.connect_tcp(
                host, port, timeout, local_address=local_address, socket_options=socket_options
            )
        started = time.monotonic()
        address = await self.resolve(name, timeout)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        return await self._inner.connect_tcp(
            address, port, remaining, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# --- pool with a maximum connection age ------------------------------------------------------


class _AgedConnection(httpcore.AsyncConnectionInterface):
    """An httpcore connection that also counts as expired once idle and older than ``max_age``."""

    def __init__(
        self, inner: httpcore.AsyncConnectionInterface, max_age: float, clock: Callable[[], float]
    ) -> None:
        self._inner = inner
        self._max_age = max_age
        self._clock = clock
        self._opened_at: float | None = None

    @property
    def age(self) -> float | None:
        """Seconds since the connection started opening; None before its first request."""
        return None if self._opened_at is None else self._clock() - self._opened_at

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._opened_at is None:
            # The pool creates connections lazily, for the request that needs them: the first
            # request is when this one opens.
            self._opened_at = self._clock()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def info(self) -> str:
        return self._inner.info()

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return self._inner.can_handle_request(origin)

    def is_available(self) -> bool:
        return self._inner.is_available()

    def has_expired(self) -> bool:
        if self._inner.has_expired():
            return True
        age = self.age
        return age is not None and age >= self._max_age and self._inner.is_idle()

    def is_idle(self) -> bool:
        return self._inner.is_idle()

    def is_closed(self) -> bool:
        return self._inner.is_closed()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.info()}, age {self.age}]>"


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool; with ``max_age`` its connections expire by age as well as by idleness.

    The pool asks every connection ``has_expired()`` whenever a request arrives or a response is
    closed, and closes the expired ones under its own bookkeeping — so retiring old connections
    there never races with the pool handing them out.
    """

    def __init__(
        self,
        *,
        max_age: float | None,
        clock: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_age = max_age
        self._clock = clock

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        connection = super().create_connection(origin)
        if self.max_age is None:
            return connection
        return _AgedConnection(connection, self.max_age, self._clock)


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NetConfig:
    """How a service's HTTP clients reach other services."""

    dns_server: tuple[str, int] | None
    """Where names are resolved (IP, port); None uses the system resolver."""
    max_connections: int = 20
    keepalive_expiry: float = 30.0
    max_age: float | None = None
    connect_timeout: float = 1.0
    """Covers the DNS lookup and the TCP connection together."""
    request_timeout: float = 5.0
    """Read, write and pool-wait timeout of each request."""

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError("max_connections must be ≥ 1")
        if not (math.isfinite(self.keepalive_expiry) and self.keepalive_expiry >= 0):
            raise ValueError("keepalive_expiry must be a finite number ≥ 0")
        if self.max_age is not None and not (math.isfinite(self.max_age) and self.max_age >= 0):
            raise ValueError("max_age must be a finite number ≥ 0")
        for name in ("connect_timeout", "request_timeout"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0")
        if self.dns_server is not None and not _is_ip_literal(self.dns_server[0]):
            raise ValueError(f"the DNS server must be an IP address, got {self.dns_server[0]!r}")

    @classmethod
    def from_pool(
        cls,
        pool: ConnectionPool,
        dns_server: tuple[str, int] | None,
        connect_timeout: float = 1.0,
        request_timeout: float = 5.0,
    ) -> NetConfig:
        """The configuration a design's ``routing.connection_pool`` asks for."""
        return cls(
            dns_server=dns_server,
            max_connections=pool.max_connections,
            keepalive_expiry=pool.keepalive_expiry,
            max_age=pool.max_age,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
        )

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.request_timeout, connect=self.connect_timeout)


# --- transport and client --------------------------------------------------------------------


class ResolvingTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a pool that resolves through `ResolvingBackend` and honours ``max_age``."""

    def __init__(self, config: NetConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=False)
        limits = httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
            keepalive_expiry=config.keepalive_expiry,
        )
        # Passing the context makes httpx reuse it instead of loading the CA bundle again.
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        backend: httpcore.AsyncNetworkBackend = (
            httpcore.AnyIOBackend()
            if config.dns_server is None
            else ResolvingBackend(config.dns_server, default_timeout=config.connect_timeout)
        )
        self._pool = _Pool(
            ssl_context=ssl_context,
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
            keepalive_expiry=config.keepalive_expiry,
            network_backend=backend,
            max_age=config.max_age,
            clock=clock,
        )
        self.config = config
        self.network_backend = backend

    @property
    def pool(self) -> httpcore.AsyncConnectionPool:
        """The httpcore pool requests go through (its ``connections`` show what is open)."""
        return self._pool


def make_transport(config: NetConfig) -> httpx.AsyncBaseTransport:
    """A transport that resolves names at connect time and pools connections as configured."""
    return ResolvingTransport(config)


def make_async_client(config: NetConfig, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` over `make_transport`, with the configured timeouts.

    Proxies and certificates from the environment are ignored (``trust_env=False``): the stack's
    hops must go where the design says. Keyword arguments go to ``httpx.AsyncClient``.
    """
    kwargs.setdefault("timeout", config.timeout)
    return httpx.AsyncClient(transport=make_transport(config), trust_env=False, **kwargs)


# --- command line ----------------------------------------------------------------------------


def parse_dns_server(text: str) -> tuple[str, int]:
    """``127.0.0.1:5353`` or ``[::1]:5353`` → (ip, port); the port defaults to 53."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"not HOST:PORT: {text!r}")
        port_text = rest[1:] if rest else "53"
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        # A bare IPv6 address or a bare IPv4 one: the standard port.
        host, port_text = text, "53"
    if not _is_ip_literal(host):
        raise ValueError(f"the DNS server must be an IP address, got {host!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"not a port: {port_text!r}") from None
    if not 0 < port <= 65535:
        raise ValueError(f"not a port: {port_text!r}")
    return host, port


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _number(text: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"must be a finite number {'>' if positive else '>='} 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    return _number(text, positive=False)


def _positive_seconds(text: str) -> float:
    return _number(text, positive=True)


def _optional_seconds(text: str) -> float | None:
    return None if text.strip().lower() in ("", "none") else _seconds(text)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None
    if value < 1:
        raise ValueError(f"must be >= 1, got {text!r}")
    return value


def _optional_dns_server(text: str) -> tuple[str, int] | None:
    return None if not text.strip() else parse_dns_server(text)


_FLAGS: tuple[tuple[str, str, Callable[[str], Any], str], ...] = (
    ("--dns-server", "dns_server", _optional_dns_server, "DNS server as IP:PORT; empty: system"),
    ("--pool-max-connections", "max_connections", _count, "connections per client pool"),
    ("--pool-keepalive-expiry", "keepalive_expiry", _seconds, "close connections idle this long"),
    ("--pool-max-age", "max_age", _optional_seconds, "close connections this old; none: never"),
    ("--connect-timeout", "connect_timeout", _positive_seconds, "DNS lookup + TCP connect"),
    ("--request-timeout", "request_timeout", _positive_seconds, "read, write and pool wait"),
)
_DEST_PREFIX = "net_"


def add_net_arguments(parser: argparse.ArgumentParser, environ: Mapping[str, str] | None = None) -> None:
    """Add the flags every service shares for its outgoing connections.

    Each flag falls back to a ``BASCULE_*`` variable named after it (``--dns-server`` →
    ``BASCULE_DNS_SERVER``); read the result with `net_config_from_args`.
    """
    env = os.environ if environ is None else environ
    defaults = NetConfig(dns_server=None)
    group = parser.add_argument_group("outgoing connections")
    for flag, field, parse, text in _FLAGS:
        variable = "BASCULE_" + flag.removeprefix("--").replace("-", "_").upper()
        default = getattr(defaults, field)
        shown = "none" if default is None else default
        # argparse runs `type` on string defaults, so a bad variable is reported like a bad flag.
        group.add_argument(
            flag,
            dest=_DEST_PREFIX + field,
            type=_argument_type(parse),
            default=env.get(variable, None if default is None else str(default)),
            help=f"{text} (env {variable}, default {shown})",
        )


def net_config_from_args(ns: argparse.Namespace) -> NetConfig:
    """The `NetConfig` given by flags added with `add_net_arguments`."""
    values = {field: getattr(ns, _DEST_PREFIX + field) for _, field, _, _ in _FLAGS}
    return NetConfig(**values)
