"""The streaming state of `compute_metrics`: what it keeps of a journal's records as they go by —
windows merged by start, sample records folded into `Ticks`, faults as intervals, violations
counted (the first 100 kept), events — and nothing that grows with the number of requests."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bascule.faults import FAULT_KINDS
from bascule.journal import LatencySketch, SampleRow
from bascule.journal.discovered import DiscoveredDependency
from bascule.journal.samples import Hop
from bascule.journal.traffic import FaultTraffic
from bascule.metrics.discovered import parse_discovered
from bascule.metrics.model import Latency, PhasePlan, Violation
from bascule.metrics.records import (
    DataReport,
    ErrorRecord,
    FaultApplied,
    FaultReverted,
    FindingRecord,
    GuardrailTripped,
    HypothesisChecked,
    PathsReport,
    PlanStarted,
    ProbesStarted,
    R,
    RunEnded,
    RunStarted,
    ScoreRecord,
    SovereigntyReport,
    SovereigntyViolation,
    TracesReceived,
    num,
    parse_record,
)
from bascule.metrics.ticks import Ticks
from bascule.model.design import Design
from bascule.model.scenario import Objectives, Weights

__all__ = [
    "MAX_EVENTS",
    "MAX_VIOLATIONS",
    "Aggregate",
    "FaultInterval",
    "JournalState",
    "MergedWindow",
    "WriteStats",
    "num",
    "rounded",
]

MAX_VIOLATIONS = 100
MAX_EVENTS = 1000
_INF = math.inf


class MergedWindow:
    """Windows of one ``start``, merged."""

    __slots__ = (
        "by_class",
        "degraded",
        "golden",
        "golden_by_region",
        "length",
        "ok",
        "requests",
        "served",
        "sketch",
        "sources",
        "start",
    )

    def __init__(self, start: float, length: float) -> None:
        self.start = start
        self.length = length
        self.requests = 0
        self.ok = 0
        self.sketch = LatencySketch()
        self.served: Counter[tuple[str, str]] = Counter()
        self.sources: set[str] = set()
        """The sources (probes, ``load``) with a success in it."""
        self.golden = [0, 0]
        self.golden_by_region: dict[str, list[int]] = {}
        """Graded answers by the region that wrote them: [correct, graded]."""
        self.degraded = 0
        self.by_class: dict[str, list[int]] = {}

    @property
    def end(self) -> float:
        return self.start + self.length


@dataclass
class Aggregate:
    requests: int = 0
    ok: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)
    served: Counter[tuple[str, str]] = field(default_factory=Counter)
    golden: list[int] = field(default_factory=lambda: [0, 0])
    degraded: int = 0
    by_class: dict[str, list[int]] = field(default_factory=dict)

    def add(self, w: MergedWindow) -> None:
        self.requests += w.requests
        self.ok += w.ok
        self.sketch.merge(w.sketch)
        self.served.update(w.served)
        self.golden[0] += w.golden[0]
        self.golden[1] += w.golden[1]
        self.degraded += w.degraded
        for klass, (n, ok) in w.by_class.items():
            mine = self.by_class.setdefault(klass, [0, 0])
            mine[0] += n
            mine[1] += ok

    @property
    def ratio(self) -> float | None:
        return self.ok / self.requests if self.requests else None

    def latency(self) -> Latency:
        q = self.sketch.quantile
        return Latency(rounded(q(0.5)), rounded(q(0.95)), rounded(q(0.99)))

    def share(self) -> dict[str, float]:
        by_region: Counter[str] = Counter()
        for (_, region), n in self.served.items():
            by_region[region] += n
        total = sum(by_region.values())
        return {r: round(n / total, 6) for r, n in sorted(by_region.items())} if total else {}


NO_TRAFFIC = ": no traffic reached it while it was in force"


@dataclass
class FaultInterval:
    phase: int
    cycle: int | None
    apply: float
    revert: float | None = None
    traffic: FaultTraffic | None = None
    """What the target counted on the fault's parts while it was in force (its revert's ``traffic``)."""


@dataclass
class WriteStats:
    count: int = 0
    first: float = _INF
    last: float = -_INF

    @property
    def interval(self) -> float | None:
        return (self.last - self.first) / (self.count - 1) if self.count > 1 else None


class JournalState:
    """What `compute_metrics` keeps of the records it has seen; ``feed`` takes any record."""

    def __init__(self, objectives: Objectives | None) -> None:
        self.given_objectives = objectives
        self.started: RunStarted | None = None
        self.design: Design | None = None
        self.objectives = objectives or Objectives()
        self.weights = Weights()
        self.settle = 10.0
        self.load_users: int | None = None
        """The closed-model load's users (None: an arrival rate, or no load)."""
        self.data_probes: bool | None = None
        """Whether a data probe made canary writes (None: the journal does not say)."""
        self.phase_plans: dict[int, PhasePlan] = {}
        self.behind_answers: set[int] = set()
        """Phases whose fault impairs no region's serving (`Fault.impairs_serving`): a replication
        paused, a control plane frozen. Traffic has nothing to fail over from there."""
        self.findings: list[FindingRecord] = []
        self.plan_start: float | None = None
        self.run_length: float | None = None
        self.ended = RunEnded()
        self.min_score: float | None = None
        """The ``--min-score`` floor the run was judged against (its ``score`` record)."""
        self.hypothesis: dict[str, bool | None] = {}
        self.hypothesis_skipped = False
        self.ready_at: float | None = None
        """Where the check before the faults could wait for every probe to answer (`wait_for`): when
        the window it judged opened, the service ready. What came before may be a cold start — the
        scenario says so by giving `wait_for` — and is not the steady state."""
        self.plan_done = False
        self.windows: dict[float, MergedWindow] = {}
        self.ticks = Ticks()
        self.writes: dict[str, WriteStats] = {}
        self.origin_mono: float | None = None
        self.last_t = -_INF
        self.intervals: list[FaultInterval] = []
        self.open: dict[tuple[int, int | None], FaultInterval] = {}
        self.reverts: list[float] = []
        self.data_reports: list[DataReport] = []
        self.sov_report: SovereigntyReport | None = None
        self.paths_report: PathsReport | None = None
        self.traces_received: TracesReceived | None = None
        """The OTLP receiver's counts (runs with ``--otlp``)."""
        self.discovered: tuple[DiscoveredDependency, ...] = ()
        self.violation_count = 0
        self.violating = 0
        self.last_violating: tuple[str | None, str | None] | None = None
        self.violations: list[Violation] = []
        self.by_hop: Counter[tuple[str, str, str, str]] = Counter()
        self.raw_events: list[tuple[float, str, str]] = []
        self.events_dropped = 0
        self.handlers: dict[str, Callable[[Mapping[str, Any]], None]] = {
            "run-started": _typed(RunStarted, self._run_started),
            "plan-started": _typed(PlanStarted, self._plan_started),
            "probes-started": _typed(ProbesStarted, self._probes_started),
            "window": self._window,
            "sample": self.sample,
            "fault-applied": _typed(FaultApplied, self._fault_applied),
            "fault-reverted": _typed(FaultReverted, self._fault_reverted),
            "sovereignty-violation": _typed(SovereigntyViolation, self._violation),
            "sovereignty-report": _typed(SovereigntyReport, self._sovereignty_report),
            "paths-report": _typed(PathsReport, self._paths_report),
            "traces-received": _typed(TracesReceived, self._traces_received),
            "discovered-dependencies": self._discovered,
            "data-report": _typed(DataReport, self._data_report),
            "hypothesis": _typed(HypothesisChecked, self._hypothesis),
            "guardrail-tripped": _typed(GuardrailTripped, self._guardrail),
            "error": _typed(ErrorRecord, self._error),
            "refused": _typed(ErrorRecord, self._error),
            "score": _typed(ScoreRecord, self._score),
            "run-ended": _typed(RunEnded, self._run_ended),
        }

    def feed(self, record: Mapping[str, Any]) -> None:
        handler = self.handlers.get(record.get("type", ""))
        if handler is not None:
            handler(record)

    # -- records -------------------------------------------------------------------------------

    def sample(self, r: Mapping[str, Any]) -> None:
        self.ticks.add_record(r)
        self.sample_extras(r)

    def sample_extras(self, r: Mapping[str, Any]) -> None:
        """What a sample record says beyond `Ticks`: the run's origin on the monotonic clock (from
        the first one), and the pace of canary writes."""
        t = r.get("t")
        if not isinstance(t, float | int):
            return
        if self.origin_mono is None:
            started = r.get("started")
            if isinstance(started, float | int):
                self.origin_mono = started - t
        if r.get("kind") == "write" and r.get("ok"):
            source = r.get("source") or ""
            stats = self.writes.get(source)
            if stats is None:
                stats = self.writes[source] = WriteStats()
            stats.count += 1
            stats.first = min(stats.first, t)
            stats.last = max(stats.last, t)

    def row_extras(self, r: SampleRow) -> None:
        """`sample_extras` for a `SampleRow`."""
        t = r.t
        if t is None:
            return
        if self.origin_mono is None and r.started is not None:
            self.origin_mono = r.started - t
        if r.kind == "write" and r.ok:
            source = r.source or ""
            stats = self.writes.get(source)
            if stats is None:
                stats = self.writes[source] = WriteStats()
            stats.count += 1
            stats.first = min(stats.first, t)
            stats.last = max(stats.last, t)

    def _window(self, r: Mapping[str, Any]) -> None:
        start = num(r.get("start"))
        length = num(r.get("length")) or 1.0
        if start is None:
            return
        key = round(start, 6)
        w = self.windows.get(key)
        if w is None:
            w = self.windows[key] = MergedWindow(key, length)
        w.requests += int(r.get("requests") or 0)
        w.ok += int(r.get("ok") or 0)
        latency = r.get("latency")
        if isinstance(latency, Mapping) and latency:
            w.sketch.merge(LatencySketch.from_json(latency))
        for klass, regions in (r.get("regions") or {}).items():
            for region, n in (regions or {}).items():
                w.served[(klass, region)] += int(n)
        for source, counts in (r.get("by_source") or {}).items():
            if isinstance(counts, Mapping) and counts.get("ok"):
                w.sources.add(source)
        golden = r.get("golden") or {}
        w.golden[0] += int(golden.get("correct") or 0)
        w.golden[1] += int(golden.get("graded") or 0)
        for region, counts in (r.get("golden_by_region") or {}).items():
            mine = w.golden_by_region.setdefault(region, [0, 0])
            mine[0] += int((counts or {}).get("correct") or 0)
            mine[1] += int((counts or {}).get("graded") or 0)
        w.degraded += int(r.get("degraded") or 0)
        for klass, counts in (r.get("by_class") or {}).items():
            mine = w.by_class.setdefault(klass, [0, 0])
            mine[0] += int((counts or {}).get("requests") or 0)
            mine[1] += int((counts or {}).get("ok") or 0)
        self.last_t = max(self.last_t, w.end)

    def _run_started(self, r: RunStarted) -> None:
        self.started = r
        scenario = r.scenario
        if self.given_objectives is None:
            self.objectives = _model(Objectives, scenario.objectives)
        self.weights = _model(Weights, scenario.weights)
        self.settle = scenario.settle if scenario.settle is not None else 10.0
        users = scenario.load.get("users")
        self.load_users = users if isinstance(users, int) and users > 0 else None
        try:
            self.design = Design.model_validate(r.design)
        except ValidationError:
            self.design = None
        for p in r.plan.phases:
            regions = tuple(dict.fromkeys([*p.touch.regions, *p.touch.indirect_regions]))
            index = len(self.phase_plans) if p.index is None else p.index
            if not _impairs_serving(p.kind, p.fault):
                self.behind_answers.add(index)
            self.phase_plans[index] = PhasePlan(
                index,
                f"phase {index}" if p.name is None else p.name,
                p.kind,
                p.target,
                regions,
                p.real_start_s,
                p.real_end_s,
                p.run_start_s,
                p.run_end_s,
            )
        self.findings = list(r.plan.findings)
        self.run_length = r.plan.time.run_length_s

    def _probes_started(self, r: ProbesStarted) -> None:
        self.data_probes = None if r.data is None else bool(r.data)

    def _plan_started(self, r: PlanStarted) -> None:
        self.plan_start = r.t
        self.run_length = r.run_length or self.run_length

    def _fault_applied(self, r: FaultApplied) -> None:
        t, phase, cycle = r.t, r.phase, r.cycle
        if t is None or phase is None:
            return
        interval = FaultInterval(phase, cycle, t)
        self.intervals.append(interval)
        self.open[(phase, cycle)] = interval
        # What the fault did on the target, so that the report shows it acting (a name, a route, a region).
        did = f": {'; '.join(r.effects)}" if r.effects else ""
        self._event(t, "fault", f"applied {self._describe(phase, r.kind, cycle)}{did}")

    def _fault_reverted(self, r: FaultReverted) -> None:
        t = r.t
        if t is None:
            return
        phase, cycle = r.phase, r.cycle
        if phase is None:
            phase, cycle = _parse_key("" if r.key is None else r.key)
        self.reverts.append(t)
        if phase is None:
            kind = "a fault" if r.kind is None else r.kind
            self._event(t, "fault", f"rolled back {kind} ({'?' if r.key is None else r.key})")
            return
        interval = self.open.pop((phase, cycle), None)
        if interval is not None:
            interval.revert = t
            if r.traffic is not None:
                c = r.traffic
                interval.traffic = FaultTraffic(
                    c.connections, c.bytes, c.lookups, c.resets, c.faulted, c.on_answers
                )
        verb = "rolled back" if r.rollback else "reverted"
        idle = r.traffic is not None and not FaultTraffic(**r.traffic.model_dump()).reached
        self._event(t, "fault", f"{verb} {self._describe(phase, r.kind, cycle)}{NO_TRAFFIC if idle else ''}")

    def _describe(self, phase: int, kind: object, cycle: int | None) -> str:
        plan = self.phase_plans.get(phase)
        what = str(kind or (plan.kind if plan else "fault"))
        where = f" on {plan.target}" if plan and plan.target else ""
        name = f" ({plan.name})" if plan else f" (phase {phase})"
        on = f", cycle {cycle}" if cycle is not None else ""
        return f"{what}{where}{name}{on}"

    def _violation(self, r: SovereigntyViolation) -> None:
        self.violation_count += 1
        # One request touches several hops: its hops' violations come one after the other.
        ident = (r.source, r.request_id or r.trace_id)
        if ident != self.last_violating or ident[1] is None:
            self.violating += 1
        self.last_violating = ident
        hop = r.hop
        level = r.level or hop.sovereignty
        klass = r.data_class or "-"
        self.by_hop[(klass, hop.component, hop.region, level)] += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(
                Violation(
                    t=r.t or 0.0,
                    request_id=r.request_id,
                    source=r.source or "",
                    data_class=klass,
                    hop=Hop(
                        component=hop.component,
                        region=hop.region,
                        provider=hop.provider,
                        jurisdiction=hop.jurisdiction,
                        sovereignty=hop.sovereignty,
                    ),
                    minimum=r.minimum or "",
                    level=level,
                )
            )

    def _sovereignty_report(self, r: SovereigntyReport) -> None:
        self.sov_report = r

    def _paths_report(self, r: PathsReport) -> None:
        self.paths_report = r

    def _traces_received(self, r: TracesReceived) -> None:
        self.traces_received = r

    def _discovered(self, r: Mapping[str, Any]) -> None:
        self.discovered = parse_discovered(r)

    def _data_report(self, r: DataReport) -> None:
        self.data_reports.append(r)

    def _hypothesis(self, r: HypothesisChecked) -> None:
        if r.when == "after":
            # Checked (or skipped) once the plan and its settle time are over: the plan ran to its end.
            self.plan_done = True
        if r.skipped:
            self.hypothesis_skipped = True
            return
        self.hypothesis[r.when] = r.ok
        if r.when == "before" and r.start is not None and (r.waited is not None or _waited(r.summary)):
            self.ready_at = r.start
        if r.t is not None:
            verdict = "held" if r.ok else "failed"
            summary = f": {r.summary}" if r.summary else ""
            self._event(r.t, "hypothesis", f"steady-state hypothesis {verdict} ({r.when}){summary}")

    def _guardrail(self, r: GuardrailTripped) -> None:
        if r.t is not None:
            self._event(r.t, "guardrail", f"guardrail {r.guardrail} tripped: {r.reason}")

    def _error(self, r: ErrorRecord) -> None:
        if r.t is not None:
            prefix = "refused: " if r.type == "refused" else "error: "
            self._event(r.t, "error", prefix + r.message)

    def _score(self, r: ScoreRecord) -> None:
        self.min_score = r.min_score

    def _run_ended(self, r: RunEnded) -> None:
        self.ended = r
        if r.t is not None:
            self._event(r.t, "run", f"run ended (exit {r.exit_code}): {r.reason or ''}")

    def _event(self, t: float, kind: str, text: str) -> None:
        if len(self.raw_events) < MAX_EVENTS:
            self.raw_events.append((t, kind, text))
        else:
            self.events_dropped += 1


_WAITED = re.compile(r" after \d+(?:\.\d+)? s waiting for every probe to answer")


def _waited(summary: str | None) -> bool:
    """Whether the check could wait (`wait_for`), in a journal from before ``waited`` was kept."""
    return _WAITED.search(summary or "") is not None


def _parse_key(key: str) -> tuple[int | None, int | None]:
    """A ledger key (``p3``, ``p4.c2``, or the target's ``<session>/p4.c2`` a rollback record carries)
    → (phase, cycle)."""
    head, _, tail = key.rsplit("/", 1)[-1].partition(".")
    try:
        phase = int(head[1:]) if head.startswith("p") else None
        cycle = int(tail[1:]) if tail.startswith("c") else None
    except ValueError:
        return None, None
    return phase, cycle


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _typed(kind: type[R], handle: Callable[[R], None]) -> Callable[[Mapping[str, Any]], None]:
    """A handler of raw records that parses each as a `kind` first (and skips one it cannot)."""

    def feed(record: Mapping[str, Any]) -> None:
        parsed = parse_record(record, kind)
        if parsed is not None:
            handle(parsed)

    return feed


def _model(kind: type[Objectives] | type[Weights], data: object) -> Any:
    try:
        return kind.model_validate(data or {})
    except ValidationError:
        return kind()


def _impairs_serving(kind: str, fault: Mapping[str, Any]) -> bool:
    """Whether a phase's fault may impair its regions' answers (a flap: its inner fault's); a kind
    this bascule does not know, as if it did."""
    inner = fault.get("fault") if kind == "flap" else None
    name = inner.get("kind") if isinstance(inner, Mapping) else kind
    known = FAULT_KINDS.get(name) if isinstance(name, str) else None
    return True if known is None else known.impairs_serving
