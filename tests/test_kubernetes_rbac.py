"""``deploy/rbac.yaml`` grants exactly what the Kubernetes adapters use: the permissions derived
from the call plans of every supported fault kind (the calls, their reads and their reverts, which
`bascule recover` replays) plus the readiness probe's reads — no more, no less. The manifest is
also valid for a current Kubernetes version. (The contract tests run with the emulated API
servers enforcing this manifest, so a call it does not grant fails them.)"""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from kube_emulator import Rule, rbac_rules
from kube_world import RBAC, TARGET, mapping, touch_of
from test_kubernetes_contract import CASES

from bascule.targets.kubernetes.calls import (
    ClusterFacts,
    Permission,
    PermissionScope,
    Verb,
    compute_calls,
    discovery_permissions,
    identity_permissions,
    permissions,
    probe_permissions,
)
from bascule.targets.kubernetes.resources import CHAOS_KINDS

EVERY_KIND = [(fault, selector) for _, fault, selector, _ in CASES]


def _adapters_need() -> set[Permission]:
    needed: set[Permission] = set(probe_permissions()) | set(identity_permissions())
    needed |= discovery_permissions()
    # Pods deleted (the default), and evicted (pod_disruption: evict).
    for world in (mapping(), mapping(TARGET + "pod_disruption: evict\n")):
        facts = {c: ClusterFacts(chaos=frozenset(r.plural for r in CHAOS_KINDS)) for c in world.contexts}
        for fault, selector in EVERY_KIND:
            plan = compute_calls(fault, touch_of(fault, selector), world, facts, run_id="rbac", key="p0")
            assert plan.refusal is None, (fault.kind, plan.refusal)
            needed |= permissions(plan.calls)
    return needed


def _as_permission(rule: Rule) -> Permission:
    verb = Verb(rule.verb)
    if rule.namespace is None:
        if rule.resource == "namespaces":
            assert rule.name == "kube-system", f"{rule} reads namespaces other than kube-system"
            return Permission(PermissionScope.CLUSTER, rule.group, rule.resource, verb, rule.name)
        assert rule.resource == "nodes", f"{rule} is granted cluster-wide"
        return Permission(PermissionScope.CLUSTER, rule.group, rule.resource, verb)
    if rule.namespace == "kube-system":
        assert rule.name == "coredns", f"{rule} is granted in kube-system"
        return Permission(PermissionScope.COREDNS, rule.group, rule.resource, verb, rule.name)
    assert rule.name is None
    if rule.resource == "persistentvolumeclaims":
        return Permission(PermissionScope.DATA_LOSS, rule.group, rule.resource, verb)
    return Permission(PermissionScope.WORKLOADS, rule.group, rule.resource, verb)


def test_the_manifest_grants_exactly_what_the_adapters_call() -> None:
    granted = {_as_permission(rule) for rule in rbac_rules(RBAC)}
    needed = _adapters_need()
    assert sorted(granted - needed) == [], "granted but never used"
    assert sorted(needed - granted) == [], "used but not granted"


def test_every_supported_kind_needs_something_the_manifest_grants() -> None:
    granted = {_as_permission(rule) for rule in rbac_rules(RBAC)}
    kinds = {fault.kind for fault, _ in EVERY_KIND}
    assert kinds >= {
        "region-outage",
        "provider-outage",
        "crash",
        "hang",
        "control-plane",
        "partition",
        "replication-pause",
        "refuse",
        "dns",
        "latency",
        "blackhole",
        "http-error",
        "throttle",
        "identity",
        "data-loss",
    }
    assert {p for p in granted if p.scope is PermissionScope.COREDNS} == {
        Permission(PermissionScope.COREDNS, "", "configmaps", Verb.GET, "coredns"),
        Permission(PermissionScope.COREDNS, "", "configmaps", Verb.PATCH, "coredns"),
    }


def test_the_manifest_is_valid_kubernetes() -> None:
    documents: list[dict[str, Any]] = [d for d in yaml.safe_load_all(RBAC.read_text(encoding="utf-8")) if d]
    assert {d["kind"] for d in documents} >= {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    version = kubernetes_validate.latest_version()
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
