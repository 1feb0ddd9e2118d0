"""The Kubernetes target's fixes of issue #17 proven on a real control plane (etcd, kube-apiserver
v1.37.2, Chaos Mesh's CRDs and admission webhooks, `control_plane`): each test here failed on the
code before its fix. bascule acts as the ``bascule`` ServiceAccount under ``deploy/rbac.yaml``; the
tests arrange the world as the cluster's admin. Point 7 — a fault is reverted when its objects are
gone — is proven against Chaos Mesh's real controller-manager, which holds them by its finalizer:
``test_kubernetes_chaos_mesh.py``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from control_plane import NEEDS_CONTROL_PLANE, ControlPlane, resource_path, running_control_plane
from kube_real import RealCluster, RealWorld, prepare_clusters, real_world
from kube_world import TARGET, mapping, touch_of

from bascule.errors import FaultError, TargetError
from bascule.faults import ControlPlane as ControlPlaneFault
from bascule.faults import Crash
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.cluster import connect_contexts, is_local_server
from bascule.targets.kubernetes.identity import check_confirmation, read_confirmed
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
from bascule.targets.kubernetes.resources import DEPLOYMENT_SCALE, Resource
from bascule.targets.kubernetes.target import KubernetesTarget

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE]

HPAS = "autoscaling/v2/horizontalpodautoscalers"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(tmp_path_factory.mktemp("control-plane"), ["aws", "scw"]) as found:
        yield found


@pytest.fixture(scope="module")
def clusters(plane: ControlPlane) -> dict[str, RealCluster]:
    return prepare_clusters(plane)


@pytest.fixture
def w(tmp_path: Path, clusters: dict[str, RealCluster]) -> Iterator[RealWorld]:
    with real_world(tmp_path, clusters) as found:
        yield found


def _as_kubectl_autoscale_leaves_it(cluster: RealCluster, name: str) -> None:
    """No labels of the workload's on the HPA, and no ``status.currentReplicas`` (no controller
    has written it, or it was zero: the field is omitted then)."""
    path = resource_path(HPAS, "rag", name)
    cluster.admin.request("PATCH", path, {"metadata": {"labels": None}}, merge=True)
    cluster.admin.request("PATCH", path + "/status", {"status": {"currentReplicas": None}}, merge=True)
    hpa = cluster.admin.get(HPAS, "rag", name)
    assert hpa is not None and "labels" not in hpa["metadata"] and "currentReplicas" not in hpa["status"]


def test_control_plane_pins_hpas_found_by_scale_target_ref_and_leaves_an_idle_one_alone(
    w: RealWorld, tmp_path: Path
) -> None:
    aws = w.clusters["aws"]
    _as_kubectl_autoscale_leaves_it(aws, "gateway-aws-us-east-1")
    _as_kubectl_autoscale_leaves_it(aws, "gateway-aws-eu-west-3")
    deployment = resource_path("apps/v1/deployments", "rag", "gateway-aws-eu-west-3")
    aws.admin.request("PATCH", deployment, {"spec": {"replicas": 0}}, merge=True)
    before = w.snapshot()

    fault = ControlPlaneFault()
    east = Action(0.0, ActionOp.APPLY, 0, fault)
    west = Action(0.0, ActionOp.APPLY, 1, fault)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    applied = target.apply(east, touch_of(fault, Selector(region="aws/us-east-1")))
    idle = target.apply(west, touch_of(fault, Selector(region="aws/eu-west-3")))

    pinned = aws.admin.get(HPAS, "rag", "gateway-aws-us-east-1")
    assert pinned is not None
    # Two replicas: the Deployment's spec.replicas, the HPA having no status.currentReplicas.
    assert pinned["spec"]["minReplicas"] == pinned["spec"]["maxReplicas"] == 2
    assert any("no status.currentReplicas" in line for line in applied.effects), applied.effects
    untouched = aws.admin.get(HPAS, "rag", "gateway-aws-eu-west-3")
    assert untouched is not None
    assert (untouched["spec"]["minReplicas"], untouched["spec"]["maxReplicas"]) == (1, 6)
    assert any("left alone: idle" in line for line in idle.effects), idle.effects

    target.revert(west)
    target.revert(east)
    target.close()
    assert w.snapshot() == before
    state = read_kube_ledger(tmp_path / "run" / KUBE_LEDGER_FILE)
    assert state.closed and not state.active


def _context_alias(w: RealWorld, tmp_path: Path, alias: str, of: str) -> Path:
    """The world's kubeconfig with one more context, `alias`, reaching cluster `of` (as an SSH
    tunnel or kubectl proxy would under another name)."""
    config = yaml.safe_load(w.kubeconfig.read_text(encoding="utf-8"))
    context = next(c for c in config["contexts"] if c["name"] == of)
    config["contexts"].append({"name": alias, "context": dict(context["context"])})
    path = tmp_path / "kubeconfig-alias"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_clusters_on_loopback_are_confirmed_by_identity_once_and_remembered(
    w: RealWorld, tmp_path: Path
) -> None:
    # Both API servers listen on 127.0.0.1 — where kubectl proxy or a tunnel to production would.
    assert all(is_local_server(api.server) for api in w.apis.values())
    store = tmp_path / "confirmed.json"
    assert check_confirmation(w.apis, environ={}, path=store) == ["aws", "scw"]
    assert not store.exists()
    assert check_confirmation(w.apis, ["aws"], environ={}, path=store) == ["scw"]
    assert check_confirmation(w.apis, ["aws", "scw"], environ={}, path=store) == []
    remembered = read_confirmed(store)
    uids = {
        name: c.admin.get("v1/namespaces", None, "kube-system")["metadata"]["uid"]  # type: ignore[index]
        for name, c in w.clusters.items()
    }
    assert set(remembered) == set(uids.values()) and uids["aws"] != uids["scw"]
    # Remembered: no --confirm needed again, under any context name reaching the same cluster.
    assert check_confirmation(w.apis, environ={}, path=store) == []
    aliased = connect_contexts(["aws-tunnel"], _context_alias(w, tmp_path, "aws-tunnel", "aws"))
    try:
        assert check_confirmation(aliased, environ={}, path=store) == []
    finally:
        aliased["aws-tunnel"].close()
    # Confirmations through the environment (CI) are not remembered.
    other = tmp_path / "ci.json"
    assert check_confirmation(w.apis, environ={"BASCULE_CONFIRM_CONTEXTS": "aws,scw"}, path=other) == []
    assert not other.exists()


def test_least_privilege_scale_subresource_only_and_volumes_only_with_the_data_loss_binding(
    w: RealWorld,
) -> None:
    api = w.apis["aws"]
    deployment = Resource("apps", "v1", "deployments", "Deployment", True)
    # refuse needs the scale subresource only: a patch of the workload itself (its pod template)
    # is refused by the API server.
    with pytest.raises(TargetError, match="403"):
        api.patch(deployment, "rag", "gateway-aws-us-east-1", {"metadata": {"labels": {"x": "y"}}})
    scaled = api.patch(DEPLOYMENT_SCALE, "rag", "gateway-aws-us-east-1", {"spec": {"replicas": 2}})
    assert scaled["kind"] == "Scale" and scaled["spec"]["replicas"] == 2
    # Volume claims are readable only through the data-loss binding, which only a target file
    # allowing data loss needs.
    pvcs = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
    assert api.get(pvcs, "rag", "data-store-aws-us-east-1-0") is not None
    admin = w.clusters["aws"].admin
    binding = "/apis/rbac.authorization.k8s.io/v1/namespaces/rag/rolebindings/bascule-data-loss"
    kept = admin.request("GET", binding)
    admin.request("DELETE", binding)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the authorizer's cache follows within moments
            try:
                api.get(pvcs, "rag", "data-store-aws-us-east-1-0")
            except TargetError as exc:
                assert "403" in str(exc)
                break
            time.sleep(0.2)
        else:
            pytest.fail("volume claims stayed readable without the data-loss binding")
    finally:
        meta = {k: kept["metadata"][k] for k in ("name", "namespace")}
        admin.request("POST", binding.rsplit("/", 1)[0], {**kept, "metadata": meta})


def test_the_admission_policy_lets_bascule_cordon_nodes_and_change_nothing_else(w: RealWorld) -> None:
    # deploy/rbac.yaml's ValidatingAdmissionPolicy, enforced by kube-apiserver v1.37 itself.
    api = w.apis["aws"]
    nodes = Resource("", "v1", "nodes", "Node", False)
    before = w.clusters["aws"].admin.get("v1/nodes", None, "use1-a")
    assert before is not None
    cordoned = api.patch(nodes, None, "use1-a", {"spec": {"unschedulable": True}})
    assert cordoned["spec"]["unschedulable"] is True
    api.patch(nodes, None, "use1-a", {"spec": {"unschedulable": None}})
    refused = [
        {"metadata": {"labels": {"topology.kubernetes.io/region": "eu-west-3"}}},
        {"metadata": {"annotations": {"x": "y"}}},
        {"spec": {"taints": [{"key": "bascule", "effect": "NoSchedule"}]}},
        {"spec": {"unschedulable": True, "taints": [{"key": "x", "effect": "NoExecute"}]}},
    ]
    for patch in refused:
        with pytest.raises(TargetError, match="bascule may change"):
            api.patch(nodes, None, "use1-a", patch)
    node = w.clusters["aws"].admin.get("v1/nodes", None, "use1-a")
    assert node is not None and "unschedulable" not in node["spec"]
    assert node["spec"].get("taints") == before["spec"].get("taints")  # the API server's not-ready taint
    assert node["metadata"]["labels"]["topology.kubernetes.io/region"] == "us-east-1"
    # The cluster's admin is not bound by it.
    path = resource_path("v1/nodes", None, "use1-a")
    w.clusters["aws"].admin.request("PATCH", path, {"metadata": {"annotations": {"x": "y"}}}, merge=True)


PDBS = "policy/v1/poddisruptionbudgets"


def _budget(cluster: RealCluster, allowed: int) -> str:
    """A PodDisruptionBudget on the gateway's pods in us-east-1, with the status the disruption
    controller (not run here) would write: `allowed` disruptions. Its path."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "gateway-budget", "namespace": "rag"},
        "spec": {
            "minAvailable": 2 - allowed,
            "selector": {"matchLabels": {"app": "gateway", "bascule.io/region": "aws-us-east-1"}},
        },
    }
    created = cluster.admin.create(PDBS, body)
    path = resource_path(PDBS, "rag", "gateway-budget")
    status = {
        "observedGeneration": created["metadata"]["generation"],
        "disruptionsAllowed": allowed,
        "currentHealthy": 2,
        "desiredHealthy": 2 - allowed,
        "expectedPods": 2,
    }
    cluster.admin.request("PATCH", path + "/status", {"status": status}, merge=True)
    return path


def _gateway_pods(cluster: RealCluster) -> dict[str, bool]:
    """The us-east-1 gateway pods, each with whether its deletion has begun."""
    return {
        p["metadata"]["name"]: "deletionTimestamp" in p["metadata"]
        for p in cluster.admin.list("v1/pods", "rag")
        if p["metadata"]["name"].startswith("gateway-aws-us-east-1")
    }


@pytest.mark.parametrize("allowed", [0, 2])
def test_eviction_respects_a_pod_disruption_budget_where_deletion_ignores_it(
    w: RealWorld, tmp_path: Path, allowed: int
) -> None:
    aws = w.clusters["aws"]
    path = _budget(aws, allowed)
    crash = Crash()
    touch = touch_of(crash, Selector(component="gateway", region="aws/us-east-1"))
    try:
        evicting = mapping(TARGET + "pod_disruption: evict\n")
        target = KubernetesTarget.start(evicting, w.apis, tmp_path / "evict")
        plan = target.call_plan(crash, touch)
        assert any(line.startswith("evict Pod") for line in plan.lines()), plan.lines()
        assert any("PodDisruptionBudget" in note for note in plan.notes)
        if allowed == 0:
            with pytest.raises(FaultError, match="disruption budget"):
                target.apply(Action(0.0, ActionOp.APPLY, 0, crash), touch)
            assert not any(_gateway_pods(aws).values()), "the API server evicted nothing"
        else:
            applied = target.apply(Action(0.0, ActionOp.APPLY, 0, crash), touch)
            assert sum(line.startswith("evict Pod") for line in applied.effects) == 2
            assert all(_gateway_pods(aws).values())
        target.close()

        # Deletion (the default) is a crash: no budget stops it; the plan says so.
        deleting = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "delete")
        plan = deleting.call_plan(crash, touch)
        assert any("ignores PodDisruptionBudgets" in note for note in plan.notes), plan.notes
        if allowed == 0:
            deleting.apply(Action(0.0, ActionOp.APPLY, 0, crash), touch)
            assert all(_gateway_pods(aws).values())
        deleting.close()
    finally:
        aws.admin.request("DELETE", path, ok=(404,))
