"""The derived figures of a run — impact window, detection, failover, outages and RTO, failback,
RPO, sovereignty, correctness, error budget, cost, per-phase figures and the time series — from
the `JournalState` that `compute_metrics` kept. Pure; docs/scoring.md defines each figure."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from itertools import takewhile

from bascule.journal.traffic import over_cycles
from bascule.metrics.context import compute_cost, design_facts, run_info
from bascule.metrics.correctness import compute_correctness
from bascule.metrics.discovered import shift_discovered
from bascule.metrics.idle import idle_regions
from bascule.metrics.loadrate import slowed_load
from bascule.metrics.model import (
    ErrorBudget,
    Event,
    Finding,
    Metrics,
    Noise,
    Outage,
    PhaseMetrics,
    PhasePlan,
)
from bascule.metrics.noise import explained_failures, measure_noise
from bascule.metrics.rpo import compute_rpo
from bascule.metrics.series import compute_series
from bascule.metrics.sovereignty import judge_sovereignty
from bascule.metrics.state import (
    MAX_EVENTS,
    Aggregate,
    FaultInterval,
    JournalState,
    MergedWindow,
    rounded,
)

__all__ = ["FAILBACK_NOT_BACK", "SUSTAIN", "derive"]

SUSTAIN = 1.0
"""Seconds the success ratio must stay at the objective for an outage to count as over."""
FAILBACK_NOT_BACK = "traffic was not back on"
"""How the failback note begins when the run failed over and traffic never came home: the reports
read it as "not back", a design's shortcoming, where the other notes say there was nothing to measure."""
_EPS = 1e-9
_INF = math.inf


def derive(state: JournalState) -> Metrics:
    """The metrics of a journal read to its end."""
    return _Figures(state).metrics()


class _Figures:
    """The derived figures; ``self.r`` is the state the journal's records left."""

    def __init__(self, state: JournalState) -> None:
        self.r = state
        reader = state
        self.objective = reader.objectives.availability
        self.windows = [reader.windows[k] for k in sorted(reader.windows)]
        self.window_starts = [w.start for w in self.windows]
        self.base = reader.plan_start if reader.plan_start is not None else 0.0
        self.intervals = sorted(reader.intervals, key=lambda iv: iv.apply)
        self.first_fault = self.intervals[0].apply if self.intervals else None
        ends = [t for t in (reader.last_t, reader.ticks.last_instant()) if t is not None and t > -_INF]
        self.data_end = max(ends) if ends else None
        self.notes: dict[str, str] = {}
        self.failover_earliest: float | None = None
        self.failback_earliest: float | None = None
        self.noise = Noise()
        design = reader.design
        self.primary = design.routing_order[0] if design is not None and design.routing_order else None

    def rel(self, t: float | None) -> float | None:
        return None if t is None else round(t - self.base, 6)

    # -- spans ---------------------------------------------------------------------------------

    def span(self, start: float, end: float, *, mostly: bool = False) -> Aggregate:
        """Windows overlapping ``[start, end)``; `mostly`: those at least half inside it (all that
        overlap it when none is), so that a phase's figures are not a window's from before it."""
        agg = Aggregate()
        i = max(0, bisect_left(self.window_starts, start) - 1)
        inside = [w for w in takewhile(lambda w: w.start < end, self.windows[i:]) if w.end > start + _EPS]
        if mostly:
            inside = [w for w in inside if start - _EPS <= w.start + w.length / 2 < end] or inside
        for w in inside:
            agg.add(w)
        return agg

    def before(self, t: float) -> Aggregate:
        """The steady state: the windows that ended by `t` (the first fault), from when the service
        was ready (`JournalState.ready_at`: a cold start's failures are not its noise)."""
        agg = Aggregate()
        for w in self.steady(t):
            agg.add(w)
        return agg

    def steady(self, t: float) -> list[MergedWindow]:
        ready = self.r.ready_at  # from the window in which the service became ready
        return [w for w in self.windows if w.end <= t + _EPS and (ready is None or w.end > ready + _EPS)]

    def first_failed_sample(self, start: float, end: float) -> float | None:
        return self.r.ticks.first_failure(start, end)

    def beyond_noise(self, w: MergedWindow) -> bool:
        """More failures in `w` than the steady state's noise explains (`explained_failures`)."""
        noise = self.noise
        rate = noise.failed / noise.requests if noise.requests else 0.0
        return w.requests - w.ok > explained_failures(w.requests, rate, noise.alpha)

    def first_failure(self, start: float, end: float) -> float | None:
        """The first failed request started in ``[start, end)``: from samples, unless a window shows
        an earlier one. After a noisy steady state, the first failure of the first window whose
        failures are beyond noise."""
        if self.noise.failed:
            for w in self._windows_from(start, end):
                if self.beyond_noise(w):
                    begin = max(w.start, start)
                    found = self.first_failed_sample(begin, w.end)
                    return begin if found is None else found
            return None
        from_samples = self.first_failed_sample(start, end)
        for w in self._windows_from(start, end):
            if w.requests > w.ok:
                if from_samples is None or w.end <= from_samples:
                    return max(w.start, start)
                break
        return from_samples

    def first_success_within(
        self, start: float, end: float, match: Callable[[str, str], bool]
    ) -> tuple[float | None, float | None]:
        """The first success answered in ``[start, end)`` whose (data class, serving region)
        ``match``, and the latest instant it can have been answered when a window told it
        (None when samples did): it was answered between the two — no sooner than its window
        began, no later than its window's end plus the slowest success sent in it, or than the
        first sample that shows one."""
        from_samples = self.r.ticks.first_success(start, end, match)
        for w in self._windows_from(start, end):
            if any(n and match(klass, region) for (klass, region), n in w.served.items()):
                latest = w.end + (w.sketch.upper() or 0.0)
                if from_samples is None or latest <= from_samples:
                    return max(w.start, start), latest
                if w.start < from_samples and not w.sources <= self.r.ticks.sources():
                    # Successes not sampled one by one (the load's) may have come first (trial 11).
                    return max(w.start, start), from_samples
                break
        return from_samples, None

    def _windows_from(self, start: float, end: float) -> Iterable[MergedWindow]:
        i = max(0, bisect_left(self.window_starts, start) - 1)
        for w in self.windows[i:]:
            if w.start >= end:
                return
            if w.end > start + _EPS:
                yield w

    def recovery_instant(self, first: MergedWindow, bad: MergedWindow) -> float:
        """When the stretch below the objective that began with ``first`` and ended with ``bad``
        was over: when the samples that failed in it succeeded again — answered, not sent
        (`Ticks.recovered_at`) —, from ``bad``'s start to the latest a request sent in the window
        after it can have been answered (a request sent as the service came back, but held until
        a fault ended, is answered then); ``bad``'s end when samples do not say. The whole stretch
        is searched because the failures that put ``bad`` below the objective may all be in
        aggregated load windows, while the probe samples that time the recovery failed just
        before it began."""
        after = next(iter(self._windows_from(bad.end, _INF)), None)
        horizon = bad.end if after is None else max(bad.end, after.end + (after.sketch.upper() or 0.0))
        back = self.r.ticks.recovered_at(first.start, bad.end, answered_by=horizon)
        return bad.end if back is None else min(max(back, bad.start), horizon)

    # -- outages and recovery ------------------------------------------------------------------------

    def is_bad(self, w: MergedWindow) -> bool:
        """Below the objective, by more failures than the steady state's noise explains."""
        return w.ok < self.objective * w.requests - _EPS and self.beyond_noise(w)

    def outages(self, start: float, until: float) -> list[Outage]:
        """Stretches below the objective that began before ``until``, searched from ``start``."""
        found: list[Outage] = []
        first: MergedWindow | None = None
        last: MergedWindow | None = None
        good = 0.0
        for w in self.windows:
            if w.end <= start + _EPS or w.requests == 0:
                continue
            if self.is_bad(w):
                if first is None:
                    if w.start >= until:
                        break
                    first = w
                last, good = w, 0.0
            elif first is not None and last is not None:
                good += w.length
                if good >= SUSTAIN - _EPS:
                    found.append(self._outage(first, last, recovered=True))
                    first = last = None
                    good = 0.0
        if first is not None and last is not None:
            found.append(self._outage(first, last, recovered=False))
        return found

    def _outage(self, first: MergedWindow, last: MergedWindow, *, recovered: bool) -> Outage:
        began = self.first_failed_sample(first.start, first.end)
        began = first.start if began is None else began
        end = self.recovery_instant(first, last) if recovered else None
        cause, phases = self.cause(began, first.end)
        return Outage(start=began, end=end, cause=cause, phases=phases)

    def cause(self, began: float, first_end: float) -> tuple[float | None, tuple[int, ...]]:
        """The fault start an outage counts from: the latest fault applied and still in force when
        it began; else a fault applied later within its first window; else, when every fault had
        been reverted by then, the outage's own start. ``None`` before any fault."""
        in_force = [
            iv for iv in self.intervals if iv.apply <= began and (iv.revert is None or iv.revert > began)
        ]
        if in_force:
            return max(iv.apply for iv in in_force), tuple(sorted({iv.phase for iv in in_force}))
        later = [iv for iv in self.intervals if began < iv.apply < first_end]
        if later:
            cause = min(iv.apply for iv in later)
            return cause, tuple(sorted({iv.phase for iv in later if iv.apply == cause}))
        if any(iv.apply <= began for iv in self.intervals):
            return began, ()
        return None, ()

    # -- the metrics -------------------------------------------------------------------------------

    def metrics(self) -> Metrics:
        r = self.r
        first = self.first_fault
        impact = self.impact_bounds()
        if impact is None and self.untouched():
            # The plan ran to its end and none of its faults touched this design (an AWS incident
            # against a design with no AWS region): the service was measured all the same, over the
            # planned run, and a fall below the objective there would still show.
            first = r.plan_start
            impact = self.plan_bounds()
            self.notes["impact_window"] = (
                "no fault of the scenario touched this design: the figures cover the planned run"
            )
        if r.traces_received is not None and (otlp := r.traces_received.note()) is not None:
            self.notes["otlp"] = otlp
        baseline = self.before(first if first is not None else _INF)
        if first is not None:
            self.noise = measure_noise(self.steady(first))
        whole = self.span(*impact) if impact else Aggregate()
        if impact is None:
            stopped = f" ({r.ended.reason})" if r.ended.reason and r.ended.exit_code else ""
            self.notes["impact_window"] = (
                f"no fault was applied: the run stopped before its plan did anything{stopped}"
                if r.started is not None
                else "the journal has no run-started record"
            )
        elif whole.requests == 0:
            self.notes["success_ratio"] = "no request started during the impact window"
        if impact is not None and whole.ok == 0:
            self.notes["latency"] = "no request succeeded during the impact window"
        if first is not None and not baseline.requests:
            self.notes["success_ratio_baseline"] = "no request completed before the first fault"

        outages = (
            [o for o in self.outages(first, impact[1]) if o.cause is not None]
            if impact is not None and first is not None
            else []
        )
        rto, recovered = self.recovery(outages, first, impact)
        # Where traffic may fail over from: the regions of the faults that impair answers (not a
        # replication paused or a control plane frozen, which leave every region serving).
        impaired = tuple(
            dict.fromkeys(
                reg for i, p in r.phase_plans.items() if i not in r.behind_answers for reg in p.regions
            )
        )
        ttd = ttf = None
        if self.first_fault is None and impact is not None:
            self.notes["time_to_detect"] = self.notes["time_to_failover"] = "no fault touched this design"
        elif impact is not None and first is not None:
            ttd = self.delta(self.first_failure(first, impact[1]), first)
            if ttd is None:
                self.notes["time_to_detect"] = (
                    "no request failed after the first fault"
                    if not self.noise.failed
                    else "no window after the first fault failed beyond the steady state's noise "
                    f"({self.noise.failed} of {self.noise.requests} requests failed before it)"
                )
            ttf = self.failover(first, impact[1], impaired, baseline)
        failback = self.failback(baseline, impaired)
        if failback is not None and ttf is None and impaired and first is not None:
            # Failback is coming back after a failover: with none, it would time the traffic that
            # never left (a latency fault the service rode out where it was).
            failback = None
            self.notes["failback"] = (
                "no failover was seen: no request of the impaired regions' classes succeeded elsewhere"
            )
        correctness, _ = compute_correctness(
            self.windows,
            baseline,
            whole,
            impact,
            objective=r.objectives.correctness,
            cause=self.cause,
            alpha=self.noise.alpha,
            notes=self.notes,
            origin=self.base,
        )
        budget = None
        if impact is not None and whole.requests:
            allowed = (1 - self.objective) * whole.requests
            spent = whole.requests - whole.ok
            burnt = spent / allowed if allowed > 0 else (0.0 if spent == 0 else None)
            budget = ErrorBudget(round(allowed, 6), spent, None if burnt is None else round(burnt, 6))
            if burnt is None:
                self.notes["error_budget"] = "the objective allows no failure and some requests failed"
        sovereignty = judge_sovereignty(r, bool(self.windows))
        if sovereignty.note is not None:
            self.notes["sovereignty"] = sovereignty.note
        return Metrics(
            run=run_info(self.r),
            objectives=r.objectives,
            weights=r.weights,
            design=design_facts(self.r.design, self.primary),
            impact_window=(
                (round(impact[0] - self.base, 6), round(impact[1] - self.base, 6)) if impact else None
            ),
            requests=whole.requests,
            failed=whole.requests - whole.ok,
            success_ratio=rounded(whole.ratio),
            success_ratio_baseline=rounded(baseline.ratio),
            latency=whole.latency(),
            latency_baseline=baseline.latency(),
            by_class={k: (v[0], v[1]) for k, v in sorted(whole.by_class.items())},
            time_to_detect=ttd,
            time_to_failover=ttf,
            time_to_failover_earliest=self.failover_earliest if ttf is not None else None,
            failback_earliest=self.failback_earliest if failback is not None else None,
            rto=rto,
            recovered=recovered,
            outages=tuple(
                Outage(round(o.start - self.base, 6), self.rel(o.end), self.rel(o.cause), o.phases)
                for o in outages
            ),
            failback=failback,
            rpo=compute_rpo(r, self.notes, self.rel),
            sovereignty_judged=sovereignty.judged,
            sovereignty_judged_requests=sovereignty.requests,
            sovereignty_unattributed=sovereignty.unattributed,
            paths_by_source=sources.figures()
            if r.paths_report and (sources := r.paths_report.sources)
            else None,
            noise=self.noise,
            discovered=shift_discovered(r.discovered, self.base),
            sovereignty_violations=sovereignty.violations,
            violating_requests=sovereignty.violating,
            violations=tuple(replace(v, t=round(v.t - self.base, 6)) for v in r.violations),
            violations_by_hop=tuple((*k, n) for k, n in r.by_hop.most_common()),
            correctness=correctness,
            degraded=whole.degraded,
            error_budget=budget,
            cost=compute_cost(self.r.design, self.primary, self.notes),
            phases=self.phases(baseline, outages),
            series=compute_series(self.windows, self.r.design, self.rel),
            findings=tuple(
                Finding(
                    kind=f.kind, message=f.message, regions=f.regions, data_class=f.data_class, phase=f.phase
                )
                for f in r.findings
            )
            + slowed_load(
                self.windows, self.intervals, self.first_fault, self.r.load_users, self.r.phase_plans
            )
            + (idle_regions(baseline.served, impaired) if first is not None else ()),
            events=self.events(),
            notes=dict(self.notes),
        )

    def untouched(self) -> bool:
        """The plan ran to its end without applying any fault."""
        return self.first_fault is None and self.r.plan_start is not None and self.r.plan_done

    def plan_bounds(self) -> tuple[float, float] | None:
        start = self.r.plan_start
        if start is None:
            return None
        end = start + (self.r.run_length or 0.0) + self.r.settle
        if self.data_end is not None:
            end = min(end, self.data_end)
        return start, max(end, start)

    def impact_bounds(self) -> tuple[float, float] | None:
        if self.first_fault is None:
            return None
        end = self.data_end if self.data_end is not None else self.first_fault
        if self.r.reverts and not any(iv.revert is None for iv in self.intervals):
            end = min(end, max(self.r.reverts) + self.r.settle)
        return self.first_fault, max(end, self.first_fault)

    def delta(self, t: float | None, since: float) -> float | None:
        return None if t is None else round(max(0.0, t - since), 6)

    def recovery(
        self, outages: Sequence[Outage], first: float | None, impact: tuple[float, float] | None
    ) -> tuple[float | None, bool | None]:
        if impact is None or first is None:
            self.notes["rto"] = "no fault was applied"
            return None, None
        if not outages:
            if not any(w.end > first for w in self.windows):
                self.notes["rto"] = "no request was made after the first fault"
                return None, None
            return 0.0, True
        if any(o.end is None for o in outages):
            self.notes["rto"] = "the success ratio never got back to the objective before the journal ended"
            return None, False
        return round(max(o.rto or 0.0 for o in outages), 6), True

    def failover(
        self, start: float, end: float, impaired: Sequence[str], baseline: Aggregate
    ) -> float | None:
        if not impaired:
            self.notes.setdefault(
                "time_to_failover",
                "the plan impairs no region's answers (a replication paused or a control plane "
                "frozen leaves every region serving)"
                if self.r.behind_answers
                else "the plan impairs no region",
            )
            return None
        bad = set(impaired)
        t, within = self.first_success_within(start, end, _elsewhere(self.served_in(bad, baseline), bad))
        if t is None:  # every phase's regions together may leave nowhere: each phase's, from its start
            t, within = min(self._failovers_by_phase(end, baseline), default=(None, None), key=lambda f: f[0])
        if t is None:
            self.notes.setdefault(
                "time_to_failover",
                f"no request of a class served in {', '.join(impaired)} succeeded elsewhere",
            )
        if within is not None:  # a span: the figure is its end, never the 0 s its start may be (trial 11)
            self.failover_earliest = self.delta(t, start)
        return self.delta(t if within is None else within, start)

    def _failovers_by_phase(self, end: float, baseline: Aggregate) -> list[tuple[float, float | None]]:
        """The first success outside each phase's own regions while it was in force: traffic that
        left a region for one a later phase impairs (a new user's fr-par failing at 0 s, then its
        standby slowed at 20 s) did fail over, though no region is outside both."""
        found = []
        plans = self.r.phase_plans
        for iv in self.intervals:
            plan = plans.get(iv.phase)
            if plan is None or not plan.regions or iv.phase in self.r.behind_answers:
                continue
            until = end if iv.revert is None else min(iv.revert, end)
            bad = {  # its regions, and those of every phase in force with it at some point
                region
                for other in self.intervals
                if other.apply < until
                and (other.revert is None or other.revert > iv.apply)
                and other.phase not in self.r.behind_answers
                for region in (plans[other.phase].regions if other.phase in plans else ())
            }
            t, within = self.first_success_within(
                iv.apply, until, _elsewhere(self.served_in(bad, baseline), bad)
            )
            if t is not None:
                found.append((t, within))
        return found

    def served_in(self, regions: set[str], baseline: Aggregate) -> set[str]:
        """The data classes ``regions`` served before the faults (every class, without a baseline):
        only their traffic can fail over from there."""
        if not baseline.served:
            return {k for w in self.windows for (k, _) in w.served}
        return {k for (k, region), n in baseline.served.items() if n and region in regions}

    def failback(self, baseline: Aggregate, impaired: Sequence[str]) -> float | None:
        """The last revert before it (and after every fault on answers) → the first success served
        again where its class was served before the faults, once half that share is back there."""
        if not self.r.reverts:
            self.notes["failback"] = "no fault was reverted"
            return None
        # From no earlier than that of the last fault on answers (the 2025-10-20 replay reverts its
        # control plane last, long after the traffic came home: trial 11).
        moved = [
            iv.revert
            for iv in self.intervals
            if iv.revert is not None and iv.phase not in self.r.behind_answers
        ]
        last = max(moved) if moved else max(self.r.reverts)
        home: dict[str, str] = {}
        for (k, region), n in sorted(baseline.served.items(), key=lambda item: -item[1]):
            if n and k not in home:
                home[k] = region
        if not home:
            self.notes["failback"] = "no request was served before the first fault"
            return None
        if not impaired and self.r.behind_answers:
            self.notes["failback"] = "the plan impairs no region's answers: nothing failed over to come back"
            return None
        home = {k: region for k, region in home.items() if region in impaired}
        totals = {k: sum(n for (c, _), n in baseline.served.items() if c == k) for k in home}
        if not home or not sum(totals.values()):
            self.notes["failback"] = "no class was served in an impaired region before the first fault"
            return None
        at_home = sum(n for (k, region), n in baseline.served.items() if home.get(k) == region)
        threshold = at_home / sum(totals.values()) / 2
        end = self.data_end if self.data_end is not None else last
        for w in self._windows_from(last, end + 1.0):
            mine = sum(n for (k, _), n in w.served.items() if k in home)
            there = sum(n for (k, region), n in w.served.items() if home.get(k) == region)
            if mine and there / mine >= threshold - _EPS:
                t, within = self.first_success_within(
                    max(w.start, last), w.end, lambda k, region: home.get(k) == region
                )
                back = within or t or w.end  # (monotonic instants, never 0) a span: its end
                since = max(rv for rv in self.r.reverts if rv <= back)  # a thaw that let it back too
                if within is not None:
                    self.failback_earliest = self.delta(max(t or back, since), since)
                return self.delta(back, since)
        where = ", ".join(sorted(set(home.values())))
        self.notes["failback"] = f"{FAILBACK_NOT_BACK} {where} when the journal ended"
        return None

    def phases(self, baseline: Aggregate, all_outages: Sequence[Outage]) -> tuple[PhaseMetrics, ...]:
        out = []
        plans = self.r.phase_plans
        by_phase: dict[int, list[FaultInterval]] = {}
        for iv in self.intervals:
            by_phase.setdefault(iv.phase, []).append(iv)
        for index in sorted(set(plans) | set(by_phase)):
            plan = plans.get(index) or PhasePlan(index, f"phase {index}", "", "", (), None, None, None, None)
            ivs = by_phase.get(index, [])
            start = ivs[0].apply if ivs else None
            reverted = [iv.revert for iv in ivs if iv.revert is not None]
            end = max(reverted) if reverted and len(reverted) == len(ivs) else None
            agg = Aggregate()
            ttd = ttf = rto = None
            recovered: bool | None = None
            if start is not None:
                until = end if end is not None else (self.data_end or start)
                agg = self.span(start, until, mostly=True)
                ttd = self.delta(self.first_failure(start, until), start)
                if plan.regions and index not in self.r.behind_answers:
                    bad = set(plan.regions)
                    match = _elsewhere(self.served_in(bad, baseline), bad)
                    t, within = self.first_success_within(start, until, match)
                    ttf = self.delta(t if within is None else within, start)
                mine = [o for o in all_outages if index in o.phases]
                if any(o.end is None for o in mine):
                    recovered = False
                else:
                    recovered = True
                    rto = round(max((o.rto or 0.0 for o in mine), default=0.0), 6)
            out.append(
                PhaseMetrics(
                    index=index,
                    name=plan.name,
                    kind=plan.kind,
                    target=plan.target,
                    regions=plan.regions,
                    real_start=plan.real_start,
                    real_end=plan.real_end,
                    planned_start=plan.planned_start,
                    planned_end=plan.planned_end,
                    actual_start=self.rel(start),
                    actual_end=self.rel(end),
                    requests=agg.requests,
                    failed=agg.requests - agg.ok,
                    success_ratio=rounded(agg.ratio),
                    latency=agg.latency(),
                    time_to_detect=ttd,
                    time_to_failover=ttf,
                    rto=rto,
                    recovered=recovered,
                    share=agg.share(),
                    traffic=over_cycles([iv.traffic for iv in ivs]),
                )
            )
        return tuple(out)

    def events(self) -> tuple[Event, ...]:
        events = sorted(self.r.raw_events, key=lambda e: e[0])
        out = [Event(t=round(t - self.base, 6), text=text, kind=kind) for t, kind, text in events]
        if self.r.events_dropped:
            dropped = self.r.events_dropped
            self.notes["events"] = f"{dropped} more events left out (the first {MAX_EVENTS} kept)"
        return tuple(out)


def _elsewhere(classes: set[str], impaired: set[str]) -> Callable[[str, str], bool]:
    """Matches successes of ``classes`` served outside ``impaired``."""
    return lambda klass, region: klass in classes and region not in impaired
