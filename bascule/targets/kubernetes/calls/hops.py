"""Faults carried out on the touched hops' callees: refuse (scaled to zero), and through Chaos Mesh:
latency and blackhole (NetworkChaos), http-error, throttle and identity (HTTPChaos or NetworkChaos)."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Sequence
from typing import Any

from bascule.faults import (
    Bandwidth,
    Blackhole,
    Fault,
    HttpError,
    Identity,
    IdentityMode,
    Latency,
    LatencyPer,
    Refuse,
    Throttle,
)
from bascule.model.topology import Endpoint, Link, links
from bascule.plan.model import Touch
from bascule.targets.kubernetes.calls.builder import Builder
from bascule.targets.kubernetes.calls.model import Call, ChangeMode, FieldChange, RefusalRule, Verb
from bascule.targets.kubernetes.mapping import WorkloadKind
from bascule.targets.kubernetes.resources import (
    DEPLOYMENT_SCALE,
    HTTP_CHAOS,
    NETWORK_CHAOS,
    STATEFULSET_SCALE,
    Resource,
)

__all__ = ["bandwidth", "blackhole", "http_error", "identity", "latency", "refuse", "throttle"]


def refuse(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Refuse)
    _uncounted(b, fault)
    _every_connection(b, fault, "scaling a workload to zero also ends its pooled connections")
    for target in _unrestricted_targets(b, touch):
        region = b.region(target.region)
        b.workload(target.name, target.region)
        workload = b.mapping.workload(target.name)
        assert workload is not None
        resource = DEPLOYMENT_SCALE if workload.kind is WorkloadKind.DEPLOYMENT else STATEFULSET_SCALE
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
                why="scaled to zero through the scale subresource: its Services have no endpoints and "
                "refuse connections",
            )
        )


def _unrestricted_targets(b: Builder, touch: Touch) -> list[Endpoint]:
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


def _restriction(b: Builder, target: Endpoint, touched: set[Endpoint | None]) -> set[Endpoint] | None:
    """None when `touched` is every caller of `target`; else the callers touched."""
    every = {h.source for h in links(b.mapping.design) if h.target == target}
    if touched >= every:
        return None
    if None in touched:
        raise b.refuse(RefusalRule.UNSUPPORTED, f"{b.kind} cannot single out the clients of {target}")
    return {s for s in touched if s is not None}


def _chaos_on_hops(
    b: Builder, touch: Touch, resource: Resource, spec: dict[str, Any], why: str, *, http: bool
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
            b.create(resource, region.context, target.region, namespace, _untargeted(base), why)
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
                {**_untargeted(base), "externalTargets": external},
                f"{why}, to {', '.join(external)}",
            )


def _untargeted(spec: dict[str, Any]) -> dict[str, Any]:
    """A NetworkChaos spec with no ``target`` (every peer, or ``externalTargets``): Chaos Mesh's
    admission webhook refuses the directions ``from`` and ``both`` there, so it acts ``to`` — on
    the callee's outgoing packets, its answers, which cuts the calls as surely."""
    if spec.get("direction") in ("from", "both"):
        return {**spec, "direction": "to"}
    return spec


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def latency(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Latency)
    if fault.per is LatencyPer.CONNECTION:
        raise b.refuse(
            RefusalRule.UNSUPPORTED, "latency per connection: NetworkChaos delays packets, not connections"
        )
    delay = {"latency": _ms(fault.fixed), "jitter": _ms(fault.jitter), "correlation": "0"}
    spec = {"action": "delay", "delay": delay, "direction": "to"}
    _chaos_on_hops(b, touch, NETWORK_CHAOS, spec, f"answers delayed {_ms(fault.fixed)}", http=False)


def bandwidth(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Bandwidth)
    b.notes.append("NetworkChaos limits each pod's whole egress, shared by its connections, not each one")
    # Chaos Mesh takes bits a second; limit (bytes queued) and buffer (burst) as its docs suggest.
    spec = {
        "action": "bandwidth",
        "bandwidth": {"rate": f"{fault.rate * 8}bps", "limit": 20971520, "buffer": 10000},
        "direction": "to",
    }
    _chaos_on_hops(b, touch, NETWORK_CHAOS, spec, f"egress limited to {fault.rate} bytes/s", http=False)


def blackhole(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Blackhole)
    _every_connection(b, fault, "NetworkChaos drops every packet, pooled connections too")
    spec = {"action": "loss", "loss": {"loss": "100", "correlation": "0"}, "direction": "both"}
    _chaos_on_hops(b, touch, NETWORK_CHAOS, spec, "every packet dropped", http=False)


def _every_connection(b: Builder, fault: Refuse | Blackhole, why: str) -> None:
    if fault.new_connections_only:
        raise b.refuse(RefusalRule.UNSUPPORTED, f"{b.kind} with new_connections_only: {why}")


def _uncounted(b: Builder, fault: Refuse | HttpError) -> None:
    if fault.count is not None or fault.every is not None:
        raise b.refuse(
            RefusalRule.UNSUPPORTED,
            f"{b.kind} with count or every: neither a scale to zero nor HTTPChaos counts requests "
            "or connections",
        )


def _whole_ratio(b: Builder, ratio: float) -> None:
    if ratio < 1.0:
        raise b.refuse(
            RefusalRule.UNSUPPORTED,
            f"{b.kind} at ratio {ratio:g}: HTTPChaos answers every matching request, not a fraction",
        )


def _first_status(b: Builder, statuses: Sequence[int]) -> int:
    if len(statuses) > 1:
        b.notes.append(f"HTTPChaos answers one status: {statuses[0]} (of {', '.join(map(str, statuses))})")
    return statuses[0]


def http_error(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, HttpError)
    _uncounted(b, fault)
    _whole_ratio(b, fault.ratio)
    code = _first_status(b, fault.statuses)
    spec = {"target": "Response", "path": "*", "replace": {"code": code}}
    _chaos_on_hops(b, touch, HTTP_CHAOS, spec, f"answers replaced by {code}", http=True)


def throttle(b: Builder, fault: Fault, touch: Touch) -> None:
    assert isinstance(fault, Throttle)
    _whole_ratio(b, fault.ratio)
    replace = {
        "code": 429,
        "headers": {"Retry-After": str(max(1, math.ceil(fault.retry_after)))},
        "body": base64.b64encode(fault.body.encode()).decode(),
    }
    spec = {"target": "Response", "path": "*", "replace": replace}
    _chaos_on_hops(b, touch, HTTP_CHAOS, spec, "answers replaced by 429 with Retry-After", http=True)


def identity(b: Builder, fault: Fault, touch: Touch) -> None:
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
