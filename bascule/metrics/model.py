"""What a run measured: frozen records built by `bascule.metrics.compute_metrics` from a journal and
read by the score and the result document. Pure data.

Instants are plan-relative seconds (since ``plan-started``; negative before it) unless a field says
otherwise; durations are float seconds; a figure that could not be measured is ``None`` — never 0 —
and `Metrics.notes` says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bascule.journal.discovered import DiscoveredDependency
from bascule.journal.samples import Hop
from bascule.journal.traffic import FaultTraffic
from bascule.model.scenario import Objectives, Weights

__all__ = [
    "KILLED",
    "Correctness",
    "Cost",
    "DesignFacts",
    "ErrorBudget",
    "Event",
    "Finding",
    "Latency",
    "Metrics",
    "Noise",
    "Outage",
    "PathSources",
    "PhaseMetrics",
    "PhasePlan",
    "Rpo",
    "RunInfo",
    "Series",
    "SourcePaths",
    "Violation",
]


@dataclass(frozen=True)
class Latency:
    """Quantiles of the latency of successful requests, from a merged `LatencySketch` (±1 %)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class Outage:
    """A stretch in which the success ratio stayed below the availability objective (windows merged
    until it was back at the objective for `SUSTAIN` seconds)."""

    start: float
    end: float | None
    """When the service was back at the objective; ``None`` if it never was before the journal ended."""
    cause: float | None
    """The fault start the outage is counted from (see docs/scoring.md); ``None`` before any fault."""
    phases: tuple[int, ...]
    """Phases in force when it began."""

    @property
    def rto(self) -> float | None:
        if self.end is None or self.cause is None:
            return None
        return max(0.0, self.end - self.cause)


@dataclass(frozen=True)
class PhasePlan:
    """A phase as the plan laid it out (``run-started``): what it is, what it impairs and when."""

    index: int
    name: str
    kind: str
    target: str
    regions: tuple[str, ...]
    """Regions the phase impairs, directly or through a shared dependency (the plan's blast radius)."""
    real_start: float | None
    real_end: float | None
    planned_start: float | None
    planned_end: float | None


@dataclass(frozen=True)
class PhaseMetrics(PhasePlan):
    """A phase as planned, and what it did."""

    actual_start: float | None
    actual_end: float | None
    """The phase's last revert; ``None`` when it was never reverted."""
    requests: int
    failed: int
    success_ratio: float | None
    latency: Latency
    time_to_detect: float | None
    time_to_failover: float | None
    rto: float | None
    recovered: bool | None
    share: Mapping[str, float]
    traffic: FaultTraffic | None = None
    """None where the target did not count it (a fault on processes only, the Kubernetes target,
    a phase never reverted); all 0: the fault reached nothing the service used while in force."""


@dataclass(frozen=True)
class Rpo:
    """Acknowledged canary writes lost (from the journal's ``data-report`` records)."""

    acknowledged: int
    lost: int
    unverified: int
    window: float | None
    """Span between the first and the last lost write's acknowledgement, s; ``None`` when none was lost."""
    first_lost: float | None
    last_lost: float | None
    interval: float | None
    """Mean time between two acknowledged canary writes of the probe that lost the most."""
    seconds: float | None
    """The RPO: ``window`` plus one canary interval (each lost canary stands for the writes made
    since the previous one), 0.0 when nothing was lost."""
    missing_by_region: Mapping[str, int] = field(default_factory=dict)
    """Region → acknowledged canaries it may hold and was found without — lost, or held only
    elsewhere (its redundancy gone); regions missing none are left out."""
    unreadable_by_region: Mapping[str, int] = field(default_factory=dict)
    """Region → acknowledged canaries whose read-back there got no answer (neither found nor
    missing); regions that answered every one are left out."""


@dataclass(frozen=True)
class Correctness:
    baseline: float | None
    """Golden-set accuracy before the first fault."""
    impact: float | None
    graded: int
    baseline_graded: int
    wrong: int = 0
    """Graded answers served wrong during the impact window: every graded answer was served (2xx)."""
    wrong_share: float | None = None
    """``wrong / graded``: the share of answers served degraded; ``None`` when none was graded."""
    rto: float | None = None
    """Correctness RTO: fault start → graded answers back at the target, sustained
    (`bascule.metrics.correctness`); ``None`` when not measured or never back."""
    rto_from: float | None = None
    """The fault start (plan seconds) the correctness RTO counts from: the cause of the longest
    wrong stretch — the latest fault in force when it began."""
    recovered: bool | None = None
    """Whether answers were correct again before the journal ended; ``None`` when not measured."""
    wrong_stretches: int = 0
    """Stretches of windows whose graded answers were below the target."""


@dataclass(frozen=True)
class Noise:
    """The steady state's noise: what the windows that ended before the first fault showed
    (docs/scoring.md, "Steady-state noise"). With failures there, a window counts as below the
    objective only when its failures are more than that noise explains."""

    windows: int = 0
    """Steady-state windows with requests."""
    requests: int = 0
    failed: int = 0
    failure_ratio: float | None = None
    """Failed ÷ requests before the first fault: the noise failure rate; ``None`` without requests."""
    success_ratio_stdev: float | None = None
    """Standard deviation of the windows' success ratios (two windows or more)."""
    latency_p95_mean: float | None = None
    """Mean of the windows' p95 latency, s (windows with a success)."""
    latency_p95_stdev: float | None = None
    """Standard deviation of the windows' p95 latency, s (two such windows or more)."""
    alpha: float = 0.001
    """A window's failures are beyond noise when noise alone would give that many with
    probability ≤ alpha (binomial, at ``failure_ratio``)."""


@dataclass(frozen=True)
class ErrorBudget:
    allowed: float
    """Failures the availability objective allows for the requests of the impact window."""
    spent: int
    burnt: float | None
    """``spent / allowed``; ``None`` when nothing was allowed but something failed."""


@dataclass(frozen=True)
class Cost:
    currency: str
    steady_per_hour: float
    """Σ over the design's regions of replica-hour rate × replicas placed there."""
    failover_extra: float
    """Extra per hour while failed over: standbys scaled up to their ``max_replicas``. Egress is not
    included: the journal does not carry bytes."""


@dataclass(frozen=True)
class Violation:
    t: float
    request_id: str | None
    source: str
    data_class: str
    hop: Hop
    minimum: str
    level: str


@dataclass(frozen=True)
class Finding:
    """One of the plan's static findings, as ``run-started`` carries it."""

    kind: str
    message: str
    regions: tuple[str, ...] = ()
    data_class: str | None = None
    phase: int | None = None


@dataclass(frozen=True)
class Event:
    t: float
    text: str
    kind: str
    """``fault``, ``guardrail``, ``hypothesis``, ``error`` or ``run``."""


@dataclass(frozen=True)
class Series:
    """One point per window (≤ 1 s), windows merged by start; ``None`` where a window had nothing
    to measure (no request, no success)."""

    t: tuple[float, ...] = ()
    length: tuple[float, ...] = ()
    requests: tuple[int, ...] = ()
    success_ratio: tuple[float | None, ...] = ()
    p50: tuple[float | None, ...] = ()
    p95: tuple[float | None, ...] = ()
    p99: tuple[float | None, ...] = ()
    share_region: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    share_provider: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    share_level: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    graded: tuple[int, ...] = ()
    """Golden answers graded in each window."""
    correct_ratio: tuple[float | None, ...] = ()
    """Share of them that was right (``None``: none graded)."""
    correct_region: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)
    """The same, by the region whose llm wrote the answer."""


KILLED = "killed"
"""How `RunInfo.reason` begins for a journal with no end whose run's process is gone (`bascule
report` tells): killed, its machine stopped. Such a run is not scored, as an interrupted one is not."""


@dataclass(frozen=True)
class RunInfo:
    bascule: str | None = None
    started_wall: str | None = None
    elapsed: float | None = None
    run_length: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    plan_start: float | None = None
    """Run seconds (since the origin) of ``plan-started``; ``None`` when the plan never started, and
    then every instant is relative to the run's origin instead."""
    scenario: Mapping[str, Any] = field(default_factory=dict)
    """id, title, source, started_at, duration, time_scale."""
    design: Mapping[str, Any] = field(default_factory=dict)
    """id, title, regions [{id, provider, jurisdiction, sovereignty}]."""
    hypothesis_skipped: bool = False
    hypothesis_before: bool | None = None
    hypothesis_after: bool | None = None
    min_score: float | None = None
    """The ``--min-score`` floor the run was judged against, from its ``score`` record; None
    without one."""


@dataclass(frozen=True)
class DesignFacts:
    """What recommendations need to know about the design."""

    primary: str | None = None
    routing_mode: str | None = None
    replication_mode: str | None = None
    replication_lag: float | None = None
    detection_delay: float | None = None
    """Health-check interval × unhealthy_after: the least time a failure takes to be noticed."""
    failback_after: float | None = None
    request_timeout: float | None = None
    sovereignty_guard: bool | None = None
    scale_up: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Region → (replicas, max_replicas) for components that scale up on failover."""
    llm_models: Mapping[str, str] = field(default_factory=dict)
    """Region → model served there."""
    levels: Mapping[str, str] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)
    own_entry: str | None = None
    """The design's entry when it is a service of the user's own (a proxy, a gateway): its failover
    is its own, paced by settings bascule does not see — the design's routing paces only bascule's
    clients."""


@dataclass(frozen=True)
class SourcePaths:
    """What one source of paths told on its own (the run's ``paths-report``, ``sources``)."""

    source: str
    """``fault-plane`` or ``otlp``."""
    requests: int
    """Requests it told at least one hop of."""
    violating: int
    """Of those, requests with a hop below their data class's level."""
    time_to_failover: float | None


@dataclass(frozen=True)
class PathSources:
    """The fault plane's and the OpenTelemetry spans' paths side by side (runs with ``--otlp``)."""

    sources: tuple[SourcePaths, ...]
    both: int
    """Requests both sources attributed."""
    same_region: int
    """Of those, requests both say were served in the same region."""
    same_verdict: int
    """Of those, requests both judge alike for sovereignty."""


@dataclass(frozen=True)
class Metrics:
    run: RunInfo
    objectives: Objectives
    """The run's objectives (from ``run-started``, or as given to `compute_metrics`)."""
    weights: Weights
    design: DesignFacts
    impact_window: tuple[float, float] | None
    """First fault applied → last revert + the scenario's settle (clamped to the journal's end)."""
    requests: int
    failed: int
    success_ratio: float | None
    success_ratio_baseline: float | None
    latency: Latency
    latency_baseline: Latency
    by_class: Mapping[str, tuple[int, int]]
    """Data class → (requests, successes) in the impact window."""
    time_to_detect: float | None
    time_to_failover: float | None
    rto: float | None
    recovered: bool | None
    outages: tuple[Outage, ...]
    failback: float | None
    rpo: Rpo | None
    sovereignty_judged: bool
    """Whether requests were judged at all: some request's path was known, or a violation seen."""
    sovereignty_violations: int
    violating_requests: int
    violations: tuple[Violation, ...]
    """The first 100."""
    violations_by_hop: tuple[tuple[str, str, str, str, int], ...]
    """(data class, component, region, level, count), most frequent first."""
    correctness: Correctness
    degraded: int
    """Degraded answers in the impact window."""
    error_budget: ErrorBudget | None
    cost: Cost | None
    phases: tuple[PhaseMetrics, ...]
    series: Series
    findings: tuple[Finding, ...]
    """The plan's findings (``bascule plan``)."""
    events: tuple[Event, ...]
    notes: Mapping[str, str]
    """Figure name → why it is ``None`` (not measurable, or the event never happened)."""
    sovereignty_judged_requests: int | None = None
    """Requests judged: of a data class the design knows, with a known path (None: a journal from
    before that was counted)."""
    sovereignty_unattributed: int = 0
    """Answered requests of a known data class whose path no source could tell."""
    paths_by_source: PathSources | None = None
    """Each source's paths judged alone, when the run received spans."""
    noise: Noise = Noise()
    """The steady state's noise, which outages and detection are judged against."""
    discovered: tuple[DiscoveredDependency, ...] = ()
    """Hosts outside the design the stack reached (`bascule.journal.discovered`); first and last
    reach in seconds since ``plan-started``."""
    failback_earliest: float | None = None
    """When a window of load requests told the failback rather than a sample: the earliest the
    traffic can have been back; `failback` is then the latest. None when a sample told it."""
    time_to_failover_earliest: float | None = None
    """When a window of load requests (≤ 1 s) told the time to fail over rather than a sample: the
    earliest its first success elsewhere can have been answered (its window's start after the
    fault); `time_to_failover` is then the latest. None when a sample told it to the request."""
