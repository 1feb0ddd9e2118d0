"""``plan(design, scenario) -> Plan``: the pure heart of bascule. No clock, no I/O.

Each phase is resolved against the design into what it concretely touches, placed on the run's
timeline (see ``bascule.plan.timeline``), and turned into apply/revert actions; a ``flap`` phase
becomes one apply/revert pair per on-window. Every apply has a revert after it. The static findings
come with the plan, so that ``bascule plan`` tells what will go wrong before anything runs.
"""

from __future__ import annotations

from bascule.errors import PlanError, Problem
from bascule.faults import Flap
from bascule.model.design import Design
from bascule.model.scenario import Scenario
from bascule.plan.findings import compute_findings
from bascule.plan.model import Action, ActionOp, Plan, PlannedPhase, TimeMap
from bascule.plan.resolve import resolve
from bascule.plan.timeline import compute_scale, flap_windows, phase_times

__all__ = ["plan"]


def plan(design: Design, scenario: Scenario) -> Plan:
    """Raises :class:`PlanError` (every problem, placed in the scenario file) when the scenario
    names what the design lacks or asks a fault of a target it cannot act on."""
    real_duration = scenario.real_duration
    scale = compute_scale(scenario.replay, real_duration)
    min_phase = scenario.replay.min_phase
    problems: list[Problem] = []
    phases: list[PlannedPhase] = []
    for index, phase in enumerate(scenario.phases):
        touch, found = resolve(design, phase.fault, phase.target, ("phases", index))
        for path, message in found:
            source = scenario.source_map
            problems.append(source.problem(path, message) if source else Problem(message, path))
        times = phase_times(phase.at, phase.end, scale, min_phase)
        phases.append(
            PlannedPhase(
                index=index,
                name=phase.name,
                fault=phase.fault,
                selector=phase.target.describe(),
                real_start=phase.at,
                real_end=phase.end,
                run_start=times.run_start,
                run_end=times.run_end,
                stretched=times.stretched,
                touch=touch,
                note=phase.note,
            )
        )
    if problems:
        raise PlanError(problems)
    run_length = max([real_duration * scale] + [p.run_end for p in phases])
    return Plan(
        scenario_id=scenario.id,
        design_id=design.id,
        time=TimeMap(scale=scale, real_duration=real_duration, run_length=run_length, min_phase=min_phase),
        phases=tuple(phases),
        actions=tuple(_actions(phases, scale)),
        findings=tuple(compute_findings(design, phases)),
    )


def _actions(phases: list[PlannedPhase], scale: float) -> list[Action]:
    actions: list[Action] = []
    for phase in phases:
        if phase.touch.empty:
            continue
        if isinstance(phase.fault, Flap):
            windows = flap_windows(phase.fault, phase.run_start, phase.run_end, scale)
            for cycle, window in enumerate(windows):
                actions.append(Action(window.on, ActionOp.APPLY, phase.index, phase.fault.fault, cycle))
                actions.append(Action(window.off, ActionOp.REVERT, phase.index, phase.fault.fault, cycle))
        else:
            actions.append(Action(phase.run_start, ActionOp.APPLY, phase.index, phase.fault))
            actions.append(Action(phase.run_end, ActionOp.REVERT, phase.index, phase.fault))
    # Reverts first at equal instants, so a phase that ends as another begins on the same target
    # hands over cleanly; the sort is stable, so a flap's cycles keep their order.
    return sorted(actions, key=lambda a: (a.offset, a.op is ActionOp.APPLY, a.phase))
