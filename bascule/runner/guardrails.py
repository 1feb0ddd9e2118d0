"""Guardrails: stop conditions that abort a run. Pure: fed closed windows and violation counts,
they say when and why to stop.

- ``success-ratio``: the success ratio stays below ``below`` for ``for`` seconds (consecutive
  windows that saw requests; an empty window neither trips nor resets it);
- ``latency-p95``: p95 stays above ``above`` for ``for`` seconds;
- ``error-budget``: failures since the start exceed ``burnt`` × the budget that the availability
  objective allows for the requests made so far;
- ``sovereignty-violations``: more than ``above`` violations seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bascule.model.scenario import (
    ErrorBudgetGuardrail,
    Guardrail,
    LatencyGuardrail,
    SovereigntyGuardrail,
    SuccessRatioGuardrail,
)
from bascule.runner.journal import Window

__all__ = ["GuardrailMonitor", "Trip"]


@dataclass(frozen=True)
class Trip:
    guardrail: str
    reason: str
    at: float
    """Run seconds: the end of the window that tripped it."""


@dataclass
class _Streak:
    seconds: float = 0.0


@dataclass
class GuardrailMonitor:
    guardrails: tuple[Guardrail, ...]
    availability_objective: float
    requests: int = 0
    failures: int = 0
    violations: int = 0
    _streaks: dict[int, _Streak] = field(default_factory=dict)

    def observe(self, window: Window) -> Trip | None:
        """Take in one closed window (in time order); the first guardrail it trips, if any."""
        self.requests += window.requests
        self.failures += window.requests - window.ok
        end = window.start + window.length
        for index, guardrail in enumerate(self.guardrails):
            trip = self._check(index, guardrail, window, end)
            if trip is not None:
                return trip
        return None

    def observe_violations(self, count: int, at: float) -> Trip | None:
        self.violations += count
        for guardrail in self.guardrails:
            if isinstance(guardrail, SovereigntyGuardrail) and self.violations > guardrail.above:
                return Trip(
                    _name(guardrail),
                    f"{self.violations} sovereignty violations (more than {guardrail.above})",
                    at,
                )
        return None

    def _check(self, index: int, guardrail: Guardrail, window: Window, end: float) -> Trip | None:
        if isinstance(guardrail, SuccessRatioGuardrail | LatencyGuardrail):
            if window.requests == 0:
                return None
            streak = self._streaks.setdefault(index, _Streak())
            if isinstance(guardrail, SuccessRatioGuardrail):
                bad = window.ok / window.requests < guardrail.below
                what = f"success ratio below {guardrail.below:g}"
            else:
                p95 = window.latency.quantile(0.95)
                bad = p95 is None or p95 > guardrail.above
                what = f"p95 latency above {guardrail.above:g} s"
            streak.seconds = streak.seconds + window.length if bad else 0.0
            if streak.seconds >= guardrail.for_ - 1e-9:
                return Trip(_name(guardrail), f"{what} for {streak.seconds:g} s", end)
            return None
        if isinstance(guardrail, ErrorBudgetGuardrail):
            budget = (1 - self.availability_objective) * self.requests
            if self.requests and self.failures > guardrail.burnt * budget:
                burnt = self.failures / budget if budget else float("inf")
                return Trip(
                    _name(guardrail),
                    f"{burnt:.1f}× the error budget burnt "
                    f"({self.failures} failures in {self.requests} requests)",
                    end,
                )
        return None


def _name(guardrail: Guardrail) -> str:
    kind: str = getattr(guardrail, "kind", "guardrail")
    return guardrail.name or kind
