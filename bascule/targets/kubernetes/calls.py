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
    latency, blackhole               Chaos Mesh NetworkChaos (delay, loss)
    http-error, throttle             Chaos Mesh HTTPChaos (replace the response code)
    hang                             Chaos Mesh PodChaos (pod-failure)
    identity                         HTTPChaos (error, slow) or NetworkChaos (timeout)
    data-loss                        only when allowed: delete the store's volumes, then its pods
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from bascule.faults import (
    Blackhole,
    ControlPlane,
    Crash,
    DataLoss,
    Dns,
    DnsAnswer,
    Fault,
    Flap,
    Hang,
    HttpError,
    Identity,
    IdentityMode,
    Latency,
    LatencyPer,
    Partition,
    ProviderOutage,
    Refuse,
    RegionOutage,
    ReplicationPause,
    Throttle,
)
from bascule.model.topology import Endpoint, Link, LinkPurpose, links
from bascule.plan.model import ActionOp, Plan, Touch
from bascule.targets.kubernetes.mapping import KubeMapping, RegionTarget, WorkloadKind, selector_text
from bascule.targets.kubernetes.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    DNS_CHAOS,
    FAULT_LABEL,
    HPAS,
    HTTP_CHAOS,
    NETWORK_CHAOS,
    NETWORK_POLICIES,
    NODES,
    POD_CHAOS,
    PODS,
    PVCS,
    RUN_LABEL,
    STATEFULSETS,
    Resource,
)

__all__ = [
    "COREDNS_NAME",
    "COREDNS_NAMESPACE",
    "Call",
    "CallPlan",
    "ChangeMode",
    "ClusterFacts",
    "FieldChange",
    "Permission",
    "PermissionScope",
    "Refusal",
    "RefusalRule",
    "Verb",
    "check_plan",
    "compute_calls",
    "coredns_block",
    "object_name",
    "permissions",
    "probe_permissions",
    "render_plan_calls",
]

COREDNS_NAMESPACE: Final = "kube-system"
COREDNS_NAME: Final = "coredns"
_COREFILE: Final = ("data", "Corefile")


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


def _labels(labels: Mapping[str, str]) -> Labels:
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
        if self.via_pods:
            text += " claimed by pods"
        if self.labels:
            text += f" -l {selector_text(dict(self.labels))}"
        if self.on_nodes is not None:
            nodes = selector_text(dict(self.on_nodes)) or "(any label)"
            text += f" on nodes -l {nodes}"
        return text

    def describe(self) -> str:
        text = f"{self.verb.value} {self.resource.kind} {self.target_text()} [{self.context}]"
        if self.changes:
            text += ": " + ", ".join(c.describe() for c in self.changes)
        if self.why:
            text += f" — {self.why}"
        return text

    def reads(self) -> list[tuple[Resource, Verb]]:
        """What the adapter reads to carry the call out (and to record the prior state first)."""
        out: list[tuple[Resource, Verb]] = []
        if self.selected:
            out.append((PODS if self.via_pods else self.resource, Verb.LIST))
            if self.on_nodes is not None:
                out.append((NODES, Verb.LIST))
            if self.via_pods:
                out.append((self.resource, Verb.GET))
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


class _RefusedError(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def object_name(run_id: str, key: str, index: int) -> str:
    """The name of the `index`-th object a fault creates: ``bascule-<run>-<key>-<n>``, DNS-safe."""
    slug = re.sub(r"[^a-z0-9-]+", "-", key.lower()).strip("-")
    return f"bascule-{run_id}-{slug}-{index}"[:63].rstrip("-")


def coredns_block(hosts: Sequence[str], answer: DnsAnswer, run_id: str, key: str) -> str:
    """The Corefile text a CoreDNS override appends: one server block per host, answering as the
    fault says (``template`` sets the rcode; ``erratic`` drops every query). Starts with a newline
    and a comment naming the run, so that it can be found and removed exactly."""
    lines = [f"# {RUN_LABEL}={run_id} {FAULT_LABEL}={key}"]
    for host in hosts:
        lines.append(f"{host}:53 {{")
        if answer is DnsAnswer.DROP:
            lines += ["    erratic {", "        drop 1", "    }"]
        else:
            rcode = {
                DnsAnswer.NXDOMAIN: "NXDOMAIN",
                DnsAnswer.NODATA: "NOERROR",
                DnsAnswer.SERVFAIL: "SERVFAIL",
            }[answer]
            lines += ["    template ANY ANY {", f"        rcode {rcode}", "    }"]
        lines.append("}")
    return "\n" + "\n".join(lines) + "\n"


class _Builder:
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

    def refuse(self, rule: RefusalRule, message: str) -> _RefusedError:
        return _RefusedError(Refusal(rule, message))

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
        return _labels(self.mapping.pod_labels(name, region_id))

    def on_nodes(self, region_id: str) -> Labels | None:
        region = self.region(region_id)
        shared = len(self.mapping.regions_in(region.context)) > 1
        return _labels(region.nodes) if shared or region.nodes else None

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
                labels=_labels(region.nodes),
                changes=(FieldChange(("spec", "unschedulable"), ChangeMode.SET, True),),
                required=True,
                why="cordon: nothing new is scheduled there",
            )
        )

    def delete_pods(self, name: str, region_id: str, *, required: bool, why: str) -> None:
        region = self.region(region_id)
        self.calls.append(
            Call(
                Verb.DELETE,
                PODS,
                region.context,
                region_id,
                self.namespace(name),
                labels=self.pods(name, region_id),
                on_nodes=self.on_nodes(region_id),
                required=required,
                why=why,
            )
        )

    def chaos_selector(self, name: str, region_id: str) -> dict[str, Any]:
        return {"namespaces": [self.namespace(name)], "labelSelectors": dict(self.pods(name, region_id))}


# -- NetworkPolicy peers ----------------------------------------------------------------------------


def _except_groups(groups: Sequence[Labels]) -> list[dict[str, Any]]:
    """Peers matching every pod that is in none of `groups` (each a conjunction of labels).

    NetworkPolicies only allow, and their peers are OR-ed: "in none of the groups" is turned into
    its disjunctive form — one pod selector per choice of one label from each group, each saying
    that label differs (``NotIn`` also matches pods without the key)."""
    if not groups:
        return [{"namespaceSelector": {}}]
    peers: list[dict[str, Any]] = []
    seen: set[tuple[tuple[str, tuple[str, ...]], ...]] = set()
    for choice in itertools.product(*groups):
        by_key: dict[str, set[str]] = {}
        for key, value in choice:
            by_key.setdefault(key, set()).add(value)
        term = tuple(sorted((k, tuple(sorted(v))) for k, v in by_key.items()))
        if term in seen:
            continue
        seen.add(term)
        expressions = [{"key": k, "operator": "NotIn", "values": list(v)} for k, v in term]
        peers.append({"namespaceSelector": {}, "podSelector": {"matchExpressions": expressions}})
    return peers


def _ip_blocks(excluded: Iterable[str]) -> list[dict[str, Any]]:
    """Every address outside the cluster but `excluded` (CIDRs), IPv4 and IPv6."""
    v4 = sorted({c for c in excluded if ipaddress.ip_network(c).version == 4})
    v6 = sorted({c for c in excluded if ipaddress.ip_network(c).version == 6})
    blocks: list[dict[str, Any]] = []
    for everything, excepts in (("0.0.0.0/0", v4), ("::/0", v6)):
        block: dict[str, Any] = {"cidr": everything}
        if excepts:
            block["except"] = excepts
        blocks.append({"ipBlock": block})
    return blocks


# -- one planner per kind -----------------------------------------------------------------------------


def _groups(touch: Touch) -> list[tuple[str, str]]:
    return sorted({(r.component, r.region) for r in touch.replicas})


def _whole(b: _Builder, touch: Touch) -> list[tuple[str, str]]:
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


def _outage(b: _Builder, fault: Fault, touch: Touch) -> None:
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


def _crash(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Crash)
    for name, region_id in _whole(b, touch):
        b.region(region_id)
        b.workload(name, region_id)
        b.delete_pods(name, region_id, required=True, why="killed")
    b.notes.append(
        "pods come back when their controller recreates them: at once, not after "
        f"restart_after={fault.restart_after:g}s (nor at all while the region is cordoned)"
    )


def _hang(b: _Builder, fault: Fault, touch: Touch) -> None:
    for name, region_id in _whole(b, touch):
        region = b.region(region_id)
        b.workload(name, region_id)
        b.need_chaos(region.context, POD_CHAOS, "freeze pods")
        spec = {"action": "pod-failure", "mode": "all", "selector": b.chaos_selector(name, region_id)}
        b.create(POD_CHAOS, region.context, region_id, b.namespace(name), spec, "pods frozen (pod-failure)")


def _control_plane(b: _Builder, fault: Fault, touch: Touch) -> None:
    for region_id in touch.regions:
        b.cordon(region_id)
    for region_id in touch.regions:
        names = {r.component for r in touch.replicas if r.region == region_id}
        for name in b.mapped(names, region_id):
            region = b.region(region_id)
            current = ("status", "currentReplicas")
            b.calls.append(
                Call(
                    Verb.PATCH,
                    HPAS,
                    region.context,
                    region_id,
                    b.namespace(name),
                    labels=b.pods(name, region_id),
                    changes=(
                        FieldChange(("spec", "minReplicas"), ChangeMode.COPY, source=current),
                        FieldChange(("spec", "maxReplicas"), ChangeMode.COPY, source=current),
                    ),
                    why="pinned: no scaling",
                )
            )


def _endpoints_in(touch: Touch, region_id: str) -> set[str]:
    out: set[str] = set()
    for hop in touch.hops:
        for end in (hop.source, hop.target):
            if end is not None and end.region == region_id:
                out.add(end.name)
    return out


def _partition(b: _Builder, fault: Fault, touch: Touch) -> None:
    sides = sorted(touch.regions)
    if len(sides) != 2:
        raise b.refuse(RefusalRule.UNSUPPORTED, f"a partition joins two regions, got {', '.join(sides)}")
    for side, peer in ((sides[0], sides[1]), (sides[1], sides[0])):
        region, other = b.region(side), b.region(peer)
        same = region.context == other.context
        if not same and not other.cidrs:
            raise b.refuse(
                RefusalRule.UNSUPPORTED,
                f"{side} and {peer} are in different clusters: give 'cidrs' for {peer} in the target "
                "file (the addresses its traffic comes from) so that a NetworkPolicy can cut it",
            )
        if same and not other.cidrs:
            b.notes.append(
                f"traffic from outside the cluster stays allowed into {side} by ipBlock 0.0.0.0/0; where the "
                f"CNI matches pod addresses with ipBlocks (Calico), give 'cidrs' for {peer} or the cut leaks"
            )
        groups = [_labels(other.pods)] if same else []
        peers = _except_groups(groups) + _ip_blocks(other.cidrs)
        for name in b.mapped(_endpoints_in(touch, side), side):
            spec = {
                "podSelector": {"matchLabels": dict(b.pods(name, side))},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": peers}],
                "egress": [{"to": peers}],
            }
            b.create(
                NETWORK_POLICIES, region.context, side, b.namespace(name), spec, f"nothing to or from {peer}"
            )


def _replication(b: _Builder, fault: Fault, touch: Touch) -> None:
    by_target: dict[Endpoint, set[Endpoint]] = {}
    for hop in touch.hops:
        if hop.purpose is LinkPurpose.REPLICATE and hop.source is not None:
            by_target.setdefault(hop.target, set()).add(hop.source)
    for target, sources in sorted(by_target.items()):
        region = b.region(target.region)
        b.workload(target.name, target.region)
        groups: list[Labels] = []
        cidrs: list[str] = []
        for source in sorted(sources):
            other = b.region(source.region)
            if other.context == region.context:
                b.workload(source.name, source.region)
                groups.append(b.pods(source.name, source.region))
            elif other.cidrs:
                cidrs += other.cidrs
                b.notes.append(
                    f"{source.region} is another cluster: every connection from its addresses into "
                    f"{target} is cut, not only replication"
                )
            else:
                raise b.refuse(
                    RefusalRule.UNSUPPORTED,
                    f"{source.region} replicates into {target} from another cluster: give 'cidrs' for "
                    f"{source.region} in the target file so that a NetworkPolicy can cut it",
                )
        spec = {
            "podSelector": {"matchLabels": dict(b.pods(target.name, target.region))},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": _except_groups(groups) + _ip_blocks(cidrs)}],
        }
        shown = ", ".join(str(s) for s in sorted(sources))
        b.create(
            NETWORK_POLICIES,
            region.context,
            target.region,
            b.namespace(target.name),
            spec,
            f"nothing in from {shown}",
        )


def _refuse(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Refuse)
    if fault.new_connections_only:
        raise b.refuse(
            RefusalRule.UNSUPPORTED,
            "refuse with new_connections_only: scaling a workload to zero also ends its pooled connections",
        )
    for target in _unrestricted_targets(b, touch):
        region = b.region(target.region)
        b.workload(target.name, target.region)
        workload = b.mapping.workload(target.name)
        assert workload is not None
        resource = DEPLOYMENTS if workload.kind is WorkloadKind.DEPLOYMENT else STATEFULSETS
        b.calls.append(
            Call(
                Verb.PATCH,
                resource,
                region.context,
                target.region,
                workload.namespace,
                labels=b.pods(target.name, target.region),
                changes=(FieldChange(("spec", "replicas"), ChangeMode.SET, 0),),
                required=True,
                why="scaled to zero: its Services have no endpoints and refuse connections",
            )
        )


def _unrestricted_targets(b: _Builder, touch: Touch) -> list[Endpoint]:
    """The callees of the touched hops, refusing a touch that covers some of their callers only."""
    out: list[Endpoint] = []
    for target, touched in _by_target(touch.hops).items():
        restricted = _restriction(b, target, touched)
        if restricted is not None:
            shown = ", ".join(str(s) for s in sorted(restricted))
            raise b.refuse(
                RefusalRule.UNSUPPORTED,
                f"{b.kind} on Kubernetes acts on {target} for all its callers, not for {shown} only",
            )
        out.append(target)
    return out


def _by_target(touched: Iterable[Link]) -> dict[Endpoint, set[Endpoint | None]]:
    out: dict[Endpoint, set[Endpoint | None]] = {}
    for hop in touched:
        out.setdefault(hop.target, set()).add(hop.source)
    return dict(sorted(out.items()))


def _restriction(b: _Builder, target: Endpoint, touched: set[Endpoint | None]) -> set[Endpoint] | None:
    """None when `touched` is every caller of `target`; else the callers touched."""
    every = {h.source for h in links(b.mapping.design) if h.target == target}
    if touched >= every:
        return None
    if None in touched:
        raise b.refuse(RefusalRule.UNSUPPORTED, f"{b.kind} cannot single out the clients of {target}")
    return {s for s in touched if s is not None}


def _chaos_on_hops(
    b: _Builder, touch: Touch, resource: Resource, spec: dict[str, Any], why: str, *, http: bool
) -> None:
    for target, touched in _by_target(touch.hops).items():
        region = b.region(target.region)
        b.workload(target.name, target.region)
        b.need_chaos(region.context, resource, f"carry {b.kind} out")
        namespace = b.namespace(target.name)
        base = {**spec, "mode": "all", "selector": b.chaos_selector(target.name, target.region)}
        if http:
            workload = b.mapping.workload(target.name)
            assert workload is not None
            if workload.port is None:
                raise b.refuse(
                    RefusalRule.UNMAPPED,
                    f"{b.kind} uses HTTPChaos, which needs the port {target.name} serves HTTP on: give "
                    f"'port' for {target.name} in the target file",
                )
            base["port"] = workload.port
        restricted = _restriction(b, target, touched)
        if restricted is None:
            b.create(resource, region.context, target.region, namespace, base, why)
            continue
        if http:
            raise b.refuse(
                RefusalRule.UNSUPPORTED,
                f"HTTPChaos cannot tell {target}'s callers apart; {b.kind} on a link or from one region "
                "needs a component or region target",
            )
        external: list[str] = []
        for source in sorted(restricted):
            other = b.region(source.region)
            if other.context == region.context:
                b.workload(source.name, source.region)
                peer = {"mode": "all", "selector": b.chaos_selector(source.name, source.region)}
                b.create(
                    resource,
                    region.context,
                    target.region,
                    namespace,
                    {**base, "target": peer},
                    f"{why}, to {source}",
                )
            elif other.cidrs:
                external += [c for c in other.cidrs if c not in external]
            else:
                raise b.refuse(
                    RefusalRule.UNSUPPORTED,
                    f"{source.region} is another cluster: give 'cidrs' for it in the target file so that "
                    f"{b.kind} can single out its traffic",
                )
        if external:
            b.create(
                resource,
                region.context,
                target.region,
                namespace,
                {**base, "externalTargets": external},
                f"{why}, to {', '.join(external)}",
            )


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _latency(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Latency)
    if fault.per is LatencyPer.CONNECTION:
        raise b.refuse(
            RefusalRule.UNSUPPORTED, "latency per connection: NetworkChaos delays packets, not connections"
        )
    delay = {"latency": _ms(fault.fixed), "jitter": _ms(fault.jitter), "correlation": "0"}
    spec = {"action": "delay", "delay": delay, "direction": "to"}
    _chaos_on_hops(b, touch, NETWORK_CHAOS, spec, f"answers delayed {_ms(fault.fixed)}", http=False)


def _blackhole(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Blackhole)
    if fault.new_connections_only:
        raise b.refuse(
            RefusalRule.UNSUPPORTED,
            "blackhole with new_connections_only: NetworkChaos drops every packet, pooled connections too",
        )
    spec = {"action": "loss", "loss": {"loss": "100", "correlation": "0"}, "direction": "both"}
    _chaos_on_hops(b, touch, NETWORK_CHAOS, spec, "every packet dropped", http=False)


def _whole_ratio(b: _Builder, ratio: float) -> None:
    if ratio < 1.0:
        raise b.refuse(
            RefusalRule.UNSUPPORTED,
            f"{b.kind} at ratio {ratio:g}: HTTPChaos answers every matching request, not a fraction",
        )


def _first_status(b: _Builder, statuses: Sequence[int]) -> int:
    if len(statuses) > 1:
        b.notes.append(f"HTTPChaos answers one status: {statuses[0]} (of {', '.join(map(str, statuses))})")
    return statuses[0]


def _http_error(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, HttpError)
    _whole_ratio(b, fault.ratio)
    code = _first_status(b, fault.statuses)
    spec = {"target": "Response", "path": "*", "replace": {"code": code}}
    _chaos_on_hops(b, touch, HTTP_CHAOS, spec, f"answers replaced by {code}", http=True)


def _throttle(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Throttle)
    _whole_ratio(b, fault.ratio)
    replace = {
        "code": 429,
        "headers": {"Retry-After": str(max(1, math.ceil(fault.retry_after)))},
        "body": base64.b64encode(fault.body.encode()).decode(),
    }
    spec = {"target": "Response", "path": "*", "replace": replace}
    _chaos_on_hops(b, touch, HTTP_CHAOS, spec, "answers replaced by 429 with Retry-After", http=True)


def _identity(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Identity)
    match fault.mode:
        case IdentityMode.ERROR:
            code = _first_status(b, fault.statuses)
            spec: dict[str, Any] = {"target": "Response", "path": "*", "replace": {"code": code}}
            _chaos_on_hops(b, touch, HTTP_CHAOS, spec, f"token answers replaced by {code}", http=True)
        case IdentityMode.SLOW:
            spec = {"target": "Response", "path": "*", "delay": _ms(fault.latency)}
            _chaos_on_hops(
                b, touch, HTTP_CHAOS, spec, f"token answers delayed {_ms(fault.latency)}", http=True
            )
        case IdentityMode.TIMEOUT:
            spec = {"action": "loss", "loss": {"loss": "100", "correlation": "0"}, "direction": "both"}
            _chaos_on_hops(b, touch, NETWORK_CHAOS, spec, "token service unreachable", http=False)


def _dns(b: _Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Dns)
    if not fault.new_connections_only:
        raise b.refuse(
            RefusalRule.UNSUPPORTED,
            "dns without new_connections_only: Kubernetes cannot end the connections already pooled",
        )
    callers = sorted({(h.source.name, h.source.region) for h in touch.hops if h.source is not None})
    contexts = sorted(
        {b.region(r).context for _, r in callers} or {b.region(r).context for r in touch.regions}
    )
    served = [b.has(c, DNS_CHAOS) for c in contexts]
    servfail = fault.answer is DnsAnswer.SERVFAIL
    opted_in = b.mapping.target.allow_coredns_override
    if servfail and False not in served and (True in served or not opted_in):
        for name, region_id in callers:
            if b.mapping.workload(name) is None:
                b.notes.append(f"{name}@{region_id} is not mapped: its lookups are left alone")
                continue
            region = b.region(region_id)
            b.workload(name, region_id)
            b.need_chaos(region.context, DNS_CHAOS, "fail lookups")
            spec = {
                "action": "error",
                "mode": "all",
                "patterns": list(touch.hosts),
                "selector": b.chaos_selector(name, region_id),
            }
            b.create(
                DNS_CHAOS,
                region.context,
                region_id,
                b.namespace(name),
                spec,
                "lookups of the hosts fail (SERVFAIL)",
            )
        return
    if not b.mapping.target.allow_coredns_override:
        why = (
            "DNSChaos answers SERVFAIL only" if fault.answer is not DnsAnswer.SERVFAIL else "no DNSChaos here"
        )
        raise b.refuse(
            RefusalRule.DNS_NOT_ALLOWED,
            f"dns answering {fault.answer.value}: {why}, and the target file does not allow the CoreDNS "
            "override: set 'allow_coredns_override: true' (bascule then appends server blocks to "
            f"{COREDNS_NAMESPACE}/{COREDNS_NAME} and restores it byte for byte) or install Chaos Mesh",
        )
    block = coredns_block(touch.hosts, fault.answer, b.run_id, b.key)
    for context in contexts:
        region_id = next(
            r for r in sorted(touch.regions) + [r for _, r in callers] if b.region(r).context == context
        )
        b.calls.append(
            Call(
                Verb.PATCH,
                CONFIGMAPS,
                context,
                region_id,
                COREDNS_NAMESPACE,
                COREDNS_NAME,
                changes=(FieldChange(_COREFILE, ChangeMode.APPEND, block),),
                why=f"CoreDNS answers {fault.answer.value} for {', '.join(touch.hosts)} (opted in)",
            )
        )
    b.notes.append("CoreDNS applies the change when its reload plugin next reads the ConfigMap (about 30 s)")


def _data_loss(b: _Builder, fault: Fault, touch: Touch) -> None:
    if not b.mapping.target.allow_data_loss:
        raise b.refuse(
            RefusalRule.DATA_LOSS_NOT_ALLOWED,
            "data-loss deletes a store's volumes, which nothing can bring back: set "
            "'allow_data_loss: true' in the target file to allow it",
        )
    for name, region_id in _whole(b, touch):
        region = b.region(region_id)
        b.workload(name, region_id)
        b.calls.append(
            Call(
                Verb.DELETE,
                PVCS,
                region.context,
                region_id,
                b.namespace(name),
                labels=b.pods(name, region_id),
                on_nodes=b.on_nodes(region_id),
                via_pods=True,
                why="the store's volumes are deleted (irreversible)",
            )
        )
        b.delete_pods(name, region_id, required=True, why="restarted on fresh, empty volumes")
    b.notes.append("irreversible: reverting restores nothing; the store refills by replication or rebuild")


_Planner = Callable[[_Builder, Fault, Touch], None]

_PLANNERS: dict[type[Fault], _Planner] = {
    RegionOutage: _outage,
    ProviderOutage: _outage,
    Crash: _crash,
    Hang: _hang,
    ControlPlane: _control_plane,
    Partition: _partition,
    ReplicationPause: _replication,
    Refuse: _refuse,
    Latency: _latency,
    Blackhole: _blackhole,
    HttpError: _http_error,
    Throttle: _throttle,
    Identity: _identity,
    Dns: _dns,
    DataLoss: _data_loss,
}


def compute_calls(
    fault: Fault,
    touch: Touch,
    mapping: KubeMapping,
    facts: Mapping[str, ClusterFacts | None],
    *,
    run_id: str,
    key: str,
) -> CallPlan:
    """The calls that put `fault` in force on `touch` (a flap's inner fault for a flap), or why not.

    `facts` says what discovery found per context; a context missing from it counts as not
    checked (Chaos Mesh calls are then planned with a note). `run_id` and `key` name what is
    created. Pure: makes no request."""
    inner = fault.fault if isinstance(fault, Flap) else fault
    builder = _Builder(mapping, facts, run_id, key, inner.kind)
    if touch.empty:
        return CallPlan(inner.kind, notes=("touches nothing in this design",))
    planner = _PLANNERS.get(type(inner))
    try:
        if planner is None:
            raise builder.refuse(
                RefusalRule.UNSUPPORTED, f"the Kubernetes target has no adapter for {inner.kind!r}"
            )
        planner(builder, inner, touch)
    except _RefusedError as refused:
        return CallPlan(inner.kind, refusal=refused.refusal)
    return CallPlan(inner.kind, tuple(builder.calls), tuple(dict.fromkeys(builder.notes)))


def check_plan(
    plan: Plan, mapping: KubeMapping, facts: Mapping[str, ClusterFacts | None], *, run_id: str = "plan"
) -> list[str]:
    """Every phase of `plan` the clusters cannot carry out, each with the reason. Pure."""
    if plan.design_id != mapping.design.id:
        return [f"the plan is for design {plan.design_id!r}, not {mapping.design.id!r}"]
    out: list[str] = []
    for phase in plan.phases:
        found = compute_calls(phase.fault, phase.touch, mapping, facts, run_id=run_id, key=f"p{phase.index}")
        if found.refusal is not None:
            out.append(f"phase {phase.index} ({phase.name}, {phase.kind}): {found.refusal}")
    return out


def render_plan_calls(
    plan: Plan, mapping: KubeMapping, facts: Mapping[str, ClusterFacts | None], *, run_id: str = "plan"
) -> list[str]:
    """What `bascule plan --target kubernetes` prints: each action with the calls it makes."""
    lines: list[str] = []
    for action in plan.actions:
        phase = plan.phases[action.phase]
        head = (
            f"{action.offset:8.2f}s {action.op.value:<6} {action.key} {action.fault.kind} on {phase.selector}"
        )
        lines.append(head)
        found = compute_calls(action.fault, phase.touch, mapping, facts, run_id=run_id, key=action.key)
        if action.op is ActionOp.APPLY:
            lines += [f"    {line}" for line in found.lines()]
        elif found.refusal is None:
            for call in reversed(found.calls):
                undo = ", ".join(f"{verb.value} {res.kind}" for res, verb in call.undo()) or "nothing (final)"
                lines.append(f"    undo {call.verb.value} {call.resource.kind} {call.target_text()}: {undo}")
    return lines


# -- RBAC -------------------------------------------------------------------------------------------------


class PermissionScope(StrEnum):
    CLUSTER = "cluster"
    """Cluster-scoped resources (nodes): a ClusterRole bound cluster-wide."""
    WORKLOADS = "workloads"
    """Namespaced resources in the mapped namespaces: a ClusterRole bound by RoleBindings there."""
    COREDNS = "coredns"
    """kube-system/coredns only: a Role in kube-system with resourceNames."""


@dataclass(frozen=True, order=True)
class Permission:
    scope: PermissionScope
    group: str
    resource: str
    verb: Verb
    name: str | None = None


def _permission(call: Call, resource: Resource, verb: Verb) -> Permission:
    if not resource.namespaced:
        return Permission(PermissionScope.CLUSTER, resource.group, resource.plural, verb)
    if call.namespace == COREDNS_NAMESPACE and call.name == COREDNS_NAME and resource == CONFIGMAPS:
        return Permission(PermissionScope.COREDNS, resource.group, resource.plural, verb, COREDNS_NAME)
    return Permission(PermissionScope.WORKLOADS, resource.group, resource.plural, verb)


def permissions(calls: Iterable[Call]) -> frozenset[Permission]:
    """Every permission carrying out and reverting `calls` needs: the call, its reads, its undo."""
    out: set[Permission] = set()
    for call in calls:
        for resource, verb in [(call.resource, call.verb), *call.reads(), *call.undo()]:
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
