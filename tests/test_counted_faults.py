"""Counted failures, toxiproxy's way: `http-error` and `refuse` failing the first N requests (or
connections), or every N-th, as httpx and the official `mistralai` client (retrying) see them
through a fault-plane route in front of the reference llm service."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kube_world import TARGET, mapping, touch_of
from mistralai.client import Mistral
from mistralai.client.utils import BackoffStrategy, RetryConfig
from pydantic import ValidationError

from bascule.faults import HttpError, Refuse
from bascule.model.selector import Selector
from bascule.stack import prompt
from bascule.targets.kubernetes.calls import ClusterFacts, RefusalRule, compute_calls
from bascule.targets.kubernetes.resources import CHAOS_KINDS
from bascule.targets.local import faultstate as fs
from bascule.targets.local.proxy import FaultPlane
from tests.test_llm import MODEL, PASSAGES, QUESTION, chat_body


def test_parameters() -> None:
    with pytest.raises(ValidationError, match="not both"):
        HttpError(count=1, every=2)
    with pytest.raises(ValidationError, match="no ratio"):
        HttpError(every=2, ratio=0.5)
    with pytest.raises(ValidationError):
        Refuse(count=0)
    assert HttpError(every=3).describe() == "every=3"
    for state in (fs.HttpError(count=2), fs.HttpError(every=3, statuses=(500,)), fs.Refuse(count=1)):
        assert fs.parse_proxy_fault(fs.dump_proxy_fault(state)) == state
    assert fs.dump_proxy_fault(fs.Refuse()) == {"mode": "refuse", "new_connections_only": False}


@pytest.mark.parametrize("fault", [HttpError(count=2), Refuse(every=2)], ids=lambda f: f.kind)
def test_kubernetes_refuses_counted_faults(fault: Any) -> None:
    facts = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in ("aws", "scw")}
    llm = Selector(component="llm", region="aws/us-east-1")
    found = compute_calls(fault, touch_of(fault, llm), mapping(TARGET), facts, run_id="r", key="p0")
    assert found.refusal is not None and found.refusal.rule is RefusalRule.UNSUPPORTED
    assert "count or every" in found.refusal.message


def test_http_error_fails_the_first_n_requests(plane: FaultPlane, route: str) -> None:
    plane.set_fault("r", fs.HttpError(count=2))
    with httpx.Client(timeout=10.0) as client:
        statuses = [
            client.post(f"{route}/v1/chat/completions", json=chat_body()).status_code for _ in range(5)
        ]
    assert statuses == [503, 503, 200, 200, 200]
    plane.set_fault("r", fs.HttpError(count=1, statuses=(500,)))  # a new state counts afresh
    assert httpx.post(f"{route}/v1/chat/completions", json=chat_body()).status_code == 500


def test_http_error_fails_every_nth_request(plane: FaultPlane, route: str) -> None:
    plane.set_fault("r", fs.HttpError(every=3))
    with httpx.Client(timeout=10.0) as client:
        statuses = [
            client.post(f"{route}/v1/chat/completions", json=chat_body()).status_code for _ in range(7)
        ]
    assert statuses == [200, 200, 503, 200, 200, 503, 200]


def test_the_mistral_client_retries_through_the_first_failures(plane: FaultPlane, route: str) -> None:
    plane.set_fault("r", fs.HttpError(count=2))
    retries = RetryConfig("backoff", BackoffStrategy(50, 200, 1.5, 10_000), retry_connection_errors=True)
    messages: Any = prompt.build_messages(QUESTION, PASSAGES)
    with Mistral(api_key="k", server_url=route, retry_config=retries) as client:
        completion = client.chat.complete(model=MODEL, messages=messages)
    assert completion.choices[0].message is not None
    assert completion.choices[0].message.content == prompt.extract_answer(QUESTION, PASSAGES).text
    assert plane.stats("r").requests_faulted == 2


def test_refuse_resets_the_first_n_connections_and_leaves_open_ones(plane: FaultPlane, route: str) -> None:
    with httpx.Client(timeout=10.0) as pooled:
        assert pooled.get(f"{route}/healthz").status_code == 200
        plane.set_fault("r", fs.Refuse(count=2))
        outcomes = []
        for _ in range(4):
            try:
                outcomes.append(httpx.get(f"{route}/healthz", timeout=5.0).status_code)
            except httpx.HTTPError as exc:
                outcomes.append(type(exc).__name__)
        assert pooled.get(f"{route}/healthz").status_code == 200, "an open connection is left alone"
    assert outcomes[2:] == [200, 200] and all(isinstance(o, str) for o in outcomes[:2]), outcomes
    assert plane.stats("r").connections_reset == 2
