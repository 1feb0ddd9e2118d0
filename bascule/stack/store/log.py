"""The replication log of local writes, and what a replica knows of each peer. No I/O."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass

from bascule.stack.corpus import DataClass
from bascule.stack.store.index import StoredDocument

__all__ = ["LogEntry", "PeerState", "ReplicationLog"]


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
