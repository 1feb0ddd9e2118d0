"""W3C Trace Context (https://www.w3.org/TR/trace-context/) as bascule uses it: every request that
load and probes send carries a ``traceparent`` whose trace id is the request's id, so that the hops
the fault plane relays, and the spans a service exports over OTLP, can be tied back to the request
that caused them. Pure.

    trace_id = new_trace_id()
    headers = {"traceparent": traceparent(trace_id)}
    parse_traceparent(headers["traceparent"]) == trace_id
"""

from __future__ import annotations

import re
import secrets
from typing import Final

__all__ = ["TRACEPARENT", "new_span_id", "new_trace_id", "parse_traceparent", "traceparent"]

TRACEPARENT: Final = "traceparent"
_INVALID_TRACE: Final = "0" * 32
_INVALID_SPAN: Final = "0" * 16
# version-traceid-parentid-flags; a future version may append fields after the flags.
_HEADER: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


def new_trace_id() -> str:
    """A random, valid trace id: 32 lowercase hex digits, not all zero."""
    while True:
        value = secrets.token_hex(16)
        if value != _INVALID_TRACE:
            return value


def new_span_id() -> str:
    while True:
        value = secrets.token_hex(8)
        if value != _INVALID_SPAN:
            return value


def traceparent(trace_id: str, span_id: str | None = None, *, sampled: bool = True) -> str:
    """The ``traceparent`` header of a request of trace ``trace_id`` (a new span id unless given)."""
    return f"00-{trace_id}-{span_id or new_span_id()}-{'01' if sampled else '00'}"


def parse_traceparent(value: str | bytes | None) -> str | None:
    """The trace id a ``traceparent`` header carries, or None when it is absent or not valid (the
    specification says to ignore such a header, and so does bascule)."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    match = _HEADER.fullmatch(text.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _INVALID_TRACE or span_id == _INVALID_SPAN:
        return None
    return trace_id
