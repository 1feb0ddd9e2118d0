"""A plan as JSON-ready data (``bascule plan --json``), schema versioned. Pure."""

from __future__ import annotations

from typing import Any

from bascule.plan.model import Plan, Touch

__all__ = ["PLAN_SCHEMA", "plan_to_dict"]

PLAN_SCHEMA = "bascule.plan/1"


def _touch(touch: Touch) -> dict[str, Any]:
    return {
        "replicas": [str(r) for r in touch.replicas],
        "hops": [str(h) for h in touch.hops],
        "hosts": list(touch.hosts),
        "dependencies": list(touch.dependencies),
        "regions": list(touch.regions),
        "indirect_regions": list(touch.indirect),
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "scenario": plan.scenario_id,
        "design": plan.design_id,
        "time": {
            "scale": plan.time.scale,
            "real_duration_s": plan.time.real_duration,
            "run_length_s": plan.time.run_length,
            "min_phase_s": plan.time.min_phase,
        },
        "phases": [
            {
                "index": p.index,
                "name": p.name,
                "kind": p.kind,
                "fault": p.fault.model_dump(mode="json"),
                "target": p.selector,
                "real_start_s": p.real_start,
                "real_end_s": p.real_end,
                "run_start_s": round(p.run_start, 6),
                "run_end_s": round(p.run_end, 6),
                "stretched": p.stretched,
                "touch": _touch(p.touch),
                "note": p.note,
            }
            for p in plan.phases
        ],
        "actions": [
            {
                "offset_s": round(a.offset, 6),
                "op": a.op.value,
                "phase": a.phase,
                "cycle": a.cycle,
                "fault": a.fault.model_dump(mode="json"),
            }
            for a in plan.actions
        ],
        "findings": [
            {
                "kind": f.kind.value,
                "severity": f.severity.value,
                "message": f.message,
                "regions": list(f.regions),
                "phase": f.phase,
                "data_class": f.data_class,
            }
            for f in plan.findings
        ],
    }
