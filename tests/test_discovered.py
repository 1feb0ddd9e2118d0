"""Discovered dependencies: hosts outside the design a stack reached — joined to requests by trace id
(pure), seen by the local target's egress proxy and DNS hook, and counted by sovereignty on a whole
run through the fake target."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from test_run_logic import LATENCY, PAR, fake, fake_registered, files, records

from bascule.ci.results import run_scored
from bascule.exit_codes import ExitCode
from bascule.journal.discovered import OutsideReach, ReachVia
from bascule.journal.samples import Hop, HopSource, RequestSample
from bascule.model.loading import parse_design
from bascule.probes.sovereignty import violations
from bascule.reports.files import score_run
from bascule.runner.discovered import DependencyJoiner
from bascule.runner.run import RunOptions, run_scenario
from bascule.targets.local.egress import NO_PROXY, Egress, proxy_environment
from bascule.targets.local.lookups import OutsideLookups

__all__ = ["fake_registered"]  # its autouse fixture registers the fake target here too

TRACE = "0af7651916cd43dd8448eb211c80319c"
DESIGN = parse_design(
    f"""
id: d
regions: [{{id: {PAR}}}]
components:
  api:
    entry: true
    url: {{{PAR}: "http://127.0.0.1:9"}}
    replicas: {{{PAR}: 1}}
""",
    "d.yaml",
)


def reach(host: str, t: float, trace: str | None = TRACE, via: ReachVia = ReachVia.HTTP) -> OutsideReach:
    return OutsideReach(
        host, via, t, trace_id=trace, asker="api-scaleway-fr-par-0", region=PAR, outcome="502"
    )


def sample(klass: str, trace: str | None = TRACE, t: float = 10.0) -> RequestSample:
    hop = Hop("api", PAR, "scaleway", "EU", "sovereign", via=HopSource.FAULT_PLANE, status=200)
    return RequestSample("probe", "http", t, 0.01, True, 200, klass, PAR, (hop,), trace_id=trace)


# -- the join (pure) ----------------------------------------------------------------------------------


def test_a_confidential_request_that_reached_a_foreign_host_is_a_violation_there() -> None:
    joiner = DependencyJoiner(DESIGN, origin=0.0, since=5.0)
    joiner.observe([reach("STS.amazonaws.com.", 10.1), reach("sts.amazonaws.com", 10.2)])
    got = joiner.attach(sample("confidential"))
    # One egress hop per host, however many calls the request made there.
    (outside,) = [h for h in got.hops if h.via == HopSource.EGRESS]
    assert (outside.component, outside.provider, outside.jurisdiction, outside.sovereignty) == (
        "sts.amazonaws.com",
        "aws",
        "US",
        "foreign",
    )
    (violation,) = violations(got, DESIGN)
    assert violation.hop.component == "sts.amazonaws.com" and violation.data_class == "confidential"
    (dep,) = joiner.report()
    assert (dep.provider, dep.jurisdiction, dep.sovereignty) == ("aws", "US", "foreign")
    assert dep.classes == {"confidential": 1} and dep.violations == 1
    assert (dep.requests, dep.attributed, dep.unattributed) == (2, 2, 0)
    assert dep.regions == (PAR,) and dep.askers == ("api-scaleway-fr-par-0",)
    assert (dep.first, dep.last) == (10.1, 10.2)


def test_an_internal_request_there_is_listed_but_no_violation() -> None:
    joiner = DependencyJoiner(DESIGN)
    joiner.observe([reach("sts.amazonaws.com", 10.1)])
    assert violations(joiner.attach(sample("internal")), DESIGN) == []
    (dep,) = joiner.report()
    assert dep.classes == {"internal": 1} and dep.violations == 0


def test_a_host_the_catalog_does_not_know_is_unknown_and_judged_as_foreign() -> None:
    joiner = DependencyJoiner(DESIGN)
    joiner.observe([reach("collector.example.net", 10.1)])
    got = joiner.attach(sample("confidential"))
    assert [v.level.value for v in violations(got, DESIGN)] == ["foreign"]
    (dep,) = joiner.report()
    assert (dep.provider, dep.jurisdiction, dep.sovereignty) == (None, "unknown", "unknown")


def test_an_eu_region_of_a_us_provider_is_exposed_and_a_sovereign_provider_passes() -> None:
    joiner = DependencyJoiner(DESIGN)
    joiner.observe([reach("s3.eu-west-3.amazonaws.com", 10.1), reach("api.scaleway.com", 10.2)])
    got = joiner.attach(sample("confidential"))
    assert [(v.hop.component, v.level.value) for v in violations(got, DESIGN)] == [
        ("s3.eu-west-3.amazonaws.com", "exposed")
    ]
    levels = {d.host: (d.sovereignty, d.catalog_region) for d in joiner.report()}
    assert levels == {
        "s3.eu-west-3.amazonaws.com": ("exposed", "aws/eu-west-3"),
        "api.scaleway.com": ("sovereign", None),
    }


def test_reaches_no_request_can_be_tied_to_are_counted_unattributed_never_dropped() -> None:
    joiner = DependencyJoiner(DESIGN, since=5.0, keep=30.0)
    joiner.observe(
        [
            reach("sts.amazonaws.com", 1.0, trace=None),  # the stack starting: before any request
            reach("sts.amazonaws.com", 6.0, trace=None),  # no trace context
            reach("sts.amazonaws.com", 6.5, trace=None, via=ReachVia.CONNECT),  # a tunnel
            reach("sts.amazonaws.com", 7.0, trace="f" * 32),  # a trace no sample claims
            OutsideReach("sts.amazonaws.com", ReachVia.DNS, 8.0, count=3),
        ]
    )
    joiner.expire(40.0)
    (dep,) = joiner.report()
    assert (dep.at_start, dep.unattributed, dep.attributed) == (1, 6, 0)
    assert (dep.requests, dep.tunnels, dep.lookups) == (3, 1, 3)
    assert dep.classes == {}


def test_a_request_of_bascules_whose_answer_never_came_is_unanswered_not_unattributed() -> None:
    joiner = DependencyJoiner(DESIGN, keep=30.0)
    joiner.observe([reach("sts.amazonaws.com", 10.0), reach("sts.amazonaws.com", 11.0, trace="e" * 32)])
    ours = {TRACE}.__contains__  # entered through a client's route (`PathJoiner.entered`)
    joiner.expire(40.5, ours)  # the first is forgotten here, the second at the report
    (dep,) = joiner.report(ours)
    assert (dep.unanswered, dep.unattributed) == (1, 1)


def test_a_canary_read_back_claims_its_reaches_without_a_class() -> None:
    joiner = DependencyJoiner(DESIGN)
    joiner.observe([reach("sts.amazonaws.com", 10.0)])
    joiner.bookkeeping(TRACE)
    (dep,) = joiner.report()
    assert (dep.attributed, dep.unattributed, dep.classes) == (1, 0, {})


# -- the DNS hook's consumer -------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """The shape of the DNS server's hook argument (`bascule.targets.local.dns.Lookup`)."""

    t: float
    name: str
    qtype: str
    asker: str | None
    outcome: str


def test_lookups_of_names_outside_the_design_are_kept_aggregated_per_name_and_asker() -> None:
    inside = ["api.scaleway-fr-par.bascule.internal"]
    consumer = OutsideLookups(inside, {"api-scaleway-fr-par-0": PAR})
    for i, name in enumerate(
        [
            "sts.amazonaws.com.",
            "STS.amazonaws.com",
            "api.scaleway-fr-par.bascule.internal",  # the design's own
            "anything.bascule.internal",  # the stack's zone
            "localhost",
            "1.0.0.127.in-addr.arpa",  # a reverse lookup
            "telemetry.example.net",
            "buildhost",  # a single label: the machine's own name
        ]
    ):
        consumer(Lookup(100.0 + i, name, "A", "api-scaleway-fr-par-0", "NXDOMAIN"))
    consumer(Lookup(99.0, "sts.amazonaws.com", "AAAA", None, "NXDOMAIN"))
    taken = consumer.take()
    assert [(r.host, r.asker, r.region, r.count, r.started, r.via) for r in taken] == [
        ("sts.amazonaws.com", None, None, 1, 99.0, ReachVia.DNS),
        ("sts.amazonaws.com", "api-scaleway-fr-par-0", PAR, 2, 100.0, ReachVia.DNS),
        ("telemetry.example.net", "api-scaleway-fr-par-0", PAR, 1, 106.0, ReachVia.DNS),
    ]
    assert taken[1].outcome == "NXDOMAIN"
    assert consumer.take() == []
    # Chained before another hook of the DNS server, both see every lookup.
    seen: list[Lookup] = []
    hook = consumer.chained(seen.append)
    hook(Lookup(200.0, "sts.amazonaws.com.", "A", None, "REFUSED"))
    assert [r.host for r in consumer.take()] == ["sts.amazonaws.com"] and len(seen) == 1
    assert consumer.chained(None) is consumer


# -- the egress proxy (127.0.0.1 only) --------------------------------------------------------------


def test_the_egress_records_each_request_and_answers_502_without_relaying() -> None:
    egress = Egress()
    egress.start()
    try:
        port = egress.listen("api-scaleway-fr-par-0", PAR)
        assert egress.listen("api-scaleway-fr-par-0", PAR) == port
        proxy = f"http://127.0.0.1:{port}"
        assert proxy_environment(port)["HTTPS_PROXY"] == proxy
        assert proxy_environment(port)["no_proxy"] == NO_PROXY
        assert NO_PROXY.split(",")[:3] == ["127.0.0.1", "localhost", "::1"]
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
        request = urllib.request.Request(
            "http://sts.amazonaws.com/?Action=GetCallerIdentity&X-Amz-Security-Token=secret",
            headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"},
        )
        with pytest.raises(urllib.error.HTTPError) as answered:
            opener.open(request, timeout=5)
        assert answered.value.code == 502
        assert b"bascule does not relay requests outside the run" in answered.value.read()
        with httpx.Client(proxy=proxy, trust_env=False) as client:
            # A kept-alive connection answers the next request too.
            for _ in range(2):
                response = client.post("http://intake.datadoghq.com/api/v2/logs", json={"x": 1})
                assert response.status_code == 502
            with pytest.raises(httpx.ProxyError):
                client.get("https://api.openai.com/v1/models")
        taken = egress.take()
        assert [(r.host, r.via, r.method, r.path, r.port, r.trace_id) for r in taken] == [
            ("sts.amazonaws.com", ReachVia.HTTP, "GET", "/", 80, TRACE),
            ("intake.datadoghq.com", ReachVia.HTTP, "POST", "/api/v2/logs", 80, None),
            ("intake.datadoghq.com", ReachVia.HTTP, "POST", "/api/v2/logs", 80, None),
            ("api.openai.com", ReachVia.CONNECT, "CONNECT", None, 443, None),
        ]
        assert {(r.asker, r.region) for r in taken} == {("api-scaleway-fr-par-0", PAR)}
        assert egress.take() == []
    finally:
        egress.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_the_egress_keeps_a_bounded_number_of_records_and_counts_the_rest() -> None:
    egress = Egress(kept=2)
    egress.start()
    try:
        port = egress.listen("a")
        with httpx.Client(proxy=f"http://127.0.0.1:{port}", trust_env=False) as client:
            for host in ("one.example", "two.example", "three.example"):
                client.get(f"http://{host}/")
        assert [r.host for r in egress.take()] == ["two.example", "three.example"]
        assert egress.dropped == {"one.example": 1}
    finally:
        egress.stop()


# -- a whole run on the fake target -----------------------------------------------------------------


def calling_scenario(confidential: str, internal: str) -> str:
    return f"""
id: fake-run
title: a service that calls a token service outside the design
design: design.yaml
replay: {{time_scale: 1, min_phase: 0.1s}}
warm_up: 0.5s
settle: 0.1s
steady_state:
  probes:
    - {{kind: http, url: {confidential}, data_class: confidential, rate: 20, timeout: 2s}}
    - {{kind: http, url: {internal}, data_class: internal, rate: 20, timeout: 2s}}
  # Long enough for a sample of each probe on a loaded 2-core machine.
  over: 1.5s
  success_ratio: 1.0
phases:
{LATENCY}
objectives: {{availability: 0.5}}
weights: {{correctness: 0, durability: 0}}
"""


def scored_run(tmp_path: Path, text: str) -> tuple[dict[str, object], list[dict[str, object]], Path]:
    options = RunOptions(files(tmp_path, text), fake(), out=tmp_path / "run", quiet=True)
    outcome = run_scored(options, console=Console(quiet=True), charts=False)
    result = json.loads((outcome.run_dir / "result.json").read_text())
    return result, records(outcome, "discovered-dependencies"), outcome.run_dir


def sovereignty(result: dict[str, object]) -> dict[str, object]:
    score = result["score"]
    assert isinstance(score, dict)
    (dim,) = [d for d in score["dimensions"] if d["name"] == "sovereignty"]
    return dim


def test_confidential_requests_that_called_a_foreign_token_service_fail_sovereignty(tmp_path: Path) -> None:
    result, (record,), run_dir = scored_run(tmp_path, calling_scenario("/call-out", "/call-out"))
    (dep,) = record["dependencies"]
    assert (dep["host"], dep["provider"], dep["jurisdiction"], dep["sovereignty"]) == (
        "sts.amazonaws.com",
        "aws",
        "US",
        "foreign",
    )
    classes = dep["classes"]
    assert classes["confidential"] > 0 and classes["internal"] > 0
    # The same requests the verdict counted: every violation of the run is one of them.
    assert dep["violations"] == classes["confidential"] == result["figures"]["sovereignty_violations"]
    assert dep["unattributed"] == 0 and record["unattributed"] == 0
    # Every violation the run counted is a confidential request at the token service.
    violations = [v for v in result["violations"]]
    assert violations and {(v["data_class"], v["hop"]["component"]) for v in violations} == {
        ("confidential", "sts.amazonaws.com")
    }
    dim = sovereignty(result)
    assert dim["passed"] is False and "outside the design" in dim["explanation"]
    (listed,) = result["discovered"]
    assert listed["host"] == "sts.amazonaws.com" and listed["classes"] == classes
    summary = (run_dir / "summary.md").read_text()
    assert "🔎 sts.amazonaws.com — Amazon Web Services (aws), US law, foreign: reached from" in summary
    assert "report.html" in {p.name for p in run_dir.iterdir()}
    assert "sts.amazonaws.com — Amazon Web Services" in (run_dir / "report.html").read_text()


def test_when_only_internal_requests_call_it_it_is_listed_and_sovereignty_holds(tmp_path: Path) -> None:
    result, (record,), _ = scored_run(tmp_path, calling_scenario("/healthz", "/call-out"))
    (dep,) = record["dependencies"]
    assert set(dep["classes"]) == {"internal"} and dep["violations"] == 0
    dim = sovereignty(result)
    assert dim["passed"] is True and dim["measured"] == 0
    assert result["figures"]["sovereignty_violations"] == 0


def test_calls_without_trace_context_leave_sovereignty_unmeasured_with_the_reason(tmp_path: Path) -> None:
    result, (record,), run_dir = scored_run(tmp_path, calling_scenario("/healthz", "/call-out-untraced"))
    (dep,) = record["dependencies"]
    assert dep["unattributed"] > 0 and dep["classes"] == {}
    dim = sovereignty(result)
    assert dim["passed"] is None and dim["sub_score"] is None
    assert "could not be tied to a request" in result["figures"]["notes"]["sovereignty"]
    assert "sovereignty" in result["score"]["unmeasured"]
    # The run's reason, on the terminal too, names the way out when it is on purpose.
    run = result["run"]
    assert isinstance(run, dict) and run["exit_code"] == 1
    assert run["reason"].startswith("objectives not met: some could not be measured: sovereignty (")
    assert "weights: {sovereignty: 0}" in run["reason"]
    # Under --min-score too, the score under the floor does not hide what kept the pass.
    floored = score_run(run_dir, ExitCode.OK, "completed", min_score=100.1)
    assert floored.exit_code == ExitCode.OBJECTIVES_FAILED
    assert floored.reason.startswith("score ") and "below --min-score 100.1" in floored.reason
    assert "; objectives not met: some could not be measured: sovereignty" in floored.reason


def test_a_run_that_reaches_nothing_outside_writes_an_empty_record(tmp_path: Path) -> None:
    options = RunOptions(
        files(tmp_path, calling_scenario("/healthz", "/healthz")), fake(), out=tmp_path / "r"
    )
    with open(os.devnull, "w") as sink:
        outcome = run_scenario(
            options, console=Console(file=sink), scoring=partial(score_run, min_score=None)
        )
    (record,) = records(outcome, "discovered-dependencies")
    assert record["dependencies"] == [] and record["unattributed"] == 0


def test_a_client_waiting_for_100_continue_is_answered_at_once() -> None:
    egress = Egress()
    egress.start()
    try:
        port = egress.listen("a")
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            sock.sendall(
                b"POST http://intake.example/v1 HTTP/1.1\r\nHost: intake.example\r\n"
                b"Content-Length: 100000\r\nExpect: 100-continue\r\n\r\n"
            )
            assert sock.recv(64).startswith(b"HTTP/1.1 502 ")
        assert [(r.host, r.method, r.path) for r in egress.take()] == [("intake.example", "POST", "/v1")]
    finally:
        egress.stop()


def test_client_spans_to_an_outside_host_are_reaches_tied_to_their_request() -> None:
    from bascule.journal.spans import SpanKind, SpanRecord, SpanStatus
    from bascule.runner.discovered import reaches_from_spans

    def span(host: str | None) -> SpanRecord:
        return SpanRecord(
            TRACE, "b7ad6b7169203331", None, "GET", SpanKind.CLIENT, "api", 10.1, 10.2, SpanStatus.OK,
            http_status=200, attributes=(("http.request.method", "GET"),), region=PAR, host=host,
        )  # fmt: skip

    reaches = reaches_from_spans([span("sts.amazonaws.com"), span(None)])
    assert [(r.host, r.via, r.trace_id, r.asker, r.region, r.method) for r in reaches] == [
        ("sts.amazonaws.com", ReachVia.OTLP, TRACE, "api", PAR, "GET")
    ]
    joiner = DependencyJoiner(DESIGN)
    joiner.observe(reaches)
    got = joiner.attach(sample("confidential"))
    assert [(h.component, h.via, h.status) for h in got.hops[1:]] == [("sts.amazonaws.com", "otlp", 200)]
    assert len(violations(got, DESIGN)) == 1
    (dep,) = joiner.report()
    assert (dep.spans, dep.requests, dep.attributed, dep.violations) == (1, 0, 1, 1)
