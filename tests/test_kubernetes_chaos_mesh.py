"""Issue #17's point 7 — a fault is reverted when its objects are gone, and the journal times both —
against Chaos Mesh's REAL controller-manager (`kube_chaos_mesh`), on a real control plane (etcd,
kube-apiserver v1.37.2, Chaos Mesh's CRDs): Chaos Mesh itself puts its finalizer
(``chaos-mesh/records``) on the NetworkChaos, HTTPChaos and PodChaos bascule creates, injects, and
lifts the finalizer after bascule's DELETE only once it has recovered every pod.

The chaos-daemon is a STAND-IN (``tests/controlplane/chaos-daemon-standin``): no container runs
here, so no packet is shaped and no HTTP is proxied. It serves Chaos Mesh's own gRPC service and
records each call; the tests assert on those calls — what Chaos Mesh's controller decided to inject
(``SetTcs``, ``ApplyHttpChaos``) and then to recover (the same calls, emptied) — and, for a
``pod-failure``, on the pods the controller itself changed through the API server.

bascule acts as the ``bascule`` ServiceAccount under ``deploy/rbac.yaml``; its chaos objects pass
Chaos Mesh's own webhooks, ``/validate-auth`` included, served by the controller-manager."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from control_plane import NEEDS_CONTROL_PLANE, ControlPlane, running_control_plane
from kube_chaos_mesh import FINALIZER, NEEDS_CHAOS_MESH, PAUSE_IMAGE, ChaosMesh, DaemonCall
from kube_real import RealCluster, RealWorld, prepare_clusters, real_world
from kube_world import touch_of
from test_kubernetes_recover import _run_child

from bascule.errors import RevertError
from bascule.faults import Fault, Hang, HttpError, Latency
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.ledger import KUBE_LEDGER_FILE, read_kube_ledger
from bascule.targets.kubernetes.recover import recover_kubernetes
from bascule.targets.kubernetes.resources import RUN_LABEL
from bascule.targets.kubernetes.target import KubernetesTarget

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE, NEEDS_CHAOS_MESH]

NETWORK_CHAOS = "chaos-mesh.org/v1alpha1/networkchaos"
HTTP_CHAOS = "chaos-mesh.org/v1alpha1/httpchaos"
POD_CHAOS = "chaos-mesh.org/v1alpha1/podchaos"
RETRIEVER = Selector(component="retriever", region="scaleway/fr-par")
LLM = Selector(component="llm", region="scaleway/fr-par")


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(
        tmp_path_factory.mktemp("control-plane"), ["aws", "scw"], chaos_mesh=True
    ) as found:
        yield found


@pytest.fixture(scope="module")
def clusters(plane: ControlPlane) -> dict[str, RealCluster]:
    return prepare_clusters(plane)


@pytest.fixture
def w(tmp_path: Path, clusters: dict[str, RealCluster]) -> Iterator[RealWorld]:
    for cluster in clusters.values():
        chaos_mesh(cluster).check()
    with real_world(tmp_path, clusters) as found:
        yield found


def chaos_mesh(cluster: RealCluster) -> ChaosMesh:
    found = cluster.server.chaos_mesh
    assert found is not None
    return found


def _until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def _created(cluster: RealCluster, resource: str) -> list[dict[str, Any]]:
    return [
        o for o in cluster.admin.list(resource, "rag") if RUN_LABEL in (o["metadata"].get("labels") or {})
    ]


def _pods(cluster: RealCluster, component: str) -> list[str]:
    return sorted(
        f"rag/{p['metadata']['name']}"
        for p in cluster.admin.list("v1/pods", "rag")
        if p["metadata"]["name"].startswith(f"{component}-scaleway-fr-par")
    )


def _injected(obj: dict[str, Any]) -> bool:
    """Chaos Mesh's finalizer on the object and every record of its status ``Injected``."""
    records = ((obj.get("status") or {}).get("experiment") or {}).get("containerRecords") or []
    return (
        FINALIZER in (obj["metadata"].get("finalizers") or [])
        and bool(records)
        and all(r.get("phase") == "Injected" for r in records)
    )


def _calls_for(mesh: ChaosMesh, method: str, pods: list[str], since: float = 0.0) -> list[DaemonCall]:
    return [c for c in mesh.calls(method) if c.chaos in pods and c.time >= since]


def _network_rules(call: DaemonCall) -> list[Any]:
    return list(call.request.get("tcs") or [])


def _http_rules(call: DaemonCall) -> list[Any]:
    return list(json.loads(call.request.get("rules") or "[]"))


def _images(cluster: RealCluster, pods: list[str]) -> set[str]:
    found = set()
    for pod in pods:
        obj = cluster.admin.get("v1/pods", "rag", pod.split("/", 1)[1])
        assert obj is not None
        found |= {c["image"] for c in obj["spec"]["containers"]}
    return found


@pytest.mark.parametrize(
    ("fault", "selector", "resource", "component"),
    [
        (Latency(fixed=0.15), RETRIEVER, NETWORK_CHAOS, "retriever"),
        (HttpError(statuses=(502,)), LLM, HTTP_CHAOS, "llm"),
        (Hang(), RETRIEVER, POD_CHAOS, "retriever"),
    ],
    ids=["networkchaos", "httpchaos", "podchaos"],
)
def test_chaos_mesh_holds_the_object_until_it_has_recovered_every_pod_and_only_then_is_it_reverted(
    w: RealWorld, tmp_path: Path, fault: Fault, selector: Selector, resource: str, component: str
) -> None:
    scw = w.clusters["scw"]
    mesh = chaos_mesh(scw)
    pods = _pods(scw, component)
    assert pods
    original = _images(scw, pods)
    before = w.snapshot()
    action = Action(0.0, ActionOp.APPLY, 0, fault)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    applied = time.monotonic()
    target.apply(action, touch_of(fault, selector))
    (created,) = _created(scw, resource)
    name = created["metadata"]["name"]
    # bascule created it without a finalizer; Chaos Mesh put its own and injected every pod.
    assert not created["metadata"].get("finalizers")
    held = _until(
        lambda: next((o for o in _created(scw, resource) if _injected(o)), None),
        f"Chaos Mesh's finalizer on {name} and every record Injected",
    )
    assert held["metadata"]["finalizers"] == [FINALIZER]
    injected_after = time.monotonic() - applied
    if resource == NETWORK_CHAOS:
        injected = _calls_for(mesh, "SetTcs", pods)
        assert {c.chaos for c in injected} == set(pods)
        assert all(
            tc["type"] == "NETEM" and tc["netem"]["time"] == "150ms"
            for c in injected
            for tc in _network_rules(c)
        )
        assert all(_network_rules(c) for c in injected)
    elif resource == HTTP_CHAOS:
        injected = _calls_for(mesh, "ApplyHttpChaos", pods)
        assert {c.chaos for c in injected} == set(pods)
        assert all(_http_rules(c) for c in injected)
    else:
        # pod-failure: no daemon call; the controller swapped every container's image itself.
        assert _images(scw, pods) == {PAUSE_IMAGE}

    sent = time.time()
    reverted = target.revert(action)
    returned = time.time()
    fields = target.transition_fields()
    assert scw.admin.get(resource, "rag", name) is None
    deletion = fields["deletion"]
    assert deletion["objects"] == 1
    assert deletion["gone_after"] > deletion["deletes_sent_after"], deletion
    assert any("gone" in line for line in reverted.effects), reverted.effects
    # Chaos Mesh recovered every pod after bascule's DELETE and before the revert returned.
    if resource == NETWORK_CHAOS:
        recovered = _calls_for(mesh, "SetTcs", pods, since=sent)
        assert {c.chaos for c in recovered if not _network_rules(c)} == set(pods)
        assert all(c.time <= returned for c in recovered)
    elif resource == HTTP_CHAOS:
        recovered = _calls_for(mesh, "ApplyHttpChaos", pods, since=sent)
        assert {c.chaos for c in recovered if not _http_rules(c)} == set(pods)
        assert all(c.time <= returned for c in recovered)
    assert _images(scw, pods) == original
    # Every object of the world as it was (the pods too: Chaos Mesh took its annotations back off);
    # what Chaos Mesh keeps of its own (its PodNetworkChaos, PodHttpChaos, events) is not bascule's.
    assert w.snapshot() == before
    assert w.created() == []
    target.close()
    state = read_kube_ledger(tmp_path / "run" / KUBE_LEDGER_FILE)
    assert state.closed and not state.active
    sent_after, gone_after = deletion["deletes_sent_after"], deletion["gone_after"]
    print(
        f"\n{created['kind']} with Chaos Mesh's controller-manager (loaded machine): held and "
        f"injected {injected_after:.2f} s after bascule's create; DELETE sent {sent_after:.2f} s, "
        f"object gone {gone_after:.2f} s into the revert; controller-manager's webhooks answering "
        f"{mesh.started_in:.1f} s after its start, CRDs in {scw.server.chaos_mesh_installed_in:.1f} s"
    )


def test_with_the_daemon_unreachable_chaos_mesh_keeps_its_finalizer_and_the_revert_fails(
    w: RealWorld, tmp_path: Path
) -> None:
    scw = w.clusters["scw"]
    mesh = chaos_mesh(scw)
    pods = _pods(scw, "retriever")
    fault = Latency(fixed=0.15)
    action = Action(0.0, ActionOp.APPLY, 0, fault)
    run_dir = tmp_path / "run"
    target = KubernetesTarget.start(w.mapping, w.apis, run_dir, gone_within=3.0)
    target.apply(action, touch_of(fault, RETRIEVER))
    (created,) = _created(scw, NETWORK_CHAOS)
    name = created["metadata"]["name"]
    _until(lambda: any(_injected(o) for o in _created(scw, NETWORK_CHAOS)), f"{name} injected")

    # The daemon gone (as its pod would be): Chaos Mesh cannot recover the pods, so it keeps its
    # finalizer, and bascule does not claim the fault lifted.
    mesh.stop_daemon()
    try:
        with pytest.raises(RevertError, match=f"still exists .* \\(finalizers: {FINALIZER}\\)"):
            target.revert(action)
        assert read_kube_ledger(run_dir / KUBE_LEDGER_FILE).active
        terminating = scw.admin.get(NETWORK_CHAOS, "rag", name)
        assert terminating is not None and "deletionTimestamp" in terminating["metadata"]
        assert terminating["metadata"]["finalizers"] == [FINALIZER]
    finally:
        restarted = time.time()
        mesh.start_daemon()
    # Back: Chaos Mesh retries, recovers the pods, lifts its finalizer; closing records the revert
    # only then.
    target.gone_within = 120.0
    closed = target.close()
    assert closed
    recovered = _calls_for(mesh, "SetTcs", pods, since=restarted)
    assert {c.chaos for c in recovered if not _network_rules(c)} == set(pods)
    assert scw.admin.get(NETWORK_CHAOS, "rag", name) is None
    state = read_kube_ledger(run_dir / KUBE_LEDGER_FILE)
    assert state.closed and not state.active


def test_recover_after_a_sigkill_waits_until_chaos_mesh_has_let_its_objects_go(
    w: RealWorld, tmp_path: Path
) -> None:
    # The child run of test_kubernetes_recover, SIGKILLed with six faults in force, one of them a
    # latency on scw's llm: a NetworkChaos that Chaos Mesh has injected and holds.
    scw = w.clusters["scw"]
    mesh = chaos_mesh(scw)
    run_dir = tmp_path / "run"
    began = time.time()
    assert "all applied" in _run_child(w, run_dir, None)
    names = [o["metadata"]["name"] for o in _created(scw, NETWORK_CHAOS)]
    assert names
    _until(lambda: all(_injected(o) for o in _created(scw, NETWORK_CHAOS)), f"{names} injected")
    pods = sorted({c.chaos for c in mesh.calls("SetTcs") if c.time >= began and _network_rules(c)})
    assert pods == _pods(scw, "llm")

    mesh.stop_daemon()
    try:
        held = recover_kubernetes(run_dir, w.apis, gone_within=2.0)
        assert not held.clean and f"finalizers: {FINALIZER}" in " ".join(held.failed), held.lines()
        assert read_kube_ledger(run_dir / KUBE_LEDGER_FILE).active
    finally:
        restarted = time.time()
        mesh.start_daemon()
    report = recover_kubernetes(run_dir, w.apis, gone_within=120.0)
    assert report.clean, report.lines()
    assert _created(scw, NETWORK_CHAOS) == []
    recovered = _calls_for(mesh, "SetTcs", pods, since=restarted)
    assert {c.chaos for c in recovered if not _network_rules(c)} == set(pods)
    state = read_kube_ledger(run_dir / KUBE_LEDGER_FILE)
    assert state.recovered and not state.active
