"""Documents as a replica holds them, and their index: embeddings searched by dot product.

No I/O. Documents are embedded with `bascule.stack.embedding` (title and text), rows of a
float32 matrix that grows by doubling; a search is one matrix-vector product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from bascule.stack.corpus import DataClass
from bascule.stack.embedding import DIMENSIONS, embed

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["SYNTHETIC_TAG", "DocumentIndex", "StoredDocument"]

_INITIAL_ROWS = 64

SYNTHETIC_TAG: Final = "synthetic"
"""Tag of documents written by test traffic: kept out of search results."""
_UNSEARCHABLE: Final = 127
"""The rank of a synthetic document's row: above every data class's, so no search sees it."""


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

    def _content(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "text": self.text,
            "data_class": self.data_class.value,
            "tags": list(self.tags),
        }

    def to_json(self) -> dict[str, Any]:
        """The document as ``GET /v1/documents/{id}`` returns it."""
        return {**self._content(), "origin": self.origin, "seq": self.seq, "written_at": self.written_at}

    def to_wire(self) -> dict[str, Any]:
        """The document as a replication entry carries it (origin and seq travel beside it)."""
        return {**self._content(), "written_at": self.written_at}


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

    def snapshot(self) -> DocumentIndex:
        """A copy of the index as it is now, which later upserts to this one do not change."""
        copy = DocumentIndex()
        copy._vectors = self._vectors.copy()
        copy._ranks = self._ranks.copy()
        copy._documents = list(self._documents)
        copy._rows = dict(self._rows)
        return copy

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
