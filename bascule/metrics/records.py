"""The journal's records as the metrics read them (docs/journal.md): one frozen record per type that
`JournalState` handles, with only the fields it reads, parsed from the raw JSON object by
`parse_record`. Pure.

A journal may be cut short, written by an older bascule or hand-edited, and the metrics measure what
they can of it: so a field of the wrong kind reads as absent (``None``, ``""``, ``()``) rather than
failing the record, and keys a record carries beyond these are ignored. Window and sample records,
most of a journal, are not parsed here: `bascule.metrics.ticks` and the window merge read them as
they stream by, on the shortest path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from bascule.metrics.model import PathSources, SourcePaths

__all__ = [
    "DataReport",
    "ErrorRecord",
    "FaultApplied",
    "FaultReverted",
    "FindingRecord",
    "GuardrailTripped",
    "HopRecord",
    "HypothesisChecked",
    "PathsReport",
    "PlanDump",
    "PlanPhase",
    "PlanStarted",
    "PlanTime",
    "ProbesStarted",
    "RunEnded",
    "RunStarted",
    "ScenarioDump",
    "ScoreRecord",
    "SourceRecord",
    "SourcesRecord",
    "SovereigntyReport",
    "SovereigntyViolation",
    "TracesReceived",
    "TrafficRecord",
    "num",
    "parse_record",
]


def num(value: object) -> float | None:
    """A JSON number as a float; anything else (a bool included) as ``None``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _maybe_text(value: object) -> str | None:
    return None if value is None else str(value)


def _texts(value: object) -> tuple[str, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(str(x) for x in value)
    return ()


def _region_counts(value: object) -> dict[str, int]:
    """Region → a count, or the length of a list of ids; anything else counts 0."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(region): len(n) if isinstance(n, list) else n if isinstance(n, int) else 0
        for region, n in value.items()
    }


def _items(value: object) -> tuple[Any, ...]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return tuple(value)
    return ()


def _count(value: object) -> int:
    if isinstance(value, int | float | str):
        try:
            return int(value or 0)
        except ValueError:
            return 0
    return 0


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


Num = Annotated[float | None, BeforeValidator(num)]
Int = Annotated[int | None, BeforeValidator(_int)]
Text = Annotated[str, BeforeValidator(_text)]
MaybeText = Annotated[str | None, BeforeValidator(_maybe_text)]
Texts = Annotated[tuple[str, ...], BeforeValidator(_texts)]
MaybeTexts = Annotated[tuple[str, ...] | None, BeforeValidator(lambda v: None if v is None else _texts(v))]
Flag = Annotated[bool, BeforeValidator(bool)]
Raw = Annotated[Mapping[str, Any], BeforeValidator(_mapping)]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


R = TypeVar("R", bound=_Record)


def _record(value: object, kind: type[R]) -> R:
    return kind.model_validate(value if isinstance(value, Mapping) else {})


# -- run-started ----------------------------------------------------------------------------------


class ScenarioDump(_Record):
    id: MaybeText = None
    title: MaybeText = None
    source: Texts = ()
    started_at: MaybeText = None
    objectives: Raw = {}
    weights: Raw = {}
    settle: Num = None
    load: Raw = {}


class Touch(_Record):
    regions: Texts = ()
    indirect_regions: Texts = ()


class PlanPhase(_Record):
    index: Int = None
    name: MaybeText = None
    kind: Text = ""
    fault: Raw = {}
    target: Text = ""
    touch: Annotated[Touch, BeforeValidator(lambda v: _record(v, Touch))] = Touch()
    real_start_s: Num = None
    real_end_s: Num = None
    run_start_s: Num = None
    run_end_s: Num = None


class FindingRecord(_Record):
    """One of the plan's static findings."""

    kind: Text = ""
    message: Text = ""
    regions: Texts = ()
    data_class: Annotated[str | None, BeforeValidator(lambda v: v if isinstance(v, str) else None)] = None
    phase: Int = None


class PlanTime(_Record):
    run_length_s: Num = None
    real_duration_s: Num = None
    scale: Num = None


def _phases(value: object) -> tuple[PlanPhase, ...]:
    return tuple(_record(p, PlanPhase) for p in _items(value))


def _findings(value: object) -> tuple[FindingRecord, ...]:
    return tuple(_record(f, FindingRecord) for f in _items(value) if isinstance(f, Mapping))


class PlanDump(_Record):
    phases: Annotated[tuple[PlanPhase, ...], BeforeValidator(_phases)] = ()
    findings: Annotated[tuple[FindingRecord, ...], BeforeValidator(_findings)] = ()
    time: Annotated[PlanTime, BeforeValidator(lambda v: _record(v, PlanTime))] = PlanTime()


class RunStarted(_Record):
    bascule: MaybeText = None
    wall: MaybeText = None
    scenario: Annotated[ScenarioDump, BeforeValidator(lambda v: _record(v, ScenarioDump))] = ScenarioDump()
    design: Raw = {}
    """The design as loaded (validated by `bascule.model.design.Design` where it is used)."""
    plan: Annotated[PlanDump, BeforeValidator(lambda v: _record(v, PlanDump))] = PlanDump()


# -- the run's course ------------------------------------------------------------------------------


class PlanStarted(_Record):
    t: Num = None
    run_length: Num = None


class ProbesStarted(_Record):
    probes: Texts = ()
    data: MaybeTexts = None
    """The data probes among them (None in a journal written before they were named)."""


class FaultApplied(_Record):
    t: Num = None
    phase: Int = None
    cycle: Int = None
    kind: MaybeText = None
    effects: Texts = ()
    """What the target changed, one line each (``dns db.….bascule.internal: nodata``)."""


class TrafficRecord(_Record):
    """A revert's ``traffic``: what reached the fault's routes and names while it was in force."""

    connections: Annotated[int, BeforeValidator(_count)] = 0
    bytes: Annotated[int, BeforeValidator(_count)] = 0
    lookups: Annotated[int, BeforeValidator(_count)] = 0
    resets: Annotated[int, BeforeValidator(_count)] = 0
    faulted: Annotated[int, BeforeValidator(_count)] = 0
    on_answers: Flag = False


class FaultReverted(_Record):
    t: Num = None
    phase: Int = None
    cycle: Int = None
    key: MaybeText = None
    """The ledger key (``p3``, ``p4.c2``) when the phase is not given."""
    kind: MaybeText = None
    rollback: Flag = False
    traffic: Annotated[
        TrafficRecord | None,
        BeforeValidator(lambda v: _record(v, TrafficRecord) if isinstance(v, Mapping) else None),
    ] = None
    """None where the target did not count it (absent from the record)."""


class HopRecord(_Record):
    component: Text = ""
    region: Text = ""
    provider: Text = ""
    jurisdiction: Text = ""
    sovereignty: Text = ""


class SovereigntyViolation(_Record):
    t: Num = None
    source: MaybeText = None
    request_id: MaybeText = None
    trace_id: MaybeText = None
    """The request's trace: the identity of load requests, which have no request id."""
    data_class: MaybeText = None
    hop: Annotated[HopRecord, BeforeValidator(lambda v: _record(v, HopRecord))] = HopRecord()
    minimum: MaybeText = None
    level: MaybeText = None


class SourceRecord(_Record):
    requests: Int = None
    violating: Int = None
    time_to_failover: Num = None


class SourcesRecord(_Record):
    """Each source's paths judged alone (``paths-report``, ``sources``; runs with ``--otlp``)."""

    sources: Annotated[
        dict[str, SourceRecord],
        BeforeValidator(lambda v: {str(k): _record(x, SourceRecord) for k, x in _mapping(v).items()}),
    ] = {}
    both: Int = None
    same_region: Int = None
    same_verdict: Int = None

    def figures(self) -> PathSources:
        return PathSources(
            tuple(
                SourcePaths(name, s.requests or 0, s.violating or 0, s.time_to_failover)
                for name, s in sorted(self.sources.items())
            ),
            self.both or 0,
            self.same_region or 0,
            self.same_verdict or 0,
        )


class SpansCounts(_Record):
    """A ``paths-report``'s ``spans``: what the services exported over OTLP."""

    unattributed: Annotated[Mapping[str, int], BeforeValidator(_region_counts)] = {}
    """service.name → server spans of requests that could not be placed in a region."""
    unclaimed: Annotated[int, BeforeValidator(_count)] = 0
    """Spans of traces no request of bascule's claimed (a service that does not pass traceparent on
    starts traces of its own)."""


class PathsReport(_Record):
    """What the fault plane relayed, and what of it no request's trace claimed."""

    hops: Int = None
    claimed: Int = None
    incomplete_routes: Texts = ()
    spans: Annotated[
        SpansCounts | None,
        BeforeValidator(lambda v: _record(v, SpansCounts) if isinstance(v, Mapping) else None),
    ] = None
    sources: Annotated[
        SourcesRecord | None,
        BeforeValidator(lambda v: _record(v, SourcesRecord) if isinstance(v, Mapping) else None),
    ] = None


class TracesReceived(_Record):
    """The OTLP receiver's counts at the end of a run with ``--otlp`` (``traces-received``)."""

    requests: Annotated[int, BeforeValidator(_count)] = 0
    refused: Annotated[int, BeforeValidator(_count)] = 0
    spans: Annotated[int, BeforeValidator(_count)] = 0
    last_refusal: Text = ""

    def note(self) -> str | None:
        """A sentence when the services' spans did not come: none received, or exports refused."""
        refused = ""
        if self.refused:
            refused = (
                f"{self.refused} export request{'s were' if self.refused != 1 else ' was'} refused"
                + (f" (the last: {self.last_refusal})" if self.last_refusal else "")
                + " — OTEL_EXPORTER_OTLP_ENDPOINT takes the receiver's base URL, "
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT its full /v1/traces URL (docs/traces.md)"
            )
        if self.spans == 0:
            return "bascule's OTLP receiver received no span" + (f": {refused}" if refused else "")
        return f"bascule's OTLP receiver received {self.spans} spans, but {refused}" if refused else None


class SovereigntyReport(_Record):
    relayed_only: Int = None
    open_paths: Int = None
    unplaced_paths: Int = None
    blind_paths: Int = None
    judged: Int = None
    """Requests of a known data class whose path was known (None in journals before it meant that)."""
    unattributed: Int = None
    requests: Int = None
    violations: Annotated[tuple[Any, ...], BeforeValidator(_items)] = ()


def _lost_at(value: object) -> tuple[float, ...]:
    # Each lost canary is [key, acknowledged at (monotonic), …].
    return tuple(
        float(x[1])
        for x in _items(value)
        if isinstance(x, Sequence) and not isinstance(x, str) and len(x) > 1 and num(x[1]) is not None
    )


class DataReport(_Record):
    probe: Text = ""
    acknowledged: Annotated[int, BeforeValidator(_count)] = 0
    lost: Annotated[tuple[float, ...], BeforeValidator(_lost_at)] = ()
    """When each lost write was acknowledged, monotonic seconds."""
    unverified: Annotated[tuple[Any, ...], BeforeValidator(_items)] = ()
    per_region: Annotated[Mapping[str, int], BeforeValidator(_region_counts)] = {}
    """Region → how many canaries are missing there (the record lists their ids)."""
    unreadable: Annotated[Mapping[str, int], BeforeValidator(_region_counts)] = {}
    """Region → canaries whose read-back there got no answer."""


class HypothesisChecked(_Record):
    t: Num = None
    when: Text = ""
    ok: Flag = False
    skipped: Flag = False
    summary: MaybeText = None
    start: Num = None
    """When the judged window opened (after the wait, when the check waited)."""
    waited: Num = None
    """Seconds the check waited for every probe to answer first (`wait_for`); None: it could not wait."""


class GuardrailTripped(_Record):
    t: Num = None
    guardrail: MaybeText = None
    reason: MaybeText = None


class ErrorRecord(_Record):
    """An ``error`` or a ``refused`` record."""

    type: Text = ""
    t: Num = None
    message: Text = ""


class ScoreRecord(_Record):
    """The ``score`` record: what the run was judged against beyond its objectives."""

    min_score: Num = None


class RunEnded(_Record):
    t: Num = None
    exit_code: Int = None
    reason: MaybeText = None
    elapsed: Num = None


def parse_record(record: Mapping[str, Any], kind: type[R]) -> R | None:
    """``record`` as a `kind`; ``None`` when it cannot be read as one at all."""
    try:
        return kind.model_validate(record)
    except ValidationError:
        return None
