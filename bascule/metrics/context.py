"""What a run was run against and how it ended — the run's identity, the design's facts the
recommendations need, each region's provider and sovereignty level, and the design's cost — from
the `JournalState` of its journal. Pure; the figures (`bascule.metrics.figures`) use them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from bascule.metrics.model import Cost, DesignFacts, RunInfo
from bascule.metrics.records import RunStarted
from bascule.metrics.state import JournalState
from bascule.model.design import ComponentKind, Design, ReplicationMode

__all__ = ["compute_cost", "design_facts", "region_facts", "run_info"]


def run_info(r: JournalState) -> RunInfo:
    """What was run, against what, and how it ended: from ``run-started`` and ``run-ended``."""
    started = r.started or RunStarted()
    scenario, time = started.scenario, started.plan.time
    design = r.design
    regions = []
    if design is not None:
        for region in design.region_map.values():
            regions.append(
                {
                    "id": region.id,
                    "provider": region.provider,
                    "jurisdiction": region.jurisdiction,
                    "sovereignty": region.sovereignty.value,
                }
            )
    return RunInfo(
        bascule=started.bascule,
        started_wall=started.wall,
        elapsed=r.ended.elapsed,
        run_length=r.run_length,
        exit_code=r.ended.exit_code,
        reason=r.ended.reason,
        plan_start=r.plan_start,
        scenario={
            "id": scenario.id,
            "title": scenario.title,
            "source": list(scenario.source),
            "started_at": scenario.started_at,
            "duration": time.real_duration_s,
            "time_scale": time.scale,
        },
        design={"id": started.design.get("id"), "title": started.design.get("title"), "regions": regions},
        hypothesis_skipped=r.hypothesis_skipped,
        hypothesis_before=r.hypothesis.get("before"),
        hypothesis_after=r.hypothesis.get("after"),
        min_score=r.min_score,
    )


def design_facts(design: Design | None, primary: str | None) -> DesignFacts:
    """What recommendations need to know about the design."""
    if design is None:
        return DesignFacts()
    scale: dict[str, list[int]] = {}
    models: dict[str, str] = {}
    for name, spec in design.components.items():
        for region, placement in spec.replicas.items():
            if placement.ceiling > placement.replicas:
                counts = scale.setdefault(region, [0, 0])
                counts[0] += placement.replicas
                counts[1] += placement.ceiling
            if design.component_kind(name) is ComponentKind.LLM and placement.model:
                models[region] = placement.model
    routing = design.routing
    facts = region_facts(design, design.region_map)
    return DesignFacts(
        primary=primary,
        routing_mode=routing.mode.value,
        replication_mode=_replication_mode(design),
        replication_lag=design.replication.lag,
        detection_delay=routing.health_check.interval * routing.health_check.unhealthy_after,
        failback_after=routing.failback.after_healthy_for,
        request_timeout=routing.timeouts.request,
        sovereignty_guard=routing.sovereignty_guard,
        scale_up={k: (v[0], v[1]) for k, v in scale.items()},
        llm_models=models,
        levels={r: f[1] for r, f in facts.items()},
        providers={r: f[0] for r, f in facts.items()},
        own_entry=design.entry_component(),
    )


def _replication_mode(design: Design) -> str:
    """The reference stores' mode; ``own`` when only services of the user's own replicate (their
    own way, which bascule does not know: asynchronous or synchronous)."""
    mode = design.replication.mode
    if mode is ReplicationMode.NONE and any(c.replication is not None for c in design.components.values()):
        return "own"
    return mode.value


def region_facts(design: Design | None, regions: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Region → (provider, sovereignty level), from the design, else the catalog."""
    out = {}
    for region in regions:
        provider, level = region.split("/", 1)[0], "unknown"
        if design is not None:
            try:
                resolved = design.region(region)
                provider, level = resolved.provider, resolved.sovereignty.value
            except KeyError:
                pass
        out[region] = (provider, level)
    return out


def compute_cost(design: Design | None, primary: str | None, notes: dict[str, str]) -> Cost | None:
    """Steady-state cost per hour and the extra while failed over; ``None`` (and a note) when the
    design gives no usable rates."""
    if design is None:
        notes["cost"] = "the journal carries no design"
        return None
    replicas: Counter[str] = Counter()
    ceiling: Counter[str] = Counter()
    for spec in design.components.values():
        for region_id, placement in spec.replicas.items():
            replicas[region_id] += placement.replicas
            ceiling[region_id] += placement.ceiling
    unpriced = [
        r.id
        for r in design.region_map.values()
        if ceiling[r.id] and (r.cost is None or r.cost.replica_hour is None)
    ]
    if unpriced:
        notes["cost"] = f"no replica-hour rate for {', '.join(unpriced)}"
        return None
    priced = [r for r in design.region_map.values() if ceiling[r.id] and r.cost is not None]
    currencies = {r.cost.currency for r in priced if r.cost is not None}
    if len(currencies) != 1:
        mixed = ", ".join(sorted(currencies))
        notes["cost"] = f"mixed currencies: {mixed}" if currencies else "no region has a rate"
        return None
    steady = extra = 0.0
    for region in priced:
        assert region.cost is not None and region.cost.replica_hour is not None
        steady += region.cost.replica_hour * replicas[region.id]
        if region.id != primary:
            extra += region.cost.replica_hour * (ceiling[region.id] - replicas[region.id])
    return Cost(currencies.pop(), round(steady, 6), round(extra, 6))
