"""The runner's brain: what to do next, from the plan and the clock. Pure, like tenacity's
``DoAttempt``/``DoSleep``: the runner's loop asks, then acts.

A run has stages — warm-up, the plan's actions at their offsets, settle — and can be aborted at
any moment (a guardrail, a signal), after which only the rollback is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bascule.plan import Action, Plan

__all__ = ["DoAction", "Finish", "Stage", "Step", "Wait", "next_step"]


class Stage(StrEnum):
    WARM_UP = "warm-up"
    FAULTS = "faults"
    SETTLE = "settle"
    DONE = "done"


@dataclass(frozen=True)
class DoAction:
    action: Action
    index: int
    late_by: float


@dataclass(frozen=True)
class Wait:
    until: float
    """Run seconds since the plan's start (negative during warm-up)."""
    stage: Stage


@dataclass(frozen=True)
class Finish:
    pass


Step = DoAction | Wait | Finish


def next_step(plan: Plan, done: int, elapsed: float, *, warm_up: float, settle: float) -> Step:
    """``elapsed`` is seconds since the plan's start (``-warm_up`` when the run begins); ``done``
    counts the actions already carried out."""
    if elapsed < 0:
        return Wait(0.0, Stage.WARM_UP)
    if done < len(plan.actions):
        action = plan.actions[done]
        if elapsed >= action.offset:
            return DoAction(action, done, elapsed - action.offset)
        return Wait(action.offset, Stage.FAULTS)
    end = max(plan.run_length, plan.actions[-1].offset if plan.actions else 0.0) + settle
    if elapsed < end:
        return Wait(end, Stage.SETTLE)
    return Finish()


def stage_at(plan: Plan, done: int, elapsed: float, *, settle: float) -> Stage:
    step = next_step(plan, done, elapsed, warm_up=0.0, settle=settle)
    if isinstance(step, Wait):
        return step.stage
    return Stage.FAULTS if isinstance(step, DoAction) else Stage.DONE
