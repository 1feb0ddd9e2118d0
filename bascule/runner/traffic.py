"""The run's traffic: continuous probes and load against the target's entries, every sample given
the hops the target saw its request take (`paths`), journaled, judged for sovereignty and folded
into 1 s windows that feed the journal, the guardrails, the live view and the metrics endpoint.
`pump` processes them until an instant or an abort."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from bascule.errors import ProbeError
from bascule.exit_codes import ExitCode
from bascule.journal import Journal, PathHop, SpanRecord, Window, WindowAggregator, span_to_json
from bascule.journal.discovered import OutsideReach, dependency_to_json
from bascule.journal.samples import HopSource, RequestSample
from bascule.load import LoadGenerator
from bascule.load.generator import LoadProcess
from bascule.model.design import Design
from bascule.model.headers import MissingVariableError, resolve_headers
from bascule.model.probes import DataProbe, ProbeSpec, RagProbe
from bascule.model.scenario import Scenario
from bascule.plan import Plan
from bascule.probes.alerts import AlertReading, AlertWatch
from bascule.probes.base import Probe, ProbeContext, make_probes, passed
from bascule.probes.data import DataProbe as CanaryProbe
from bascule.probes.data import DataReport
from bascule.probes.runner import ProbeRunner, finish_probes
from bascule.probes.sovereignty import SovereigntyJudge
from bascule.runner.discovered import DependencyJoiner, reaches_from_spans
from bascule.runner.display import Display
from bascule.runner.guardrails import GuardrailMonitor, Trip
from bascule.runner.interrupt import Abort
from bascule.runner.metrics_endpoint import MetricsEndpoint
from bascule.runner.paths import OpaqueCall, PathJoiner, add_hops
from bascule.runner.records import jsonable, violation_json
from bascule.runner.sources import SourceComparison
from bascule.runner.span_paths import SpanJoiner
from bascule.targets.base import RecordsProcesses

__all__ = ["MAX_SPAN_RECORDS", "SPAN_HOLD", "TICK", "Traffic", "continuous_specs"]

T = TypeVar("T")

TICK = 0.1
SPAN_HOLD = 2.0
"""Seconds a sample waits after its answer for its request's spans, when the run receives spans:
exporters batch them (the reference stack sends every 200 ms)."""
MAX_SPAN_RECORDS = 50_000
"""Span records a run journals; beyond, spans are still joined to their requests, only counted."""


def continuous_specs(
    scenario: Scenario, design: Design, store_urls: Mapping[str, Sequence[str]]
) -> list[ProbeSpec]:
    """The steady-state probes, or a golden question per servable data class; plus canary writes,
    so that lost acknowledged writes (RPO) are measured in every run."""
    if scenario.steady_state is not None:
        specs: list[ProbeSpec] = list(scenario.steady_state.probes)
    else:
        servable = [c for c in design.data_classes if design.allowed_regions(c)]
        chosen = [c for c in servable if c in ("internal", "confidential")] or servable[:1]
        specs = [RagProbe(data_class=c) for c in chosen]
    own = design.entry_component() is not None
    if not own and store_urls and not any(isinstance(s, DataProbe) for s in specs):
        # An own service's writes take a request template only its author can give.
        specs.append(DataProbe(data_class="internal"))
    return specs


def _recording(recorder: RecordsProcesses) -> Callable[[LoadProcess], None]:
    def record(process: LoadProcess) -> None:
        if process.start_time is not None:  # None: it has exited already
            recorder.record_process(f"load {process.role}", process.pid, process.start_time)

    return record


class Traffic:
    def __init__(
        self,
        journal: Journal,
        display: Display,
        abort: Abort,
        guardrails: GuardrailMonitor,
        *,
        span_hold: float = 0.0,
    ) -> None:
        self.journal = journal
        self.display = display
        self.abort = abort
        self.guardrails = guardrails
        self.metrics: MetricsEndpoint | None = None
        """Set to serve live figures as Prometheus metrics."""
        self.samples: queue.SimpleQueue[RequestSample] = queue.SimpleQueue()
        self.checks: queue.SimpleQueue[RequestSample] = queue.SimpleQueue()
        """Samples of the steady-state checks: judged apart, but their hops are theirs."""
        self.own_traces: queue.SimpleQueue[str] = queue.SimpleQueue()
        """Trace ids of bascule's own requests that make no sample (canary read-backs)."""
        self.span_hold = span_hold
        """Seconds each sample waits for its spans (0: the run receives none)."""
        self.aggregator = WindowAggregator(origin=journal.origin, grace=1.0 + span_hold)
        self.plan_start: float | None = None
        self.active_faults = 0
        self.judge: SovereigntyJudge | None = None
        self.continuous: list[Probe[ProbeSpec]] = []
        self.probes: ProbeRunner | None = None
        self.load: LoadGenerator | None = None
        self.paths: PathJoiner | None = None
        self.take_hops: Callable[[], Sequence[PathHop]] = list
        self.spans: SpanJoiner | None = None
        self.poll_spans: Callable[[], Sequence[SpanRecord]] = list
        self.sources: SourceComparison | None = None
        self._held: list[tuple[RequestSample, bool]] = []
        """Samples (and whether each is a steady-state check's) waiting for their spans."""
        self._span_records = 0
        self._spans_not_journaled = 0
        self.outside: DependencyJoiner | None = None
        self.take_outside: Callable[[], Sequence[OutsideReach]] = list
        self.alert_readings: queue.SimpleQueue[AlertReading] = queue.SimpleQueue()
        self.alert_watch: AlertWatch | None = None
        self._alert_state: dict[int, tuple[tuple[str, ...], str | None]] = {}

    # -- starting and stopping --

    def start(
        self,
        context: ProbeContext,
        scenario: Scenario,
        built: Plan,
        design_path: Path,
        *,
        load_workers: int,
        take_hops: Callable[[], Sequence[PathHop]] = list,
        poll_spans: Callable[[], Sequence[SpanRecord]] | None = None,
        impaired: Sequence[str] = (),
        take_outside: Callable[[], Sequence[OutsideReach]] = list,
        recorder: object = None,
    ) -> None:
        """Start the probes, then the load. `poll_spans`: the spans received over OTLP since the
        last call (None: the run receives none); `impaired`: the regions the plan's faults touch
        (where the sources' failover is timed from); a `recorder` that keeps them (the target, when
        it is `RecordsProcesses`) gets each load process into its undo ledger before the next one
        starts, each carrying its environment (the run's marker) from its start."""
        if not isinstance(recorder, RecordsProcesses):
            recorder = None
        since = time.monotonic()
        self.judge = SovereigntyJudge(context.design)
        self.paths = PathJoiner(context.design, since=since)
        self.take_hops = take_hops
        if poll_spans is not None:
            self.spans = SpanJoiner(since=since)
            self.poll_spans = poll_spans
            self.sources = SourceComparison(context.design, impaired)
        self.outside = DependencyJoiner(context.design, origin=self.journal.origin, since=since)
        self.take_outside = take_outside
        self.continuous = make_probes(continuous_specs(scenario, context.design, context.store_urls), context)
        self.probes = ProbeRunner(self.continuous, context, on_sample=self.samples.put)
        self.probes.start()
        self.journal.write(
            "probes-started",
            probes=[p.name for p in self.continuous],
            data=[p.name for p in self.continuous if isinstance(p, CanaryProbe)],
        )
        self.display.status(f"probes running: {', '.join(p.name for p in self.continuous)}")
        over = scenario.steady_state.over if scenario.steady_state else 0.0
        duration = scenario.warm_up + 2 * over + built.run_length + scenario.settle + 10.0
        if self.guardrails.alert_guardrails:
            # Bounded by itself too: a run that never stops it still stops reading within minutes.
            self.alert_watch = AlertWatch(
                self.guardrails.alert_guardrails,
                self.alert_readings.put,
                deadline=since + duration + 300.0,
            )
            self.alert_watch.start()
            self.journal.write("alerts-watched", sources=[g.url for _, g in self.guardrails.alert_guardrails])
        if scenario.load is None:
            return
        try:  # the load's processes read them themselves: here, only that they can
            resolve_headers(scenario.load.requests.headers, os.environ)
        except MissingVariableError as exc:
            raise ProbeError(f"load: {exc}") from exc
        # Locust takes a few seconds to start: its clock starts a little ahead, within the warm-up.
        lead = min(3.0, scenario.warm_up)
        self.load = LoadGenerator.start(
            design_path,
            dict(context.entries),
            scenario.load,
            duration - lead,
            self.journal.run_dir,
            workers=load_workers,
            origin=time.monotonic() + lead,
            on_process=None if recorder is None else _recording(recorder),
            environment=None if recorder is None else recorder.process_environment(),
        )
        self.journal.write("load-started", pids=[list(p) for p in self.load.pids()], duration=duration)
        self.display.status(
            f"load running ({scenario.load.users or scenario.load.rate} "
            f"{'users' if scenario.load.users else 'req/s'})"
        )

    def finish_data(self, context: ProbeContext, *, read_at_least_until: float | None = None) -> None:
        """Read the canary writes back from every region and journal them. `read_at_least_until`:
        the end of what the metrics measure (``time.monotonic()``); the canaries acknowledged
        since then that are too recent to have reached an asynchronous replica are left out
        rather than waited for (`bascule.probes.data.read_back_until`)."""
        self.display.status("reading canary writes back from every region")
        for probe in self.continuous:
            if isinstance(probe, CanaryProbe):
                probe.read_at_least_until = read_at_least_until
        for name, report in finish_probes(self.continuous, context).items():
            if isinstance(report, DataReport):
                self.journal.write("data-report", durable=True, probe=name, **jsonable(report))

    def stop(self, *, hurry: bool) -> None:
        try:
            if self.load is not None:
                self.load.stop(timeout=0.5 if hurry else 3.0)
        except Exception as exc:
            self.journal.write("error", message=f"stopping the load: {exc}")
        try:
            if self.probes is not None:
                self.probes.stop()
        except Exception as exc:
            self.journal.write("error", message=f"stopping the probes: {exc}")
        if self.alert_watch is not None:
            self.alert_watch.stop(timeout=0.5 if hurry else 3.0)

    def drain_final(self) -> None:
        """The last samples and windows, then what the run's paths and sovereignty came to — on
        every way out, so that an aborted run is judged over what it saw too."""
        self.drain(final=True)
        for window in self.aggregator.close_all():
            self.journal.window(window)
        opaque_calls: frozenset[OpaqueCall] = frozenset()
        if self.paths is not None:
            for trace_id in _take(self.own_traces):
                self.paths.bookkeeping(trace_id)
                if self.outside is not None:
                    self.outside.bookkeeping(trace_id)
            try:
                self.paths.observe(self.take_hops())
            except Exception as exc:  # the target is stopped; what it saw before still counts
                self.journal.write("error", message=f"reading the last hops: {type(exc).__name__}: {exc}")
            self._take_outside()
            report = self.paths.report()
            opaque_calls = report.opaque_calls
            extra: dict[str, Any] = {}
            if self.spans is not None and self.sources is not None:
                extra = {
                    "spans": jsonable(self.spans.report()),
                    "spans_not_journaled": self._spans_not_journaled,
                    "sources": jsonable(self.sources.report()),
                }
            self.journal.write(
                "paths-report",
                durable=True,
                hops=report.hops,
                claimed=report.claimed,
                untraced=report.untraced,
                unclaimed=report.unclaimed,
                unanswered=report.unanswered,
                incomplete_routes=report.incomplete_routes,
                relayed=report.relayed,
                opaque=report.opaque,
                **extra,
            )
        if self.outside is not None:
            found = self.outside.report(_nobody if self.paths is None else self.paths.entered)
            self.journal.write(
                "discovered-dependencies",
                durable=True,
                dependencies=[dependency_to_json(d) for d in found],
                unattributed=sum(d.unattributed for d in found),
                violations=sum(d.violations for d in found),
            )
            for dep in found:
                self.display.event(
                    f"discovered dependency: {dep.host} ({dep.provider or 'unknown operator'}, "
                    f"{dep.jurisdiction}, {dep.sovereignty})"
                )
        if self.judge is not None:
            judged = self.judge.report(opaque_calls)
            self.journal.write("sovereignty-report", durable=True, **jsonable(judged))

    # -- samples --

    def pump(self, until: float) -> None:
        """Process samples and windows until ``until`` (monotonic), or an abort."""
        while True:
            self.drain()
            now = time.monotonic()
            if now >= until or self.abort.is_set:
                return
            self.display.refresh()
            self.abort.event.wait(min(TICK, until - now))

    def drain(self, *, final: bool = False) -> None:
        """Process the samples that came; with spans, those whose answer came `span_hold` seconds
        ago (every one when `final`)."""
        if self.load is not None:
            # A poll reads about 1 MiB a stream; finally, every one left (the load is stopped by
            # then: its streams end). Once, they kept the samples of the canaries' read-back, ~5 s
            # of a busy load, unjudged (trial 11).
            while polled := self.load.poll():
                for sample in polled:
                    self.samples.put(sample)
                if not final:
                    break
        batch = _take(self.samples)
        checks = _take(self.checks)
        paths = self.paths
        if paths is not None:
            own = _take(self.own_traces)
            for trace_id in own:
                paths.bookkeeping(trace_id)
                if self.spans is not None:
                    self.spans.bookkeeping(trace_id)
                if self.outside is not None:
                    self.outside.bookkeeping(trace_id)
            # After the batch: a request's hops are recorded before its sample can be queued.
            paths.observe(self.take_hops())
            outside = self.outside
            if outside is not None:  # the steady-state checks' reaches are bascule's own, not judged
                self._take_outside()
                for sample in checks:
                    outside.attach(sample, judged=False)
            if self.spans is not None:
                batch = self._with_spans(paths, self.spans, batch, checks, final=final)
            else:
                batch = [paths.attach(sample) for sample in batch]
                for sample in checks:
                    paths.attach(sample)
            if outside is not None:
                batch = [outside.attach(sample) for sample in batch]
                outside.expire(time.monotonic(), paths.entered)  # before the paths forget them
            paths.expire(time.monotonic())
        violations = 0
        watched = self.guardrails.watched_probes
        origin = self.journal.origin  # run seconds, as the windows count them
        for sample in batch:
            self.journal.sample(sample)
            if sample.source in watched:
                ended = sample.started + sample.latency
                self._trip(
                    self.guardrails.observe_sample(
                        sample.source, passed(sample), sample.started - origin, ended - origin, sample.error
                    )
                )
            self.aggregator.add(sample)
            for violation in self.judge.observe(sample) if self.judge is not None else ():
                violations += 1
                self.journal.write(
                    "sovereignty-violation",
                    at=sample.started,
                    trace_id=sample.trace_id,
                    **violation_json(violation),
                )
        if violations:
            self.display.live.violations += violations
            if self.metrics is not None:
                self.metrics.add_violations(violations)
            self._trip(self.guardrails.observe_violations(violations, time.monotonic() - self.journal.origin))
        self._take_alerts()
        for window in self.aggregator.close_before(time.monotonic()):
            self._close_window(window)

    def _take_alerts(self) -> None:
        """The alert guardrails' readings: journaled when what they see changes, then judged."""
        origin = self.journal.origin  # run seconds, as the windows count them
        for reading in _take(self.alert_readings):
            index = reading.guardrail
            state = (reading.firing, reading.error)
            if self._alert_state.get(index) != state:
                self._alert_state[index] = state
                spec = self.guardrails.guardrails[index]
                name = spec.name or "alert"
                self.journal.write(
                    "alerts",
                    at=reading.started,
                    guardrail=name,
                    firing=list(reading.firing),
                    error=reading.error,
                )
                if reading.firing:
                    self.display.event(f"alert guardrail {name}: firing {', '.join(reading.firing)}")
                elif reading.error is not None:
                    self.display.event(f"alert guardrail {name}: cannot read its source: {reading.error}")
            self._trip(
                self.guardrails.observe_alerts(
                    index, reading.started - origin, reading.ended - origin, reading.firing, reading.error
                )
            )

    def _with_spans(
        self,
        paths: PathJoiner,
        spans: SpanJoiner,
        batch: list[RequestSample],
        checks: list[RequestSample],
        *,
        final: bool,
    ) -> list[RequestSample]:
        """The samples whose spans have had the time to come, with the hops of both sources."""
        now = time.monotonic()
        received = list(self.poll_spans())
        if self.outside is not None:  # client spans to hosts outside the design
            self.outside.observe(reaches_from_spans(received))
        for span in received:
            if self._span_records < MAX_SPAN_RECORDS:
                self._span_records += 1
                self.journal.write("span", at=span.started, **span_to_json(span))
            else:
                self._spans_not_journaled += 1
        spans.observe(received, now)
        self._held.extend([(s, False) for s in batch] + [(s, True) for s in checks])
        ready: list[tuple[RequestSample, bool]] = []
        waiting: list[tuple[RequestSample, bool]] = []
        for held in self._held:
            due = final or held[0].started + held[0].latency + self.span_hold <= now
            (ready if due else waiting).append(held)
        self._held = waiting
        out: list[RequestSample] = []
        for sample, is_check in ready:
            relayed, (exported, unplaced) = paths.claim(sample), spans.claim_path(sample)
            if is_check:
                continue
            joined = add_hops(add_hops(sample, relayed), exported)
            if unplaced:
                joined = replace(joined, unplaced=unplaced)
            if self.sources is not None:
                self.sources.add(joined, {HopSource.FAULT_PLANE: relayed, HopSource.OTLP: exported})
            out.append(joined)
        spans.expire(now)
        return out

    def _take_outside(self) -> None:
        if self.outside is None:
            return
        try:
            self.outside.observe(self.take_outside())
        except Exception as exc:  # the target may be stopped; what it saw before still counts
            self.journal.write("error", message=f"reading outside reaches: {type(exc).__name__}: {exc}")
            self.take_outside = list

    def _close_window(self, window: Window) -> None:
        self.journal.window(window)
        self.display.live.recent.append(window)
        if self.metrics is not None:
            self.metrics.observe(window, active_faults=self.active_faults, elapsed=self.display.live.elapsed)
        self._trip(self.guardrails.observe(window))

    def _trip(self, trip: Trip | None) -> None:
        if trip is None or self.abort.is_set:
            return
        self.journal.write(
            "guardrail-tripped",
            durable=True,
            guardrail=trip.guardrail,
            reason=trip.reason,
            window_end=trip.at,
        )
        self.display.event(f"guardrail {trip.guardrail}: {trip.reason}")
        self.abort.set(f"guardrail {trip.guardrail}: {trip.reason}", ExitCode.ABORTED)


def _nobody(trace_id: str) -> bool:
    return False


def _take(samples: queue.SimpleQueue[T]) -> list[T]:
    taken: list[T] = []
    while True:
        try:
            taken.append(samples.get_nowait())
        except queue.Empty:
            return taken
