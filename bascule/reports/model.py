"""The ``bascule.result/1`` document (docs/result.md) as typed, frozen records: what `build_result`
returns, what ``result.json`` holds, and what every renderer, ``bascule compare``, JUnit and the CI
API read. Parsed once at the boundary (`parse_result`); pure.

Every field has a default so that a document written by an older bascule (fewer keys) still
parses — ``None`` for a figure, as for one that could not be measured — and keys this version does
not know are ignored so that a newer one does too. Values stay
as loose as the JSON allows where a renderer must show whatever it is given (a grade, a
sovereignty level): strings, not enums.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "RESULT_SCHEMA",
    "ClassFigures",
    "Correctness",
    "Cost",
    "DesignInfo",
    "Dimension",
    "DiscoveredDependency",
    "ErrorBudget",
    "Event",
    "Figures",
    "Hypothesis",
    "Latency",
    "Noise",
    "Outage",
    "Phase",
    "Region",
    "RepeatContext",
    "RepeatDimension",
    "Result",
    "ResultCap",
    "ResultHop",
    "ResultScore",
    "Rpo",
    "Run",
    "ScenarioInfo",
    "Series",
    "Traffic",
    "Violation",
    "ViolationGroup",
    "dump_result",
    "parse_result",
]

RESULT_SCHEMA = "bascule.result/1"

Number = int | float
"""A figure whose JSON spelling is kept as measured: a count stays ``12``, a ratio ``0.99``."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ScenarioInfo(_Record):
    id: str | None = None
    title: str | None = None
    source: tuple[str, ...] = ()
    started_at: str | None = None
    duration: float | None = None
    """Incident seconds the scenario replays."""
    time_scale: float | None = None


class Region(_Record):
    id: str = ""
    provider: str = ""
    jurisdiction: str = ""
    sovereignty: str = ""


class DesignInfo(_Record):
    id: str | None = None
    title: str | None = None
    regions: tuple[Region, ...] = ()


class Hypothesis(_Record):
    before: bool | None = None
    after: bool | None = None


class Run(_Record):
    dir: str | None = None
    bascule: str | None = None
    started_wall: str | None = None
    elapsed: float | None = None
    run_length: float | None = None
    plan_start: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    scenario: ScenarioInfo = ScenarioInfo()
    design: DesignInfo = DesignInfo()
    hypothesis: Hypothesis | None = None
    """``None`` when the hypothesis was skipped."""


class Dimension(_Record):
    name: str = ""
    weight: Number | None = None
    measured: Number | None = None
    objective: Number | None = None
    unit: str = ""
    """``ratio``, ``s`` or ``count``."""
    sub_score: float | None = None
    passed: bool | None = None
    explanation: str = ""
    recommendation: str | None = None


class ResultCap(_Record):
    at: Number = 0
    reason: str = ""


class ResultScore(_Record):
    overall: float | None = None
    grade: str | None = None
    passed: bool | None = None
    min_score: Number | None = None
    """The floor the run was judged against (``--min-score``): below it, ``passed`` is false."""
    cap: ResultCap | None = None
    unmeasured: tuple[str, ...] = ()
    dimensions: tuple[Dimension, ...] = ()

    def dimension(self, name: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.name == name), None)


class Latency(_Record):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class ClassFigures(_Record):
    requests: int = 0
    ok: int = 0
    success_ratio: float | None = None


class Outage(_Record):
    start: float = 0.0
    end: float | None = None
    cause: float | None = None
    rto: float | None = None
    phases: tuple[int, ...] = ()


class Rpo(_Record):
    acknowledged: int = 0
    lost: int = 0
    window: float | None = None
    seconds: float | None = None
    first_lost: float | None = None
    last_lost: float | None = None
    interval: float | None = None
    unverified: int = 0
    missing_by_region: dict[str, int] = {}
    """Region → acknowledged canaries found missing there (lost, or held only elsewhere)."""
    unreadable_by_region: dict[str, int] = {}
    """Region → acknowledged canaries whose read-back there got no answer."""


class Correctness(_Record):
    baseline: float | None = None
    impact: float | None = None
    graded: int = 0
    baseline_graded: int = 0
    wrong: int = 0
    """Graded answers served wrong during the impact window."""
    wrong_share: float | None = None
    """The share of graded answers served degraded (wrong, status 2xx); None when none was graded."""
    rto: float | None = None
    """Correctness RTO, s: fault → graded answers right again, sustained; None when unmeasured or
    never back (``figures.notes.correctness_rto`` says which)."""
    rto_from: float | None = None
    """The fault start (plan seconds) it counts from: the longest wrong stretch's cause."""
    recovered: bool | None = None
    wrong_stretches: int = 0


class Noise(_Record):
    """The steady state's noise before the first fault (docs/scoring.md, "Steady-state noise")."""

    windows: int = 0
    requests: int = 0
    failed: int = 0
    failure_ratio: float | None = None
    success_ratio_stdev: float | None = None
    latency_p95_mean: float | None = None
    latency_p95_stdev: float | None = None
    alpha: float = 0.001


class ErrorBudget(_Record):
    allowed: float = 0.0
    spent: int = 0
    burnt: float | None = None


class Cost(_Record):
    currency: str = ""
    steady_per_hour: float = 0.0
    failover_extra: float = 0.0


class SourcePaths(_Record):
    source: str = ""
    requests: int | None = None
    violating: int | None = None
    time_to_failover: float | None = None


class PathSources(_Record):
    """The fault plane's and the OpenTelemetry spans' paths, each judged alone (runs with ``--otlp``)."""

    sources: tuple[SourcePaths, ...] = ()
    both: int | None = None
    same_region: int | None = None
    same_verdict: int | None = None


class ViolationGroup(_Record):
    data_class: str = ""
    component: str = ""
    region: str = ""
    level: str = ""
    count: int = 0


class Figures(_Record):
    impact_window: tuple[float, float] | None = None
    requests: int | None = None
    failed: int | None = None
    success_ratio: float | None = None
    success_ratio_baseline: float | None = None
    latency: Latency = Latency()
    latency_baseline: Latency = Latency()
    by_class: Mapping[str, ClassFigures] = {}
    time_to_detect: float | None = None
    time_to_failover: float | None = None
    """The latest the first success elsewhere can have been answered: to the request when a sample
    told it, else the end of a span (`time_to_failover_earliest`)."""
    time_to_failover_earliest: float | None = None
    """Set when a window of load requests told it: the earliest that success can have been answered."""
    rto: float | None = None
    recovered: bool | None = None
    outages: tuple[Outage, ...] = ()
    failback: float | None = None
    """The latest the traffic can have been back home: to the request when a sample told it, else
    the end of a span (`failback_earliest`)."""
    failback_earliest: float | None = None
    """Set when a window of load requests told it: the earliest the traffic can have been back."""
    rpo: Rpo | None = None
    sovereignty_violations: int | None = None
    violating_requests: int | None = None
    violations_by_hop: tuple[ViolationGroup, ...] = ()
    """Every violation counted by (data class, component, region, level), most first — over all of
    them, where `Result.violations` lists only the first 100."""
    correctness: Correctness = Correctness()
    degraded: int | None = None
    error_budget: ErrorBudget | None = None
    cost: Cost | None = None
    paths_by_source: PathSources | None = None
    noise: Noise | None = None
    """None in documents of a bascule before the noise was measured."""
    notes: Mapping[str, str] = {}
    """Figure name → why it is ``None``."""

    @model_validator(mode="before")
    @classmethod
    def _from_a_span_given_by_its_start(cls, data: Any) -> Any:
        # Documents of a bascule before 2026-12-05 gave a span as its start in `time_to_failover`
        # and its end in `time_to_failover_within`.
        if isinstance(data, Mapping) and data.get("time_to_failover_within") is not None:
            data = {
                **data,
                "time_to_failover": data["time_to_failover_within"],
                "time_to_failover_earliest": data.get("time_to_failover"),
            }
        return data


class Traffic(_Record):
    connections: int = 0
    bytes: int = 0
    lookups: int = 0
    resets: int = 0
    faulted: int = 0
    """Requests the fault answered itself or whose answers it changed."""
    on_answers: bool = False
    """A fault on answers: reached only where it changed one (`FaultTraffic.on_answers`)."""


class Phase(_Record):
    index: int | None = None
    name: str = ""
    kind: str = ""
    target: str = ""
    regions: tuple[str, ...] = ()
    real_start: float | None = None
    real_end: float | None = None
    planned_start: float | None = None
    planned_end: float | None = None
    actual_start: float | None = None
    actual_end: float | None = None
    requests: int | None = None
    failed: int | None = None
    success_ratio: float | None = None
    p95: float | None = None
    time_to_detect: float | None = None
    time_to_failover: float | None = None
    rto: float | None = None
    recovered: bool | None = None
    share: Mapping[str, float] = {}
    traffic: Traffic | None = None
    """What reached the parts the phase's fault held while it was in force; null where not counted."""
    reached: bool | None = None
    """Whether any of it did: false — the fault changed nothing the service used then, and the
    run says nothing of how the service bears it; null where not counted."""


Shares = Mapping[str, tuple[float | None, ...]]


class Series(_Record):
    t: tuple[float, ...] = ()
    length: tuple[float, ...] = ()
    requests: tuple[int, ...] = ()
    success_ratio: tuple[float | None, ...] = ()
    p50: tuple[float | None, ...] = ()
    p95: tuple[float | None, ...] = ()
    p99: tuple[float | None, ...] = ()
    share_region: Shares = {}
    share_level: Shares = {}
    share_provider: Shares = {}
    graded: tuple[int, ...] = ()
    correct_ratio: tuple[float | None, ...] = ()
    correct_region: Shares = {}
    """Share of graded answers right, by the region whose llm wrote them."""


class ResultHop(_Record):
    component: str = ""
    region: str = ""
    provider: str = ""
    jurisdiction: str = ""
    sovereignty: str = ""


class Violation(_Record):
    t: float = 0.0
    request_id: str | None = None
    source: str = ""
    data_class: str = ""
    hop: ResultHop = ResultHop()
    minimum: str = ""
    level: str = ""


class DiscoveredDependency(_Record):
    """A host outside the design the stack reached during the run (docs/result.md)."""

    host: str = ""
    provider: str | None = None
    """The endpoint catalog's provider id; None when the catalog does not know the host."""
    operator: str | None = None
    jurisdiction: str = "unknown"
    sovereignty: str = "unknown"
    """``sovereign``, ``trusted``, ``exposed``, ``foreign`` or ``unknown`` (judged as foreign)."""
    catalog_region: str | None = None
    regions: tuple[str, ...] = ()
    askers: tuple[str, ...] = ()
    classes: Mapping[str, int] = {}
    """Data class → requests of bascule's of that class that reached the host."""
    violations: int = 0
    requests: int = 0
    tunnels: int = 0
    lookups: int = 0
    spans: int = 0
    attributed: int = 0
    unattributed: int = 0
    at_start: int = 0
    unanswered: int = 0
    first: float | None = None
    last: float | None = None


class Event(_Record):
    t: float = 0.0
    text: str = ""
    kind: str = ""
    """``fault``, ``guardrail``, ``hypothesis``, ``error`` or ``run``."""


class RepeatDimension(_Record):
    """One dimension judged over the repeated runs (docs/repeats.md); ``inf`` in ``mean``, ``low``
    or ``high`` is a recovery that never happened, written ``"inf"``."""

    name: str = ""
    unit: str = ""
    verdict: str = "unmeasured"
    """``pass``, ``fail``, ``inconclusive`` or ``unmeasured`` (measured in no run: never a pass)."""
    mean: float | None = None
    low: float | None = None
    high: float | None = None
    of: str = "mean"
    """``mean``, or ``margin`` (measured − each run's objective, judged against 0)."""
    confidence: float = 0.95
    objective: float | None = None
    measured_runs: int = 0
    passed_runs: int = 0
    failed_runs: int = 0
    flaky: bool = False
    flips: str = ""
    reason: str = ""
    counts: bool = True


class RepeatContext(_Record):
    """The verdicts of the repeat a run belongs to (``bascule run --repeat N``), written into each
    of its runs' result.json once the runs are judged; ``repeat.json`` beside them has the rest."""

    run: int | None = None
    """Which run of the repeat this document is (1-based)."""
    repeats: int = 0
    """Runs asked for."""
    judged: int = 0
    """Runs judged (those that completed)."""
    verdict: str = "unmeasured"
    flaky: bool = False
    exit_code: int | None = None
    reason: str = ""
    mean_score: float | None = None
    """Mean overall score of the judged runs that were scored."""
    dimensions: tuple[RepeatDimension, ...] = ()
    notes: tuple[str, ...] = ()
    summary: str = "../repeat.json"
    """Where the repeat's own document is, relative to the run directory."""


class Result(_Record):
    schema_: str = Field(RESULT_SCHEMA, alias="schema")
    run: Run = Run()
    score: ResultScore = ResultScore()
    figures: Figures = Figures()
    phases: tuple[Phase, ...] = ()
    series: Series = Series()
    violations: tuple[Violation, ...] = ()
    """The first 100; ``figures.sovereignty_violations`` is the total."""
    findings: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    discovered: tuple[DiscoveredDependency, ...] = ()
    """Hosts outside the design the stack reached, the most reached first (none in documents of a
    bascule before it looked)."""
    repeat: RepeatContext | None = None
    """Set in the runs of a repeat (``--repeat N``): the verdicts over all its runs."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def parse_result(document: Mapping[str, Any] | str | bytes) -> Result:
    """The `Result` of a decoded or raw JSON document; `ValueError` when it is not a
    ``bascule.result/1`` document (another schema, or values of the wrong kind)."""
    data: object = json.loads(document) if isinstance(document, str | bytes) else document
    schema = data.get("schema") if isinstance(data, Mapping) else None
    if schema != RESULT_SCHEMA:
        raise ValueError(f"not a {RESULT_SCHEMA} document (schema {schema!r})")
    try:
        return Result.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"not a valid {RESULT_SCHEMA} document: {exc}") from exc


def dump_result(result: Result) -> str:
    """``result.json``'s text: the document indented by two, non-ASCII kept, a final newline.
    Spelled by `json` rather than `model_dump_json` so that numbers read as they always have
    (``1e-05``, not ``0.00001``). ``paths_by_source`` is written only for runs that received spans,
    ``repeat`` only for the runs of a repeat, ``min_score`` only for runs judged against one (JSON
    has no infinity: ``"inf"``)."""
    data = result.model_dump(by_alias=True)
    if data["score"].get("min_score") is None:
        data["score"].pop("min_score", None)
    if data["figures"].get("paths_by_source") is None:
        data["figures"].pop("paths_by_source", None)
    if data.get("repeat") is None:
        data.pop("repeat", None)
    else:
        for dimension in data["repeat"]["dimensions"]:
            for key in ("mean", "low", "high"):
                if isinstance(dimension[key], float) and math.isinf(dimension[key]):
                    dimension[key] = "inf" if dimension[key] > 0 else "-inf"
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
