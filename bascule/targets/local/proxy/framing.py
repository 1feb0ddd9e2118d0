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
    "fault_response",
    "parse_request_head",
    "render_response",
]

_MAX_HEAD: Final = 64 * 1024


class HttpParseError(ValueError):
    """The bytes are not an HTTP/1.x request head."""


class UnsupportedRequestError(ValueError):
    """An HTTP request this proxy cannot frame (a chunked or otherwise encoded body)."""


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


class RequestReader:
    """Cuts a client byte stream into whole requests (head + Content-Length body)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

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
        total = end + 4 + head.body_length
        if len(self._buf) < total:
            return None
        raw = bytes(self._buf[:total])
        del self._buf[:total]
        return raw, head


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
