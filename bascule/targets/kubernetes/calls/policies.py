"""Faults carried out by NetworkPolicies: partition (each side cut from the other) and
replication-pause (nothing in from the sending stores). NetworkPolicies only allow, so what is cut
is written as everything else."""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from bascule.faults import Fault
from bascule.model.topology import Endpoint, LinkPurpose
from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.builder import Builder
from bascule.targets.kubernetes.calls.model import Labels, RefusalRule, as_labels
from bascule.targets.kubernetes.resources import NETWORK_POLICIES

__all__ = ["except_groups", "ip_blocks", "partition", "replication"]


def except_groups(groups: Sequence[Labels]) -> list[dict[str, Any]]:
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


def ip_blocks(excluded: Iterable[str]) -> list[dict[str, Any]]:
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


def _endpoints_in(touch: Touch, region_id: str) -> set[str]:
    out: set[str] = set()
    for hop in touch.hops:
        for end in (hop.source, hop.target):
            if end is not None and end.region == region_id:
                out.add(end.name)
    return out


def partition(b: Builder, fault: Fault, touch: Touch) -> None:
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
        groups = [as_labels(other.pods)] if same else []
        peers = except_groups(groups) + ip_blocks(other.cidrs)
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


def replication(b: Builder, fault: Fault, touch: Touch) -> None:
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
            "ingress": [{"from": except_groups(groups) + ip_blocks(cidrs)}],
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
