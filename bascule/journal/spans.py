"""What an OpenTelemetry span tells about a request, once bascule has judged where it ran: one
record per span received over OTLP (``bascule.traces``), in the shape the journal and the metrics
read. Pure data.

Times are ``time.monotonic()`` seconds, like every sample of the journal. Spans carry unix
nanoseconds; the receiver records, once when it starts, the offset between ``time.time_ns()`` and
``time.monotonic_ns()``, and maps ``t_mono = (unix_nano - offset) / 1e9``. A span stamped by a
clock that is off by δ lands δ off: on one machine that is nothing; across machines it is their
clock skew.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

__all__ = ["SpanKind", "SpanRecord", "SpanStatus", "span_from_json", "span_to_json"]


class SpanKind(StrEnum):
    """OpenTelemetry's span kinds: a ``server`` span served a request, a ``client`` span made one."""

    UNSPECIFIED = "unspecified"
    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class SpanStatus(StrEnum):
    """``error`` when the span's status code is ERROR; ``ok`` when it is OK or unset (OpenTelemetry
    leaves success unset)."""

    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class SpanRecord:
    """One span received over OTLP, with the region of the design it was attributed to."""

    trace_id: str
    """32 lower-case hex digits: the W3C trace id the request's spans share."""
    span_id: str
    """16 lower-case hex digits."""
    parent_span_id: str | None
    name: str
    kind: SpanKind
    service_name: str
    started: float
    """``time.monotonic()`` seconds (see the module docstring for the mapping from unix time)."""
    ended: float
    status: SpanStatus
    http_status: int | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    """The resource and span attributes that say where and what (``cloud.*``, ``server.address``,
    ``http.route``…), as text, sorted by key; ``url.full`` without its query or credentials."""
    region: str | None = None
    """The design's region the span ran in; None when it could not be told (see ``reason``)."""
    provider: str = ""
    jurisdiction: str = ""
    sovereignty: str = ""
    """Of ``region`` — or, when the span names a region outside the design, of that region."""
    attributed_by: str = ""
    """The rule that told the region: ``cloud.region``, ``service.name`` or ``cloud.provider``."""
    reason: str = ""
    """Why ``region`` is None, in a sentence."""
    host: str | None = None
    """For a client span: the peer host it called, when the design does not declare it."""
    host_provider: str = ""
    host_jurisdiction: str = ""
    host_sovereignty: str = ""
    """Of ``host``, as the provider endpoint catalog (``bascule.model.endpoints``) tells; empty
    when it cannot."""
    outside: str = ""
    """The catalog region the span named when it is none of the design's (``aws/us-west-2``): a
    hop there all the same, held to that region's level (``provider``, ``jurisdiction``,
    ``sovereignty``)."""

    @property
    def duration(self) -> float:
        return self.ended - self.started

    def attribute(self, key: str) -> str | None:
        return next((value for k, value in self.attributes if k == key), None)


def span_to_json(span: SpanRecord) -> dict[str, Any]:
    data = asdict(span)
    data["kind"] = span.kind.value
    data["status"] = span.status.value
    data["attributes"] = dict(span.attributes)
    return data


def span_from_json(data: Mapping[str, Any]) -> SpanRecord:
    fields = {k: v for k, v in data.items() if k in SpanRecord.__dataclass_fields__}
    fields["kind"] = SpanKind(fields.get("kind", SpanKind.UNSPECIFIED))
    fields["status"] = SpanStatus(fields.get("status", SpanStatus.OK))
    attributes = fields.get("attributes") or {}
    fields["attributes"] = tuple(sorted((str(k), str(v)) for k, v in dict(attributes).items()))
    return SpanRecord(**fields)
