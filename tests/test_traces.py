"""OpenTelemetry traces as a source of paths: OTLP/HTTP bodies decoded (protobuf and JSON, gzip or
not), spans attributed to the design's regions and undeclared hosts to their providers, and the
receiver fed by the real OpenTelemetry SDK and its OTLP/HTTP exporter."""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from bascule.journal import SpanKind, SpanRecord, SpanStatus, span_from_json, span_to_json
from bascule.model.catalog import Sovereignty
from bascule.model.design import Design
from bascule.model.endpoints import lookup_endpoint
from bascule.traces import Attributor, Encoding, TraceReceiver, WireSpan, decode_request, parse_media_type
from bascule.traces.decode import BodyTooLargeError, TraceDecodeError

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")


def design() -> Design:
    return Design.model_validate(
        {
            "id": "traced",
            "regions": [
                {"id": "aws/us-east-1"},
                {"id": "scaleway/fr-par"},
                {"id": "gcp/europe-west9"},
                {"id": "azure/francecentral"},
            ],
            "components": {
                "gateway": {"replicas": {"aws/us-east-1": 1, "scaleway/fr-par": 1}},
                "llm": {"replicas": {"scaleway/fr-par": 1}},
                "kv": {
                    "url": {"gcp/europe-west9": "http://10.1.2.3:9000"},
                    "replicas": {"gcp/europe-west9": 1},
                },
            },
        }
    )


def kv(key: str, value: object) -> KeyValue:
    out = KeyValue(key=key)
    if isinstance(value, bool):
        out.value.bool_value = value
    elif isinstance(value, int):
        out.value.int_value = value
    elif isinstance(value, float):
        out.value.double_value = value
    elif isinstance(value, bytes):
        out.value.bytes_value = value
    elif isinstance(value, list):
        out.value.array_value.values.extend(AnyValue(string_value=str(v)) for v in value)
    elif isinstance(value, dict):
        out.value.kvlist_value.values.extend(kv(k, v) for k, v in value.items())
    else:
        out.value.string_value = str(value)
    return out


def request(
    resource: Mapping[str, object],
    attributes: Mapping[str, object] = {},
    *,
    kind: int = Span.SPAN_KIND_SERVER,
    trace_id: bytes = TRACE,
    span_id: bytes = SPAN,
    parent: bytes = PARENT,
) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kv(k, v) for k, v in resource.items())
    ss = rs.scope_spans.add()
    ss.scope.name = "hand-built"
    span = ss.spans.add()
    span.trace_id, span.span_id, span.parent_span_id = trace_id, span_id, parent
    span.name, span.kind = "POST /v1/chat/completions", kind
    span.start_time_unix_nano, span.end_time_unix_nano = 1_700_000_000_000_000_000, 1_700_000_000_250_000_000
    span.status.code = Status.STATUS_CODE_ERROR
    span.status.message = "upstream 503"
    span.attributes.extend(kv(k, v) for k, v in attributes.items())
    return req


def wire(resource: Mapping[str, object], attributes: Mapping[str, object] = {}, **kw: Any) -> WireSpan:
    body = request(resource, attributes, **kw).SerializeToString()
    (span,) = decode_request(body, Encoding.PROTOBUF).spans
    return span


# -- decoding ----------------------------------------------------------------------------------


def test_a_protobuf_request_decodes_to_its_spans() -> None:
    req = request(
        {"service.name": "gateway", "cloud.provider": "aws", "cloud.region": "us-east-1"},
        {
            "http.response.status_code": 503,
            "retry": True,
            "weight": 0.5,
            "raw": b"\x01\x02",
            "hosts": ["a", "b"],
            "nested": {"k": "v"},
        },
        kind=Span.SPAN_KIND_CLIENT,
    )
    decoded = decode_request(req.SerializeToString(), Encoding.PROTOBUF)
    assert decoded.invalid == 0
    (span,) = decoded.spans
    assert span.trace_id == TRACE.hex() and span.span_id == SPAN.hex() and span.parent_span_id == PARENT.hex()
    assert span.kind is SpanKind.CLIENT and span.status is SpanStatus.ERROR
    assert span.status_message == "upstream 503" and span.scope == "hand-built"
    assert span.start_unix_nano == 1_700_000_000_000_000_000
    assert span.resource["cloud.region"] == "us-east-1"
    assert span.attributes == {
        "http.response.status_code": 503,
        "retry": True,
        "weight": 0.5,
        "raw": b"\x01\x02",
        "hosts": ("a", "b"),
        "nested": {"k": "v"},
    }


def test_a_root_span_has_no_parent_and_bad_ids_are_counted_not_kept() -> None:
    assert wire({}, parent=b"").parent_span_id is None
    req = request({})
    bad = req.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id, bad.span_id = b"\x00" * 16, SPAN
    short = req.resource_spans[0].scope_spans[0].spans.add()
    short.trace_id, short.span_id = TRACE, b"\x01"
    decoded = decode_request(req.SerializeToString(), Encoding.PROTOBUF)
    assert len(decoded.spans) == 1 and decoded.invalid == 2


def otlp_json(trace_id: str, span_id: str, parent: str, kind: object = 3) -> dict[str, Any]:
    # The shape of the OTLP specification's example (examples/trace.json): hex ids, integer enums,
    # 64-bit integers as strings.
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "llm"}},
                        {"key": "cloud.provider", "value": {"stringValue": "scaleway"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library", "version": "1.0.0"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": parent,
                                "name": "I'm a client span",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "kind": kind,
                                "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
                                "status": {"code": 1},
                                "someFutureField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("ids", "kind"),
    [
        ((TRACE.hex(), SPAN.hex(), PARENT.hex()), 3),
        ((TRACE.hex().upper(), SPAN.hex(), PARENT.hex()), 3),
        ((b64(TRACE), b64(SPAN), b64(PARENT)), 3),
        ((TRACE.hex(), SPAN.hex(), PARENT.hex()), "SPAN_KIND_CLIENT"),
    ],
    ids=["hex", "upper-case hex", "base64", "enum by name"],
)
def test_an_otlp_json_request_decodes_with_hex_or_base64_ids(ids: tuple[str, str, str], kind: object) -> None:
    body = json.dumps(otlp_json(*ids, kind=kind)).encode()
    (span,) = decode_request(body, Encoding.JSON).spans
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE.hex(), SPAN.hex(), PARENT.hex())
    assert span.kind is SpanKind.CLIENT and span.status is SpanStatus.OK
    assert span.start_unix_nano == 1544712660000000000
    assert span.attributes == {"http.status_code": 200}
    assert span.resource == {"service.name": "llm", "cloud.provider": "scaleway"}


def test_gzip_bodies_decode_and_are_bounded_once_inflated() -> None:
    raw = request({"service.name": "gateway"}).SerializeToString()
    (span,) = decode_request(gzip.compress(raw), Encoding.PROTOBUF, content_encoding="gzip").spans
    assert span.trace_id == TRACE.hex()
    body = json.dumps(otlp_json(TRACE.hex(), SPAN.hex(), "")).encode()
    (span,) = decode_request(gzip.compress(body), Encoding.JSON, content_encoding="GZIP").spans
    assert span.parent_span_id is None
    bomb = gzip.compress(b"\x00" * 1_000_000)
    with pytest.raises(BodyTooLargeError):
        decode_request(bomb, Encoding.PROTOBUF, content_encoding="gzip", max_inflated=100_000)


@pytest.mark.parametrize(
    ("body", "encoding", "content_encoding", "message"),
    [
        (b"\xff\xff\xff", Encoding.PROTOBUF, None, "not an OTLP protobuf"),
        (b"{not json", Encoding.JSON, None, "not an OTLP/JSON"),
        (b"[1, 2]", Encoding.JSON, None, "a JSON object"),
        (json.dumps(otlp_json("zz" * 16, SPAN.hex(), "")).encode(), Encoding.JSON, None, "is not hex"),
        (json.dumps({"resourceSpans": 3}).encode(), Encoding.JSON, None, "not an OTLP/JSON"),
        (b"plain", Encoding.PROTOBUF, "gzip", "not gzip"),
        (gzip.compress(b"x" * 100)[:-12], Encoding.PROTOBUF, "gzip", "cut short"),
        (b"", Encoding.PROTOBUF, "br", "unsupported Content-Encoding"),
    ],
)
def test_undecodable_bodies_are_refused_with_the_reason(
    body: bytes, encoding: Encoding, content_encoding: str | None, message: str
) -> None:
    with pytest.raises(TraceDecodeError, match=message):
        decode_request(body, encoding, content_encoding=content_encoding)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/x-protobuf", Encoding.PROTOBUF),
        ("application/protobuf", Encoding.PROTOBUF),
        ("Application/JSON; charset=utf-8", Encoding.JSON),
        ("text/plain", None),
        ("application/grpc", None),
        (None, None),
    ],
)
def test_media_types(content_type: str | None, expected: Encoding | None) -> None:
    assert parse_media_type(content_type) is expected


# -- attribution -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "region", "rule", "reason"),
    [
        ({"cloud.provider": "aws", "cloud.region": "us-east-1"}, "aws/us-east-1", "cloud.region", ""),
        ({"cloud.provider": "AWS", "cloud.region": "US-EAST-1"}, "aws/us-east-1", "cloud.region", ""),
        (
            {"cloud.provider": "aws", "cloud.availability_zone": "us-east-1b"},
            "aws/us-east-1",
            "cloud.region",
            "",
        ),
        (
            {"cloud.provider": "google", "cloud.region": "europe-west9"},
            "gcp/europe-west9",
            "cloud.region",
            "",
        ),
        (
            {"cloud.provider": "google_cloud", "cloud.region": "europe-west9-a"},
            "gcp/europe-west9",
            "cloud.region",
            "",
        ),
        (
            {"cloud.provider": "gcp", "cloud.region": "gcp/europe-west9"},
            "gcp/europe-west9",
            "cloud.region",
            "",
        ),
        (
            {"cloud.provider": "Microsoft", "cloud.region": "francecentral"},
            "azure/francecentral",
            "cloud.region",
            "",
        ),
        ({"cloud.provider": "scw", "cloud.region": "fr-par-2"}, "scaleway/fr-par", "cloud.region", ""),
        (
            {"cloud.provider": "aws", "cloud.region": "us-east-1", "service.name": "llm"},
            "aws/us-east-1",
            "cloud.region",
            "",
        ),
        ({"service.name": "llm"}, "scaleway/fr-par", "service.name", ""),
        ({"service.name": "kv"}, "gcp/europe-west9", "service.name", ""),
        ({"cloud.provider": "scaleway"}, "scaleway/fr-par", "cloud.provider", ""),
        ({"service.name": "gateway"}, None, "", "service.name 'gateway' runs in 2 regions"),
        ({"service.name": "billing"}, None, "", "service.name 'billing' is no component of the design"),
        ({}, None, "", "no cloud.provider; no service.name"),
        (
            {"cloud.provider": "aws", "cloud.region": "us-west-2"},
            None,
            "",
            "aws/us-west-2 (cloud.provider, cloud.region) is not a region of the design",
        ),
        (
            {"cloud.provider": "aws", "cloud.region": "US East", "service.name": "llm"},
            "scaleway/fr-par",
            "service.name",
            "",
        ),
        (
            {"cloud.provider": "oracle_cloud", "cloud.region": "eu-paris-1"},
            None,
            "",
            "is no region of the design",
        ),
        (
            {"cloud.provider": "ovh"},
            None,
            "",
            "cloud.provider=ovhcloud without cloud.region; the design has 0",
        ),
    ],
)
def test_a_span_is_attributed_to_a_region_of_the_design(
    resource: dict[str, object], region: str | None, rule: str, reason: str
) -> None:
    where = Attributor(design()).attribute(wire(resource))
    assert (where.region, where.attributed_by) == (region, rule)
    assert reason in where.reason
    assert bool(where.reason) is (region is None)
    if region is not None:
        r = design().region_map[region]
        assert (where.provider, where.jurisdiction, where.sovereignty) == (
            r.provider,
            r.jurisdiction,
            r.sovereignty.value,
        )


def test_a_span_from_a_catalog_region_outside_the_design_keeps_its_level() -> None:
    where = Attributor(design()).attribute(wire({"cloud.provider": "aws", "cloud.region": "eu-west-3"}))
    assert where.region is None
    assert (where.provider, where.jurisdiction, where.sovereignty) == ("aws", "EU", "exposed")


@pytest.mark.parametrize(
    ("attributes", "host", "provider", "jurisdiction", "level"),
    [
        (
            {"server.address": "sts.us-east-1.amazonaws.com"},
            "sts.us-east-1.amazonaws.com",
            "Amazon Web Services",
            "US",
            "foreign",
        ),
        (
            {"url.full": "https://api.mistral.ai/v1/chat/completions?key=s"},
            "api.mistral.ai",
            "Mistral AI",
            "EU",
            "sovereign",
        ),
        (
            {"http.url": "https://x.blob.core.windows.net/c"},
            "x.blob.core.windows.net",
            "Microsoft Azure",
            "US",
            "foreign",
        ),
        ({"net.peer.name": "intake.datadoghq.com"}, "intake.datadoghq.com", "Datadog", "US", "foreign"),
        ({"server.address": "tokens.example.org"}, "tokens.example.org", "", "", ""),
        ({"server.address": "93.184.216.34"}, "93.184.216.34", "", "", ""),
        ({"server.address": "127.0.0.1"}, None, "", "", ""),
        ({"server.address": "localhost"}, None, "", "", ""),
        ({"server.address": "::1"}, None, "", "", ""),
        ({"server.address": "retriever.aws-us-east-1.bascule.internal"}, None, "", "", ""),
        ({"server.address": "retriever--aws-us-east-1.rag.svc.cluster.local"}, None, "", "", ""),
        ({"server.address": "llm"}, None, "", "", ""),
        ({"url.full": "http://10.1.2.3:9000/get"}, None, "", "", ""),
        ({"server.address": "llm.example.com", "peer.service": "llm"}, None, "", "", ""),
        ({}, None, "", "", ""),
    ],
)
def test_a_client_span_to_a_host_the_design_does_not_declare_is_a_discovered_dependency(
    attributes: dict[str, object], host: str | None, provider: str, jurisdiction: str, level: str
) -> None:
    span = wire({"service.name": "llm"}, attributes, kind=Span.SPAN_KIND_CLIENT)
    where = Attributor(design()).attribute(span)
    assert where.region == "scaleway/fr-par"
    assert (where.host, where.host_provider, where.host_jurisdiction, where.host_sovereignty) == (
        host,
        provider,
        jurisdiction,
        level,
    )


def test_only_client_and_producer_spans_name_a_peer() -> None:
    attributes = {"server.address": "api.openai.com"}
    attributor = Attributor(design())
    assert attributor.attribute(wire({}, attributes, kind=Span.SPAN_KIND_SERVER)).host is None
    assert attributor.attribute(wire({}, attributes, kind=Span.SPAN_KIND_PRODUCER)).host == "api.openai.com"


@pytest.mark.parametrize(
    ("host", "provider", "jurisdiction", "level", "region"),
    [
        ("s3.eu-west-3.amazonaws.com", "aws", "EU", Sovereignty.EXPOSED, "aws/eu-west-3"),
        ("bedrock-runtime.us-east-1.amazonaws.com", "aws", "US", Sovereignty.FOREIGN, "aws/us-east-1"),
        ("lambda-url.us-east-1.on.aws", "aws", "US", Sovereignty.FOREIGN, "aws/us-east-1"),
        ("oauth2.googleapis.com", "gcp", "US", Sovereignty.FOREIGN, None),
        ("europe-west9-aiplatform.googleapis.com", "gcp", "EU", Sovereignty.EXPOSED, "gcp/europe-west9"),
        ("login.microsoftonline.com", "azure", "US", Sovereignty.FOREIGN, None),
        ("myvault.vault.azure.net", "azure", "US", Sovereignty.FOREIGN, None),
        ("s3.fr-par.scw.cloud", "scaleway", "EU", Sovereignty.SOVEREIGN, "scaleway/fr-par"),
        ("api.scaleway.com", "scaleway", "EU", Sovereignty.SOVEREIGN, None),
        ("storage.gra.cloud.ovh.net", "ovhcloud", "EU", Sovereignty.SOVEREIGN, "ovhcloud/gra"),
        ("www.ovhcloud.com", "ovhcloud", "EU", Sovereignty.SOVEREIGN, None),
        ("app-1.cleverapps.io", "clever-cloud", "EU", Sovereignty.SOVEREIGN, None),
        ("api.clever-cloud.com", "clever-cloud", "EU", Sovereignty.SOVEREIGN, None),
        ("API.MISTRAL.AI.", "mistral", "EU", Sovereignty.SOVEREIGN, None),
        ("storage.s3nsapis.fr", "s3ns", "EU", Sovereignty.TRUSTED, None),
        ("kms.s3ns.example", "s3ns", "EU", Sovereignty.TRUSTED, None),
        ("tokens.bleu.example", "bleu", "EU", Sovereignty.TRUSTED, None),
        ("tokens.gcp.example.net", "gcp", "US", Sovereignty.FOREIGN, None),
    ],
)
def test_the_provider_endpoint_catalog(
    host: str, provider: str, jurisdiction: str, level: Sovereignty, region: str | None
) -> None:
    owner = lookup_endpoint(host)
    assert owner is not None
    assert (owner.provider, owner.jurisdiction, owner.sovereignty, owner.region) == (
        provider,
        jurisdiction,
        level,
        region,
    )


@pytest.mark.parametrize(
    "host", ["notamazonaws.com", "example.org", "10.0.0.1", "[2001:db8::1]", "", "awsome.example"]
)
def test_a_host_the_catalog_does_not_know(host: str) -> None:
    assert lookup_endpoint(host) is None


def test_a_span_record_maps_unix_time_to_the_monotonic_clock_and_keeps_no_secrets() -> None:
    span = wire(
        {"service.name": "gateway", "cloud.provider": "aws", "cloud.region": "us-east-1", "host.name": "h"},
        {
            "url.full": "https://user:pw@api.mistral.ai:8443/v1/chat?api_key=secret",
            "http.response.status_code": 503,
            "http.request.body": "a confidential question",
            "bascule.data_class": "confidential",
        },
        kind=Span.SPAN_KIND_CLIENT,
    )
    offset_ns = 1_699_999_000_000_000_000
    record = Attributor(design()).record(span, offset_ns)
    assert record.started == pytest.approx(1000.0) and record.duration == pytest.approx(0.25)
    assert record.http_status == 503 and record.status is SpanStatus.ERROR
    assert record.attribute("url.full") == "https://api.mistral.ai:8443/v1/chat"
    assert record.attribute("http.request.body") is None and record.attribute("host.name") is None
    assert record.attribute("bascule.data_class") == "confidential"
    assert (record.region, record.host, record.host_provider) == (
        "aws/us-east-1",
        "api.mistral.ai",
        "Mistral AI",
    )
    assert span_from_json(json.loads(json.dumps(span_to_json(record)))) == record


# -- the receiver, fed by the real OpenTelemetry SDK ----------------------------------------------


@pytest.fixture
def receiver() -> Iterator[TraceReceiver]:
    with TraceReceiver(design()) as r:
        yield r


def tracer_provider(endpoint: str, resource: Mapping[str, str], **exporter: Any) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create(dict(resource)))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, **exporter)))
    return provider


def test_spans_exported_by_the_sdk_arrive_attributed(receiver: TraceReceiver) -> None:
    aws = tracer_provider(
        receiver.traces_url,
        {"service.name": "gateway", "cloud.provider": "aws", "cloud.region": "us-east-1"},
    )
    par = tracer_provider(
        receiver.traces_url,
        {"service.name": "llm", "cloud.provider": "scaleway", "cloud.region": "fr-par"},
        compression=Compression.Gzip,
    )
    before = time.monotonic()
    gateway, llm = aws.get_tracer("gateway"), par.get_tracer("llm")
    with (
        gateway.start_as_current_span("ask", kind=trace.SpanKind.SERVER) as root,
        gateway.start_as_current_span("call llm", kind=trace.SpanKind.CLIENT) as call,
    ):
        headers: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(headers)
        # The llm's server span continues the trace from the traceparent header it was sent.
        with (
            llm.start_as_current_span(
                "chat", context=TraceContextTextMapPropagator().extract(headers), kind=trace.SpanKind.SERVER
            ) as chat,
            llm.start_as_current_span(
                "token",
                kind=trace.SpanKind.CLIENT,
                attributes={"server.address": "sts.us-east-1.amazonaws.com"},
            ),
        ):
            chat.set_status(trace.StatusCode.ERROR)
    after = time.monotonic()
    aws.shutdown()
    par.shutdown()

    spans = {s.name: s for s in receiver.poll()}
    assert set(spans) == {"ask", "call llm", "chat", "token"}
    trace_id = format(root.get_span_context().trace_id, "032x")
    assert {s.trace_id for s in spans.values()} == {trace_id}
    assert spans["ask"].parent_span_id is None
    assert (
        spans["call llm"].parent_span_id
        == spans["ask"].span_id
        == format(root.get_span_context().span_id, "016x")
    )
    assert (
        spans["chat"].parent_span_id
        == spans["call llm"].span_id
        == format(call.get_span_context().span_id, "016x")
    )
    assert spans["token"].parent_span_id == format(chat.get_span_context().span_id, "016x")
    assert [spans[n].region for n in ("ask", "call llm", "chat", "token")] == [
        "aws/us-east-1",
        "aws/us-east-1",
        "scaleway/fr-par",
        "scaleway/fr-par",
    ]
    assert (spans["chat"].sovereignty, spans["chat"].service_name, spans["chat"].status) == (
        "sovereign",
        "llm",
        SpanStatus.ERROR,
    )
    assert spans["call llm"].kind is SpanKind.CLIENT and spans["call llm"].host is None
    assert (spans["token"].host, spans["token"].host_jurisdiction) == ("sts.us-east-1.amazonaws.com", "US")
    for span in spans.values():
        assert before - 0.05 <= span.started <= span.ended <= after + 0.05
    assert spans["ask"].started <= spans["chat"].started <= spans["chat"].ended <= spans["ask"].ended
    counts = receiver.counts
    assert (counts.requests, counts.spans, counts.dropped, counts.unattributed, counts.refused) == (
        4,
        4,
        0,
        0,
        0,
    )
    assert receiver.poll() == []


def test_the_base_endpoint_is_what_otel_exporter_otlp_endpoint_takes(
    receiver: TraceReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "cloud.provider=gcp,cloud.region=europe-west9")
    provider = TracerProvider(resource=Resource.create({"service.name": "unknown"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    with provider.get_tracer("t").start_as_current_span("work"):
        pass
    provider.shutdown()
    (span,) = receiver.poll()
    assert (span.region, span.attributed_by, span.attribute("cloud.region")) == (
        "gcp/europe-west9",
        "cloud.region",
        "europe-west9",
    )


def test_unattributed_spans_are_counted(receiver: TraceReceiver) -> None:
    provider = tracer_provider(receiver.traces_url, {"service.name": "gateway"})
    with provider.get_tracer("t").start_as_current_span("work"):
        pass
    provider.shutdown()
    (span,) = receiver.poll()
    assert span.region is None and "runs in 2 regions" in span.reason
    assert receiver.counts.unattributed == 1


def post(
    receiver: TraceReceiver, body: bytes, content_type: str, path: str = "/v1/traces", **headers: str
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def test_a_json_request_gets_a_json_answer(receiver: TraceReceiver) -> None:
    body = json.dumps(otlp_json(TRACE.hex(), SPAN.hex(), "")).encode()
    status, content_type, answer = post(receiver, body, "application/json")
    assert (status, content_type, json.loads(answer)) == (200, "application/json", {})
    (span,) = receiver.poll()
    assert (span.trace_id, span.region, span.attributed_by) == (
        TRACE.hex(),
        "scaleway/fr-par",
        "service.name",
    )


def test_a_protobuf_request_gets_an_empty_export_response(receiver: TraceReceiver) -> None:
    body = request({"service.name": "llm"}).SerializeToString()
    status, content_type, answer = post(receiver, body, "application/x-protobuf")
    assert (status, content_type) == (200, "application/x-protobuf")
    response = ExportTraceServiceResponse()
    response.ParseFromString(answer)
    assert not response.HasField("partial_success")


@pytest.mark.parametrize(
    ("body", "content_type", "path", "status"),
    [
        (b"{}", "text/plain", "/v1/traces", 415),
        (b"{}", "application/grpc", "/v1/traces", 415),
        (b"\xff\xff\xff", "application/x-protobuf", "/v1/traces", 400),
        (b"{", "application/json", "/v1/traces", 400),
        (b"{}", "application/json", "/v1/metrics", 404),
        (b"{}", "application/json; content-encoding=br", "/v1/traces", 415),
    ],
)
def test_requests_that_are_not_trace_exports_are_refused(
    receiver: TraceReceiver, body: bytes, content_type: str, path: str, status: int
) -> None:
    content_type, _, coding = content_type.partition("; content-encoding=")
    headers = {"Content-Encoding": coding} if coding else {}
    got, _, answer = post(receiver, body, content_type, path, **headers)
    assert got == status and answer
    assert receiver.counts.refused == 1 and receiver.counts.requests == 0
    assert receiver.poll() == []


def test_a_body_over_the_bound_is_refused_before_it_is_decoded() -> None:
    with TraceReceiver(design(), max_body=2048) as receiver:
        spans = [request({"service.name": "llm", "padding": "x" * 4096})]
        status, _, answer = post(receiver, spans[0].SerializeToString(), "application/x-protobuf")
        assert status == 413 and b"2048" in answer
        small = request({"service.name": "llm"}).SerializeToString()
        bomb = gzip.compress(small + b"\x00" * 100_000)
        assert len(bomb) < 2048
        status, _, _ = post(receiver, bomb, "application/x-protobuf", **{"Content-Encoding": "gzip"})
        assert status == 413
        assert receiver.counts.refused == 2 and receiver.poll() == []


def test_a_full_queue_drops_and_counts_but_still_answers() -> None:
    with TraceReceiver(design(), max_queue=2) as receiver:
        req = request({"service.name": "llm"})
        for i in range(2):
            extra = req.resource_spans[0].scope_spans[0].spans.add()
            extra.CopyFrom(req.resource_spans[0].scope_spans[0].spans[0])
            extra.span_id = bytes([i + 1]) * 8
        status, _, answer = post(receiver, req.SerializeToString(), "application/x-protobuf")
        assert status == 200
        response = ExportTraceServiceResponse()
        response.ParseFromString(answer)
        assert response.partial_success.rejected_spans == 1
        assert (receiver.counts.spans, receiver.counts.dropped) == (3, 1)
        assert len(receiver.poll()) == 2


def test_stop_frees_the_port_even_with_a_connection_kept_open() -> None:
    receiver = TraceReceiver(design())
    receiver.start()
    port = receiver.port
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    idle.request("POST", "/v1/traces", body=b"", headers={"Content-Type": "application/x-protobuf"})
    assert idle.getresponse().read() == b""
    receiver.stop()
    receiver.stop()
    assert idle.sock is not None
    idle.sock.settimeout(2)
    assert idle.sock.recv(1) == b"", "the kept-alive connection is closed by stop()"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with TraceReceiver(design(), port=port) as again:
        assert again.port == port
    idle.close()
    with pytest.raises(RuntimeError):
        _ = receiver.endpoint


def test_a_span_record_round_trips_through_json() -> None:
    record = SpanRecord(
        trace_id=TRACE.hex(),
        span_id=SPAN.hex(),
        parent_span_id=None,
        name="ask",
        kind=SpanKind.SERVER,
        service_name="gateway",
        started=1.0,
        ended=1.5,
        status=SpanStatus.OK,
        attributes=(("cloud.region", "us-east-1"),),
        region="aws/us-east-1",
        provider="aws",
        jurisdiction="US",
        sovereignty="foreign",
        attributed_by="cloud.region",
    )
    data = span_to_json(record)
    assert data["kind"] == "server" and data["attributes"] == {"cloud.region": "us-east-1"}
    assert span_from_json(json.loads(json.dumps(data))) == record
