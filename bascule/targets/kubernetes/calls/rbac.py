"""The RBAC a call plan needs: every permission carrying out, reading and reverting its calls takes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from bascule.targets.kubernetes.calls.dns import COREDNS_NAME, COREDNS_NAMESPACE
from bascule.targets.kubernetes.calls.model import Call, Verb
from bascule.targets.kubernetes.resources import CONFIGMAPS, PDBS, PVCS, Resource

__all__ = [
    "Permission",
    "PermissionScope",
    "discovery_permissions",
    "identity_permissions",
    "permissions",
    "probe_permissions",
]


class PermissionScope(StrEnum):
    CLUSTER = "cluster"
    """Cluster-scoped resources (nodes): a ClusterRole bound cluster-wide."""
    WORKLOADS = "workloads"
    """Namespaced resources in the mapped namespaces: a ClusterRole bound by RoleBindings there."""
    COREDNS = "coredns"
    """kube-system/coredns only: a Role in kube-system with resourceNames."""
    DATA_LOSS = "data-loss"
    """Volume claims, only for data-loss: a ClusterRole of its own, bound only where it is allowed."""


@dataclass(frozen=True, order=True)
class Permission:
    scope: PermissionScope
    group: str
    resource: str
    verb: Verb
    name: str | None = None


def _permission(call: Call, resource: Resource, verb: Verb) -> Permission:
    if not resource.namespaced:
        return Permission(PermissionScope.CLUSTER, resource.group, resource.rbac_name, verb)
    if call.namespace == COREDNS_NAMESPACE and call.name == COREDNS_NAME and resource == CONFIGMAPS:
        return Permission(PermissionScope.COREDNS, resource.group, resource.rbac_name, verb, COREDNS_NAME)
    if resource == PVCS:
        return Permission(PermissionScope.DATA_LOSS, resource.group, resource.rbac_name, verb)
    return Permission(PermissionScope.WORKLOADS, resource.group, resource.rbac_name, verb)


def permissions(calls: Iterable[Call]) -> frozenset[Permission]:
    """Every permission carrying out and reverting `calls` needs: the call, its reads, its undo."""
    out: set[Permission] = set()
    for call in calls:
        for resource, verb in [call.acts(), *call.reads(), *call.undo()]:
            out.add(_permission(call, resource, verb))
    return frozenset(out)


def probe_permissions() -> frozenset[Permission]:
    """What the ``kubernetes-ready`` probe reads: pods, and nodes to place them in regions."""
    return frozenset(
        {
            Permission(PermissionScope.WORKLOADS, "", "pods", Verb.LIST),
            Permission(PermissionScope.CLUSTER, "", "nodes", Verb.LIST),
        }
    )


def identity_permissions() -> frozenset[Permission]:
    """What reading a cluster's identity takes (confirmation): the ``kube-system`` namespace."""
    return frozenset({Permission(PermissionScope.CLUSTER, "", "namespaces", Verb.GET, "kube-system")})


def discovery_permissions() -> frozenset[Permission]:
    """What ``bascule plan --discover`` reads to tell which PodDisruptionBudgets an action breaks:
    the budgets and pods of the mapped namespaces, and the nodes (pods placed in regions)."""
    return frozenset(
        {
            Permission(PermissionScope.WORKLOADS, PDBS.group, PDBS.rbac_name, Verb.LIST),
            Permission(PermissionScope.WORKLOADS, "", "pods", Verb.LIST),
            Permission(PermissionScope.CLUSTER, "", "nodes", Verb.LIST),
        }
    )
