"""Transport faults on the bytes a hop answers, toxiproxy's way — `bandwidth` and `limit-data` —
as httpx and the official `mistralai` client see them through a fault-plane route in front of
the reference llm service; and what Kubernetes makes of them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from kube_world import TARGET, mapping, touch_of
from local_helpers import ROOT, phase
from mistralai.client import Mistral

from bascule.faults import Bandwidth, LimitData
from bascule.model.loading import read_design
from bascule.model.selector import Selector
from bascule.stack import prompt
from bascule.stack.layout import layout
from bascule.stack.llm import LlmConfig
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local import faultstate as fs
from bascule.targets.local.effects import RouteFault, compute_effects
from bascule.targets.local.proxy import FaultPlane, Upstream
from tests.test_llm import MODEL, PASSAGES, QUESTION, chat_body, serve

LLM = Selector(component="llm", region="aws/us-east-1")
FACTS = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    with serve(LlmConfig(model=MODEL, provider="scaleway")) as url:
        yield url


@pytest.fixture
def plane() -> Iterator[FaultPlane]:
    with FaultPlane() as fp:
        yield fp


@pytest.fixture
def route(plane: FaultPlane, llm: str) -> str:
    port = urlsplit(llm).port
    assert port is not None
    return f"http://127.0.0.1:{plane.add_route('r', Upstream('127.0.0.1', port))}"


def test_the_kinds_as_data() -> None:
    design = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
    for fault, state in [
        (Bandwidth(rate=1000), fs.Bandwidth(rate=1000)),
        (LimitData(limit=10, reset=True), fs.LimitData(limit=10, reset=True)),
    ]:
        _, touch = phase(design, fault, LLM)
        effects = compute_effects(fault, touch, layout(design))
        assert effects and all(isinstance(e, RouteFault) and e.state == state for e in effects)
        assert fs.parse_proxy_fault(fs.dump_proxy_fault(state)) == state
    bandwidth = compute_calls(
        Bandwidth(rate=125_000),
        touch_of(Bandwidth(rate=1), LLM),
        mapping(TARGET),
        FACTS,
        run_id="r",
        key="p0",
    )
    (call,) = bandwidth.calls
    assert call.resource.kind == "NetworkChaos" and call.body is not None
    assert call.body["spec"]["action"] == "bandwidth"
    assert call.body["spec"]["bandwidth"]["rate"] == "1000000bps"
    assert any("shared by its connections" in n for n in bandwidth.notes)
    limited = compute_calls(
        LimitData(limit=1), touch_of(LimitData(limit=1), LLM), mapping(TARGET), FACTS, run_id="r", key="p0"
    )
    assert limited.refusal is not None and limited.refusal.rule is RefusalRule.UNSUPPORTED


def test_bandwidth_paces_the_answers(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=20.0) as client:
        started = time.monotonic()
        plain = client.post(f"{route}/v1/chat/completions", json=chat_body())
        quick = time.monotonic() - started
        size = len(plain.content) + 300  # the body and about its head
        plane.set_fault("r", fs.Bandwidth(rate=1000))
        started = time.monotonic()
        slow = client.post(f"{route}/v1/chat/completions", json=chat_body())
        took = time.monotonic() - started
    assert slow.status_code == 200 and slow.json()["choices"] == plain.json()["choices"]
    assert took >= 0.8 * size / 1000 and took > quick + 0.5, (took, quick, size)


def test_bandwidth_seen_by_the_mistral_client_streaming(plane: FaultPlane, route: str) -> None:
    plane.set_fault("r", fs.Bandwidth(rate=2000))
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="k", server_url=route) as client:
        started = time.monotonic()
        seen = []
        with client.chat.stream(model=MODEL, messages=messages) as stream:
            for _event in stream:
                seen.append(time.monotonic() - started)
    assert len(seen) > 5 and seen[-1] - seen[0] >= 0.5, "events trickle in at the link's pace"


@pytest.mark.parametrize(("reset", "error"), [(False, httpx.RemoteProtocolError), (True, httpx.HTTPError)])
def test_limit_data_cuts_the_connection_after_n_bytes(
    plane: FaultPlane, route: str, reset: bool, error: type[Exception]
) -> None:
    plane.set_fault("r", fs.LimitData(limit=400, reset=reset))
    with httpx.Client(timeout=10.0) as client, pytest.raises(error):
        client.post(f"{route}/v1/chat/completions", json=chat_body())
    # Small answers fit: a new connection gets the limit afresh, and is cut only past it.
    assert httpx.get(f"{route}/healthz", timeout=5.0).status_code == 200
    stats = plane.stats("r")
    assert stats.requests_faulted == 1 and stats.connections_reset == (1 if reset else 0)
