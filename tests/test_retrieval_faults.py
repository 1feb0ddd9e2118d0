"""Retrieval faults — `partial-index` (documents missing from a region's search answers) and
`embedding-mismatch` (its query vectors from another model) — as httpx and the `mistralai` client
see them through a fault-plane route in front of the reference store (called directly, and by the
reference retriever) and llm (its embeddings); which answers are understood; the kinds as data,
the plan-time refusal of hops that carry no search, and Kubernetes' refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from kube_world import TARGET, mapping, touch_of
from local_helpers import ROOT, phase
from mistralai.client import Mistral

from bascule.errors import FaultError
from bascule.faults import EmbeddingMismatch, PartialIndex
from bascule.model.loading import read_design
from bascule.model.selector import Selector
from bascule.stack import store
from bascule.stack.embedding import embed
from bascule.stack.layout import layout
from bascule.stack.llm import LlmConfig
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local import faultstate as fs
from bascule.targets.local.effects import RouteFault, compute_effects
from bascule.targets.local.proxy import FaultPlane, Upstream
from bascule.targets.local.proxy.embeddings import remap
from bascule.targets.local.proxy.retrieval import drop_missing, missing
from tests.run_cli import run_bascule
from tests.test_llm import serve as serve_llm
from tests.test_retriever import serve_app, serve_retriever

STORE = Selector(component="store", region="aws/us-east-1")
FACTS = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}
QUESTION = "How deep are the helical anchors of the SF-220 islands screwed?"


@pytest.fixture(scope="module")
def store_url() -> Iterator[str]:
    config = store.StoreConfig(
        region="aws/us-east-1", name="store-1", replication=store.ReplicationMode.NONE, seed_corpus=True
    )
    with serve_app(store.create_app(config)) as url:
        yield url


@pytest.fixture
def route(plane: FaultPlane, store_url: str) -> str:
    port = urlsplit(store_url).port
    assert port is not None
    return f"http://127.0.0.1:{plane.add_route('r', Upstream('127.0.0.1', port))}"


def test_the_same_share_is_missing_every_time() -> None:
    ids = [f"DOC-{i:04d}" for i in range(2000)]
    gone = [i for i in ids if missing(i, 0.3)]
    assert 0.25 <= len(gone) / len(ids) <= 0.35
    assert gone == [i for i in ids if missing(i, 0.3)], "stable"
    assert set(gone) <= {i for i in ids if missing(i, 0.6)}, "a larger ratio hides a superset"
    assert gone != [i for i in ids if missing(i, 0.3, salt="other")]
    assert not any(missing(i, 0.0) for i in ids) and all(missing(i, 1.0) for i in ids)


def test_which_answers_are_understood() -> None:
    state = fs.PartialIndex(ratio=1.0)
    assert drop_missing({"results": [{"id": "a"}, {"id": "b"}], "region": "r"}, state) == {
        "results": [],
        "region": "r",
    }
    assert drop_missing({"passages": [{"doc_id": 7}]}, state) == {"passages": []}
    assert drop_missing({"hits": [{"_id": "x", "_score": 1.0}]}, state) == {"hits": []}
    # Not a search answer: items without ids, no result key, not an object.
    assert drop_missing({"data": [{"embedding": [0.1], "index": 0}]}, state) is None
    assert drop_missing({"answer": "text", "citations": ["a"]}, state) is None
    assert drop_missing([{"id": "a"}], state) is None
    assert drop_missing({"results": [{"id": "a"}]}, fs.PartialIndex(ratio=0.0)) is None


def test_the_kind_as_data() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    fault = PartialIndex(ratio=0.5, salt="s")
    _, touch = phase(design, fault, STORE)
    effects = compute_effects(fault, touch, layout(design))
    assert effects and all(
        isinstance(e, RouteFault) and e.state == fs.PartialIndex(0.5, "s") for e in effects
    )
    state = fs.PartialIndex(ratio=0.5, salt="s")
    assert fs.parse_proxy_fault(fs.dump_proxy_fault(state)) == state
    llm = Selector(component="llm", region="aws/us-east-1")
    _, on_llm = phase(design, fault, llm)
    with pytest.raises(FaultError, match="carries no search answers"):
        compute_effects(fault, on_llm, layout(design))
    plan = compute_calls(fault, touch_of(fault, STORE), mapping(TARGET), FACTS, run_id="r", key="p0")
    assert plan.refusal is not None and plan.refusal.rule is RefusalRule.UNSUPPORTED
    assert "HTTPChaos" in plan.refusal.message
    # A service of one's own is taken at its word: its answers are read at run time.
    own = read_design(ROOT / "examples" / "own-service" / "design.yaml")
    kv = Selector(component="kv", region="scaleway/fr-par")
    _, on_kv = phase(own, fault, kv)
    assert [e.state for e in compute_effects(fault, on_kv, layout(own)) if isinstance(e, RouteFault)] == [
        fs.PartialIndex(ratio=0.5, salt="s")
    ]


def test_httpx_searches_without_the_missing_documents(plane: FaultPlane, route: str) -> None:
    search = {"vector": embed(QUESTION).tolist(), "k": 20, "max_class": "confidential"}
    with httpx.Client(timeout=10.0) as client:
        before = client.post(f"{route}/v1/search", json=search)
        stats_before = client.get(f"{route}/v1/admin/stats").json()
        plane.set_fault("r", fs.PartialIndex(ratio=0.5))
        after = client.post(f"{route}/v1/search", json=search)
        stats_after = client.get(f"{route}/v1/admin/stats").json()
    kept = [r for r in before.json()["results"] if not missing(r["id"], 0.5)]
    assert after.status_code == 200 and after.json()["results"] == kept
    assert 0 < len(kept) < len(before.json()["results"])
    assert int(after.headers["content-length"]) == len(after.content)
    assert stats_after.keys() == stats_before.keys(), "other answers pass"
    assert plane.stats("r").requests_faulted == 1


def test_the_reference_retriever_passes_on_what_is_left(plane: FaultPlane, route: str) -> None:
    with serve_retriever(route) as url:
        body = {"question": QUESTION, "data_class": "confidential", "k": 10}
        before = httpx.post(f"{url}/v1/retrieve", json=body, timeout=10).json()["passages"]
        plane.set_fault("r", fs.PartialIndex(ratio=0.5))
        after = httpx.post(f"{url}/v1/retrieve", json=body, timeout=10).json()["passages"]
    assert [p["doc_id"] for p in after] == [p["doc_id"] for p in before if not missing(p["doc_id"], 0.5)]


def test_another_models_vectors_keep_their_geometry_but_not_the_index() -> None:
    a, b = embed("helical anchors screwed 18 m deep"), embed("anchors of the floats")
    ma, mb = np.array(remap(a.tolist(), "m")), np.array(remap(b.tolist(), "m"))
    assert np.isclose(np.linalg.norm(ma), np.linalg.norm(a)) and np.isclose(ma @ mb, a @ b)
    assert abs(ma @ b) < 0.5 * abs(a @ b), "no longer near the unmapped vectors"
    assert remap(a.tolist(), "m") == remap(a.tolist(), "m") != remap(a.tolist(), "n")


def test_the_mismatch_as_data() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    fault = EmbeddingMismatch(model="e5")
    _, touch = phase(design, fault, STORE)
    effects = compute_effects(fault, touch, layout(design))
    assert effects and all(
        isinstance(e, RouteFault) and e.state == fs.EmbeddingMismatch("e5") for e in effects
    )
    state = fs.EmbeddingMismatch(model="e5")
    assert fs.parse_proxy_fault(fs.dump_proxy_fault(state)) == state
    _, on_llm = phase(design, fault, Selector(component="llm", region="aws/us-east-1"))
    assert compute_effects(fault, on_llm, layout(design)), "the llm serves embeddings"
    _, on_gateway = phase(design, fault, Selector(component="gateway", region="aws/us-east-1"))
    with pytest.raises(FaultError, match="carries no query vectors nor embeddings"):
        compute_effects(fault, on_gateway, layout(design))
    plan = compute_calls(fault, touch_of(fault, STORE), mapping(TARGET), FACTS, run_id="r", key="p0")
    assert plan.refusal is not None and plan.refusal.rule is RefusalRule.UNSUPPORTED


def test_httpx_searches_with_another_models_query(plane: FaultPlane, route: str) -> None:
    search = {"vector": embed(QUESTION).tolist(), "k": 5, "max_class": "confidential"}
    with httpx.Client(timeout=10.0) as client:
        before = client.post(f"{route}/v1/search", json=search).json()["results"]
        plane.set_fault("r", fs.EmbeddingMismatch(model="other-embed"))
        after = client.post(f"{route}/v1/search", json=search)
        wrote = client.post(
            f"{route}/v1/documents",
            json={"text": "no vector here", "data_class": "public", "tags": ["synthetic"]},
        )
    found = [r["id"] for r in after.json()["results"]]
    assert after.status_code == 200 and found != [r["id"] for r in before] and found[:1] != [before[0]["id"]]
    assert wrote.status_code == 200, "requests without a query vector pass"
    with serve_retriever(route) as url:
        passages = httpx.post(
            f"{url}/v1/retrieve", json={"question": QUESTION, "data_class": "confidential"}, timeout=10
        ).json()["passages"]
    assert [p["doc_id"] for p in passages][:1] != [before[0]["id"]]


def test_embeddings_answers_seen_by_httpx_and_the_mistral_client(plane: FaultPlane) -> None:
    with serve_llm(LlmConfig()) as llm:
        port = urlsplit(llm).port
        assert port is not None
        url = f"http://127.0.0.1:{plane.add_route('e', Upstream('127.0.0.1', port))}"
        body = {"model": "mistral-embed", "input": ["anchors"]}
        plain = httpx.post(f"{url}/v1/embeddings", json=body, timeout=10).json()["data"][0]["embedding"]
        plane.set_fault("e", fs.EmbeddingMismatch(model="other-embed"))
        mapped = httpx.post(f"{url}/v1/embeddings", json=body, timeout=10).json()["data"][0]["embedding"]
        with Mistral(api_key="k", server_url=url) as client:
            seen = client.embeddings.create(model="mistral-embed", inputs=["anchors"])
    assert mapped == remap(plain, "other-embed") != plain
    assert seen.data[0].embedding == mapped
    assert plane.stats("e").requests_faulted == 2


@pytest.mark.slow
def test_a_partial_index_run_keeps_availability_and_loses_correctness(tmp_path: Path) -> None:
    """scenarios/faults/partial-index.yaml end to end: half the documents missing from the
    primary's store for 10 s; bascule's grading measures the correctness lost."""
    out = tmp_path / "run"
    proc = run_bascule(ROOT / "scenarios" / "faults" / "partial-index.yaml", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # completed, correctness not met
    result = json.loads((out / "result.json").read_text())
    assert result["figures"]["success_ratio"] >= 0.99, "availability holds"
    correctness = result["figures"]["correctness"]
    assert correctness["impact"] <= correctness["baseline"] - 0.1, correctness


@pytest.mark.slow
def test_an_embedding_mismatch_run_keeps_availability_and_loses_correctness(tmp_path: Path) -> None:
    """scenarios/faults/embedding-mismatch.yaml end to end: the primary's query vectors from
    another model for 10 s; bascule's grading measures the correctness lost."""
    out = tmp_path / "run"
    proc = run_bascule(ROOT / "scenarios" / "faults" / "embedding-mismatch.yaml", out)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # completed, correctness not met
    result = json.loads((out / "result.json").read_text())
    assert result["figures"]["success_ratio"] >= 0.99, "availability holds"
    correctness = result["figures"]["correctness"]
    assert correctness["impact"] <= correctness["baseline"] - 0.1, correctness
