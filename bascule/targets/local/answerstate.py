"""Proxy route states that act on what a hop answers, as plain immutable values: the faults on
answers (`Ttft`, `StreamCut`, `TokenRate`, `Degrade`, `ModelSwap`) and the transport faults on the same bytes
(`Bandwidth`, `LimitData`, `Slicer`, `SlowClose`). `proxy.shapers` carries each out;
`faultstate` gathers them with the connection states and moves them as JSON through
`dump_answer_state` / `parse_answer_state`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Final

from bascule.targets.local.proxymode import (
    MISTRAL_RATE_LIMIT_BODY,
    ProxyMode,
    check_non_negative,
    check_ratio,
    read_body,
    read_choice,
    read_count,
    read_number,
)

__all__ = [
    "ANSWER_MODES",
    "ANSWER_STATES",
    "AnswerState",
    "Bandwidth",
    "CutHow",
    "Degrade",
    "DegradeHow",
    "EmbeddingMismatch",
    "LimitData",
    "ModelSwap",
    "PartialIndex",
    "Slicer",
    "SlowClose",
    "StreamCut",
    "SwapAnswers",
    "TokenRate",
    "Ttft",
    "dump_answer_state",
    "parse_answer_state",
]


class CutHow(Enum):
    """How `StreamCut` ends a response it cuts."""

    END = "end"
    """The HTTP message ends there: a chunked body gets its last chunk, so the client reads a
    complete response whose answer stops short (no ``data: [DONE]``). A Content-Length body cannot
    end early: its connection is closed there instead, as with `EOF`."""
    EOF = "eof"
    """The connection is closed there (FIN): the client reads an incomplete body."""
    RESET = "reset"
    """The connection is reset there (RST)."""


class DegradeHow(Enum):
    """What `Degrade` makes of an answer's text."""

    CORRUPT = "corrupt"
    """Every letter rotated by 13 and every digit by 5: same length and shape, wrong text."""
    TRUNCATE = "truncate"
    """The first half of its words only."""
    SWAP = "swap"
    """The answer to another question the route relayed earlier in this state (the first: truncated)."""
    TOKENS = "tokens"
    """A `Degrade.tokens` share of its words replaced by letters of another script; the rest intact."""


@dataclass(frozen=True, slots=True)
class Ttft:
    """Each response's head goes out at once; its first body bytes are held `delay` seconds, and
    the rest of the body queues behind them: the time to first token of a stream, stalled."""

    delay: float = 0.0
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.TTFT

    def __post_init__(self) -> None:
        check_non_negative("delay", self.delay)


@dataclass(frozen=True, slots=True)
class StreamCut:
    """Each event-stream response cut after `after_events` events, or each response's body after
    `after_bytes` bytes (exactly one of the two), ended as `how` says."""

    after_events: int | None = None
    after_bytes: int | None = None
    how: CutHow = CutHow.END
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.STREAM_CUT

    def __post_init__(self) -> None:
        if (self.after_events is None) == (self.after_bytes is None):
            raise ValueError("give exactly one of after_events and after_bytes")
        for what in (self.after_events, self.after_bytes):
            if what is not None and (isinstance(what, bool) or what < 0):
                raise ValueError(f"a cut point must be an integer >= 0, got {what!r}")


@dataclass(frozen=True, slots=True)
class TokenRate:
    """A budget of `tokens_per_minute` for the route (a bucket that refills continuously, full
    when the state is set). Responses carry ``x-ratelimit-*-tokens`` headers and are charged
    their ``usage.total_tokens`` (else body bytes / 4); a request arriving with the budget spent
    is answered 429 with ``Retry-After`` and `body`."""

    tokens_per_minute: int = 1
    body: bytes | str = MISTRAL_RATE_LIMIT_BODY
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.TOKEN_RATE

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode("utf-8"))
        if isinstance(self.tokens_per_minute, bool) or self.tokens_per_minute < 1:
            raise ValueError(f"tokens_per_minute must be an integer >= 1, got {self.tokens_per_minute!r}")

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


@dataclass(frozen=True, slots=True)
class Degrade:
    """A `ratio` of the route's 2xx JSON answers rewritten as `how` says, status unchanged."""

    ratio: float = 1.0
    how: DegradeHow = DegradeHow.CORRUPT
    tokens: float = 0.1
    """With `DegradeHow.TOKENS`: the share of words replaced."""
    sticky: bool = False
    """Draw `ratio` once per client connection: all its answers degraded, or none."""
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.DEGRADE

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        check_ratio(self.tokens)


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """Bytes to the client paced at `rate` bytes a second, per connection (bytes to the upstream pass)."""

    rate: int = 1
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.BANDWIDTH

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or self.rate < 1:
            raise ValueError(f"rate must be an integer >= 1, got {self.rate!r}")


@dataclass(frozen=True, slots=True)
class LimitData:
    """Each connection closed (or reset, `reset`) once `limit` bytes have gone to its client."""

    limit: int = 0
    reset: bool = False
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.LIMIT_DATA

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or self.limit < 0:
            raise ValueError(f"limit must be an integer >= 0, got {self.limit!r}")


@dataclass(frozen=True, slots=True)
class Slicer:
    """Bytes to the client cut into pieces of `average_size` ± `size_variation` bytes, each piece
    `delay` seconds after the one before (toxiproxy's slicer)."""

    average_size: int = 1
    size_variation: int = 0
    delay: float = 0.0
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.SLICER

    def __post_init__(self) -> None:
        if isinstance(self.average_size, bool) or self.average_size < 1:
            raise ValueError(f"average_size must be an integer >= 1, got {self.average_size!r}")
        if isinstance(self.size_variation, bool) or not 0 <= self.size_variation < self.average_size:
            raise ValueError(
                f"size_variation must be an integer >= 0 and below average_size, got {self.size_variation!r}"
            )
        check_non_negative("delay", self.delay)


@dataclass(frozen=True, slots=True)
class SlowClose:
    """The upstream's close (its end of stream) reaches the client `delay` seconds late
    (toxiproxy's slow_close); the bytes before it pass at once."""

    delay: float = 0.0
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.SLOW_CLOSE

    def __post_init__(self) -> None:
        check_non_negative("delay", self.delay)


class SwapAnswers(Enum):
    """What `ModelSwap` makes of an answer's text, standing in for a smaller model's."""

    SHORTER = "shorter"
    """Its first sentence only (with the citations right after it): facts of later sentences lost."""
    UNCITED = "uncited"
    """Every ``[doc:ID]`` citation marker removed: the instructions to cite not followed."""
    UNCHANGED = "unchanged"
    """The text untouched: only the ``model`` fields say what served it."""


@dataclass(frozen=True, slots=True)
class ModelSwap:
    """2xx chat answers (JSON, or event streams event by event) relabelled: every ``model`` field
    becomes `to`; a `ratio` of them has its text changed as `answers` says."""

    to: str = "small"
    answers: SwapAnswers = SwapAnswers.SHORTER
    ratio: float = 1.0
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.MODEL_SWAP

    def __post_init__(self) -> None:
        if not self.to.strip():
            raise ValueError(f"to must name a model, got {self.to!r}")
        check_ratio(self.ratio)


@dataclass(frozen=True, slots=True)
class PartialIndex:
    """The documents whose id hashes below `ratio` (a stable hash, `salt` mixed in) are removed
    from the route's 2xx JSON search answers: the same share missing from every answer."""

    ratio: float = 0.5
    salt: str = ""
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.PARTIAL_INDEX

    def __post_init__(self) -> None:
        check_ratio(self.ratio)


@dataclass(frozen=True, slots=True)
class EmbeddingMismatch:
    """Query vectors in the route's JSON requests (`vector`, `query_vector`, `embedding`) and the
    vectors of its 2xx embeddings answers (``data[].embedding``) mapped as if another model,
    named `model`, had made them: a fixed signed permutation of their coordinates seeded by it."""

    model: str = "other"
    new_connections_only: bool = False
    mode: ClassVar[ProxyMode] = ProxyMode.EMBEDDING_MISMATCH

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ValueError(f"model must name a model, got {self.model!r}")


AnswerState = (
    Ttft
    | StreamCut
    | TokenRate
    | Degrade
    | Bandwidth
    | LimitData
    | Slicer
    | SlowClose
    | ModelSwap
    | PartialIndex
    | EmbeddingMismatch
)
"""Any state that acts on answers or their bytes."""

ANSWER_STATES: Final[dict[ProxyMode, type[AnswerState]]] = {
    cls.mode: cls
    for cls in (
        Ttft,
        StreamCut,
        TokenRate,
        Degrade,
        Bandwidth,
        LimitData,
        Slicer,
        SlowClose,
        ModelSwap,
        PartialIndex,
        EmbeddingMismatch,
    )
}
ANSWER_MODES: Final = frozenset(ANSWER_STATES)


def dump_answer_state(state: AnswerState) -> dict[str, object]:
    """The values of `state` beyond its mode, JSON-ready; `parse_answer_state` reads them back."""
    match state:
        case Ttft():
            return {"delay": state.delay}
        case StreamCut():
            return {
                "after_events": state.after_events,
                "after_bytes": state.after_bytes,
                "how": state.how.value,
            }
        case TokenRate():
            return {
                "tokens_per_minute": state.tokens_per_minute,
                "body": state.body_bytes.decode("utf-8", errors="replace"),
            }
        case Degrade():
            return {
                "ratio": state.ratio,
                "how": state.how.value,
                "tokens": state.tokens,
                "sticky": state.sticky,
            }
        case Bandwidth():
            return {"rate": state.rate}
        case LimitData():
            return {"limit": state.limit, "reset": state.reset}
        case Slicer():
            return {
                "average_size": state.average_size,
                "size_variation": state.size_variation,
                "delay": state.delay,
            }
        case SlowClose():
            return {"delay": state.delay}
        case ModelSwap():
            return {"to": state.to, "answers": state.answers.value, "ratio": state.ratio}
        case PartialIndex():
            return {"ratio": state.ratio, "salt": state.salt}
        case EmbeddingMismatch():
            return {"model": state.model}


def parse_answer_state(mode: ProxyMode, data: Mapping[str, object], nco: bool) -> AnswerState:
    """The state of `mode` from the mapping `dump_answer_state` makes (keys already checked)."""
    match mode:
        case ProxyMode.TTFT:
            return Ttft(delay=read_number(data, "delay", 0.0), new_connections_only=nco)
        case ProxyMode.STREAM_CUT:
            return StreamCut(
                after_events=read_count(data, "after_events"),
                after_bytes=read_count(data, "after_bytes"),
                how=read_choice(CutHow, data.get("how", CutHow.END.value), "how"),
                new_connections_only=nco,
            )
        case ProxyMode.TOKEN_RATE:
            tpm = read_count(data, "tokens_per_minute")
            if tpm is None:
                raise ValueError("tokens_per_minute is required")
            return TokenRate(tokens_per_minute=tpm, body=read_body(data), new_connections_only=nco)
        case ProxyMode.DEGRADE:
            return Degrade(
                ratio=read_number(data, "ratio", 1.0),
                how=read_choice(DegradeHow, data.get("how", DegradeHow.CORRUPT.value), "how"),
                tokens=read_number(data, "tokens", 0.1),
                sticky=data.get("sticky", False) is True,
                new_connections_only=nco,
            )
        case ProxyMode.BANDWIDTH:
            return Bandwidth(rate=read_count(data, "rate") or 0, new_connections_only=nco)
        case ProxyMode.LIMIT_DATA:
            reset = data.get("reset", False)
            if not isinstance(reset, bool):
                raise ValueError(f"reset must be true or false, got {reset!r}")
            return LimitData(limit=read_count(data, "limit") or 0, reset=reset, new_connections_only=nco)
        case ProxyMode.SLICER:
            return Slicer(
                average_size=read_count(data, "average_size") or 0,
                size_variation=read_count(data, "size_variation") or 0,
                delay=read_number(data, "delay", 0.0),
                new_connections_only=nco,
            )
        case ProxyMode.SLOW_CLOSE:
            return SlowClose(delay=read_number(data, "delay", 0.0), new_connections_only=nco)
        case ProxyMode.MODEL_SWAP:
            to = data.get("to")
            if not isinstance(to, str):
                raise ValueError(f"to must be a string, got {to!r}")
            return ModelSwap(
                to=to,
                answers=read_choice(SwapAnswers, data.get("answers", SwapAnswers.SHORTER.value), "answers"),
                ratio=read_number(data, "ratio", 1.0),
                new_connections_only=nco,
            )
        case ProxyMode.PARTIAL_INDEX:
            salt = data.get("salt", "")
            if not isinstance(salt, str):
                raise ValueError(f"salt must be a string, got {salt!r}")
            return PartialIndex(ratio=read_number(data, "ratio", 0.5), salt=salt, new_connections_only=nco)
        case ProxyMode.EMBEDDING_MISMATCH:
            model = data.get("model")
            if not isinstance(model, str):
                raise ValueError(f"model must be a string, got {model!r}")
            return EmbeddingMismatch(model=model, new_connections_only=nco)
    raise ValueError(f"{mode.value!r} is not a state on answers")
