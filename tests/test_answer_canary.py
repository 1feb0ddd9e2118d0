"""The reference gateway's answer canary (`routing.canary`, bascule.stack.gateway.canary): golden
questions asked of each region's llm — real llm servers, one behind a real fault-plane route with
`degrade` — and the router routing away from the region that answered wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from bascule.model.canary import AnswerCanary
from bascule.model.design import Design
from bascule.model.loading import read_design
from bascule.stack.corpus import load_golden_set
from bascule.stack.gateway.canary import AnswerCanaryLoop, CanaryVerdicts, canary_questions, states_facts
from bascule.stack.llm import LlmConfig
from bascule.stack.routing import RegionHealth, Router
from bascule.targets.local.faultstate import Degrade, DegradeHow
from bascule.targets.local.proxy import FaultPlane, Upstream
from tests.test_llm import MODEL, serve

ROOT = Path(__file__).resolve().parent.parent
AWS, PAR, GRA = "aws/us-east-1", "scaleway/fr-par", "ovhcloud/gra"
ASK = ("retriever", "llm")


def design() -> Design:
    return read_design(ROOT / "designs" / "canary-failover.yaml")


def test_the_design_carries_its_canary_and_a_second_sovereign_region() -> None:
    d = design()
    assert d.routing.canary == AnswerCanary(interval=0.5, timeout=2.0, unhealthy_after=1, healthy_after=40)
    assert d.allowed_regions("confidential") == (PAR, GRA)


def test_states_facts_is_bascules_grading_rule() -> None:
    q = next(q for q in load_golden_set() if q.facts)
    fact = q.facts[0]
    assert states_facts(q, " ".join(q.facts) + ".")
    assert not states_facts(q, "nothing of the kind")
    if fact[0].isdigit():
        assert not states_facts(q, "1" + " ".join(q.facts))  # "12 m" does not state "2 m"


def test_a_region_is_asked_only_questions_it_may_serve() -> None:
    d = design()
    on_aws = canary_questions(d, AWS)
    assert on_aws and all(q.data_class.value != "confidential" for q in on_aws)
    assert any(q.data_class.value == "confidential" for q in canary_questions(d, PAR))


def test_verdicts_distrust_after_wrong_answers_and_trust_after_a_run_of_right_ones() -> None:
    v = CanaryVerdicts(AnswerCanary(unhealthy_after=2, healthy_after=3))
    assert v.record(AWS, False) is None
    assert v.record(AWS, True) is None  # not two in a row
    assert v.record(AWS, False) is None
    assert v.record(AWS, False) is True and v.distrusted == {AWS}
    assert [v.record(AWS, True) for _ in range(3)] == [None, None, False]
    assert v.distrusted == set() and v.asked == 7 and v.wrong_total == 3


def test_a_distrusted_region_ranks_last_for_asks_but_not_for_writes() -> None:
    router = Router(design(), [(c, r) for c in ("retriever", "llm", "store") for r in (AWS, PAR, GRA)])
    assert router.route("internal", ASK).order[0] == AWS
    router.distrust(AWS, True)
    assert router.health(AWS, ASK) is RegionHealth.UNHEALTHY
    assert router.route("internal", ASK).order == (PAR, GRA, AWS)
    assert router.preferred("internal", ("store",)) == AWS
    router.distrust(AWS, False)
    assert router.route("internal", ASK).order[0] == AWS


@pytest.fixture
def llms() -> Iterator[tuple[FaultPlane, dict[str, str]]]:
    """Real llm servers for AWS and PAR; AWS's behind a fault-plane route."""
    with (
        serve(LlmConfig(model=MODEL, provider="aws")) as aws,
        serve(LlmConfig(model=MODEL, provider="scaleway")) as par,
        FaultPlane() as plane,
    ):
        port = urlsplit(aws).port
        assert port is not None
        route = plane.add_route("gateway->llm@aws", Upstream("127.0.0.1", port))
        yield plane, {AWS: f"http://127.0.0.1:{route}", PAR: par}


def test_wrong_answers_through_the_fault_plane_route_traffic_away_and_back(
    llms: tuple[FaultPlane, dict[str, str]],
) -> None:
    plane, urls = llms
    policy = AnswerCanary(interval=0.05, unhealthy_after=1, healthy_after=5)
    router = Router(design(), [(c, r) for c in ASK for r in urls])

    async def scenario() -> list[tuple[str, ...]]:
        orders = []
        async with httpx.AsyncClient(timeout=5.0) as client:

            async def post(url: str, payload: Mapping[str, Any]) -> httpx.Response:
                response = await client.post(url, json=dict(payload))
                response.raise_for_status()
                return response

            loop = AnswerCanaryLoop(policy, design(), urls, router, post, lambda region: MODEL)
            for _ in range(3):
                await asyncio.gather(*(loop.check(r) for r in urls))
                loop.turn += 1
            orders.append(router.route("internal", ASK).order)  # every answer right
            plane.set_fault("gateway->llm@aws", Degrade(how=DegradeHow.TRUNCATE))
            await loop.check(AWS)
            orders.append(router.route("internal", ASK).order)  # one wrong answer: routed away
            plane.clear_fault("gateway->llm@aws")
            for _ in range(4):
                loop.turn += 1
                await loop.check(AWS)
            orders.append(router.route("internal", ASK).order)  # 4 right of 5: still distrusted
            loop.turn += 1
            await loop.check(AWS)
            orders.append(router.route("internal", ASK).order)
            assert loop.verdicts.wrong_total == 1 and loop.verdicts.asked == 12
        return orders

    orders = asyncio.run(scenario())
    assert [o[0] for o in orders] == [AWS, PAR, PAR, AWS]
    assert plane.stats("gateway->llm@aws").requests_faulted == 1


def test_an_llm_that_fails_gives_no_verdict(llms: tuple[FaultPlane, dict[str, str]]) -> None:
    _, urls = llms
    router = Router(design(), [(c, r) for c in ASK for r in urls])

    async def refused(url: str, payload: Mapping[str, Any]) -> httpx.Response:
        raise httpx.ConnectError("refused")

    loop = AnswerCanaryLoop(AnswerCanary(), design(), urls, router, refused, lambda region: MODEL)
    asyncio.run(loop.check(AWS))
    assert loop.verdicts.asked == 0 and router.distrusted == frozenset()
