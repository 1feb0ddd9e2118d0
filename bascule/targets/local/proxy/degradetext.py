"""Answers made wrong, for `Degrade` (pure): the texts under ``content`` or ``answer`` keys of a JSON
answer or of each ``data:`` event of a stream, found and changed as `DegradeHow` says."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from bascule.targets.local.faultstate import DegradeHow

__all__ = ["answer_texts", "corrupt_events", "degrade_text", "map_events", "rewrite_answers"]

_ANSWER_KEYS: Final = frozenset({"content", "answer"})
_ROT_LETTERS: Final = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM5678901234",
)


def degrade_text(
    text: str,
    how: DegradeHow,
    before: str | None,
    *,
    tokens: float = 0.1,
    draw: Callable[[], float] = lambda: 0.0,
) -> str:
    """`text` made wrong as `how` says; `before` is the route's previous other answer (for swap);
    with `DegradeHow.TOKENS`, each word is replaced when `draw()` is below `tokens`."""
    if how is DegradeHow.CORRUPT:
        return text.translate(_ROT_LETTERS)
    if how is DegradeHow.TOKENS:
        return " ".join(_foreign(w) if w and draw() < tokens else w for w in text.split(" "))
    if how is DegradeHow.SWAP and before is not None:
        return before
    words = text.split(" ")
    return " ".join(words[: len(words) // 2])


def _foreign(word: str) -> str:
    # Thai letters (U+0E01…): another script in an English answer, as the 2025-08 token corruption.
    return "".join(chr(0x0E01 + ord(c) % 46) for c in word)


def rewrite_answers(value: object, change: Callable[[str], str]) -> object:
    if isinstance(value, dict):
        return {
            k: change(v) if k in _ANSWER_KEYS and isinstance(v, str) else rewrite_answers(v, change)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [rewrite_answers(v, change) for v in value]
    return value


def answer_texts(value: object) -> list[str]:
    if isinstance(value, dict):
        return [
            t
            for k, v in value.items()
            for t in ([v] if k in _ANSWER_KEYS and isinstance(v, str) else answer_texts(v))
        ]
    if isinstance(value, list):
        return [t for v in value for t in answer_texts(v)]
    return []


def corrupt_events(data: bytes, change: Callable[[str], str]) -> bytes:
    """Server-sent events with the answer text of each ``data:`` JSON changed."""
    return map_events(data, lambda document: rewrite_answers(document, change))


def map_events(data: bytes, change: Callable[[object], object]) -> bytes:
    """Server-sent events with each ``data:`` JSON document replaced by `change` of it (written as
    compact UTF-8 JSON); other lines (``data: [DONE]``, comments) as they came."""
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if not line.startswith(b"data:"):
            continue
        try:
            document = json.loads(line[5:])
        except ValueError:
            continue
        changed = json.dumps(change(document), ensure_ascii=False, separators=(",", ":"))
        lines[i] = b"data: " + changed.encode()
    return b"\n".join(lines)
