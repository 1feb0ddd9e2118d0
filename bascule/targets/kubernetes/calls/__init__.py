"""The call plan: for one fault on one touch, the exact Kubernetes API calls the adapter makes. Pure.

`compute_calls(fault, touch, mapping, facts, run_id=…, key=…)` returns a `CallPlan`: its `calls`
in order, or the `Refusal` that stops the fault (a rule and a reason a person can act on). The
same list serves `bascule plan --target kubernetes`, which prints it and calls nothing, and the
adapter (`execute`), which carries it out call by call — so what is printed is what is done.

A call names one mutation: ``create``, ``patch`` or ``delete``, a kind, a context, and either one
object (namespace/name) or a label selector (the adapter lists the matching objects first, then
acts on each). What it reads on the way and how it is undone are derived from it
(`Call.reads`, `Call.undo`), and so is the RBAC it needs (`permissions`).

What each fault kind does (docs/kubernetes.md has the full table):

    region-outage, provider-outage   create a deny-all NetworkPolicy on each mapped component's pods
                                     in the region, cordon the region's nodes, delete those pods
    crash                            delete the component's pods in the region
    control-plane                    cordon the region's nodes; pin its HPAs to min = max = current
    partition                        a NetworkPolicy on each side letting everything in and out
                                     except the other side (pod labels, or CIDRs across clusters)
    replication-pause                a NetworkPolicy on each receiving store: nothing from the
                                     sending stores
    refuse                           scale the workload to 0 (Services without endpoints refuse)
    dns                              DNSChaos (servfail) where Chaos Mesh is installed; else, when
                                     the target file allows it, server blocks appended to CoreDNS
    latency, blackhole, bandwidth    Chaos Mesh NetworkChaos (delay, loss, bandwidth)
    http-error, throttle             Chaos Mesh HTTPChaos (replace the response code)
    hang                             Chaos Mesh PodChaos (pod-failure)
    identity                         HTTPChaos (error, slow) or NetworkChaos (timeout)
    data-loss                        only when allowed: delete the store's volumes, then its pods
    stale-index                      refused: no Kubernetes object reaches into a store's index
    ttft, stream-cut, token-rate,    refused: Chaos Mesh acts on packets and whole responses, never
    degrade, model-swap, slicer,     inside an answer nor with a count of its tokens or bytes, nor
    limit-data, slow-close,          re-segments a stream or tells its close apart (`answers`)
    partial-index, embedding-mismatch

By concern: `model` (calls, plans, refusals), `builder` (the checks and calls every family shares),
one module per fault family — `workloads` (pods, nodes, controllers, volumes), `policies`
(NetworkPolicies), `hops` (the touched hops' callees: scaling, Chaos Mesh) and `dns` —, `compute`
(the table from fault kind to planner, `compute_calls`), `budgets` (which PodDisruptionBudgets an
action's pod calls would break, from what discovery read) and `rbac`.
"""

from bascule.targets.kubernetes.calls.budgets import DisruptionFacts, budget_lines, disruption_facts
from bascule.targets.kubernetes.calls.compute import check_plan, compute_calls, render_plan_calls
from bascule.targets.kubernetes.calls.dns import COREDNS_NAME, COREDNS_NAMESPACE, coredns_block, corefile_with
from bascule.targets.kubernetes.calls.model import (
    Call,
    CallPlan,
    ChangeMode,
    ClusterFacts,
    FieldChange,
    Refusal,
    RefusalRule,
    Verb,
    object_name,
)
from bascule.targets.kubernetes.calls.rbac import (
    Permission,
    PermissionScope,
    discovery_permissions,
    identity_permissions,
    permissions,
    probe_permissions,
)

__all__ = [
    "COREDNS_NAME",
    "COREDNS_NAMESPACE",
    "Call",
    "CallPlan",
    "ChangeMode",
    "ClusterFacts",
    "DisruptionFacts",
    "FieldChange",
    "Permission",
    "PermissionScope",
    "Refusal",
    "RefusalRule",
    "Verb",
    "budget_lines",
    "check_plan",
    "compute_calls",
    "coredns_block",
    "corefile_with",
    "discovery_permissions",
    "disruption_facts",
    "identity_permissions",
    "object_name",
    "permissions",
    "probe_permissions",
    "render_plan_calls",
]
