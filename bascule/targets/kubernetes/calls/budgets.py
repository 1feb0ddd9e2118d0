"""Which PodDisruptionBudgets an action would break: the budgets, pods and nodes discovery read
(`DisruptionFacts`, parsed from the API server's JSON by `disruption_facts`) matched against the
pods the action's pod calls take. Pure.

A budget is broken when the pods an action takes from it (those its selector matches, counted
over every pod call of the action) outnumber its ``status.disruptionsAllowed``, the figure the
disruption controller writes. A deletion ignores it (a crash is involuntary); an eviction is
refused by the API server (429) as soon as the budget allows no more, and the fault fails. A
budget whose status the controller has not written for its current spec counts as allowing none,
as the Eviction API treats it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bascule.targets.kubernetes.calls.model import Call, ClusterFacts, Labels, as_labels
from bascule.targets.kubernetes.resources import PODS

__all__ = [
    "Budget",
    "DisruptionFacts",
    "LabelSelector",
    "NodeFact",
    "PodFact",
    "Requirement",
    "SelectorOp",
    "budget_lines",
    "disruption_facts",
    "parse_selector",
]


class SelectorOp(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    op: SelectorOp
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.op:
            case SelectorOp.IN:
                return self.key in labels and labels[self.key] in self.values
            case SelectorOp.NOT_IN:
                return self.key not in labels or labels[self.key] not in self.values
            case SelectorOp.EXISTS:
                return self.key in labels
            case SelectorOp.DOES_NOT_EXIST:
                return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (``matchLabels`` and ``matchExpressions``, ANDed). An empty
    one matches every pod of the namespace (policy/v1 budgets)."""

    match_labels: Labels = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.expressions
        )


@dataclass(frozen=True)
class Budget:
    """One PodDisruptionBudget as discovery read it."""

    namespace: str
    name: str
    selector: LabelSelector | None
    """None: the budget has no selector and covers no pod."""
    disruptions_allowed: int
    """``status.disruptionsAllowed``; 0 when the status was not written for the current spec."""
    observed: bool
    """Whether the disruption controller wrote the status for the budget's current generation."""


@dataclass(frozen=True)
class PodFact:
    namespace: str
    name: str
    labels: Labels
    node: str | None


@dataclass(frozen=True)
class NodeFact:
    name: str
    labels: Labels


@dataclass(frozen=True)
class DisruptionFacts:
    """What discovery read to tell which budgets an action breaks, in one context: the budgets and
    the (not terminating) pods of the namespaces the target file maps, and the nodes."""

    namespaces: tuple[str, ...]
    budgets: tuple[Budget, ...] = ()
    pods: tuple[PodFact, ...] = ()
    nodes: tuple[NodeFact, ...] = ()
    unread: str = ""
    """Why they could not be read (the API server's answer, e.g. a 403); empty when they were."""


def parse_selector(raw: object) -> LabelSelector | None:
    """A selector from its JSON; None for a missing one (it selects nothing)."""
    if not isinstance(raw, Mapping):
        return None
    labels = raw.get("matchLabels") or {}
    expressions: list[Requirement] = []
    for item in raw.get("matchExpressions") or []:
        if not isinstance(item, Mapping):
            continue
        try:
            op = SelectorOp(str(item.get("operator")))
        except ValueError:
            return None  # an operator the API server would not have accepted: match nothing
        values = tuple(str(v) for v in item.get("values") or [])
        expressions.append(Requirement(str(item.get("key")), op, values))
    return LabelSelector(as_labels({str(k): str(v) for k, v in labels.items()}), tuple(expressions))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Labels:
    labels = _meta(obj).get("labels") or {}
    return as_labels({str(k): str(v) for k, v in labels.items()}) if isinstance(labels, Mapping) else ()


def _budget(obj: Mapping[str, Any]) -> Budget:
    meta = _meta(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(spec, Mapping) and isinstance(status, Mapping)
    seen = status.get("observedGeneration")
    generation = meta.get("generation")
    observed = isinstance(seen, int) and seen >= (generation if isinstance(generation, int) else 0)
    allowed = status.get("disruptionsAllowed")
    return Budget(
        str(meta.get("namespace")),
        str(meta.get("name")),
        parse_selector(spec.get("selector")),
        allowed if observed and isinstance(allowed, int) else 0,
        observed,
    )


def disruption_facts(
    namespaces: Sequence[str],
    budgets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    nodes: Iterable[Mapping[str, Any]],
) -> DisruptionFacts:
    """The facts from the objects the API server listed (PodDisruptionBudgets and pods of
    `namespaces`, nodes); pods being deleted are left out, as the adapter leaves them."""
    live = [p for p in pods if _meta(p).get("deletionTimestamp") is None]
    return DisruptionFacts(
        tuple(namespaces),
        tuple(sorted((_budget(b) for b in budgets), key=lambda b: (b.namespace, b.name))),
        tuple(
            PodFact(
                str(_meta(p).get("namespace")),
                str(_meta(p).get("name")),
                _labels(p),
                str(node) if (node := (p.get("spec") or {}).get("nodeName")) else None,
            )
            for p in live
        ),
        tuple(NodeFact(str(_meta(n).get("name")), _labels(n)) for n in nodes),
    )


def _taken(call: Call, facts: DisruptionFacts) -> list[PodFact]:
    """The pods `call` would take, as the adapter selects them (labels, then nodes)."""
    wanted = dict(call.labels)
    pods = [
        p
        for p in facts.pods
        if p.namespace == call.namespace and all(dict(p.labels).get(k) == v for k, v in wanted.items())
    ]
    if call.on_nodes is None:
        return pods
    on = dict(call.on_nodes)
    nodes = {n.name for n in facts.nodes if all(dict(n.labels).get(k) == v for k, v in on.items())}
    return [p for p in pods if p.node in nodes]


def _takes_pods(call: Call) -> bool:
    return call.resource == PODS and call.selected and not call.via_pods


def budget_lines(calls: Sequence[Call], facts: Mapping[str, ClusterFacts | None]) -> list[str]:
    """One line per PodDisruptionBudget the pod calls among `calls` (one action's) would break,
    saying what happens to it (ignored by a deletion, refused by the Eviction API); a line saying
    the budgets were not read where discovery did not read them. Empty when no call takes pods."""
    lines: list[str] = []
    taken: dict[tuple[str, Budget], set[str]] = {}
    evicts: dict[tuple[str, Budget], bool] = {}
    shared: dict[tuple[str, str, str], list[str]] = {}
    unread: list[str] = []
    failed: dict[str, str] = {}
    read: dict[str, DisruptionFacts] = {}
    for call in calls:
        if not _takes_pods(call):
            continue
        cluster = facts.get(call.context)
        found = None if cluster is None else cluster.disruption
        if found is None or call.namespace not in found.namespaces:
            where = f"{call.namespace} [{call.context}]"
            if where not in unread:
                unread.append(where)
            continue
        if found.unread:
            failed[call.context] = found.unread
            continue
        read[call.context] = found
        for pod in _taken(call, found):
            covering = [
                b
                for b in found.budgets
                if b.namespace == pod.namespace
                and b.selector is not None
                and b.selector.matches(dict(pod.labels))
            ]
            for budget in covering:
                taken.setdefault((call.context, budget), set()).add(pod.name)
                evicts[(call.context, budget)] = evicts.get((call.context, budget), False) or call.evict
            if call.evict and len(covering) > 1:
                shared[(call.context, pod.namespace, pod.name)] = [b.name for b in covering]
    for (context, budget), pods in sorted(taken.items(), key=lambda kv: (kv[0][0], kv[0][1].name)):
        if len(pods) <= budget.disruptions_allowed:
            continue
        allowed = (
            f"allows {budget.disruptions_allowed} disruption(s)"
            if budget.observed
            else "has no status from the disruption controller yet (counted as allowing none)"
        )
        outcome = (
            "the eviction API will refuse: the fault will fail"
            if evicts[(context, budget)]
            else "deletion ignores it"
        )
        lines.append(
            f"breaks PodDisruptionBudget {budget.namespace}/{budget.name} [{context}]: it {allowed}, "
            f"{len(pods)} of its pods taken — {outcome}"
        )
    for (context, namespace, pod_name), names in sorted(shared.items()):
        lines.append(
            f"pod {namespace}/{pod_name} [{context}] is covered by {len(names)} PodDisruptionBudgets "
            f"({', '.join(names)}): the eviction API refuses such a pod (500): the fault will fail"
        )
    for context, why in sorted(failed.items()):
        lines.append(
            f"note: PodDisruptionBudgets could not be read in [{context}] ({why}): which budget this "
            "breaks is not known"
        )
    if unread:
        lines.append(
            f"note: PodDisruptionBudgets not read in {', '.join(unread)} (plan --discover reads them): "
            "which budget this breaks is not known"
        )
    if read and not lines:
        lines.append("note: PodDisruptionBudgets read: none is broken")
    return lines
