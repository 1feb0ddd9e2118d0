"""The dns fault: DNSChaos (SERVFAIL) where Chaos Mesh is served, else — when the target file allows
it — server blocks appended to CoreDNS's Corefile and removed byte for byte on revert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bascule.faults import Dns, DnsAnswer, Fault
from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.builder import Builder
from bascule.targets.kubernetes.calls.model import Call, ChangeMode, FieldChange, RefusalRule, Verb
from bascule.targets.kubernetes.resources import CONFIGMAPS, DNS_CHAOS, FAULT_LABEL, RUN_LABEL

__all__ = ["COREDNS_NAME", "COREDNS_NAMESPACE", "coredns_block", "dns"]


COREDNS_NAMESPACE: Final = "kube-system"
COREDNS_NAME: Final = "coredns"
_COREFILE: Final = ("data", "Corefile")


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
