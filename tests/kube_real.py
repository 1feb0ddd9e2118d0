"""The Kubernetes target's test world (``kube_world``) on real API servers (``control_plane``):
the same design, target file, nodes, workloads, pods, volumes, HPAs and CoreDNS ConfigMap, created
through a real kube-apiserver — its validation, defaulting, admission and RBAC — instead of kmock.

bascule talks to each cluster as the ``bascule`` ServiceAccount, with a token from the TokenRequest
API and exactly the roles of ``deploy/rbac.yaml`` (its ``bascule-workloads`` binding copied to the
``identity`` namespace, as the manifest says), so the API server itself refuses any request the
manifest does not grant.

With no kubelet and no controller running, a deletion the API server accepts but leaves for them
to finish (a pod bound to a node: graceful deletion; a claim: its protection finalizer) is an
object with ``deletionTimestamp``: `RealCluster.objects` leaves those out (they are deleted as far
as the API goes) and `RealCluster.terminating` lists them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from control_plane import KWOK_NODE, ApiServer, ControlPlane, resource_path
from kube_chaos_mesh import register_daemon
from kube_emulator import CHAOS, KINDS, SERVER_MANAGED, comparable
from kube_world import NODES, PLACES, RBAC, _workload, mapping, populate

from bascule.targets.kubernetes.cluster import KubeApi, connect
from bascule.targets.kubernetes.mapping import KubeMapping
from bascule.targets.kubernetes.resources import RUN_LABEL

PDBS = "policy/v1/poddisruptionbudgets"

NAMESPACES = ("rag", "identity")
"""Where the world's workloads live; kube-system holds only the coredns ConfigMap of it."""

Key = tuple[str, str | None, str]

POD_CHAOS = ("chaos-mesh.org/v1alpha1/podnetworkchaos", "chaos-mesh.org/v1alpha1/podhttpchaos")
"""What Chaos Mesh's controller-manager makes per pod a NetworkChaos or HTTPChaos selects (named
after the pod; kept, emptied, once the fault is lifted)."""


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """What a kubelet reports of a running pod's containers: their IDs made from the pod's
    namespace, name and container (``containerd://`` and 64 hex digits)."""
    meta = pod["metadata"]
    return [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            "containerID": "containerd://"
            + hashlib.sha256(f"{meta['namespace']}/{meta['name']}/{c['name']}".encode()).hexdigest(),
        }
        for c in pod["spec"]["containers"]
    ]


class RealCluster:
    """One real API server holding the world; the interface of ``kube_emulator.Cluster`` that the
    world's checks use (`seed`, `objects`, `get`)."""

    def __init__(self, server: ApiServer, *, chaos_mesh: bool) -> None:
        self.server = server
        self.admin = server.admin
        self.name = server.name
        self.url = server.url
        self.chaos_mesh = chaos_mesh
        self.chaos_mesh_installed_in = 0.0
        """Seconds to install Chaos Mesh's CRDs and webhooks until they serve."""

    @property
    def resources(self) -> list[str]:
        return list(KINDS) + (list(CHAOS) if self.chaos_mesh else [])

    def seed(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``, then set its ``status`` through the status subresource (a create
        ignores it), as the cluster's controllers and kubelets would have. Where Chaos Mesh's
        controller-manager runs, a running pod's status also gets what its kubelet would report of
        its containers (`_container_statuses`): the controller sends their IDs to the daemon."""
        body = copy.deepcopy(obj)
        kind, namespaced = KINDS.get(resource) or CHAOS[resource]
        body.setdefault("kind", kind)
        body.setdefault("apiVersion", resource.rsplit("/", 1)[0])
        status = body.pop("status", None)
        if resource == "v1/pods" and status is not None and self.server.chaos_mesh is not None:
            status = {**status, "containerStatuses": _container_statuses(body)}
        created = self.admin.create(resource, body)
        if status is not None:
            namespace = body["metadata"].get("namespace") if namespaced else None
            path = resource_path(resource, namespace, body["metadata"]["name"]) + "/status"
            created = self.admin.request("PATCH", path, {"status": status}, merge=True)
        return created

    def _all(self) -> Iterator[tuple[Key, dict[str, Any]]]:
        for resource in self.resources:
            _, namespaced = KINDS.get(resource) or CHAOS[resource]
            for obj in self.admin.list(resource):
                meta = obj["metadata"]
                namespace = meta.get("namespace") if namespaced else None
                coredns = (resource, namespace, meta["name"]) == ("v1/configmaps", "kube-system", "coredns")
                if namespace is not None and namespace not in NAMESPACES and not coredns:
                    continue
                yield (resource, namespace, meta["name"]), obj

    def objects(self) -> dict[Key, dict[str, Any]]:
        """Every object of the world the server holds and has not begun to delete."""
        return {key: obj for key, obj in self._all() if "deletionTimestamp" not in obj["metadata"]}

    def terminating(self) -> dict[Key, dict[str, Any]]:
        """Objects whose deletion the server accepted and left to a kubelet or controller."""
        return {key: obj for key, obj in self._all() if "deletionTimestamp" in obj["metadata"]}

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects().get((resource, namespace, name))

    def reset(self) -> None:
        """Remove every object of the world, finalizers and grace periods aside (deleted first, so
        that a controller cannot put its finalizer back in between) — and, where Chaos Mesh's
        controller-manager runs, the PodNetworkChaos and PodHttpChaos it made for their pods."""
        extra = [(r, n) for r in POD_CHAOS for n in NAMESPACES] if self.server.chaos_mesh is not None else []
        found = list(self._all()) + [
            ((r, n, o["metadata"]["name"]), o) for r, n in extra for o in self.admin.list(r, n)
        ]
        for (resource, namespace, name), obj in found:
            path = resource_path(resource, namespace, name)
            self.admin.request("DELETE", path + "?gracePeriodSeconds=0", ok=(404,))
            if obj["metadata"].get("finalizers") or resource in POD_CHAOS:
                self.admin.request("PATCH", path, {"metadata": {"finalizers": None}}, merge=True, ok=(404,))
        left = list(self._all()) + [o for r, n in extra for o in self.admin.list(r, n)]
        assert not left, f"{self.name}: not removed: {[k for k, _ in left]}"

    def prepare(self) -> None:
        """Namespaces, their default ServiceAccounts (pods need them to be admitted), and
        ``deploy/rbac.yaml`` with its workloads binding copied to every world namespace."""
        for namespace in NAMESPACES:
            self.admin.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            self.admin.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": namespace},
                }
            )
        for document in yaml.safe_load_all(RBAC.read_text(encoding="utf-8")):
            if not document:
                continue
            self.admin.apply(document)
            if document["kind"] == "RoleBinding" and document["metadata"]["namespace"] == "rag":
                for namespace in NAMESPACES[1:]:
                    copied = copy.deepcopy(document)
                    copied["metadata"]["namespace"] = namespace
                    self.admin.apply(copied)


@dataclass
class RealWorld:
    """The world on real API servers, a kubeconfig for bascule's ServiceAccount, and clients."""

    clusters: dict[str, RealCluster]
    kubeconfig: Path
    mapping: KubeMapping
    apis: dict[str, KubeApi]

    def snapshot(self) -> dict[str, dict[Any, Any]]:
        return {name: comparable(cluster.objects()) for name, cluster in self.clusters.items()}

    def created(self) -> list[tuple[str, Any]]:
        return [
            (name, key)
            for name, cluster in self.clusters.items()
            for key, obj in cluster.objects().items()
            if RUN_LABEL in ((obj.get("metadata") or {}).get("labels") or {})
        ]


def write_token_kubeconfig(path: Path, servers: dict[str, ApiServer], tokens: dict[str, str]) -> Path:
    """A kubeconfig with one context per cluster, named after it, authenticated by `tokens`."""
    entries = [server.kubeconfig_entry({"token": tokens[name]}) for name, server in servers.items()]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster for cluster, _, _ in entries],
        "users": [user for _, user, _ in entries],
        "contexts": [context for _, _, context in entries],
        "current-context": next(iter(servers)),
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def prepare_clusters(plane: ControlPlane, *, chaos_mesh: bool = True) -> dict[str, RealCluster]:
    """The API servers of `plane` made ready for the world (once per control plane)."""
    clusters = {}
    for name, server in plane.servers.items():
        cluster = RealCluster(server, chaos_mesh=chaos_mesh)
        if chaos_mesh:
            cluster.chaos_mesh_installed_in = plane.install_chaos_mesh(server)
        if server.chaos_mesh is not None:
            cluster.chaos_mesh_installed_in = server.chaos_mesh_installed_in
            register_daemon(server.admin, list(NODES[name]))
        cluster.prepare()
        clusters[name] = cluster
    return clusters


@contextmanager
def real_world(tmp: Path, clusters: dict[str, RealCluster]) -> Iterator[RealWorld]:
    """The world seeded afresh in `clusters`; bascule connected as its ServiceAccount."""
    for cluster in clusters.values():
        cluster.reset()
    populate(clusters)  # type: ignore[arg-type]
    tokens = {name: c.admin.token("bascule", "bascule") for name, c in clusters.items()}
    servers = {name: c.server for name, c in clusters.items()}
    kubeconfig = write_token_kubeconfig(tmp / "kubeconfig", servers, tokens)
    bound = mapping()
    apis = connect(bound.target, kubeconfig)
    try:
        yield RealWorld(clusters, kubeconfig, bound, apis)
    finally:
        for api in apis.values():
            api.close()


# -- the live world: real controllers, scheduler and kwok nodes --

LIVE_WORKLOADS = (
    ("gateway", "aws/us-east-1", 2, True),
    ("gateway", "aws/eu-west-3", 1, True),
    ("gateway", "scaleway/fr-par", 2, True),
    ("retriever", "aws/us-east-1", 1, True),
    ("llm", "aws/us-east-1", 1, False),
)
"""The Deployments of the live world (component, region, replicas, pinned), from ``kube_world``'s
objects: their pods are made by the ReplicaSet controller, bound by the scheduler to kwok nodes and
made Running by kwok. A pinned workload's pods may run only on its region's nodes (the template's
``nodeSelector``); the others only prefer them (a preferred node affinity), as a workload whose
chart sets no placement may land anywhere. Gateways keep their HPAs (1 to 6 replicas). The stores
are `LIVE_STORES`, in the stateful live world only."""

LIVE_STORES = (("aws/us-east-1", 2), ("scaleway/fr-par", 1))
"""The StatefulSets of the stateful live world (``live_world(…, stateful=True)``): the store of each
region, with the replicas given, one volume claim per pod from its ``volumeClaimTemplates``. The
StatefulSet controller makes the pods and their claims; no provisioner runs, so the claims are bound
by the PV binder (and the scheduler, the class binding at the first consumer) to the static volumes
of `STATIC_VOLUMES`."""

STORAGE_CLASS = "bascule-static"
"""The claims' class: ``kubernetes.io/no-provisioner`` (nothing makes a volume on demand), bound at
the first consumer, as a cluster of static local volumes is set up."""

STATIC_VOLUMES = 3
"""Local PersistentVolumes made per node of a region holding a store, each pinned to its node (node
affinity on ``kubernetes.io/hostname``), its path a directory of the test's own that nothing mounts
(no kubelet runs), reclaim policy ``Retain``: enough for every pod's claim and for the new claims
of a data-loss (a released volume keeps its data and is never bound again)."""

VOLUME_LABEL = {"bascule.io/test-volume": "static"}
"""What the test's volumes carry, to find them again."""

PVS = "v1/persistentvolumes"
STORAGE_CLASSES = "storage.k8s.io/v1/storageclasses"

CONTROLLER_TAINTS = "node.kubernetes.io/"
"""Node taints the node-lifecycle controller owns (``not-ready`` until kwok reports the node Ready,
``unschedulable`` while it is cordoned): left out of the live snapshot."""


BINDING_LABELS = ("topology.kubernetes.io/region", "topology.kubernetes.io/zone")
"""The labels the API server copies from a node onto each pod bound to it."""


def _live_nodes() -> Iterator[tuple[str, dict[str, Any]]]:
    for cluster, nodes in NODES.items():
        for node, region in nodes.items():
            labels = {"topology.kubernetes.io/region": region, "kubernetes.io/hostname": node, "type": "kwok"}
            yield (
                cluster,
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": node, "labels": labels, "annotations": dict(KWOK_NODE)},
                },
            )


def _prefer_region(deployment: dict[str, Any]) -> None:
    """The pod template's ``nodeSelector`` made a preference: the region's nodes first, any other
    node when none of them can take the pod."""
    template = deployment["spec"]["template"]["spec"]
    ((key, value),) = template.pop("nodeSelector").items()
    term = {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
    template["affinity"] = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": term}]
        }
    }


def _ready_pod(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (
        "deletionTimestamp" not in pod["metadata"]
        and status.get("phase") == "Running"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
    )


def _live_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod as its ReplicaSet makes it, without what differs between two of its pods: name, UID,
    creation time, the generated name of its token volume, and where it was bound — its node and the
    node's topology labels, which the API server copies onto a pod when it binds it (its
    PodTopologyLabels admission, on by default since Kubernetes 1.35)."""
    copied = copy.deepcopy(pod)
    meta = copied["metadata"]
    for name in ("name", "uid", "creationTimestamp", *SERVER_MANAGED):
        meta.pop(name, None)
    for label in BINDING_LABELS:
        (meta.get("labels") or {}).pop(label, None)
    copied["spec"].pop("nodeName", None)
    copied.pop("status", None)
    return dict(json.loads(re.sub(r"kube-api-access-[a-z0-9]{5}", "kube-api-access", json.dumps(copied))))


class LiveCluster(RealCluster):
    """A real API server with its controllers, scheduler and kwok: the world's workloads as
    Deployments whose pods the controllers make and kwok runs."""

    populated_in = 0.0
    """Seconds `populate` took: from creating the nodes to every pod Running."""

    def reset(self) -> None:
        """Remove every Deployment, HPA, budget and policy of the world namespaces (the garbage
        collector removes their ReplicaSets and pods, kwok confirms the pods' deletion) and the
        nodes; wait until no pod is left."""
        for resource in (*KINDS, PDBS):
            if resource in ("v1/pods", "v1/nodes", "v1/configmaps"):
                continue
            for namespace in NAMESPACES:
                for obj in self.admin.list(resource, namespace):
                    path = resource_path(resource, namespace, obj["metadata"]["name"])
                    self.admin.request("DELETE", path, ok=(404,))
        _until(
            lambda: not any(self.admin.list("v1/pods", n) for n in NAMESPACES), f"{self.name}: pods gone", 90
        )
        # Claims are held by their protection finalizer until their pods are gone, volumes by theirs
        # until no claim is bound to them.
        _until(
            lambda: not any(self.admin.list("v1/persistentvolumeclaims", n) for n in NAMESPACES),
            f"{self.name}: volume claims gone",
            60,
        )
        for volume in self.admin.list(PVS):
            self.admin.request("DELETE", resource_path(PVS, None, volume["metadata"]["name"]), ok=(404,))
        self.admin.request("DELETE", resource_path(STORAGE_CLASSES, None, STORAGE_CLASS), ok=(404,))
        _until(lambda: not self.admin.list(PVS), f"{self.name}: volumes gone", 60)
        for node in self.admin.list("v1/nodes"):
            self.admin.request("DELETE", resource_path("v1/nodes", None, node["metadata"]["name"]), ok=(404,))
        _until(lambda: not self.admin.list("v1/nodes"), f"{self.name}: nodes gone", 30)

    def populate(self, *, stateful: bool = False) -> None:
        """kwok nodes (until Ready and schedulable), then the Deployments and HPAs of
        `LIVE_WORKLOADS` placed in this cluster — with `stateful`, the StatefulSets of `LIVE_STORES`
        too, on their class and static volumes — then until every pod runs."""
        began = time.monotonic()
        nodes = [node for cluster, node in _live_nodes() if cluster == self.name]
        for node in nodes:
            self.admin.create("v1/nodes", node)

        def nodes_ready() -> bool:
            found = self.admin.list("v1/nodes")
            return len(found) == len(nodes) and all(
                any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
                and not (n["spec"].get("taints"))
                for n in found
            )

        _until(nodes_ready, f"{self.name}: kwok nodes Ready and untainted", 60)
        for namespace in NAMESPACES:
            _until(
                lambda ns=namespace: self.admin.get("v1/serviceaccounts", ns, "default") is not None,
                f"{self.name}: the default ServiceAccount of {namespace}",
                30,
            )
        for component, region, replicas, pinned in LIVE_WORKLOADS:
            if PLACES[region][0] != self.name:
                continue
            for resource, obj in _workload(component, region, replicas):
                if resource in ("apps/v1/deployments", "autoscaling/v2/horizontalpodautoscalers"):
                    body = {k: v for k, v in obj.items() if k != "status"}
                    if not pinned and resource == "apps/v1/deployments":
                        _prefer_region(body)
                    self.admin.create(resource, body)
        if stateful:
            self._make_stores()
        self.settle()
        self.populated_in = time.monotonic() - began

    def _make_stores(self) -> None:
        """The class, the static volumes of each node of a store's region, and the StatefulSets
        of `LIVE_STORES` placed in this cluster (claims from their ``volumeClaimTemplates``)."""
        stores = [(region, n) for region, n in LIVE_STORES if PLACES[region][0] == self.name]
        if not stores:
            return
        self.admin.create(
            STORAGE_CLASSES,
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS},
                "provisioner": "kubernetes.io/no-provisioner",
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain",
            },
        )
        volumes = self.server.process.log.parent / "volumes"
        for region, _ in stores:
            for node in PLACES[region][1]:
                for i in range(STATIC_VOLUMES):
                    path = volumes / f"{node}-{i}"
                    path.mkdir(parents=True, exist_ok=True)
                    self.admin.create(PVS, _static_volume(f"local-{node}-{i}", node, path))
        for region, replicas in stores:
            ((resource, body), *_) = _workload("store", region, replicas)
            assert resource == "apps/v1/statefulsets"
            self.admin.create(resource, _with_claims({k: v for k, v in body.items() if k != "status"}))

    def volumes(self) -> dict[str, dict[str, Any]]:
        """The test's static volumes by name, as the API server holds them."""
        return {
            v["metadata"]["name"]: v
            for v in self.admin.list(PVS)
            if VOLUME_LABEL.items() <= (v["metadata"].get("labels") or {}).items()
        }

    def settle(self, timeout: float = 90) -> None:
        """Until every Deployment's and StatefulSet's pods are Running and Ready, as many as it
        asks, and no pod is left pending or terminating."""

        def settled() -> bool:
            for deployment in [
                w
                for resource in ("apps/v1/deployments", "apps/v1/statefulsets")
                for namespace in NAMESPACES
                for w in self.admin.list(resource, namespace)
            ]:
                status = deployment.get("status") or {}
                want = deployment["spec"]["replicas"]
                if status.get("observedGeneration") != deployment["metadata"]["generation"]:
                    return False
                if (status.get("readyReplicas") or 0, status.get("replicas") or 0) != (want, want):
                    return False
            pods = [p for n in NAMESPACES for p in self.admin.list("v1/pods", n)]
            return all(_ready_pod(p) for p in pods)

        _until(settled, f"{self.name}: every Deployment's pods Running", timeout)

    def pods(self, prefix: str, namespace: str = "rag") -> list[dict[str, Any]]:
        """The pods whose name begins with `prefix` (a Deployment's name and a dash)."""
        return [p for p in self.admin.list("v1/pods", namespace) if p["metadata"]["name"].startswith(prefix)]

    def live_objects(self) -> dict[Any, Any]:
        """`objects` without server-managed metadata and without what the controllers and kwok
        legitimately own: every ``status``, the nodes' ``node.kubernetes.io/*`` taints, and the
        pods' identities — the pods of each owner compared as a sorted list of `_live_pod`."""
        out: dict[Any, Any] = {}
        pods: dict[Any, list[str]] = {}
        for (resource, namespace, name), obj in self.objects().items():
            if resource == "v1/pods":
                owner = next(iter(obj["metadata"].get("ownerReferences") or [{}])).get("name")
                pods.setdefault((resource, namespace, owner), []).append(
                    json.dumps(_live_pod(obj), sort_keys=True)
                )
                continue
            copied = copy.deepcopy(obj)
            copied.pop("status", None)
            for field in SERVER_MANAGED:
                copied["metadata"].pop(field, None)
            if resource == "v1/nodes":
                taints = [
                    t
                    for t in copied["spec"].get("taints") or []
                    if not t["key"].startswith(CONTROLLER_TAINTS)
                ]
                copied["spec"].pop("taints", None)
                if taints:
                    copied["spec"]["taints"] = taints
            out[(resource, namespace, name)] = copied
        out.update({key: sorted(found) for key, found in pods.items()})
        return out


def _static_volume(name: str, node: str, path: Path) -> dict[str, Any]:
    """A local PersistentVolume of `STORAGE_CLASS` on `node`, as an administrator makes one for a
    cluster with no provisioner."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "labels": dict(VOLUME_LABEL)},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


def _with_claims(statefulset: dict[str, Any]) -> dict[str, Any]:
    """`statefulset` with one claim per pod (``data``, 1 GiB of `STORAGE_CLASS`), mounted at /data."""
    spec = statefulset["spec"]
    for container in spec["template"]["spec"]["containers"]:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    spec["volumeClaimTemplates"] = [
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    ]
    return statefulset


def _until(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {what}")


def prepare_live_clusters(plane: ControlPlane) -> dict[str, LiveCluster]:
    """The API servers of `plane` (started with ``controllers=True``) ready for the live world:
    namespaces, ``deploy/rbac.yaml``; no Chaos Mesh."""
    clusters = {}
    for name, server in plane.servers.items():
        assert server.controllers is not None, "the control plane was started without controllers"
        cluster = LiveCluster(server, chaos_mesh=False)
        cluster.prepare()
        clusters[name] = cluster
    return clusters


@dataclass
class LiveWorld(RealWorld):
    """The live world and bascule connected to it as its ServiceAccount."""

    clusters: dict[str, LiveCluster]  # type: ignore[assignment]

    def live_snapshot(self) -> dict[str, dict[Any, Any]]:
        return {name: cluster.live_objects() for name, cluster in self.clusters.items()}

    def settle(self) -> None:
        for cluster in self.clusters.values():
            cluster.settle()


@contextmanager
def live_world(tmp: Path, clusters: dict[str, LiveCluster], *, stateful: bool = False) -> Iterator[LiveWorld]:
    """The live world made afresh in `clusters` (settled: every pod Running) — with `stateful`,
    the stores of `LIVE_STORES` too; bascule connected as its ServiceAccount."""
    for cluster in clusters.values():
        for server_controllers in [cluster.server.controllers]:
            assert server_controllers is not None
            server_controllers.check()
        cluster.reset()
    for cluster in clusters.values():
        cluster.populate(stateful=stateful)
    tokens = {name: c.admin.token("bascule", "bascule") for name, c in clusters.items()}
    servers = {name: c.server for name, c in clusters.items()}
    kubeconfig = write_token_kubeconfig(tmp / "kubeconfig", servers, tokens)
    bound = mapping()
    apis = connect(bound.target, kubeconfig)
    try:
        yield LiveWorld(clusters, kubeconfig, bound, apis)  # type: ignore[arg-type]
    finally:
        for api in apis.values():
            api.close()
