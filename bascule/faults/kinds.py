"""Every fault kind of DESIGN.md's vocabulary, one small class each.

Parameters are validated here; durations are float seconds (YAML says ``"2s"``, ``"150ms"``).
Time compression applies to when a phase starts and ends, never to these parameters: a 2 s latency
stays 2 s in a compressed replay, because it is the system's reaction being measured.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from bascule.faults.base import FAULT_KINDS, Fault, register
from bascule.model.durations import Duration
from bascule.model.selector import Scope

__all__ = [
    "AnyFault",
    "Bandwidth",
    "Blackhole",
    "ControlPlane",
    "Crash",
    "CutHow",
    "DataLoss",
    "Degrade",
    "DegradeHow",
    "Dns",
    "DnsAnswer",
    "EmbeddingMismatch",
    "Flap",
    "Hang",
    "HttpError",
    "Identity",
    "IdentityMode",
    "Latency",
    "LatencyPer",
    "LimitData",
    "ModelSwap",
    "OutageMode",
    "PartialIndex",
    "Partition",
    "ProviderOutage",
    "Refuse",
    "RegionOutage",
    "ReplicationPause",
    "Slicer",
    "SlowClose",
    "StaleIndex",
    "StreamCut",
    "SwapAnswers",
    "Throttle",
    "TokenRate",
    "Ttft",
]

_HOPS = frozenset({Scope.COMPONENT, Scope.REGION, Scope.LINK, Scope.DEPENDENCY})
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


class OutageMode(StrEnum):
    """How an unreachable region looks from outside: packets dropped, or connections refused."""

    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


@register
class RegionOutage(Fault):
    """Everything in a region unreachable: its replicas, its shared dependencies, every hop into it.

    The sum of its parts (nodes, network, control plane): nothing in the region restarts while it
    holds, and every region that relies on a dependency located there is hit too."""

    kind: Literal["region-outage"] = "region-outage"
    mode: OutageMode = OutageMode.BLACKHOLE
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.REGION})
    client_sees: ClassVar[str] = "everything in the region unreachable (timeouts)"


@register
class ProviderOutage(Fault):
    """A region outage in every region of one provider at once: the global incidents."""

    kind: Literal["provider-outage"] = "provider-outage"
    mode: OutageMode = OutageMode.BLACKHOLE
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.PROVIDER})
    client_sees: ClassVar[str] = "every region of the provider unreachable"


@register
class Crash(Fault):
    """Replicas killed; the runtime restarts them after ``restart_after`` unless a
    ``control-plane`` fault covers their region, in which case they stay down until it ends."""

    kind: Literal["crash"] = "crash"
    restart_after: Duration = 5.0
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.COMPONENT, Scope.REGION})
    client_sees: ClassVar[str] = "connection refused until restarted"


@register
class Hang(Fault):
    """Replicas frozen (SIGSTOP locally): connections are accepted, nothing answers. A gray failure
    that liveness checks based on TCP connect do not see."""

    kind: Literal["hang"] = "hang"
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.COMPONENT})
    client_sees: ClassVar[str] = "connections accepted, no answer"


@register
class Blackhole(Fault):
    """Packets to the target dropped: connect and read time out instead of failing fast."""

    kind: Literal["blackhole"] = "blackhole"
    new_connections_only: bool = False
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "connect/read timeouts"


Count = Annotated[int, Field(ge=1)]


class _Counted(Fault):
    """``count``: only the first N requests (connections, for refuse) after the fault starts;
    ``every``: only every N-th (the N-th, the 2N-th, …) — toxiproxy's counted failures."""

    count: Count | None = None
    every: Count | None = None

    @model_validator(mode="after")
    def _count_or_every(self) -> _Counted:
        if self.count is not None and self.every is not None:
            raise ValueError("give count or every, not both")
        if (self.count is not None or self.every is not None) and getattr(self, "ratio", 1.0) != 1.0:
            raise ValueError("count and every take no ratio: they say which requests fail")
        return self


@register
class Refuse(_Counted):
    """Connections to the target refused (RST) at once.

    Counted (``count`` or ``every``), new connections are counted as they come and those it
    names are accepted and reset (ECONNRESET rather than ECONNREFUSED: a connection must be
    accepted to be counted); the others, and connections already open, are served."""

    kind: Literal["refuse"] = "refuse"
    new_connections_only: bool = False
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "ECONNREFUSED / connection reset"


class LatencyPer(StrEnum):
    CONNECTION = "connection"
    REQUEST = "request"


@register
class Latency(Fault):
    """Answers slowed by ``fixed`` plus a uniform jitter in ``[0, jitter]``, on each hop to the target."""

    kind: Literal["latency"] = "latency"
    fixed: Duration
    jitter: Duration = 0.0
    per: LatencyPer = LatencyPer.REQUEST
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "slow answers"


@register
class HttpError(_Counted):
    """A ratio of requests to the target answered with an error status instead of being served —
    or, counted, the first ``count`` of them, or every ``every``-th."""

    kind: Literal["http-error"] = "http-error"
    statuses: tuple[int, ...] = (503,)
    ratio: Ratio = 1.0
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "5xx at a ratio"

    @field_validator("statuses")
    @classmethod
    def _error_statuses(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one status")
        wrong = [s for s in value if not 400 <= s <= 599]
        if wrong:
            raise ValueError(f"statuses must be HTTP errors (400–599), got {wrong}")
        return value


@register
class Throttle(Fault):
    """Requests answered 429 with ``Retry-After`` and the provider's error body, as a rate-limited API does.

    ``body`` defaults to the Mistral API's rate-limit body."""

    kind: Literal["throttle"] = "throttle"
    ratio: Ratio = 1.0
    retry_after: Duration = 1.0
    body: str = (
        '{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}'
    )
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "429 with Retry-After"


@register
class Ttft(Fault):
    """Time to first token stalled: each answer's head (status, headers) goes out at once, its first
    body bytes — a stream's first event — are held ``delay``, and the rest follows in order.

    A client that times out on the head sees nothing wrong; one that waits for the first token
    (or reads a whole JSON answer) waits ``delay`` longer."""

    kind: Literal["ttft"] = "ttft"
    delay: Duration
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "headers at once, first token late"

    @field_validator("delay")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("delay must be above 0")
        return value


class CutHow(StrEnum):
    """How a cut answer ends (see `StreamCut`)."""

    END = "end"
    EOF = "eof"
    RESET = "reset"


@register
class StreamCut(Fault):
    """A streamed answer cut short: each event stream (``text/event-stream``) after
    ``after_events`` events, or each answer's body after ``after_bytes`` bytes (give one).

    ``how``: ``end`` ends the HTTP message there (a chunked body gets its last chunk: the client
    reads a complete response whose answer stops, no ``data: [DONE]``; a Content-Length body
    cannot end early, so its connection is closed there); ``eof`` closes the connection there;
    ``reset`` resets it. Never a status code: the status already went out."""

    kind: Literal["stream-cut"] = "stream-cut"
    after_events: Annotated[int, Field(ge=0)] | None = None
    after_bytes: Annotated[int, Field(ge=0)] | None = None
    how: CutHow = CutHow.END
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "a truncated answer (complete, closed or reset), status 200"

    @model_validator(mode="after")
    def _one_cut_point(self) -> StreamCut:
        if (self.after_events is None) == (self.after_bytes is None):
            raise ValueError("give exactly one of after_events and after_bytes")
        return self


@register
class TokenRate(Fault):
    """A budget of ``tokens_per_minute`` tokens on each hop to the target, refilling continuously
    (full when the fault starts), as a provider's token-per-minute limit.

    Each answer carries ``x-ratelimit-limit-tokens``, ``x-ratelimit-remaining-tokens`` (what is
    left as it starts) and ``x-ratelimit-reset-tokens`` (seconds until full again, ``"12.5s"``),
    and is charged its ``usage.total_tokens`` (Mistral and OpenAI bodies, JSON or the last
    streamed event) — else its body's bytes / 4, an estimate. A request arriving while the budget
    is spent is answered 429 with ``Retry-After`` (until one token is back) and ``body``."""

    kind: Literal["token-rate"] = "token-rate"
    tokens_per_minute: Annotated[int, Field(ge=1)]
    body: str = (
        '{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300"}'
    )
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "x-ratelimit-*-tokens counting down, then 429 with Retry-After"


class DegradeHow(StrEnum):
    """What a degraded answer becomes."""

    CORRUPT = "corrupt"
    TRUNCATE = "truncate"
    SWAP = "swap"
    TOKENS = "tokens"


@register
class Degrade(Fault):
    """A ``ratio`` of the target's 2xx answers replaced by wrong ones, status unchanged:
    availability holds, correctness drops. The answer's text (``content`` and ``answer`` fields,
    as in a chat completion or a RAG answer) becomes, per ``how``: ``corrupt`` — every letter
    rotated by 13 and every digit by 5 (corrupted characters); ``truncate`` — its first half;
    ``swap`` — the answer the hop carried before to another question (the first one is
    truncated); ``tokens`` — a ``tokens`` share of its words replaced by characters of another
    script (improbable tokens picked now and then, the rest of the answer intact). Streamed
    answers (event streams) are degraded event by event with ``corrupt`` and ``tokens``;
    ``truncate`` and ``swap`` leave them untouched.

    ``sticky``: the ratio is drawn once per client connection rather than per answer — every answer
    on a drawn connection is degraded, every answer on the others is right, as a session pinned to
    a broken backend. A client that keeps its connection keeps getting wrong answers."""

    kind: Literal["degrade"] = "degrade"
    ratio: Ratio = 1.0
    how: DegradeHow = DegradeHow.CORRUPT
    tokens: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    """With ``how: tokens``: the share of an answer's words replaced."""
    sticky: bool = False
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = (
        "status 200, wrong answers at a ratio (per answer, or per connection: sticky)"
    )


class SwapAnswers(StrEnum):
    """What a swapped model's answers become (see `ModelSwap`)."""

    SHORTER = "shorter"
    UNCITED = "uncited"
    UNCHANGED = "unchanged"


@register
class ModelSwap(Fault):
    """A region serving a smaller model than the design says, on any OpenAI- or Mistral-style chat
    hop: every ``model`` field of the target's 2xx answers (JSON, or each event of a stream) reads
    ``to``, and a ``ratio`` of the answers is changed as a smaller model's would fail, per
    ``answers``: ``shorter`` — only its first sentence (and the citations right after it) is kept,
    so facts of later sentences are lost; ``uncited`` — its ``[doc:ID]`` citations are removed;
    ``unchanged`` — only the ``model`` fields change. Status stays 200."""

    kind: Literal["model-swap"] = "model-swap"
    to: Annotated[str, Field(min_length=1)]
    answers: SwapAnswers = SwapAnswers.SHORTER
    ratio: Ratio = 1.0
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "answers labelled with a smaller model, shorter or uncited"


@register
class PartialIndex(Fault):
    """A ``ratio`` of the documents missing from the target's index: removed from every search
    answer it gives (a JSON list of results, each naming its document — see docs/faults.md), the
    same documents every time (a stable hash of their id, ``salt`` mixed in). Status stays 200;
    answers that needed a missing document are answered from the others, or not at all."""

    kind: Literal["partial-index"] = "partial-index"
    ratio: Ratio
    salt: str = ""
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.COMPONENT, Scope.LINK})
    client_sees: ClassVar[str] = "search answers without a share of the documents, status 200"


@register
class EmbeddingMismatch(Fault):
    """A region's query embeddings made by another model (``model``) than the one its index was
    built with: the query vectors of the JSON requests to the target (``vector``, ``query_vector``,
    ``embedding``) and the vectors of its embeddings answers (``data[].embedding``) are mapped as
    that model would place them — a fixed signed permutation of their coordinates — so that they no
    longer match the index's. Searches still answer 200, with unrelated documents."""

    kind: Literal["embedding-mismatch"] = "embedding-mismatch"
    model: Annotated[str, Field(min_length=1)] = "other-embed"
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.COMPONENT, Scope.LINK})
    client_sees: ClassVar[str] = "searches answering unrelated documents, status 200"


@register
class StaleIndex(Fault):
    """A store replica's index frozen at the fault's start while writes go on: its searches no longer
    find the documents written since, and find the ones rewritten since as they were; writes are
    still acknowledged and replicated, reads by id stay fresh. On revert the index catches up: at
    once, or ``catch_up`` documents a second, oldest write first (an indexer working off its backlog
    while writes go on)."""

    kind: Literal["stale-index"] = "stale-index"
    catch_up: Annotated[float, Field(gt=0.0)] | None = None
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.REGION, Scope.COMPONENT})
    client_sees: ClassVar[str] = "searches missing what was written since, writes and reads by id fine"


@register
class Bandwidth(Fault):
    """Answers (the bytes from the target to its callers) paced at ``rate`` bytes a second on each
    connection; requests pass. A slow link: big answers take long, small ones barely change."""

    kind: Literal["bandwidth"] = "bandwidth"
    rate: Annotated[int, Field(ge=1)]
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "answers arriving at a slow, steady rate"


@register
class LimitData(Fault):
    """Each connection to the target closed once ``limit`` bytes of answers have gone through it
    (counted from when the fault reached it) — or reset, with ``reset: true``."""

    kind: Literal["limit-data"] = "limit-data"
    limit: Annotated[int, Field(ge=0)]
    reset: bool = False
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "connections closed (or reset) after N bytes"


@register
class Slicer(Fault):
    """Answers (the bytes from the target to its callers) cut into small pieces of
    ``average_size`` ± ``size_variation`` bytes, each sent ``delay`` after the one before
    (toxiproxy's slicer). Clients that assume a message arrives in one read break; others see the
    answer take pieces × delay longer."""

    kind: Literal["slicer"] = "slicer"
    average_size: Annotated[int, Field(ge=1)]
    size_variation: Annotated[int, Field(ge=0)] = 0
    delay: Duration = 0.0
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "answers in small pieces with delays between them"

    @model_validator(mode="after")
    def _variation_below_size(self) -> Slicer:
        if self.size_variation >= self.average_size:
            raise ValueError("size_variation must be below average_size")
        return self


@register
class SlowClose(Fault):
    """The target's close of a connection reaches its caller ``delay`` late (toxiproxy's
    slow_close): the bytes pass at once, the end of stream waits. A client reading an answer to
    its end of stream (no length, no chunking) waits; one reading a framed answer does not."""

    kind: Literal["slow-close"] = "slow-close"
    delay: Duration
    scopes: ClassVar[frozenset[Scope]] = _HOPS
    client_sees: ClassVar[str] = "connections closed late; answers read to their close wait"

    @field_validator("delay")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("delay must be above 0")
        return value


class DnsAnswer(StrEnum):
    """What the name server answers for the target's names."""

    NXDOMAIN = "nxdomain"
    NODATA = "nodata"
    """NOERROR with an empty answer: the DynamoDB endpoint on 2025-10-20."""
    SERVFAIL = "servfail"
    DROP = "drop"
    """No answer at all: lookups time out."""


@register
class Dns(Fault):
    """Lookups of the target's names fail. With ``new_connections_only`` (the default, as on
    2025-10-20) connections already pooled keep working, since they never look the name up again."""

    kind: Literal["dns"] = "dns"
    answer: DnsAnswer = DnsAnswer.NODATA
    new_connections_only: bool = True
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.COMPONENT, Scope.REGION, Scope.DEPENDENCY})
    client_sees: ClassVar[str] = "NXDOMAIN, empty answer, SERVFAIL or no answer"


@register
class Partition(Fault):
    """Two regions cannot reach each other (replication included); clients still reach both."""

    kind: Literal["partition"] = "partition"
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.LINK})
    client_sees: ClassVar[str] = "cross-region calls time out; each region answers alone"


@register
class ControlPlane(Fault):
    """Running things keep running; nothing new starts, scales or restarts in the region.

    The EC2 launch impairment of 2025-10-20 and the API errors of 2021-12-07. A design whose
    failover needs a scale-up (pilot light) or a restart suffers; one that runs at full size does not."""

    kind: Literal["control-plane"] = "control-plane"
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.REGION, Scope.PROVIDER})
    client_sees: ClassVar[str] = "nothing at first; no recovery of what fails meanwhile"
    impairs_serving: ClassVar[bool] = False


@register
class ReplicationPause(Fault):
    """Replication into the target region's stores stops; its replicas fall behind, making RPO visible."""

    kind: Literal["replication-pause"] = "replication-pause"
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.REGION, Scope.LINK})
    client_sees: ClassVar[str] = "stale reads in the region"
    impairs_serving: ClassVar[bool] = False


@register
class DataLoss(Fault):
    """A region's store is wiped (the Strasbourg fire). Irreversible by nature: reverting brings the
    store back empty, and it refills only by replication or rebuild."""

    kind: Literal["data-loss"] = "data-loss"
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.REGION, Scope.COMPONENT})
    client_sees: ClassVar[str] = "documents and acknowledged writes gone"


class IdentityMode(StrEnum):
    ERROR = "error"
    SLOW = "slow"
    TIMEOUT = "timeout"


@register
class Identity(Fault):
    """The token service a region depends on fails (STS on 2025-10-20) — an identity dependency,
    or a component of kind identity (a token service of the user's own). Cached tokens keep
    working until they expire; then calls are rejected until a refresh succeeds."""

    kind: Literal["identity"] = "identity"
    mode: IdentityMode = IdentityMode.ERROR
    statuses: tuple[int, ...] = (500, 503)
    latency: Duration = 0.0
    scopes: ClassVar[frozenset[Scope]] = frozenset({Scope.DEPENDENCY, Scope.REGION, Scope.COMPONENT})
    client_sees: ClassVar[str] = "token refresh fails (5xx, slow)"

    @model_validator(mode="after")
    def _slow_needs_latency(self) -> Identity:
        if self.mode is IdentityMode.SLOW and self.latency <= 0:
            raise ValueError("mode 'slow' needs a 'latency' above 0")
        return self


_FLAPPABLE = tuple(cls for name, cls in FAULT_KINDS.items() if name != "data-loss")

if TYPE_CHECKING:
    InnerFault = Fault
else:
    InnerFault = Annotated[Union[_FLAPPABLE], Field(discriminator="kind")]  # noqa: UP007


@register
class Flap(Fault):
    """Another fault switching on and off: on for ``duty × period``, then off, for as long as the phase.

    ``period`` is incident time and is compressed with the phase, but never below
    ``min_period`` of run time, so that the flapping stays observable (Cloudflare's 5-minute cycle
    on 2025-11-18, load-balancer health checks on 2025-10-20)."""

    kind: Literal["flap"] = "flap"
    fault: InnerFault
    period: Duration
    duty: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    min_period: Duration = 2.0
    scopes: ClassVar[frozenset[Scope]] = frozenset(Scope)
    client_sees: ClassVar[str] = "the inner fault on and off"

    @field_validator("period")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("period must be above 0")
        return value


if TYPE_CHECKING:
    AnyFault = Fault
else:
    AnyFault = Annotated[Union[tuple(FAULT_KINDS.values())], Field(discriminator="kind")]  # noqa: UP007
"""Pydantic field type for any registered kind, chosen by ``kind:``."""
