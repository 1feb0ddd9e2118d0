"""Guardrails: stop conditions that abort a run. Pure: fed closed windows and violation counts,
they say when and why to stop.

- ``success-ratio``: the success ratio stays below ``below`` for ``for`` seconds (consecutive
  windows that saw requests; an empty window neither trips nor resets it). Time is counted by
  window start: a request slower than the aggregator's grace lands in a late window with the
  start of one already seen, which is merged into it — during a blackhole there are many — and
  never counted as another second;
- ``latency-p95``: p95 stays above ``above`` for ``for`` seconds;
- ``error-budget``: failures since the start exceed ``burnt`` × the budget that the availability
  objective allows for the requests made so far;
- ``sovereignty-violations``: more than ``above`` violations seen;
- ``probe``: the named steady-state probe has failed, with no success since, for ``for`` seconds
  (from the start of its first failing sample to the end of the latest one);
- ``alert``: one of the named alerts has fired in every read of its source for ``for`` seconds
  (counted the same way; with ``unreadable: abort``, a read that fails counts as firing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bascule.journal import LatencySketch, Window
from bascule.model.scenario import (
    AlertGuardrail,
    ErrorBudgetGuardrail,
    Guardrail,
    LatencyGuardrail,
    ProbeGuardrail,
    SovereigntyGuardrail,
    SuccessRatioGuardrail,
)

__all__ = ["GuardrailMonitor", "Trip"]


@dataclass(frozen=True)
class Trip:
    guardrail: str
    reason: str
    at: float
    """Run seconds (from the journal's origin, as windows count them): the end of the window,
    sample or read that tripped it."""


@dataclass
class _Second:
    """Every window seen with one start, merged."""

    length: float
    requests: int = 0
    ok: int = 0
    latency: LatencySketch = field(default_factory=LatencySketch)


_KEEP = 600.0
"""Seconds of window starts kept for streaks: longer than any sensible guardrail's ``for``."""


@dataclass
class GuardrailMonitor:
    guardrails: tuple[Guardrail, ...]
    availability_objective: float
    requests: int = 0
    failures: int = 0
    violations: int = 0
    _seconds: dict[float, _Second] = field(default_factory=dict)
    _failing_since: dict[str, float] = field(default_factory=dict)
    _alerting_since: dict[int, float] = field(default_factory=dict)

    @property
    def alert_guardrails(self) -> list[tuple[int, AlertGuardrail]]:
        """The ``alert`` guardrails, with their index."""
        return [(i, g) for i, g in enumerate(self.guardrails) if isinstance(g, AlertGuardrail)]

    @property
    def watched_probes(self) -> frozenset[str]:
        """The probes a ``probe`` guardrail watches, by name."""
        return frozenset(g.probe for g in self.guardrails if isinstance(g, ProbeGuardrail))

    def observe_sample(
        self, probe: str, passed: bool, started: float, ended: float, error: str | None
    ) -> Trip | None:
        """Take in one sample of a probe (run seconds); the ``probe`` guardrail it trips, if any.
        Samples may arrive out of order: a success that started before the failing streak did
        (a slow request) does not end it."""
        watching = [g for g in self.guardrails if isinstance(g, ProbeGuardrail) and g.probe == probe]
        if not watching:
            return None
        since = self._failing_since.get(probe)
        if passed:
            if since is not None and started >= since:
                del self._failing_since[probe]
            return None
        since = started if since is None else min(since, started)
        self._failing_since[probe] = since
        for guardrail in watching:
            if ended - since >= guardrail.for_ - 1e-9:
                why = f": {error}" if error else ""
                return Trip(
                    _name(guardrail), f"probe {probe!r} failing for {ended - since:.1f} s{why}", ended
                )
        return None

    def observe_alerts(
        self, index: int, started: float, ended: float, firing: tuple[str, ...], error: str | None
    ) -> Trip | None:
        """Take in one read of the source of the ``alert`` guardrail at ``index`` (run seconds):
        the alerts of its own that fire, or why the source could not be read. A read where none
        fires ends the streak; an unreadable one, with ``unreadable: ignore``, neither counts nor
        ends it."""
        guardrail = self.guardrails[index]
        if not isinstance(guardrail, AlertGuardrail):
            raise ValueError(f"guardrail {index} is not an alert guardrail")
        if error is not None and guardrail.unreadable == "ignore":
            return None
        since = self._alerting_since.get(index)
        if error is None and not firing:
            if since is not None and started >= since:
                del self._alerting_since[index]
            return None
        since = started if since is None else min(since, started)
        self._alerting_since[index] = since
        if ended - since < guardrail.for_ - 1e-9:
            return None
        lasting = f" for {ended - since:.1f} s" if guardrail.for_ > 0 else ""
        if error is not None:
            reason = f"the alert source {guardrail.url} cannot be read{lasting}: {error}"
        else:
            alerts = "alert" if len(firing) == 1 else "alerts"
            reason = f"{alerts} firing{lasting}: {', '.join(firing)}"
        return Trip(_name(guardrail), reason, ended)

    def observe(self, window: Window) -> Trip | None:
        """Take in one closed window (in time order, late windows of an earlier start included);
        the first guardrail it trips, if any."""
        self.requests += window.requests
        self.failures += window.requests - window.ok
        second = self._seconds.setdefault(window.start, _Second(window.length))
        second.requests += window.requests
        second.ok += window.ok
        second.latency.merge(window.latency)
        latest = max(self._seconds)
        for start in [t for t in self._seconds if t < latest - _KEEP]:
            del self._seconds[start]
        end = latest + self._seconds[latest].length
        for guardrail in self.guardrails:
            trip = self._check(guardrail, end)
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

    def _streak(self, bad: Callable[[_Second], bool]) -> float:
        """Seconds of the latest run of bad window starts (empty ones skipped, not breaking it)."""
        seconds = 0.0
        for start in sorted(self._seconds, reverse=True):
            second = self._seconds[start]
            if second.requests == 0:
                continue
            if not bad(second):
                break
            seconds += second.length
        return seconds

    def _check(self, guardrail: Guardrail, end: float) -> Trip | None:
        if isinstance(guardrail, SuccessRatioGuardrail):
            below = guardrail.below
            seconds = self._streak(lambda s: s.ok / s.requests < below)
            if seconds >= guardrail.for_ - 1e-9:
                return Trip(_name(guardrail), f"success ratio below {below:g} for {seconds:g} s", end)
            return None
        if isinstance(guardrail, LatencyGuardrail):
            above = guardrail.above

            def slow(second: _Second) -> bool:
                p95 = second.latency.quantile(0.95)
                return p95 is None or p95 > above

            seconds = self._streak(slow)
            if seconds >= guardrail.for_ - 1e-9:
                return Trip(_name(guardrail), f"p95 latency above {above:g} s for {seconds:g} s", end)
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
