"""The reference stack's trace context: every service passes the incoming ``traceparent`` on to the
calls it makes, and with the OpenTelemetry variables set exports one server span per request, with
the resource attributes that tell where it ran, to an OTLP receiver (here bascule's own)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bascule.journal import SpanKind
from bascule.model.loading import read_design
from bascule.stack import tracing
from bascule.stack.service import ServedBy, create_service_app
from bascule.tracecontext import new_trace_id, parse_traceparent, traceparent
from bascule.traces import TraceReceiver

ROOT = Path(__file__).resolve().parent.parent
DESIGN = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")


async def ask(request: Request) -> JSONResponse:
    return JSONResponse({"outgoing": tracing.outgoing_traceparent()})


def app() -> TestClient:
    served = ServedBy("retriever", "scaleway/fr-par", "retriever-scaleway-fr-par-0")
    return TestClient(create_service_app([Route("/v1/ask", ask, methods=["POST"])], served_by=served))


@pytest.fixture
def no_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (*tracing.ENDPOINT_VARIABLES, "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    tracing.stop_tracing()
    yield
    tracing.stop_tracing()


def test_without_an_exporter_the_incoming_traceparent_is_passed_on_as_it_came(no_tracing: None) -> None:
    header = traceparent(new_trace_id())
    with app() as client:
        assert client.post("/v1/ask", headers={"traceparent": header}).json() == {"outgoing": header}
        assert client.post("/v1/ask").json() == {"outgoing": None}
    assert tracing._state.tracer is None


def test_exporting_is_asked_by_the_standard_variables() -> None:
    assert tracing.exporting_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.exporting_requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing.exporting_requested({})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing.exporting_requested({**on, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.exporting_requested({**on, "OTEL_TRACES_EXPORTER": "none"})


def test_with_an_exporter_each_request_is_a_server_span_of_its_trace_attributed_where_it_ran(
    no_tracing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TraceReceiver(DESIGN) as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
        trace_id = new_trace_id()
        incoming = traceparent(trace_id)
        with app() as client:
            answer = client.post("/v1/ask", headers={"traceparent": incoming}).json()
            assert client.get("/readyz").status_code == 200  # health checks make no span
        outgoing = answer["outgoing"]
        # The call it makes continues the trace, with its server span as the parent.
        assert parse_traceparent(outgoing) == trace_id and outgoing.split("-")[2] != incoming.split("-")[2]
        tracing.stop_tracing()  # flushes what is batched
        spans = []
        deadline = time.monotonic() + 10.0
        while not spans and time.monotonic() < deadline:
            spans = receiver.poll()
            time.sleep(0.05)
    (span,) = spans
    assert span.trace_id == trace_id and span.parent_span_id == incoming.split("-")[2]
    assert span.span_id == outgoing.split("-")[2]
    assert span.kind is SpanKind.SERVER and span.service_name == "retriever"
    assert (span.region, span.attributed_by, span.sovereignty) == (
        "scaleway/fr-par",
        "cloud.region",
        "sovereign",
    )
    assert span.http_status == 200
    assert span.attribute("service.instance.id") == "retriever-scaleway-fr-par-0"


def test_asked_for_spans_without_the_sdk_a_service_says_how_to_get_it(
    no_tracing: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    with pytest.raises(SystemExit) as exited:
        tracing.start_tracing("llm", "scaleway/fr-par", "llm-0", env)
    message = str(exited.value.code)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT asks for OpenTelemetry spans" in message
    assert "pip install 'bascule[otel]'" in message
    assert tracing._state.tracer is None


def test_background_work_started_while_serving_a_request_carries_no_trace_of_it(no_tracing: None) -> None:
    """A breaker's trial call is launched by whichever request comes by: started in that request's
    context it named its trace, and a confidential request was seen reaching a foreign region."""
    seen: list[str | None] = []

    async def trial() -> None:
        seen.append(tracing.outgoing_traceparent())

    async def serving() -> None:
        tracing._incoming.set(traceparent(new_trace_id()))
        assert tracing.outgoing_traceparent() is not None
        await tracing.detached(trial())

    asyncio.run(serving())
    assert seen == [None]
