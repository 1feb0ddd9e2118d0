"""The run's timeline as OpenTelemetry spans (`bascule.traces.timeline`): the spans a journal makes
(pure), and runs on the fake target sending them with the real OpenTelemetry SDK and OTLP/HTTP
exporter to a collector decoded here with the official wire types — the spans' instants are the
journal's; a collector that is down, hangs or refuses costs the run nothing but one warning."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from rich.console import Console

from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.journal import read_journal
from bascule.runner.run import RunOptions, RunOutcome, run_scenario
from bascule.traces.timeline import (
    EXPORT_TIMEOUT,
    TimelineExport,
    timeline_spans,
    traces_endpoint,
)
from tests.test_run_logic import ERRORS, LATENCY, fake, fake_registered, files, scenario  # noqa: F401

# --- a collector ---------------------------------------------------------------------------------


class Collector:
    """An OTLP/HTTP endpoint keeping every span it is sent (protobuf, decoded with the official types)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        kept = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                kept.paths.append(self.path)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    kept.resources.append(attributes(resource_spans.resource.attributes))
                    for scope_spans in resource_spans.scope_spans:
                        kept.spans.extend(scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    thread = threading.Thread(target=found.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: value(pair.value) for pair in pairs}


def run(tmp_path: Path, text: str, url: str) -> tuple[RunOutcome, list[dict[str, Any]]]:
    options = RunOptions(files(tmp_path, text), fake(), out=tmp_path / "run", quiet=True, otlp_timeline=url)
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(options, console=Console(file=sink))
    return outcome, list(read_journal(outcome.run_dir / "journal.jsonl"))


def offsets(span: Span, root: Span) -> tuple[float, float]:
    return (span.start_time_unix_nano - root.start_time_unix_nano) / 1e9, (
        span.end_time_unix_nano - root.start_time_unix_nano
    ) / 1e9


# --- records → spans ---------------------------------------------------------------------------


def record(record_type: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"type": record_type, "t": t, "wall": "2026-12-02T23:00:00.000+00:00", **fields}


PLAN = {
    "phases": [
        {"index": 0, "name": "flapping", "kind": "flap", "target": "region=aws/us-east-1"},
        {"index": 1, "name": "slow", "kind": "latency", "target": "component=llm"},
        {"index": 2, "name": "never", "kind": "crash", "target": "component=store"},
    ]
}
RECORDS = [
    record(
        "run-started",
        0.0,
        scenario={"id": "s", "title": "T"},
        design={"id": "d"},
        plan=PLAN,
        options={"target": "local"},
    ),
    record("target-started", 1.5),
    record("window", 2.0),
    record("hypothesis", 3.0, when="before", ok=True, summary="ok"),
    record("plan-started", 3.1, run_length=10.0),
    record("fault-applied", 3.2, phase=0, name="flapping", kind="flap", cycle=0, effects=["a", "b"]),
    record("fault-applied", 3.3, phase=1, name="slow", kind="latency", cycle=None),
    record("fault-reverted", 4.2, phase=0, name="flapping", kind="flap", cycle=0),
    record("fault-applied", 5.2, phase=0, name="flapping", kind="flap", cycle=1),
    record("guardrail-tripped", 5.5, guardrail="success-ratio", reason="too low", window_end=2.4),
    record("fault-reverted", 5.9, key="run-7f3a/p0.c1", kind="flap", rollback=True),
    record("fault-reverted", 6.0, key="run-7f3a/p1", kind="latency", rollback=True),
    record("run-ended", 7.0, exit_code=3, reason="guardrail success-ratio: too low"),
]


def test_a_journal_makes_a_run_span_its_stages_and_a_span_per_phase_with_its_transitions() -> None:
    spans = timeline_spans(RECORDS)
    names = [s.name for s in spans]
    assert names == [
        "bascule run s",
        "start the target",
        "warm-up and steady state",
        "phase: flapping",
        "phase: slow",
    ]
    run_span, start, warm, flap, slow = spans
    assert (run_span.start, run_span.end, run_span.parent) == (0.0, 7.0, None)
    assert run_span.error == "guardrail success-ratio: too low"
    assert run_span.attributes["bascule.exit_code"] == 3 and run_span.attributes["bascule.design"] == "d"
    assert [(e.name, e.t) for e in run_span.events] == [
        ("hypothesis", 3.0),
        ("plan-started", 3.1),
        ("guardrail-tripped", 5.5),
    ]
    assert run_span.events[2].attributes["bascule.guardrail.reason"] == "too low"
    assert (start.start, start.end, warm.start, warm.end) == (0.0, 1.5, 1.5, 3.1)
    # A flap: from its first application to its last revert (here the rollback's, by key).
    assert (flap.start, flap.end, flap.error) == (3.2, 5.9, None)
    assert [(e.name, e.t) for e in flap.events] == [
        ("fault-applied", 3.2),
        ("fault-reverted", 4.2),
        ("fault-applied", 5.2),
        ("fault-reverted", 5.9),
    ]
    assert flap.events[0].attributes["bascule.fault.effects"] == ["a", "b"]
    assert flap.events[3].attributes["bascule.fault.rollback"] is True
    assert flap.attributes["bascule.phase.target"] == "region=aws/us-east-1"
    assert (slow.start, slow.end) == (3.3, 6.0)
    assert all(s.parent == 0 for s in spans[1:])


def test_a_phase_still_in_force_ends_with_the_run_and_says_so() -> None:
    cut = [r for r in RECORDS if r.get("key") != "run-7f3a/p1"]
    slow = timeline_spans(cut)[-1]
    assert (slow.name, slow.end, slow.error) == ("phase: slow", 7.0, "never reverted in this journal")
    unfinished = timeline_spans([r for r in RECORDS if r["type"] != "run-ended"])[0]
    assert unfinished.end == 6.0 and unfinished.error == "the run did not end (no run-ended record)"
    assert timeline_spans(RECORDS[1:]) == []


def test_the_endpoint_is_a_base_url_or_a_traces_url() -> None:
    assert traces_endpoint("http://127.0.0.1:4318") == "http://127.0.0.1:4318/v1/traces"
    assert traces_endpoint("http://c:4318/") == "http://c:4318/v1/traces"
    assert traces_endpoint("https://c/otlp/v1/traces") == "https://c/otlp/v1/traces"
    with pytest.raises(ValueError, match="not an http"):
        traces_endpoint("127.0.0.1:4318")
    with pytest.raises(ScenarioError, match="--otlp-timeline"):
        TimelineExport("grpc://c:4317")


# --- runs -----------------------------------------------------------------------------------------


def test_a_run_sends_its_timeline_and_the_spans_keep_the_journals_instants(
    tmp_path: Path, collector: Collector
) -> None:
    guard = "guardrails: [{kind: success-ratio, below: 0.9, for: 0.5s}]"
    outcome, journal = run(
        tmp_path, scenario(ERRORS.replace("for: 0.5s", "for: 30s"), guardrails=guard), collector.url
    )
    assert outcome.exit_code == ExitCode.ABORTED
    assert collector.paths == ["/v1/traces"], "one request, once the run is over"
    assert collector.resources == [{"service.name": "bascule", **collector.resources[0]}]
    spans = collector.spans
    (root,) = [s for s in spans if not s.parent_span_id]
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert all(s.parent_span_id == root.span_id for s in spans if s is not root)
    assert root.name == "bascule run fake-run"
    assert attributes(root.attributes) | {"bascule.version": ""} == {
        "bascule.scenario": "fake-run",
        "bascule.scenario.title": "a short run on the fake target",
        "bascule.design": "fake-one",
        "bascule.target": "fake",
        "bascule.version": "",
        "bascule.exit_code": 3,
        "bascule.reason": outcome.reason,
    }
    assert root.status.code == Status.STATUS_CODE_ERROR and root.status.message == outcome.reason

    def t(kind: str, **match: Any) -> float:
        found = [r for r in journal if r["type"] == kind and match.items() <= r.items()]
        assert len(found) == 1, (kind, found)
        return float(found[0]["t"]) - float(journal[0]["t"])

    # Every instant as the journal has it, to the microsecond it is written in.
    assert offsets(root, root) == pytest.approx((0.0, t("run-ended")), abs=2e-6)
    (phase,) = [s for s in spans if s.name == "phase: errors"]
    assert offsets(phase, root) == pytest.approx((t("fault-applied"), t("fault-reverted")), abs=2e-6)
    assert attributes(phase.attributes)["bascule.phase.kind"] == "http-error"
    assert [e.name for e in phase.events] == ["fault-applied", "fault-reverted"]
    assert attributes(phase.events[1].attributes)["bascule.fault.rollback"] is True
    (trip,) = [e for e in root.events if e.name == "guardrail-tripped"]
    at = (trip.time_unix_nano - root.start_time_unix_nano) / 1e9
    assert at == pytest.approx(t("guardrail-tripped"), abs=2e-6)
    assert attributes(trip.attributes)["bascule.guardrail.guardrail"] == "success-ratio"
    (warm,) = [s for s in spans if s.name == "warm-up and steady state"]
    assert offsets(warm, root) == pytest.approx((t("target-started"), t("plan-started")), abs=2e-6)
    # On the wall clock where the run happened.
    assert abs(root.start_time_unix_nano / 1e9 - (time.time() - t("run-ended"))) < 60


def refusing_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_collector_that_is_down_costs_the_run_nothing_but_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{refusing_port()}"
    began = time.monotonic()
    outcome, journal = run(tmp_path, scenario(LATENCY), url)
    took = time.monotonic() - began
    assert outcome.exit_code == ExitCode.OK, outcome.reason
    assert journal[-1]["type"] == "run-ended" and journal[-1]["exit_code"] == 0
    warned = capsys.readouterr().err
    assert warned.count("could not be sent") == 1 and f"{url}/v1/traces" in warned, warned
    # One line: none of the exporter's own log lines (one a retry) reach the user.
    assert warned.strip().count("\n") == 0 and warned.startswith("warning "), warned
    print(warned)
    # The same collector again, in the same process (a suite's next run): no second warning.
    again = TimelineExport(url)
    for r in journal:
        again(r)
    assert again.export() == (False, "")
    assert took < 60


def test_a_collector_that_hangs_is_given_up_within_the_export_timeout() -> None:
    with socket.socket() as hung:  # accepts connections (the backlog), never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        export = TimelineExport(f"http://127.0.0.1:{hung.getsockname()[1]}")
        for r in RECORDS:
            export(r)
        began = time.monotonic()
        sent, message = export.export()
        took = time.monotonic() - began
    assert not sent and "could not be sent" in message
    assert took < EXPORT_TIMEOUT + 1.0, took


# --- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["run", "suite"])
def test_run_and_suite_refuse_a_timeline_url_that_is_not_http_before_anything_starts(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from bascule.cli import app

    root = Path(__file__).resolve().parent.parent
    scenario_file = str(root / "scenarios" / "faults" / "latency.yaml")
    runner = CliRunner()
    out = ["--out", str(tmp_path / "out")]
    flag = runner.invoke(app, [verb, scenario_file, *out, "--otlp-timeline", "collector:4318"])
    assert flag.exit_code == ExitCode.INVALID_INPUT, flag.output
    assert "--otlp-timeline: not an http(s) URL: 'collector:4318'" in flag.output
    monkeypatch.setenv("BASCULE_OTLP_TIMELINE", "udp://collector")
    env = runner.invoke(app, [verb, scenario_file, *out])
    assert env.exit_code == ExitCode.INVALID_INPUT and "'udp://collector'" in env.output, env.output
    assert not (tmp_path / "out" / "journal.jsonl").exists()
