"""What a call plan is made of: a `Call` (one mutation) and its `FieldChange`s, the `CallPlan` of a
fault, the `Refusal` that stops one, what discovery found (`ClusterFacts`) and the names of what a
fault creates (`object_name`). Pure records."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bascule.targets.kubernetes.mapping import selector_text
from bascule.targets.kubernetes.resources import NODES, POD_EVICTION, PODS, Resource

if TYPE_CHECKING:
    from bascule.targets.kubernetes.calls.budgets import DisruptionFacts

__all__ = [
    "Call",
    "CallPlan",
    "ChangeMode",
    "ClusterFacts",
    "FieldChange",
    "Labels",
    "Refusal",
    "RefusalRule",
    "RefusedError",
    "Verb",
    "as_labels",
    "object_name",
]


class Verb(StrEnum):
    GET = "get"
    LIST = "list"
    CREATE = "create"
    PATCH = "patch"
    DELETE = "delete"


class ChangeMode(StrEnum):
    SET = "set"
    """Set the field to ``value``."""
    COPY = "copy"
    """Set the field to the value another field of the same object has (``source``)."""
    APPEND = "append"
    """Append ``value`` (text) to a string field; undone by removing exactly that text."""


@dataclass(frozen=True)
class FieldChange:
    path: tuple[str, ...]
    mode: ChangeMode
    value: Any = None
    source: tuple[str, ...] = ()

    def describe(self) -> str:
        where = ".".join(self.path)
        match self.mode:
            case ChangeMode.SET:
                return f"{where} → {_json_text(self.value)}"
            case ChangeMode.COPY:
                return f"{where} → (its {'.'.join(self.source)})"
            case ChangeMode.APPEND:
                lines = str(self.value).count("\n")
                return f"{where} += {lines} line(s)"


def _json_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


Labels = tuple[tuple[str, str], ...]


def as_labels(labels: Mapping[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


@dataclass(frozen=True)
class Call:
    """One mutation, on one object (``name``) or on every object a label selector matches."""

    verb: Verb
    resource: Resource
    context: str
    region: str
    namespace: str | None = None
    name: str | None = None
    labels: Labels = ()
    """Label selector, when ``name`` is None; empty selects every object (nodes of a whole cluster)."""
    on_nodes: Labels | None = None
    """Pods only: act on those running on nodes with these labels (None: on any node)."""
    via_pods: bool = False
    """PersistentVolumeClaims only: the claims of the pods the selector matches."""
    evict: bool = False
    """Pods only: taken down through the Eviction API (``pods/<name>/eviction``) rather than
    deleted — the API server refuses (429) while a PodDisruptionBudget allows no disruption."""
    evict_first: bool = False
    """PersistentVolumeClaims only: their pods are evicted next, so each pod's eviction is tried
    first as a dry run (``dryRun=All``): a budget that allows none refuses before any claim is
    deleted, which nothing undoes."""
    scaling: Resource | None = None
    """HorizontalPodAutoscalers only: those whose ``spec.scaleTargetRef`` names a workload of this
    kind that the selector matches — the HPAs' own labels are not read (``kubectl autoscale`` and
    many charts do not copy the workload's labels onto them)."""
    changes: tuple[FieldChange, ...] = ()
    body: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)
    required: bool = False
    """Matching no object is an error (the fault would do nothing)."""
    why: str = ""

    @property
    def selected(self) -> bool:
        return self.name is None

    def target_text(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        if self.name is not None:
            return f"{where}{self.name}"
        text = f"{where}*"
        if self.scaling is not None:
            text += f" scaling the {self.scaling.kind}"
        if self.via_pods:
            text += " claimed by pods"
        if self.evict_first:
            text += " (each pod's eviction tried first, dry run)"
        if self.labels:
            text += f" -l {selector_text(dict(self.labels))}"
        if self.on_nodes is not None:
            nodes = selector_text(dict(self.on_nodes)) or "(any label)"
            text += f" on nodes -l {nodes}"
        return text

    def describe(self) -> str:
        sub = f" (its {self.resource.subresource} subresource)" if self.resource.subresource else ""
        verb = "evict" if self.evict else self.verb.value
        text = f"{verb} {self.resource.kind} {self.target_text()}{sub} [{self.context}]"
        if self.changes:
            text += ": " + ", ".join(c.describe() for c in self.changes)
        if self.why:
            text += f" — {self.why}"
        return text

    def acts(self) -> tuple[Resource, Verb]:
        """The request that makes the mutation: an eviction is a create of ``pods/eviction``."""
        return (POD_EVICTION, Verb.CREATE) if self.evict else (self.resource, self.verb)

    def reads(self) -> list[tuple[Resource, Verb]]:
        """What the adapter reads to carry the call out (and to record the prior state first)."""
        out: list[tuple[Resource, Verb]] = []
        if self.selected:
            out.append((PODS if self.via_pods else self.resource.parent, Verb.LIST))
            if self.scaling is not None:
                out.append((self.scaling, Verb.LIST))
            if self.on_nodes is not None:
                out.append((NODES, Verb.LIST))
            if self.via_pods:
                out.append((self.resource, Verb.GET))
            if self.evict_first:
                out.append((POD_EVICTION, Verb.CREATE))  # a dry run: it evicts nothing
        elif self.verb is Verb.PATCH:
            out.append((self.resource, Verb.GET))
        return out

    def undo(self) -> list[tuple[Resource, Verb]]:
        """The calls that revert it: a patch is patched back (re-read first when it appended
        text); what was created is read (its run label checked) and deleted; a delete is final."""
        match self.verb:
            case Verb.PATCH:
                appends = any(c.mode is ChangeMode.APPEND for c in self.changes)
                return [(self.resource, Verb.GET)] * appends + [(self.resource, Verb.PATCH)]
            case Verb.CREATE:
                return [(self.resource, Verb.GET), (self.resource, Verb.DELETE)]
            case Verb.DELETE if self.via_pods:
                # A claim deleted but still held by a pod has that pod deleted (`finish_claim`).
                return [(self.resource, Verb.GET), (PODS, Verb.LIST), (PODS, Verb.DELETE)]
            case _:
                return []


class RefusalRule(StrEnum):
    PROTECTED_NAMESPACE = "protected-namespace"
    UNLISTED_CONTEXT = "unlisted-context"
    UNMAPPED = "unmapped"
    NEEDS_CHAOS_MESH = "needs-chaos-mesh"
    DATA_LOSS_NOT_ALLOWED = "data-loss-not-allowed"
    DNS_NOT_ALLOWED = "dns-not-allowed"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Refusal:
    rule: RefusalRule
    message: str

    def __str__(self) -> str:
        return f"{self.message} [{self.rule.value}]"


@dataclass(frozen=True)
class ClusterFacts:
    """What API discovery found in one context."""

    chaos: frozenset[str] = frozenset()
    """Chaos Mesh resources served (plural names: ``networkchaos``, ``podchaos``, …)."""
    disruption: DisruptionFacts | None = None
    """The PodDisruptionBudgets, pods and nodes read (`calls.budgets`); None: not read."""


@dataclass(frozen=True)
class CallPlan:
    kind: str
    calls: tuple[Call, ...] = ()
    notes: tuple[str, ...] = ()
    refusal: Refusal | None = None

    def lines(self) -> list[str]:
        if self.refusal is not None:
            return [f"refused: {self.refusal}"]
        return [c.describe() for c in self.calls] + [f"note: {n}" for n in self.notes]


class RefusedError(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def object_name(run_id: str, key: str, index: int) -> str:
    """The name of the `index`-th object a fault creates: ``bascule-<run>-<key>-<n>``, DNS-safe."""
    slug = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    return f"bascule-{run_id}-{slug}-{index}"[:63].rstrip("-")
