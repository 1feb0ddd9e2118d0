"""The run's timeline as OpenTelemetry spans, sent over OTLP/HTTP to a collector the user names
(``bascule run --otlp-timeline URL``, docs/traces.md "The run's timeline as spans").

`TimelineExport` is a journal listener: during the run it only keeps the records the timeline is
made of (a list append, in the journal writer's thread); once the journal is closed, `export`
turns them into spans (`timeline_spans`, pure) and sends them in one request, bounded by
`EXPORT_TIMEOUT`. Nothing is sent while the run goes on, so the run's loop never waits for a
collector; a collector that is down, slow or refuses costs the run nothing but one warning — once
per process and endpoint — and the journal stays the record of the run.

One trace per run: a root span for the run (scenario, design, target, exit code), a child span per
fault phase from its first application to its last revert (rollback included) with an event for
each fault applied or reverted, and child spans for starting the target and for the warm-up;
hypothesis checks, the plan's start, guardrail trips, errors and the score are events of the run's
span. Instants come from the records' ``t`` (the monotonic clock), placed on the wall clock by the
``run-started`` record, so that the spans keep the journal's intervals exactly.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

from bascule.errors import Problem, ScenarioError

__all__ = [
    "EXPORT_TIMEOUT",
    "TIMELINE_RECORDS",
    "TimelineEvent",
    "TimelineExport",
    "TimelineSpan",
    "timeline_spans",
    "traces_endpoint",
]

EXPORT_TIMEOUT: Final = 3.0
"""Seconds the export may take, retries included (the OTLP exporter retries a refused connection)."""
TIMELINE_RECORDS: Final = frozenset(
    {
        "run-started",
        "target-started",
        "refused",
        "hypothesis",
        "plan-started",
        "fault-applied",
        "fault-reverted",
        "guardrail-tripped",
        "error",
        "score",
        "run-ended",
    }
)
"""The journal records the timeline is made of; the rest (windows, samples, spans) is not kept."""
_RUN_EVENTS: Final = ("refused", "hypothesis", "plan-started", "guardrail-tripped", "error", "score")
_PHASE_KEY = re.compile(r"(?:^|/)p(\d+)(?:\.c\d+)?$")
"""A rollback's ``key``: ``<session>/p<phase>[.c<cycle>]`` (`bascule.targets.base.Transition`)."""

AttributeValue = str | bool | int | float | Sequence[str]


@dataclass(frozen=True)
class TimelineEvent:
    name: str
    t: float
    """Seconds since the run's origin, as the journal's ``t``."""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)


@dataclass(frozen=True)
class TimelineSpan:
    name: str
    start: float
    end: float
    parent: int | None
    """Index of the parent span in the list `timeline_spans` returns; None for the run's."""
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    events: tuple[TimelineEvent, ...] = ()
    error: str | None = None
    """The span's status is ERROR with this description (a run that did not pass, a phase that was
    not reverted)."""


# --- records → spans (pure) --------------------------------------------------------------------


def _attribute(value: object) -> AttributeValue | None:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if value is None:
        return None
    return str(value)


def _attributes(record: Mapping[str, Any], names: Sequence[str], prefix: str) -> dict[str, AttributeValue]:
    found: dict[str, AttributeValue] = {}
    for name in names:
        value = _attribute(record.get(name))
        if value is not None:
            found[f"{prefix}{name}"] = value
    return found


def _phase_of(record: Mapping[str, Any]) -> int | None:
    phase = record.get("phase")
    if isinstance(phase, int):
        return phase
    match = _PHASE_KEY.search(str(record.get("key", "")))
    return int(match.group(1)) if match else None


def timeline_spans(records: Sequence[Mapping[str, Any]]) -> list[TimelineSpan]:
    """The spans of a run's timeline from its journal records (those of `TIMELINE_RECORDS`; others
    are ignored), the run's first. Empty without a ``run-started`` record."""
    started = next((r for r in records if r.get("type") == "run-started"), None)
    if started is None:
        return []
    ended = next((r for r in records if r.get("type") == "run-ended"), None)
    last = max(float(r["t"]) for r in records)
    end = float(ended["t"]) if ended is not None else last
    scenario = started.get("scenario") or {}
    design = started.get("design") or {}
    options = started.get("options") or {}
    run_attributes: dict[str, AttributeValue] = {
        "bascule.scenario": str(scenario.get("id", "")),
        "bascule.scenario.title": str(scenario.get("title", "")),
        "bascule.design": str(design.get("id", "")),
        "bascule.target": str(options.get("target", "")),
        "bascule.version": str(started.get("bascule", "")),
    }
    error: str | None = "the run did not end (no run-ended record)"
    if ended is not None:
        run_attributes |= _attributes(ended, ("exit_code", "reason"), "bascule.")
        error = None if ended.get("exit_code") == 0 else str(ended.get("reason", ""))
    events = [
        TimelineEvent(r["type"], float(r["t"]), _event_attributes(r))
        for r in records
        if r.get("type") in _RUN_EVENTS
    ]
    spans = [
        TimelineSpan(
            f"bascule run {run_attributes['bascule.scenario']}",
            float(started["t"]),
            end,
            None,
            run_attributes,
            tuple(events),
            error,
        )
    ]
    target = next((r for r in records if r.get("type") == "target-started"), None)
    plan_started = next((r for r in records if r.get("type") == "plan-started"), None)
    if target is not None:
        spans.append(TimelineSpan("start the target", float(started["t"]), float(target["t"]), 0))
        warm_end = float(plan_started["t"]) if plan_started is not None else end
        spans.append(TimelineSpan("warm-up and steady state", float(target["t"]), warm_end, 0))
    spans += _phase_spans(records, started.get("plan") or {}, end)
    return spans


def _event_attributes(record: Mapping[str, Any]) -> dict[str, AttributeValue]:
    kind = record["type"]
    if kind == "hypothesis":
        return _attributes(record, ("when", "ok", "summary", "skipped"), "bascule.hypothesis.")
    if kind == "guardrail-tripped":
        return _attributes(record, ("guardrail", "reason", "window_end"), "bascule.guardrail.")
    if kind == "score":
        return _attributes(record, ("overall", "grade", "passed", "failing", "unmeasured"), "bascule.score.")
    if kind == "plan-started":
        return _attributes(record, ("run_length",), "bascule.plan.")
    return _attributes(record, ("message",), "bascule.")


def _phase_spans(
    records: Sequence[Mapping[str, Any]], plan: Mapping[str, Any], end: float
) -> list[TimelineSpan]:
    planned = {int(p["index"]): p for p in plan.get("phases", ()) if isinstance(p, Mapping) and "index" in p}
    transitions: dict[int, list[Mapping[str, Any]]] = {}
    for record in records:
        if record.get("type") in ("fault-applied", "fault-reverted"):
            phase = _phase_of(record)
            if phase is not None:
                transitions.setdefault(phase, []).append(record)
    spans = []
    for index, seen in sorted(transitions.items()):
        planned_phase: Mapping[str, Any] = planned.get(index, {})
        applied = [r for r in seen if r["type"] == "fault-applied"]
        if not applied:
            continue
        reverted = [r for r in seen if r["type"] == "fault-reverted"]
        # A flap's cycles apply and revert in turn: in force at the end when applied last.
        in_force = seen[-1]["type"] == "fault-applied"
        attributes: dict[str, AttributeValue] = {"bascule.phase.index": index}
        attributes |= _attributes(
            planned_phase, ("name", "kind", "target", "run_start_s", "run_end_s"), "bascule.phase."
        )
        events = tuple(
            TimelineEvent(
                r["type"],
                float(r["t"]),
                _attributes(
                    r,
                    ("kind", "cycle", "planned", "actual", "late_by", "took", "rollback", "effects"),
                    "bascule.fault.",
                ),
            )
            for r in seen
        )
        name = str(planned_phase.get("name") or applied[0].get("name") or f"phase {index}")
        spans.append(
            TimelineSpan(
                f"phase: {name}",
                float(applied[0]["t"]),
                end if in_force or not reverted else float(reverted[-1]["t"]),
                0,
                attributes,
                events,
                "never reverted in this journal" if in_force else None,
            )
        )
    return spans


def _wall_ns(records: Sequence[Mapping[str, Any]]) -> tuple[int, float]:
    """(epoch ns, ``t``) of the ``run-started`` record: the anchor of every instant."""
    started = next(r for r in records if r.get("type") == "run-started")
    wall = datetime.fromisoformat(str(started["wall"]))
    return round(wall.timestamp() * 1e6) * 1000, float(started["t"])


# --- the export (effectful) --------------------------------------------------------------------


def traces_endpoint(url: str) -> str:
    """The OTLP/HTTP traces URL for what the user named: a base URL (``http://collector:4318``)
    gets ``/v1/traces``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does; a URL with a path is used as
    given. Raises `ValueError` for anything but an http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    base = url.strip()
    return base.rstrip("/") + "/v1/traces" if parts.path in ("", "/") else base


_warned: set[str] = set()
_warned_lock = threading.Lock()


class TimelineExport:
    """Keeps the timeline's records as the journal writes them (`__call__`, a journal listener) and
    exports them as spans once the run is over (`export`)."""

    def __init__(self, url: str, *, timeout: float = EXPORT_TIMEOUT) -> None:
        """Raises `ScenarioError` when `url` is no http(s) URL or the OpenTelemetry SDK is not
        installed: both known before anything starts."""
        try:
            self.endpoint = traces_endpoint(url)
        except ValueError as exc:
            raise ScenarioError([Problem(f"--otlp-timeline: {exc}")]) from exc
        try:
            import opentelemetry.exporter.otlp.proto.http.trace_exporter
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError as exc:
            raise ScenarioError(
                [
                    Problem(
                        "--otlp-timeline needs the OpenTelemetry SDK, which is not installed "
                        f"({exc.name}): pip install 'bascule[otel]'"
                    )
                ]
            ) from exc
        self.timeout = timeout
        self.records: list[dict[str, Any]] = []

    def __call__(self, record: dict[str, Any]) -> None:
        if record.get("type") in TIMELINE_RECORDS:
            self.records.append(record)

    def export(self) -> tuple[bool, str]:
        """Send the timeline; (sent, what to tell the user). Never raises; a failure is told once
        per process and endpoint (later ones: an empty message)."""
        spans = timeline_spans(self.records)
        if not spans:
            return False, ""
        try:
            with _exporter_logs() as logged:
                sent = _send(spans, _wall_ns(self.records), self.endpoint, self.timeout)
        except Exception as exc:  # a collector must never fail a run
            sent, logged = False, [f"{type(exc).__name__}: {exc}"]
        if sent:
            return True, f"timeline: {len(spans)} spans sent to {self.endpoint}"
        with _warned_lock:
            if self.endpoint in _warned:
                return False, ""
            _warned.add(self.endpoint)
        # The first line the exporter logged has the cause (connection refused, the status).
        why = logged[0][:300] if logged else "the export failed"
        return False, (
            f"the run's timeline could not be sent to {self.endpoint} ({why}); "
            "the journal has it all (this is said once)"
        )


@contextlib.contextmanager
def _exporter_logs() -> Iterator[list[str]]:
    """The OTLP exporter's log lines, kept instead of printed: its retries would each say so."""
    logger = logging.getLogger("opentelemetry.exporter.otlp")
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    handler = Keep(logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield kept
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _send(spans: Sequence[TimelineSpan], anchor: tuple[int, float], endpoint: str, timeout: float) -> bool:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.trace import Status, StatusCode

    wall_ns, origin_t = anchor

    def at(t: float) -> int:
        return wall_ns + round((t - origin_t) * 1e9)

    ended: list[ReadableSpan] = []

    class Collect(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            ended.append(span)

    provider = TracerProvider(resource=Resource.create({"service.name": "bascule"}))
    provider.add_span_processor(Collect())
    tracer = provider.get_tracer("bascule.timeline")
    made: list[trace.Span] = []
    for spec in spans:
        parent = None if spec.parent is None else trace.set_span_in_context(made[spec.parent])
        span = tracer.start_span(
            spec.name, context=parent, start_time=at(spec.start), attributes=spec.attributes
        )
        for event in spec.events:
            span.add_event(event.name, attributes=event.attributes, timestamp=at(event.t))
        if spec.error is not None:
            span.set_status(Status(StatusCode.ERROR, spec.error))
        made.append(span)
    # Children first, then the run's: each ends at its own instant.
    for span, spec in reversed(list(zip(made, spans, strict=True))):
        span.end(end_time=at(spec.end))
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=timeout)
    try:
        return exporter.export(ended) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]
        provider.shutdown()
