"""Faults carried out on pods, nodes and their controllers: region and provider outages, crash, hang
(Chaos Mesh PodChaos), control-plane (cordon, pinned HPAs) and data-loss (volumes deleted); and the
store fault no Kubernetes object carries out, stale-index (refused)."""

from __future__ import annotations

from bascule.faults import Crash, Fault
from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.builder import Builder, whole
from bascule.targets.kubernetes.calls.model import Call, ChangeMode, FieldChange, RefusalRule, Verb
from bascule.targets.kubernetes.mapping import WorkloadKind
from bascule.targets.kubernetes.resources import DEPLOYMENTS, HPAS, NETWORK_POLICIES, POD_CHAOS, STATEFULSETS

__all__ = ["control_plane", "crash", "data_loss", "hang", "outage", "stale_index"]


def outage(b: Builder, fault: Fault, touch: Touch) -> None:
    deny: list[tuple[str, str]] = []
    for region_id in touch.regions:
        b.region(region_id)
        names = {r.component for r in touch.replicas if r.region == region_id}
        names |= {d for d in touch.dependencies if b.mapping.design.dependencies[d].region == region_id}
        deny += [(name, region_id) for name in b.mapped(names, region_id)]
    for name, region_id in deny:
        region = b.region(region_id)
        spec = {
            "podSelector": {"matchLabels": dict(b.pods(name, region_id))},
            "policyTypes": ["Ingress", "Egress"],
        }
        b.create(
            NETWORK_POLICIES,
            region.context,
            region_id,
            b.namespace(name),
            spec,
            "deny all ingress and egress",
        )
    for region_id in touch.regions:
        b.cordon(region_id)
    for name, region_id in deny:
        b.delete_pods(
            name, region_id, required=False, why="the region's pods go down; none can be scheduled back"
        )
    b.notes.append(
        "reverting deletes the NetworkPolicies and uncordons; deleted pods are recreated by their controllers"
    )


def crash(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Crash)
    for name, region_id in whole(b, touch):
        b.region(region_id)
        b.workload(name, region_id)
        b.delete_pods(name, region_id, required=True, why="killed")
    b.notes.append(
        "pods come back when their controller recreates them: at once, not after "
        f"restart_after={fault.restart_after:g}s (nor at all while the region is cordoned)"
    )


def hang(b: Builder, fault: Fault, touch: Touch) -> None:
    for name, region_id in whole(b, touch):
        region = b.region(region_id)
        b.workload(name, region_id)
        b.need_chaos(region.context, POD_CHAOS, "freeze pods")
        spec = {"action": "pod-failure", "mode": "all", "selector": b.chaos_selector(name, region_id)}
        b.create(POD_CHAOS, region.context, region_id, b.namespace(name), spec, "pods frozen (pod-failure)")


def control_plane(b: Builder, fault: Fault, touch: Touch) -> None:
    for region_id in touch.regions:
        b.cordon(region_id)
    for region_id in touch.regions:
        names = {r.component for r in touch.replicas if r.region == region_id}
        for name in b.mapped(names, region_id):
            region = b.region(region_id)
            workload = b.mapping.workload(name)
            assert workload is not None
            scaled = DEPLOYMENTS if workload.kind is WorkloadKind.DEPLOYMENT else STATEFULSETS
            current = ("status", "currentReplicas")
            b.calls.append(
                Call(
                    Verb.PATCH,
                    HPAS,
                    region.context,
                    region_id,
                    b.namespace(name),
                    labels=b.pods(name, region_id),
                    scaling=scaled,
                    changes=(
                        FieldChange(("spec", "minReplicas"), ChangeMode.COPY, source=current),
                        FieldChange(("spec", "maxReplicas"), ChangeMode.COPY, source=current),
                    ),
                    why="pinned: no scaling",
                )
            )
    b.notes.append(
        "HPAs are found by spec.scaleTargetRef, not by their labels; one with no "
        "status.currentReplicas is pinned to its workload's spec.replicas, and one whose workload is "
        "at zero replicas is left alone (Kubernetes does not autoscale a workload at zero)"
    )


def data_loss(b: Builder, fault: Fault, touch: Touch) -> None:
    if not b.mapping.target.allow_data_loss:
        raise b.refuse(
            RefusalRule.DATA_LOSS_NOT_ALLOWED,
            "data-loss deletes a store's volumes, which nothing can bring back: set "
            "'allow_data_loss: true' in the target file to allow it",
        )
    for name, region_id in whole(b, touch):
        b.region(region_id)
        b.workload(name, region_id)
        b.delete_pods(
            name, region_id, required=False, why="the store's volumes are deleted (irreversible)", claims=True
        )
        b.delete_pods(name, region_id, required=True, why="restarted on fresh, empty volumes")
    b.notes.append("irreversible: reverting restores nothing; the store refills by replication or rebuild")
    b.notes.append(
        "only claims a StatefulSet makes again (its volumeClaimTemplates') are deleted: a pod with "
        "another claim (a Deployment's) fails the fault before any change"
    )


def stale_index(b: Builder, fault: Fault, touch: Touch) -> None:
    raise b.refuse(
        RefusalRule.UNSUPPORTED,
        "stale-index freezes a store's search index inside its running process while writes go on "
        "(the reference store's POST /v1/admin/index): the Kubernetes target creates, patches and "
        "deletes Kubernetes objects and Chaos Mesh resources, and none of them reaches into a "
        "process's index; HTTPChaos, which rewrites whole bodies alike, cannot tell in a search "
        "answer which documents were written after a point in time. The local target carries it out",
    )
