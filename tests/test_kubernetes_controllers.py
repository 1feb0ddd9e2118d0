"""The Kubernetes target's faults against what only controllers can show: a real control plane
(etcd, kube-apiserver v1.37.2) with its kube-controller-manager, kube-scheduler and kwok's nodes
(`control_plane` with ``controllers=True``, the live world of `kube_real`). Pods are made by the
ReplicaSet controller, bound by the scheduler to the kwok nodes of their region, and run by kwok;
budgets are filled by the disruption controller; HPAs are kept within their bounds by the HPA
controller. bascule acts as the ``bascule`` ServiceAccount under ``deploy/rbac.yaml``; the tests
act as the cluster's admin (a user scaling a Deployment, a budget made by a chart)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import pytest
from control_plane import (
    NEEDS_CONTROL_PLANE,
    NEEDS_CONTROLLERS,
    ControlPlane,
    resource_path,
    running_control_plane,
)
from kube_real import (
    PDBS,
    LiveCluster,
    LiveWorld,
    _ready_pod,
    _until,
    live_world,
    prepare_live_clusters,
)
from kube_world import TARGET, mapping, touch_of

from bascule.errors import FaultError
from bascule.faults import ControlPlane as ControlPlaneFault
from bascule.faults import Crash, RegionOutage
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
from bascule.targets.kubernetes.probe import read_readiness
from bascule.targets.kubernetes.target import KubernetesTarget

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE, NEEDS_CONTROLLERS]

HPAS = "autoscaling/v2/horizontalpodautoscalers"
EAST_GATEWAY = "gateway-aws-us-east-1"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(
        tmp_path_factory.mktemp("live-plane"), ["aws", "scw"], controllers=True
    ) as found:
        yield found


@pytest.fixture(scope="module")
def clusters(plane: ControlPlane) -> dict[str, LiveCluster]:
    return prepare_live_clusters(plane)


@pytest.fixture
def w(tmp_path: Path, clusters: dict[str, LiveCluster]) -> Iterator[LiveWorld]:
    with live_world(tmp_path, clusters) as found:
        yield found


def _regions(cluster: LiveCluster) -> dict[str, str]:
    """Each node's region label — only kwok's nodes (annotated for it) exist here."""
    return {
        n["metadata"]["name"]: n["metadata"]["labels"]["topology.kubernetes.io/region"]
        for n in cluster.admin.list("v1/nodes")
        if n["metadata"].get("annotations", {}).get("kwok.x-k8s.io/node") == "fake"
    }


def _uids(pods: list[dict[str, Any]]) -> set[str]:
    return {p["metadata"]["uid"] for p in pods}


def _running_in(
    cluster: LiveCluster, prefix: str, region: str, count: int, old: AbstractSet[str] = frozenset()
) -> bool:
    """`count` pods of `prefix`, none of them in `old`, all Running and Ready on `region`'s nodes."""
    pods = cluster.pods(prefix)
    regions = _regions(cluster)
    return (
        len(pods) == count
        and not (_uids(pods) & old)
        and all(_ready_pod(p) and regions.get(p["spec"].get("nodeName", "")) == region for p in pods)
    )


def _unscheduled(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["spec"].get("nodeName") and any(
        c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable"
        for c in conditions
    )


def _same(before: dict[str, dict[Any, Any]], after: dict[str, dict[Any, Any]]) -> None:
    """`after` equal to `before`, or a message naming the objects that differ and how."""
    differ = {
        (cluster, key): (before[cluster].get(key), after[cluster].get(key))
        for cluster in before
        for key in set(before[cluster]) | set(after[cluster])
        if before[cluster].get(key) != after[cluster].get(key)
    }
    assert not differ, "\n".join(f"{key}:\n  before {b}\n  after  {a}" for key, (b, a) in differ.items())


def _ready_counts(w: LiveWorld) -> dict[tuple[str, str], int]:
    return {(r.component, r.region): r.ready for r in read_readiness(w.mapping, w.apis)}


def _closed(run: Path) -> None:
    state = read_kube_ledger(run / KUBE_LEDGER_FILE)
    assert state.closed and not state.active


def test_the_live_world_runs_on_the_controllers_the_scheduler_and_kwok(
    w: LiveWorld, plane: ControlPlane
) -> None:
    for name, server in plane.servers.items():
        assert server.controllers is not None
        print(  # the start times, for the docs
            f"{name}: kube-apiserver ready in {server.started_in:.1f} s, controller manager, scheduler "
            f"and kwok ready {server.controllers.started_in:.1f} s later; kwok nodes Ready and every "
            f"pod Running {w.clusters[name].populated_in:.1f} s after the world's first object"
        )
    aws, scw = w.clusters["aws"], w.clusters["scw"]
    assert _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 2)
    assert _running_in(aws, "gateway-aws-eu-west-3-", "eu-west-3", 1)
    assert _running_in(aws, "retriever-aws-us-east-1-", "us-east-1", 1)
    assert _running_in(scw, "gateway-scaleway-fr-par-", "fr-par", 2)
    # Made by the ReplicaSet controller (owned by a ReplicaSet the Deployment controller made).
    for pod in aws.pods(f"{EAST_GATEWAY}-"):
        (owner,) = pod["metadata"]["ownerReferences"]
        assert owner["kind"] == "ReplicaSet" and owner["name"].startswith(f"{EAST_GATEWAY}-")
    # The HPA controller writes the status bascule's control-plane fault pins to.
    _until(
        lambda: (
            (aws.admin.get(HPAS, "rag", EAST_GATEWAY) or {}).get("status", {}).get("currentReplicas") == 2
        ),
        "the HPA controller's status.currentReplicas",
        30,
    )


def test_crash_deletes_pods_and_the_replicaset_controller_runs_new_ones_on_kwok_nodes(
    w: LiveWorld, tmp_path: Path
) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    old = _uids(aws.pods(f"{EAST_GATEWAY}-"))
    assert len(old) == 2
    crash = Crash()
    action = Action(0.0, ActionOp.APPLY, 0, crash)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    began = time.monotonic()
    applied = target.apply(action, touch_of(crash, Selector(component="gateway", region="aws/us-east-1")))
    assert sum(line.startswith("delete Pod") for line in applied.effects) == 2, applied.effects
    _until(
        lambda: _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 2, old),
        "two new gateway pods Running on us-east-1's kwok nodes",
        60,
    )
    print(f"crash: replaced and Running {time.monotonic() - began:.1f} s after the fault")
    target.revert(action)
    target.close()
    _closed(tmp_path / "run")
    w.settle()
    _same(before, w.live_snapshot())


def test_a_region_outage_leaves_pinned_pods_pending_and_moves_the_others_for_good(
    w: LiveWorld, tmp_path: Path
) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    east = [f"{EAST_GATEWAY}-", "retriever-aws-us-east-1-"]
    old = {prefix: _uids(aws.pods(prefix)) for prefix in east}
    llm = "llm-aws-us-east-1-"
    # Not pinned: its pod prefers us-east-1's nodes, and is there.
    assert _running_in(aws, llm, "us-east-1", 1)
    old_llm = _uids(aws.pods(llm))
    west = _uids(aws.pods("gateway-aws-eu-west-3-"))
    outage = RegionOutage()
    action = Action(0.0, ActionOp.APPLY, 0, outage)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    target.apply(action, touch_of(outage, Selector(region="aws/us-east-1")))

    def pending() -> bool:
        pods = [p for prefix in east for p in aws.pods(prefix)]
        return (
            len(pods) == 3
            and not (_uids(pods) & set().union(*old.values()))
            and all(_unscheduled(p) for p in pods)
        )

    # The ReplicaSet controller replaces the deleted pods at once. The scheduler finds no node for
    # the pinned ones (their nodeSelector names us-east-1, whose nodes are all cordoned): Pending.
    # The llm's replacement only preferred us-east-1: it runs in eu-west-3.
    _until(pending, "the pinned us-east-1 pods replaced and Pending (Unschedulable)", 60)
    _until(
        lambda: _running_in(aws, llm, "eu-west-3", 1, old_llm), "the llm's new pod Running in eu-west-3", 60
    )
    time.sleep(3)
    assert pending(), "a pinned pod of us-east-1 was scheduled during the outage"
    assert _running_in(aws, "gateway-aws-eu-west-3-", "eu-west-3", 1)
    assert _uids(aws.pods("gateway-aws-eu-west-3-")) == west
    for node in aws.admin.list("v1/nodes"):
        cordoned = node["metadata"]["labels"]["topology.kubernetes.io/region"] == "us-east-1"
        assert bool(node["spec"].get("unschedulable")) is cordoned
    # bascule's readiness probe (as its ServiceAccount) counts a region's pods on its nodes only.
    during = _ready_counts(w)
    assert during["gateway", "aws/us-east-1"] == during["retriever", "aws/us-east-1"] == 0
    assert during["llm", "aws/us-east-1"] == 0 and during["gateway", "aws/eu-west-3"] == 1

    began = time.monotonic()
    target.revert(action)
    _until(
        lambda: (
            _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 2)
            and _running_in(aws, "retriever-aws-us-east-1-", "us-east-1", 1)
        ),
        "the Pending pods scheduled on us-east-1 and Running once it is uncordoned",
        60,
    )
    print(f"region-outage: pinned pods Running {time.monotonic() - began:.1f} s after the revert")
    target.close()
    _closed(tmp_path / "run")
    w.settle()
    # Nothing moves a running pod back: the llm of us-east-1 still runs in eu-west-3, and is not
    # counted as us-east-1's.
    assert _running_in(aws, llm, "eu-west-3", 1, old_llm)
    after = _ready_counts(w)
    assert (after["gateway", "aws/us-east-1"], after["retriever", "aws/us-east-1"]) == (2, 1)
    assert after["llm", "aws/us-east-1"] == 0
    _same(before, w.live_snapshot())


def _scale(cluster: LiveCluster, name: str, replicas: int) -> None:
    """What ``kubectl scale`` does: the Deployment's scale subresource."""
    path = resource_path("apps/v1/deployments", "rag", name) + "/scale"
    cluster.admin.request("PATCH", path, {"spec": {"replicas": replicas}}, merge=True)


def test_a_scale_up_under_a_frozen_control_plane_runs_no_pod_until_reverted(
    w: LiveWorld, tmp_path: Path
) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    old = _uids(aws.pods(f"{EAST_GATEWAY}-"))
    fault = ControlPlaneFault()
    action = Action(0.0, ActionOp.APPLY, 0, fault)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    target.apply(action, touch_of(fault, Selector(region="aws/us-east-1")))
    hpa = aws.admin.get(HPAS, "rag", EAST_GATEWAY)
    assert hpa is not None and hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 2

    _scale(aws, EAST_GATEWAY, 4)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        started = [
            p
            for p in aws.pods(f"{EAST_GATEWAY}-")
            if p["metadata"]["uid"] not in old and p["spec"].get("nodeName")
        ]
        assert not started, (
            f"a pod was scheduled under a frozen control plane: {started[0]['metadata']['name']}"
        )
        time.sleep(0.25)
    # The HPA controller holds the Deployment within the pinned bounds: back to 2.
    _until(
        lambda: (aws.admin.get("apps/v1/deployments", "rag", EAST_GATEWAY) or {})["spec"]["replicas"] == 2,
        "the pinned HPA scaling the Deployment back to 2",
        30,
    )
    assert _uids(aws.pods(f"{EAST_GATEWAY}-")) >= old

    target.revert(action)
    target.close()
    _closed(tmp_path / "run")
    hpa = aws.admin.get(HPAS, "rag", EAST_GATEWAY)
    assert hpa is not None and (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    began = time.monotonic()
    _scale(aws, EAST_GATEWAY, 4)
    _until(
        lambda: _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 4),
        "four gateway pods Running once the control plane is back",
        60,
    )
    print(f"control-plane: scale-up Running {time.monotonic() - began:.1f} s after the revert")
    time.sleep(3)  # the HPA (1 to 6, no metrics) leaves a Deployment within its bounds alone
    assert (aws.admin.get("apps/v1/deployments", "rag", EAST_GATEWAY) or {})["spec"]["replicas"] == 4
    _scale(aws, EAST_GATEWAY, 2)
    w.settle()
    _same(before, w.live_snapshot())


def test_a_crash_under_a_frozen_control_plane_stays_down_until_it_is_reverted(
    w: LiveWorld, tmp_path: Path
) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    old = _uids(aws.pods(f"{EAST_GATEWAY}-"))
    frozen, crash = ControlPlaneFault(), Crash()
    freeze = Action(0.0, ActionOp.APPLY, 0, frozen)
    kill = Action(0.0, ActionOp.APPLY, 1, crash)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    target.apply(freeze, touch_of(frozen, Selector(region="aws/us-east-1")))
    target.apply(kill, touch_of(crash, Selector(component="gateway", region="aws/us-east-1")))

    def down() -> bool:
        pods = aws.pods(f"{EAST_GATEWAY}-")
        return len(pods) == 2 and not (_uids(pods) & old) and all(_unscheduled(p) for p in pods)

    # Recreated by the ReplicaSet controller, never scheduled while the region is cordoned.
    _until(down, "the crashed gateway's replacements Pending", 60)
    time.sleep(3)
    assert down(), "a crashed pod came back under a frozen control plane"
    target.revert(kill)
    target.revert(freeze)
    _until(
        lambda: _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 2, old),
        "the replacements Running once the control plane is back",
        60,
    )
    target.close()
    _closed(tmp_path / "run")
    w.settle()
    _same(before, w.live_snapshot())


def _budget(cluster: LiveCluster, min_available: int, allowed: int) -> str:
    """A PodDisruptionBudget on the us-east-1 gateway's pods, made as a chart would; until the
    disruption controller has written its status: `allowed` disruptions. Its path."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "gateway-budget", "namespace": "rag"},
        "spec": {
            "minAvailable": min_available,
            "selector": {"matchLabels": {"app": "gateway", "bascule.io/region": "aws-us-east-1"}},
        },
    }
    created = cluster.admin.create(PDBS, body)
    path = resource_path(PDBS, "rag", "gateway-budget")

    def filled() -> bool:
        status = (cluster.admin.get(PDBS, "rag", "gateway-budget") or {}).get("status") or {}
        return (
            status.get("observedGeneration") == created["metadata"]["generation"]
            and status.get("expectedPods") == 2
            and status.get("currentHealthy") == 2
            and status.get("disruptionsAllowed") == allowed
        )

    _until(filled, f"the disruption controller's status: {allowed} disruptions allowed", 30)
    return path


@pytest.mark.parametrize(("min_available", "allowed"), [(2, 0), (0, 2)])
def test_eviction_respects_the_disruption_controllers_budget_where_deletion_ignores_it(
    w: LiveWorld, tmp_path: Path, min_available: int, allowed: int
) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    old = _uids(aws.pods(f"{EAST_GATEWAY}-"))
    path = _budget(aws, min_available, allowed)
    crash = Crash()
    touch = touch_of(crash, Selector(component="gateway", region="aws/us-east-1"))
    action = Action(0.0, ActionOp.APPLY, 0, crash)
    try:
        evicting = KubernetesTarget.start(
            mapping(TARGET + "pod_disruption: evict\n"), w.apis, tmp_path / "evict"
        )
        if allowed == 0:
            with pytest.raises(FaultError, match="disruption budget"):
                evicting.apply(action, touch)
            time.sleep(2)
            assert _uids(aws.pods(f"{EAST_GATEWAY}-")) == old, "the API server evicted nothing"
            assert all(_ready_pod(p) for p in aws.pods(f"{EAST_GATEWAY}-"))
        else:
            applied = evicting.apply(action, touch)
            assert sum(line.startswith("evict Pod") for line in applied.effects) == 2, applied.effects
            _until(
                lambda: _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 2, old),
                "the evicted pods replaced by the ReplicaSet controller",
                60,
            )
            evicting.revert(action)
        evicting.close()
        _closed(tmp_path / "evict")

        if allowed == 0:
            # Deletion (the default) is a crash: the budget does not stop it.
            deleting = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "delete")
            deleting.apply(action, touch)
            _until(
                lambda: _running_in(aws, f"{EAST_GATEWAY}-", "us-east-1", 2, old),
                "the deleted pods replaced by the ReplicaSet controller",
                60,
            )
            deleting.revert(action)
            deleting.close()
            _closed(tmp_path / "delete")
    finally:
        aws.admin.request("DELETE", path, ok=(404,))
    w.settle()
    _same(before, w.live_snapshot())
