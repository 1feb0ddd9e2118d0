"""Whether sovereignty could be judged, over how many requests, and why not: from the run's
``sovereignty-report``, ``paths-report`` and discovered dependencies. Pure.

A request is judged when a source told where it went (docs/journal.md, "Paths"). Where some hops
or connections between components belonged to no request (`incomplete_routes`), paths told by the
fault plane alone are left unjudged; so are paths a service reported that reached a component
calling another over connections that were not HTTP (a cache, a database) and name no hop of the
component called; so are paths whose trace held a server span of no region, and paths only bascule
saw that reached a ``url:`` service whose own calls it cannot see (`model.topology.blind_services`).
A violation seen anywhere fails the dimension whatever else is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bascule.metrics.discovered import outside_note
from bascule.metrics.records import SovereigntyReport
from bascule.metrics.state import JournalState
from bascule.model.topology import blind_services, uncalled_services

__all__ = ["SovereigntyJudged", "judge_sovereignty"]


@dataclass(frozen=True)
class SovereigntyJudged:
    judged: bool
    requests: int | None
    """Requests judged; None in journals from before paths were counted."""
    unattributed: int
    violations: int
    violating: int
    note: str | None
    """Why it was not judged; None when it was."""


def judge_sovereignty(r: JournalState, traffic: bool) -> SovereigntyJudged:
    """`traffic`: whether the journal has any window (for journals from before paths were counted,
    judged wherever there was traffic)."""
    report = r.sov_report
    counted = None if report is None or report.unattributed is None else report.judged
    unattributed = 0 if report is None or report.unattributed is None else report.unattributed
    if counted is None:
        judged = bool(report is not None or traffic or r.violation_count)
    else:
        judged = counted > 0 or r.violation_count > 0
    note = None
    incomplete = () if r.paths_report is None else r.paths_report.incomplete_routes
    told = report or SovereigntyReport()
    unknown = _Unknown(
        # Paths only the fault plane told are whole only where every component passed the trace on.
        relayed_only=(told.relayed_only or 0) if incomplete else 0,
        open_paths=(told.open_paths or 0) if incomplete else 0,  # opaque calls make routes incomplete
        unplaced=told.unplaced_paths or 0,
        blind=0 if incomplete else told.blind_paths or 0,
    )
    if counted is not None and judged and unknown.total and not r.violation_count:
        # A request of a class some hop could violate went where nobody could see: the paths that
        # were known do not make a pass of it (docs/own-services.md: "unmeasured, never pass").
        counted -= unknown.total
        unattributed += unknown.total
        judged = False
        note = unknown.note(r, incomplete)
        if counted > 0:
            note += f" — of {counted + unknown.total} requests judged, only {counted} had a path known whole"
    if not judged and note is None:
        note = (
            f"no request's path was known: {unattributed} answered request"
            f"{'s' if unattributed != 1 else ''} of a data class reported no hop — neither the "
            "fault plane, nor OpenTelemetry spans, nor the service said where they went"
            if unattributed
            else "no request was judged (no traffic in the journal)"
        )
    violations = max(r.violation_count, 0 if report is None else len(report.violations))
    if (blind := outside_note(r.discovered)) is not None and not violations:
        judged, note = False, blind  # a violation fails it whatever else
    violating = r.violating
    if report is not None and report.requests is not None:
        violating = max(violating, report.requests)
    return SovereigntyJudged(
        judged=judged,
        requests=counted if report is not None and report.unattributed is not None else None,
        unattributed=unattributed,
        violations=violations,
        violating=violating,
        note=note,
    )


def _requests(n: int) -> str:
    return f"{n} request{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class _Unknown:
    """Judged requests whose path turned out not to be known whole, by why (`SovereigntyReport`)."""

    relayed_only: int
    open_paths: int
    unplaced: int
    blind: int

    @property
    def total(self) -> int:
        return self.relayed_only + self.open_paths + self.unplaced + self.blind

    def note(self, r: JournalState, incomplete: Sequence[str]) -> str:
        told = []
        if self.relayed_only:
            told.append(f"{_requests(self.relayed_only)} had a path only the fault plane told")
        if self.open_paths:
            told.append(
                f"{_requests(self.open_paths)} had a path its service reported that reached a component "
                "calling another over connections that were not HTTP, and named no hop of the component "
                "called (have the service report every hop it reached, or export spans)"
            )
        parts = []
        if told:
            parts.append(
                f"{' and '.join(told)}, and on {', '.join(incomplete)} some hops carried no trace of any "
                "request, or connections were not HTTP (a component that does not propagate W3C trace "
                "context, starts its own, or speaks its own protocol, as a database or a cache does): "
                "where those requests went could not be told"
            )
        spans = r.paths_report.spans if r.paths_report is not None else None
        if self.unplaced:
            services = (
                ", ".join(sorted(spans.unattributed)) if spans is not None and spans.unattributed else ""
            )
            parts.append(
                f"{_requests(self.unplaced)} had a server span that could not be placed in a region"
                + (f" ({services})" if services else "")
                + ": give each service's OpenTelemetry resource cloud.provider and cloud.region "
                "(OTEL_RESOURCE_ATTRIBUTES; docs/traces.md, 'How a span is attributed')"
            )
        if self.blind:
            design = r.design
            blind = ", ".join(blind_services(design)) if design is not None else ""
            uncalled = ", ".join(uncalled_services(design)) if design is not None else ""
            if blind:
                parts.append(
                    f"{_requests(self.blind)} had a path only bascule saw, into url: services ({blind}) "
                    "whose own calls bascule does not relay"
                    + (f", while no declared calls reach {uncalled}" if uncalled else "")
                    + ": where they went from there could not be told (export spans from every service "
                    "with bascule run --otlp, or have the service report its hops: docs/own-services.md)"
                )
            else:  # no url: service: what kept them open is a span no region could be given to
                parts.append(
                    f"{_requests(self.blind)} had a path only bascule saw, and a server span of no region"
                )
        if not self.unplaced and spans is not None and spans.unattributed:
            counts = ", ".join(f"{n} of {name}" for name, n in sorted(spans.unattributed.items()))
            parts.append(
                f"server spans of requests could not be placed in a region ({counts}): give each "
                "service's OpenTelemetry resource cloud.provider and cloud.region (OTEL_RESOURCE_ATTRIBUTES; "
                "docs/traces.md, 'How a span is attributed')"
            )
        if spans is not None and spans.unclaimed:
            parts.append(
                f"{spans.unclaimed} spans received belong to no request of bascule's: a service that does "
                "not pass the traceparent header on starts traces of its own, which tell nothing of "
                "where bascule's requests went (docs/own-services.md)"
            )
        received = r.traces_received.note() if r.traces_received is not None else None
        if received:
            parts.append(received)
        return "; ".join(parts)
