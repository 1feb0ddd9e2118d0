"""The requests of the load, pure: which request next (`draw_request`, `golden_pool`), its path and
payload (`build_request`, `new_document`), the edge's failover over any synchronous HTTP client
(`edge_post`, locust's in the locustfile) and the sample made of its outcome
(`sample_from_response`). Imported by the locustfile: it must never import locust or gevent."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bascule.edge import Edge, EdgeAttempt, EdgeResponse, region_failed, request_headers
from bascule.journal.samples import RequestSample, hops_from_json
from bascule.model.scenario import LoadRequests, RequestMix
from bascule.probes.base import render_template
from bascule.probes.grading import grade_answer
from bascule.stack.corpus import DataClass, GoldenQuestion

__all__ = [
    "Send",
    "build_request",
    "draw_request",
    "edge_post",
    "golden_pool",
    "new_document",
    "sample_from_response",
]

# -- the request mix -------------------------------------------------------------------------------


def draw_request(rng: random.Random, mix: RequestMix) -> tuple[str, str]:
    """``("ask" | "write", data_class)``: a write with probability ``mix.writes``, the class by the
    mix's weights for both."""
    kind = "write" if rng.random() < mix.writes else "ask"
    names = [name for name, weight in mix.data_classes.items() if weight > 0]
    weights = [mix.data_classes[name] for name in names]
    return kind, rng.choices(names, weights=weights)[0]


def golden_pool(golden: Sequence[GoldenQuestion], data_class: str) -> tuple[GoldenQuestion, ...]:
    """The golden questions an ask of ``data_class`` draws from: those of that class; else those
    of less sensitive classes (a request may carry a stricter class than its documents); else
    (a class the corpus does not know) all of them."""
    exact = tuple(q for q in golden if q.data_class.value == data_class)
    if exact:
        return exact
    known = {c.value: c for c in DataClass}
    if data_class in known:
        rank = known[data_class].rank
        lower = tuple(q for q in golden if q.data_class.rank < rank)
        if lower:
            return lower
    return tuple(golden)


def new_document(data_class: str, marker: str) -> dict[str, Any]:
    """A document for a load write: a unique ``load-<uuid>`` id, the run's marker in its text."""
    doc_id = f"load-{uuid.uuid4().hex}"
    return {
        "id": doc_id,
        "title": f"Load write {doc_id}",
        "text": f"Written by bascule's load generator. Marker bascule-load-{marker} document {doc_id}.",
        "data_class": data_class,
        # Stored and replicated like any write, but kept out of search: the load must not change
        # the answers the golden set grades (see the store's SYNTHETIC_TAG).
        "tags": ["synthetic"],
    }


def build_request(
    requests: LoadRequests,
    kind: str,
    data_class: str,
    rng: random.Random,
    pools: Mapping[str, Sequence[GoldenQuestion]],
    marker: str,
) -> tuple[GoldenQuestion | None, str, dict[str, Any], str | None]:
    """``(golden question or None, path, payload, request id)`` of one load request: a write of a
    new document, or an ask of a golden question of the class (or of the scenario's own)."""
    if kind == "write":
        document = new_document(data_class, marker)
        if requests.write is None:
            return None, requests.write_path, document, document["id"]
        values = {"id": document["id"], "text": document["text"], "data_class": data_class}
        return None, requests.write_path, _as_dict(render_template(requests.write, values)), document["id"]
    question: GoldenQuestion | None = None
    if requests.questions:
        text = rng.choice(requests.questions)
    else:
        question = rng.choice(pools[data_class])
        text = question.question
    payload = _as_dict(render_template(requests.ask, {"question": text, "data_class": data_class}))
    return question, requests.ask_path, payload, None


def _as_dict(value: object) -> dict[str, Any]:
    assert isinstance(value, dict)
    return value


# -- the edge over a synchronous client ---------------------------------------------------------

Send = Callable[
    [str, str, Mapping[str, Any], Mapping[str, str]], tuple[int | None, dict[str, Any] | None, str | None]
]
"""``send(region, url, payload, headers) -> (status, body, error)``: one POST; a transport failure
is ``(None, None, "Type: message")`` and never an exception."""


def edge_post(
    edge: Edge,
    send: Send,
    path: str,
    payload: Mapping[str, Any],
    data_class: str,
    *,
    trace_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> EdgeResponse:
    """`Edge.post` for a synchronous client (locust's): the edge's candidates in order, regions
    whose breaker refuses tried last, a 5xx, a 429 or a transport error a region failure (next
    region), any other answer final; every attempt with a ``traceparent`` of `trace_id`. Raises
    `NoEntryError` when no region may take the class."""
    began = clock()
    attempts: list[EdgeAttempt] = []
    last: tuple[int | None, dict[str, Any] | None, str | None] = (None, None, None)
    tickets = [(region, edge.breakers[region].acquire()) for region in edge.candidates(data_class)]
    ranked = [t for t in tickets if t[1] is not None] + [t for t in tickets if t[1] is None]
    for region, ticket in ranked:
        breaker = edge.breakers[region]
        started = clock()
        status, body, error = send(
            region, edge.entries[region] + path, payload, request_headers(headers, trace_id)
        )
        attempts.append(EdgeAttempt(region, status, error, clock() - started))
        last = (status, body, region)
        if status is None or region_failed(status):
            if ticket is not None:
                breaker.fail(ticket)
            continue
        if ticket is not None:
            breaker.succeed(ticket)
        break
    status, body, answered_by = last
    return EdgeResponse(status, body, answered_by, tuple(attempts), clock() - began)


def sample_from_response(
    kind: str,
    data_class: str,
    started: float,
    response: EdgeResponse,
    *,
    question: GoldenQuestion | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
) -> RequestSample:
    """The load sample of one request through the edge. ``correct`` grades a successful answer
    to a golden question; it is None for writes and for requests that got no answer."""
    body = response.body or {}
    correct: bool | None = None
    if question is not None and response.ok:
        citations = body.get("citations")
        cited = [str(c) for c in citations] if isinstance(citations, list) else []
        correct = grade_answer(question, str(body.get("answer", "")), cited)
    served_by = body.get("served_by")
    return RequestSample(
        source="load",
        kind=kind,
        started=started,
        latency=response.seconds,
        ok=response.ok,
        status=response.status,
        data_class=data_class,
        entry_region=response.region if response.status is not None else None,
        hops=hops_from_json(served_by if isinstance(served_by, list) else None),
        correct=correct,
        degraded=bool(body.get("degraded", False)),
        error=response.error,
        request_id=request_id,
        trace_id=trace_id,
    )
