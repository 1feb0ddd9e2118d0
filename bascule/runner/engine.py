"""The runner's brain: what to do next, from the plan and the clock. Pure, like tenacity's
``DoAttempt``/``DoSleep``: the runner's loop asks, then acts.

A run has stages — warm-up, the plan's actions at their offsets, settle — and can be aborted at
any moment (a guardrail, a signal), after which only the rollback is left. The steady-state
hypothesis is checked inside them, not after them (`check_before`, `next_step`'s `CheckAfter`):
over the last ``over`` seconds of the warm-up, and over the last ``over`` seconds of the settle
once every revert is done and the impact window the metrics measure has ended — each window
extended only by what its stage lacks. No fault is ever in force during either window: the plan
starts once the check before has ended, and the check after starts once the plan's last action
is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bascule.plan import Action, Plan

__all__ = [
    "BeforeCheck",
    "CheckAfter",
    "DoAction",
    "Finish",
    "Stage",
    "Step",
    "Wait",
    "check_before",
    "measured_until",
    "next_step",
]


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
class CheckAfter:
    """Start the steady-state check after rollback now: every action is done and the settle's last
    ``over`` seconds have begun (or the settle, shorter than ``over``, has begun)."""

    late_by: float
    """Seconds after the instant the window was due to open (the plan's last action may be late)."""


@dataclass(frozen=True)
class Finish:
    pass


Step = DoAction | Wait | CheckAfter | Finish


def next_step(
    plan: Plan,
    done: int,
    elapsed: float,
    *,
    warm_up: float,
    settle: float,
    over: float = 0.0,
    checking: bool = False,
    faults_over: float = 0.0,
) -> Step:
    """``elapsed`` is seconds since the plan's start (``-warm_up`` when the run begins); ``done``
    counts the actions already carried out; ``over`` is the hypothesis's window (0: none),
    ``checking`` whether the check after rollback was started and ``faults_over`` when (elapsed)
    the last action was done. The settle ends ``settle`` seconds after the plan's end; the check
    after opens ``over`` seconds before that, but never before the last action is done nor within
    the window the metrics measure — up to ``settle`` after the last revert (the impact window,
    docs/scoring.md), or the whole settle when the plan has no action (then the planned run is
    measured) — so that the check's own requests weigh on no measured figure."""
    if elapsed < 0:
        return Wait(0.0, Stage.WARM_UP)
    if done < len(plan.actions):
        action = plan.actions[done]
        if elapsed >= action.offset:
            return DoAction(action, done, elapsed - action.offset)
        return Wait(action.offset, Stage.FAULTS)
    end = max(plan.run_length, plan.actions[-1].offset if plan.actions else 0.0) + settle
    if not checking:
        opens = max(0.0, end - over, measured_until(plan, settle, faults_over))
        if elapsed >= opens:
            return CheckAfter(elapsed - opens)
        return Wait(opens, Stage.SETTLE)
    if elapsed < end:
        return Wait(end, Stage.SETTLE)
    return Finish()


def measured_until(plan: Plan, settle: float, faults_over: float) -> float:
    """Until when (seconds since the plan's start) the metrics measure the run, given when its last
    action was done: the impact window's end, ``settle`` after the last revert — or the planned
    run and its settle when the plan has no action (docs/scoring.md)."""
    if plan.actions:
        return faults_over + settle
    return plan.run_length + settle


@dataclass(frozen=True)
class BeforeCheck:
    """Where the steady-state check before any fault goes in the warm-up."""

    start: float
    """Seconds after the warm-up began: ``over`` before its end, or at its start if it is shorter."""
    wait: float
    """How long the check may wait for every probe to succeed once before its window opens (0: it
    opens at once): ``wait_for`` beyond the warm-up's end, as when the check came after it."""


def check_before(warm_up: float, over: float, wait_for: float) -> BeforeCheck:
    """The check before any fault (pure): its window is the warm-up's last ``over`` seconds, or
    runs past its end by what the warm-up lacks (``over − warm_up``, and however long the service
    took to answer when ``wait_for`` is given). The plan starts once the check has ended, and not
    before the warm-up has."""
    start = max(0.0, warm_up - over)
    return BeforeCheck(start, wait_for + (warm_up - start) if wait_for > 0 else 0.0)
