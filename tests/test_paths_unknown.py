"""Where a request's path is not known whole, sovereignty is not passed on the part that was:
a span of a region outside the design is a hop there; a server span of no region leaves its
request's path open; a path only bascule saw that reached a ``url:`` service, whose own calls bascule
does not relay, is open too where some service is called by nothing declared. Found by a new user's
trial on running services exporting spans (each case read PASS 100/A while confidential requests
were served in the US)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bascule.journal import Hop, HopSource, RequestSample, SpanKind, SpanRecord, SpanStatus
from bascule.metrics.records import SovereigntyReport, TracesReceived
from bascule.metrics.sovereignty import judge_sovereignty
from bascule.metrics.state import JournalState
from bascule.model.design import Design
from bascule.model.loading import parse_design
from bascule.model.topology import blind_services, uncalled_services
from bascule.probes.sovereignty import SovereigntyJudge, violations
from bascule.runner.span_paths import SpanJoiner, span_hop

PAR, US = "scaleway/fr-par", "aws/us-east-1"

URL_DESIGN = """
id: running
regions: [{id: scaleway/fr-par}, {id: aws/us-east-1}]
data_classes:
  internal: {min_sovereignty: foreign}
  confidential: {min_sovereignty: sovereign}
components:
  frontend:
    entry: true
    url: {scaleway/fr-par: "http://127.0.0.1:9100"}
    replicas: {scaleway/fr-par: 1}
  backend:
    url: {scaleway/fr-par: "http://127.0.0.1:9101", aws/us-east-1: "http://127.0.0.1:9102"}
    replicas: {scaleway/fr-par: 1, aws/us-east-1: 1}
routing: {mode: active-passive, order: [scaleway/fr-par, aws/us-east-1]}
"""

CALLED_DESIGN = """
id: started
regions: [{id: scaleway/fr-par}, {id: aws/us-east-1}]
data_classes:
  confidential: {min_sovereignty: sovereign}
components:
  api:
    entry: true
    calls: [model]
    command: {argv: [api]}
    replicas: {scaleway/fr-par: 1}
  model:
    url: {scaleway/fr-par: "http://127.0.0.1:9101"}
    replicas: {scaleway/fr-par: 1}
routing: {mode: active-passive, order: [scaleway/fr-par]}
"""


@pytest.fixture(scope="module")
def running() -> Design:
    return parse_design(URL_DESIGN)


def _hop(component: str, region: str, via: str) -> Hop:
    level = {"scaleway/fr-par": "sovereign"}.get(region, "foreign")
    return Hop(component, region, "", "", level, via, 200, True)


def _sample(*hops: Hop, unplaced: tuple[str, ...] = ()) -> RequestSample:
    return RequestSample(
        "load", "ask", 0.0, 0.1, True, data_class="confidential", hops=hops, trace_id="t", unplaced=unplaced
    )


def _span(service: str, *, region: str | None, outside: str = "", level: str = "") -> SpanRecord:
    return SpanRecord(
        trace_id="t",
        span_id="00000000000000aa",
        parent_span_id=None,
        name="GET /",
        kind=SpanKind.SERVER,
        service_name=service,
        started=1.0,
        ended=1.1,
        status=SpanStatus.OK,
        http_status=200,
        region=region,
        provider="aws" if level else "",
        jurisdiction="US" if level else "",
        sovereignty=level,
        reason="" if region else "no cloud.provider",
        outside=outside,
    )


def test_a_span_of_a_catalog_region_outside_the_design_is_a_foreign_hop_there(running: Design) -> None:
    hop = span_hop(_span("backend", region=None, outside="aws/us-west-2", level="foreign"))
    assert hop is not None and hop.region == "aws/us-west-2" and hop.sovereignty == "foreign"
    found = violations(_sample(_hop("frontend", PAR, HopSource.FAULT_PLANE), hop), running)
    assert [(v.hop.component, v.hop.region, v.level.value) for v in found] == [
        ("backend", "aws/us-west-2", "foreign")
    ]
    assert span_hop(_span("backend", region=None)) is None  # nothing known of where: no hop


def test_a_server_span_of_no_region_is_named_by_the_claim() -> None:
    joiner = SpanJoiner()
    joiner.observe([_span("frontend", region=PAR), _span("backend", region=None)], now=1.0)
    hops, unplaced = joiner.claim_path(_sample())
    assert [h.component for h in hops] == ["frontend"] and unplaced == ("backend",)
    assert joiner.report().unattributed == {"backend": 1}


def test_which_url_services_bascule_cannot_see_past(running: Design) -> None:
    assert uncalled_services(running) == ("backend",)
    assert blind_services(running) == ("frontend", "backend")
    called = parse_design(CALLED_DESIGN)  # the url: model is called through bascule's route
    assert uncalled_services(called) == () and blind_services(called) == ()


def test_the_judge_leaves_open_paths_out(running: Design) -> None:
    judge = SovereigntyJudge(running)
    entry = _hop("frontend", PAR, HopSource.FAULT_PLANE)
    judge.observe(_sample(entry))  # only bascule's view: the entry hop of a url: service
    judge.observe(_sample(entry, _hop("frontend", PAR, HopSource.OTLP), unplaced=("backend",)))
    judge.observe(_sample(entry, _hop("backend", PAR, HopSource.OTLP)))  # told whole by spans
    judge.observe(_sample(entry, _hop("backend", US, HopSource.OTLP)))  # a violation, whatever else
    report = judge.report()
    assert (report.judged, report.relayed_only, report.blind_paths, report.unplaced_paths) == (4, 1, 1, 1)
    assert len(report.violations) == 1


def _state(design: Design, report: dict[str, Any], received: dict[str, Any] | None = None) -> JournalState:
    state = JournalState(None)
    state.design = design
    state.sov_report = SovereigntyReport.model_validate(report)
    if received is not None:
        state.traces_received = TracesReceived.model_validate(received)
    return state


def test_sovereignty_is_unmeasured_when_every_judged_path_was_open(running: Design) -> None:
    base = {"judged": 30, "unattributed": 0, "requests": 0, "violations": [], "relayed_only": 20}
    judged = judge_sovereignty(_state(running, {**base, "blind_paths": 20, "unplaced_paths": 10}), True)
    assert not judged.judged and judged.note is not None
    assert "20 requests had a path only bascule saw, into url: services (frontend, backend)" in judged.note
    assert "10 requests had a server span that could not be placed in a region" in judged.note

    refused = {"requests": 0, "refused": 307, "spans": 0, "last_refusal": "404 POST /v1/traces/v1/traces: x"}
    judged = judge_sovereignty(
        _state(running, {**base, "blind_paths": 20, "unplaced_paths": 10}, refused), True
    )
    assert "received no span: 307 export requests were refused" in (judged.note or "")

    partial = judge_sovereignty(_state(running, {**base, "blind_paths": 5}), True)
    assert not partial.judged and partial.requests == 25 and partial.unattributed == 5
    assert "of 30 requests judged, only 25 had a path known whole" in (partial.note or "")

    violated = _state(running, {**base, "blind_paths": 30})
    violated.violation_count = 1  # a sovereignty-violation record
    assert judge_sovereignty(violated, True).judged  # a violation seen is judged whatever else


def test_a_journal_from_before_keeps_its_verdict(running: Design) -> None:
    old = {"judged": 30, "unattributed": 0, "requests": 0, "violations": [], "relayed_only": 30}
    assert judge_sovereignty(_state(running, old), True).judged


def test_the_receiver_names_its_refusals() -> None:
    assert TracesReceived(requests=3, refused=0, spans=40).note() is None
    assert TracesReceived(spans=0).note() == "bascule's OTLP receiver received no span"
    note = TracesReceived(requests=2, refused=1, spans=9, last_refusal="415 POST /v1/traces: y").note()
    assert note is not None and note.startswith("bascule's OTLP receiver received 9 spans, but 1 export")


def test_unplaced_survives_the_journal() -> None:
    from bascule.journal import sample_from_json, sample_to_json

    sample = _sample(unplaced=("backend",))
    assert sample_from_json(sample_to_json(sample)) == replace(sample)
    assert "unplaced" not in sample_to_json(_sample())


def test_the_note_names_spans_that_belong_to_no_request(running: Design) -> None:
    from bascule.metrics.records import PathsReport

    state = _state(
        running, {"judged": 5, "unattributed": 0, "violations": [], "relayed_only": 5, "blind_paths": 5}
    )
    state.paths_report = PathsReport.model_validate(
        {"spans": {"unclaimed": 12, "unattributed": {"backend": 3}}}
    )
    note = judge_sovereignty(state, True).note or ""
    assert "12 spans received belong to no request of bascule's" in note
    assert "(3 of backend)" in note


def test_a_class_no_hop_can_violate_leaves_no_path_unknown(running: Design) -> None:
    judge = SovereigntyJudge(running)
    internal = replace(_sample(_hop("frontend", PAR, HopSource.FAULT_PLANE)), data_class="internal")
    judge.observe(internal)  # min_sovereignty: foreign — wherever it went, nothing is below it
    report = judge.report()
    assert report.judged == 1 and (report.relayed_only, report.blind_paths) == (0, 0)


def test_a_path_open_by_a_span_of_no_region_is_not_blamed_on_url_services() -> None:
    called = parse_design(CALLED_DESIGN)  # no service bascule cannot see past
    base = {"judged": 4, "unattributed": 0, "violations": [], "relayed_only": 4, "blind_paths": 4}
    note = judge_sovereignty(_state(called, base), True).note or ""
    assert "url: services" not in note and "a server span of no region" in note
