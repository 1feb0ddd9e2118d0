"""`ModelSwap`: a hop's chat answers relabelled as a smaller model's and changed as one's would be
(everything here runs on the plane's loop; the text functions are pure).

Every ``model`` field of a 2xx JSON answer, or of each ``data:`` event of a 2xx event stream, is
set to the state's `to` (and the reference llm's ``x-bascule-model`` header with it): what any
OpenAI- or Mistral-style client reads to learn which model answered. A `ratio` of those answers
has its text — every string under a ``content`` or ``answer`` key — changed as `SwapAnswers`
says: its first sentence only, or its citations removed. These are stand-ins, stated as such in
docs/faults.md: a smaller model's failures made deterministic, not a smaller model's output.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from bascule.targets.local.faultstate import ModelSwap, SwapAnswers
from bascule.targets.local.proxy.answers import Client, Shaper
from bascule.targets.local.proxy.degradetext import map_events
from bascule.targets.local.proxy.jsonanswers import JsonShaper
from bascule.targets.local.proxy.responses import Framing, ResponseHead

if TYPE_CHECKING:
    from bascule.targets.local.proxy.route import Route

__all__ = ["ModelSwapShaper", "Shortener", "uncite"]

_EVENT_END: Final = re.compile(rb"\r?\n\r?\n")
_SENTENCE_END: Final = re.compile(r"[.!?](?=\s|$)")
_CITES: Final = re.compile(r"(?:\s*\[doc:[^\]\s]+\])*")
_CITE: Final = re.compile(r"\s*\[doc:[^\]\s]+\]")
_TEXT_KEYS: Final = frozenset({"content", "answer"})
_MODEL_HEADER: Final = b"x-bascule-model"


def uncite(text: str) -> str:
    """`text` without its ``[doc:ID]`` citation markers."""
    return _CITE.sub("", text)


class Shortener:
    """Keeps a text's first sentence and the citations right after it, fed whole or in pieces
    (a stream's deltas): each `feed` returns what of that piece is kept."""

    def __init__(self) -> None:
        self.ended = False
        """A sentence end has been kept: only citation markers pass now."""
        self.closed = False
        """Something else followed it: nothing passes any more."""

    def feed(self, text: str) -> str:
        if self.closed:
            return ""
        if not self.ended:
            found = _SENTENCE_END.search(text)
            if found is None:
                return text
            self.ended = True
            return text[: found.end()] + self.feed(text[found.end() :])
        cites = _CITES.match(text)
        kept = cites.group(0) if cites is not None else ""
        if not text[len(kept) :].strip():
            return text  # citations and spaces only: the sentence may still be cited after them
        self.closed = True
        return kept


def _rewrite(value: object, to: str, change: Callable[[str], str] | None) -> object:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if key == "model" and isinstance(item, str):
                out[key] = to
            elif key in _TEXT_KEYS and isinstance(item, str) and change is not None:
                out[key] = change(item)
            else:
                out[key] = _rewrite(item, to, change)
        return out
    if isinstance(value, list):
        return [_rewrite(item, to, change) for item in value]
    return value


class ModelSwapShaper(JsonShaper):
    """Relabels 2xx JSON answers (read whole) and event streams (event by event) with the swapped
    model, and changes a ratio of their texts."""

    def __init__(self, state: ModelSwap, client: Client, route: Route, *, synced: bool) -> None:
        super().__init__(state, client, route, synced=synced)
        self.swap = state
        self.events: bytes | None = None
        """The bytes of an event not yet whole, while a stream is relabelled."""
        self.change: Callable[[str], str] | None = None

    def changer(self, *, stream: bool) -> Callable[[str], str] | None:
        """How this answer's text changes: drawn once per answer, None for the spared ones. A
        stream's deltas share one `Shortener`; each text of a JSON answer has its own."""
        if self.swap.answers is SwapAnswers.UNCHANGED or self.route.rng.random() >= self.swap.ratio:
            return None
        self.route.requests_faulted += 1
        if self.swap.answers is SwapAnswers.UNCITED:
            return uncite
        return Shortener().feed if stream else lambda text: Shortener().feed(text)

    def on_head(self, head: ResponseHead) -> None:
        self.events = None
        super().on_head(head)

    def acts_on(self, head: ResponseHead) -> bool:
        return self.whole(head) or self.streamed(head)

    @staticmethod
    def streamed(head: ResponseHead) -> bool:
        """A 2xx event stream, relabelled event by event."""
        ok = 200 <= head.status < 300 and head.framing in (Framing.CHUNKED, Framing.CLOSE)
        return ok and head.content_type == b"text/event-stream"

    def on_other_head(self, head: ResponseHead) -> None:
        if self.streamed(head):
            self.events = b""
            self.change = self.changer(stream=True)
            self.emit(self.rendered(head, None))
        else:
            super().on_other_head(head)

    def rendered(self, head: ResponseHead, length: int | None) -> bytes:
        drop = {_MODEL_HEADER} if head.header(_MODEL_HEADER) is not None else set()
        add = [("x-bascule-model", self.swap.to)] if drop else []
        if length is not None:
            drop.add(b"content-length")
            add.append(("content-length", str(length)))
        return head.render(drop=frozenset(drop), add=tuple(add))

    def on_body(self, payload: bytes) -> None:
        if self.events is None:
            super().on_body(payload)
            return
        data = self.events + payload
        whole = 0
        for found in _EVENT_END.finditer(data):
            whole = found.end()
        Shaper.on_body(self, self.stream_events(data[:whole]))
        self.events = data[whole:]

    def on_end(self) -> None:
        if self.events is not None:
            Shaper.on_body(self, self.stream_events(self.events))
            self.events = None
        super().on_end()

    def flush(self) -> None:
        if self.events:
            Shaper.on_body(self, self.events)
        self.events = None
        super().flush()

    def rewrite(self, document: object) -> object | None:
        return _rewrite(document, self.swap.to, self.changer(stream=False))

    def stream_events(self, data: bytes) -> bytes:
        return map_events(data, lambda document: _rewrite(document, self.swap.to, self.change))
