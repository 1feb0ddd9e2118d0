"""The Kubernetes target's fixes of issue #17 proven on a real control plane (etcd, kube-apiserver
v1.37.2, Chaos Mesh's CRDs and admission webhooks, `control_plane`): each test here failed on the
code before its fix. bascule acts as the ``bascule`` ServiceAccount under ``deploy/rbac.yaml``; the
tests arrange the world as the cluster's admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from control_plane import NEEDS_CONTROL_PLANE, ControlPlane, resource_path, running_control_plane
from kube_real import RealCluster, RealWorld, prepare_clusters, real_world
from kube_world import touch_of

from bascule.faults import ControlPlane as ControlPlaneFault
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
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
