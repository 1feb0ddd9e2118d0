"""The steady-state hypothesis, checked before any fault and after rollback: its probes run in a
thread of their own while the run's traffic keeps being pumped, and an abort stops waiting. Before
any fault, ``steady_state.wait_for`` lets a service still warming up answer first."""

from __future__ import annotations

import threading
import time

from bascule.journal import Journal
from bascule.model.scenario import Scenario
from bascule.probes.base import ProbeContext, make_probes
from bascule.probes.runner import HypothesisResult, check_hypothesis
from bascule.runner.display import Display
from bascule.runner.traffic import TICK, Traffic

__all__ = ["check_steady_state", "failure_reasons"]


def check_steady_state(
    when: str, scenario: Scenario, context: ProbeContext, traffic: Traffic, journal: Journal, display: Display
) -> bool:
    """Whether the hypothesis holds (`when`: before, after); journaled. False when aborted."""
    steady = scenario.steady_state
    if steady is None:
        journal.write("hypothesis", when=when, ok=True, skipped=True)
        return True
    display.status(f"checking the steady-state hypothesis ({when})")
    probes = make_probes(steady.probes, context)
    box: dict[str, HypothesisResult] = {}
    worker = threading.Thread(
        target=lambda: box.update(
            result=check_hypothesis(
                probes,
                probes[0].context,
                steady.over,
                steady.success_ratio,
                on_sample=traffic.checks.put,
                wait_for=steady.wait_for if when == "before" else 0.0,
            )
        ),
        name="bascule-hypothesis",
        daemon=True,
    )
    worker.start()
    while worker.is_alive() and not traffic.abort.is_set:
        traffic.pump(time.monotonic() + TICK)
        worker.join(0)
    result = box.get("result")
    if result is None:
        return False
    journal.write(
        "hypothesis",
        durable=True,
        when=when,
        ok=result.ok,
        summary=result.summary(),
        failures=[str(f) for f in result.failures[:20]],
    )
    if result.ok:
        display.event(result.summary())
    else:  # also the live view's stage, so that a failed hypothesis stays on screen
        display.status(result.summary())
        for reason in failure_reasons(result):
            display.event(f"  {reason}")
    return result.ok


def failure_reasons(result: HypothesisResult, most: int = 3) -> list[str]:
    """Why the hypothesis failed, one line per distinct (probe, error), with its count (pure)."""
    counts: dict[tuple[str, str], int] = {}
    for failure in result.failures:
        key = (failure.probe, failure.error)
        counts[key] = counts.get(key, 0) + 1
    lines = [f"{probe}: {error}" + (f" (×{n})" if n > 1 else "") for (probe, error), n in counts.items()]
    if len(lines) > most:
        lines = [*lines[:most], f"… and {len(lines) - most} more kinds of failure (the journal has them)"]
    return lines
