"""The `freshness` probe (read-your-writes through search): how it grades what a service answers
after a write — against a service whose index can be frozen — and why its documents never answer
a golden question of the reference store."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import ValidationError

from bascule.probes.base import make_probe
from bascule.probes.freshness import golden_vectors, marker_words
from bascule.stack import store
from bascule.stack.corpus import DataClass, load_documents, load_golden_set
from bascule.stack.embedding import embed
from tests.test_probes import context, hop, one_sample, spec


class SearchService:
    """A service with the reference gateway's API whose answers cite the documents holding every
    word of the question — unless its index is `frozen`: then only those written before."""

    def __init__(self) -> None:
        self.documents: dict[str, str] = {}
        self.indexed: dict[str, str] = {}
        self.frozen = False
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/documents":
            if self.down:
                return httpx.Response(503, json={"error": "unavailable"})
            self.documents[body["id"]] = body["text"]
            if not self.frozen:
                self.indexed[body["id"]] = body["text"]
            return httpx.Response(200, json={"id": body["id"], "served_by": [hop("store", "aws/us-east-1")]})
        words = set(body["question"].split())
        cited = [i for i, text in self.indexed.items() if words <= set(text.split())]
        served_by = [hop("gateway", "aws/us-east-1"), hop("retriever", "aws/us-east-1")]
        return httpx.Response(200, json={"answer": "…", "citations": cited, "served_by": served_by})


def test_the_freshness_probe_grades_read_your_writes() -> None:
    service = SearchService()
    probe = make_probe(spec({"kind": "freshness", "data_class": "internal"}), context(service))
    assert probe.name == "freshness internal"
    fresh = one_sample(probe)
    assert fresh.ok and fresh.correct and fresh.error is None and fresh.kind == "ask"
    assert fresh.entry_region == "aws/us-east-1" and [h.component for h in fresh.hops] == [
        "gateway",
        "retriever",
    ]
    written = next(iter(service.documents))
    assert written == fresh.request_id and written.startswith("fresh-")
    service.frozen = True
    stale = one_sample(probe)
    assert stale.ok and stale.correct is False
    assert stale.error == f"the answer does not cite {stale.request_id}, acknowledged 0 s before the question"
    service.down = True
    failed = one_sample(probe)
    assert not failed.ok and failed.correct is None and failed.error == "the write failed: HTTP 503"
    with pytest.raises(ValidationError, match="write_request"):
        spec({"kind": "freshness", "write_request": {"id": "{id}"}})
    with pytest.raises(ValidationError, match="ask_request"):
        spec({"kind": "freshness", "ask_request": {"q": "fixed"}})


def test_the_freshness_documents_answer_no_golden_question() -> None:
    """Drawn clear of the golden questions, three hundred of them in the reference store change no
    search a golden question makes (the store returns positive scores only)."""
    avoid = golden_vectors()
    replica = store.Store(store.StoreConfig(region="eu", name="s", replication=store.ReplicationMode.NONE))
    replica.seed(load_documents())
    for n in range(300):
        words = marker_words(avoid)
        replica.write(f"fresh-{n}", words, words, DataClass.INTERNAL, ())
    for question in load_golden_set():
        found = replica.search(embed(question.question), 20, DataClass.CONFIDENTIAL)
        assert not [d.id for d, _ in found if d.id.startswith("fresh-")], question.id
    assert [d.id for d, _ in replica.search(embed(words), 1, DataClass.INTERNAL)] == ["fresh-299"], (
        "found by its words"
    )
