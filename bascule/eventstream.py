"""A server-sent event stream read whole (`text/event-stream`, as ``stream: true`` gives with the
chat APIs of OpenAI, Mistral and Anthropic): its events' data, and whether it came to its end.

HTTP cannot tell a streamed answer cut short from a whole one when the stream was ended cleanly
(the `stream-cut` fault's ``how: end``, or a gateway relaying a cut upstream as it came): each
chat API ends its streams with a mark of its own, and a stream without it is an answer cut
short. A stream in none of these protocols has no such mark, and nothing is said of its end. Its
answer is read at a path as a client assembles it (`bascule.probes.base.read_path`).
Pure; imported by the locustfile, so it imports nothing of locust or gevent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["CONTENT_TYPE", "EventStream", "is_event_stream", "read_event_stream"]

CONTENT_TYPE = "text/event-stream"

_DONE = "[DONE]"
"""The last data of an OpenAI or Mistral chat stream."""
_CHUNK = "chat.completion.chunk"
_ANTHROPIC_END = "message_stop"
_ANTHROPIC_BEGIN = "message_start"
_RESPONSES_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""The events an OpenAI Responses API stream ends with (its events are all ``response.*``)."""


def is_event_stream(content_type: str | None) -> bool:
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE


@dataclass(frozen=True)
class EventStream:
    """What a stream carried: each event's data (JSON decoded where it is JSON), and its end."""

    data: tuple[object, ...]
    ended: bool | None
    """True when the stream's protocol marks its end and the mark came; False when it was a stream
    of a protocol that marks its end (an OpenAI/Mistral chat chunk, Anthropic's ``message_start``)
    and the mark never came; None for a stream of no such protocol (its end cannot be told)."""
    end_mark: str
    """The mark the stream's protocol ends with (``data: [DONE]``), or "" when it has none."""

    def cut_reason(self) -> str | None:
        """Why the stream is an answer cut short, or None when it is not known to be."""
        if self.ended is not False:
            return None
        events = len(self.data)
        return (
            f"StreamCut: the event stream ended after {events} event{'s' if events != 1 else ''} "
            f"without {self.end_mark}: an answer cut short"
        )


def read_event_stream(body: bytes | str) -> EventStream:
    """The events of a whole stream body. Lines follow the SSE format: ``data:`` lines of one event
    joined by newlines, ``event:`` naming it, a blank line ending it; comments (``:``) and other
    fields are skipped."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    data: list[object] = []
    names: list[str] = []
    lines: list[str] = []
    name = ""

    def dispatch() -> None:
        nonlocal name
        if lines:
            raw = "\n".join(lines)
            try:
                data.append(json.loads(raw))
            except ValueError:
                data.append(raw)
            names.append(name)
        lines.clear()
        name = ""

    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            dispatch()
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            lines.append(value)
        elif field == "event":
            name = value
    dispatch()
    return EventStream(tuple(data), *_end(data, names))


def _end(data: list[object], names: list[str]) -> tuple[bool | None, str]:
    if not data:  # an answer stream that carried nothing is no answer, whatever its protocol
        return False, "any event"
    types = {str(d.get("type")) for d in data if isinstance(d, dict)} | set(names)
    if _ANTHROPIC_BEGIN in types or _ANTHROPIC_END in types:
        return _ANTHROPIC_END in types, f"event: {_ANTHROPIC_END}"
    if any(t.startswith("response.") for t in types):
        return bool(types & _RESPONSES_ENDS), "event: response.completed"
    chat_chunk = any(isinstance(d, dict) and (d.get("object") == _CHUNK or "choices" in d) for d in data)
    if _DONE in data:
        return True, f"data: {_DONE}"
    if chat_chunk:
        return False, f"data: {_DONE}"
    return None, ""
