"""A shaper that reads each 2xx JSON answer whole and passes on what a fault makes of it, status
unchanged and ``Content-Length`` following the new body (on the plane's loop)."""

from __future__ import annotations

import json

from bascule.targets.local.proxy.answers import Shaper
from bascule.targets.local.proxy.responses import Framing, ResponseHead

__all__ = ["JsonShaper", "dumps"]


def dumps(document: object) -> bytes:
    """`document` as compact UTF-8 JSON."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class JsonShaper(Shaper):
    """Holds each 2xx ``application/json`` answer until its end, then writes its head (with the new
    length) and `rewrite`'s body. Other answers pass as they come (`on_other_head` may take them)."""

    body: bytearray | None = None

    def acts_on(self, head: ResponseHead) -> bool:
        return self.whole(head)

    @staticmethod
    def whole(head: ResponseHead) -> bool:
        """A 2xx JSON answer, read whole and rewritten."""
        ok = 200 <= head.status < 300 and head.framing is not Framing.NONE
        return ok and head.content_type == b"application/json"

    def on_head(self, head: ResponseHead) -> None:
        self.body = None
        if self.whole(head):
            self.body = bytearray()  # the head waits: its Content-Length may change
        else:
            self.on_other_head(head)

    def on_other_head(self, head: ResponseHead) -> None:
        super().on_head(head)

    def on_body(self, payload: bytes) -> None:
        if self.body is not None:
            self.body += payload
        else:
            super().on_body(payload)

    def on_end(self) -> None:
        head = self.head
        if self.body is None or head is None:
            super().on_end()
            return
        raw = bytes(self.body)
        self.body = None
        try:
            document = json.loads(raw)
        except ValueError:
            changed = None
        else:
            changed = self.rewrite(document)
        body = raw if changed is None else dumps(changed)
        self.emit(self.rendered(head, len(body) if head.framing is Framing.LENGTH else None))
        super().on_body(body)
        super().on_end()

    def rendered(self, head: ResponseHead, length: int | None) -> bytes:
        """The head of a rewritten answer (`length`: its new Content-Length, if it has one)."""
        if length is None:
            return head.render()
        return head.render(drop=frozenset({b"content-length"}), add=(("content-length", str(length)),))

    def rewrite(self, document: object) -> object | None:
        """What the fault makes of one answer, or None to pass it as it came."""
        return None

    def flush(self) -> None:
        if self.body is not None and self.head is not None:
            # Mid-answer when the fault ends: the answer goes out as it came.
            self.emit(self.head.render())
            super().on_body(bytes(self.body))
            self.body = None
