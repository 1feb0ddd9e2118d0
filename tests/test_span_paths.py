"""Spans as a source of paths: the services' server spans tied to their requests' samples by trace
id (`runner.span_paths`), and each source's paths judged alone, side by side (`runner.sources`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bascule.journal import Hop, HopSource, RequestSample, SpanKind, SpanRecord, SpanStatus
from bascule.model.loading import read_design
from bascule.runner.paths import add_hops
from bascule.runner.sources import SourceComparison
from bascule.runner.span_paths import SpanJoiner, span_hop
from bascule.targets.otlp import otlp_environment

ROOT = Path(__file__).resolve().parent.parent
DESIGN = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
US, PAR = "aws/us-east-1", "scaleway/fr-par"
LEVELS = {US: ("aws", "US", "foreign"), PAR: ("scaleway", "EU", "sovereign")}


def span(
    trace: str,
    started: float,
    service: str,
    region: str | None,
    *,
    kind: SpanKind = SpanKind.SERVER,
    status: int | None = 200,
    error: bool = False,
) -> SpanRecord:
    provider, jurisdiction, level = LEVELS.get(region or "", ("", "", ""))
    return SpanRecord(
        trace_id=trace,
        span_id=f"{int(started * 1000):016x}",
        parent_span_id=None,
        name="POST /v1/ask",
        kind=kind,
        service_name=service,
        started=started,
        ended=started + 0.1,
        status=SpanStatus.ERROR if error else SpanStatus.OK,
        http_status=status,
        region=region,
        provider=provider,
        jurisdiction=jurisdiction,
        sovereignty=level,
        attributed_by="cloud.region" if region else "",
        reason="" if region else "no cloud.region",
    )


def sample(
    trace: str | None, started: float = 0.0, *, data_class: str = "confidential", ok: bool = True
) -> RequestSample:
    return RequestSample("load", "ask", started, 0.1, ok, data_class=data_class, trace_id=trace)


def test_a_server_span_is_a_hop_where_it_ran_and_other_spans_are_none() -> None:
    hop = span_hop(span("t", 1.0, "retriever", PAR))
    assert hop == Hop("retriever", PAR, "scaleway", "EU", "sovereign", HopSource.OTLP, 200, True)
    assert span_hop(span("t", 1.0, "gateway", PAR, kind=SpanKind.CLIENT)) is None
    assert span_hop(span("t", 1.0, "gateway", None)) is None
    failed = span_hop(span("t", 1.0, "llm", US, status=None, error=True))
    assert failed is not None and failed.status == 500 and not failed.served


def test_a_sample_claims_the_hops_of_its_trace_in_start_order_once() -> None:
    joiner = SpanJoiner(since=0.5)
    joiner.observe(
        [
            span("t1", 1.2, "llm", PAR),
            span("t1", 1.0, "gateway", PAR),
            span("t1", 1.1, "gateway", PAR, kind=SpanKind.CLIENT),
            span("t1", 1.15, "retriever", None),
            span("t2", 1.0, "gateway", US),
            span("t3", 0.1, "gateway", US),  # before the first request: not counted
        ],
        now=2.0,
    )
    hops = joiner.claim(sample("t1"))
    assert [(h.component, h.region, h.via) for h in hops] == [
        ("gateway", PAR, HopSource.OTLP),
        ("llm", PAR, HopSource.OTLP),
    ]
    assert joiner.claim(sample("t1")) == ()
    assert joiner.claim(sample(None)) == ()
    joiner.bookkeeping("t4")
    joiner.observe([span("t4", 3.0, "store", PAR)], now=3.0)
    joiner.expire(now=200.0)
    report = joiner.report()
    assert (report.spans, report.claimed, report.hops, report.unclaimed) == (6, 5, 2, 1)
    assert report.unattributed == {"retriever": 1}


def test_hops_another_source_already_told_are_not_added_twice() -> None:
    told = sample("t")
    told = replace(told, hops=(Hop("gateway", PAR, via=HopSource.SERVED_BY),))
    joined = add_hops(told, (Hop("gateway", PAR, via=HopSource.OTLP), Hop("llm", US, via=HopSource.OTLP)))
    assert [(h.component, h.region, h.via) for h in joined.hops] == [
        ("gateway", PAR, HopSource.SERVED_BY),
        ("llm", US, HopSource.OTLP),
    ]


def hops(*where: tuple[str, str], via: str) -> tuple[Hop, ...]:
    return tuple(Hop(c, r, *LEVELS[r], via=via, status=200) for c, r in where)


def test_each_source_is_judged_alone_and_compared_on_the_requests_both_saw() -> None:
    compare = SourceComparison(DESIGN, [US])
    fp, ot = HopSource.FAULT_PLANE, HopSource.OTLP
    # Before the fault: served in the US, both sources agree (a violation for confidential data).
    before = sample("a", 1.0)
    compare.add(before, {fp: hops(("retriever", US), via=fp), ot: hops(("retriever", US), via=ot)})
    compare.fault_applied(5.0)
    compare.fault_applied(9.0)  # a later fault does not move the first
    # After: the first success in Paris at 6.5 s as both tell it; OTLP alone sees one at 6.0 s.
    compare.add(sample("b", 6.0), {fp: (), ot: hops(("retriever", PAR), via=ot)})
    compare.add(
        sample("c", 6.5), {fp: hops(("retriever", PAR), via=fp), ot: hops(("retriever", PAR), via=ot)}
    )
    compare.add(sample("d", 5.5, ok=False), {fp: hops(("retriever", PAR), via=fp), ot: ()})
    report = compare.report()
    assert report.sources[fp].requests == 3 and report.sources[ot].requests == 3
    assert report.sources[fp].violating == 1 and report.sources[ot].violating == 1
    assert report.sources[fp].time_to_failover == 1.5
    assert report.sources[ot].time_to_failover == 1.0
    assert (report.both, report.same_region, report.same_verdict) == (2, 2, 2)


def test_a_source_that_saw_nothing_fail_over_says_so() -> None:
    compare = SourceComparison(DESIGN, [US])
    fp = HopSource.FAULT_PLANE
    compare.add(sample("a", 1.0), {fp: hops(("retriever", US), via=fp)})
    compare.fault_applied(2.0)
    compare.add(sample("b", 3.0), {fp: hops(("retriever", US), via=fp)})
    assert compare.report().sources[fp].time_to_failover is None


def test_the_environment_that_points_a_replica_at_the_receiver() -> None:
    env = otlp_environment("http://127.0.0.1:4318", "llm", "scaleway/fr-par", "llm-scaleway-fr-par-0")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:4318/v1/traces"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_SERVICE_NAME"] == "llm"
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "cloud.provider=scaleway,cloud.region=fr-par,service.instance.id=llm-scaleway-fr-par-0"
    )
