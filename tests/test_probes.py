"""Probes: each kind against fake services (httpx.MockTransport), the sovereignty judge, the data
probe's loss accounting, the runner's pacing and the hypothesis; then rag and data probes against a
real local stack."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from bascule.errors import ProbeError
from bascule.journal.samples import Hop, HopSource, RequestSample
from bascule.model.catalog import Sovereignty
from bascule.model.design import ReplicationMode
from bascule.model.loading import parse_design, read_design
from bascule.model.probes import (
    AnyProbe,
    CommandProbe,
    HttpProbe,
    JsonAssertion,
    ProbeSpec,
    PythonProbe,
    RagProbe,
)
from bascule.model.probes import (
    DataProbe as DataSpec,
)
from bascule.model.probes import (
    SovereigntyProbe as SovereigntySpec,
)
from bascule.model.scenario import Guardrail
from bascule.probes import data as data_probe
from bascule.probes.base import (
    MISSING,
    PROBES,
    Probe,
    ProbeContext,
    hop_level,
    make_probe,
    make_probes,
    read_path,
    render_template,
    sample_once,
)
from bascule.probes.data import (
    CanaryWrite,
    DataProbe,
    DataReport,
    Presence,
    account_losses,
    may_hold,
    presence_in,
    read_back_until,
    replication_wait,
)
from bascule.probes.http import check_response
from bascule.probes.runner import ProbeRunner, check_hypothesis, finish_probes, judge_hypothesis
from bascule.probes.sovereignty import SovereigntyJudge, SovereigntyProbe, SovereigntyReport, violations
from bascule.runner.hypothesis import failure_reasons
from bascule.stack.corpus import GoldenQuestion, load_golden_set

ROOT = Path(__file__).resolve().parent.parent
APS_PATH = ROOT / "designs" / "active-passive-sovereign.yaml"
APS = read_design(APS_PATH)
ENTRIES = {"aws/us-east-1": "http://aws.test", "scaleway/fr-par": "http://par.test"}
STORES = {"aws/us-east-1": ["http://store-aws.test"], "scaleway/fr-par": ["http://store-par.test"]}
GOLDEN = {q.question: q for q in load_golden_set()}
SPECS: TypeAdapter[ProbeSpec] = TypeAdapter(AnyProbe)

# Three regions, one per level that matters, the guard off: nothing stops a violation.
UNGUARDED = parse_design(
    """
id: three-levels
regions:
  - id: aws/us-east-1
  - id: s3ns/u-france-east1
  - id: scaleway/fr-par
components:
  gateway: {replicas: {aws/us-east-1: 1, s3ns/u-france-east1: 1, scaleway/fr-par: 1}}
routing: {sovereignty_guard: false}
data_classes:
  public: {min_sovereignty: foreign}
  internal: {min_sovereignty: trusted}
  confidential: {min_sovereignty: sovereign}
"""
)


def spec(data: dict[str, Any]) -> ProbeSpec:
    return SPECS.validate_python(data)


def context(
    handler: Callable[[httpx.Request], httpx.Response], design: Any = APS, **extra: Any
) -> ProbeContext:
    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    fields: dict[str, Any] = {"entries": ENTRIES, "store_urls": STORES, **extra}
    return ProbeContext(design=design, client_factory=client, **fields)


def one_sample(probe: Probe[Any]) -> RequestSample:
    async def go() -> RequestSample:
        async with probe.context.client_factory() as client:
            return await sample_once(probe, client, time.monotonic())

    return asyncio.run(go())


def hop(component: str, region: str, level: str = "") -> dict[str, str]:
    return {"component": component, "region": region, "sovereignty": level}


def golden_answer(question: GoldenQuestion) -> str:
    return f"{' and '.join(question.facts)}. " + " ".join(f"[doc:{d}]" for d in question.cites)


class FakeGateway:
    """Answers /v1/ask like the reference gateway, from the golden set; region by host."""

    def __init__(
        self, *, down: set[str] = frozenset(), wrong: bool = False, llm_in: str | None = None
    ) -> None:
        self.down = set(down)
        self.wrong = wrong
        self.llm_in = llm_in
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = json.loads(request.content)
        self.asked.append((host, body))
        if host in self.down:
            return httpx.Response(503, json={"error": "unavailable", "message": "down"})
        region = "aws/us-east-1" if host == "aws.test" else "scaleway/fr-par"
        question = GOLDEN[body["question"]]
        answer = "I do not know." if self.wrong else golden_answer(question)
        served_by = [hop("gateway", region), hop("retriever", region), hop("llm", self.llm_in or region)]
        return httpx.Response(
            200,
            json={
                "answer": answer,
                "citations": [] if self.wrong else list(question.cites),
                "served_by": served_by,
            },
        )


# --- pure helpers -----------------------------------------------------------------------------


def test_templates_and_paths() -> None:
    template = {"q": "{question}", "meta": {"class": "{data_class}", "raw": "{not a placeholder}"}, "n": 3}
    rendered = render_template(template, {"question": "Why?", "data_class": "internal"})
    assert rendered == {"q": "Why?", "meta": {"class": "internal", "raw": "{not a placeholder}"}, "n": 3}
    body = {
        "result": {"text": "t", "sources": [{"id": "A"}, {"id": "B"}, {"title": "no id"}]},
        "hops": [1, 2],
    }
    assert read_path(body, "result.text") == "t"
    assert read_path(body, "result.sources.*.id") == ["A", "B"]
    assert read_path(body, "hops.-1") == 2
    assert read_path(body, "hops.5") is MISSING
    assert read_path(body, "result.nope") is MISSING
    assert read_path(body, "result.text.deeper") is MISSING
    assert read_path(body, "") is body


def test_registry_names_and_spec_validation() -> None:
    assert set(PROBES) == {
        "http",
        "rag",
        "sovereignty",
        "data",
        "freshness",
        "command",
        "python",
        "kubernetes-ready",
        "prometheus",
    }
    probes = make_probes(
        [spec({"kind": "rag", "data_class": "internal"}), spec({"kind": "rag", "data_class": "internal"})],
        context(FakeGateway()),
    )
    assert [p.name for p in probes] == ["rag internal", "rag internal#2"]
    with pytest.raises(ValidationError, match="facts and cites"):
        spec({"kind": "rag", "facts": ["x"]})
    with pytest.raises(ValidationError, match="canary"):
        spec({"kind": "data", "request": {"text": "{text}"}})
    with pytest.raises(ProbeError, match="not in the golden set"):
        make_probe(spec({"kind": "rag", "question": "Q-999"}), context(FakeGateway()))
    with pytest.raises(ProbeError, match="not in the design"):
        make_probe(spec({"kind": "rag", "data_class": "secret"}), context(FakeGateway()))
    with pytest.raises(ProbeError, match="full `url`"):
        make_probe(spec({"kind": "rag", "paths": {"hops_header": "x-trace"}}), context(FakeGateway()))
    with pytest.raises(ProbeError, match="nowhere to read"):
        make_probe(spec({"kind": "data"}), context(FakeGateway(), store_urls={}))
    with pytest.raises(ProbeError, match="cannot import"):
        make_probe(spec({"kind": "python", "call": "no_such_module_here:check"}), context(FakeGateway()))


def test_every_yaml_example_in_the_docs_is_a_valid_probe_spec() -> None:
    text = (ROOT / "docs" / "probes.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    # Lists of probes; a block that is a mapping shows a scenario's guardrails (around its probes).
    parsed = [yaml.safe_load(block) for block in blocks]
    assert all(isinstance(b, list) or "guardrails" in b for b in parsed)
    guardrails = [g for b in parsed if isinstance(b, dict) for g in b["guardrails"]]
    kinds = {TypeAdapter(Guardrail).validate_python(g).kind for g in guardrails}  # type: ignore[attr-defined]
    assert {"probe", "alert"} <= kinds
    specs = [spec(item) for block in parsed if isinstance(block, list) for item in block]
    assert {s.kind for s in specs} == set(PROBES) and len(specs) >= 12
    runnable = [s for s in specs if s.kind != "python"]
    assert len(make_probes(runnable, context(FakeGateway()))) == len(runnable)


# --- http -------------------------------------------------------------------------------------


def test_http_probe_status_latency_and_assertions() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/refused":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(
            200, json={"status": "ready", "served_by": [{"region": "scaleway/fr-par"}], "n": 1}
        )

    good = HttpProbe(
        url="http://svc.test/readyz",
        assertions=[
            {"path": "status", "equals": "ready"},
            {"path": "served_by.0.region", "contains": "fr-par"},
            {"path": "missing", "exists": False},
            {"path": "n"},
        ],
    )
    sample = one_sample(make_probe(good, context(handler)))
    assert sample.ok and sample.status == 200 and sample.kind == "http" and sample.error is None

    bad = HttpProbe(
        url="http://svc.test/readyz",
        expect_status=[204],
        assertions=[{"path": "status", "equals": "starting"}, {"path": "n", "equals": True}],
    )
    sample = one_sample(make_probe(bad, context(handler)))
    assert not sample.ok
    assert sample.error is not None
    assert "HTTP 200, expected 204" in sample.error and "'ready', expected 'starting'" in sample.error
    assert "n is 1, expected True" in sample.error

    refused = one_sample(make_probe(HttpProbe(url="http://svc.test/refused"), context(handler)))
    assert not refused.ok and refused.error is not None and "ConnectError" in refused.error
    slow = HttpProbe(url="http://svc.test/", max_latency=0.1)
    assert check_response(slow, 200, 0.25, MISSING) == ["took 0.250 s, more than 0.1 s"]
    with_assertion = HttpProbe(url="http://svc.test/", assertions=[{"path": "a"}])
    assert check_response(with_assertion, 200, 0.0, MISSING) == ["the body is not JSON"]


def test_http_probe_through_the_edge_reads_any_json_value() -> None:
    # A top-level list (datasette's ?_shape=array), through the edge as with a full URL.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/text":
            return httpx.Response(200, text="5 years")
        return httpx.Response(200, json=[{"id": 1, "answer": "5 years"}])

    listed = HttpProbe(url="/facts", assertions=[{"path": "0.answer", "equals": "5 years"}])
    sample = one_sample(make_probe(listed, context(handler)))
    assert sample.ok and sample.error is None and sample.entry_region == "aws/us-east-1"
    text = HttpProbe(url="/text", assertions=[{"path": "0"}])
    sample = one_sample(make_probe(text, context(handler)))
    assert not sample.ok and sample.error == "the body is not JSON"


# --- rag --------------------------------------------------------------------------------------


def test_rag_probe_through_the_edge_grades_and_fails_over() -> None:
    gateway = FakeGateway()
    probe = make_probe(spec({"kind": "rag", "question": "Q-001"}), context(gateway))
    sample = one_sample(probe)
    assert sample.ok and sample.correct is True and sample.error is None
    assert sample.entry_region == "aws/us-east-1" and sample.kind == "ask" and sample.data_class == "internal"
    assert [h.component for h in sample.hops] == ["gateway", "retriever", "llm"]
    # The design fills in what the hops left out.
    assert sample.hops[0].provider == "aws" and sample.hops[0].sovereignty == "foreign"
    assert gateway.asked[0][1] == {"question": GOLDEN_BY_ID["Q-001"].question, "data_class": "internal"}

    gateway.down = {"aws.test"}
    sample = one_sample(probe)
    assert sample.ok and sample.entry_region == "scaleway/fr-par"

    wrong = one_sample(
        make_probe(spec({"kind": "rag", "question": "Q-001"}), context(FakeGateway(wrong=True)))
    )
    assert wrong.ok and wrong.correct is False
    assert wrong.error == "Q-001: the answer does not state ['16.8 kg'] and does not cite ['PRD-001']"

    down = FakeGateway(down={"aws.test", "par.test"})
    failed = one_sample(make_probe(spec({"kind": "rag", "question": "Q-001"}), context(down)))
    assert not failed.ok and failed.status == 503 and failed.error == "down"


GOLDEN_BY_ID = {q.id: q for q in load_golden_set()}


def test_rag_probe_cycles_the_golden_questions_of_its_class() -> None:
    gateway = FakeGateway()
    probe = make_probe(spec({"kind": "rag", "data_class": "confidential"}), context(gateway))
    for _ in range(3):
        assert one_sample(probe).correct is True
    asked = [body["question"] for _, body in gateway.asked]
    assert len(set(asked)) == 3 and all(GOLDEN[q].data_class.value == "confidential" for q in asked)
    # Confidential asks go only to the sovereign region.
    assert {host for host, _ in gateway.asked} == {"par.test"}


def test_rag_probe_against_a_differently_shaped_service() -> None:
    """POST /query {"q": …} → {"result": {"text", "sources": [{"id"}]}}, hops in an x-trace header."""
    question = GOLDEN_BY_ID["Q-004"]
    seen: list[dict[str, Any]] = []

    def service(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/query"
        body = json.loads(request.content)
        seen.append(body)
        asked = GOLDEN[body["q"]]
        trace = [
            {"component": "api", "region": "scaleway/fr-par"},
            {"component": "llm", "region": "aws/us-east-1"},
        ]
        return httpx.Response(
            200,
            json={"result": {"text": golden_answer(asked), "sources": [{"id": d} for d in asked.cites]}},
            headers={"x-trace": json.dumps(trace)},
        )

    probe_spec = spec(
        {
            "kind": "rag",
            "question": question.id,
            "data_class": "public",
            "url": "http://faq.test/query",
            "request": {"q": "{question}", "lang": "en"},
            "paths": {"answer": "result.text", "citations": "result.sources.*.id", "hops_header": "x-trace"},
        }
    )
    sample = one_sample(make_probe(probe_spec, context(service, entries={})))
    assert seen == [{"q": question.question, "lang": "en"}]
    assert sample.ok and sample.correct is True, sample.error
    assert sample.entry_region == "scaleway/fr-par"
    assert [(h.component, h.region, h.sovereignty) for h in sample.hops] == [
        ("api", "scaleway/fr-par", "sovereign"),
        ("llm", "aws/us-east-1", "foreign"),
    ]
    # The same service judged for a confidential request: its llm hop is a violation.
    confidential = dataclasses.replace(sample, data_class="confidential")
    assert [(v.hop.component, v.level) for v in violations(confidential, APS)] == [
        ("llm", Sovereignty.FOREIGN)
    ]


def test_rag_probe_with_a_question_of_ones_own_and_a_bad_shape() -> None:
    def service(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"answer": "Pumps run 24 h a day.", "citations": ["OPS-7"]})

    own = spec(
        {
            "kind": "rag",
            "question": "How long do pumps run?",
            "facts": ["24 h"],
            "cites": ["OPS-7"],
            "url": "http://x.test/",
        }
    )
    sample = one_sample(make_probe(own, context(service)))
    assert sample.ok and sample.correct is True
    badly_pathed = spec({"kind": "rag", "question": "Q-001", "paths": {"answer": "result.text"}})
    sample = one_sample(make_probe(badly_pathed, context(FakeGateway())))
    assert not sample.ok and sample.error == "no answer text at 'result.text' (found nothing)"


# --- sovereignty ------------------------------------------------------------------------------


def sample_with(data_class: str | None, *hops: Hop, source: str = "load") -> RequestSample:
    return RequestSample(
        source=source,
        kind="ask",
        started=1.0,
        latency=0.1,
        ok=True,
        data_class=data_class,
        hops=hops,
        request_id="r1",
    )


def test_sovereignty_judge_on_foreign_unknown_and_lying_hops() -> None:
    fr = Hop("gateway", "scaleway/fr-par", "scaleway", "EU", "sovereign")
    us = Hop("llm", "aws/us-east-1", "aws", "US", "foreign")
    assert violations(sample_with("confidential", fr), APS) == []
    found = violations(sample_with("confidential", fr, us), APS)
    assert len(found) == 1
    assert (found[0].request_id, found[0].source, found[0].data_class) == ("r1", "load", "confidential")
    assert (found[0].hop, found[0].minimum, found[0].level) == (
        us,
        Sovereignty.SOVEREIGN,
        Sovereignty.FOREIGN,
    )
    assert violations(sample_with("internal", fr, us), APS) == []
    # A hop that names no known region and no level is held to foreign; one that claims more than
    # its region's level is held to the region's.
    unknown = Hop("store", "unknown")
    assert hop_level(unknown, APS) is Sovereignty.FOREIGN
    lying = Hop("llm", "aws/us-east-1", sovereignty="sovereign")
    assert [v.hop for v in violations(sample_with("confidential", unknown, lying), APS)] == [unknown, lying]
    # A region outside the design but in the catalog, claiming nothing.
    assert hop_level(Hop("dns", "ovhcloud/gra"), APS) is Sovereignty.SOVEREIGN
    # Nothing to judge without a known class.
    assert violations(sample_with(None, us), APS) == []
    assert violations(sample_with("secret", us), APS) == []
    # Trusted is below sovereign and enough for internal in the three-level design, guard or not.
    s3ns = Hop("llm", "s3ns/u-france-east1")
    assert violations(sample_with("internal", s3ns), UNGUARDED) == []
    assert len(violations(sample_with("confidential", s3ns), UNGUARDED)) == 1
    assert len(violations(sample_with("internal", us), UNGUARDED)) == 1


def test_sovereignty_judge_records_every_sample_it_sees() -> None:
    judge = SovereigntyJudge(APS)
    us = Hop("llm", "aws/us-east-1")
    judge.observe(sample_with("confidential", us, us))
    judge.observe(sample_with("confidential", Hop("gateway", "scaleway/fr-par"), source="rag confidential"))
    judge.observe(sample_with(None, us))
    report = judge.report()
    assert report.judged == 2 and len(report.violations) == 2 and report.requests == 1
    assert report.by_hop == {("llm", "aws/us-east-1"): 2}


def test_sovereignty_probe_asks_its_most_demanding_class_and_fails_on_a_foreign_hop() -> None:
    clean = FakeGateway()
    probe = make_probe(SovereigntySpec(), context(clean))
    assert isinstance(probe, SovereigntyProbe) and probe.data_class == "confidential"
    sample = one_sample(probe)
    assert sample.ok and sample.error is None and clean.asked[0][1]["data_class"] == "confidential"

    leaking = make_probe(SovereigntySpec(), context(FakeGateway(llm_in="aws/us-east-1")))
    sample = one_sample(leaking)
    assert not sample.ok
    assert sample.error == "llm in aws/us-east-1 is foreign, below sovereign for confidential"
    # Its own samples are recorded only when the run's sink shows them to the judge.
    assert isinstance(leaking, SovereigntyProbe)
    leaking.judge.observe(sample)

    async def finish() -> object:
        async with leaking.context.client_factory() as client:
            return await leaking.finish(client, leaking.context)

    report = asyncio.run(finish())
    assert isinstance(report, SovereigntyReport) and len(report.violations) == 1


# --- data -------------------------------------------------------------------------------------


def test_loss_accounting_counts_only_regions_allowed_to_hold_a_class() -> None:
    acked = [
        CanaryWrite("c1", "internal", 10.0),
        CanaryWrite("c2", "internal", 11.0),
        CanaryWrite("c3", "confidential", 12.0),
        CanaryWrite("c4", "internal", 13.0),
        CanaryWrite("c5", "internal", 14.0),
        CanaryWrite("c6", "confidential", 15.0),
    ]
    here, gone, unknown = Presence.PRESENT, Presence.MISSING, Presence.UNREADABLE
    readings = {
        # c2 lost in the primary only; c3, c6 not allowed here (c6 found anyway: misplaced).
        "aws/us-east-1": {"c1": here, "c2": gone, "c3": gone, "c4": gone, "c5": unknown, "c6": here},
        # c4 lost everywhere; c5 unreadable in the primary and missing here: unverified.
        "scaleway/fr-par": {"c1": here, "c2": here, "c3": here, "c4": gone, "c5": gone, "c6": gone},
    }
    report = account_losses(acked, readings, lambda region, data_class: may_hold(APS, region, data_class))
    assert report == DataReport(
        acknowledged=6,
        lost=(("c4", 13.0), ("c6", 15.0)),
        lost_window=(13.0, 15.0),
        per_region={"aws/us-east-1": ("c2", "c4"), "scaleway/fr-par": ("c4", "c5", "c6")},
        unverified=("c5",),
        misplaced={"aws/us-east-1": ("c6",)},
        unreadable={"aws/us-east-1": 1},
    )
    nothing_read = account_losses(
        acked[:1], {"aws/us-east-1": {}, "scaleway/fr-par": {"c1": unknown}}, lambda r, c: True
    )
    assert nothing_read.lost == () and nothing_read.unverified == ("c1",) and nothing_read.lost_window is None
    # A region that answered no read-back (a wiped database's 503s) shows, though another holds all.
    wiped = account_losses(
        acked[:2], {"aws/us-east-1": {}, "scaleway/fr-par": {"c1": here, "c2": here}}, lambda r, c: True
    )
    assert (wiped.lost, wiped.unverified, wiped.unreadable) == ((), (), {"aws/us-east-1": 2})
    assert account_losses([], readings, lambda r, c: True).lost_window is None
    # Guard off: every region may hold everything.
    assert may_hold(UNGUARDED, "aws/us-east-1", "confidential")
    assert not may_hold(APS, "aws/us-east-1", "confidential") and may_hold(APS, "aws/us-east-1", "internal")


@pytest.fixture
def no_replication_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake stores hold a write as soon as it is acknowledged: no replication lag to wait out."""
    monkeypatch.setattr(data_probe, "replication_wait", lambda *args: 0.0)


def test_the_read_back_waits_out_the_replication_lag_after_the_newest_canary() -> None:
    acked = [CanaryWrite("a", "internal", 100.0), CanaryWrite("b", "internal", 103.0)]
    assert APS.replication.mode == "async" and APS.replication.lag == 1.0
    assert replication_wait(APS, acked, 103.5) == pytest.approx(2.5)  # 103 + 1 s lag + 2 s margin
    assert replication_wait(APS, acked, 106.0) == 0.0 and replication_wait(APS, [], 103.5) == 0.0
    for mode in (ReplicationMode.SYNC, ReplicationMode.NONE):
        replication = APS.replication.model_copy(update={"mode": mode})
        assert replication_wait(APS.model_copy(update={"replication": replication}), acked, 103.5) == 0.0


def test_the_read_back_leaves_out_canaries_too_recent_to_have_replicated_never_before_the_last_revert() -> (
    None
):
    assert read_back_until(APS, 110.0, 100.0) == 107.0  # 110 − 1 s lag − 2 s margin
    # A read-back less than lag + margin after the impact window ended (the last revert + the
    # settle): every canary up to that end, waited for.
    assert read_back_until(APS, 101.5, 100.0) == 100.0
    acked = [CanaryWrite("a", "internal", 99.0), CanaryWrite("b", "internal", 100.0)]
    assert replication_wait(APS, acked, 101.5) == pytest.approx(1.5)
    # Not known when the measured run ended (a library caller), or nothing to wait for: every canary.
    assert read_back_until(APS, 110.0, None) == 110.0
    for mode in (ReplicationMode.SYNC, ReplicationMode.NONE):
        replication = APS.replication.model_copy(update={"mode": mode})
        assert read_back_until(APS.model_copy(update={"replication": replication}), 110.0, 100.0) == 110.0


class FakeStores:
    """Gateways that acknowledge writes (the primary fails every third), stores that keep them;
    the fr-par store drops one acknowledged write."""

    def __init__(self, lookup: bool = True) -> None:
        self.held: dict[str, set[str]] = {"store-aws.test": set(), "store-par.test": set()}
        self.writes = 0
        self.drop: str | None = None
        self.lookup = lookup
        """Whether the stores answer the reference store's bulk ``POST /v1/documents/lookup``."""
        self.reads: list[str] = []
        """The read-back requests the stores were asked, ``METHOD path``."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.held:
            self.reads.append(f"{request.method} {request.url.path}")
        if request.method == "POST" and request.url.path == "/v1/documents/lookup":
            if not self.lookup:  # a store of the user's own: no such route
                return httpx.Response(405, json={"message": "method not allowed"})
            ids = json.loads(request.content)["ids"]
            found = [doc_id for doc_id in ids if doc_id in self.held[host]]
            missing = [doc_id for doc_id in ids if doc_id not in self.held[host]]
            return httpx.Response(200, json={"found": found, "missing": missing})
        if request.method == "POST":
            body = json.loads(request.content)
            self.writes += 1
            if host == "aws.test" and self.writes % 3 == 0:
                return httpx.Response(503, json={"message": "store down"})
            if self.writes == 2:
                # Both regions refuse: a write never acknowledged, not a loss.
                return httpx.Response(400, json={"message": "rejected"})
            region = "aws/us-east-1" if host == "aws.test" else "scaleway/fr-par"
            self.held["store-par.test"].add(body["id"])
            if body["data_class"] != "confidential":
                self.held["store-aws.test"].add(body["id"])
            if self.drop is None:
                self.drop = body["id"]
                self.held["store-par.test"].discard(body["id"])
            return httpx.Response(
                200, json={"id": body["id"], "served_by": [hop("gateway", region), hop("store", region)]}
            )
        doc_id = request.url.path.rsplit("/", 1)[-1]
        found = doc_id in self.held[host]
        return httpx.Response(200 if found else 404, json={"id": doc_id})


@pytest.mark.parametrize("lookup", [True, False], ids=["bulk", "one-at-a-time"])
def test_data_probe_writes_canaries_and_reads_them_back_from_every_region(
    lookup: bool, no_replication_wait: None
) -> None:
    stores = FakeStores(lookup)
    probe = make_probe(DataSpec(data_class="internal"), context(stores))
    assert isinstance(probe, DataProbe)
    samples = [one_sample(probe) for _ in range(6)]
    assert [s.ok for s in samples] == [True, False, True, True, True, True]
    assert samples[0].kind == "write" and samples[0].request_id is not None
    assert samples[0].request_id.startswith("canary-") and samples[0].hops[1].component == "store"
    assert samples[2].entry_region == "scaleway/fr-par"  # the primary's 503 failed over
    assert len(probe.acknowledged()) == 5

    async def finish() -> DataReport:
        async with probe.context.client_factory() as client:
            return await probe.finish(client, probe.context)

    report = asyncio.run(finish())
    assert report.acknowledged == 5 and report.lost == () and report.unverified == ()
    assert report.per_region == {"aws/us-east-1": (), "scaleway/fr-par": (stores.drop,)}
    # A store that answers the bulk read is asked once per replica; one that does not (405), once
    # in bulk and then once per canary, as before bulk reads existed.
    gets = sum(read.startswith("GET ") for read in stores.reads)
    assert sum(read == "POST /v1/documents/lookup" for read in stores.reads) == 2
    assert gets == (0 if lookup else 2 * 5)
    stores.held["store-aws.test"].clear()
    report = asyncio.run(finish())
    assert [doc_id for doc_id, _ in report.lost] == [stores.drop]
    assert report.lost_window is not None and report.lost_window[0] == report.lost_window[1]
    assert report.not_read == 0 and report.read_until is not None
    # Told when what the run measures ended (here: as the third canary was acknowledged), the
    # read-back asks about every canary up to then, and leaves out the two acknowledged since, too
    # recent to have reached the asynchronous replica.
    third = probe.acknowledged()[2].acked_at
    probe.read_at_least_until = third
    report = asyncio.run(finish())
    assert (report.acknowledged, report.not_read, report.read_until) == (3, 2, third)
    assert [doc_id for doc_id, _ in report.lost] == [stores.drop]


def test_data_probe_for_a_confidential_class_ignores_the_region_that_may_not_hold_it(
    no_replication_wait: None,
) -> None:
    stores = FakeStores()
    probe = make_probe(DataSpec(data_class="confidential"), context(stores))
    assert isinstance(probe, DataProbe)
    for _ in range(3):
        one_sample(probe)

    async def finish() -> DataReport:
        async with probe.context.client_factory() as client:
            return await probe.finish(client, probe.context)

    report = asyncio.run(finish())
    assert set(report.per_region) == {"scaleway/fr-par"} and report.misplaced == {}
    assert [doc_id for doc_id, _ in report.lost] == [stores.drop]


class SearchStore:
    """A store of the user's kind: writes at /notes, and a search that answers 200 either way —
    ``{"hits": {"total": N, "ids": [...]}}`` — so 200 says nothing about presence."""

    def __init__(self) -> None:
        self.held: dict[str, set[str]] = {"aws.test": set(), "par.test": set()}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if request.method == "POST":
            doc_id = json.loads(request.content)["id"]
            self.held[host].add(doc_id)
            if host == "aws.test" and len(self.held["aws.test"]) != 3:  # replicated, but the third
                self.held["par.test"].add(doc_id)
            return httpx.Response(201, json={"id": doc_id})
        wanted = request.url.params["q"]
        ids = [wanted] if wanted in self.held[host] else []
        return httpx.Response(200, json={"hits": {"total": len(ids), "ids": ids}})


@pytest.mark.parametrize(
    "found",
    [
        [{"path": "hits.total", "equals": 1}],
        [{"path": "hits.ids", "contains": "{id}"}],
        [{"path": "hits.ids", "not_empty": True}],
    ],
)
def test_read_back_with_found_assertions_for_a_store_that_answers_200_either_way(
    found: list[dict[str, Any]], no_replication_wait: None
) -> None:
    store = SearchStore()
    read = {"aws/us-east-1": ("http://aws.test/search?q={id}",), "scaleway/fr-par": ("/search?q={id}",)}
    probe_spec = spec({"kind": "data", "url": "http://aws.test/notes", "read_back": read, "found": found})
    probe = make_probe(probe_spec, context(store))
    assert isinstance(probe, DataProbe)
    assert all(one_sample(probe).ok for _ in range(4))

    async def finish() -> DataReport:
        async with probe.context.client_factory() as client:
            return await probe.finish(client, probe.context)

    report = asyncio.run(finish())
    third = probe.acknowledged()[2].id
    assert report.acknowledged == 4 and report.lost == ()
    assert report.per_region == {"aws/us-east-1": (), "scaleway/fr-par": (third,)}
    # Without `found`, every 200 would say "there": the missing copy would go unseen.
    blind = make_probe(probe_spec.model_copy(update={"found": ()}), context(store))
    assert isinstance(blind, DataProbe)
    blind._acked = list(probe.acknowledged())

    async def finish_blind() -> DataReport:
        async with blind.context.client_factory() as client:
            return await blind.finish(client, blind.context)

    assert asyncio.run(finish_blind()).per_region == {"aws/us-east-1": (), "scaleway/fr-par": ()}


def test_presence_in_reads_json_and_says_unreadable_otherwise() -> None:
    found = (JsonAssertion(path="rows.*.id", contains="{id}"),)
    assert presence_in(b'{"rows": [{"id": "c-1"}]}', found, "c-1") is Presence.PRESENT
    assert presence_in(b'{"rows": []}', found, "c-1") is Presence.MISSING
    assert presence_in(b"<html>", found, "c-1") is Presence.UNREADABLE
    empty = (JsonAssertion(path="rows", not_empty=False),)
    assert presence_in(b'{"rows": []}', empty, "x") is Presence.PRESENT
    with pytest.raises(ValidationError):
        spec({"kind": "data", "read_back": {"a": ["x/{id}"]}, "found": [{"path": "a", "nope": 1}]})


# --- command and python -----------------------------------------------------------------------


def test_command_probe_exit_codes_and_timeout(tmp_path: Path) -> None:
    ctx = context(FakeGateway())
    ok = one_sample(
        make_probe(
            CommandProbe(argv=[sys.executable, "-c", "import os; print(os.environ['BASCULE_ENTRIES'])"]), ctx
        )
    )
    assert ok.ok and ok.kind == "command"
    failing = CommandProbe(
        argv=[sys.executable, "-c", "import sys; print('bad', file=sys.stderr); sys.exit(3)"]
    )
    sample = one_sample(make_probe(failing, ctx))
    assert not sample.ok and sample.error == "exit 3: bad"
    python = one_sample(make_probe(CommandProbe(argv=["{python}", "-c", "import sys; sys.exit(0)"]), ctx))
    assert python.ok, python.error  # as in a design's commands: the Python running bascule
    missing = one_sample(make_probe(CommandProbe(argv=["/no/such/command"]), ctx))
    assert not missing.ok and missing.error is not None and "cannot run" in missing.error
    pid_file = tmp_path / "pid"
    began = time.monotonic()
    hanging = CommandProbe(argv=["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], timeout=0.5)
    hung = one_sample(make_probe(hanging, ctx))
    assert not hung.ok and hung.error == "no result within the probe's timeout (0.5 s)"
    assert time.monotonic() - began < 2.5
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def check_true() -> bool:
    return True


def check_false() -> int:
    return 0


def check_raises() -> bool:
    raise RuntimeError("the queue is stuck")


async def check_async() -> str:
    await asyncio.sleep(0)
    return "fine"


HUNG = threading.Event()


def check_hangs() -> bool:
    HUNG.wait(5.0)
    return True


def test_python_probe_calls_sync_and_async_callables() -> None:
    ctx = context(FakeGateway())
    assert one_sample(make_probe(PythonProbe(call="test_probes:check_true"), ctx)).ok
    assert one_sample(make_probe(PythonProbe(call="test_probes:check_async"), ctx)).ok
    falsy = one_sample(make_probe(PythonProbe(call="test_probes:check_false"), ctx))
    assert not falsy.ok and falsy.error == "test_probes:check_false returned 0"
    raised = one_sample(make_probe(PythonProbe(call="test_probes:check_raises"), ctx))
    assert not raised.ok and raised.error == "RuntimeError: the queue is stuck"
    began = time.monotonic()
    try:
        hung = one_sample(make_probe(PythonProbe(call="test_probes:check_hangs", timeout=0.2), ctx))
    finally:
        HUNG.set()
    assert not hung.ok and hung.error is not None and "timeout (0.2 s)" in hung.error
    assert time.monotonic() - began < 1.0
    with pytest.raises(ProbeError, match="has no 'nope'"):
        make_probe(PythonProbe(call="test_probes:nope"), ctx)


# --- runner and hypothesis ----------------------------------------------------------------------


async def check_slow() -> bool:
    await asyncio.sleep(1.0)
    return True


def test_runner_paces_each_probe_and_a_slow_probe_blocks_nobody() -> None:
    ctx = context(FakeGateway())
    fast = make_probe(PythonProbe(name="fast", call="test_probes:check_async", rate=20), ctx)
    slow = make_probe(PythonProbe(name="slow", call="test_probes:check_slow", rate=4, timeout=2.0), ctx)
    samples: list[RequestSample] = []
    lock = threading.Lock()

    def sink(sample: RequestSample) -> None:
        with lock:
            samples.append(sample)
        if sample.source == "fast" and len(samples) == 3:
            raise RuntimeError("a consumer's bug")

    runner = ProbeRunner([fast, slow], ctx, sink)
    began = time.monotonic()
    runner.start()
    try:
        time.sleep(1.5)
    finally:
        runner.stop()
    stopped = time.monotonic() - began
    quick = sorted(s.started for s in samples if s.source == "fast")
    slow_samples = [s for s in samples if s.source == "slow"]
    print(
        f"\n1.5 s at 20 Hz: {len(quick)} fast samples; 4 Hz × 1 s each: {len(slow_samples)} slow; "
        f"stopped after {stopped:.2f} s"
    )
    assert 26 <= len(quick) <= 32
    gaps = [b - a for a, b in itertools.pairwise(quick)]
    assert max(gaps) < 0.15 and abs(sum(gaps) / len(gaps) - 0.05) < 0.01
    # Slow samples overlap: 4 Hz is kept although each takes 1 s; those in flight end at stop.
    assert len(slow_samples) >= 6 and all(s.ok for s in slow_samples)
    assert stopped < 1.5 + 1.0 + 0.5
    stats = runner.stats
    assert stats["fast"].samples == len(quick) and stats["slow"].skipped == 0
    with pytest.raises(ProbeError, match="unique"):
        ProbeRunner([fast, fast], ctx, sink)


def test_runner_bounds_the_samples_in_flight() -> None:
    ctx = context(FakeGateway())
    hung = make_probe(PythonProbe(name="hung", call="test_probes:check_slow", rate=50, timeout=0.04), ctx)
    seen: list[RequestSample] = []
    with ProbeRunner([hung], ctx, seen.append) as runner:
        time.sleep(0.5)
    stats = runner.stats["hung"]
    # ceil(50 × 0.04) + 1 = 3 in flight; each times out after 0.04 s.
    assert stats.samples == len(seen) and stats.failed == len(seen) and len(seen) >= 5
    assert all(s.error is not None and "timeout" in s.error for s in seen)


async def check_blocks_the_loop() -> bool:
    time.sleep(0.3)
    return True


def test_ticks_missed_by_a_blocked_loop_are_dropped_and_counted() -> None:
    ctx = context(FakeGateway())
    fast = make_probe(PythonProbe(name="fast", call="test_probes:check_async", rate=20), ctx)
    blocker = make_probe(PythonProbe(name="blocker", call="test_probes:check_blocks_the_loop", rate=1), ctx)
    seen: list[RequestSample] = []
    with ProbeRunner([fast, blocker], ctx, seen.append) as runner:
        time.sleep(0.6)
    quick = sorted(s.started for s in seen if s.source == "fast")
    # No burst after the 0.3 s block: the next tick comes one period after the loop is back.
    assert min(b - a for a, b in itertools.pairwise(quick)) > 0.03
    assert runner.stats["fast"].late >= 4


def test_judge_hypothesis_is_per_probe() -> None:
    def s(source: str, ok: bool, started: float, correct: bool | None = None) -> RequestSample:
        return RequestSample(
            source, "ask", started, 0.1, ok, correct=correct, error=None if ok else "HTTP 503"
        )

    samples = [
        s("a", True, 1),
        s("a", True, 2),
        s("a", False, 3),
        s("b", True, 1),
        s("b", True, 2, correct=False),
    ]
    result = judge_hypothesis(samples, ["a", "b", "c"], 0.6)
    assert [(v.name, v.samples, v.passed, v.ok) for v in result.verdicts] == [
        ("a", 3, 2, True),
        ("b", 2, 1, False),
        ("c", 0, 0, False),
    ]
    assert not result.ok
    assert [(f.probe, f.error) for f in result.failures] == [
        ("c", "no sample"),
        ("b", "the answer is not correct"),
        ("a", "HTTP 503"),
    ]
    assert judge_hypothesis(samples[:3], ["a"], 2 / 3).ok


def test_a_failed_hypothesis_says_why_once_per_kind_of_failure() -> None:
    def failed(source: str, error: str, started: float) -> RequestSample:
        return RequestSample(source, "ask", started, 0.1, False, error=error)

    samples = [failed("a", "timeout after 2.0 s", t) for t in (1, 2, 3)] + [
        failed("b", "HTTP 503", 1),
        failed("c", "HTTP 500", 1),
        failed("d", "HTTP 502", 1),
    ]
    result = judge_hypothesis(samples, ["a", "b", "c", "d"], 1.0)
    assert failure_reasons(result) == [
        "a: timeout after 2.0 s (×3)",
        "b: HTTP 503",
        "c: HTTP 500",
        "… and 1 more kinds of failure (the journal has them)",
    ]
    assert failure_reasons(judge_hypothesis(samples[:1], ["a"], 1.0)) == ["a: timeout after 2.0 s"]


def test_check_hypothesis_runs_the_probes_over_the_window() -> None:
    gateway = FakeGateway()
    ctx = context(gateway)
    probes = make_probes(
        [RagProbe(data_class="public", rate=10), PythonProbe(call="test_probes:check_false", rate=5)], ctx
    )
    journal: list[RequestSample] = []
    result = check_hypothesis(probes, ctx, over=0.5, success_ratio=1.0, on_sample=journal.append)
    assert not result.ok and len(journal) == len(result.samples)
    verdicts = {v.name: v for v in result.verdicts}
    assert verdicts["rag public"].ok and 4 <= verdicts["rag public"].samples <= 6
    assert not verdicts["python test_probes:check_false"].ok
    assert {f.error for f in result.failures} == {"test_probes:check_false returned 0"}
    assert "does not hold" in result.summary()


def test_a_window_that_ran_out_before_the_first_tick_still_judges_one_sample_per_probe() -> None:
    ctx = context(FakeGateway())
    probes = make_probes(
        [RagProbe(data_class="public", rate=10), RagProbe(data_class="internal", rate=2)], ctx
    )
    result = check_hypothesis(probes, ctx, over=0.0, success_ratio=1.0)
    assert result.ok, result.summary()
    assert [(v.name, v.samples) for v in result.verdicts] == [("rag public", 1), ("rag internal", 1)]


# --- against the real local stack ---------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from bascule.targets.local.stack import LocalStack

    running = LocalStack.start(APS, APS_PATH, tmp_path_factory.mktemp("probes"), timeout=60)
    try:
        yield running
    finally:
        running.stop()


def stack_context(stack: Any) -> ProbeContext:
    stores: dict[str, list[str]] = {}
    for replica in stack.supervisor.replicas():
        if replica.spec.name.startswith("store-") and replica.url:
            stores.setdefault(replica.spec.group, []).append(replica.url)
    return ProbeContext(design=stack.design, entries=stack.entries(), store_urls=stores)


@pytest.mark.slow
def test_rag_probes_hold_at_10_hz_on_the_live_stack(stack: Any) -> None:
    ctx = stack_context(stack)
    probes = make_probes(
        [RagProbe(data_class="internal"), RagProbe(data_class="confidential"), SovereigntySpec()], ctx
    )
    result = check_hypothesis(probes, ctx, over=2.0, success_ratio=1.0)
    latencies = sorted(s.latency for s in result.samples)
    p50, p95 = (latencies[int(q * (len(latencies) - 1))] * 1000 for q in (0.5, 0.95))
    print(f"\n{result.summary()}; latency p50 {p50:.0f} ms, p95 {p95:.0f} ms")
    assert result.ok, result.failures
    # 20 ticks each; a machine loaded by other work can delay the loop past a few of them.
    assert all(14 <= v.samples <= 22 for v in result.verdicts)
    confidential = [s for s in result.samples if s.data_class == "confidential"]
    assert confidential and all(h.region == "scaleway/fr-par" for s in confidential for h in s.hops)


@pytest.mark.slow
def test_data_probe_canaries_are_all_read_back_on_the_live_stack(stack: Any) -> None:
    ctx = stack_context(stack)
    assert set(ctx.store_urls) == {"aws/us-east-1", "scaleway/fr-par"}
    probes = make_probes(
        [DataSpec(data_class="internal", rate=10), DataSpec(data_class="confidential", rate=10)], ctx
    )
    result = check_hypothesis(probes, ctx, over=1.0, success_ratio=1.0)
    assert result.ok, result.failures
    began = time.monotonic()
    reports = finish_probes(probes, ctx, settle=APS.replication.lag + 1.0)
    print(f"\ncanaries: {result.summary()}; read back in {time.monotonic() - began:.2f} s (settle included)")
    internal, confidential = (reports[p.name] for p in probes)
    assert isinstance(internal, DataReport) and isinstance(confidential, DataReport)
    # 10 ticks each; a machine loaded by other work can delay the loop past a few of them.
    assert internal.acknowledged >= 7 and internal.lost == () and internal.unverified == ()
    assert internal.per_region == {"aws/us-east-1": (), "scaleway/fr-par": ()}
    # Confidential canaries are held only in the sovereign region, and nowhere else.
    assert confidential.acknowledged >= 7 and confidential.lost == ()
    assert confidential.per_region == {"scaleway/fr-par": ()} and confidential.misplaced == {}

    # The data-loss fault's effect, by hand: fr-par's store wiped. Internal canaries survive in the
    # primary but show as fr-par's gap; confidential ones had nowhere else to be.
    with httpx.Client(trust_env=False) as client:
        for url in ctx.store_urls["scaleway/fr-par"]:
            assert client.post(f"{url}/v1/admin/wipe", timeout=5).status_code == 200
    internal, confidential = (finish_probes(probes, ctx)[p.name] for p in probes)
    assert isinstance(internal, DataReport) and isinstance(confidential, DataReport)
    assert internal.lost == () and len(internal.per_region["scaleway/fr-par"]) == internal.acknowledged
    assert len(confidential.lost) == confidential.acknowledged and confidential.lost_window is not None
    first, last = confidential.lost_window
    print(
        f"after wiping fr-par: {len(confidential.lost)} confidential canaries lost over {last - first:.2f} s"
    )
    assert isinstance(probes[1], DataProbe)
    acked = probes[1].acknowledged()
    assert (first, last) == (acked[0].acked_at, acked[-1].acked_at)


def test_the_judge_counts_only_requests_whose_path_is_known() -> None:
    """A request of a data class with no hop at all (nobody could tell where it went) is not judged
    — it is counted as unattributed — and a hop a fault answered in front of is not a violation."""
    from bascule.journal import HopSource
    from bascule.model.loading import read_design
    from bascule.probes.sovereignty import SovereigntyJudge

    design = read_design(ROOT / "designs" / "us-fallback.yaml")
    judge = SovereigntyJudge(design)
    plane = HopSource.FAULT_PLANE
    us = Hop("llm", "aws/us-east-1", via=plane, status=200)
    blocked = Hop("llm", "aws/us-east-1", via=plane, status=429, relayed=False)
    par = Hop("llm", "scaleway/fr-par", via=plane, status=200)
    samples = [
        RequestSample("load", "ask", 0.0, 0.1, True, data_class="confidential"),  # no path
        RequestSample("load", "ask", 0.0, 0.1, False, data_class="confidential"),  # failed, no path
        RequestSample("load", "ask", 0.0, 0.1, True, data_class="confidential", hops=(blocked, par)),
        RequestSample("load", "ask", 0.0, 0.1, True, data_class="confidential", hops=(us,)),
    ]
    found = [v for s in samples for v in judge.observe(s)]
    report = judge.report()
    assert (report.judged, report.unattributed, report.requests) == (2, 1, 1)
    assert [(v.hop.region, v.data_class) for v in found] == [("aws/us-east-1", "confidential")]


def test_a_path_its_service_reported_that_stops_before_an_unseen_call_is_left_open() -> None:
    """A service that reports only its own hop while its calls to a cache went unseen (a Redis in
    another region, say: connections the fault plane cannot tell apart) has not told where the
    request went from there: the judge counts it open, for the metrics to leave unjudged. A path
    that names a place of the component called, or that never reached the caller, is closed."""
    from bascule.model.loading import read_design

    design = read_design(ROOT / "designs" / "us-fallback.yaml")
    par, us = "scaleway/fr-par", "aws/us-east-1"
    judge = SovereigntyJudge(design)
    own = Hop("gateway", par)  # served_by, the service's own report
    plane = HopSource.FAULT_PLANE
    samples = [
        (own,),  # stops at the gateway, which made calls to the llm nobody could tie to a request
        (own,),
        (own, Hop("llm", par)),  # names where its llm call went
        (Hop("gateway", us),),  # another caller's region: no unseen call from there
        (Hop("gateway", par, via=plane),),  # the fault plane's alone: counted apart (relayed_only)
    ]
    for hops in samples:  # of a class a hop could violate (a minimum above foreign): the US one does
        judge.observe(RequestSample("load", "ask", 0.0, 0.1, True, data_class="confidential", hops=hops))
    assert judge.report().open_paths == 0  # no call was open
    report = judge.report([("gateway", par, "llm")])
    assert (report.judged, report.relayed_only, report.open_paths) == (5, 1, 2)
    assert judge.report([("gateway", par, "store")]).open_paths == 3
    internal = SovereigntyJudge(design)  # min_sovereignty: foreign — no path of it can matter
    for hops in samples:
        internal.observe(RequestSample("load", "ask", 0.0, 0.1, True, data_class="internal", hops=hops))
    report = internal.report([("gateway", par, "llm")])
    assert (report.judged, report.relayed_only, report.open_paths) == (5, 0, 0)


@pytest.mark.parametrize(
    "probe",
    [
        {"kind": "http", "url": "http://svc.test/healthz"},
        {"kind": "http", "url": "/healthz"},
        {"kind": "rag", "data_class": "internal"},
        {"kind": "sovereignty"},
        {"kind": "data", "data_class": "internal"},
    ],
)
def test_every_probe_request_carries_the_trace_its_sample_records(probe: dict[str, Any]) -> None:
    """The trace id a sample records is the one its request carried in `traceparent`: what ties the
    hops the fault plane relays (and a service's spans) to the request."""
    from bascule.tracecontext import parse_traceparent

    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(parse_traceparent(request.headers.get("traceparent")))
        return httpx.Response(200, json={"status": "ok", "id": "x", "answer": "", "citations": []})

    sample = one_sample(make_probe(spec(probe), context(handler)))
    assert seen and seen[0] is not None
    assert sample.trace_id == seen[0]
