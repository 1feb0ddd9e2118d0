"""The Kubernetes target file: where a design's regions and components live in real clusters, and
what bascule may do there.

    contexts: [aws-east, scw-par]            # kube contexts bascule may act on (nothing else)
    kubeconfig: ~/.kube/config               # optional; else $KUBECONFIG, then ~/.kube/config
    regions:
      aws/us-east-1: {context: aws-east}     # one cluster per region…
      scaleway/fr-par:
        context: scw-par
        nodes: {topology.kubernetes.io/region: fr-par}   # …or one region per node label
        pods: {bascule.io/region: scaleway-fr-par}       # the labels its pods carry
        cidrs: [51.15.0.0/16]                            # where its traffic comes from, seen outside
    components:
      gateway: {namespace: rag, selector: {app: gateway}, port: 8080, kind: Deployment}
      llm: {namespace: rag, selector: {app: llm}, service: llm}   # its Service, if not rendered
    protected_namespaces: [payments]         # on top of kube-system, kube-public, kube-node-lease
    allow_coredns_override: false            # dns faults may edit kube-system/coredns
    allow_data_loss: false                   # data-loss may delete a store's volumes
    cluster_domain: cluster.local            # dns faults name Services in it
    pod_disruption: delete                   # or evict: through the Eviction API (budgets respected)

A component's ``selector`` selects its pods and its workloads (Deployments, StatefulSets) by their
labels, in its namespace, and their HPAs by ``spec.scaleTargetRef``; a region's ``pods`` labels are
added to it in that region.
When several regions share a context, each needs ``nodes`` (whose nodes are its) and ``pods``
(NetworkPolicies select pods by label, never by node).

``parse_target`` is pure (text in, `TargetFile` out, every problem at ``file:line:column``);
``bind`` checks a target file against a design and returns the `KubeMapping` the call planner reads.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bascule.errors import PathElement, Problem, ScenarioError
from bascule.model.catalog import CATALOG
from bascule.model.design import Design
from bascule.model.loading import validate_model
from bascule.model.selector import RegionId
from bascule.model.source import parse_yaml
from bascule.model.suggest import unknown_name

__all__ = [
    "ALWAYS_PROTECTED",
    "KubeMapping",
    "PodDisruption",
    "RegionTarget",
    "TargetFile",
    "WorkloadKind",
    "WorkloadTarget",
    "bind",
    "parse_target",
    "read_target",
    "selector_text",
]

ALWAYS_PROTECTED: Final = frozenset({"kube-system", "kube-public", "kube-node-lease"})
"""Namespaces no fault may act in, whatever the target file says."""

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

Namespace = Annotated[str, Field(pattern=_DNS_LABEL)]
Labels = dict[str, str]


def _check_labels(value: Labels) -> Labels:
    for key, label in value.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"{key!r} is not a valid label key")
        if not isinstance(label, str) or not _LABEL_VALUE.match(label):
            raise ValueError(f"{label!r} (for {key!r}) is not a valid label value")
    return value


def selector_text(labels: Mapping[str, str]) -> str:
    """``{app: gateway, tier: web}`` → ``app=gateway,tier=web`` (sorted): a ``labelSelector``."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionTarget(_Spec):
    """Where one design region lives."""

    context: str
    nodes: Labels = {}
    """Labels of this region's nodes. Empty: every node of the context is the region's."""
    pods: Labels = {}
    """Labels this region's pods carry, added to each component's selector in the region."""
    cidrs: tuple[str, ...] = ()
    """Addresses this region's traffic comes from as seen from another cluster (node or NAT ranges),
    for partitions and link faults between clusters, where pods cannot be selected by label."""

    _labels = field_validator("nodes", "pods")(_check_labels)

    @field_validator("cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network in CIDR notation: {exc}") from exc
        return value


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"


class WorkloadTarget(_Spec):
    """Where one component (or shared dependency) runs: its namespace and its labels."""

    namespace: Namespace
    selector: Labels
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT
    """What runs its pods: ``refuse`` scales it to zero replicas, then back."""
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """The port its pods serve HTTP on: needed by Chaos Mesh's HTTPChaos (http-error, throttle,
    identity)."""
    service: Annotated[str, Field(pattern=_DNS_LABEL)] | None = None
    """The Service its callers resolve, in its namespace, in every region's cluster: dns faults act
    on ``<service>.<namespace>.svc.<cluster_domain>`` (``svc.clusterset.local`` from another
    cluster). Unset: ``<component>--<region slug>``, the Service `bascule render` writes."""

    @field_validator("selector")
    @classmethod
    def _some_labels(cls, value: Labels) -> Labels:
        if not value:
            raise ValueError("give at least one label: an empty selector would select every pod")
        return _check_labels(value)


class PodDisruption(StrEnum):
    """How faults take pods down."""

    DELETE = "delete"
    """DELETE: what a crash is — PodDisruptionBudgets are ignored."""
    EVICT = "evict"
    """The Eviction API (``pods/<name>/eviction``): a voluntary disruption, which the API server
    refuses while a PodDisruptionBudget allows none."""


class TargetFile(_Spec):
    """A Kubernetes target file, as written."""

    contexts: tuple[str, ...]
    kubeconfig: str | None = None
    regions: dict[RegionId, RegionTarget]
    components: dict[str, WorkloadTarget] = {}
    protected_namespaces: tuple[Namespace, ...] = ()
    allow_coredns_override: bool = False
    allow_data_loss: bool = False
    cluster_domain: str = Field(default="cluster.local", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    """The clusters' DNS domain (``bascule render --cluster-domain``): dns faults name Services in it."""
    pod_disruption: PodDisruption = PodDisruption.DELETE
    entries: dict[RegionId, str] = {}
    """Where clients reach each region's entry point (its gateway's ingress, a load balancer): the
    URLs `bascule run --target kubernetes` sends load and probes to, through the edge."""
    stores: dict[RegionId, tuple[str, ...]] = {}
    """Base URLs of each region's store replicas, to read canary writes back after a run; without
    them, a run measures no RPO unless its data probes say where to read (``read_back``)."""

    @field_validator("entries")
    @classmethod
    def _entry_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for region, url in value.items():
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{region}: {url!r} is not an http(s) URL")
        return value

    @field_validator("contexts")
    @classmethod
    def _listed(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one context: bascule acts on listed contexts only")
        if len(set(value)) != len(value):
            raise ValueError("a context is listed twice")
        return value

    def check(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """Cross-references within the file: contexts listed, regions sharing a context told apart."""
        problems: list[tuple[tuple[PathElement, ...], str]] = []
        for rid, region in self.regions.items():
            if region.context not in self.contexts:
                problems.append(
                    (
                        ("regions", rid, "context"),
                        f"context {region.context!r} is not listed in 'contexts' "
                        f"({', '.join(self.contexts)}): bascule acts on listed contexts only",
                    )
                )
        shared = Counter(region.context for region in self.regions.values())
        seen_nodes: dict[tuple[str, str], str] = {}
        for rid, region in self.regions.items():
            if shared[region.context] < 2:
                continue
            for field in ("nodes", "pods"):
                if not getattr(region, field):
                    problems.append(
                        (
                            ("regions", rid, field),
                            f"{rid} shares context {region.context!r} with another region: give its "
                            f"'{field}' labels so that its nodes and pods can be told apart",
                        )
                    )
            key = (region.context, selector_text(region.nodes))
            if region.nodes and key in seen_nodes:
                problems.append(
                    (
                        ("regions", rid, "nodes"),
                        f"{rid} selects the same nodes as {seen_nodes[key]} in {region.context!r}",
                    )
                )
            seen_nodes.setdefault(key, rid)
        for i, namespace in enumerate(self.protected_namespaces):
            if namespace in ALWAYS_PROTECTED:
                problems.append(
                    (("protected_namespaces", i), f"{namespace!r} is always protected; no need to list it")
                )
        return problems

    def check_design(self, design: Design) -> list[tuple[tuple[PathElement, ...], str]]:
        """What does not fit `design`: an unmapped design region, a component the design lacks."""
        problems: list[tuple[tuple[PathElement, ...], str]] = []
        for spec in design.regions:
            if spec.id not in self.regions:
                problems.append(
                    (("regions",), f"design region {spec.id!r} is not mapped to a context: add it here")
                )
        for rid in self.regions:
            if rid not in design.region_map and rid not in CATALOG:
                problems.append(
                    (("regions", rid), unknown_name("region", rid, [s.id for s in design.regions]))
                )
        names = list(design.components) + list(design.dependencies)
        for name in self.components:
            if name not in names:
                problems.append((("components", name), unknown_name("component or dependency", name, names)))
        declared = [s.id for s in design.regions]
        for field in ("entries", "stores"):
            for rid in getattr(self, field):
                if rid not in design.region_map:
                    problems.append(((field, rid), unknown_name("region", rid, declared)))
        return problems


def parse_target(text: str, file: str = "<target>", design: Design | None = None) -> TargetFile:
    """A validated target file; with `design`, also checked against it. Raises `ScenarioError`
    carrying every problem at ``file:line:column``."""
    data, source = parse_yaml(text, file)
    target = validate_model(TargetFile, data, source)
    found = target.check() + (target.check_design(design) if design is not None else [])
    if found:
        raise ScenarioError([source.problem(path, message) for path, message in found])
    return target


def read_target(path: str | Path, design: Design | None = None) -> TargetFile:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([_no_file(str(path), exc)]) from exc
    return parse_target(text, str(path), design)


def _no_file(path: str, exc: OSError) -> Problem:
    message = "no such file" if isinstance(exc, FileNotFoundError) else f"cannot read the file: {exc}"
    return Problem(message, (), path)


@dataclass(frozen=True)
class KubeMapping:
    """A target file bound to the design it maps: what the call planner reads."""

    target: TargetFile
    design: Design

    @property
    def protected(self) -> frozenset[str]:
        return ALWAYS_PROTECTED | frozenset(self.target.protected_namespaces)

    @property
    def contexts(self) -> tuple[str, ...]:
        return self.target.contexts

    def region(self, region_id: str) -> RegionTarget | None:
        return self.target.regions.get(region_id)

    def workload(self, name: str) -> WorkloadTarget | None:
        return self.target.components.get(name)

    def pod_labels(self, name: str, region_id: str) -> dict[str, str]:
        """The labels of component `name`'s pods in a region: its selector plus the region's pod labels."""
        workload = self.target.components[name]
        region = self.target.regions[region_id]
        return {**workload.selector, **region.pods}

    def namespaces(self) -> list[str]:
        """The namespaces the components are mapped to, protected ones left out (never acted on)."""
        return sorted({w.namespace for w in self.target.components.values()} - self.protected)

    def regions_in(self, context: str) -> list[str]:
        return [rid for rid, region in self.target.regions.items() if region.context == context]

    def placed(self, name: str, region_id: str) -> int:
        """Replicas the design places for `name` in a region (its ceiling; 0 when not placed)."""
        if name in self.design.components:
            placement = self.design.components[name].replicas.get(region_id)
            return placement.ceiling if placement is not None else 0
        dep = self.design.dependencies.get(name)
        return 1 if dep is not None and dep.region == region_id else 0


def bind(target: TargetFile, design: Design) -> KubeMapping:
    """Check `target` against `design` (raises `ScenarioError`, unplaced) and bind them."""
    problems = target.check() + target.check_design(design)
    if problems:
        raise ScenarioError([Problem(message, path) for path, message in problems])
    return KubeMapping(target, design)
