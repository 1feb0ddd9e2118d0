"""The reference stack's text embedding: deterministic feature hashing into 1024 dimensions.

Every component that turns text into a vector (the llm's `/v1/embeddings`, the retriever and
the store's index) uses this one function, so a vector computed on one replica matches the
vector computed on any other and an index can be rebuilt from its source documents alone.

Why hashing rather than a learned model: bascule must run with nothing but Python and no
network access beyond 127.0.0.1, so no model weights can be downloaded; a hashing embedding
needs no vocabulary and no training, is fully deterministic (a stable blake2b hash, never
Python's per-process randomised ``hash()``), and gives the same bytes on every replica, every
run and every platform. The price is that it only matches shared words, not synonyms — enough
for an extractive RAG stack whose answers are judged against the documents themselves.

Each content token adds ±1 to one of `DIMENSIONS` buckets (the sign is a second hash bit, so
collisions cancel out on average instead of piling up), each adjacent pair of content tokens
adds ±`BIGRAM_WEIGHT` to another bucket, and the vector is L2-normalised, so a dot product of
two embeddings is their cosine similarity. Its dimension matches `mistral-embed`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bascule.stack.text import STOP_WORDS, tokenize

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "BIGRAM_WEIGHT",
    "DIMENSIONS",
    "STOP_WORDS",
    "cosine",
    "embed",
    "embed_many",
    "tokenize",
]

DIMENSIONS = 1024
BIGRAM_WEIGHT = 0.5


@functools.lru_cache(maxsize=65536)
def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    sign = 1.0 if (value >> 63) & 1 else -1.0
    return value % DIMENSIONS, sign


def embed(text: str) -> npt.NDArray[np.float32]:
    """The L2-normalised float32 embedding of `text`; all zeros when it has no content word."""
    vector = np.zeros(DIMENSIONS, dtype=np.float64)
    tokens = tokenize(text)
    for token in tokens:
        index, sign = _bucket(token)
        vector[index] += sign
    for first, second in itertools.pairwise(tokens):
        # A separator no token can contain keeps a bigram from colliding with a unigram.
        index, sign = _bucket(f"{first}\x1f{second}")
        vector[index] += sign * BIGRAM_WEIGHT
    norm = float(np.linalg.norm(vector))
    if norm > 0.0:
        vector /= norm
    return vector.astype(np.float32)


def embed_many(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    """Embeddings of `texts` as rows of a ``(len(texts), DIMENSIONS)`` float32 matrix."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    return np.stack([embed(text) for text in texts])


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two vectors; 0.0 when either is all zeros."""
    left = np.asarray(a, dtype=np.float64)
    right = np.asarray(b, dtype=np.float64)
    norms = float(np.linalg.norm(left)) * float(np.linalg.norm(right))
    if norms == 0.0:
        return 0.0
    return float(np.dot(left, right) / norms)
