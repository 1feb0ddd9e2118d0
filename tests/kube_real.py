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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from control_plane import ApiServer, ControlPlane, resource_path
from kube_emulator import CHAOS, KINDS, comparable
from kube_world import RBAC, mapping, populate

from bascule.targets.kubernetes.cluster import KubeApi, connect
from bascule.targets.kubernetes.mapping import KubeMapping
from bascule.targets.kubernetes.resources import RUN_LABEL

NAMESPACES = ("rag", "identity")
"""Where the world's workloads live; kube-system holds only the coredns ConfigMap of it."""

Key = tuple[str, str | None, str]


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
        ignores it), as the cluster's controllers and kubelets would have."""
        body = copy.deepcopy(obj)
        kind, namespaced = KINDS.get(resource) or CHAOS[resource]
        body.setdefault("kind", kind)
        body.setdefault("apiVersion", resource.rsplit("/", 1)[0])
        status = body.pop("status", None)
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
        """Remove every object of the world, finalizers and grace periods aside."""
        for (resource, namespace, name), obj in self._all():
            path = resource_path(resource, namespace, name)
            if obj["metadata"].get("finalizers"):
                self.admin.request("PATCH", path, {"metadata": {"finalizers": None}}, merge=True, ok=(404,))
            self.admin.request("DELETE", path + "?gracePeriodSeconds=0", ok=(404,))
        left = list(self._all())
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
