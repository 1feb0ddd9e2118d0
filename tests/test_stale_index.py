"""`stale-index`: a store replica's index frozen while writes go on — what httpx sees of the real
reference store (searched directly, and by the real reference retriever) while it holds and once
it ends; writes replicated into a frozen replica; the kind as data (the local effect, the
plan-time refusal of a service of one's own, Kubernetes' refusal); and the fault carried out by
the local target on a running reference stack, seen through its gateway (slow)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube_world import TARGET, mapping, touch_of
from local_helpers import ROOT, phase
from typer.testing import CliRunner

from bascule.cli import app
from bascule.faults import StaleIndex
from bascule.model.loading import read_design
from bascule.model.selector import Selector
from bascule.plan.resolve import resolve
from bascule.stack import store
from bascule.stack.corpus import DataClass
from bascule.stack.embedding import embed
from bascule.stack.layout import layout
from bascule.stack.store.index import StoredDocument
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local.effects import (
    FreezeIndex,
    compute_effects,
    describe_effect,
    dump_effect,
    parse_effect,
)
from bascule.targets.local.stack import LocalStack
from bascule.targets.local.target import LocalTarget
from tests.run_cli import run_bascule
from tests.test_retriever import serve_app, serve_retriever

AWS = "aws/us-east-1"
STORE = Selector(component="store", region=AWS)
FACTS = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}
QUESTION = "How deep are the helical anchors of the SF-220 islands screwed?"


@pytest.fixture
def store_url() -> Iterator[str]:
    config = store.StoreConfig(
        region="aws/us-east-1", name="store-1", replication=store.ReplicationMode.NONE, seed_corpus=True
    )
    with serve_app(store.create_app(config)) as url:
        yield url


def _search(client: httpx.Client, url: str, query: str, k: int = 5) -> list[dict[str, Any]]:
    response = client.post(f"{url}/v1/search", json={"query": query, "k": k, "max_class": "confidential"})
    assert response.status_code == 200
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _index(client: httpx.Client, url: str, frozen: bool | None = None) -> dict[str, Any]:
    if frozen is None:
        response = client.get(f"{url}/v1/admin/index")
    else:
        response = client.post(f"{url}/v1/admin/index", json={"frozen": frozen})
    assert response.status_code == 200, response.text
    state: dict[str, Any] = response.json()
    return state


def test_httpx_sees_searches_from_the_index_as_it_was(store_url: str) -> None:
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        marker = f"zq{uuid.uuid4().hex[:12]}"
        top = _search(client, store_url, QUESTION)[0]
        assert _index(client, store_url) == {
            "frozen": False,
            "catching_up": None,
            "frozen_at": None,
            "behind": 0,
            "behind_seconds": 0.0,
            "region": "aws/us-east-1",
            "replica": "store-1",
        }
        frozen = _index(client, store_url, frozen=True)
        assert frozen["frozen"] and frozen["behind"] == 0
        # Writes go on and are acknowledged: a new document, and a rewrite of the top answer.
        new = client.post(
            f"{store_url}/v1/documents",
            json={"id": "NEW-1", "text": f"{marker} anchors", "data_class": "internal"},
        )
        rewrite = client.post(
            f"{store_url}/v1/documents",
            json={
                "id": top["id"],
                "title": top["title"],
                "text": f"rewritten: {marker}",
                "data_class": "internal",
            },
        )
        assert new.status_code == rewrite.status_code == 200
        # Reads by id are fresh...
        assert client.get(f"{store_url}/v1/documents/NEW-1").json()["text"] == f"{marker} anchors"
        assert client.get(f"{store_url}/v1/documents/{top['id']}").json()["text"] == f"rewritten: {marker}"
        # ...searches are not: the new document is not found, the rewritten one is found as it was.
        # (A word's hashed features may be shared by seeded documents: those may be found by it.)
        during = _search(client, store_url, marker)
        assert "NEW-1" not in {r["id"] for r in during}
        assert all(r["text"] == top["text"] for r in during if r["id"] == top["id"]), (
            "the rewrite is not indexed"
        )
        stale = _search(client, store_url, QUESTION)
        assert stale[0] == top, "the old version, found by its old words"
        assert _index(client, store_url)["behind"] == 2
        # A freeze of a frozen index keeps the older copy.
        assert _index(client, store_url, frozen=True)["frozen_at"] == frozen["frozen_at"]
        assert client.get(f"{store_url}/v1/admin/stats").json()["index"]["behind"] == 2
        caught_up = _index(client, store_url, frozen=False)
        assert caught_up["caught_up"] == 2 and not caught_up["frozen"]
        # Both found by the marker now (a seeded document sharing its hashed features may rank too).
        assert {"NEW-1", top["id"]} <= {r["id"] for r in _search(client, store_url, marker)}
        fresh = [r for r in _search(client, store_url, QUESTION) if r["id"] == top["id"]]
        assert all(r["text"] == f"rewritten: {marker}" for r in fresh)
        bad = client.post(f"{store_url}/v1/admin/index", json={"frozen": "yes please"})
        assert bad.status_code == 422


def test_the_reference_retriever_passes_on_the_stale_answers(store_url: str) -> None:
    marker = f"zq{uuid.uuid4().hex[:12]}"
    with serve_retriever(store_url) as url, httpx.Client(timeout=10.0, trust_env=False) as client:
        _index(client, store_url, frozen=True)
        written = client.post(
            f"{store_url}/v1/documents", json={"id": "NEW-2", "text": marker, "data_class": "internal"}
        )
        assert written.status_code == 200
        ask = {"question": marker, "data_class": "internal", "k": 5}
        during = client.post(f"{url}/v1/retrieve", json=ask)
        _index(client, store_url, frozen=False)
        after = client.post(f"{url}/v1/retrieve", json=ask)
    assert during.status_code == after.status_code == 200
    assert "NEW-2" not in {p["doc_id"] for p in during.json()["passages"]}
    assert "NEW-2" in {p["doc_id"] for p in after.json()["passages"]}


def test_writes_replicated_into_a_frozen_replica_are_held_not_searched() -> None:
    config = store.StoreConfig(region="eu", name="s", replication=store.ReplicationMode.NONE)
    clock = iter(float(t) for t in range(100))
    replica = store.Store(config, clock=lambda: next(clock), wall_clock=lambda: 1000.0)
    replica.write("A", "a", "alpha bravo", DataClass.INTERNAL, ())
    replica.freeze_index()
    document = StoredDocument("B", "b", "alpha charlie", DataClass.INTERNAL, (), "us/s", 1, 999.0)
    assert replica.apply("us/s", [(1, document)])["stored"] == 1
    assert replica.index.get("B") == document, "held and read by id"
    found = [d.id for d, _ in replica.search(embed("alpha"), 5, DataClass.CONFIDENTIAL)]
    assert found == ["A"], "the replicated document is not in the frozen index"
    status = replica.index_status()
    assert status["behind"] == 1 and status["behind_seconds"] > 0
    # A wipe during the freeze takes the frozen index with it: frozen, and empty.
    replica.wipe()
    assert replica.search(embed("alpha"), 5, DataClass.CONFIDENTIAL) == []
    assert replica.thaw_index()["caught_up"] == 0
    assert replica.search(embed("alpha"), 5, DataClass.CONFIDENTIAL) == []


def test_an_index_catching_up_at_a_rate_takes_in_the_oldest_writes_first() -> None:
    config = store.StoreConfig(region="eu", name="s", replication=store.ReplicationMode.NONE)
    now = [0.0]
    replica = store.Store(config, clock=lambda: now[0], wall_clock=lambda: 1000.0 + now[0])
    replica.freeze_index()
    for n in range(5):
        now[0] += 0.1
        replica.write(f"D{n}", f"D{n}", f"alpha w{n}", DataClass.INTERNAL, ())

    def found() -> set[str]:
        return {d.id for d, _ in replica.search(embed("alpha"), 10, DataClass.CONFIDENTIAL)}

    assert found() == set()
    status = replica.thaw_index(catch_up=2.0)
    assert (status["frozen"], status["catching_up"], status["behind"], status["caught_up"]) == (
        False,
        2.0,
        5,
        0,
    )
    assert replica.catch_up_step(1.0) == 2 and found() == {"D0", "D1"}
    replica.write("D1", "D1", "alpha rewritten", DataClass.INTERNAL, ())  # joins the queue again
    assert replica.catch_up_step(0.75) == 1 and found() == {"D0", "D1", "D2"}
    assert replica.catch_up_step(0.75) == 2 and replica.index_status()["behind"] == 1
    assert replica.catch_up_step(0.5) == 1 and replica.frozen is None
    assert [d.text for d, _ in replica.search(embed("rewritten"), 1, DataClass.INTERNAL)] == [
        "alpha rewritten"
    ]
    # Freezing again stops a catch-up; unfreezing without a rate swaps the live index in at once.
    replica.freeze_index()
    replica.write("D9", "D9", "alpha nine", DataClass.INTERNAL, ())
    replica.thaw_index(catch_up=1.0)
    replica.freeze_index()
    assert replica.catch_up_step(5.0) == 0 and replica.index_status()["frozen"]
    assert replica.thaw_index()["caught_up"] == 1 and "D9" in found()


def test_httpx_sees_the_index_catch_up_at_its_rate(store_url: str) -> None:
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        marker = f"zq{uuid.uuid4().hex[:12]}"
        _index(client, store_url, frozen=True)
        for n in range(4):
            document = {"id": f"C{n}", "text": f"{marker} {n}", "data_class": "internal"}
            assert client.post(f"{store_url}/v1/documents", json=document).status_code == 200
        began = time.monotonic()
        answer = client.post(f"{store_url}/v1/admin/index", json={"frozen": False, "catch_up": 20})
        assert answer.status_code == 200 and answer.json()["catching_up"] == 20
        while _index(client, store_url)["catching_up"] is not None:
            assert time.monotonic() < began + 5, "caught up"
            time.sleep(0.02)
        took = time.monotonic() - began
        assert {f"C{n}" for n in range(4)} <= {r["id"] for r in _search(client, store_url, marker)}
    assert took >= 0.15, "four documents at 20 a second take 0.2 s (one tick of 0.05 s early at most)"
    bad = httpx.post(f"{store_url}/v1/admin/index", json={"frozen": False, "catch_up": 0}, trust_env=False)
    assert bad.status_code == 422


def test_the_kind_as_data() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    fault = StaleIndex()
    _, touch = phase(design, fault, STORE)
    effects = compute_effects(fault, touch, layout(design))
    assert effects == (FreezeIndex("store-aws-us-east-1-0"),)
    assert parse_effect(dump_effect(effects[0])) == effects[0]
    assert describe_effect(effects[0]) == "store store-aws-us-east-1-0: index frozen"
    paced = compute_effects(StaleIndex(catch_up=5), touch, layout(design))
    assert (
        paced == (FreezeIndex("store-aws-us-east-1-0", 5.0),)
        and parse_effect(dump_effect(paced[0])) == paced[0]
    )
    assert describe_effect(paced[0]).endswith("(then catching up at 5 documents/s)")
    # A region: its stores only.
    _, region = phase(design, fault, Selector(region="aws/us-east-1"))
    assert compute_effects(fault, region, layout(design)) == effects
    # Not a store, or a store of one's own: refused when the plan is made, with why.
    _, problems = resolve(design, fault, Selector(component="retriever"), ("p",))
    assert [m for _, m in problems] == [
        "stale-index: bascule cannot freeze the index of 'retriever': it is not a store"
    ]
    own = read_design(ROOT / "examples" / "own-service" / "design.yaml")
    _, problems = resolve(own, fault, Selector(component="kv"), ("p",))
    assert len(problems) == 1 and "a service of your own" in problems[0][1]
    assert "partial-index" in problems[0][1]
    _, problems = resolve(own, fault, Selector(region="scaleway/fr-par"), ("p",))
    assert len(problems) == 1 and "no reference store" in problems[0][1]
    plan = compute_calls(fault, touch_of(fault, STORE), mapping(TARGET), FACTS, run_id="r", key="p0")
    assert plan.refusal is not None and plan.refusal.rule is RefusalRule.UNSUPPORTED
    assert "index" in plan.refusal.message and "HTTPChaos" in plan.refusal.message


def test_bascule_faults_lists_it() -> None:
    result = CliRunner().invoke(app, ["faults"], env={"COLUMNS": "300"})
    assert result.exit_code == 0
    assert "│ stale-index " in result.output
    assert "searches missing what was written since" in result.output


def _cites(client: httpx.Client, gateway: str, words: str, document_id: str) -> bool:
    answer = client.post(f"{gateway}/v1/ask", json={"question": words, "data_class": "internal"})
    assert answer.status_code == 200, answer.text
    return document_id in answer.json()["citations"]


@pytest.mark.slow
def test_a_running_stack_seen_through_its_gateway(tmp_path: Path) -> None:
    """The local target freezes the primary store's index of the reference stack (real processes,
    every hop through the fault plane): a client writing through the gateway is acknowledged, reads
    the document back by id, and is not answered from it until the fault ends; the standby, whose
    index is live, finds it once replicated. Prints what it measures (run with -s)."""
    design_path = ROOT / "designs" / "active-passive-sovereign.yaml"
    design = read_design(design_path)
    stack = LocalStack.start(design, design_path, tmp_path / "stack", control=True)
    target = LocalTarget(stack)

    def url(replica: str) -> str:
        found = stack.supervisor.replica(replica).url
        assert found is not None
        return found

    gateway, primary = url("gateway-aws-us-east-1-0"), url("store-aws-us-east-1-0")
    standby = url("store-scaleway-fr-par-0")
    action, touch = phase(design, StaleIndex(), STORE)
    words = f"fz{uuid.uuid4().hex[:12]} fz{uuid.uuid4().hex[:12]}"
    document = {"id": "FRESH-1", "title": "FRESH-1", "text": words, "data_class": "internal"}
    try:
        with httpx.Client(timeout=10.0, trust_env=False) as client:
            began = time.monotonic()
            target.apply(action, touch)
            applied = time.monotonic() - began
            written = client.post(f"{gateway}/v1/documents", json=document)
            assert written.status_code == 200 and written.json()["id"] == "FRESH-1"
            assert [h["region"] for h in written.json()["served_by"]] == ["aws/us-east-1"] * 2
            assert client.get(f"{primary}/v1/documents/FRESH-1").json()["text"] == words, "read by id"
            deadline = time.monotonic() + 10
            while client.get(f"{standby}/v1/documents/FRESH-1").status_code != 200:
                assert time.monotonic() < deadline, "replicated to the standby"
                time.sleep(0.05)
            assert "FRESH-1" in {r["id"] for r in _search(client, standby, words)}, (
                "the standby's index is live"
            )
            assert "FRESH-1" not in {r["id"] for r in _search(client, primary, words)}
            asked = time.monotonic()
            misses = [_cites(client, gateway, words, "FRESH-1") for _ in range(20)]
            round_trip = (time.monotonic() - asked) / len(misses)
            assert not any(misses), "no answer through the gateway cites it while the index is frozen"
            assert _index(client, primary)["behind"] >= 1
            began = time.monotonic()
            target.revert(action)
            reverted = time.monotonic()
            polls = 0
            while not _cites(client, gateway, words, "FRESH-1"):
                polls += 1
                assert time.monotonic() < reverted + 10, "caught up"
            caught_up = time.monotonic() - reverted
            assert polls == 0, "the first question after the revert is answered from the live index"
            assert not _index(client, primary)["frozen"]
            # Again, catching up at 5 documents a second: ten writes take two seconds to be found.
            paced, _ = phase(design, StaleIndex(catch_up=5), STORE, index=1)
            target.apply(paced, touch)
            backlog = [f"PACED-{n}" for n in range(10)]
            for document_id in backlog:
                body = {**document, "id": document_id, "title": document_id}
                assert client.post(f"{gateway}/v1/documents", json=body).status_code == 200
            paced_began = time.monotonic()
            target.revert(paced)
            seen: dict[str, float] = {}
            while len(seen) < len(backlog):
                assert time.monotonic() < paced_began + 10, f"caught up: {sorted(seen)}"
                ids = {r["id"] for r in _search(client, primary, words, k=20)}
                seen.update(
                    {i: time.monotonic() - paced_began for i in backlog if i in ids and i not in seen}
                )
                time.sleep(0.02)
            assert seen[backlog[-1]] >= 1.5, "ten at five a second: two seconds"
            assert [i for i in sorted(seen, key=seen.__getitem__)] == backlog, "oldest first"
            print(
                f"\nstale-index on a running stack: apply {applied * 1000:.0f} ms, revert "
                f"{(reverted - began) * 1000:.0f} ms, revert returned -> first answer citing the "
                f"document {caught_up * 1000:.0f} ms ({polls} answers without it first), "
                f"{len(misses)} answers during the fault without it, taking {round_trip * 1000:.0f} ms each; "
                f"at 5 documents/s, 10 written during a second fault found {seen[backlog[0]]:.2f} s "
                f"(first) to {seen[backlog[-1]]:.2f} s (last) after its revert was asked for"
            )
    finally:
        target.close()


@pytest.mark.slow
def test_a_stale_index_run_on_the_reference_stack(tmp_path: Path) -> None:
    """scenarios/faults/stale-index.yaml end to end: the primary's index frozen for 10 s, then
    catching up at 20 documents a second. Availability holds; the freshness probe's answers stop
    citing what it wrote while the fault holds and until the backlog is worked off, then cite it
    again for good; the correctness RTO is the fault plus the catch-up. The golden questions are not
    touched by it."""
    out = tmp_path / "run"
    proc = run_bascule(ROOT / "scenarios" / "faults" / "stale-index.yaml", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # completed, correctness not met
    result = json.loads((out / "result.json").read_text())
    assert result["figures"]["success_ratio"] >= 0.99, "availability holds"
    records = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    applied = [r for r in records if r.get("type") == "fault-applied"]
    reverted = [r for r in records if r.get("type") == "fault-reverted"]
    assert [r["effects"] for r in applied] == [
        ["store store-aws-us-east-1-0: index frozen (then catching up at 20 documents/s)"]
    ]
    checks = [r for r in records if r.get("type") == "sample" and r["source"].startswith("freshness")]
    # Journal times (`t`) are when a record was written: a check written after the fault was
    # recorded and started before the revert began ran against the frozen index.
    start, end = applied[0]["t"], reverted[0]["t"] - reverted[0]["took"]
    during = [r for r in checks if r["t"] - r["latency"] > start and r["t"] < end]
    before = [r for r in checks if r["t"] < start - applied[0]["took"]]
    wrong = [r for r in checks if r["correct"] is False]
    assert during and before and wrong
    assert all(r["ok"] for r in checks), "writes and questions answered throughout"
    assert not any(r["correct"] for r in during), "nothing written during the fault was found"
    assert all(r["correct"] for r in before), "found before it"
    after = [r for r in checks if r["t"] - r["latency"] > reverted[0]["t"]]
    caught_up = next(i for i, r in enumerate(after) if r["correct"])
    assert caught_up > 0, "the backlog takes time to work off"
    # Then found for good — but for a question the gateway sent to the standby's retriever (a retry)
    # before the write had replicated there: a miss of read-your-writes across regions, not of the index.
    elsewhere = [
        r
        for r in after[caught_up:]
        if any(h["component"] == "store" and h["region"] != AWS for h in r["hops"])
    ]
    assert all(r["correct"] for r in after[caught_up:] if r not in elsewhere)
    assert len(elsewhere) <= 3
    golden = [r for r in records if r.get("type") == "sample" and r["source"].startswith("rag")]
    assert golden and all(r["correct"] for r in golden), "the golden questions do not see it"
    correctness = result["figures"]["correctness"]
    assert correctness["recovered"] and correctness["rto"] > 10.0, "the fault, then the catch-up"
