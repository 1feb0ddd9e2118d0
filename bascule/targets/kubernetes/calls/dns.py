"""The dns fault: DNSChaos (SERVFAIL) where Chaos Mesh is served, else — when the target file allows
it — server blocks appended to CoreDNS's Corefile and removed byte for byte on revert.

Two overrides in force at once on one cluster must not give CoreDNS one zone twice: it refuses such
a Corefile (``cannot serve dns://…:53 - it is already defined``) and its ``reload`` keeps the old
one, so the second fault would do nothing. `corefile_with` composes the Corefile from the original
and the blocks of every override in force: one server block per zone.

Both act on the names callers in a cluster really resolve, not on the design's host names
(``store.aws-us-east-1.bascule.internal``): each callee's Service, ``<service>.<namespace>.svc.
<cluster_domain>`` from its own cluster, ``<service>.<namespace>.svc.clusterset.local`` (the
Multi-Cluster Services name `render` uses) from another."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bascule.faults import Dns, DnsAnswer, Fault
from bascule.model.names import host_name
from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.builder import Builder
from bascule.targets.kubernetes.calls.model import Call, ChangeMode, FieldChange, RefusalRule, Verb
from bascule.targets.kubernetes.render import CLUSTERSET_DOMAIN, workload_name
from bascule.targets.kubernetes.resources import CONFIGMAPS, DNS_CHAOS, FAULT_LABEL, RUN_LABEL

__all__ = ["COREDNS_NAME", "COREDNS_NAMESPACE", "coredns_block", "corefile_with", "dns", "service_names"]


COREDNS_NAMESPACE: Final = "kube-system"
COREDNS_NAME: Final = "coredns"
_COREFILE: Final = ("data", "Corefile")


def coredns_block(hosts: Sequence[str], answer: DnsAnswer, run_id: str, key: str) -> str:
    """The Corefile text a CoreDNS override appends: one server block per host, answering as the
    fault says (``template`` sets the rcode; ``erratic`` drops every query). Starts with a newline
    and a comment naming the run, so that it can be found and removed exactly. A block names no
    port: CoreDNS serves it on its default one (53, or its ``-dns.port``), where the cluster's
    ``.:53`` block is, and a zone more specific than another wins there."""
    lines = [f"# {RUN_LABEL}={run_id} {FAULT_LABEL}={key}"]
    for host in hosts:
        lines.append(f"{host} {{")
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


def _zones(text: str) -> tuple[str, list[tuple[str, list[str]]]] | None:
    """The comment line and the server blocks (zone, lines) of a `coredns_block` text; None when
    the text is not one."""
    if not text.startswith("\n") or not text.endswith("\n"):
        return None
    lines = text[1:-1].split("\n")
    head, rest = lines[0], lines[1:]
    if not head.startswith("# "):
        return None
    zones: list[tuple[str, list[str]]] = []
    while rest:
        opening = rest[0]
        if opening[:1].isspace() or not opening.endswith(" {") or "}" not in rest:
            return None
        end = rest.index("}")
        zones.append((opening[: -len(" {")], rest[: end + 1]))
        rest = rest[end + 1 :]
    return head, zones


def corefile_with(original: str, appended: Sequence[str]) -> str:
    """`original` with the `coredns_block` texts of the overrides in force (oldest first) appended,
    each zone in one server block only: where two name the same zone, the block of the latest holds
    (as a later phase does) and the earlier keeps its comment line. With one text, exactly
    ``original + text``; with none, `original` — byte for byte. A text not in `coredns_block`'s
    form is appended as it is."""
    parsed = [_zones(text) for text in appended]
    owner: dict[str, int] = {}
    for i, found in enumerate(parsed):
        for zone, _ in found[1] if found is not None else []:
            owner[zone] = i
    out = original
    for i, (text, found) in enumerate(zip(appended, parsed, strict=True)):
        if found is None:
            out += text
            continue
        head, zones = found
        kept = [line for zone, lines in zones if owner[zone] == i for line in lines]
        out += "\n" + "\n".join([head, *kept]) + "\n"
    return out


def service_names(b: Builder, hosts: Sequence[str], context: str) -> list[str]:
    """The names callers in `context` resolve for the design's `hosts` (each a component's or
    dependency's `host_name` in a region): its Service in its namespace, in the cluster domain when
    it runs in `context`, else its Multi-Cluster Services name. Refuses a callee the target file
    does not map (its namespace is unknown)."""
    design = b.mapping.design
    placed = {host_name(n, r): (n, r) for n, spec in design.components.items() for r in spec.replicas}
    placed |= {host_name(n, dep.region): (n, dep.region) for n, dep in design.dependencies.items()}
    out: list[str] = []
    for host in hosts:
        name, region_id = placed[host]
        workload = b.mapping.workload(name)
        if workload is None:
            raise b.refuse(
                RefusalRule.UNMAPPED,
                f"dns on {name}@{region_id}: the namespace of the Service its callers resolve is "
                "unknown: add it to 'components' in the target file",
            )
        service = workload.service or workload_name(name, region_id)
        if b.region(region_id).context == context:
            out.append(f"{service}.{workload.namespace}.svc.{b.mapping.target.cluster_domain}")
        else:
            out.append(f"{service}.{workload.namespace}.{CLUSTERSET_DOMAIN}")
    return sorted(set(out))


def dns(b: Builder, fault: Fault, touch: Touch) -> None:
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
                "patterns": service_names(b, touch.hosts, region.context),
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
    for context in contexts:
        names = service_names(b, touch.hosts, context)
        block = coredns_block(names, fault.answer, b.run_id, b.key)
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
                why=f"CoreDNS answers {fault.answer.value} for {', '.join(names)} (opted in)",
            )
        )
    b.notes.append("CoreDNS applies the change when its reload plugin next reads the ConfigMap (about 30 s)")
