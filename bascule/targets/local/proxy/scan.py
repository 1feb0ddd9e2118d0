"""The byte searches the fault proxy makes at each request and answer it relays. For the hop it
records (`hops`): whether a request's first bytes begin an HTTP/1.x request, and its
``traceparent``. For the shapers that can pass an answer on without parsing it: where the head of
one that came whole in one read ends (`Shaper.glanced`), the tokens token-rate charges it, and
whether stream-cut can tell from its head that it is no event stream. Pure.

Each function here has a compiled twin in `_scan.c`, built at install when a C compiler is found
(``hatch_build.py``), and used in its place when it was (`COMPILED`): on the relay's path at every
request, the Python below costs from half a microsecond to more than a microsecond, and the C a
tenth of it (issue 18, docs/performance.md). The Python is the reference: tests/test_scan.py holds
the C to it. ``BASCULE_PURE_PYTHON=1`` in the environment runs the Python twins even where the C is built."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Final

__all__ = [
    "COMPILED",
    "FINAL_STATUS_LINES",
    "NOT_COMPILED_WHY",
    "TOTAL_TOKENS",
    "answer_tokens",
    "glance",
    "plain_head",
    "request_start",
    "traceparent",
]

FINAL_STATUS_LINES: Final = {
    b"HTTP/1.%c %d%c" % (minor, code, end): code
    for minor in b"01"
    for code in range(200, 1000)
    for end in b" \r"
}
"""An answer's first 13 bytes, when they begin the status line of an HTTP/1.0 or 1.1 answer with a
final status (200 to 999): that status. One slice and one look-up, where a regular expression or
the steps of a parse cost two to four times as much (on the relay's path at every answer)."""
# In a lower-cased head: each Content-Length given in digits, and each Transfer-Encoding (as b"").
_FRAMING: Final = re.compile(rb"\r\n(?:content-length[ \t]*:[ \t]*(\d+)[ \t]*(?=\r)|transfer-encoding)")
_BODILESS: Final = frozenset({204, 304})
TOTAL_TOKENS: Final = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
"""A body's usage figure, as token-rate reads it here and in the answers it parses (`tokens`)."""


_REQUEST_START: Final = re.compile(rb"[A-Z]{1,16} \S+ HTTP/1\.[01]\r?\n")
_TRACEPARENT: Final = re.compile(rb"\r\ntraceparent[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


def _request_start(data: bytes) -> bool:
    return _REQUEST_START.match(data) is not None


def _traceparent(data: bytes) -> bytes | None:
    end = data.find(b"\r\n\r\n")
    found = _TRACEPARENT.search(data, 0, len(data) if end < 0 else end + 2)
    return found.group(1) if found else None


def _glance(data: bytes) -> int:
    status = FINAL_STATUS_LINES.get(data[:13])
    if status is None or status in _BODILESS:
        return -1
    end = data.find(b"\r\n\r\n") + 2
    if end < 2:
        return -1
    found = _FRAMING.findall(data[:end].lower())
    # One Content-Length, no Transfer-Encoding, and a body of exactly that length.
    if len(found) != 1 or not found[0] or len(data) - end - 2 != int(found[0]):
        return -1
    return end


def _plain_head(data: bytes) -> bool:
    # (`find`, not `in`: bytes' `in` first tries its operand as an integer, at twice the cost.)
    return (
        data[:13] in FINAL_STATUS_LINES
        and (end := data.find(b"\r\n\r\n")) > 0
        and data[:end].lower().find(b"event-stream") < 0
    )


def _answer_tokens(data: bytes, end: int) -> int:
    if not 2 <= end <= len(data) - 2:
        raise ValueError("answer_tokens(): no head of that length")
    if data[:end].lower().find(b"\r\nx-ratelimit-") >= 0:
        return -1
    if data[9:10] != b"2":
        return 0
    usage = TOTAL_TOKENS.findall(data, end + 2)
    return int(usage[-1]) if usage else math.ceil((len(data) - end - 2) / 4)


request_start: Callable[[bytes], bool] = _request_start
"""Whether `data` begins with an HTTP/1.0 or 1.1 request line (a method of 1 to 16 capitals, a
target, the version, then LF or CRLF)."""

traceparent: Callable[[bytes], bytes | None] = _traceparent
"""The value of the first ``traceparent`` header (its name in any case) in the head `data` begins,
as it came (spaces and tabs after the colon left out), or None when it has none. A head not whole
in `data` is searched as far as it goes."""

glance: Callable[[bytes], int] = _glance
"""`data` seen as exactly one whole response whose body its `Content-Length` delimits: the length
of its head (status line and header lines, each ending in CRLF, without the blank line; its body
begins 2 bytes after), or -1 for anything else — an informational, 204 or 304 answer, a head not
whole, no Content-Length or more than one, a Transfer-Encoding, a body of another length. Nothing
else is read: what a request was (``HEAD``) is the caller's to know."""

answer_tokens: Callable[[bytes, int], int] = _answer_tokens
"""For token-rate, the answer `data` whose head `glance` found `end` bytes long: -1 if its head has
rate-limit headers of its own (``x-ratelimit-*``), else the tokens it costs — for a 2xx answer, the
last ``"total_tokens": N`` of its body, or a token a 4 bytes of body when there is none; 0 for
any other answer."""

plain_head: Callable[[bytes], bool] = _plain_head
"""Whether `data` begins with a final answer's whole head (a status of 200 or more) that does not
name an event stream anywhere, in any case: counting events, stream-cut passes such an answer
on as it came."""

COMPILED = False
"""Whether the searches above are their compiled twins."""
NOT_COMPILED_WHY = ""
"""When they are not, why."""

try:
    if os.environ.get("BASCULE_PURE_PYTHON"):  # to rule the compiled twins out, or to measure them
        raise ImportError("BASCULE_PURE_PYTHON is set")
    from bascule.targets.local.proxy import _scan
except ImportError:
    NOT_COMPILED_WHY = (
        "BASCULE_PURE_PYTHON is set"
        if os.environ.get("BASCULE_PURE_PYTHON")
        else "not built at install (`pip install -v -e .` says why: no C compiler, or no Python.h?)"
    )
else:
    request_start = _scan.request_start
    traceparent = _scan.traceparent
    glance = _scan.glance
    answer_tokens = _scan.answer_tokens
    plain_head = _scan.plain_head
    COMPILED = True
