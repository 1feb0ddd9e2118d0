"""The runner's pure parts: the next step from plan and clock, and the guardrails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydantic import TypeAdapter

from bascule.journal import Window
from bascule.journal.samples import RequestSample
from bascule.model.loading import read_design, read_scenario
from bascule.model.scenario import Guardrail
from bascule.plan import Plan, plan
from bascule.runner.engine import (
    BeforeCheck,
    CheckAfter,
    DoAction,
    Finish,
    Stage,
    Wait,
    check_before,
    next_step,
)
from bascule.runner.guardrails import GuardrailMonitor

ROOT = Path(__file__).resolve().parent.parent
PLAN = plan(
    read_design(ROOT / "designs" / "active-passive-sovereign.yaml"),
    read_scenario(ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml"),
)
GUARDRAILS = TypeAdapter(tuple[Guardrail, ...])


def test_steps_walk_warm_up_actions_settle_and_finish() -> None:
    assert next_step(PLAN, 0, -5.0, warm_up=5, settle=10) == Wait(0.0, Stage.WARM_UP)
    first = next_step(PLAN, 0, 0.001, warm_up=5, settle=10)
    assert isinstance(first, DoAction) and first.index == 0 and first.late_by < 0.01
    step = next_step(PLAN, 3, 1.0, warm_up=5, settle=10)
    assert isinstance(step, Wait) and step.stage is Stage.FAULTS and step.until == PLAN.actions[3].offset
    n = len(PLAN.actions)
    assert next_step(PLAN, n, 61.0, warm_up=5, settle=10) == Wait(70.0, Stage.SETTLE)
    # No hypothesis (over 0): its check is "started" as the settle ends, then the run finishes.
    assert next_step(PLAN, n, 70.0, warm_up=5, settle=10) == CheckAfter(0.0)
    assert next_step(PLAN, n, 70.0, warm_up=5, settle=10, checking=True) == Finish()
    # Every action is reached, in order, when the clock walks the run.
    done, t, checking = 0, -5.0, False
    while not isinstance(step := next_step(PLAN, done, t, warm_up=5, settle=10, checking=checking), Finish):
        if isinstance(step, DoAction):
            assert step.index == done
            done += 1
        elif isinstance(step, CheckAfter):
            checking = True
        else:
            t = step.until
    assert done == n and checking


def walk(plan: Plan, *, settle: float, over: float, late: float = 0.0) -> tuple[float, float, float]:
    """Walk the run's clock through `next_step` (each action done `late` seconds after its
    offset): (when the last action was done, when the check after opened, when the run finished)."""
    done, t, opened, last_done = 0, 0.0, None, 0.0
    while not isinstance(
        step := next_step(
            plan,
            done,
            t,
            warm_up=0,
            settle=settle,
            over=over,
            checking=opened is not None,
            faults_over=last_done,
        ),
        Finish,
    ):
        if isinstance(step, DoAction):
            # An action is never done while the check after is running.
            assert opened is None
            t += late
            done, last_done = done + 1, t
        elif isinstance(step, CheckAfter):
            assert done == len(plan.actions) and opened is None
            opened = t
        else:
            assert step.until > t
            t = step.until
    assert opened is not None
    return last_done, opened, t


def test_the_check_after_rollback_is_the_settles_last_over_seconds_once_every_revert_is_done() -> None:
    n = len(PLAN.actions)
    last = max(a.offset for a in PLAN.actions)  # 57.9 s: the plan's last revert, of 60
    end = PLAN.run_length + 10  # 70: the plan's end plus the settle
    # The settle's last 3 s, once every revert is done and the impact window (last revert + settle,
    # what the metrics measure) has ended.
    early = 50.0  # had the last revert been done at 50 s
    assert next_step(PLAN, n, 61.0, warm_up=5, settle=10, over=3, faults_over=early) == Wait(
        67.0, Stage.SETTLE
    )
    assert next_step(PLAN, n, 67.0, warm_up=5, settle=10, over=3, faults_over=early) == CheckAfter(0.0)
    assert next_step(PLAN, n, 67.5, warm_up=5, settle=10, over=3, checking=True) == Wait(end, Stage.SETTLE)
    assert next_step(PLAN, n, end, warm_up=5, settle=10, over=3, checking=True) == Finish()
    # Before the last action (a revert) is done, never a check, whatever the clock says.
    assert isinstance(next_step(PLAN, n - 1, 69.0, warm_up=5, settle=10, over=3), DoAction)
    # This plan: its last revert at 57.9 s, the impact window ends at 67.9 s: the check opens then,
    # ending 0.9 s after the settle.
    last_done, opened, finished = walk(PLAN, settle=10, over=3)
    assert last_done == last and opened == last + 10 and finished == end
    # A settle shorter than `over`: the window opens at the impact window's end (the last revert
    # plus the settle) and lasts `over` all the same (the runner ends the check): the settle is
    # extended by what it lacks.
    assert walk(PLAN, settle=1, over=3)[1:] == (last + 1, PLAN.run_length + 1)
    last_done, opened, finished = walk(PLAN, settle=0, over=3)
    assert opened == last_done == last and finished == PLAN.run_length
    # Actions done late (a slow target): the window waits for them; no fault in force during it.
    last_done, opened, _ = walk(PLAN, settle=1, over=3, late=0.5)
    assert opened >= last_done + 1
    # No settle at all, no hypothesis: as before, straight to the end.
    assert walk(PLAN, settle=0, over=0)[1:] == (PLAN.run_length, PLAN.run_length)
    # A plan with no action (no phase touched the design): the metrics measure the whole planned
    # run and settle, so the check opens as the settle ends.
    empty = replace(PLAN, actions=())
    assert walk(empty, settle=10, over=3)[1:] == (end, end)


def test_the_check_before_any_fault_is_the_warm_ups_last_over_seconds() -> None:
    assert check_before(5.0, 3.0, 0.0) == BeforeCheck(2.0, 0.0)
    # A warm-up shorter than `over` (or none): the check starts with it and runs past its end.
    assert check_before(2.0, 3.0, 0.0) == BeforeCheck(0.0, 0.0)
    assert check_before(0.0, 3.0, 0.0) == BeforeCheck(0.0, 0.0)
    # wait_for: the wait may also use the warm-up left, so that it gives up when it used to (the
    # warm-up's end plus wait_for), never sooner.
    assert check_before(5.0, 3.0, 10.0) == BeforeCheck(2.0, 13.0)
    assert check_before(2.0, 3.0, 10.0) == BeforeCheck(0.0, 12.0)
    assert check_before(0.0, 0.4, 0.5) == BeforeCheck(0.0, 0.5)


def window(start: float, ok: int, failed: int, latency: float = 0.01) -> Window:
    w = Window(start, 1.0)
    for _ in range(ok):
        w.add(RequestSample("load", "ask", start, latency, True))
    for _ in range(failed):
        w.add(RequestSample("load", "ask", start, latency, False, error="boom"))
    return w


def test_success_ratio_trips_after_its_duration_not_before() -> None:
    monitor = GuardrailMonitor(
        GUARDRAILS.validate_python([{"kind": "success-ratio", "below": 0.5, "for": "3s"}]), 0.99
    )
    assert monitor.observe(window(0, 1, 9)) is None
    assert monitor.observe(window(1, 1, 9)) is None
    assert monitor.observe(window(2, 0, 0)) is None  # no traffic: neither trips nor resets
    trip = monitor.observe(window(3, 0, 10))
    assert trip is not None and trip.at == 4.0 and "below 0.5" in trip.reason


def test_late_windows_of_a_second_already_seen_are_merged_not_counted_again() -> None:
    # During a blackhole, requests slower than the aggregator's grace land in late windows with
    # the start of one already closed — several per second. They are the same second: 20 s of
    # failures take 20 s to trip, not 4 (seen in an OVHcloud replay before this was fixed).
    monitor = GuardrailMonitor(
        GUARDRAILS.validate_python([{"kind": "success-ratio", "below": 0.05, "for": "20s"}]), 0.99
    )
    for second in range(19):
        assert monitor.observe(window(second, 0, 3)) is None
        for _ in range(8):  # late stragglers of that same second
            assert monitor.observe(window(second, 0, 2)) is None, f"tripped after {second + 1} s"
    trip = monitor.observe(window(19, 0, 3))
    assert trip is not None and trip.at == 20.0 and "for 20 s" in trip.reason
    # A late window can also turn a second good: successes that came back late count.
    recovering = GuardrailMonitor(
        GUARDRAILS.validate_python([{"kind": "success-ratio", "below": 0.5, "for": "3s"}]), 0.99
    )
    assert recovering.observe(window(0, 0, 4)) is None
    assert recovering.observe(window(1, 0, 4)) is None
    assert recovering.observe(window(1, 10, 0)) is None  # second 1 was mostly served after all
    assert recovering.observe(window(2, 0, 4)) is None, "the streak restarted after second 1"


def test_a_good_window_resets_the_streak() -> None:
    monitor = GuardrailMonitor(
        GUARDRAILS.validate_python([{"kind": "success-ratio", "below": 0.5, "for": "2s"}]), 0.99
    )
    assert monitor.observe(window(0, 0, 10)) is None
    assert monitor.observe(window(1, 10, 0)) is None
    assert monitor.observe(window(2, 0, 10)) is None


def test_error_budget_and_latency_and_sovereignty() -> None:
    rails = GUARDRAILS.validate_python(
        [
            {"kind": "error-budget", "burnt": 1.0},
            {"kind": "latency-p95", "above": "500ms", "for": "1s"},
            {"kind": "sovereignty-violations", "above": 2},
        ]
    )
    monitor = GuardrailMonitor(rails, availability_objective=0.9)
    assert monitor.observe(window(0, 95, 5)) is None  # 5 failures, budget 10
    trip = monitor.observe(window(1, 94, 6))  # 11 failures, budget 20
    assert trip is None
    trip = monitor.observe(window(2, 80, 20))  # 31 failures, budget 30
    assert trip is not None and trip.guardrail == "error-budget"
    slow = GuardrailMonitor(rails[1:], 0.9).observe(window(0, 10, 0, latency=0.8))
    assert slow is not None and "p95" in slow.reason
    sov = GuardrailMonitor(rails, 0.9)
    assert sov.observe_violations(2, 1.0) is None
    assert sov.observe_violations(1, 1.5) is not None
