"""What a plan can tell before anything runs. Pure.

- hidden dependencies: a region relying on a shared service that lives in another region, and the
  phases that take such a service down;
- sovereignty: data classes the routing may send below their minimum level (or that the guard
  leaves with a single region, or none);
- class outages: phases during which every region allowed for a data class is impaired;
- blocked scale-up: a pilot-light standby that must grow while its control plane is frozen;
- inert phases: phases that touch nothing in this design;
- idle phases: phases whose fault, as given, strikes nothing (a ratio of 0, a delay of 0 s).
"""

from __future__ import annotations

from collections.abc import Sequence

from bascule.faults import (
    ControlPlane,
    Degrade,
    Fault,
    Flap,
    HttpError,
    Latency,
    PartialIndex,
    ProviderOutage,
    RegionOutage,
    Throttle,
)
from bascule.model.design import ComponentKind, Design, ReplicationMode, RoutingMode
from bascule.plan.model import Finding, FindingKind, PlannedPhase, Severity

__all__ = ["compute_findings"]


def compute_findings(design: Design, phases: Sequence[PlannedPhase]) -> list[Finding]:
    findings: list[Finding] = []
    findings += _hidden_dependencies(design, phases)
    findings += _sovereignty(design)
    findings += _class_outages(design, phases)
    findings += _scale_up(design, phases)
    findings += _inert(phases)
    findings += _idle(phases)
    order = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.kind.value, f.phase or -1))


def _describe_region(design: Design, region_id: str) -> str:
    r = design.region(region_id)
    return f"{region_id} ({r.provider}, {r.jurisdiction}, {r.sovereignty.value})"


def _hidden_dependencies(design: Design, phases: Sequence[PlannedPhase]) -> list[Finding]:
    out: list[Finding] = []
    for region in design.region_map.values():
        for dep_id in region.depends_on:
            dep = design.dependencies[dep_id]
            if dep.region == region.id:
                continue
            lower = design.region(dep.region).sovereignty.rank < region.sovereignty.rank
            out.append(
                Finding(
                    FindingKind.HIDDEN_DEPENDENCY,
                    Severity.WARNING,
                    f"{region.id} ({region.sovereignty.value}) relies on {dep.kind.value} service "
                    f"{dep_id!r} in {_describe_region(design, dep.region)}: it is not independent of "
                    f"that region{' and inherits its lower sovereignty' if lower else ''}",
                    regions=(region.id, dep.region),
                )
            )
    for phase in phases:
        for region_id in phase.touch.indirect:
            deps = [d for d in design.region(region_id).depends_on if d in phase.touch.dependencies]
            out.append(
                Finding(
                    FindingKind.HIDDEN_DEPENDENCY,
                    Severity.CRITICAL,
                    f"phase {phase.name!r} ({phase.kind}) takes down {', '.join(map(repr, deps))}, which "
                    f"{region_id} relies on: {region_id} is hit too",
                    regions=(region_id, *phase.touch.regions),
                    phase=phase.index,
                )
            )
    return out


def _sovereignty(design: Design) -> list[Finding]:
    out: list[Finding] = []
    guard = design.routing.sovereignty_guard
    own = design.entry_component()
    stores = {
        region
        for name in design.components_of(ComponentKind.STORE)
        for region in design.components[name].replicas
    }
    replicated = design.replication.mode is not ReplicationMode.NONE and len(stores) > 1
    for name, policy in design.data_classes.items():
        minimum = policy.min_sovereignty
        below = [r for r in design.routing_order if not design.region(r).sovereignty.satisfies(minimum)]
        allowed = [r for r in design.routing_order if r not in below]
        for region in below:
            if guard:
                where = (
                    "the gateway fails closed there"
                    if own is None
                    else f"bascule's edge never sends it to {own} there; where {own} sends it next is "
                    "measured from the requests' paths, not assumed"
                )
                severity = Severity.INFO
                message = (
                    f"{name!r} is never routed to {_describe_region(design, region)}: below "
                    f"{minimum.value}, {where}"
                )
            else:
                when = "in normal operation" if design.routing_order[0] == region else "on failover"
                severity = Severity.CRITICAL
                message = (
                    f"{name!r} requires {minimum.value} but the routing sends it to "
                    f"{_describe_region(design, region)} {when} (sovereignty guard off)"
                )
            out.append(_class_finding(name, FindingKind.SOVEREIGNTY, severity, message, region))
        if not guard and replicated:
            out.extend(
                _class_finding(
                    name,
                    FindingKind.SOVEREIGNTY,
                    Severity.CRITICAL,
                    f"replication copies {name!r} documents to the store in "
                    f"{_describe_region(design, region)}, below {minimum.value}",
                    region,
                )
                for region in sorted(stores)
                if not design.region(region).sovereignty.satisfies(minimum)
            )
        if guard and not allowed:
            message = (
                f"no region of the design may serve {name!r} (requires {minimum.value}): every "
                "ask of that class will be refused"
            )
            out.append(_class_finding(name, FindingKind.NO_FAILOVER, Severity.CRITICAL, message))
        elif guard and len(allowed) == 1 and len(design.routing_order) > 1:
            message = (
                f"only {allowed[0]} may serve {name!r} (requires {minimum.value}): an outage there "
                "leaves that class with no failover"
            )
            out.append(_class_finding(name, FindingKind.NO_FAILOVER, Severity.WARNING, message, allowed[0]))
    return out


def _class_finding(
    data_class: str, kind: FindingKind, severity: Severity, message: str, *regions: str
) -> Finding:
    return Finding(kind, severity, message, regions=regions, data_class=data_class)


def _impaired(phase: PlannedPhase) -> set[str]:
    fault = phase.fault.fault if isinstance(phase.fault, Flap) else phase.fault
    direct = set(phase.touch.regions) if isinstance(fault, RegionOutage | ProviderOutage) else set()
    return direct | set(phase.touch.indirect)


def _class_outages(design: Design, phases: Sequence[PlannedPhase]) -> list[Finding]:
    out: list[Finding] = []
    for phase in phases:
        impaired = _impaired(phase)
        if not impaired:
            continue
        for name in design.data_classes:
            allowed = set(design.allowed_regions(name))
            if allowed and allowed <= impaired:
                out.append(
                    Finding(
                        FindingKind.CLASS_OUTAGE,
                        Severity.WARNING,
                        f"during {phase.name!r} every region allowed to serve {name!r} is impaired "
                        f"({', '.join(sorted(allowed))})",
                        regions=tuple(sorted(allowed)),
                        phase=phase.index,
                        data_class=name,
                    )
                )
    return out


def _scale_up(design: Design, phases: Sequence[PlannedPhase]) -> list[Finding]:
    if design.routing.mode is not RoutingMode.PILOT_LIGHT:
        return []
    growing = {
        region
        for spec in design.components.values()
        for region, placement in spec.replicas.items()
        if placement.ceiling > placement.replicas
    }
    out: list[Finding] = []
    for phase in phases:
        fault = phase.fault.fault if isinstance(phase.fault, Flap) else phase.fault
        if not isinstance(fault, ControlPlane | RegionOutage | ProviderOutage):
            continue
        for region in sorted(growing & set(phase.touch.regions)):
            out.append(
                Finding(
                    FindingKind.SCALE_UP_BLOCKED,
                    Severity.WARNING,
                    f"the pilot-light standby in {region} must scale up to take traffic, but "
                    f"{phase.name!r} freezes that region's control plane",
                    regions=(region,),
                    phase=phase.index,
                )
            )
    return out


def _inert(phases: Sequence[PlannedPhase]) -> list[Finding]:
    return [
        Finding(
            FindingKind.INERT_PHASE,
            Severity.WARNING,
            f"phase {phase.name!r} ({phase.kind} on {phase.selector}) touches nothing in this design",
            phase=phase.index,
        )
        for phase in phases
        if phase.touch.empty
    ]


def _idle(phases: Sequence[PlannedPhase]) -> list[Finding]:
    out: list[Finding] = []
    for phase in phases:
        why = idle_reason(phase.fault)
        if why is not None and not phase.touch.empty:
            out.append(
                Finding(
                    FindingKind.IDLE_PHASE,
                    Severity.WARNING,
                    f"phase {phase.name!r} ({phase.kind} on {phase.selector}) strikes nothing: {why} "
                    "leaves every request as it came, and the run measures the service with no fault "
                    "in force",
                    phase=phase.index,
                )
            )
    return out


def idle_reason(fault: Fault) -> str | None:
    """Why `fault`, as given, strikes nothing — or None when it may strike."""
    match fault:
        case Flap():
            return idle_reason(fault.fault)
        case Latency() if fault.fixed == 0 and fault.jitter == 0:
            return "a delay of 0 s"
        case HttpError() if fault.ratio == 0 and fault.count is None and fault.every is None:
            return "a ratio of 0"
        case Throttle() | Degrade() | PartialIndex() if fault.ratio == 0:
            return "a ratio of 0"
    return None
