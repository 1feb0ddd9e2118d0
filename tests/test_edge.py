"""The edge: which regional entry points a client tries, in which order, and when it moves on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bascule.edge import NOT_JSON, Edge, EdgeResponse, NoEntryError
from bascule.model.loading import parse_design, read_design

ROOT = Path(__file__).resolve().parent.parent
APS = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
US = read_design(ROOT / "designs" / "us-fallback.yaml")
ENTRIES = {"aws/us-east-1": "http://aws.test", "scaleway/fr-par": "http://par.test"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(edge: Edge, handler: Callable[[httpx.Request], httpx.Response], data_class: str) -> EdgeResponse:
    async def go() -> EdgeResponse:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await edge.ask(client, "q", data_class)

    return asyncio.run(go())


def answering(statuses: dict[str, int], seen: list[str]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        seen.append(host)
        status = statuses.get(host, 200)
        if status == 0:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={"answer": host, "served_by": []})

    return handler


def test_routing_order_for_internal_and_only_sovereign_for_confidential() -> None:
    edge = Edge(APS, ENTRIES)
    assert edge.candidates("internal") == ["aws/us-east-1", "scaleway/fr-par"]
    assert edge.candidates("confidential") == ["scaleway/fr-par"]
    with pytest.raises(NoEntryError, match="unknown data class"):
        edge.candidates("secret")


def test_no_allowed_region_fails_closed() -> None:
    us_only = {"aws/us-east-1": "http://aws.test", "aws/us-west-2": "http://west.test"}
    guarded = parse_design(
        (ROOT / "designs" / "us-fallback.yaml")
        .read_text()
        .replace("sovereignty_guard: false", "sovereignty_guard: true")
    )
    with pytest.raises(NoEntryError, match="fails closed"):
        Edge(guarded, us_only).candidates("confidential")
    assert Edge(US, us_only).candidates("confidential") == ["aws/us-east-1", "aws/us-west-2"]


def test_fails_over_on_5xx_and_transport_errors_not_on_4xx() -> None:
    seen: list[str] = []
    response = run(Edge(APS, ENTRIES), answering({"aws.test": 503}, seen), "internal")
    assert response.ok and response.region == "scaleway/fr-par" and seen == ["aws.test", "par.test"]
    seen.clear()
    response = run(Edge(APS, ENTRIES), answering({"aws.test": 0}, seen), "internal")
    assert response.ok and response.region == "scaleway/fr-par"
    assert response.attempts[0].error is not None and "ConnectError" in response.attempts[0].error
    seen.clear()
    response = run(Edge(APS, ENTRIES), answering({"aws.test": 403}, seen), "internal")
    assert response.status == 403 and seen == ["aws.test"]


def test_an_open_breaker_sends_clients_to_the_next_region_first() -> None:
    clock = Clock()
    edge = Edge(APS, ENTRIES, clock=clock)
    seen: list[str] = []
    for _ in range(APS.routing.circuit_breaker.failure_threshold):
        run(edge, answering({"aws.test": 503}, seen), "internal")
    seen.clear()
    response = run(edge, answering({}, seen), "internal")
    assert response.region == "scaleway/fr-par" and seen == ["par.test"]
    clock.now += APS.routing.circuit_breaker.open_for + 0.1
    seen.clear()
    assert run(edge, answering({}, seen), "internal").region == "aws/us-east-1"


def test_everything_down_reports_the_last_failure() -> None:
    response = run(Edge(APS, ENTRIES), answering({"aws.test": 503, "par.test": 0}, []), "internal")
    assert not response.ok and len(response.attempts) == 2 and response.error is not None


def test_a_caller_giving_up_on_a_region_counts_as_its_failure() -> None:
    """A probe whose deadline is shorter than the edge's timeout cancels the attempt: the breaker
    must still hear of it, or a blackholed region would hold every such caller for ever."""
    edge = Edge(APS, ENTRIES)

    async def blackholed(request: httpx.Request) -> httpx.Response:
        if request.url.host == "aws.test":
            await asyncio.sleep(60)
        return httpx.Response(200, json={"answer": request.url.host, "served_by": []})

    async def go() -> list[str | None]:
        answered: list[str | None] = []
        async with httpx.AsyncClient(transport=httpx.MockTransport(blackholed)) as client:
            for _ in range(APS.routing.circuit_breaker.failure_threshold + 1):
                try:
                    async with asyncio.timeout(0.05):
                        answered.append((await edge.ask(client, "q", "internal")).region)
                except TimeoutError:
                    answered.append(None)
        return answered

    answered = asyncio.run(go())
    threshold = APS.routing.circuit_breaker.failure_threshold
    assert answered == [None] * threshold + ["scaleway/fr-par"]


def test_tickets_of_regions_not_tried_go_back_to_a_half_open_breaker() -> None:
    clock = Clock()
    edge = Edge(APS, ENTRIES, clock=clock)
    par = edge.breakers["scaleway/fr-par"]
    for _ in range(APS.routing.circuit_breaker.failure_threshold):
        ticket = par.acquire()
        assert ticket is not None
        par.fail(ticket)
    clock.now += APS.routing.circuit_breaker.open_for + 0.1  # fr-par half-open: few trial calls
    seen: list[str] = []
    for _ in range(5):  # us-east-1 answers first; fr-par's trial tickets must not leak
        assert run(edge, answering({}, seen), "internal").region == "aws/us-east-1"
    assert par.acquire() is not None


def test_an_answer_keeps_its_json_value_whatever_it_is() -> None:
    bodies = {"aws.test": b'[{"a": 1}]', "par.test": b"not json"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bodies[request.url.host])

    listed = run(Edge(APS, ENTRIES), handler, "internal")
    assert listed.ok and listed.value == [{"a": 1}] and listed.body is None
    only_par = {"scaleway/fr-par": "http://par.test"}
    text = run(Edge(APS, only_par), handler, "internal")
    assert text.ok and text.value is NOT_JSON and text.body is None
    objects = run(Edge(APS, ENTRIES), answering({}, []), "internal")
    assert objects.body == objects.value == {"answer": "aws.test", "served_by": []}
