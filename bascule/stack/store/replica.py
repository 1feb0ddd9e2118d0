"""One store replica's state: documents, index, replication log and its knowledge of peers.

No I/O: the clocks are injected; the HTTP side lives in `bascule.stack.store.app` and shipping
in `bascule.stack.store.replicator`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bascule.stack.corpus import DataClass, Document
from bascule.stack.store.config import ReplicationMode, StoreConfig
from bascule.stack.store.index import DocumentIndex, StoredDocument
from bascule.stack.store.log import LogEntry, PeerState, ReplicationLog

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["ClassNotAllowedError", "ReplicationLoopError", "Store"]

SEED_ORIGIN = "seed"


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
class _FrozenIndex:
    """The index as it was when the ``stale-index`` fault froze it, and what it has missed since."""

    searched: DocumentIndex
    frozen_at: float
    """Wall-clock seconds when it froze."""
    behind: dict[str, float] = field(default_factory=dict)
    """Documents written (or rewritten) since, by id: the monotonic instant of the first such write."""
    catch_up: float | None = None
    """Once unfrozen with a rate: documents a second taken into the copy, oldest first."""
    credit: float = 0.0
    """The fraction of a document the rate has allowed and no step has taken in yet."""


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
    frozen: _FrozenIndex | None = None
    """Set while the index is frozen (`freeze_index`): searches read this copy, writes go on."""
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
        self._behind(document.id)
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
                self._behind(document.id)
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
        searched = self.index if self.frozen is None else self.frozen.searched
        return searched.search(vector, k, max_class)

    # --- the stale-index fault: searches from a frozen copy while writes go on ---

    def _behind(self, document_id: str) -> None:
        if self.frozen is not None:
            self.frozen.behind.setdefault(document_id, self.clock())

    def freeze_index(self) -> dict[str, Any]:
        """Searches answer from the index as it is now until `thaw_index`; writes, replication and
        reads by id go on against the live documents. Freezing a frozen index keeps its copy (and
        stops it catching up)."""
        if self.frozen is None:
            self.frozen = _FrozenIndex(self.index.snapshot(), self.wall_clock())
        self.frozen.catch_up = None
        self.frozen.credit = 0.0
        return self.index_status()

    def thaw_index(self, catch_up: float | None = None) -> dict[str, Any]:
        """Let the index catch up. Without `catch_up`, at once: the live index, kept up to date all
        along, is swapped in (``caught_up`` is the number of documents the frozen copy had missed).
        With it, the copy takes in `catch_up` documents a second, oldest write first (`catch_up_step`),
        and is dropped once nothing is behind — writes meanwhile join the queue, as an indexer's
        backlog."""
        frozen = self.frozen
        if frozen is None:
            return {**self.index_status(), "caught_up": 0}
        if catch_up is not None and frozen.behind:
            frozen.catch_up = catch_up
            return {**self.index_status(), "caught_up": 0}
        self.frozen = None
        return {**self.index_status(), "caught_up": len(frozen.behind)}

    def catch_up_step(self, seconds: float) -> int:
        """Take into the frozen copy what `seconds` more of catching up allow; the number taken in.
        The copy is dropped once nothing is behind."""
        frozen = self.frozen
        if frozen is None or frozen.catch_up is None:
            return 0
        frozen.credit += frozen.catch_up * seconds
        count = int(frozen.credit)
        frozen.credit -= count
        taken = list(itertools.islice(frozen.behind, count))
        for document_id in taken:
            del frozen.behind[document_id]
            document = self.index.get(document_id)
            if document is not None:
                frozen.searched.upsert(document)
        if not frozen.behind:
            self.frozen = None
        return len(taken)

    def index_status(self) -> dict[str, Any]:
        frozen = self.frozen
        oldest = min(frozen.behind.values(), default=None) if frozen is not None else None
        return {
            "frozen": frozen is not None and frozen.catch_up is None,
            "catching_up": None if frozen is None else frozen.catch_up,
            "frozen_at": None if frozen is None else frozen.frozen_at,
            "behind": 0 if frozen is None else len(frozen.behind),
            "behind_seconds": 0.0 if oldest is None else max(0.0, self.clock() - oldest),
            "region": self.config.region,
            "replica": self.config.name,
        }

    def wipe(self) -> dict[str, int]:
        """Lose every document, the log and the applied positions (the data-loss fault)."""
        documents = self.index.clear()
        if self.frozen is not None:
            # The disk is gone, and the frozen index with it: it stays frozen, and empty.
            self.frozen = _FrozenIndex(DocumentIndex(), self.frozen.frozen_at, catch_up=self.frozen.catch_up)
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
            "index": self.index_status(),
        }
