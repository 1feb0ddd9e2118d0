"""Which PodDisruptionBudget an action would break, as ``bascule plan --target kubernetes`` prints it:
pure (the facts discovery read → the lines), from the command line against the emulated clusters
(``--discover`` lists the budgets, under ``deploy/rbac.yaml``, and only reads), and on real API
servers whose disruption controller wrote the budget's status (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from control_plane import NEEDS_CONTROL_PLANE, NEEDS_CONTROLLERS, resource_path, running_control_plane
from kube_real import PDBS, LiveCluster, _until, live_world, prepare_live_clusters
from kube_world import DESIGN, TARGET, mapping, touch_of, world
from typer.testing import CliRunner

from bascule.cli import app
from bascule.faults import Crash, Fault, RegionOutage
from bascule.model.selector import Selector
from bascule.targets.kubernetes.calls import ClusterFacts, DisruptionFacts, budget_lines, compute_calls
from bascule.targets.kubernetes.calls.budgets import (
    Budget,
    LabelSelector,
    NodeFact,
    PodFact,
    Requirement,
    SelectorOp,
    disruption_facts,
)
from bascule.targets.kubernetes.mapping import KubeMapping
from bascule.targets.kubernetes.resources import CHAOS_KINDS

runner = CliRunner()
EVICT = TARGET + "pod_disruption: evict\n"
EAST = "aws-us-east-1"
CHAOS = frozenset(r.plural for r in CHAOS_KINDS)


def _pod(name: str, app: str, region: str = EAST, node: str = "use1-a") -> PodFact:
    return PodFact("rag", name, (("app", app), ("bascule.io/region", region)), node)


PODS = (
    _pod("gateway-0", "gateway", node="use1-a"),
    _pod("gateway-1", "gateway", node="use1-b"),
    _pod("retriever-0", "retriever", node="use1-b"),
    _pod("gateway-w", "gateway", region="aws-eu-west-3", node="euw3-a"),
)
NODES = (
    NodeFact("use1-a", (("topology.kubernetes.io/region", "us-east-1"),)),
    NodeFact("use1-b", (("topology.kubernetes.io/region", "us-east-1"),)),
    NodeFact("euw3-a", (("topology.kubernetes.io/region", "eu-west-3"),)),
)
EAST_GATEWAYS = LabelSelector((("app", "gateway"), ("bascule.io/region", EAST)))


def _budget(
    name: str, allowed: int, selector: LabelSelector | None = EAST_GATEWAYS, observed: bool = True
) -> Budget:
    return Budget("rag", name, selector, allowed, observed)


def _facts(*budgets: Budget) -> dict[str, ClusterFacts | None]:
    found = DisruptionFacts(("identity", "rag"), budgets, PODS, NODES)
    return {
        "aws": ClusterFacts(CHAOS, found),
        "scw": ClusterFacts(CHAOS, DisruptionFacts(("identity", "rag"))),
    }


def _lines(
    fault: Fault, selector: Selector, facts: dict[str, ClusterFacts | None], world: KubeMapping | None = None
) -> list[str]:
    plan = compute_calls(fault, touch_of(fault, selector), world or mapping(), facts, run_id="t", key="p0")
    assert plan.refusal is None, plan.refusal
    return budget_lines(plan.calls, facts)


CRASH_EAST = (Crash(), Selector(component="gateway", region="aws/us-east-1"))


def test_a_deletion_that_takes_more_pods_than_a_budget_allows_names_it() -> None:
    for allowed in (0, 1):
        lines = _lines(*CRASH_EAST, _facts(_budget("gateway-budget", allowed)))
        assert lines == [
            f"breaks PodDisruptionBudget rag/gateway-budget [aws]: it allows {allowed} disruption(s), "
            "2 of its pods taken — deletion ignores it"
        ]
    assert _lines(*CRASH_EAST, _facts(_budget("gateway-budget", 2))) == [
        "note: PodDisruptionBudgets read: none is broken"
    ]


def test_with_eviction_the_line_says_the_fault_will_fail() -> None:
    lines = _lines(*CRASH_EAST, _facts(_budget("gateway-budget", 0)), mapping(EVICT))
    assert lines == [
        "breaks PodDisruptionBudget rag/gateway-budget [aws]: it allows 0 disruption(s), 2 of its pods "
        "taken — the eviction API will refuse: the fault will fail"
    ]


def test_only_the_budgets_whose_selector_matches_the_pods_taken_count() -> None:
    elsewhere = LabelSelector(
        (("app", "gateway"),), (Requirement("bascule.io/region", SelectorOp.NOT_IN, (EAST,)),)
    )
    retrievers = LabelSelector((("app", "retriever"),))
    lines = _lines(
        *CRASH_EAST,
        _facts(_budget("west", 0, elsewhere), _budget("retrievers", 0, retrievers), _budget("none", 0, None)),
    )
    assert lines == ["note: PodDisruptionBudgets read: none is broken"]


def test_an_outage_counts_every_pod_it_takes_from_a_budget_across_components() -> None:
    # An empty selector covers every pod of the namespace: the region's gateways and retriever.
    everything = _budget("all-of-rag", 2, LabelSelector())
    lines = _lines(RegionOutage(), Selector(region="aws/us-east-1"), _facts(everything))
    assert lines == [
        "breaks PodDisruptionBudget rag/all-of-rag [aws]: it allows 2 disruption(s), 3 of its pods "
        "taken — deletion ignores it"
    ]


def test_a_budget_the_controller_has_not_yet_observed_allows_nothing() -> None:
    lines = _lines(*CRASH_EAST, _facts(_budget("fresh", 0, observed=False)))
    assert lines == [
        "breaks PodDisruptionBudget rag/fresh [aws]: it has no status from the disruption controller "
        "yet (counted as allowing none), 2 of its pods taken — deletion ignores it"
    ]


def test_a_pod_under_two_budgets_cannot_be_evicted() -> None:
    lines = _lines(*CRASH_EAST, _facts(_budget("a", 5), _budget("b", 5)), mapping(EVICT))
    assert lines[0].startswith("pod rag/gateway-0 [aws] is covered by 2 PodDisruptionBudgets (a, b)")
    assert all("the eviction API refuses such a pod" in line for line in lines) and len(lines) == 2
    # A deletion does not care.
    assert _lines(*CRASH_EAST, _facts(_budget("a", 5), _budget("b", 5))) == [
        "note: PodDisruptionBudgets read: none is broken"
    ]


def test_without_discovery_the_budgets_are_said_not_read() -> None:
    for facts in ({}, {"aws": ClusterFacts(CHAOS)}):
        assert _lines(*CRASH_EAST, facts) == [
            "note: PodDisruptionBudgets not read in rag [aws] (plan --discover reads them): which "
            "budget this breaks is not known"
        ]
    unread = {"aws": ClusterFacts(CHAOS, DisruptionFacts(("rag",), unread="403 Forbidden"))}
    assert _lines(*CRASH_EAST, unread) == [
        "note: PodDisruptionBudgets could not be read in [aws] (403 Forbidden): which budget this "
        "breaks is not known"
    ]


def test_an_action_that_takes_no_pod_says_nothing_of_budgets() -> None:
    fault = RegionOutage()
    plan = compute_calls(
        fault, touch_of(fault, Selector(region="aws/us-east-1")), mapping(), {}, run_id="t", key="p0"
    )
    no_pods = [c for c in plan.calls if c.resource.plural != "pods"]
    assert no_pods and budget_lines(no_pods, {}) == []


def test_the_facts_read_from_the_api_servers_json() -> None:
    budgets = [
        {
            "metadata": {"name": "seen", "namespace": "rag", "generation": 2},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
            "status": {"observedGeneration": 2, "disruptionsAllowed": 1},
        },
        {
            "metadata": {"name": "stale", "namespace": "rag", "generation": 3},
            "spec": {"selector": {"matchLabels": {"app": "gateway"}}},
            "status": {"observedGeneration": 2, "disruptionsAllowed": 4},
        },
        {"metadata": {"name": "new", "namespace": "rag", "generation": 1}, "spec": {}},
    ]
    pods = [
        {"metadata": {"name": "p", "namespace": "rag", "labels": {"app": "x"}}, "spec": {"nodeName": "n"}},
        {"metadata": {"name": "going", "namespace": "rag", "deletionTimestamp": "2026-01-01T00:00:00Z"}},
        {"metadata": {"name": "pending", "namespace": "rag"}, "spec": {}},
    ]
    found = disruption_facts(["rag"], budgets, pods, [{"metadata": {"name": "n", "labels": {"a": "b"}}}])
    assert found.budgets == (
        Budget("rag", "new", None, 0, False),
        Budget("rag", "seen", LabelSelector((), (Requirement("app", SelectorOp.EXISTS),)), 1, True),
        Budget("rag", "stale", LabelSelector((("app", "gateway"),)), 0, False),
    )
    assert found.pods == (PodFact("rag", "p", (("app", "x"),), "n"), PodFact("rag", "pending", (), None))
    assert found.nodes == (NodeFact("n", (("a", "b"),)),)


CRASH_SCENARIO = """
id: crash-east
title: the us-east-1 gateways crash
phases:
  - {name: crash, at: 0s, for: 30s, fault: {kind: crash}, target: {component: gateway, region: aws/us-east-1}}
"""


def _files(tmp_path: Path, target: str = TARGET) -> list[str]:
    design, scenario, target_file = tmp_path / "d.yaml", tmp_path / "s.yaml", tmp_path / "t.yaml"
    design.write_text(DESIGN)
    scenario.write_text(CRASH_SCENARIO)
    target_file.write_text(target)
    return [
        "plan",
        str(scenario),
        "-d",
        str(design),
        "--target",
        "kubernetes",
        "--target-file",
        str(target_file),
    ]


def _pdb(min_available: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "gateway-budget", "namespace": "rag"},
        "spec": {
            "minAvailable": min_available,
            "selector": {"matchLabels": {"app": "gateway", "bascule.io/region": EAST}},
        },
    }
    if status is not None:
        body["status"] = status
    return body


def test_plan_discover_names_the_budget_from_the_emulated_clusters(tmp_path: Path) -> None:
    args = _files(tmp_path)
    with world(tmp_path) as w:  # bascule's requests held to deploy/rbac.yaml
        w.clusters["aws"].seed(
            PDBS, _pdb(2, {"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2})
        )
        kube = ["--kubeconfig", str(w.kubeconfig)]
        offline = runner.invoke(app, [*args, *kube], env={"COLUMNS": "250"})
        assert offline.exit_code == 0, offline.output
        assert "PodDisruptionBudgets not read in rag [aws]" in offline.output
        assert "gateway-budget" not in offline.output

        found = runner.invoke(app, [*args, *kube, "--discover"], env={"COLUMNS": "250"})
        assert found.exit_code == 0, found.output
        assert (
            "breaks PodDisruptionBudget rag/gateway-budget [aws]: it allows 0 disruption(s), 2 of its "
            "pods taken — deletion ignores it"
        ) in found.output
        requests = w.clusters["aws"].requests()
        assert {r[0] for r in requests} == {"GET"}, "discovery reads, and only reads"
        assert any(r[1] == "/apis/policy/v1/namespaces/rag/poddisruptionbudgets" for r in requests)


# -- on real API servers, with the real disruption controller ---------------------------------------


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveCluster]]:
    with running_control_plane(
        tmp_path_factory.mktemp("budget-plane"), ["aws", "scw"], controllers=True
    ) as plane:
        yield prepare_live_clusters(plane)


@pytest.mark.slow
@NEEDS_CONTROL_PLANE
@NEEDS_CONTROLLERS
def test_plan_discover_names_the_budget_the_disruption_controller_filled(
    tmp_path: Path, clusters: dict[str, LiveCluster]
) -> None:
    with live_world(tmp_path, clusters) as w:
        aws = w.clusters["aws"]
        created = aws.admin.create(PDBS, _pdb(2))  # minAvailable = replicas: nothing may go

        def filled() -> bool:
            status = (aws.admin.get(PDBS, "rag", "gateway-budget") or {}).get("status") or {}
            return (
                status.get("observedGeneration") == created["metadata"]["generation"]
                and status.get("currentHealthy") == 2
                and status.get("disruptionsAllowed") == 0
            )

        try:
            _until(filled, "the disruption controller's status: 0 disruptions allowed", 30)
            kube = ["--kubeconfig", str(w.kubeconfig), "--discover"]
            for target, outcome in (
                (TARGET, "deletion ignores it"),
                (EVICT, "the eviction API will refuse: the fault will fail"),
            ):
                result = runner.invoke(app, [*_files(tmp_path, target), *kube], env={"COLUMNS": "250"})
                assert result.exit_code == 0, result.output
                assert (
                    "breaks PodDisruptionBudget rag/gateway-budget [aws]: it allows 0 disruption(s), 2 of "
                    f"its pods taken — {outcome}"
                ) in result.output, result.output
            assert len(aws.pods("gateway-aws-us-east-1-")) == 2, "planning took no pod"
        finally:
            aws.admin.request("DELETE", resource_path(PDBS, "rag", "gateway-budget"), ok=(404,))
