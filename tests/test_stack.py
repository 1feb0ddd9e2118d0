"""The reference stack for real: every replica a process, every hop through a route, names
resolved through the stack's DNS server, tokens in the regions that rely on an identity service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bascule.edge import Edge, EdgeResponse
from bascule.model.catalog import Sovereignty
from bascule.model.loading import read_design
from bascule.probes.grading import grade_answer
from bascule.stack.corpus import GoldenQuestion, load_golden_set
from bascule.stack.spawn import fork_refusal
from bascule.targets.local.ledger import read_ledger
from bascule.targets.local.procfs import process_alive
from bascule.targets.local.stack import LocalStack

ROOT = Path(__file__).resolve().parent.parent
APS_PATH = ROOT / "designs" / "active-passive-sovereign.yaml"
APS = read_design(APS_PATH)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = LocalStack.start(APS, APS_PATH, tmp_path_factory.mktemp("stack"), timeout=60)
    print(f"\nstart of the two-region stack: all ready in {running.timings.ready:.2f} s")
    try:
        yield running
    finally:
        running.stop()


def _edge(stack: LocalStack) -> Edge:
    return Edge(stack.design, stack.entries())


async def _ask_all(edge: Edge, questions: list[tuple[str, str]]) -> list[EdgeResponse]:
    async with httpx.AsyncClient(trust_env=False) as client:
        return [await edge.ask(client, q, c) for q, c in questions]


def _ask(edge: Edge, question: str, data_class: str) -> EdgeResponse:
    return asyncio.run(_ask_all(edge, [(question, data_class)]))[0]


def _regions(response: EdgeResponse, component: str) -> set[str]:
    hops = (response.body or {}).get("served_by") or []
    return {h["region"] for h in hops if h.get("component") == component}


def _below(response: EdgeResponse, minimum: Sovereignty) -> list[dict[str, Any]]:
    hops = (response.body or {}).get("served_by") or []
    return [h for h in hops if not Sovereignty(h["sovereignty"]).satisfies(minimum)]


def test_cold_start_and_entry_points(stack: LocalStack) -> None:
    assert set(stack.entries()) == {"aws/us-east-1", "scaleway/fr-par"}
    assert stack.timings.ready < 30
    assert all(r.pid is not None for r in stack.supervisor.replicas())


def test_the_services_are_forked_from_a_fork_server_named_in_the_ledger(stack: LocalStack) -> None:
    ledger = read_ledger(stack.ledger.path)
    servers = [p for p in ledger.processes if p.name == "fork-server"]
    if fork_refusal() is not None:  # where fork is refused, no server: every replica started cold
        assert servers == [], fork_refusal()
        return
    (server,) = servers
    assert process_alive(server.pid, server.start_time)
    for replica in stack.supervisor.replicas():
        assert replica.pid is not None
        stat = Path(f"/proc/{replica.pid}/stat").read_text()
        assert int(stat[stat.rindex(")") + 2 :].split()[1]) == server.pid, replica.spec.name
    recorded = {(p.pid, p.start_time) for p in ledger.processes}
    assert {(r.pid, r.start_time) for r in stack.supervisor.replicas()} <= recorded


def test_golden_set_with_every_service_healthy(stack: LocalStack) -> None:
    golden: list[GoldenQuestion] = list(load_golden_set())
    responses = asyncio.run(_ask_all(_edge(stack), [(g.question, g.data_class.value) for g in golden]))
    correct = sum(
        1
        for g, r in zip(golden, responses, strict=True)
        if r.ok and grade_answer(g, str(r.body["answer"]), r.body["citations"])  # type: ignore[index]
    )
    accuracy = correct / len(golden)
    print(f"\ngolden set through the live stack: {correct}/{len(golden)} = {accuracy:.1%}")
    assert accuracy >= 0.90
    confidential = [r for g, r in zip(golden, responses, strict=True) if g.data_class.value == "confidential"]
    assert confidential and all(not _below(r, Sovereignty.SOVEREIGN) for r in confidential)


def test_primary_retriever_killed_fails_over_and_fails_back(stack: LocalStack) -> None:
    edge = _edge(stack)
    question = "What pretension is applied to each mooring line after connection?"
    before = _ask(edge, question, "internal")
    assert before.ok and _regions(before, "retriever") == {"aws/us-east-1"}

    killed_at = time.monotonic()
    # Down for 4 s, as in scenarios/faults/crash.yaml: long enough for the asks below to trip the
    # gateway's breaker (5 failures) even now that a restart is a fork, not a cold interpreter.
    stack.supervisor.kill("retriever-aws-us-east-1-0", restart_after=4.0)
    seen: list[tuple[float, set[str]]] = []
    confidential_hops_below: list[dict[str, Any]] = []
    back_on_primary = None
    deadline = killed_at + 25
    while time.monotonic() < deadline:
        answer = _ask(edge, question, "internal")
        assert answer.ok, answer.error
        seen.append((time.monotonic() - killed_at, _regions(answer, "retriever")))
        secret = _ask(edge, "What is the weekly on-call allowance?", "confidential")
        assert secret.ok
        confidential_hops_below += _below(secret, Sovereignty.SOVEREIGN)
        if time.monotonic() - killed_at > 3 and _regions(answer, "retriever") == {"aws/us-east-1"}:
            back_on_primary = time.monotonic() - killed_at
            break
        time.sleep(0.05)
    served_by_standby = [t for t, regions in seen if regions == {"scaleway/fr-par"}]
    print(
        f"\nretriever killed: first ask served by the standby after {served_by_standby[0]:.2f} s, "
        f"back on the primary after {back_on_primary} s"
    )
    assert served_by_standby and served_by_standby[0] < 2.0
    assert confidential_hops_below == []
    # The replica restarts after 4 s; the gateway returns only once it has been healthy for
    # failback.after_healthy_for (5 s in this design): hysteresis, no ping-pong.
    assert (
        back_on_primary is not None and back_on_primary >= 4.0 + APS.routing.failback.after_healthy_for * 0.8
    )
