"""The reference stack's store service: one region's documents, their index and replication.

API (every response carries ``x-bascule-served-by: {"component": "store", "region", "replica"}``):

- ``POST /v1/documents {id?, title?, text, data_class, tags?}`` → ``{id, seq, acknowledged_at,
  replicated}``: an upsert (same id replaces); the id is generated when absent. A class above
  ``--max-class`` is refused with 403 and not stored.
- ``GET /v1/documents/{id}`` → the document, or 404.
- ``POST /v1/search {query | vector, k, max_class}`` → ``{results: [{id, title, text,
  data_class, score}], region}``: the top-k documents by cosine similarity among those not
  above ``max_class``; only positive scores are returned (a document sharing no word with the
  query is not a result). Ties break by id, so every replica ranks the same documents alike.
  Documents tagged ``synthetic`` (bascule's load writes and canaries) are stored, replicated and
  read back like any other, but never searched: test traffic must not change the answers that
  the golden set measures.
- ``POST /v1/replicate {origin, entries: [{seq, doc}]}``: peers' entries, applied idempotently.
- ``GET /v1/replication``: this replica's log position, each peer's progress and lag, the last
  sequence applied from each origin, and ``max_class`` (which peers read before shipping).
- ``POST /v1/admin/wipe`` (the ``data-loss`` fault) and ``GET /v1/admin/stats``.
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (started, corpus seeded).

Documents are embedded with `bascule.stack.embedding` (title and text), rows of a float32
matrix that grows by doubling; a search is one matrix-vector product.

Replication. Each accepted write gets the next sequence number of this replica (its *origin*,
``region/name``) and is appended to a replication log that per-peer shipper tasks send, in
batches, to every ``--peer`` (a full mesh: entries are never forwarded). Conflicts resolve by
last writer wins on ``(written_at, origin, seq)``, so replicas converge whatever the arrival
order; a local write is stamped after the version it replaces, so it is always visible here.
- ``async``: the write is acknowledged at once; an entry is shipped ``--replication-lag``
  seconds after it was accepted. While a peer is unreachable its shipper retries with
  exponential back-off (0.05 s doubling to 1 s), so a partition makes ``pending`` and
  ``lag_seconds`` grow and the peer catches up once it answers again.
- ``sync``: the lag is ignored and a write is acknowledged once every reachable peer applied
  it. A peer counts as unreachable when an attempt that ended after the write was appended
  failed (refused, reset, timed out, non-2xx); so a dead peer does not block writes (they are
  acknowledged with ``replicated: false``), but a peer that accepts connections and does not
  answer (gray failure) does: after ``--sync-timeout`` the write gets 503 ``replication
  timeout``. That write is not acknowledged, yet it stays applied here and in the log and is
  still shipped, as a database whose commit outcome is unknown: the client must treat it as
  failed, and bascule's RPO counts only acknowledged writes.
- ``none``: nothing is shipped and no log is kept; entries from peers are still applied.

``replicated`` in a write's answer is true when every peer has applied the write (or may not
hold its class) and at least one peer holds a copy.

Data classes. ``--max-class`` is the most sensitive class this region may hold: writes,
replicated entries and seeded documents above it are refused and never stored. Shippers read
each peer's ``max_class`` from its ``/v1/replication`` before the first batch and after every
failure, and never send a peer an entry above it: such entries are counted as ``withheld``.

Bounds. The log keeps only entries some peer has not received, at most ``--log-max-entries``
entries and ``--log-max-bytes`` bytes of document content (default 10 000 and 64 MiB); past
either, the oldest entries are dropped and every peer that had not received them counts them
in ``dropped`` (they are lost for that peer: the RPO a too-long partition costs). A wipe drops
the log too, counted the same way. A batch holds at most 256 entries or 2 MiB; a document's
text at most 200 000 characters; request bodies at most 4 MiB (32 MiB for ``/v1/replicate``).

The sequence counter survives a wipe, so that peers' idempotence filters do not swallow the
writes that follow; a wiped replica is not refilled from its peers, only new writes reach it.

Run it with ``python -m bascule.stack.store --port 0 --region fr-par --peer URL``; once it
accepts connections it prints ``listening on http://HOST:PORT`` on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import math
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Final

import httpx
import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bascule.stack.corpus import DataClass, Document, load_documents
from bascule.stack.embedding import DIMENSIONS, embed
from bascule.stack.serve import (
    SERVED_BY_HEADER,
    BodyTooLargeError,
    FlagParser,
    ServedByMiddleware,
    base_url,
    non_empty,
    non_negative_float,
    port,
    positive_float,
    positive_int,
    read_body,
    serve,
    served_by_value,
)
from bascule.stack.wiring import read_wiring

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "COMPONENT",
    "ENV_PREFIX",
    "SYNTHETIC_TAG",
    "ClassNotAllowedError",
    "DocumentIndex",
    "LogEntry",
    "PeerState",
    "ReplicationLog",
    "ReplicationMode",
    "Store",
    "StoreConfig",
    "StoredDocument",
    "create_app",
    "main",
    "parse_args",
]

COMPONENT = "store"
ENV_PREFIX = "BASCULE_STORE_"
SEED_ORIGIN = "seed"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_TEXT_CHARS = 200_000
MAX_K = 100
BATCH_MAX_ENTRIES = 256
BATCH_MAX_BYTES = 2 * 1024 * 1024
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
_BODY_LIMIT = 4 * 1024 * 1024
_REPLICATE_BODY_LIMIT = 32 * 1024 * 1024
_INITIAL_ROWS = 64

SYNTHETIC_TAG: Final = "synthetic"
"""Tag of documents written by test traffic: kept out of search results."""
_UNSEARCHABLE: Final = 127
"""The rank of a synthetic document's row: above every data class's, so no search sees it."""


class ReplicationMode(enum.StrEnum):
    """How writes reach peer stores."""

    ASYNC = "async"
    SYNC = "sync"
    NONE = "none"


@dataclass(frozen=True)
class StoreConfig:
    """How one store replica is served, what it may hold and how it replicates."""

    host: str = "127.0.0.1"
    port: int = 8000
    region: str = "local"
    name: str = "store"
    """Replica name; ``region/name`` must be unique among peers (it is the origin of writes)."""
    peers: tuple[str, ...] = ()
    """Base URLs of the peer stores writes are shipped to."""
    replication: ReplicationMode = ReplicationMode.ASYNC
    replication_lag: float = 0.0
    """Async mode: seconds a write waits before it is shipped."""
    sync_timeout: float = 2.0
    """Sync mode: seconds a write waits for reachable peers before a 503."""
    peer_timeout: float = 5.0
    """Seconds one request to a peer may take before the attempt counts as failed."""
    seed_corpus: bool = False
    max_class: DataClass = DataClass.CONFIDENTIAL
    log_max_entries: int = 10_000
    log_max_bytes: int = 64 * 1024 * 1024

    @property
    def origin(self) -> str:
        """This replica's name as the origin of the writes it accepts."""
        return f"{self.region}/{self.name}"


# --- configuration ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> StoreConfig:
    """The configuration from command-line flags, falling back to ``BASCULE_STORE_*`` variables.

    Invalid values exit with argparse's usage message (status 2), as any CLI does.
    """
    defaults = StoreConfig()
    flags = FlagParser(
        prog="python -m bascule.stack.store",
        description="Reference store service: documents, search index and replication.",
        env_prefix=ENV_PREFIX,
        environ=os.environ if environ is None else environ,
    )
    flags.option("--host", non_empty, defaults.host, "address to bind")
    flags.option("--port", port, defaults.port, "port to bind; 0 picks a free one")
    flags.option("--region", non_empty, defaults.region, "region this replica runs in")
    flags.option("--name", non_empty, defaults.name, "replica name, unique in its region")
    flags.repeated("--peer", base_url, "base URL of a peer store to replicate to")
    flags.choice(
        "--replication",
        [mode.value for mode in ReplicationMode],
        defaults.replication.value,
        "replication mode",
    )
    flags.option(
        "--replication-lag",
        non_negative_float,
        defaults.replication_lag,
        "async mode: seconds before a write is shipped",
    )
    flags.option(
        "--sync-timeout",
        positive_float,
        defaults.sync_timeout,
        "sync mode: seconds to wait for peers before answering 503",
    )
    flags.option("--peer-timeout", positive_float, defaults.peer_timeout, "seconds per request to a peer")
    flags.switch("--seed-corpus", "load the packaged knowledge base at start")
    flags.choice(
        "--max-class",
        [data_class.value for data_class in DataClass],
        defaults.max_class.value,
        "most sensitive data class this region may hold",
    )
    flags.option(
        "--log-max-entries",
        positive_int,
        defaults.log_max_entries,
        "replication log bound in entries",
    )
    flags.option("--log-max-bytes", positive_int, defaults.log_max_bytes, "replication log bound in bytes")
    args = flags.parse(argv)
    return StoreConfig(
        host=args.host,
        port=args.port,
        region=args.region,
        name=args.name,
        peers=tuple(dict.fromkeys(args.peer)),
        replication=ReplicationMode(args.replication),
        replication_lag=args.replication_lag,
        sync_timeout=args.sync_timeout,
        peer_timeout=args.peer_timeout,
        seed_corpus=args.seed_corpus,
        max_class=DataClass(args.max_class),
        log_max_entries=args.log_max_entries,
        log_max_bytes=args.log_max_bytes,
    )


# --- documents and the index (no I/O) --------------------------------------------------------


@dataclass(frozen=True)
class StoredDocument:
    """A document as held by a replica, with the version that orders concurrent writes."""

    id: str
    title: str
    text: str
    data_class: DataClass
    tags: tuple[str, ...]
    origin: str
    """The replica that accepted the write (``region/name``), or ``seed`` for the corpus."""
    seq: int
    """The origin's sequence number of the write."""
    written_at: float
    """Wall-clock seconds (Unix time) when the origin accepted the write; 0 for the corpus."""

    @property
    def version(self) -> tuple[float, str, int]:
        """Last writer wins: the higher version replaces the lower one on every replica."""
        return (self.written_at, self.origin, self.seq)

    @property
    def size(self) -> int:
        """Bytes of content, the unit of the replication log's memory bound."""
        tags = sum(len(tag.encode()) for tag in self.tags)
        return len(self.text.encode()) + len(self.title.encode()) + len(self.id) + tags

    def to_json(self) -> dict[str, Any]:
        """The document as ``GET /v1/documents/{id}`` returns it."""
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "data_class": self.data_class.value,
            "tags": list(self.tags),
            "origin": self.origin,
            "seq": self.seq,
            "written_at": self.written_at,
        }

    def to_wire(self) -> dict[str, Any]:
        """The document as a replication entry carries it (origin and seq travel beside it)."""
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "data_class": self.data_class.value,
            "tags": list(self.tags),
            "written_at": self.written_at,
        }


class DocumentIndex:
    """Documents by id and their embeddings as rows of a matrix searched by dot product."""

    def __init__(self) -> None:
        self._vectors: npt.NDArray[np.float32]
        self._ranks: npt.NDArray[np.int8]
        self._documents: list[StoredDocument]
        self._rows: dict[str, int]
        self._reset()

    def _reset(self) -> None:
        self._vectors = np.zeros((_INITIAL_ROWS, DIMENSIONS), dtype=np.float32)
        self._ranks = np.zeros(_INITIAL_ROWS, dtype=np.int8)
        self._documents = []
        self._rows = {}

    def __len__(self) -> int:
        return len(self._documents)

    @property
    def capacity(self) -> int:
        """Rows allocated; doubles when full, so inserting is amortised O(DIMENSIONS)."""
        return len(self._vectors)

    def get(self, document_id: str) -> StoredDocument | None:
        row = self._rows.get(document_id)
        return None if row is None else self._documents[row]

    def upsert(self, document: StoredDocument) -> bool:
        """Store `document` unless a newer version of it is held; True when stored."""
        row = self._rows.get(document.id)
        if row is not None and self._documents[row].version >= document.version:
            return False
        vector = embed(f"{document.title}\n{document.text}")
        if row is None:
            row = len(self._documents)
            if row == len(self._vectors):
                self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
                self._ranks = np.concatenate([self._ranks, np.zeros_like(self._ranks)])
            self._documents.append(document)
            self._rows[document.id] = row
        else:
            self._documents[row] = document
        self._vectors[row] = vector
        self._ranks[row] = _UNSEARCHABLE if SYNTHETIC_TAG in document.tags else document.data_class.rank
        return True

    def search(
        self, vector: npt.NDArray[np.float32], k: int, max_class: DataClass
    ) -> list[tuple[StoredDocument, float]]:
        """The `k` best documents not above `max_class` with a positive cosine to `vector`."""
        count = len(self._documents)
        norm = float(np.linalg.norm(vector))
        if count == 0 or k < 1 or not math.isfinite(norm) or norm == 0.0:
            return []
        scores = self._vectors[:count] @ (vector / norm).astype(np.float32)
        eligible = np.flatnonzero((self._ranks[:count] <= max_class.rank) & (scores > 0.0))
        if len(eligible) > k:
            # Keep every row tied with the k-th score, so the id tie-break below decides.
            kth = np.partition(scores[eligible], len(eligible) - k)[len(eligible) - k]
            eligible = eligible[scores[eligible] >= kth]
        rows = sorted(
            (int(row) for row in eligible),
            key=lambda row: (-float(scores[row]), self._documents[row].id),
        )
        return [(self._documents[row], float(scores[row])) for row in rows[:k]]

    def counts_by_class(self) -> dict[str, int]:
        counts = {data_class.value: 0 for data_class in DataClass}
        for document in self._documents:
            counts[document.data_class.value] += 1
        return counts

    def clear(self) -> int:
        """Drop every document; the number dropped."""
        dropped = len(self._documents)
        self._reset()
        return dropped


# --- the replication log (no I/O) ------------------------------------------------------------


@dataclass(frozen=True)
class LogEntry:
    """A local write waiting to reach peers."""

    seq: int
    document: StoredDocument
    accepted: float
    """Monotonic seconds when the write was accepted (the start of its replication lag)."""


class ReplicationLog:
    """Local writes not yet received by every peer, bounded in entries and bytes.

    Sequence numbers in the log are consecutive (appends take the next one, trimming and
    eviction remove the oldest), so an entry's position is its distance to the first seq.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: deque[LogEntry] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def append(self, entry: LogEntry) -> list[LogEntry]:
        """Add `entry`; the oldest entries evicted to stay within bounds (never `entry`)."""
        if self._entries and entry.seq != self._entries[-1].seq + 1:
            raise ValueError(f"log entry {entry.seq} does not follow {self._entries[-1].seq}")
        self._entries.append(entry)
        self._bytes += entry.document.size
        evicted = []
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            evicted.append(self._pop())
        return evicted

    def _pop(self) -> LogEntry:
        entry = self._entries.popleft()
        self._bytes -= entry.document.size
        return entry

    def _position(self, seq: int) -> int:
        if not self._entries:
            return 0
        return min(len(self._entries), max(0, seq + 1 - self._entries[0].seq))

    def first_after(self, seq: int) -> LogEntry | None:
        """The oldest entry with a sequence number above `seq`."""
        position = self._position(seq)
        return self._entries[position] if position < len(self._entries) else None

    def count_after(self, seq: int) -> int:
        return len(self._entries) - self._position(seq)

    def batch_after(self, seq: int, accepted_by: float, max_entries: int, max_bytes: int) -> list[LogEntry]:
        """Entries after `seq` accepted by `accepted_by`, within the bounds (at least one)."""
        batch: list[LogEntry] = []
        size = 0
        for entry in itertools.islice(self._entries, self._position(seq), None):
            if entry.accepted > accepted_by or len(batch) >= max_entries:
                break
            if batch and size + entry.document.size > max_bytes:
                break
            batch.append(entry)
            size += entry.document.size
        return batch

    def trim_through(self, seq: int) -> None:
        """Forget the entries every peer has received."""
        while self._entries and self._entries[0].seq <= seq:
            self._pop()

    def clear(self) -> list[LogEntry]:
        dropped = list(self._entries)
        self._entries.clear()
        self._bytes = 0
        return dropped


# --- one replica's state (no I/O) ------------------------------------------------------------


@dataclass
class PeerState:
    """What this replica knows of one peer store."""

    url: str
    shipped_seq: int = 0
    """Every local entry up to this seq has been applied by the peer or withheld from it."""
    reachable: bool = True
    """False since the last attempt failed; optimistic until the first attempt."""
    attempts: int = 0
    """Attempts to reach the peer that have ended, successful or not."""
    max_class: DataClass | None = None
    """The peer's announced max class; unknown until read, forgotten after a failure."""
    last_error: str | None = None
    last_success_at: float | None = None
    dropped: int = 0
    """Entries the peer will never receive: evicted from the bounded log or wiped."""
    withheld: int = 0
    """Entries not sent because their class is above the peer's max class."""
    shipped_entries: int = 0

    def accepts(self, data_class: DataClass) -> bool:
        return self.max_class is not None and data_class.rank <= self.max_class.rank


class ClassNotAllowedError(Exception):
    """A document's data class is above what this region may hold."""

    def __init__(self, data_class: DataClass, max_class: DataClass) -> None:
        super().__init__(
            f"this region may hold {max_class.value} data at most; "
            f"a {data_class.value} document must not be stored here"
        )
        self.data_class = data_class
        self.max_class = max_class


class ReplicationLoopError(Exception):
    """A replica received its own entries: a peer URL points back at itself."""


@dataclass
class _Counters:
    writes: int = 0
    searches: int = 0
    replicated_in: int = 0
    refused: int = 0
    wipes: int = 0


@dataclass
class Store:
    """One replica's documents, index, replication log and knowledge of its peers.

    Pure state: the clocks are injected and the HTTP side lives in `create_app`.
    """

    config: StoreConfig
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    index: DocumentIndex = field(default_factory=DocumentIndex)
    last_seq: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    counters: _Counters = field(default_factory=_Counters)
    log: ReplicationLog = field(init=False)
    peers: dict[str, PeerState] = field(init=False)

    def __post_init__(self) -> None:
        self.log = ReplicationLog(self.config.log_max_entries, self.config.log_max_bytes)
        shipping = self.config.replication is not ReplicationMode.NONE
        self.peers = {url: PeerState(url) for url in self.config.peers} if shipping else {}

    @property
    def origin(self) -> str:
        return self.config.origin

    def _check_class(self, data_class: DataClass) -> None:
        if data_class.rank > self.config.max_class.rank:
            raise ClassNotAllowedError(data_class, self.config.max_class)

    def seed(self, documents: Sequence[Document]) -> int:
        """Load `documents` as seq 1..N of origin ``seed``; those above max class are skipped.

        Every replica seeds the same documents with the same sequence numbers, so they are
        never shipped; the number stored is returned.
        """
        stored = 0
        for seq, document in enumerate(documents, start=1):
            if document.data_class.rank > self.config.max_class.rank:
                continue
            stored += self.index.upsert(
                StoredDocument(
                    id=document.id,
                    title=document.title,
                    text=document.text,
                    data_class=document.data_class,
                    tags=tuple(document.tags),
                    origin=SEED_ORIGIN,
                    seq=seq,
                    written_at=0.0,
                )
            )
        self.applied[SEED_ORIGIN] = max(self.applied.get(SEED_ORIGIN, 0), len(documents))
        return stored

    def write(
        self,
        document_id: str,
        title: str,
        text: str,
        data_class: DataClass,
        tags: Sequence[str],
    ) -> StoredDocument:
        """Accept a local write: store it, and log it for the peers when there are any."""
        self._check_class(data_class)
        written_at = self.wall_clock()
        existing = self.index.get(document_id)
        if existing is not None and existing.written_at >= written_at:
            written_at = math.nextafter(existing.written_at, math.inf)
        self.last_seq += 1
        document = StoredDocument(
            id=document_id,
            title=title,
            text=text,
            data_class=data_class,
            tags=tuple(tags),
            origin=self.origin,
            seq=self.last_seq,
            written_at=written_at,
        )
        self.index.upsert(document)
        self.counters.writes += 1
        if self.peers:
            entry = LogEntry(seq=document.seq, document=document, accepted=self.clock())
            self._lose(self.log.append(entry))
        return document

    def _lose(self, entries: Sequence[LogEntry]) -> None:
        for entry in entries:
            for peer in self.peers.values():
                if peer.shipped_seq < entry.seq:
                    peer.dropped += 1

    def apply(self, origin: str, entries: Sequence[tuple[int, StoredDocument]]) -> dict[str, Any]:
        """Apply a peer's entries in order, skipping those already applied from `origin`."""
        if origin == self.origin:
            raise ReplicationLoopError(f"received entries from {origin}, which is this replica")
        applied = self.applied.get(origin, 0)
        stored = duplicates = 0
        refused: list[int] = []
        for seq, document in entries:
            if seq <= applied:
                duplicates += 1
                continue
            if document.data_class.rank > self.config.max_class.rank:
                refused.append(seq)
            elif self.index.upsert(document):
                stored += 1
            applied = seq
        self.applied[origin] = applied
        self.counters.replicated_in += stored
        self.counters.refused += len(refused)
        return {
            "applied": applied,
            "stored": stored,
            "duplicates": duplicates,
            "refused": refused,
            "max_class": self.config.max_class.value,
            "region": self.config.region,
        }

    def search(
        self, vector: npt.NDArray[np.float32], k: int, max_class: DataClass
    ) -> list[tuple[StoredDocument, float]]:
        self.counters.searches += 1
        return self.index.search(vector, k, max_class)

    def wipe(self) -> dict[str, int]:
        """Lose every document, the log and the applied positions (the data-loss fault)."""
        documents = self.index.clear()
        lost = self.log.clear()
        self._lose(lost)
        self.applied.clear()
        self.counters.wipes += 1
        return {"documents": documents, "log_entries": len(lost)}

    # --- replication bookkeeping, called by the shippers ---

    def peer_shipped(self, peer: PeerState, batch: Sequence[LogEntry], sent: int) -> None:
        peer.shipped_seq = max(peer.shipped_seq, batch[-1].seq)
        peer.shipped_entries += sent
        peer.withheld += len(batch) - sent
        self.peer_answered(peer)
        self.log.trim_through(min(state.shipped_seq for state in self.peers.values()))

    def peer_answered(self, peer: PeerState) -> None:
        peer.reachable = True
        peer.last_error = None
        peer.last_success_at = self.wall_clock()

    def peer_failed(self, peer: PeerState, error: str) -> None:
        peer.reachable = False
        peer.last_error = error
        # A peer may come back with another configuration: read its max class again.
        peer.max_class = None

    def settled(self, seq: int, attempts: Mapping[str, int]) -> bool:
        """Whether every peer applied `seq`, or failed an attempt ended after `attempts`."""
        return all(
            peer.shipped_seq >= seq or (not peer.reachable and peer.attempts > attempts[url])
            for url, peer in self.peers.items()
        )

    def replicated(self, document: StoredDocument) -> bool:
        """Every peer has the write or may not hold it, and at least one holds a copy."""
        peers = self.peers.values()
        done = all(peer.shipped_seq >= document.seq for peer in peers)
        return done and any(peer.accepts(document.data_class) for peer in peers)

    def status(self) -> dict[str, Any]:
        now = self.clock()
        peers = {}
        for url, peer in self.peers.items():
            oldest = self.log.first_after(peer.shipped_seq)
            peers[url] = {
                "last_shipped_seq": peer.shipped_seq,
                "pending": self.log.count_after(peer.shipped_seq),
                "lag_seconds": 0.0 if oldest is None else max(0.0, now - oldest.accepted),
                "last_error": peer.last_error,
                "reachable": peer.reachable,
                "max_class": None if peer.max_class is None else peer.max_class.value,
                "last_success_at": peer.last_success_at,
                "shipped": peer.shipped_entries,
                "withheld": peer.withheld,
                "dropped": peer.dropped,
            }
        return {
            "region": self.config.region,
            "replica": self.config.name,
            "origin": self.origin,
            "mode": self.config.replication.value,
            "last_seq": self.last_seq,
            "peers": peers,
            "applied": dict(self.applied),
            "max_class": self.config.max_class.value,
            "log": {
                "entries": len(self.log),
                "bytes": self.log.bytes,
                "max_entries": self.log.max_entries,
                "max_bytes": self.log.max_bytes,
            },
        }

    def stats(self) -> dict[str, Any]:
        return {
            "region": self.config.region,
            "replica": self.config.name,
            "documents": len(self.index),
            "by_class": self.index.counts_by_class(),
            "index_capacity": self.index.capacity,
            "last_seq": self.last_seq,
            "log_entries": len(self.log),
            "log_bytes": self.log.bytes,
            "writes": self.counters.writes,
            "searches": self.counters.searches,
            "replicated_in": self.counters.replicated_in,
            "refused": self.counters.refused,
            "wipes": self.counters.wipes,
        }


# --- shipping to peers (the I/O side of replication) -----------------------------------------


class _ShipError(Exception):
    pass


class _Replicator:
    """One shipper task per peer, and the wait of sync writes for their progress."""

    def __init__(self, store: Store, client: httpx.AsyncClient) -> None:
        self._store = store
        self._client = client
        config = store.config
        self._sync = config.replication is ReplicationMode.SYNC
        self._lag = 0.0 if self._sync else config.replication_lag
        self._wakeups = {url: asyncio.Event() for url in store.peers}
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for peer in self._store.peers.values():
            self._tasks.append(asyncio.create_task(self._ship_forever(peer)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def written(self) -> None:
        """Wake the shippers: the log has a new entry."""
        for event in self._wakeups.values():
            event.set()

    def _broadcast(self) -> None:
        # A fresh event per change wakes every waiter once without a lock.
        self._progress.set()
        self._progress = asyncio.Event()

    def attempts(self) -> dict[str, int]:
        return {url: peer.attempts for url, peer in self._store.peers.items()}

    async def wait_settled(self, seq: int, attempts: Mapping[str, int], timeout: float) -> bool:
        """Wait until `Store.settled`; False when `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                while not self._store.settled(seq, attempts):
                    await self._progress.wait()
        except TimeoutError:
            return False
        return True

    async def _ship_forever(self, peer: PeerState) -> None:
        backoff = BACKOFF_MIN
        wakeup = self._wakeups[peer.url]
        while True:
            wakeup.clear()
            entry = self._store.log.first_after(peer.shipped_seq)
            if entry is None:
                await wakeup.wait()
                continue
            delay = entry.accepted + self._lag - self._store.clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            try:
                await self._ship_batch(peer)
            except Exception as exc:
                # Any failure, even a bug, must show in the status and be retried: a dead
                # shipper task would stop replication silently.
                error = str(exc) if isinstance(exc, _ShipError) else f"internal: {exc!r}"
                peer.attempts += 1
                self._store.peer_failed(peer, error)
                self._broadcast()
                if self._sync:
                    # A sync write is waiting to learn whether the peer is back: try now.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wakeup.wait(), backoff)
                else:
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            else:
                peer.attempts += 1
                self._broadcast()
                backoff = BACKOFF_MIN

    async def _ship_batch(self, peer: PeerState) -> None:
        if peer.max_class is None:
            status = await self._call(peer, "GET", "/v1/replication", None)
            peer.max_class = _announced_class(status)
        batch = self._store.log.batch_after(
            peer.shipped_seq,
            accepted_by=self._store.clock() - self._lag,
            max_entries=BATCH_MAX_ENTRIES,
            max_bytes=BATCH_MAX_BYTES,
        )
        if not batch:
            return
        allowed = [entry for entry in batch if peer.accepts(entry.document.data_class)]
        if allowed:
            body = {
                "origin": self._store.origin,
                "entries": [{"seq": entry.seq, "doc": entry.document.to_wire()} for entry in allowed],
            }
            reply = await self._call(peer, "POST", "/v1/replicate", body)
            peer.max_class = _announced_class(reply)
        self._store.peer_shipped(peer, batch, len(allowed))

    async def _call(
        self, peer: PeerState, method: str, path: str, body: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._store.config.peer_timeout):
                response = await self._client.request(method, peer.url + path, json=body)
                content = response.content
        except TimeoutError:
            raise _ShipError(f"{method} {path}: no answer within timeout") from None
        except httpx.HTTPError as exc:
            raise _ShipError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            excerpt = content[:200].decode("utf-8", errors="replace")
            raise _ShipError(f"{method} {path}: HTTP {response.status_code}: {excerpt}")
        try:
            reply = response.json()
        except ValueError as exc:
            raise _ShipError(f"{method} {path}: answer is not JSON") from exc
        if not isinstance(reply, dict):
            raise _ShipError(f"{method} {path}: answer is not a JSON object")
        return reply


def _announced_class(reply: Mapping[str, Any]) -> DataClass:
    try:
        return DataClass(reply["max_class"])
    except (KeyError, ValueError):
        raise _ShipError(f"peer announced no valid max_class: {reply.get('max_class')!r}") from None


# --- request bodies --------------------------------------------------------------------------


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


_Id = Annotated[str, Field(pattern=ID_PATTERN)]
_Tag = Annotated[str, Field(min_length=1, max_length=100)]
_Title = Annotated[str, Field(max_length=1000)]
_Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_not_blank)]


class _DocumentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: _Id | None = None
    title: _Title | None = None
    text: _Text
    data_class: DataClass
    tags: Annotated[list[_Tag], Field(max_length=64)] = []


class _WireDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: _Id
    title: _Title
    text: _Text
    data_class: DataClass
    tags: Annotated[list[_Tag], Field(max_length=64)]
    written_at: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class _EntryIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: Annotated[int, Field(ge=1)]
    doc: _WireDocument


class _ReplicateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    origin: Annotated[str, Field(min_length=1, max_length=300)]
    entries: Annotated[list[_EntryIn], Field(max_length=10 * BATCH_MAX_ENTRIES)]


class _SearchIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: Annotated[str, Field(max_length=10_000)] | None = None
    vector: (
        Annotated[
            list[Annotated[float, Field(allow_inf_nan=False)]],
            Field(min_length=DIMENSIONS, max_length=DIMENSIONS),
        ]
        | None
    ) = None
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 5
    max_class: DataClass

    @model_validator(mode="after")
    def _query_or_vector(self) -> _SearchIn:
        if (self.query is None) == (self.vector is None):
            raise ValueError("give exactly one of query and vector")
        return self


# --- responses -------------------------------------------------------------------------------


def _error(status: int, error: str, reason: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, **extra}, status_code=status)


def _validation_error(exc: ValidationError) -> JSONResponse:
    # Inputs are left out: they can be whole documents.
    details = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False)
    ]
    return JSONResponse(
        {"error": "invalid request", "reason": "the body does not match", "detail": details},
        status_code=422,
    )


def _too_large(exc: BodyTooLargeError) -> JSONResponse:
    return _error(413, "body too large", str(exc))


# --- the app ---------------------------------------------------------------------------------


def _default_client() -> httpx.AsyncClient:
    # trust_env=False: proxy variables of the host must not reroute traffic between stores.
    return httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False)


@dataclass
class _Runtime:
    replicator: _Replicator | None = None
    ready: bool = False


def create_app(
    config: StoreConfig,
    *,
    client_factory: Callable[[], httpx.AsyncClient] = _default_client,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """A new store ASGI app for `config`; apps share no state, so tests can run several.

    `client_factory` makes the client used to reach peers (called at startup; the app closes
    it at shutdown), so the integrator can inject one that resolves names through the stack's
    DNS. `middleware` is added inside the ``x-bascule-served-by`` header (authentication, …).
    """
    state = Store(config)
    runtime = _Runtime()

    def replicator() -> _Replicator:
        if runtime.replicator is None:
            raise HTTPException(503, "the store is not started")
        return runtime.replicator

    async def write_document(request: Request) -> Response:
        try:
            body = _DocumentIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except BodyTooLargeError as exc:
            return _too_large(exc)
        except ValidationError as exc:
            return _validation_error(exc)
        shipper = replicator()
        document_id = body.id or uuid.uuid4().hex
        try:
            document = state.write(
                document_id,
                title=document_id if body.title is None else body.title,
                text=body.text,
                data_class=body.data_class,
                tags=body.tags,
            )
        except ClassNotAllowedError as exc:
            return _error(
                403,
                "data class not allowed",
                str(exc),
                data_class=exc.data_class.value,
                max_class=exc.max_class.value,
            )
        if state.peers:
            attempts = shipper.attempts()
            shipper.written()
            if config.replication is ReplicationMode.SYNC and not await shipper.wait_settled(
                document.seq, attempts, config.sync_timeout
            ):
                waiting = [url for url, peer in state.peers.items() if peer.shipped_seq < document.seq]
                return _error(
                    503,
                    "replication timeout",
                    f"peers {waiting} did not apply seq {document.seq} within "
                    f"{config.sync_timeout} s; the write is not acknowledged (it stays applied "
                    "here and will still be shipped)",
                    id=document.id,
                    seq=document.seq,
                )
        return JSONResponse(
            {
                "id": document.id,
                "seq": document.seq,
                "acknowledged_at": state.wall_clock(),
                "replicated": state.replicated(document),
            }
        )

    async def read_document(request: Request) -> Response:
        document_id = str(request.path_params["doc_id"])
        document = state.index.get(document_id)
        if document is None:
            return _error(404, "not found", f"no document {document_id!r} here", id=document_id)
        return JSONResponse(document.to_json())

    async def search(request: Request) -> Response:
        try:
            body = _SearchIn.model_validate_json(await read_body(request, _BODY_LIMIT))
        except BodyTooLargeError as exc:
            return _too_large(exc)
        except ValidationError as exc:
            return _validation_error(exc)
        if body.vector is not None:
            vector = np.asarray(body.vector, dtype=np.float32)
        else:
            vector = embed(body.query or "")
        results = [
            {
                "id": document.id,
                "title": document.title,
                "text": document.text,
                "data_class": document.data_class.value,
                "score": round(score, 6),
            }
            for document, score in state.search(vector, body.k, body.max_class)
        ]
        return JSONResponse({"results": results, "region": config.region})

    async def replicate(request: Request) -> Response:
        try:
            raw = await read_body(request, _REPLICATE_BODY_LIMIT)
            body = _ReplicateIn.model_validate_json(raw)
        except BodyTooLargeError as exc:
            return _too_large(exc)
        except ValidationError as exc:
            return _validation_error(exc)
        entries = [
            (
                entry.seq,
                StoredDocument(
                    id=entry.doc.id,
                    title=entry.doc.title,
                    text=entry.doc.text,
                    data_class=entry.doc.data_class,
                    tags=tuple(entry.doc.tags),
                    origin=body.origin,
                    seq=entry.seq,
                    written_at=entry.doc.written_at,
                ),
            )
            for entry in body.entries
        ]
        try:
            return JSONResponse(state.apply(body.origin, entries))
        except ReplicationLoopError as exc:
            return _error(409, "replication loop", str(exc))

    async def replication_status(request: Request) -> Response:
        return JSONResponse(state.status())

    async def wipe(request: Request) -> Response:
        return JSONResponse({"wiped": state.wipe(), "region": config.region})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not runtime.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ready", "documents": len(state.index)})

    served_by = served_by_value(COMPONENT, config.region, config.name)

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return _error(exc.status_code, str(exc.detail), str(exc.detail))
        # Unhandled errors are answered outside every middleware: name the hop here.
        response = _error(500, "internal error", f"{type(exc).__name__}: {exc}")
        response.headers[SERVED_BY_HEADER] = served_by
        return response

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if config.seed_corpus:
            state.seed(load_documents())
        client = client_factory()
        shipper = _Replicator(state, client)
        runtime.replicator = shipper
        shipper.start()
        runtime.ready = True
        try:
            yield
        finally:
            runtime.ready = False
            await shipper.stop()
            await client.aclose()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        Exception: http_error,
    }
    return Starlette(
        routes=[
            Route("/v1/documents", write_document, methods=["POST"]),
            Route("/v1/documents/{doc_id}", read_document, methods=["GET"]),
            Route("/v1/search", search, methods=["POST"]),
            Route("/v1/replicate", replicate, methods=["POST"]),
            Route("/v1/replication", replication_status, methods=["GET"]),
            Route("/v1/admin/wipe", wipe, methods=["POST"]),
            Route("/v1/admin/stats", stats, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        middleware=[
            Middleware(ServedByMiddleware, component=COMPONENT, region=config.region, replica=config.name),
            *middleware,
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )


# --- process entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a store until SIGINT/SIGTERM, configured from `argv` (default: ``sys.argv``)."""
    rest, wiring = read_wiring(sys.argv[1:] if argv is None else argv)
    config = parse_args(rest)
    app = create_app(
        config,
        client_factory=wiring.client_factory(config.region),
        middleware=wiring.incoming(config.region),
    )
    serve(app, config.host, config.port)


if __name__ == "__main__":
    main()
