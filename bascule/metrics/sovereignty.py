"""Whether sovereignty could be judged, over how many requests, and why not: from the run's
``sovereignty-report``, ``paths-report`` and discovered dependencies. Pure.

A request is judged when a source told where it went (docs/journal.md, "Paths"). Where some hops
or connections between components belonged to no request (`incomplete_routes`), paths told by the
fault plane alone are left unjudged; so are paths a service reported that reached a component
calling another over connections that were not HTTP (a cache, a database) and name no hop of the
component called. A violation seen anywhere fails the dimension whatever else is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bascule.metrics.discovered import outside_note
from bascule.metrics.state import JournalState

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
    relayed_only = 0 if report is None or report.relayed_only is None else report.relayed_only
    open_paths = 0 if report is None or report.open_paths is None else report.open_paths
    unknown = relayed_only + open_paths
    if counted is not None and judged and incomplete and unknown and not r.violation_count:
        counted -= unknown
        unattributed += unknown
        judged = counted > 0
        if not judged:
            note = _unknown_paths(relayed_only, open_paths, incomplete)
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


def _unknown_paths(relayed_only: int, open_paths: int, incomplete: Sequence[str]) -> str:
    told = []
    if relayed_only:
        told.append(
            f"{relayed_only} request{'s' if relayed_only != 1 else ''} had a path only the fault plane told"
        )
    if open_paths:
        told.append(
            f"{open_paths} request{'s' if open_paths != 1 else ''} had a path its service reported that "
            "reached a component calling another over connections that were not HTTP, and named no "
            "hop of the component called (have the service report every hop it reached, or export "
            "spans)"
        )
    return (
        f"{' and '.join(told)}, and on {', '.join(incomplete)} some hops carried no trace of any "
        "request, or connections were not HTTP (a component that does not propagate W3C trace "
        "context, starts its own, or speaks its own protocol, as a database or a cache does): where "
        "those requests went could not be told"
    )
