"""The front door of the call plan: one planner per fault kind (`compute_calls`), every phase of a
plan checked (`check_plan`) and the calls `bascule plan --target kubernetes` prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bascule import faults
from bascule.faults import Fault
from bascule.plan.model import ActionOp, Plan, Touch
from bascule.targets.kubernetes.calls import answers, hops, policies, workloads
from bascule.targets.kubernetes.calls.budgets import budget_lines
from bascule.targets.kubernetes.calls.builder import Builder
from bascule.targets.kubernetes.calls.dns import dns
from bascule.targets.kubernetes.calls.model import CallPlan, ClusterFacts, RefusalRule, RefusedError
from bascule.targets.kubernetes.mapping import KubeMapping

__all__ = ["check_plan", "compute_calls", "render_plan_calls"]


_Planner = Callable[[Builder, Fault, Touch], None]

_PLANNERS: dict[type[Fault], _Planner] = {
    faults.RegionOutage: workloads.outage,
    faults.ProviderOutage: workloads.outage,
    faults.Crash: workloads.crash,
    faults.Hang: workloads.hang,
    faults.ControlPlane: workloads.control_plane,
    faults.Partition: policies.partition,
    faults.ReplicationPause: policies.replication,
    faults.Refuse: hops.refuse,
    faults.Latency: hops.latency,
    faults.Blackhole: hops.blackhole,
    faults.HttpError: hops.http_error,
    faults.Throttle: hops.throttle,
    faults.Identity: hops.identity,
    faults.Dns: dns,
    faults.DataLoss: workloads.data_loss,
    faults.StaleIndex: workloads.stale_index,
    faults.Ttft: answers.ttft,
    faults.StreamCut: answers.stream_cut,
    faults.TokenRate: answers.token_rate,
    faults.Degrade: answers.degrade,
    faults.ModelSwap: answers.model_swap,
    faults.PartialIndex: answers.partial_index,
    faults.EmbeddingMismatch: answers.embedding_mismatch,
    faults.Bandwidth: hops.bandwidth,
    faults.LimitData: answers.limit_data,
    faults.Slicer: answers.slicer,
    faults.SlowClose: answers.slow_close,
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
    inner = fault.fault if isinstance(fault, faults.Flap) else fault
    builder = Builder(mapping, facts, run_id, key, inner.kind)
    if touch.empty:
        return CallPlan(inner.kind, notes=("touches nothing in this design",))
    planner = _PLANNERS.get(type(inner))
    try:
        if planner is None:
            raise builder.refuse(
                RefusalRule.UNSUPPORTED, f"the Kubernetes target has no adapter for {inner.kind!r}"
            )
        planner(builder, inner, touch)
    except RefusedError as refused:
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
    """What `bascule plan --target kubernetes` prints: each action with the calls it makes, and
    for an action that takes pods, the PodDisruptionBudgets it would break (`budget_lines`)."""
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
            if found.refusal is None:
                lines += [f"    {line}" for line in budget_lines(found.calls, facts)]
        elif found.refusal is None:
            for call in reversed(found.calls):
                undo = ", ".join(f"{verb.value} {res.kind}" for res, verb in call.undo()) or "nothing (final)"
                if call.via_pods:
                    undo += " — only the pods still holding a claim the fault deleted (it was cut short)"
                lines.append(f"    undo {call.verb.value} {call.resource.kind} {call.target_text()}: {undo}")
    return lines
