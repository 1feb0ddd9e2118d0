"""What every human-facing report says about a run, as plain text rows: the headline, the dimension
table, the phase timeline, the key figures and the top findings, computed once from a
`bascule.result/1` document so that the Markdown summary and the HTML report cannot disagree.
The rows hold unescaped text; each renderer escapes it for its own format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bascule.reports._format import (
    DASH,
    as_float,
    as_int,
    as_list,
    as_map,
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


@dataclass(frozen=True)
class Figure:
    label: str
    value: str
    note: str


class FindingKind(Enum):
    RECOMMENDATION = "recommendation"
    SOVEREIGNTY = "sovereignty"
    PLAN = "plan"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    subject: str  # the dimension's name, "sovereignty" or "plan"
    text: str


def _passed(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def compute_headline(result: Mapping[str, Any]) -> Headline:
    run = as_map(result.get("run"))
    scenario = as_map(run.get("scenario"))
    design = as_map(run.get("design"))
    score = as_map(result.get("score"))
    overall = as_float(score.get("overall"))
    passed = _passed(score.get("passed"))
    return Headline(
        scenario_id=as_str(scenario.get("id")) or DASH,
        scenario_title=as_str(scenario.get("title")),
        design_id=as_str(design.get("id")) or DASH,
        design_title=as_str(design.get("title")),
        overall=overall,
        overall_text=DASH if overall is None else f"{overall:.1f}",
        grade=as_str(score.get("grade")) or DASH,
        passed=passed,
        verdict=DASH if passed is None else ("PASS" if passed else "FAIL"),
    )


def safe_links(result: Mapping[str, Any]) -> list[str]:
    """The scenario's sources that may become links: http(s) only, so that a document cannot turn a
    report into a javascript: or file: link."""
    scenario = as_map(as_map(result.get("run")).get("scenario"))
    links = []
    for source in as_list(scenario.get("source")):
        text = as_str(source).strip()
        if text.lower().startswith(("https://", "http://")) and not any(c.isspace() for c in text):
            links.append(text)
    return links


def compute_cap(result: Mapping[str, Any]) -> str | None:
    cap = as_map(as_map(result.get("score")).get("cap"))
    if not cap:
        return None
    at = as_float(cap.get("at"))
    reason = as_str(cap.get("reason"))
    head = "Overall score capped" if at is None else f"Overall score capped at {at:g}"
    return f"{head}: {reason}" if reason else head


def compute_dimension_rows(result: Mapping[str, Any]) -> list[DimensionRow]:
    rows = []
    for item in as_list(as_map(result.get("score")).get("dimensions")):
        dim = as_map(item)
        name = as_str(dim.get("name"))
        unit = as_str(dim.get("unit"))
        objective = fmt_value(dim.get("objective"), unit)
        if objective != DASH and name in _AT_LEAST:
            objective = f"≥ {objective}"
        elif objective != DASH and name:
            objective = f"≤ {objective}"
        sub = as_float(dim.get("sub_score"))
        weight = as_float(dim.get("weight"))
        rows.append(
            DimensionRow(
                name=name,
                measured=fmt_value(dim.get("measured"), unit),
                objective=objective,
                sub_score=sub,
                sub_score_text=DASH if sub is None else f"{sub:.1f}",
                weight=DASH if weight is None else f"{weight:g}",
                why=as_str(dim.get("explanation")),
                passed=_passed(dim.get("passed")),
                recommendation=as_str(dim.get("recommendation")),
            )
        )
    return rows


def compute_phase_rows(result: Mapping[str, Any]) -> list[PhaseRow]:
    started_at = as_map(as_map(result.get("run")).get("scenario")).get("started_at")
    rows = []
    for item in as_list(result.get("phases")):
        phase = as_map(item)
        index = as_int(phase.get("index"))
        rows.append(
            PhaseRow(
                index=DASH if index is None else str(index),
                name=as_str(phase.get("name")),
                kind=as_str(phase.get("kind")),
                target=as_str(phase.get("target")),
                real=fmt_clock_span(phase.get("real_start"), phase.get("real_end"), started_at),
                planned=fmt_span(phase.get("planned_start"), phase.get("planned_end")),
                actual=fmt_span(phase.get("actual_start"), phase.get("actual_end")),
                success=fmt_percent(phase.get("success_ratio")),
                p95=fmt_seconds(phase.get("p95")),
            )
        )
    return rows


def _rpo_text(rpo: Mapping[str, Any]) -> tuple[str, str]:
    acknowledged = as_int(rpo.get("acknowledged"))
    lost = as_int(rpo.get("lost"))
    if acknowledged is None and lost is None:
        return DASH, "no canary writes were made"
    lost_text = fmt_count(lost)
    value = f"{lost_text} of {fmt_count(acknowledged)} writes lost"
    window = as_float(rpo.get("window"))
    note = "acknowledged canary writes lost"
    if window is not None:
        note += f", spanning {fmt_seconds(window)}"
    return value, note


def compute_figures(result: Mapping[str, Any]) -> list[Figure]:
    figures = as_map(result.get("figures"))
    rto = as_float(figures.get("rto"))
    recovered = figures.get("recovered")
    rto_value = "not recovered" if rto is None and recovered is False else fmt_seconds(rto)
    budget = as_map(figures.get("error_budget"))
    spent, allowed = budget.get("spent"), budget.get("allowed")
    if as_float(spent) is None and as_float(allowed) is None:
        budget_value = DASH
    else:
        budget_value = f"{fmt_percent(budget.get('burnt'), 0)} burnt"
    cost = as_map(figures.get("cost"))
    currency = as_str(cost.get("currency"))
    if cost:
        cost_value = f"{fmt_money(cost.get('steady_per_hour'), currency)}/h"
        extra = fmt_money(cost.get("failover_extra"), currency)
        cost_note = f"steady state; {extra}/h more while failed over"
    else:
        cost_value, cost_note = DASH, "the design gives no cost rates"
    rpo_value, rpo_note = _rpo_text(as_map(figures.get("rpo")))
    latency = as_map(figures.get("latency"))
    window = as_list(figures.get("impact_window"))
    window_note = (
        f"impact window {fmt_span(window[0], window[1])}" if len(window) == 2 else "over the impact window"
    )
    return [
        Figure("RTO", rto_value, "first fault → success ratio back at its objective, sustained"),
        Figure("Time to detect", fmt_seconds(figures.get("time_to_detect")), "first failed request"),
        Figure(
            "Time to fail over",
            fmt_seconds(figures.get("time_to_failover")),
            "first success served outside the impaired regions",
        ),
        Figure("Failback", fmt_seconds(figures.get("failback")), "last revert → traffic back on the primary"),
        Figure("RPO", rpo_value, rpo_note),
        Figure(
            "Error budget",
            budget_value,
            f"{fmt_number(spent)} failed requests of {fmt_number(allowed, 1)} allowed"
            if budget_value != DASH
            else "no availability objective",
        ),
        Figure("Cost", cost_value, cost_note),
        Figure(
            "Requests",
            fmt_count(figures.get("requests")),
            f"{fmt_count(figures.get('failed'))} failed; {window_note}",
        ),
        Figure(
            "Success ratio",
            fmt_percent(figures.get("success_ratio")),
            f"{fmt_percent(figures.get('success_ratio_baseline'))} before the first fault",
        ),
        Figure(
            "Latency p95",
            fmt_seconds(latency.get("p95")),
            f"p50 {fmt_seconds(latency.get('p50'))}, p99 {fmt_seconds(latency.get('p99'))}",
        ),
        Figure(
            "Sovereignty violations",
            fmt_count(figures.get("sovereignty_violations")),
            "hops below their data class's level",
        ),
    ]


def _violation_summary(result: Mapping[str, Any]) -> str | None:
    listed = [as_map(v) for v in as_list(result.get("violations"))]
    total = as_int(as_map(result.get("figures")).get("sovereignty_violations"))
    if total is None:
        total = len(listed)
    if total <= 0:
        return None
    groups: Counter[tuple[str, str, str, str, str, str]] = Counter()
    for violation in listed:
        hop = as_map(violation.get("hop"))
        where = ", ".join(
            part for part in (as_str(hop.get("provider")), as_str(hop.get("jurisdiction"))) if part
        )
        groups[
            (
                as_str(violation.get("data_class")) or "?",
                as_str(violation.get("minimum")) or "?",
                as_str(hop.get("component")) or "?",
                as_str(hop.get("region")) or "?",
                where,
                as_str(violation.get("level")) or as_str(hop.get("sovereignty")) or "?",
            )
        ] += 1
    noun = "violation" if total == 1 else "violations"
    text = f"{total} sovereignty {noun}"
    parts = []
    for (data_class, minimum, component, region, where, level), count in groups.most_common(
        _VIOLATION_GROUPS_SHOWN
    ):
        place = f"{component} in {region}" + (f" ({where}, {level})" if where else f" ({level})")
        parts.append(f"'{data_class}' data (requires {minimum}) reached {place} {count}×")
    if parts:
        text += ": " + "; ".join(parts)
        if len(groups) > _VIOLATION_GROUPS_SHOWN:
            text += f"; and {len(groups) - _VIOLATION_GROUPS_SHOWN} more kinds"
    first = as_float(as_map(listed[0]).get("t")) if listed else None
    if first is not None:
        text += f". The first at {first:.2f} s"
    if len(listed) < total:
        text += f" (the first {len(listed)} are listed)"
    return text + "."


def compute_findings(result: Mapping[str, Any]) -> list[Finding]:
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
    for item in as_list(result.get("findings")):
        text = as_str(item).strip()
        if text:
            findings.append(Finding(FindingKind.PLAN, "plan", text))
    return findings
