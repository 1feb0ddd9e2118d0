"""The Kubernetes target's faults on StatefulSets and their volume claims, with the real controllers:
a real control plane (etcd, kube-apiserver v1.37.2) with its kube-controller-manager — the
StatefulSet controller, the PV binder and the claim and volume protection controllers among them —
kube-scheduler and kwok's nodes (`control_plane` with ``controllers=True``, the stateful live world
of `kube_real`). The stores are StatefulSets whose pods and claims (``volumeClaimTemplates``) the
StatefulSet controller makes; no provisioner runs, so the claims are bound to static local volumes
made by the test, by the scheduler and the PV binder (class bound at the first consumer). bascule
acts as the ``bascule`` ServiceAccount under ``deploy/rbac.yaml`` (with its optional data-loss
binding: the target file allows data loss): crash and data-loss of a StatefulSet, and ``bascule
recover`` after a run with faults in force is SIGKILLed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_plane import (
    NEEDS_CONTROL_PLANE,
    NEEDS_CONTROLLERS,
    ControlPlane,
    resource_path,
    running_control_plane,
)
from kube_killed import run_killed
from kube_real import (
    PDBS,
    PVS,
    STORAGE_CLASS,
    LiveCluster,
    LiveWorld,
    _ready_pod,
    _static_volume,
    _until,
    live_world,
    prepare_live_clusters,
)
from kube_world import TARGET, _workload, mapping, touch_of
from test_kubernetes_controllers import _closed, _regions, _same, _uids, _unscheduled
from typer.testing import CliRunner

from bascule.cli import app
from bascule.errors import FaultError
from bascule.faults import Crash, DataLoss
from bascule.model.selector import Selector
from bascule.plan.model import Action, ActionOp
from bascule.targets.kubernetes.recover import recover_kubernetes
from bascule.targets.kubernetes.target import KubernetesTarget

pytestmark = [pytest.mark.slow, NEEDS_CONTROL_PLANE, NEEDS_CONTROLLERS]

PVCS = "v1/persistentvolumeclaims"
EAST_STORE = "store-aws-us-east-1"
PROTECTION = "kubernetes.io/pvc-protection"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(
        tmp_path_factory.mktemp("stateful-plane"), ["aws", "scw"], controllers=True
    ) as found:
        yield found


@pytest.fixture(scope="module")
def clusters(plane: ControlPlane) -> dict[str, LiveCluster]:
    return prepare_live_clusters(plane)


@pytest.fixture
def w(tmp_path: Path, clusters: dict[str, LiveCluster]) -> Iterator[LiveWorld]:
    with live_world(tmp_path, clusters, stateful=True) as found:
        yield found


def _claims(cluster: LiveCluster, prefix: str) -> dict[str, dict[str, Any]]:
    """The volume claims of `prefix`'s pods (``data-<pod>``), by name."""
    return {
        c["metadata"]["name"]: c
        for c in cluster.admin.list(PVCS, "rag")
        if c["metadata"]["name"].startswith(f"data-{prefix}-")
    }


def _bound(claim: dict[str, Any]) -> bool:
    return (
        "deletionTimestamp" not in claim["metadata"]
        and (claim.get("status") or {}).get("phase") == "Bound"
        and bool(claim["spec"].get("volumeName"))
    )


def _stateful_running(cluster: LiveCluster, name: str, region: str, count: int) -> bool:
    """`count` pods ``name-0`` … Running and Ready on `region`'s nodes, each with its claim Bound."""
    pods = {p["metadata"]["name"]: p for p in cluster.pods(f"{name}-")}
    claims = _claims(cluster, name)
    regions = _regions(cluster)
    want = {f"{name}-{i}" for i in range(count)}
    return (
        set(pods) == want
        and all(_ready_pod(p) and regions.get(p["spec"].get("nodeName", "")) == region for p in pods.values())
        and set(claims) == {f"data-{p}" for p in want}
        and all(_bound(c) for c in claims.values())
    )


def _binding(cluster: LiveCluster, name: str) -> dict[str, tuple[str, str]]:
    """Each claim of `name`'s pods: (its UID, the volume it is bound to)."""
    return {
        n: (c["metadata"]["uid"], c["spec"].get("volumeName", "")) for n, c in _claims(cluster, name).items()
    }


def test_the_statefulset_controller_makes_the_pods_and_claims_the_pv_binder_binds(w: LiveWorld) -> None:
    aws, scw = w.clusters["aws"], w.clusters["scw"]
    for name, cluster in w.clusters.items():
        print(f"{name}: the stateful live world Running {cluster.populated_in:.1f} s after its first object")
    assert _stateful_running(aws, EAST_STORE, "us-east-1", 2)
    assert _stateful_running(scw, "store-scaleway-fr-par", "fr-par", 1)
    volumes = aws.volumes()
    for claim in _claims(aws, EAST_STORE).values():
        # Made by the StatefulSet controller from the template; the API server's admission puts the
        # protection finalizer on it; the PV binder bound it to one of the static volumes, on the
        # node the scheduler chose for its pod.
        assert claim["spec"]["storageClassName"] == STORAGE_CLASS
        assert PROTECTION in claim["metadata"]["finalizers"]
        volume = volumes[claim["spec"]["volumeName"]]
        assert volume["status"]["phase"] == "Bound"
        assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
        pod = aws.admin.get("v1/pods", "rag", claim["metadata"]["name"].removeprefix("data-"))
        assert pod is not None
        (term,) = volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert term["matchExpressions"][0]["values"] == [pod["spec"]["nodeName"]]
        (owner,) = pod["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("StatefulSet", EAST_STORE)
    assert sum(v["status"]["phase"] == "Available" for v in volumes.values()) == len(volumes) - 2


def test_crash_of_a_statefulset_recreates_its_pods_on_the_same_claims(w: LiveWorld, tmp_path: Path) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    volumes_before = aws.volumes()
    old = _uids(aws.pods(f"{EAST_STORE}-"))
    binding = _binding(aws, EAST_STORE)
    crash = Crash()
    action = Action(0.0, ActionOp.APPLY, 0, crash)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    began = time.monotonic()
    applied = target.apply(action, touch_of(crash, Selector(component="store", region="aws/us-east-1")))
    deleted = sorted(line for line in applied.effects if line.startswith("delete Pod"))
    assert len(deleted) == 2, applied.effects
    assert not any("PersistentVolumeClaim" in line for line in applied.effects)

    def replaced() -> bool:
        pods = aws.pods(f"{EAST_STORE}-")
        return not (_uids(pods) & old) and _stateful_running(aws, EAST_STORE, "us-east-1", 2)

    _until(replaced, "the store's pods recreated by the StatefulSet controller, Running", 60)
    print(f"crash of a StatefulSet: both pods Running again {time.monotonic() - began:.1f} s after the fault")
    # The same names, and the same claims bound to the same volumes: the data survives a crash.
    assert _binding(aws, EAST_STORE) == binding
    target.revert(action)
    target.close()
    _closed(tmp_path / "run")
    w.settle()
    _same(before, w.live_snapshot())
    assert _comparable_volumes(aws.volumes()) == _comparable_volumes(volumes_before)


def _comparable_volumes(volumes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for name, volume in volumes.items():
        meta = {k: v for k, v in volume["metadata"].items() if k not in ("resourceVersion", "managedFields")}
        out[name] = {"metadata": meta, "spec": volume["spec"], "phase": volume["status"]["phase"]}
    return out


class Watch:
    """The events of one collection of the API server from a resourceVersion on, read in a thread
    of its own (a watch of at most `seconds`), each as (type, name, uid, resourceVersion, object)."""

    def __init__(self, cluster: LiveCluster, resource: str, since: str, seconds: int = 90) -> None:
        self.events: list[tuple[str, str, str, int, dict[str, Any]]] = []
        self.seen: dict[int, float] = {}
        """When each event (by resourceVersion) was read: ``time.monotonic()``."""
        self._admin = type(cluster.admin)(cluster.url, cluster.server.pki)
        path = resource_path(resource, "rag") + f"?watch=1&resourceVersion={since}&timeoutSeconds={seconds}"
        self._response = self._admin.client.send(self._admin.client.build_request("GET", path), stream=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response.iter_lines():
                if line:
                    event = json.loads(line)
                    obj = event["object"]
                    meta = obj["metadata"]
                    self.events.append(
                        (event["type"], meta["name"], meta["uid"], int(meta["resourceVersion"]), obj)
                    )
                    self.seen[int(meta["resourceVersion"])] = time.monotonic()
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by `stop`

    def stop(self) -> None:
        self._response.close()
        self._thread.join(10)
        self._admin.close()


def _deleted_at(watch: Watch, name: str, uid: str) -> int:
    """The resourceVersion of the DELETED event of `name` with `uid` (etcd's revision: one order for
    every collection of the cluster)."""
    (found,) = [rv for kind, n, u, rv, _ in watch.events if (kind, n, u) == ("DELETED", name, uid)]
    return found


def test_data_loss_deletes_the_claims_once_their_pods_are_gone_and_the_controller_makes_new_ones(
    w: LiveWorld, tmp_path: Path
) -> None:
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    volumes_before = aws.volumes()
    old_pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in aws.pods(f"{EAST_STORE}-")}
    binding = _binding(aws, EAST_STORE)
    assert len(binding) == 2
    since = aws.admin.request("GET", resource_path(PVCS, "rag"))["metadata"]["resourceVersion"]
    claims, pods = Watch(aws, PVCS, since), Watch(aws, "v1/pods", since)
    fault = DataLoss()
    action = Action(0.0, ActionOp.APPLY, 0, fault)
    target = KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run")
    try:
        began = time.monotonic()
        applied = target.apply(action, touch_of(fault, Selector(component="store", region="aws/us-east-1")))
        returned = time.monotonic()
        kinds = [line.split()[1] for line in applied.effects]
        assert kinds == ["PersistentVolumeClaim"] * 2 + ["Pod"] * 2, applied.effects

        def replaced() -> bool:
            now = _binding(aws, EAST_STORE)
            return (
                set(now) == set(binding)
                and all(now[n][0] != binding[n][0] for n in now)
                and _stateful_running(aws, EAST_STORE, "us-east-1", 2)
            )

        _until(replaced, "new claims bound and the store's pods Running on them", 90)
        running = time.monotonic() - began
    finally:
        claims.stop()
        pods.stop()
    gone = {n: _deleted_at(claims, n, uid) for n, (uid, _) in binding.items()}
    for name, (uid, _) in binding.items():
        pod = name.removeprefix("data-")
        # The DELETE marked the claim; its protection finalizer held it while its pod ran, and the
        # controller lifted it only once the pod was gone (kwok confirming its deletion).
        marked = [
            rv
            for kind, n, u, rv, obj in claims.events
            if (kind, n, u) == ("MODIFIED", name, uid)
            and "deletionTimestamp" in obj["metadata"]
            and PROTECTION in obj["metadata"].get("finalizers", [])
        ]
        assert marked, f"{name} was never seen held by its finalizer"
        assert min(marked) < _deleted_at(pods, pod, old_pods[pod]) < gone[name], (name, claims.events)
    gone_after = sorted(claims.seen[rv] - began for rv in gone.values())
    print(
        f"data-loss: applied in {applied.took:.2f} s (returned {returned - began:.2f} s after the call); "
        f"the claims gone {gone_after[0]:.2f} and {gone_after[-1]:.2f} s after the call; both pods "
        f"Running on new claims {running:.1f} s after it"
    )
    now = _binding(aws, EAST_STORE)
    volumes = aws.volumes()
    for name, (uid, volume) in binding.items():
        # A new claim of the same name, bound to another static volume; the old volume is Released
        # (reclaim policy Retain: its data is kept, and it is never bound again).
        assert now[name][1] != volume
        assert volumes[volume]["status"]["phase"] == "Released"
        assert volumes[volume]["spec"]["claimRef"]["uid"] == uid
        assert volumes[now[name][1]]["status"]["phase"] == "Bound"

    reverted = target.revert(action)
    assert not reverted.effects, reverted.effects  # irreversible: nothing to restore
    target.close()
    _closed(tmp_path / "run")
    w.settle()
    _differs_only_by_the_new_claims(before, w.live_snapshot(), set(binding))
    changed = {
        n for n, v in _comparable_volumes(volumes).items() if v != _comparable_volumes(volumes_before)[n]
    }
    assert changed == {v for _, v in binding.values()} | {v for _, v in now.values()}


NEW_CLAIM_FIELDS = {
    ("metadata", "uid"),
    ("metadata", "creationTimestamp"),
    ("metadata", "annotations", "volume.kubernetes.io/selected-node"),
    ("spec", "volumeName"),
}
"""What a claim the StatefulSet controller made again after a data-loss has of its own: its identity,
the node the scheduler chose for its pod, and the volume the binder bound it to."""


def _differs_only_by_the_new_claims(
    before: dict[str, dict[Any, Any]], after: dict[str, dict[Any, Any]], claims: set[str]
) -> None:
    for cluster, objects in before.items():
        assert set(objects) == set(after[cluster])
        for key, obj in objects.items():
            if key[0] == PVCS and key[2] in claims:
                fields = _differing(obj, after[cluster][key])
                assert fields <= NEW_CLAIM_FIELDS and ("metadata", "uid") in fields, (key, fields)
            else:
                assert obj == after[cluster][key], (key, obj, after[cluster][key])


def _differing(a: Any, b: Any, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return {f for k in set(a) | set(b) for f in _differing(a.get(k), b.get(k), (*path, k))}
    return set() if a == b else {path}


FAULTS = """
    (ControlPlane(), Selector(region="aws/us-east-1")),
    (DataLoss(), Selector(component="store", region="aws/us-east-1")),
    (Refuse(), Selector(component="store", region="scaleway/fr-par")),
    (Refuse(), Selector(component="gateway", region="aws/eu-west-3")),
    (Crash(), Selector(component="retriever", region="aws/us-east-1")),
"""

"""A run with five faults in force on the stateful live world — a frozen control plane in us-east-1
(its nodes cordoned, the gateway's HPA pinned), a data-loss of its store, the store of fr-par and the
gateway of eu-west-3 scaled to zero (``refuse``: a StatefulSet's and a Deployment's scale
subresource) and its retriever crashed — SIGKILLed once all are applied, or after `kill_after`
changes (the fifth: the data-loss's claims deleted, its pods not)."""


def _run_child(w: LiveWorld, run_dir: Path, kill_after: int | None) -> str:
    return run_killed(
        w.kubeconfig,
        run_dir,
        FAULTS,
        imports="ControlPlane, Crash, DataLoss, Refuse",
        kill_after=kill_after,
        timeout=120,
    )


def _claims_held(cluster: LiveCluster, name: str) -> list[str]:
    return [n for n, c in _claims(cluster, name).items() if "deletionTimestamp" in c["metadata"]]


@pytest.mark.parametrize("kill_after", [None, 5])
def test_recover_after_a_sigkill_on_the_controllers_world(
    w: LiveWorld, tmp_path: Path, kill_after: int | None
) -> None:
    aws, scw = w.clusters["aws"], w.clusters["scw"]
    before = w.live_snapshot()
    binding = _binding(aws, EAST_STORE)
    fr_binding = _binding(scw, "store-scaleway-fr-par")
    run_dir = tmp_path / "run"
    began = time.monotonic()
    out = _run_child(w, run_dir, kill_after)
    assert ("all applied" if kill_after is None else "killed mid-apply") in out
    killed = time.monotonic()
    if kill_after is None:
        # In force: the replacements of the store's and the retriever's pods wait, unscheduled,
        # for us-east-1's cordoned nodes; the store of fr-par and the gateway of eu-west-3 have no
        # pod (the HPA controller does not scale a workload at zero).
        def in_force() -> bool:
            waiting = aws.pods(f"{EAST_STORE}-") + aws.pods("retriever-aws-us-east-1-")
            return (
                len(waiting) == 2
                and all(_unscheduled(p) for p in waiting)
                and not scw.pods("store-scaleway-fr-par-")
                and not aws.pods("gateway-aws-eu-west-3-")
            )

        _until(in_force, "the faults in force: replacements unscheduled, two workloads at zero", 60)
        time.sleep(3)
        assert in_force(), "a fault stopped holding while its run was dead"
    else:
        # Killed between the data-loss's claims and its pods: the claims are marked deleted, held
        # by their finalizer while the pods that use them run.
        assert sorted(_claims_held(aws, EAST_STORE)) == sorted(binding)
    recovering = time.monotonic()
    result = CliRunner().invoke(app, ["recover", str(run_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    recovered = time.monotonic()
    print(result.output)
    assert "PersistentVolumeClaim" in result.output
    w.settle()

    def renewed() -> bool:
        now = _binding(aws, EAST_STORE)
        return set(now) == set(binding) and all(now[n][0] != binding[n][0] and now[n][1] for n in now)

    _until(renewed, "the data-lost claims made again and bound", 60)
    assert _stateful_running(aws, EAST_STORE, "us-east-1", 2)
    settled = time.monotonic()
    print(
        f"recover after SIGKILL ({kill_after=}): the child ran {killed - began:.1f} s, recover "
        f"{recovered - recovering:.1f} s, every pod Running again {settled - recovered:.1f} s later"
    )
    # Everything as it was, but the claims the data-loss deleted: made again by the StatefulSet
    # controller (new UID, another volume). fr-par's store came back on its own claim.
    _differs_only_by_the_new_claims(before, w.live_snapshot(), set(binding))
    assert _binding(scw, "store-scaleway-fr-par") == fr_binding
    again = recover_kubernetes(run_dir, w.apis)
    assert again.previously == "recovered" and again.restored == ()


@pytest.mark.parametrize(("min_available", "allowed"), [(2, 0), (1, 1)])
def test_a_data_loss_whose_eviction_a_budget_refuses_leaves_no_claim_to_a_later_restart(
    w: LiveWorld, tmp_path: Path, min_available: int, allowed: int
) -> None:
    # With pod_disruption: evict, data-loss deletes the claims, then evicts the pods, and the budget
    # is the disruption controller's. Allowing none, each eviction is refused already as a dry run,
    # before any claim is deleted: nothing changes. Allowing one of two, both dry runs pass, the
    # first eviction too, and the second is refused for real — after the claims were deleted, which
    # nothing undoes: the undo deletes the pod still holding its claim (left, the claim would go
    # with its data at that pod's next restart), and says so.
    aws = w.clusters["aws"]
    before = w.live_snapshot()
    binding = _binding(aws, EAST_STORE)
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "store-budget", "namespace": "rag"},
        "spec": {
            "minAvailable": min_available,
            "selector": {"matchLabels": {"app": "store", "bascule.io/region": "aws-us-east-1"}},
        },
    }
    aws.admin.create(PDBS, budget)
    path = resource_path(PDBS, "rag", "store-budget")
    try:
        _until(
            lambda: (
                ((aws.admin.get(PDBS, "rag", "store-budget") or {}).get("status") or {}).get(
                    "disruptionsAllowed"
                )
                == allowed
            ),
            f"the disruption controller's status of the store's budget: {allowed} allowed",
            30,
        )
        fault = DataLoss()
        evicting = KubernetesTarget.start(
            mapping(TARGET + "pod_disruption: evict\n"), w.apis, tmp_path / "run"
        )
        with pytest.raises(FaultError, match="disruption budget") as failed:
            evicting.apply(
                Action(0.0, ActionOp.APPLY, 0, fault),
                touch_of(fault, Selector(component="store", region="aws/us-east-1")),
            )
        evicting.close()
        _closed(tmp_path / "run")
        if allowed == 0:
            assert "no claim was deleted" in str(failed.value), failed.value
            time.sleep(2)
            assert _binding(aws, EAST_STORE) == binding and not _claims_held(aws, EAST_STORE)
        else:
            assert str(failed.value).count("deleted them too") == 1, failed.value
            assert f"{EAST_STORE}-1: deleted them too" in str(failed.value), failed.value

            def renewed() -> bool:
                now = _binding(aws, EAST_STORE)
                return set(now) == set(binding) and all(now[n][0] != binding[n][0] and now[n][1] for n in now)

            _until(renewed, "the deleted claims gone with their pods, made again and bound", 60)
    finally:
        aws.admin.request("DELETE", path, ok=(404,))
    w.settle()
    if allowed == 0:
        _same(before, w.live_snapshot())
    else:
        _differs_only_by_the_new_claims(before, w.live_snapshot(), set(binding))


def test_data_loss_refuses_a_claim_that_nothing_would_make_again(w: LiveWorld, tmp_path: Path) -> None:
    # A store run as a Deployment with one claim named in its pod template (as charts make a
    # single-replica store), in eu-west-3. Deleted, nothing makes that claim again: the ReplicaSet's
    # replacement pod waits unscheduled (an unscheduled pod does not hold a claim, so the claim
    # goes), then stays Pending for good. bascule refuses before any change.
    aws = w.clusters["aws"]
    directory = aws.server.process.log.parent / "volumes" / "euw3-a-deployment"
    directory.mkdir(parents=True, exist_ok=True)
    aws.admin.create(PVS, _static_volume("local-euw3-a-deployment", "euw3-a", directory))
    claim = "data-store-aws-eu-west-3"
    aws.admin.create(
        PVCS,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": "rag"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    ((_, statefulset), *_) = _workload("store", "aws/eu-west-3", 1)
    deployment = {k: v for k, v in statefulset.items() if k != "status"}
    deployment.update(apiVersion="apps/v1", kind="Deployment")
    template = deployment["spec"]["template"]["spec"]
    template["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    template["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    aws.admin.create("apps/v1/deployments", deployment)
    w.settle()
    assert _bound(aws.admin.get(PVCS, "rag", claim) or {"metadata": {}})
    before = w.live_snapshot()
    fault = DataLoss()
    with KubernetesTarget.start(w.mapping, w.apis, tmp_path / "run") as target:
        with pytest.raises(FaultError, match=r"ReplicaSet store-aws-eu-west-3-.*nothing would make again"):
            target.apply(
                Action(0.0, ActionOp.APPLY, 0, fault),
                touch_of(fault, Selector(component="store", region="aws/eu-west-3")),
            )
        assert target.active() == []
    time.sleep(2)
    _same(before, w.live_snapshot())
