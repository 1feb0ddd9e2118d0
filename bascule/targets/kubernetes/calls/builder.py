"""The builder every fault family plans with: the target file's checks (mapped, listed, not
protected) as refusals, and the calls and objects it adds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.model import (
    Call,
    ChangeMode,
    ClusterFacts,
    FieldChange,
    Labels,
    Refusal,
    RefusalRule,
    RefusedError,
    Verb,
    as_labels,
    object_name,
)
from bascule.targets.kubernetes.mapping import KubeMapping, PodDisruption, RegionTarget
from bascule.targets.kubernetes.resources import FAULT_LABEL, NODES, PODS, PVCS, RUN_LABEL, Resource

__all__ = ["Builder", "whole"]


class Builder:
    def __init__(
        self, mapping: KubeMapping, facts: Mapping[str, ClusterFacts | None], run_id: str, key: str, kind: str
    ) -> None:
        self.mapping = mapping
        self.facts = facts
        self.run_id = run_id
        self.key = key
        self.kind = kind
        self.calls: list[Call] = []
        self.notes: list[str] = []
        self._count = 0

    def refuse(self, rule: RefusalRule, message: str) -> RefusedError:
        return RefusedError(Refusal(rule, message))

    def region(self, region_id: str) -> RegionTarget:
        region = self.mapping.region(region_id)
        if region is None:
            raise self.refuse(
                RefusalRule.UNLISTED_CONTEXT,
                f"region {region_id} is not mapped to any listed context in the target file",
            )
        if region.context not in self.mapping.contexts:
            raise self.refuse(
                RefusalRule.UNLISTED_CONTEXT,
                f"region {region_id} maps to context {region.context!r}, which is not listed",
            )
        return region

    def workload(self, name: str, region_id: str) -> None:
        """Refuse unless component `name` is mapped, outside every protected namespace."""
        workload = self.mapping.workload(name)
        if workload is None:
            raise self.refuse(
                RefusalRule.UNMAPPED,
                f"{name}@{region_id} is not mapped to a workload: add it to 'components' in the target file",
            )
        if workload.namespace in self.mapping.protected:
            raise self.refuse(
                RefusalRule.PROTECTED_NAMESPACE,
                f"{name} runs in namespace {workload.namespace!r}, which is protected: "
                "bascule never acts there",
            )

    def mapped(self, names: Iterable[str], region_id: str) -> list[str]:
        """Those of `names` that are mapped (checked for protection); the others are noted."""
        out: list[str] = []
        for name in sorted(set(names)):
            if self.mapping.workload(name) is None:
                self.notes.append(f"{name}@{region_id} is not mapped to a workload: left alone")
                continue
            self.workload(name, region_id)
            out.append(name)
        return out

    def namespace(self, name: str) -> str:
        workload = self.mapping.workload(name)
        assert workload is not None
        return workload.namespace

    def pods(self, name: str, region_id: str) -> Labels:
        return as_labels(self.mapping.pod_labels(name, region_id))

    def on_nodes(self, region_id: str) -> Labels | None:
        region = self.region(region_id)
        shared = len(self.mapping.regions_in(region.context)) > 1
        return as_labels(region.nodes) if shared or region.nodes else None

    def has(self, context: str, resource: Resource) -> bool | None:
        facts = self.facts.get(context)
        return None if facts is None else resource.plural in facts.chaos

    def need_chaos(self, context: str, resource: Resource, what: str) -> None:
        present = self.has(context, resource)
        if present is False:
            raise self.refuse(
                RefusalRule.NEEDS_CHAOS_MESH,
                f"{self.kind} needs Chaos Mesh's {resource.kind} ({resource.plural}.{resource.group}) in "
                f"context {context!r}, which does not serve it: install Chaos Mesh there "
                f"(helm chart chaos-mesh/chaos-mesh) to {what}, or drop the phase",
            )
        if present is None:
            note = f"{resource.kind} in {context!r} needs Chaos Mesh (not checked: no API discovery)"
            if note not in self.notes:
                self.notes.append(note)

    def next_name(self) -> str:
        name = object_name(self.run_id, self.key, self._count)
        self._count += 1
        return name

    def metadata(self, name: str, namespace: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "labels": {RUN_LABEL: self.run_id, FAULT_LABEL: self.key},
        }

    def create(
        self, resource: Resource, context: str, region: str, namespace: str, spec: dict[str, Any], why: str
    ) -> None:
        name = self.next_name()
        body = {
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": self.metadata(name, namespace),
            "spec": spec,
        }
        self.calls.append(Call(Verb.CREATE, resource, context, region, namespace, name, body=body, why=why))

    def cordon(self, region_id: str) -> None:
        region = self.region(region_id)
        self.calls.append(
            Call(
                Verb.PATCH,
                NODES,
                region.context,
                region_id,
                labels=as_labels(region.nodes),
                changes=(FieldChange(("spec", "unschedulable"), ChangeMode.SET, True),),
                required=True,
                why="cordon: nothing new is scheduled there",
            )
        )

    def delete_pods(
        self, name: str, region_id: str, *, required: bool, why: str, claims: bool = False
    ) -> None:
        """Delete the component's pods in the region — or, with `claims`, their volume claims. Pods
        are evicted instead when the target file says ``pod_disruption: evict``."""
        region = self.region(region_id)
        evict = not claims and self.mapping.target.pod_disruption is PodDisruption.EVICT
        if not claims:
            self._note_disruption(evict)
        self.calls.append(
            Call(
                Verb.DELETE,
                PVCS if claims else PODS,
                region.context,
                region_id,
                self.namespace(name),
                labels=self.pods(name, region_id),
                on_nodes=self.on_nodes(region_id),
                via_pods=claims,
                evict=evict,
                evict_first=claims and self.mapping.target.pod_disruption is PodDisruption.EVICT,
                required=required,
                why=why,
            )
        )

    def _note_disruption(self, evict: bool) -> None:
        note = (
            "pods are evicted (Eviction API): a PodDisruptionBudget that allows no more disruption "
            "refuses it (429), and the fault fails, its changes undone"
            if evict
            else "pods are deleted, which ignores PodDisruptionBudgets (a crash is involuntary): "
            "set 'pod_disruption: evict' in the target file to respect them"
        )
        if note not in self.notes:
            self.notes.append(note)

    def chaos_selector(self, name: str, region_id: str) -> dict[str, Any]:
        return {"namespaces": [self.namespace(name)], "labelSelectors": dict(self.pods(name, region_id))}


def _groups(touch: Touch) -> list[tuple[str, str]]:
    return sorted({(r.component, r.region) for r in touch.replicas})


def whole(b: Builder, touch: Touch) -> list[tuple[str, str]]:
    """The (component, region) pairs the touch covers, refusing a touch that names some replicas
    of a workload only: Kubernetes pods have no stable index to pick one by."""
    groups = _groups(touch)
    for name, region in groups:
        picked = sorted(r.index for r in touch.replicas if (r.component, r.region) == (name, region))
        if len(picked) < b.mapping.placed(name, region):
            shown = ", ".join(f"#{i}" for i in picked)
            raise b.refuse(
                RefusalRule.UNSUPPORTED,
                f"{b.kind} acts on every pod of {name} in {region}; Kubernetes pods have no stable "
                f"index to pick replica {shown} by: target the component in the region instead",
            )
    return groups
