"""The ``kubernetes-ready`` probe: ready replicas of each mapped workload in each region.

A region's pods are those its component selector (plus the region's pod labels) matches, on the
region's nodes when several regions share a cluster. A pod counts as ready when its ``Ready``
condition is ``True`` and it is not being deleted. `count_ready` is pure; `read_readiness` lists
pods (and nodes) through each context's client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bascule.targets.kubernetes.cluster import KubeApi
from bascule.targets.kubernetes.mapping import KubeMapping
from bascule.targets.kubernetes.resources import NODES, PODS

__all__ = ["Readiness", "count_ready", "read_readiness"]


@dataclass(frozen=True)
class Readiness:
    component: str
    region: str
    context: str
    ready: int
    pods: int
    """Pods found (ready or not, not being deleted)."""
    expected: int
    """Replicas the design places there."""

    @property
    def ok(self) -> bool:
        return self.ready >= self.expected


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    )


def count_ready(pods: Iterable[Mapping[str, Any]], nodes: set[str] | None) -> tuple[int, int]:
    """(ready, total) among `pods` not being deleted, on `nodes` when given."""
    ready = total = 0
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if nodes is not None and (pod.get("spec") or {}).get("nodeName") not in nodes:
            continue
        total += 1
        ready += _ready(pod)
    return ready, total


def read_readiness(mapping: KubeMapping, apis: Mapping[str, KubeApi]) -> tuple[Readiness, ...]:
    """Readiness of every mapped component in every region the design places it in. Raises
    `TargetError` when a cluster cannot be read."""
    out: list[Readiness] = []
    node_cache: dict[tuple[str, tuple[tuple[str, str], ...]], set[str]] = {}
    for name in sorted(mapping.target.components):
        workload = mapping.target.components[name]
        for region_id in sorted(mapping.target.regions):
            expected = mapping.placed(name, region_id)
            if expected == 0:
                continue
            region = mapping.target.regions[region_id]
            api = apis[region.context]
            nodes: set[str] | None = None
            if region.nodes or len(mapping.regions_in(region.context)) > 1:
                key = (region.context, tuple(sorted(region.nodes.items())))
                if key not in node_cache:
                    listed = api.list(NODES, None, region.nodes)
                    node_cache[key] = {str((n.get("metadata") or {}).get("name")) for n in listed}
                nodes = node_cache[key]
            pods = api.list(PODS, workload.namespace, mapping.pod_labels(name, region_id))
            ready, total = count_ready(pods, nodes)
            out.append(Readiness(name, region_id, region.context, ready, total, expected))
    return tuple(out)
