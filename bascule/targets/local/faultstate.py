"""Fault states of the local target's proxies and DNS server, as plain immutable values.

A proxy route is always in exactly one `ProxyFault` state (`Pass` when nothing is injected); the
DNS server maps names to a `DnsFaultMode`. Here: the states on connections and requests; the
states on answers and their bytes live in `answerstate` (re-exported here), and what all share —
`ProxyMode`, the checks and readers of values — in `proxymode`. These values carry no behaviour:
`proxy.FaultPlane` and `dns.DnsServer` act on them, and `control` moves them across its channel as
JSON through `dump_proxy_fault` / `parse_proxy_fault`.

`new_connections_only`
    On a proxy state it means: connections that are open when the state is set keep the state
    they had; only connections accepted afterwards get the new one. That is how pooled
    keep-alive connections survived the 2025-10-20 DNS failure while new ones could not be made.

    DNS faults have no such flag because they always behave that way: the DNS server never sees
    connections, only lookups, and a pooled connection does not look its name up again. A DNS
    fault therefore reaches exactly the clients that resolve a name while it is active — new
    connections, and pools whose entries expire — which is the incident's behaviour. (Answers
    carry TTL 0 by default so that no cache in between hides the fault.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from bascule.targets.local.answerstate import (
    ANSWER_MODES,
    AnswerState,
    Bandwidth,
    CutHow,
    Degrade,
    DegradeHow,
    EmbeddingMismatch,
    LimitData,
    ModelSwap,
    PartialIndex,
    Slicer,
    SlowClose,
    StreamCut,
    SwapAnswers,
    TokenRate,
    Ttft,
    dump_answer_state,
    parse_answer_state,
)
from bascule.targets.local.answerstate import ANSWER_STATES as _ANSWER_STATES
from bascule.targets.local.proxymode import (
    MISTRAL_RATE_LIMIT_BODY,
    ProxyMode,
    check_counted,
    check_non_negative,
    check_ratio,
    read_body,
    read_count,
    read_number,
)

__all__ = [
    "MISTRAL_RATE_LIMIT_BODY",
    "AnswerState",
    "Bandwidth",
    "Blackhole",
    "CutHow",
    "Degrade",
    "DegradeHow",
    "DnsFaultMode",
    "EmbeddingMismatch",
    "Hang",
    "HttpError",
    "Latency",
    "LatencyPer",
    "LimitData",
    "ModelSwap",
    "PartialIndex",
    "Pass",
    "ProxyFault",
    "ProxyMode",
    "Refuse",
    "Slicer",
    "SlowClose",
    "StreamCut",
    "SwapAnswers",
    "Throttle",
    "TokenRate",
    "Ttft",
    "dump_proxy_fault",
    "in_force",
    "parse_proxy_fault",
    "strikes_nothing",
]


class LatencyPer(Enum):
    """How often a `Latency` fault charges its delay.

    `REQUEST`: once per request — the first client→upstream chunk after the upstream last spoke
    (or the connection's first) waits `fixed + U(0, jitter)`, drawn afresh each time; the rest of
    that request queues behind it in order. `CONNECTION`: once per connection — only the first
    such request after the state applies to the connection waits; later ones pass at once, as
    with a slow connection set-up.
    """

    REQUEST = "request"
    CONNECTION = "connection"


class DnsFaultMode(Enum):
    """What the DNS server answers for a faulted name (see the module docstring on pooling)."""

    NXDOMAIN = "nxdomain"
    """The name does not exist (rcode NXDOMAIN)."""
    NODATA = "nodata"
    """NOERROR with an empty answer section — the record emptied on 2025-10-20."""
    SERVFAIL = "servfail"
    """The server failed (rcode SERVFAIL)."""
    DROP = "drop"
    """No answer at all: the client times out."""


@dataclass(frozen=True, slots=True)
class Pass:
    """Relay bytes untouched (the fast path: no HTTP parsing)."""

    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.PASS


@dataclass(frozen=True, slots=True)
class Blackhole:
    """Accept connections and read from them, but forward and answer nothing: clients time out.

    Bytes from the upstream are dropped too, and an upstream closing a connection meanwhile is
    hidden from its client until the fault ends (then the client's connection is reset).
    """

    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.BLACKHOLE


@dataclass(frozen=True, slots=True)
class Refuse:
    """Refuse new connections (ECONNREFUSED); reset open ones unless `new_connections_only`.

    Counted (`count`: the first N new connections, `every`: every N-th), the route keeps
    listening so as to count them: those refused are accepted and reset at once (RST, a client
    sees ECONNRESET), the others are relayed, and open connections are left alone."""

    new_connections_only: bool = False
    count: int | None = None
    every: int | None = None
    mode: ClassVar[ProxyMode] = ProxyMode.REFUSE

    def __post_init__(self) -> None:
        check_counted(self.count, self.every, 1.0)

    @property
    def counted(self) -> bool:
        return self.count is not None or self.every is not None


@dataclass(frozen=True, slots=True)
class Hang:
    """Behave like a SIGSTOP'd upstream: connections are accepted, nothing is read or answered.

    Bytes wait in the kernel's buffers; when the fault ends they flow again, so requests sent
    during the hang are answered late — as after SIGCONT.
    """

    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.HANG


@dataclass(frozen=True, slots=True)
class Latency:
    """Delay client→upstream traffic by `fixed + U(0, jitter)` seconds (see `LatencyPer`)."""

    fixed: float = 0.0
    jitter: float = 0.0
    per: LatencyPer = LatencyPer.REQUEST
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.LATENCY

    def __post_init__(self) -> None:
        check_non_negative("fixed", self.fixed)
        check_non_negative("jitter", self.jitter)


@dataclass(frozen=True, slots=True)
class HttpError:
    """Answer a `ratio` of HTTP requests locally with a status drawn from `statuses`."""

    statuses: tuple[int, ...] = (503,)
    ratio: float = 1.0
    new_connections_only: bool = False
    count: int | None = None
    """Only the first `count` requests after the state is set, then none."""
    every: int | None = None
    """Only every `every`-th request (the N-th, 2N-th, …) after the state is set."""
    mode: ClassVar[ProxyMode] = ProxyMode.HTTP_ERROR

    def __post_init__(self) -> None:
        if not self.statuses:
            raise ValueError("statuses must name at least one HTTP status")
        for status in self.statuses:
            if not 400 <= status <= 599:
                raise ValueError(f"an injected error status must be 4xx or 5xx, got {status!r}")
        check_ratio(self.ratio)
        check_counted(self.count, self.every, self.ratio)


@dataclass(frozen=True, slots=True)
class Throttle:
    """Answer a `ratio` of HTTP requests locally with 429, `Retry-After` and a provider's body."""

    retry_after: float = 1.0
    body: bytes | str = MISTRAL_RATE_LIMIT_BODY
    headers: tuple[tuple[str, str], ...] = field(default=())
    ratio: float = 1.0
    content_type: str = "application/json"
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.THROTTLE

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            # Stored encoded, so that equal bodies compare equal whichever way they were given.
            object.__setattr__(self, "body", self.body.encode("utf-8"))
        check_non_negative("retry_after", self.retry_after)
        check_ratio(self.ratio)
        for name, value in self.headers:
            if not name or any(c in name + value for c in "\r\n") or ":" in name:
                raise ValueError(f"invalid header {name!r}: {value!r}")

    @property
    def body_bytes(self) -> bytes:
        """The body as sent: a `str` body goes out UTF-8 encoded."""
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` takes whole seconds; rounding up never invites a client back too early."""
        return str(math.ceil(self.retry_after))


ProxyFault = Pass | Blackhole | Refuse | Hang | Latency | HttpError | Throttle | AnswerState
"""Any proxy route state."""

_BY_MODE: dict[ProxyMode, type[ProxyFault]] = {
    cls.mode: cls for cls in (Pass, Blackhole, Refuse, Hang, Latency, HttpError, Throttle)
} | _ANSWER_STATES


def strikes_nothing(state: ProxyFault) -> bool:
    """Whether a state leaves all traffic as it came, whatever the hop sends: a delay or a stall of
    0 s, a ratio of 0 to fail, throttle, degrade or drop. Faults that act on every answer they meet
    (token-rate's headers, model-swap's relabelling), whose strike depends on the answer (a stream
    cut after N events) or on a count (`count`, `every`), and transport faults on the bytes (a rate,
    a limit) are not idle here: their shapers pass, answer by answer, what they do not act on
    (`proxy.answers.Shaper.acts_on`)."""
    match state:
        case Latency():
            return state.fixed == 0.0 and state.jitter == 0.0
        case HttpError():
            return state.ratio == 0.0 and state.count is None and state.every is None
        case Throttle():
            return state.ratio == 0.0
        case Ttft():
            return state.delay == 0.0
        case Degrade() | PartialIndex():
            return state.ratio == 0.0
    return False


def in_force(state: ProxyFault) -> ProxyFault:
    """What a route's connections carry out while the route is in `state`: `Pass` (the relay's fast
    path, nothing framed, nothing counted as faulted) when it `strikes_nothing`, else `state`."""
    return Pass() if strikes_nothing(state) else state


def dump_proxy_fault(state: ProxyFault) -> dict[str, object]:
    """A JSON-ready mapping of `state`; `parse_proxy_fault` reads it back."""
    data: dict[str, object] = {
        "mode": state.mode.value,
        "new_connections_only": state.new_connections_only,
    }
    match state:
        case Latency():
            data |= {"fixed": state.fixed, "jitter": state.jitter, "per": state.per.value}
        case HttpError():
            data |= {"statuses": list(state.statuses), "ratio": state.ratio}
            data |= _counted(state.count, state.every)
        case Refuse():
            data |= _counted(state.count, state.every)
        case Throttle():
            data |= {
                "retry_after": state.retry_after,
                "body": state.body_bytes.decode("utf-8", errors="replace"),
                "headers": [list(pair) for pair in state.headers],
                "ratio": state.ratio,
                "content_type": state.content_type,
            }
        case Pass() | Blackhole() | Hang():
            pass
        case _:
            data |= dump_answer_state(state)
    return data


def _counted(count: int | None, every: int | None) -> dict[str, object]:
    return {k: v for k, v in (("count", count), ("every", every)) if v is not None}


def _headers(value: object) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        pairs: list[object] = [[k, v] for k, v in value.items()]
    elif isinstance(value, list | tuple):
        pairs = list(value)
    else:
        raise ValueError(f"headers must be a mapping or a list of [name, value], got {value!r}")
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise ValueError(f"a header must be [name, value], got {pair!r}")
        name, val = pair
        if not (isinstance(name, str) and isinstance(val, str)):
            raise ValueError(f"header names and values must be strings, got {pair!r}")
        out.append((name, val))
    return tuple(out)


def parse_proxy_fault(data: Mapping[str, object]) -> ProxyFault:
    """Build a proxy state from a mapping such as `dump_proxy_fault` makes.

    Raises `ValueError` naming the offending key for anything unknown or ill-typed.
    """
    raw_mode = data.get("mode")
    try:
        mode = ProxyMode(raw_mode)
    except ValueError:
        known = ", ".join(m.value for m in ProxyMode)
        raise ValueError(f"unknown proxy fault mode {raw_mode!r} (known: {known})") from None
    allowed = {"mode", "new_connections_only"} | {
        name for name in _BY_MODE[mode].__dataclass_fields__ if name != "mode"
    }
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) for mode {mode.value!r}: {', '.join(unknown)}")
    nco = data.get("new_connections_only", False)
    if not isinstance(nco, bool):
        raise ValueError(f"new_connections_only must be true or false, got {nco!r}")
    match mode:
        case ProxyMode.PASS:
            return Pass(new_connections_only=nco)
        case ProxyMode.BLACKHOLE:
            return Blackhole(new_connections_only=nco)
        case ProxyMode.REFUSE:
            return Refuse(
                new_connections_only=nco, count=read_count(data, "count"), every=read_count(data, "every")
            )
        case ProxyMode.HANG:
            return Hang(new_connections_only=nco)
        case ProxyMode.LATENCY:
            per = data.get("per", LatencyPer.REQUEST.value)
            try:
                latency_per = LatencyPer(per)
            except ValueError:
                raise ValueError(f"per must be 'request' or 'connection', got {per!r}") from None
            return Latency(
                fixed=read_number(data, "fixed", 0.0),
                jitter=read_number(data, "jitter", 0.0),
                per=latency_per,
                new_connections_only=nco,
            )
        case ProxyMode.HTTP_ERROR:
            statuses = data.get("statuses", [503])
            if not (
                isinstance(statuses, list | tuple)
                and all(isinstance(s, int) and not isinstance(s, bool) for s in statuses)
            ):
                raise ValueError(f"statuses must be a list of integers, got {statuses!r}")
            return HttpError(
                statuses=tuple(statuses),
                ratio=read_number(data, "ratio", 1.0),
                new_connections_only=nco,
                count=read_count(data, "count"),
                every=read_count(data, "every"),
            )
        case ProxyMode.THROTTLE:
            content_type = data.get("content_type", "application/json")
            if not isinstance(content_type, str):
                raise ValueError(f"content_type must be a string, got {content_type!r}")
            return Throttle(
                retry_after=read_number(data, "retry_after", 1.0),
                body=read_body(data),
                headers=_headers(data.get("headers", ())),
                ratio=read_number(data, "ratio", 1.0),
                content_type=content_type,
                new_connections_only=nco,
            )
        case _ if mode in ANSWER_MODES:
            return parse_answer_state(mode, data, nco)
    raise ValueError(f"unknown proxy fault mode {mode.value!r}")
