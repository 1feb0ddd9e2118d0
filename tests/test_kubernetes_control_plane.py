"""The Kubernetes target against a real control plane (etcd and kube-apiserver built from their Go
modules, `control_plane`), two clusters on 127.0.0.1: the contract tests of
``test_kubernetes_contract`` on real API servers — every fault kind applied then reverted, objects
deep-equal but server-managed fields — with bascule acting as the ``bascule`` ServiceAccount under
``deploy/rbac.yaml``, the API server enforcing it; and every object bascule creates stored as sent
(a CRD's structural schema prunes unknown fields silently)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from control_plane import NEEDS_CONTROL_PLANE, ControlPlane, running_control_plane
from kube_real import RealCluster, RealWorld, prepare_clusters, real_world
from kube_world import touch_of
from test_kubernetes_contract import CASES, Check, _created_count, _missing_allowed, _spec_has
from test_kubernetes_recover import _assert_restored, _run_child
from typer.testing import CliRunner

from bascule.cli import app
from bascule.errors import TargetError
from bascule.faults import Blackhole, Crash, Fault, Identity, IdentityMode
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.calls import Verb
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
from bascule.targets.kubernetes.probe import read_readiness
from bascule.targets.kubernetes.recover import recover_kubernetes
from bascule.targets.kubernetes.resources import PODS, Resource
from bascule.targets.kubernetes.target import KubernetesTarget

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE]


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


def test_the_control_plane_serves_the_pinned_kubernetes_and_chaos_mesh(
    plane: ControlPlane, clusters: dict[str, RealCluster]
) -> None:
    for server in plane.servers.values():
        version = server.admin.request("GET", "/version")
        assert version["gitVersion"] == "v1.37.2", version
        served = server.admin.request("GET", "/apis/chaos-mesh.org/v1alpha1")
        names = {r["name"] for r in served["resources"]}
        assert {"networkchaos", "httpchaos", "dnschaos", "podchaos"} <= names
    times = ", ".join(f"{n} {s.started_in:.1f} s" for n, s in plane.servers.items())
    crds = ", ".join(f"{n} {c.chaos_mesh_installed_in:.1f} s" for n, c in clusters.items())
    print(f"\netcd ready in {plane.etcd_started_in:.1f} s; kube-apiserver ready in {times}")
    print(f"Chaos Mesh's CRDs and webhooks serving in {crds}")


def test_bascule_acts_as_its_service_account_and_rbac_refuses_the_rest(w: RealWorld) -> None:
    api = w.apis["aws"]
    # deploy/rbac.yaml grants listing pods in a mapped namespace, not reading secrets anywhere.
    assert api.list(PODS, "rag")
    with pytest.raises(TargetError, match="403"):
        api.list(Resource("", "v1", "secrets", "Secret", True), "rag")


def _contains(stored: Any, sent: Any, where: str = "") -> list[str]:
    """Where `stored` lacks or changed what `sent` holds (a server may add defaults, not drop)."""
    if isinstance(sent, Mapping):
        if not isinstance(stored, Mapping):
            return [f"{where}: {stored!r} instead of an object"]
        out: list[str] = []
        for key, value in sent.items():
            if key not in stored:
                out.append(f"{where}.{key}: dropped by the server")
            else:
                out += _contains(stored[key], value, f"{where}.{key}")
        return out
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return [f"{where}: {stored!r} instead of {sent!r}"]
        return [
            p
            for i, (a, b) in enumerate(zip(stored, sent, strict=True))
            for p in _contains(a, b, f"{where}[{i}]")
        ]
    return [] if stored == sent else [f"{where}: {stored!r} instead of {sent!r}"]


NETEM_CASES: list[tuple[str, Fault, Selector, Check]] = [
    # NetworkChaos with no `target`: Chaos Mesh's webhook refuses `direction: both` there.
    (
        "identity-timeout",
        Identity(mode=IdentityMode.TIMEOUT),
        Selector(dependency="aws-sts"),
        _created_count("aws", "chaos-mesh.org/v1alpha1/networkchaos", 1, _spec_has("direction", "to")),
    ),
    # Callers in another cluster are `externalTargets`: `from` and `both` are refused there too.
    (
        "blackhole-link-two-clusters",
        Blackhole(),
        Selector(link=("aws/us-east-1", "scaleway/fr-par")),
        _created_count("scw", "chaos-mesh.org/v1alpha1/networkchaos", 3, _spec_has("direction", "to")),
    ),
]


@pytest.mark.parametrize(
    ("name", "fault", "selector", "during"), CASES + NETEM_CASES, ids=[c[0] for c in CASES + NETEM_CASES]
)
def test_apply_then_revert_restores_every_object_on_a_real_apiserver(
    w: RealWorld, tmp_path: Path, name: str, fault: Fault, selector: Selector, during: Check
) -> None:
    touch = touch_of(fault, selector)
    before = w.snapshot()
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    plan = target.call_plan(fault, touch, "p0")
    assert plan.refusal is None, plan.refusal
    action = Action(0.0, ActionOp.APPLY, 0, fault)

    began = time.monotonic()
    applied = target.apply(action, touch)
    assert applied.effects
    assert w.snapshot() != before
    during(w)
    for call in plan.calls:
        if call.verb is Verb.CREATE and call.body is not None:
            cluster = w.clusters[call.context]
            stored = cluster.admin.request("GET", call.resource.path(call.namespace, call.name))
            lost = _contains(stored, dict(call.body))
            assert not lost, f"{call.describe()}: {lost}"
    reverted = target.revert(action)
    assert reverted.changed
    target.close()
    print(f"\n{name}: applied and reverted in {time.monotonic() - began:.2f} s")

    for cluster, snapshot in w.snapshot().items():
        _missing_allowed(before[cluster], snapshot, applied.effects)
    assert w.created() == []
    for cluster in w.clusters.values():
        # What a kubelet or a controller finishes: only what the fault deleted.
        for key in cluster.terminating():
            resource, namespace, obj = key
            assert resource in ("v1/pods", "v1/persistentvolumeclaims"), key
            assert any(f"{namespace}/{obj} " in line for line in applied.effects), key
    state = read_kube_ledger(tmp_path / "run" / KUBE_LEDGER_FILE)
    assert state.closed and not state.active


def test_a_crashed_pod_is_terminating_not_gone_and_readiness_no_longer_counts_it(
    w: RealWorld, tmp_path: Path
) -> None:
    # kmock removes a deleted pod at once; a real API server keeps a pod bound to a node, marked
    # for graceful deletion, until its kubelet confirms: the probe must not count it as ready.
    crash = Crash()
    touch = touch_of(crash, Selector(component="gateway", region="scaleway/fr-par"))
    ready_before = {(r.component, r.region): r.ready for r in read_readiness(w.mapping, w.apis)}
    assert ready_before["gateway", "scaleway/fr-par"] == 2
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        target.apply(Action(0.0, ActionOp.APPLY, 0, crash), touch)
    terminating = [k for k in w.clusters["scw"].terminating() if k[0] == "v1/pods"]
    assert len(terminating) == 2 and all(k[2].startswith("gateway-") for k in terminating)
    after = {(r.component, r.region): r for r in read_readiness(w.mapping, w.apis)}
    assert after["gateway", "scaleway/fr-par"].ready == after["gateway", "scaleway/fr-par"].pods == 0
    assert after["retriever", "scaleway/fr-par"].ready == 1


def test_recover_after_a_sigkill_restores_every_object_on_a_real_apiserver(
    w: RealWorld, tmp_path: Path
) -> None:
    # The run of test_kubernetes_recover, in a child process SIGKILLed with six faults in force,
    # then `bascule recover RUN_DIR` as the ServiceAccount.
    before = w.snapshot()
    run_dir = tmp_path / "run"
    assert "all applied" in _run_child(w, run_dir, None)
    assert w.snapshot() != before
    result = CliRunner().invoke(app, ["recover", str(run_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "Corefile restored" in result.output
    _assert_restored(w, before)
    again = recover_kubernetes(run_dir, w.apis)
    assert again.previously == "recovered" and again.restored == ()


@pytest.mark.parametrize("kill_after", [0, 3, 9])
def test_recover_restores_a_fault_killed_midway_on_a_real_apiserver(
    w: RealWorld, tmp_path: Path, kill_after: int
) -> None:
    before = w.snapshot()
    run_dir = tmp_path / "run"
    assert "killed mid-apply" in _run_child(w, run_dir, kill_after)
    report = recover_kubernetes(run_dir, w.apis)
    assert report.clean, report.lines()
    _assert_restored(w, before)
