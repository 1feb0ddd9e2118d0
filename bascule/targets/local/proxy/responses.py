"""HTTP/1.x responses cut from an upstream byte stream, for the faults that act on answers. Pure.

`ResponseParser` turns the bytes an upstream sends on one connection into pieces: a response's
head, its body's payload (a ``chunked`` body decoded), its end — or, for bytes that are not an
HTTP/1.x response, the bytes as they came. `encode_body` and `END_CHUNK` frame a payload again the
way its response said. Trailers of a chunked body are read and dropped. A response to ``HEAD``
has no body: the relay tells the parser which requests were ``HEAD`` (`expect`), in order, since
clients do not pipeline.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final

from bascule.targets.local.proxy.scan import glance

__all__ = [
    "END_CHUNK",
    "Body",
    "End",
    "Framing",
    "Head",
    "Raw",
    "ResponseHead",
    "ResponseParser",
    "encode_body",
    "header_fields",
]

_MAX_HEAD: Final = 64 * 1024
_STATUS_LINE: Final = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?")
END_CHUNK: Final = b"0\r\n\r\n"


class Framing(Enum):
    """How a response's body is delimited."""

    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    CLOSE = "close"
    """Until the upstream closes the connection."""


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response's status line and header lines as received (no CRLF), and its framing."""

    status: int
    lines: tuple[bytes, ...]
    framing: Framing
    fields: dict[bytes, bytes]
    """The last value of each header, by its name in lower case (see `header_fields`)."""
    raw: bytes = b""
    """The head as it came, its blank line included (what `render` gives when nothing changes)."""

    def header(self, name: bytes) -> bytes | None:
        """The last value of header `name` (case-insensitive), or None."""
        return self.fields.get(name.lower())

    @property
    def content_type(self) -> bytes:
        return self.fields.get(b"content-type", b"").split(b";")[0].strip().lower()

    def render(self, *, drop: frozenset[bytes] = frozenset(), add: tuple[tuple[str, str], ...] = ()) -> bytes:
        """The head as bytes, without the header lines named in `drop` (lower case) and with `add`."""
        if not drop and not add:
            return self.raw or b"\r\n".join(self.lines) + b"\r\n\r\n"  # as it came
        added = [f"{name}: {value}".encode("latin-1") for name, value in add]
        if self.raw and drop.isdisjoint(self.fields):  # nothing to drop: the head as it came, plus
            return self.raw[:-2] + b"".join(line + b"\r\n" for line in added) + b"\r\n"
        kept = [self.lines[0]]
        for line in self.lines[1:]:
            if line.partition(b":")[0].strip().lower() not in drop:
                kept.append(line)
        kept += added
        return b"\r\n".join(kept) + b"\r\n\r\n"


def header_fields(lines: tuple[bytes, ...]) -> dict[bytes, bytes]:
    """The last value of each header of a head's `lines` (status line first), by lower-case name."""
    fields: dict[bytes, bytes] = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        fields[key.strip().lower()] = value.strip()
    return fields


@dataclass(frozen=True, slots=True)
class Head:
    head: ResponseHead


@dataclass(frozen=True, slots=True)
class Body:
    payload: bytes


@dataclass(frozen=True, slots=True)
class End:
    pass


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes passed as they came: the stream is not (or no longer) HTTP/1.x responses."""

    data: bytes


Piece = Head | Body | End | Raw
_END: Final = End()


def encode_body(framing: Framing, payload: bytes) -> bytes:
    """`payload` framed as the response's body says (one chunk of a chunked body)."""
    if framing is Framing.CHUNKED:
        return b"%x\r\n%b\r\n" % (len(payload), payload) if payload else b""
    return payload


class _State(Enum):
    HEAD = 0
    LENGTH = 1
    CHUNK_SIZE = 2
    CHUNK_DATA = 3
    CHUNK_CRLF = 4
    TRAILERS = 5
    CLOSE = 6
    RAW = 7


_HEAD: Final = _State.HEAD  # a global's look-up, where `_State.HEAD` is two (on the hot path)


class ResponseParser:
    """Cuts an upstream's byte stream into `Piece`s (see the module docstring)."""

    __slots__ = ("_buf", "_head_only", "_remaining", "_state")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = _State.HEAD
        self._remaining = 0
        self._head_only: deque[bool] = deque()

    @property
    def between(self) -> bool:
        """No response is under way (and none partly read)."""
        return self._state is _State.HEAD and not self._buf

    def expect(self, head_only: bool) -> None:
        """A request was sent; `head_only` when its method is HEAD."""
        self._head_only.append(head_only)

    def feed(self, data: bytes) -> list[Piece]:
        out: list[Piece] = []
        if self._state is _State.HEAD and not self._buf and self._whole(data, out):
            return out
        self._buf += data
        while self._step(out):
            pass
        return out

    def glance(self, data: bytes) -> int:
        """`data` seen as exactly one whole response whose body its `Content-Length` delimits,
        without parsing it or consuming anything: the length of its head (`scan.glance`: status line
        and header lines, each ending in CRLF; its body begins 2 bytes after), for a shaper to pass
        on, at the cost of a few searches, a response it does not act on (`Shaper.glanced`). -1 for
        anything else — mid-response, a response to ``HEAD``, an informational, 204, 304 or chunked
        one, one delimited by the close, a head the full parser would read otherwise — which `feed`
        then cuts as usual. After passing a glanced response on, call `skip`."""
        if self._buf or self._state is not _HEAD:
            return -1
        head_only = self._head_only
        if head_only and head_only[0]:
            return -1
        return glance(data)

    def skip(self) -> None:
        """The response `glance` saw has been passed on whole: the next bytes begin the next one."""
        if self._head_only:
            self._head_only.popleft()

    def _whole(self, data: bytes, out: list[Piece]) -> bool:
        """The common case cut without the step machine: `data` begins with a whole head, and is
        exactly one response if its body is delimited by its length. False, with nothing consumed,
        when `data` has no whole head."""
        end = data.find(b"\r\n\r\n")
        if end < 0 or not data.startswith(b"HTTP/1."):
            return False
        head = self._parse_head(data[: end + 4])
        if head is None:  # not a response after all: passed as it came from here on
            self._buf += data
            self._raw(out)
            return True
        out.append(Head(head))
        rest = len(data) - end - 4
        if head.framing is Framing.LENGTH and self._remaining == rest:
            self._remaining = 0
            out.append(Body(data[end + 4 :]))
            out.append(_END)
            return True
        self._enter_body(head, out)
        self._buf += data[end + 4 :]
        while self._step(out):
            pass
        return True

    def _enter_body(self, head: ResponseHead, out: list[Piece]) -> None:
        if head.framing is Framing.NONE:
            out.append(_END)
        elif head.framing is Framing.LENGTH:
            self._state = _State.LENGTH
        elif head.framing is Framing.CHUNKED:
            self._state = _State.CHUNK_SIZE
        else:
            self._state = _State.CLOSE

    def eof(self) -> list[Piece]:
        """The upstream closed: a body delimited by the close ends here."""
        out: list[Piece] = []
        if self._state is _State.CLOSE:
            out.append(_END)
            self._state = _State.HEAD
        elif self._buf and self._state is not _State.RAW:
            out.append(Raw(self._take()))
        return out

    def _take(self, n: int | None = None) -> bytes:
        if n is None or n >= len(self._buf):
            data = bytes(self._buf)
            self._buf.clear()
            return data
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def _raw(self, out: list[Piece]) -> bool:
        self._state = _State.RAW
        if self._buf:
            out.append(Raw(self._take()))
        return False

    def _step(self, out: list[Piece]) -> bool:
        state = self._state
        if state is _State.RAW:
            return self._raw(out)
        if state is _State.HEAD:
            if not self._buf:
                return False
            if b"HTTP/1."[: len(self._buf)] != bytes(self._buf[:7]):
                return self._raw(out)
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return False if len(self._buf) <= _MAX_HEAD else self._raw(out)
            head = self._parse_head(bytes(self._buf[: end + 4]))
            if head is None:
                return self._raw(out)
            del self._buf[: end + 4]
            out.append(Head(head))
            self._enter_body(head, out)
            return True
        if state is _State.LENGTH or state is _State.CHUNK_DATA:
            if not self._buf:
                return False
            payload = self._take(self._remaining)
            self._remaining -= len(payload)
            out.append(Body(payload))
            if self._remaining == 0:
                if state is _State.LENGTH:
                    out.append(_END)
                    self._state = _State.HEAD
                else:
                    self._state = _State.CHUNK_CRLF
            return True
        if state is _State.CHUNK_CRLF:
            if len(self._buf) < 2:
                return False
            if self._take(2) != b"\r\n":
                return self._raw(out)
            self._state = _State.CHUNK_SIZE
            return True
        if state is _State.CHUNK_SIZE or state is _State.TRAILERS:
            end = self._buf.find(b"\r\n")
            if end < 0:
                return False if len(self._buf) <= _MAX_HEAD else self._raw(out)
            line = self._take(end + 2)[:-2]
            if state is _State.TRAILERS:
                if not line:
                    out.append(_END)
                    self._state = _State.HEAD
                return True
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return self._raw(out)
            if size == 0:
                self._state = _State.TRAILERS
            else:
                self._remaining = size
                self._state = _State.CHUNK_DATA
            return True
        # CLOSE: everything until the upstream closes is body.
        if not self._buf:
            return False
        out.append(Body(self._take()))
        return True

    def _parse_head(self, raw: bytes) -> ResponseHead | None:
        """`raw`: a head up to its blank line included."""
        lines = tuple(raw[:-4].split(b"\r\n"))
        match = _STATUS_LINE.fullmatch(lines[0])
        if match is None:
            return None
        status = int(match.group(1))
        informational = 100 <= status < 200
        head_only = False
        if not informational:
            head_only = self._head_only.popleft() if self._head_only else False
        fields = header_fields(lines)
        encoding = fields.get(b"transfer-encoding")
        length = fields.get(b"content-length")
        if informational or status in (204, 304) or head_only:
            framing = Framing.NONE
        elif encoding is not None:
            if encoding.lower().split(b",")[-1].strip() != b"chunked":
                return None
            framing = Framing.CHUNKED
        elif length is not None:
            if not length.isdigit():
                return None
            self._remaining = int(length)
            framing = Framing.LENGTH if self._remaining else Framing.NONE
        else:
            framing = Framing.CLOSE
        return ResponseHead(status, lines, framing, fields, raw)
