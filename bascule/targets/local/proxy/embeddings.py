"""`EmbeddingMismatch`: a hop's query embeddings made by another model than its index's (on the
plane's loop; the mapping of vectors is pure).

Another embedding model puts the same texts in unrelated directions of a space of the same
dimension. The stand-in: a fixed signed permutation of a vector's coordinates, seeded by the other
model's name (`remap`) — an orthogonal map, so lengths and the similarities among mapped vectors
hold, while their similarity to vectors that were not mapped (the index's) is lost. It is applied
to the query vectors of JSON requests (top-level `QUERY_KEYS`, as the reference store's
``/v1/search {vector}``) and to the vectors of 2xx embeddings answers (``data[].embedding``, as
Mistral's and OpenAI's ``/v1/embeddings``). Anything else passes untouched.
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import EmbeddingMismatch
from bascule.targets.local.proxy.answers import Client
from bascule.targets.local.proxy.framing import RequestHead, dechunk
from bascule.targets.local.proxy.jsonanswers import JsonShaper, dumps

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["QUERY_KEYS", "EmbeddingShaper", "mismatch_request", "remap"]

QUERY_KEYS: Final = ("vector", "query_vector", "embedding")
_BODY_FRAMING: Final = re.compile(rb"\r\n(?:content-length|transfer-encoding)[ \t]*:[^\r\n]*", re.IGNORECASE)


@lru_cache(maxsize=16)
def _signed_permutation(model: str, size: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    rng = random.Random(f"{model}/{size}")
    order = list(range(size))
    rng.shuffle(order)
    return tuple(order), tuple(rng.choice((-1.0, 1.0)) for _ in range(size))


def _vector(value: object) -> list[float] | None:
    if (
        isinstance(value, list)
        and len(value) > 1
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in value)
    ):
        return [float(x) for x in value]
    return None


def remap(vector: list[float], model: str) -> list[float]:
    """`vector` as the model `model` would place it: its coordinates permuted and sign-flipped."""
    order, signs = _signed_permutation(model, len(vector))
    return [signs[i] * vector[order[i]] for i in range(len(vector))]


def mismatch_request(raw: bytes, head: RequestHead, state: EmbeddingMismatch) -> bytes | None:
    """The request `raw` (head and body) with its query vector remapped, or None to pass it."""
    if (head.header("content-type") or "").split(";")[0].strip().lower() != "application/json":
        return None
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    try:
        body = raw[end + 4 :]
        document = json.loads(dechunk(body) if head.chunked else body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    changed = dict(document)
    for key in QUERY_KEYS:
        vector = _vector(document.get(key))
        if vector is not None:
            changed[key] = remap(vector, state.model)
    if changed == document:
        return None
    body = dumps(changed)
    lines = _BODY_FRAMING.sub(b"", raw[:end])
    return lines + f"\r\ncontent-length: {len(body)}".encode() + b"\r\n\r\n" + body


class EmbeddingShaper(JsonShaper):
    """Remaps the vectors of 2xx JSON embeddings answers (``data[].embedding``)."""

    def __init__(self, state: EmbeddingMismatch, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.mismatch = state

    def rewrite(self, document: object) -> object | None:
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            return None
        items = document["data"]
        if not items or not all(isinstance(i, dict) and _vector(i.get("embedding")) for i in items):
            return None
        self.route.requests_faulted += 1
        data = [{**i, "embedding": remap(_vector(i["embedding"]) or [], self.mismatch.model)} for i in items]
        return {**document, "data": data}
