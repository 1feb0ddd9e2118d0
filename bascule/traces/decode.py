"""OTLP/HTTP trace request bodies → spans, as they came: ids in hex, unix-nano times, resource
and span attributes as Python values. Pure: bytes in, spans out.

Two encodings (the OTLP specification, "OTLP/HTTP"): binary protobuf (``application/x-protobuf``),
an ``ExportTraceServiceRequest`` of the official ``opentelemetry-proto`` wire types; and OTLP/JSON
(``application/json``), the protobuf JSON mapping with OTLP's exceptions — trace and span ids are
hex strings, not base64 (base64 ids, as a generic protobuf JSON encoder writes them, are accepted
too: a 16-byte trace id is 32 characters in hex and 24 in base64, so the length tells them apart),
and enums are integers (names are accepted too). Either may be gzip-compressed
(``Content-Encoding: gzip``); the inflated size is bounded.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from bascule.journal.spans import SpanKind, SpanStatus

__all__ = [
    "AttributeValue",
    "BodyTooLargeError",
    "Decoded",
    "Encoding",
    "TraceDecodeError",
    "WireSpan",
    "attribute_text",
    "decode_request",
    "parse_media_type",
]

AttributeValue = (
    str | bool | int | float | bytes | tuple["AttributeValue", ...] | dict[str, "AttributeValue"] | None
)


class TraceDecodeError(ValueError):
    """A body that is not a trace export request in the encoding it claims."""


class BodyTooLargeError(TraceDecodeError):
    """A compressed body that inflates beyond the bound."""


class Encoding(StrEnum):
    PROTOBUF = "protobuf"
    JSON = "json"


_MEDIA_TYPES = {
    "application/x-protobuf": Encoding.PROTOBUF,
    "application/protobuf": Encoding.PROTOBUF,
    "application/json": Encoding.JSON,
}


def parse_media_type(content_type: str | None) -> Encoding | None:
    """``application/json; charset=utf-8`` → JSON; None for a type OTLP/HTTP does not use."""
    if not content_type:
        return None
    return _MEDIA_TYPES.get(content_type.split(";", 1)[0].strip().lower())


@dataclass(frozen=True)
class WireSpan:
    """A span as the request carried it."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: SpanKind
    start_unix_nano: int
    end_unix_nano: int
    status: SpanStatus
    status_message: str
    resource: Mapping[str, AttributeValue]
    attributes: Mapping[str, AttributeValue]
    scope: str = ""


@dataclass(frozen=True)
class Decoded:
    """The valid spans of a request, and how many it carried that were not (bad trace or span id)."""

    spans: tuple[WireSpan, ...]
    invalid: int = 0


def decode_request(
    body: bytes, encoding: Encoding, *, content_encoding: str | None = None, max_inflated: int = 64 << 20
) -> Decoded:
    """The spans of an ``ExportTraceServiceRequest`` body. Raises `TraceDecodeError` (or
    `BodyTooLargeError`) for a body that cannot be read."""
    raw = _inflate(body, content_encoding, max_inflated)
    request = ExportTraceServiceRequest()
    if encoding is Encoding.PROTOBUF:
        try:
            request.ParseFromString(raw)
        except ProtobufDecodeError as exc:
            raise TraceDecodeError(f"not an OTLP protobuf trace request: {exc}") from exc
    else:
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise TraceDecodeError("an OTLP/JSON trace request is a JSON object")
            json_format.ParseDict(_ids_to_base64(document), request, ignore_unknown_fields=True)
        except (ValueError, json_format.ParseError) as exc:
            if isinstance(exc, TraceDecodeError):
                raise
            raise TraceDecodeError(f"not an OTLP/JSON trace request: {exc}") from exc
    return _spans(request)


def _inflate(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    if coding != "gzip":
        raise TraceDecodeError(f"unsupported Content-Encoding {content_encoding!r} (gzip or none)")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise TraceDecodeError(f"not gzip: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLargeError(f"the body inflates beyond {limit} bytes")
    if not inflater.eof:
        raise TraceDecodeError("gzip stream cut short")
    return out


_ID_KEYS = {
    "traceId": 32,
    "spanId": 16,
    "parentSpanId": 16,
    "trace_id": 32,
    "span_id": 16,
    "parent_span_id": 16,
}


def _ids_to_base64(value: Any) -> Any:
    # OTLP/JSON writes ids in hex; protobuf's JSON mapping (json_format) reads bytes as base64.
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _ID_KEYS and isinstance(item, str) and len(item) == _ID_KEYS[key]:
                try:
                    out[key] = base64.b64encode(bytes.fromhex(item)).decode("ascii")
                except ValueError as exc:
                    raise TraceDecodeError(f"{key} {item!r} is not hex") from exc
            else:
                out[key] = _ids_to_base64(item)
        return out
    if isinstance(value, list):
        return [_ids_to_base64(item) for item in value]
    return value


_KINDS = {
    Span.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    Span.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    Span.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}


def _spans(request: ExportTraceServiceRequest) -> Decoded:
    spans: list[WireSpan] = []
    invalid = 0
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(span.trace_id):
                    invalid += 1
                    continue
                parent = span.parent_span_id
                spans.append(
                    WireSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=parent.hex() if len(parent) == 8 and any(parent) else None,
                        name=span.name,
                        kind=_KINDS.get(span.kind, SpanKind.UNSPECIFIED),
                        start_unix_nano=span.start_time_unix_nano,
                        end_unix_nano=span.end_time_unix_nano,
                        status=SpanStatus.ERROR
                        if span.status.code == Status.STATUS_CODE_ERROR
                        else SpanStatus.OK,
                        status_message=span.status.message,
                        resource=resource,
                        attributes=_attributes(span.attributes),
                        scope=scope_spans.scope.name,
                    )
                )
    return Decoded(tuple(spans), invalid)


def _attributes(items: Sequence[KeyValue]) -> dict[str, AttributeValue]:
    return {item.key: _value(item.value) for item in items}


def _value(value: AnyValue) -> AttributeValue:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bytes_value":
        return value.bytes_value
    if which == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None


def attribute_text(value: AttributeValue) -> str:
    """An attribute value as one line of text (arrays joined by commas)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return binascii.hexlify(value).decode("ascii")
    if isinstance(value, tuple):
        return ",".join(attribute_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps({k: attribute_text(v) for k, v in value.items()}, sort_keys=True)
    return "" if value is None else str(value)
