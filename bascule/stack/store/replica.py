"""One store replica's state: documents, index, replication log and its knowledge of peers.

No I/O: the clocks are injected; the HTTP side lives in `bascule.stack.store.app` and shipping
in `bascule.stack.store.replicator`.
"""

from __future__ import annotations

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
