"""HTTP/1.x framing for the fault proxy: request heads parsed, whole requests cut from a byte stream,
responses rendered, and the answer an `HttpError` or `Throttle` fault gives. Pure; shared with the
control channel (`control`), which speaks the same small HTTP.
"""

from __future__ import annotations

import http
import json
import random
import re
from dataclasses import dataclass
from typing import Final

from bascule.targets.local.faultstate import HttpError, Throttle

__all__ = [
    "HttpParseError",
    "RequestHead",
    "RequestReader",
    "UnsupportedRequestError",
    "chunked_end",
    "dechunk",
    "fault_response",
    "parse_request_head",
    "render_response",
]

_MAX_HEAD: Final = 64 * 1024


class HttpParseError(ValueError):
    """The bytes are not an HTTP/1.x request head."""


class UnsupportedRequestError(ValueError):
    """An HTTP request this proxy cannot frame (a body in a transfer coding other than chunked)."""


_REQUEST_LINE = re.compile(rb"([A-Z]{1,16}) (\S+) HTTP/(1\.[01])")
_METHOD_PREFIX = re.compile(rb"[A-Z]{0,16}\Z|[A-Z]{1,16} ")


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and headers (header names lower-cased, in order)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The last value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        found = None
        for key, value in self.headers:
            if key == wanted:
                found = value
        return found

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to stay open after the response."""
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def chunked(self) -> bool:
        """The body comes in chunks (``Transfer-Encoding`` ending in ``chunked``); raises
        `UnsupportedRequestError` for a transfer coding whose end cannot be found."""
        coding = self.header("transfer-encoding")
        if coding is None:
            return False
        if coding.rpartition(",")[2].strip().lower() != "chunked":
            raise UnsupportedRequestError(
                f"a request body in Transfer-Encoding {coding!r} cannot be framed by bascule's "
                "HTTP-aware fault proxy; send it chunked or with a Content-Length"
            )
        return True

    @property
    def expects_continue(self) -> bool:
        """The client waits for a ``100 Continue`` before it sends the body (``Expect``)."""
        return (self.header("expect") or "").lower() == "100-continue"

    @property
    def body_length(self) -> int:
        """Bytes of body after the head; raises `UnsupportedRequestError` for encoded bodies."""
        if self.header("transfer-encoding") is not None:
            raise UnsupportedRequestError(
                "request bodies with Transfer-Encoding (chunked) are not supported by bascule's "
                "HTTP-aware fault proxy; send a Content-Length body"
            )
        lengths = {v.strip() for k, v in self.headers if k == "content-length"}
        if not lengths:
            return 0
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise HttpParseError(f"invalid Content-Length: {sorted(lengths)!r}")
        return int(next(iter(lengths)))


def parse_request_head(head: bytes) -> RequestHead:
    """Parse an HTTP/1.x request head (request line and headers, without the final blank line)."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise HttpParseError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise HttpParseError(f"malformed header line: {line[:80]!r}")
        headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
    method, target, version = (g.decode("ascii") for g in match.groups())
    return RequestHead(method, target, version, tuple(headers))


def render_response(
    status: int,
    body: bytes,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    content_type: str = "application/json",
    keep_alive: bool = True,
    head_only: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with a Content-Length body."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"content-type: {content_type}",
        f"content-length: {len(body)}",
        f"connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_EXPECT_LINE: Final = re.compile(rb"\r\nexpect[ \t]*:[^\r\n]*", re.IGNORECASE)


def chunked_end(buf: bytes | bytearray, start: int) -> int | None:
    """Where a chunked body that begins at `start` of `buf` ends (after its last chunk and its
    trailers), or None while it has not all come."""
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            if len(buf) - pos > 1024:
                raise HttpParseError("no end of a chunk-size line within 1 KiB")
            return None
        size_field = bytes(buf[pos:line_end]).partition(b";")[0].strip()
        try:
            size = int(size_field, 16)
        except ValueError:
            raise HttpParseError(f"invalid chunk size: {size_field[:20]!r}") from None
        if size < 0:
            raise HttpParseError(f"invalid chunk size: {size_field[:20]!r}")
        if size == 0:  # the last chunk: trailer lines, then an empty one
            pos = line_end + 2
            while True:
                line_end = buf.find(b"\r\n", pos)
                if line_end < 0:
                    return None
                if line_end == pos:
                    return pos + 2
                pos = line_end + 2
        pos = line_end + 2 + size + 2
        if len(buf) < pos:
            return None
        if buf[pos - 2 : pos] != b"\r\n":
            raise HttpParseError("a chunk does not end where its size says")


def dechunk(body: bytes) -> bytes:
    """The payload of a whole chunked body (trailers dropped)."""
    parts: list[bytes] = []
    pos = 0
    while True:
        line_end = body.index(b"\r\n", pos)
        size = int(body[pos:line_end].partition(b";")[0].strip(), 16)
        if size == 0:
            return b"".join(parts)
        parts.append(body[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2


class RequestReader:
    """Cuts a client byte stream into whole requests: a head and its body, delimited by its
    Content-Length or chunked. A request whose client waits for ``100 Continue`` before its body is
    given one (`continue_answer`), and is passed on without its ``Expect``: the callee then reads
    a whole request, as if its client had not waited."""

    __slots__ = ("_buf", "_continued")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._continued = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> bool:
        """Bytes of a request not yet whole are held."""
        return bool(self._buf)

    def take(self) -> bytes:
        """Everything buffered and not yet returned as a request."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def next_request(self) -> tuple[bytes, RequestHead] | None:
        """The next whole request (raw bytes and head), or None until more bytes arrive."""
        if not self._buf:
            return None
        if _METHOD_PREFIX.match(self._buf[:17]) is None:
            raise HttpParseError("the stream does not start with an HTTP method")
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _MAX_HEAD:
                raise HttpParseError("no end of request head within 64 KiB")
            return None
        head = parse_request_head(bytes(self._buf[:end]))
        if head.chunked:
            found = chunked_end(self._buf, end + 4)
            if found is None:
                return None
            total = found
        else:
            total = end + 4 + head.body_length
            if len(self._buf) < total:
                return None
        raw = bytes(self._buf[:total])
        del self._buf[:total]
        if self._continued:
            self._continued = False
            raw = _EXPECT_LINE.sub(b"", raw[: end + 2]) + raw[end + 2 :]
        return raw, head

    def continue_answer(self) -> bytes | None:
        """A ``100 Continue`` to send the client now: when the request held is one whose head has
        come, whose client waits for it before sending the body, and has not had one."""
        if self._continued or not self._buf:
            return None
        end = self._buf.find(b"\r\n\r\n")
        if end < 0 or len(self._buf) > end + 4:
            return None
        head = parse_request_head(bytes(self._buf[:end]))
        if not head.expects_continue or (not head.chunked and head.body_length == 0):
            return None
        self._continued = True
        return _CONTINUE


def fault_response(state: HttpError | Throttle, head: RequestHead, rng: random.Random) -> bytes:
    head_only = head.method == "HEAD"
    if isinstance(state, Throttle):
        return render_response(
            429,
            state.body_bytes,
            headers=(
                ("retry-after", state.retry_after_header),
                *state.headers,
                ("x-bascule-fault", "throttle"),
            ),
            content_type=state.content_type,
            keep_alive=head.keep_alive,
            head_only=head_only,
        )
    status = rng.choice(state.statuses)
    body = json.dumps(
        {
            "object": "error",
            "message": f"HTTP {status} injected by bascule",
            "type": "bascule_fault",
            "code": str(status),
        },
        separators=(",", ":"),
    ).encode()
    return render_response(
        status,
        body,
        headers=(("x-bascule-fault", "http_error"),),
        keep_alive=head.keep_alive,
        head_only=head_only,
    )
