"""The Kubernetes resources bascule reads or changes, and the labels it puts on what it creates.

One `Resource` per kind, with its API group, version and plural: the call planner names them, the
executor builds URLs from them, and the RBAC check compares them with ``deploy/rbac.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "CHAOS_GROUP",
    "CHAOS_KINDS",
    "CHAOS_VERSION",
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "DEPLOYMENT_SCALE",
    "DNS_CHAOS",
    "FAULT_LABEL",
    "HPAS",
    "HTTP_CHAOS",
    "NETWORK_CHAOS",
    "NETWORK_POLICIES",
    "NODES",
    "PDBS",
    "PODS",
    "POD_CHAOS",
    "POD_EVICTION",
    "PVCS",
    "RUN_LABEL",
    "STATEFULSETS",
    "STATEFULSET_SCALE",
    "Resource",
]

RUN_LABEL: Final = "bascule.io/run-id"
"""On every object bascule creates: the run that created it. Nothing without it is ever deleted."""
FAULT_LABEL: Final = "bascule.io/fault"
"""On every object bascule creates: the fault (action key) it belongs to."""


@dataclass(frozen=True, order=True)
class Resource:
    group: str
    """``""`` for the core API."""
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresource: str = ""
    """``scale`` for a workload's scale subresource: objects are read from the workload (`parent`),
    changed through ``…/<name>/scale``."""

    @property
    def parent(self) -> Resource:
        """The resource itself, without its subresource."""
        return replace(self, subresource="") if self.subresource else self

    @property
    def rbac_name(self) -> str:
        """The name RBAC rules give it: ``deployments``, ``deployments/scale``."""
        return f"{self.plural}/{self.subresource}" if self.subresource else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path of one object, or of a collection (no name): in every namespace when a
        namespaced resource is given no namespace."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        elif self.namespaced and name is not None:
            raise ValueError(f"{self.kind} is namespaced: give a namespace")
        base += f"/{self.plural}"
        if name is None:
            return base
        return f"{base}/{name}/{self.subresource}" if self.subresource else f"{base}/{name}"

    def __str__(self) -> str:
        return f"{self.kind} {self.subresource}" if self.subresource else self.kind


NODES: Final = Resource("", "v1", "nodes", "Node", False)
PODS: Final = Resource("", "v1", "pods", "Pod", True)
POD_EVICTION: Final = Resource("", "v1", "pods", "Pod", True, "eviction")
CONFIGMAPS: Final = Resource("", "v1", "configmaps", "ConfigMap", True)
PVCS: Final = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True)
DEPLOYMENTS: Final = Resource("apps", "v1", "deployments", "Deployment", True)
STATEFULSETS: Final = Resource("apps", "v1", "statefulsets", "StatefulSet", True)
DEPLOYMENT_SCALE: Final = Resource("apps", "v1", "deployments", "Deployment", True, "scale")
STATEFULSET_SCALE: Final = Resource("apps", "v1", "statefulsets", "StatefulSet", True, "scale")
HPAS: Final = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True)
NETWORK_POLICIES: Final = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True)
PDBS: Final = Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True)
"""Only read (``plan --discover``): which budgets an action would break."""

CHAOS_GROUP: Final = "chaos-mesh.org"
CHAOS_VERSION: Final = "v1alpha1"
NETWORK_CHAOS: Final = Resource(CHAOS_GROUP, CHAOS_VERSION, "networkchaos", "NetworkChaos", True)
HTTP_CHAOS: Final = Resource(CHAOS_GROUP, CHAOS_VERSION, "httpchaos", "HTTPChaos", True)
DNS_CHAOS: Final = Resource(CHAOS_GROUP, CHAOS_VERSION, "dnschaos", "DNSChaos", True)
POD_CHAOS: Final = Resource(CHAOS_GROUP, CHAOS_VERSION, "podchaos", "PodChaos", True)
CHAOS_KINDS: Final = (NETWORK_CHAOS, HTTP_CHAOS, DNS_CHAOS, POD_CHAOS)
