"""The steady-state hypothesis, checked before any fault and after rollback: its probes run in a
thread of their own while the run's traffic keeps being pumped, and an abort stops waiting. Before
any fault, ``steady_state.wait_for`` lets a service still warming up answer first.

A check is started (`SteadyStateCheck.start`) where `bascule.runner.engine` places it — in the
warm-up's last ``over`` seconds, in the settle's — and the runner goes on pumping the run's
traffic, and then ends it (`SteadyStateCheck.finish`), which journals when its window was."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Final

from bascule.journal import Journal
from bascule.model.scenario import Scenario
from bascule.probes.base import ProbeContext, make_probes
from bascule.probes.runner import HypothesisResult, check_hypothesis
from bascule.runner.display import Display
from bascule.runner.traffic import TICK, Traffic

__all__ = ["FAILED_AFTER", "FAILED_BEFORE", "Held", "SteadyStateCheck", "failure_reasons"]

FAILED_BEFORE: Final = "the steady-state hypothesis failed before any fault"
FAILED_AFTER: Final = "the steady-state hypothesis failed after rollback"


@dataclass(frozen=True)
class Held:
    """Whether a steady-state check held (its truth value); when it did not, why."""

    ok: bool
    reasons: tuple[str, ...] = ()
    """`failure_reasons` of the check: one line per distinct (probe, error)."""

    def __bool__(self) -> bool:
        return self.ok

    def failed(self, what: str) -> str:
        """The run's reason when the check did not hold: `what`, then why."""
        return f"{what}: {'; '.join(self.reasons)}" if self.reasons else what


class SteadyStateCheck:
    """One check of the hypothesis (`when`: before, after), running in its own thread."""

    def __init__(self, when: str, scenario: Scenario, display: Display) -> None:
        self.when = when
        self.scenario = scenario
        self.display = display
        self._box: dict[str, HypothesisResult] = {}
        self._worker: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        when: str,
        scenario: Scenario,
        context: ProbeContext,
        traffic: Traffic,
        display: Display,
        *,
        wait_up_to: float | None = None,
    ) -> SteadyStateCheck:
        """Start checking now, unless the scenario has no hypothesis. `wait_up_to`: before any
        fault, how long the check may wait for every probe to answer once (`steady_state.wait_for`
        by default; the check after never waits)."""
        check = cls(when, scenario, display)
        steady = scenario.steady_state
        if steady is None:
            return check
        display.status(f"checking the steady-state hypothesis ({when})")
        probes = make_probes(steady.probes, context)
        before = when == "before"
        check._worker = threading.Thread(
            target=lambda: check._box.update(
                result=check_hypothesis(
                    probes,
                    probes[0].context,
                    steady.over,
                    steady.success_ratio,
                    on_sample=traffic.checks.put,
                    wait_for=steady.wait_for if before else 0.0,
                    wait_up_to=wait_up_to if before else None,
                )
            ),
            name="bascule-hypothesis",
            daemon=True,
        )
        check._worker.start()
        return check

    def finish(self, traffic: Traffic, journal: Journal) -> Held:
        """Pump the run's traffic until the check has ended; whether the hypothesis holds (and
        why not), journaled. Not held when aborted."""
        if self.scenario.steady_state is None:
            journal.write("hypothesis", when=self.when, ok=True, skipped=True)
            return Held(True)
        worker = self._worker
        while worker is not None and worker.is_alive() and not traffic.abort.is_set:
            traffic.pump(time.monotonic() + TICK)
            worker.join(0)
        result = self._box.get("result")
        if result is None:
            return Held(False)
        window = result.window
        journal.write(
            "hypothesis",
            durable=True,
            when=self.when,
            ok=result.ok,
            summary=result.summary(),
            failures=[str(f) for f in result.failures[:20]],
            start=None if window is None else round(window[0] - journal.origin, 6),
            end=None if window is None else round(window[1] - journal.origin, 6),
            **({"waited": round(result.waited, 6)} if result.wait_for and window is not None else {}),
        )
        display = self.display
        if result.ok:
            display.event(result.summary())
        else:  # also the live view's stage, so that a failed hypothesis stays on screen
            display.status(result.summary())
            for reason in failure_reasons(result):
                display.event(f"  {reason}")
        return Held(result.ok, () if result.ok else tuple(failure_reasons(result)))


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
