"""What every human-facing report says about a run, as plain text rows: the headline, the dimension
table, the phase timeline, the key figures and the top findings, computed once from a
`bascule.result/1` document so that the Markdown summary and the HTML report cannot disagree.
The rows hold unescaped text; each renderer escapes it for its own format."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum

from bascule.metrics.figures import FAILBACK_NOT_BACK
from bascule.metrics.idle import IDLE_REGIONS
from bascule.reports._discovered import discovered_lines
from bascule.reports._format import (
    DASH,
    as_float,
    as_str,
    fmt_clock_span,
    fmt_count,
    fmt_money,
    fmt_number,
    fmt_percent,
    fmt_seconds,
    fmt_span,
    fmt_value,
)
from bascule.reports.model import Figures, Noise, PathSources, Phase, Result, Rpo

__all__ = [
    "DimensionRow",
    "Figure",
    "Finding",
    "FindingKind",
    "Headline",
    "PhaseRow",
    "compute_cap",
    "compute_dimension_rows",
    "compute_figures",
    "compute_findings",
    "compute_headline",
    "compute_phase_rows",
    "compute_unreached",
    "count_unreached",
    "failback_value",
    "failover_value",
    "safe_links",
]

# Dimensions where more is better; the others are costs (time, loss, violations).
_AT_LEAST = frozenset({"availability", "correctness"})
_VIOLATION_GROUPS_SHOWN = 5


@dataclass(frozen=True)
class Headline:
    scenario_id: str
    scenario_title: str
    design_id: str
    design_title: str
    overall: float | None
    overall_text: str
    grade: str
    passed: bool | None
    verdict: str  # PASS, FAIL, or "—" when the document does not say
    unmeasured: str = ""
    """The weighted dimensions left unmeasured when nothing else kept the pass — why a run reads
    "FAIL · 100.0/100": ``"sovereignty unmeasured"``; empty otherwise."""


@dataclass(frozen=True)
class DimensionRow:
    name: str
    measured: str
    objective: str
    sub_score: float | None
    sub_score_text: str
    weight: str
    why: str
    passed: bool | None
    recommendation: str


@dataclass(frozen=True)
class PhaseRow:
    index: str
    name: str
    kind: str
    target: str
    real: str
    planned: str
    actual: str
    success: str
    p95: str
    reached: str
    """What reached the parts its fault held while in force; "nothing", or a dash where not counted."""


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str


class FindingKind(Enum):
    RECOMMENDATION = "recommendation"
    SOVEREIGNTY = "sovereignty"
    DISCOVERED = "discovered"
    SPANS = "spans"
    PLAN = "plan"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    subject: str  # the dimension's name, "sovereignty" or "plan"
    text: str


def compute_headline(result: Result) -> Headline:
    scenario, design, score = result.run.scenario, result.run.design, result.score
    overall = as_float(score.overall)
    return Headline(
        scenario_id=as_str(scenario.id) or DASH,
        scenario_title=as_str(scenario.title),
        design_id=as_str(design.id) or DASH,
        design_title=as_str(design.title),
        overall=overall,
        overall_text=DASH if overall is None else f"{overall:.1f}",
        grade=as_str(score.grade) or DASH,
        passed=score.passed,
        verdict=DASH if score.passed is None else ("PASS" if score.passed else "FAIL"),
        unmeasured=_held_back(result),
    )


def _held_back(result: Result) -> str:
    score = result.score
    if score.passed is not False or score.overall is None or result.run.exit_code not in (0, 1, None):
        return ""
    if any(d.passed is False for d in score.dimensions):
        return ""
    floor = as_float(score.min_score)
    if floor is not None and (as_float(score.overall) or 0.0) < floor:
        return ""
    names = [d.name for d in score.dimensions if d.passed is None and (as_float(d.weight) or 0.0) > 0]
    return f"{', '.join(names)} unmeasured" if names else ""


def safe_links(result: Result) -> list[str]:
    """The scenario's sources that may become links: http(s) only, so that a document cannot turn a
    report into a javascript: or file: link."""
    links = []
    for source in result.run.scenario.source:
        text = source.strip()
        if text.lower().startswith(("https://", "http://")) and not any(c.isspace() for c in text):
            links.append(text)
    return links


def compute_cap(result: Result) -> str | None:
    cap = result.score.cap
    if cap is None:
        return None
    at = as_float(cap.at)
    head = "Overall score capped" if at is None else f"Overall score capped at {at:g}"
    return f"{head}: {cap.reason}" if cap.reason else head


def compute_dimension_rows(result: Result) -> list[DimensionRow]:
    rows = []
    for dim in result.score.dimensions:
        name = dim.name
        objective = fmt_value(dim.objective, dim.unit)
        if objective != DASH and name in _AT_LEAST:
            objective = f"≥ {objective}"
        elif objective != DASH and name:
            objective = f"≤ {objective}"
        sub = as_float(dim.sub_score)
        weight = as_float(dim.weight)
        measured = fmt_value(dim.measured, dim.unit)
        if dim.passed is False and measured == fmt_value(dim.objective, dim.unit):
            measured = _finer(dim.measured, dim.unit)  # "FAIL 10 s ≤ 10 s" said nothing
        rows.append(
            DimensionRow(
                name=name,
                measured=measured,
                objective=objective,
                sub_score=sub,
                sub_score_text=DASH if sub is None else f"{sub:.1f}",
                weight=DASH if weight is None else f"{weight:g}",
                why=dim.explanation,
                passed=dim.passed,
                recommendation=as_str(dim.recommendation),
            )
        )
    return rows


def _finer(value: object, unit: str) -> str:
    """A measured value that rounds to its objective, to the digits that tell them apart."""
    number = as_float(value)
    if number is None:
        return DASH
    if unit == "ratio":
        return f"{number * 100:.3f} %"
    if unit == "s":
        return f"{number:.4f} s"
    return f"{number:g}"


def compute_phase_rows(result: Result) -> list[PhaseRow]:
    started_at = result.run.scenario.started_at
    return [
        PhaseRow(
            index=DASH if phase.index is None else str(phase.index),
            name=phase.name,
            kind=phase.kind,
            target=phase.target,
            real=fmt_clock_span(phase.real_start, phase.real_end, started_at),
            planned=fmt_span(phase.planned_start, phase.planned_end),
            actual=fmt_span(phase.actual_start, phase.actual_end),
            success=fmt_percent(phase.success_ratio),
            p95=fmt_seconds(phase.p95),
            reached=_reached_text(phase),
        )
        for phase in result.phases
    ]


def _reached_text(phase: Phase) -> str:
    traffic = phase.traffic
    if traffic is None:
        return DASH
    parts = [
        f"{fmt_count(n)} {one if n == 1 else many}"
        for n, one, many in (
            (traffic.connections, "connection", "connections"),
            (0 if traffic.connections else traffic.bytes, "byte", "bytes"),  # on connections open before
            (traffic.lookups, "lookup", "lookups"),
            (traffic.resets, "connection reset", "connections reset"),
            (traffic.faulted if traffic.on_answers else 0, "answer changed", "answers changed"),
            (0 if traffic.on_answers else traffic.faulted, "answered by the fault", "answered by the fault"),
        )
        if n
    ]
    if traffic.on_answers and not traffic.faulted:
        parts.append("no answer changed")
    return ", ".join(parts) if parts else "nothing"


def count_unreached(result: Result) -> int | None:
    """The phases whose fault reached no traffic while in force; None when no phase was counted."""
    counted = [p for p in result.phases if p.reached is not None]
    return sum(1 for p in counted if not p.reached) if counted else None


_ACTS_ON = {
    "stream-cut": "no event stream, or no body long enough, to cut — ask with `stream: true`",
    "ttft": "no answer with a body",
    "degrade": "no 2xx JSON answer its ratio struck",
    "model-swap": "no 2xx JSON answer or event stream it struck",
    "partial-index": "no 2xx JSON answer its ratio struck",
    "embedding-mismatch": "no 2xx JSON answer its ratio struck",
}
"""What a fault on answers acts on, said when it changed none."""


def compute_unreached(result: Result) -> list[str]:
    """One sentence for each phase whose fault no traffic reached while it was in force, and the
    finding that the faulted regions carried no traffic before the first fault: the run says
    nothing of them, whatever the score."""
    out = []
    for phase in result.phases:
        if phase.reached is not False:
            continue
        what = f"{phase.kind} on {phase.target}" if phase.target else phase.kind
        called = " ".join(
            x
            for x in (
                "Phase",
                None if phase.index is None else str(phase.index),
                phase.name and f"({phase.name})",
            )
            if x
        )
        if phase.traffic is not None and phase.traffic.on_answers:
            acts_on = _ACTS_ON.get(phase.kind, "no answer it acts on")
            out.append(
                f"{called}: {what} changed no answer while it was in force ({_reached_text(phase)}: "
                f"{acts_on}), so this run says nothing of how the service bears it."
            )
            continue
        out.append(
            f"{called}: {what} reached no traffic while it was in force (no connection or byte "
            "on its routes, no lookup of its names), so this run says nothing of how the service bears "
            "it. Aim it at a part the load uses, or make the load reach that part."
        )
    return out + [f for f in result.findings if f.startswith(IDLE_REGIONS)]


def failover_value(figures: Figures) -> str:
    """Time to fail over as shown: a bound or a span where a window of load requests told it."""
    return _span(as_float(figures.time_to_failover_earliest), as_float(figures.time_to_failover))


def _span(earliest: float | None, latest: float | None) -> str:
    """An instant known to a span (from a window of load requests) as shown: "≤ 525 ms" from its
    origin, or "0.8 s to 1.2 s"; the instant itself when a sample told it to the request."""
    if latest is None or earliest is None or earliest >= latest:
        return fmt_seconds(latest)
    return (
        f"≤ {fmt_seconds(latest)}" if earliest == 0 else f"{fmt_seconds(earliest)} to {fmt_seconds(latest)}"
    )


def failback_value(figures: Figures) -> tuple[str, bool]:
    """Failback as shown, and whether that is a shortcoming: "not back" where the run failed over
    and traffic never came home before the journal ended (the other reasons for no figure say
    there was nothing to come back from)."""
    if (value := as_float(figures.failback)) is not None:
        return _span(as_float(figures.failback_earliest), value), False
    if figures.notes.get("failback", "").startswith(FAILBACK_NOT_BACK):
        return "not back", True
    return DASH, False


def _failover(figures: Figures) -> Figure:
    ttf, earliest = as_float(figures.time_to_failover), as_float(figures.time_to_failover_earliest)
    what = "first success answered outside the impaired regions"
    if ttf is None:
        return Figure("Time to fail over", DASH, figures.notes.get("time_to_failover") or what)
    if earliest is not None and earliest < ttf:
        # A window of load requests told it, not a sample: the instant is known to the window only.
        what += ", to a window of load requests (--raw-samples: to the request)"
    return Figure("Time to fail over", failover_value(figures), what)


def _failback(figures: Figures) -> Figure:
    value, _ = failback_value(figures)
    what = "last revert before it → traffic back where it was served"
    why = figures.notes.get("failback") if figures.failback is None else None
    return Figure("Failback", value, why or what)


def _rpo_text(rpo: Rpo | None, why: str | None) -> tuple[str, str]:
    if rpo is None:
        return DASH, why or "no canary writes were made"
    value = f"{fmt_count(rpo.lost)} of {fmt_count(rpo.acknowledged)} writes lost"
    note = "acknowledged canary writes lost"
    if rpo.unverified:
        # Neither lost nor kept: no region that answered holds them, one that may did not answer.
        value += f", {fmt_count(rpo.unverified)} unverified"
        note += "; unverified: in no region that answered the read-back, lost or not cannot be told"
    if as_float(rpo.window) is not None:
        note += f", spanning {fmt_seconds(rpo.window)}"
    if rpo.missing_by_region:
        # A region found without writes another still holds: not lost, but no longer redundant.
        gaps = ", ".join(f"{region} {n}" for region, n in rpo.missing_by_region.items())
        note += f"; missing in a region that may hold them (lost, or held only elsewhere): {gaps}"
    if rpo.unreadable_by_region:
        unread = ", ".join(f"{region} {n}" for region, n in rpo.unreadable_by_region.items())
        note += f"; read back with no answer (neither found nor missing): {unread}"
    return value, note


def compute_figures(result: Result) -> list[Figure]:
    figures = result.figures
    rto = as_float(figures.rto)
    rto_value = "not recovered" if rto is None and figures.recovered is False else fmt_seconds(rto)
    budget = figures.error_budget
    spent, allowed = (None, None) if budget is None else (budget.spent, budget.allowed)
    budget_value = DASH if budget is None else f"{fmt_percent(budget.burnt, 0)} burnt"
    cost = figures.cost
    if cost is not None:
        cost_value = f"{fmt_money(cost.steady_per_hour, cost.currency)}/h"
        extra = fmt_money(cost.failover_extra, cost.currency)
        cost_note = f"steady state; {extra}/h more while failed over"
    else:
        cost_value, cost_note = DASH, "the design gives no cost rates"
    rpo_value, rpo_note = _rpo_text(figures.rpo, figures.notes.get("rpo"))
    latency = figures.latency
    window = figures.impact_window
    window_note = f"impact window {fmt_span(*window)}" if window is not None else "over the impact window"
    return [
        Figure("RTO", rto_value, "first fault → success ratio back at its objective, sustained"),
        *_correctness(figures),
        Figure("Time to detect", fmt_seconds(figures.time_to_detect), "first failed request"),
        _failover(figures),
        _failback(figures),
        Figure("RPO", rpo_value, rpo_note),
        Figure(
            "Error budget",
            budget_value,
            f"{fmt_number(spent)} failed requests of {fmt_number(allowed, 1)} allowed"
            if budget_value != DASH
            else "not measured: no request in the faults' impact window",
        ),
        Figure("Cost", cost_value, cost_note),
        Figure(
            "Requests",
            fmt_count(figures.requests),
            f"{fmt_count(figures.failed)} failed; {window_note}",
        ),
        Figure(
            "Success ratio",
            fmt_percent(figures.success_ratio),
            f"{fmt_percent(figures.success_ratio_baseline)} before the first fault",
        ),
        Figure(
            "Latency p95",
            fmt_seconds(latency.p95),
            f"p50 {fmt_seconds(latency.p50)}, p99 {fmt_seconds(latency.p99)}",
        ),
        _violations(result),
        *_by_source(figures.paths_by_source),
        *_noise(figures.noise),
    ]


def _violations(result: Result) -> Figure:
    """Violations seen; where sovereignty could not be judged — or was left unscored, a run
    interrupted — none seen is not none (the sovereignty row says why it is unmeasured)."""
    figures = result.figures
    n = figures.sovereignty_violations
    unscored = any(d.name == "sovereignty" and d.sub_score is None for d in result.score.dimensions)
    if not n and ("sovereignty" in figures.notes or unscored):
        why = "not every path was known" if "sovereignty" in figures.notes else "the run was not scored"
        return Figure("Sovereignty violations", f"{fmt_count(n)} seen", f"unmeasured: {why}")
    return Figure("Sovereignty violations", fmt_count(n), "hops below their data class's level")


def _correctness(figures: Figures) -> list[Figure]:
    """Correctness RTO and the share of answers served wrong, beside the RTO: "unmeasured" with
    the reason when the run graded no answer (never a pass)."""
    c, notes = figures.correctness, figures.notes
    rto = as_float(c.rto)
    if rto is not None:
        since = as_float(c.rto_from)
        rto_value = fmt_seconds(rto)
        rto_note = "fault → graded answers back at the target, sustained" + (
            "" if since is None else f" (from the fault at {since:.1f} s)"
        )
    elif c.recovered is False:
        rto_value, rto_note = "not recovered", notes.get("correctness_rto", "")
    else:
        rto_value, rto_note = "unmeasured", notes.get("correctness_rto", "no golden answer was graded")
    share = as_float(c.wrong_share)
    if share is None:
        wrong_value = "unmeasured"
        wrong_note = notes.get("wrong_share", notes.get("correctness", "no golden answer was graded"))
    else:
        wrong_value = fmt_percent(share)
        wrong_note = (
            f"{fmt_count(c.wrong)} of {fmt_count(c.graded)} graded answers served (2xx) but wrong; "
            f"{fmt_percent(c.baseline)} right before the first fault"
        )
    return [
        Figure("Correctness RTO", rto_value, rto_note),
        Figure("Answers served wrong", wrong_value, wrong_note),
    ]


def _noise(noise: Noise | None) -> list[Figure]:
    """The steady state's noise, shown when there was some: outages and detection were then judged
    beyond it (docs/scoring.md)."""
    if noise is None or not noise.failed:
        return []
    return [
        Figure(
            "Steady-state noise",
            f"{fmt_percent(noise.failure_ratio)} failed",
            f"{fmt_count(noise.failed)} of {fmt_count(noise.requests)} requests before the first fault; "
            "outages and detection count only failures beyond it",
        )
    ]


_SOURCE_NAMES = {"fault-plane": "fault plane", "otlp": "OTLP"}


def _by_source(paths: PathSources | None) -> list[Figure]:
    """The fault plane's and the spans' figures side by side, each from its own hops alone."""
    if paths is None or not paths.sources:
        return []
    named = [(_SOURCE_NAMES.get(s.source, s.source), s) for s in paths.sources]
    failover = " · ".join(f"{n} {fmt_seconds(s.time_to_failover)}" for n, s in named)
    violating = " · ".join(f"{n} {fmt_count(s.violating)} of {fmt_count(s.requests)}" for n, s in named)
    agree = (
        f"{fmt_count(paths.both)} requests seen by both: same region for {fmt_count(paths.same_region)}, "
        f"same sovereignty verdict for {fmt_count(paths.same_verdict)}"
    )
    return [
        Figure("Time to fail over, by source", failover, "each source's hops alone"),
        Figure("Violating requests, by source", violating, agree),
    ]


def _violation_summary(result: Result) -> str | None:
    listed = result.violations
    total = result.figures.sovereignty_violations
    if total is None:
        total = len(listed)
    if total <= 0:
        return None
    groups: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for violation in listed:
        hop = violation.hop
        where = ", ".join(part for part in (hop.provider, hop.jurisdiction) if part)
        groups[
            (
                violation.data_class or "?",
                violation.minimum or "?",
                hop.component or "?",
                hop.region,
                where,
                violation.level or hop.sovereignty or "?",
            )
        ] += 1
    # Counts over every violation where the document has them (the list holds the first 100 only).
    totals = {
        (g.data_class, g.component, g.region, g.level): g.count for g in result.figures.violations_by_hop
    }
    noun = "violation" if total == 1 else "violations"
    text = f"{total} sovereignty {noun}"
    parts = []
    for (data_class, minimum, component, region, where, level), count in groups.most_common(
        _VIOLATION_GROUPS_SHOWN
    ):
        place = f"{component} {f'in {region}' if region else 'outside the design'}" + (
            f" ({where}, {level})" if where else f" ({level})"
        )
        counted = totals.get((data_class, component, region, level), count if len(listed) >= total else None)
        times = f"{count}× of the first {len(listed)}" if counted is None else f"{counted}×"
        parts.append(f"'{data_class}' data (requires {minimum}) reached {place} {times}")
    if parts:
        text += ": " + "; ".join(parts)
        if len(groups) > _VIOLATION_GROUPS_SHOWN:
            text += f"; and {len(groups) - _VIOLATION_GROUPS_SHOWN} more kinds"
    first = as_float(listed[0].t) if listed else None
    if first is not None:
        text += f". The first at {first:.2f} s"
    if len(listed) < total:
        text += f" (the first {len(listed)} are listed)"
    return text + "."


def compute_findings(result: Result) -> list[Finding]:
    """Failing dimensions' recommendations first, then the sovereignty violations, then the plan's
    findings: the order in which a reader should act on them."""
    findings = []
    for row in compute_dimension_rows(result):
        if row.passed is False:
            text = row.recommendation or row.why or f"{row.name} fell short of its objective."
            findings.append(Finding(FindingKind.RECOMMENDATION, row.name, text))
    summary = _violation_summary(result)
    if summary is not None:
        findings.append(Finding(FindingKind.SOVEREIGNTY, "sovereignty", summary))
    for line in discovered_lines(result):
        findings.append(Finding(FindingKind.DISCOVERED, "discovered dependency", line))
    otlp = result.figures.notes.get("otlp")
    if otlp:
        findings.append(Finding(FindingKind.SPANS, "OTLP", f"{otlp}."))
    for item in result.findings:
        text = item.strip()
        if text and not text.startswith(IDLE_REGIONS):  # a warning of its own (`compute_unreached`)
            findings.append(Finding(FindingKind.PLAN, "plan", text))
    return findings
