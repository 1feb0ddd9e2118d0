"""`PartialIndex`: documents missing from a hop's search answers (on the plane's loop; the
choice of documents is pure).

An answer is understood when it is a 2xx ``application/json`` object with a list under one of
`RESULT_KEYS` whose items are objects naming their document under one of `ID_KEYS` — the
reference store's ``{results: [{id, …}]}`` and retriever's ``{passages: [{doc_id, …}]}``, and
the usual shapes of search and vector-database APIs. Items whose id is `missing` are removed, the
rest keep their order; anything else passes untouched (the route counts the answers it filtered).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import PartialIndex
from bascule.targets.local.proxy.answers import Client
from bascule.targets.local.proxy.jsonanswers import JsonShaper

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["ID_KEYS", "RESULT_KEYS", "PartialIndexShaper", "drop_missing", "missing"]

RESULT_KEYS: Final = ("results", "passages", "documents", "hits", "matches", "data")
ID_KEYS: Final = ("id", "doc_id", "document_id", "_id")


def missing(doc_id: str, ratio: float, salt: str = "") -> bool:
    """Whether `doc_id` is among the `ratio` of documents missing: its SHA-256 (after `salt`),
    read as a number in [0, 1), falls below `ratio` — the same answer on every replica and run."""
    digest = hashlib.sha256(f"{salt}{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < ratio


def _doc_id(item: object) -> str | None:
    if isinstance(item, dict):
        for key in ID_KEYS:
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
    return None


def drop_missing(document: object, state: PartialIndex) -> object | None:
    """`document` without the missing documents' items, or None when it is not a search answer
    (no list of items with ids under a result key) or lost nothing."""
    if not isinstance(document, dict):
        return None
    changed = dict(document)
    understood = False
    for key in RESULT_KEYS:
        items = document.get(key)
        if not isinstance(items, list) or not items or any(_doc_id(i) is None for i in items):
            continue
        understood = True
        changed[key] = [i for i in items if not missing(str(_doc_id(i)), state.ratio, state.salt)]
    return changed if understood and changed != document else None


class PartialIndexShaper(JsonShaper):
    """Removes the missing documents from each 2xx JSON search answer."""

    def __init__(self, state: PartialIndex, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.partial = state

    def rewrite(self, document: object) -> object | None:
        changed = drop_missing(document, self.partial)
        if changed is not None:
            self.route.requests_faulted += 1
        return changed
