"""`report.html`: one run as a single self-contained page an SRE can attach to a game-day write-up —
the score and its dimensions, key figures, the timeline with every fault phase and the RTO, where
the traffic went (by region and by sovereignty level), the phases in incident and run time, the
findings, sovereignty violations and events. Pure: `render_html(result) -> str`.

The page loads nothing: no script, no font, no stylesheet or image from anywhere; a Content
Security Policy says so to the browser. Charts are inline SVG drawn from the same chart data as
the PNGs. Every string from the document is HTML-escaped; only the scenario's http(s) sources
become links."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from bascule.reports import _summary as summary
from bascule.reports._chartdata import LEVEL_COLOURS, Stack, compute_stack, compute_timeline
from bascule.reports._correctness import render_correctness_section
from bascule.reports._format import (
    DASH,
    as_float,
    as_str,
    fmt_count,
    fmt_instant,
    fmt_seconds,
)
from bascule.reports._page import render_page
from bascule.reports._repeat import MARKS, compute_repeat_view
from bascule.reports._svg import render_stack_svg, render_timeline_svg
from bascule.reports.model import Result

__all__ = ["render_html"]

_GRADES = frozenset("ABCDF")
_FINDING_LABELS = {
    summary.FindingKind.RECOMMENDATION: "fix",
    summary.FindingKind.SOVEREIGNTY: "sovereignty",
    summary.FindingKind.DISCOVERED: "discovered",
    summary.FindingKind.SPANS: "spans",
    summary.FindingKind.PLAN: "plan",
}


def _e(value: object) -> str:
    return escape(as_str(value), quote=True)


def _header(cells: Iterable[str], numeric: Iterable[int] = ()) -> str:
    right = set(numeric)
    return (
        "<thead><tr>"
        + "".join(
            ('<th scope="col" class="num">' if i in right else '<th scope="col">') + f"{cell}</th>"
            for i, cell in enumerate(cells)
        )
        + "</tr></thead>"
    )


def _head(result: Result) -> str:
    headline = summary.compute_headline(result)
    run = result.run
    scenario = run.scenario
    hypothesis = run.hypothesis
    if hypothesis is not None:

        def said(value: bool | None) -> str:
            return "held" if value is True else "failed" if value is False else "not checked"

        hyp = f"before faults: {said(hypothesis.before)}; after rollback: {said(hypothesis.after)}"
    else:
        hyp = "skipped (the scenario has none)"
    scale = as_float(scenario.time_scale)
    replay = f"{fmt_seconds(scenario.duration)} of incident in {fmt_seconds(run.run_length)}"
    if scale:
        replay += f" (1:{round(1 / scale):,})"
    exit_code = run.exit_code
    reason = as_str(run.reason)
    links = summary.safe_links(result)
    sources = [f'<a href="{_e(link)}" rel="noopener noreferrer">{_e(link)}</a>' for link in links] + [
        _e(s) for s in scenario.source if s.strip() not in links
    ]
    items = [
        ("Run", f'<span class="mono">{_e(run.dir) or DASH}</span>'),
        ("Started", _e(run.started_wall) or DASH),
        ("Incident", f"{_e(scenario.started_at) or DASH}; {_e(replay)}"),
        ("Run took", f"{_e(fmt_seconds(run.elapsed))} in all"),
        ("Exit", f"{DASH if exit_code is None else exit_code}{' — ' + _e(reason) if reason else ''}"),
        ("Steady-state hypothesis", _e(hyp)),
        ("Sources", ", ".join(sources) or DASH),
        ("bascule", _e(run.bascule) or DASH),
    ]
    meta = "".join(f"<div><dt>{label}</dt><dd>{value}</dd></div>" for label, value in items)
    title = headline.scenario_title or headline.scenario_id
    design = headline.design_title or headline.design_id
    return (
        '<header class="page-head"><p class="eyebrow">bascule · game-day report</p>'
        f"<h1>{_e(title)}</h1>"
        f'<p class="sub"><span class="id">{_e(headline.scenario_id)}</span> on <strong>{_e(design)}</strong> '
        f'<span class="id">({_e(headline.design_id)})</span></p>'
        f'<dl class="meta">{meta}</dl></header>'
    )


def _score(result: Result) -> str:
    headline = summary.compute_headline(result)
    grade_class = f" grade-{headline.grade}" if headline.grade in _GRADES else ""
    verdict_class = "" if headline.passed is None else (" pass" if headline.passed else " fail")
    cap = summary.compute_cap(result)
    card = (
        f'<div class="score-card" aria-label="overall score {_e(headline.overall_text)} of 100, grade '
        f'{_e(headline.grade)}, {_e(headline.verdict)}">'
        f'<div class="overall">{_e(headline.overall_text)}<small>/100</small></div>'
        f'<div class="grade{grade_class}" title="grade">{_e(headline.grade)}</div>'
        f'<span class="verdict{verdict_class}">{_e(headline.verdict)}</span>'
        + (f'<div class="cap">{_e(cap)}</div>' if cap else "")
        + (f'<div class="cap">{_e(headline.unmeasured)}</div>' if headline.unmeasured else "")
        + "</div>"
    )
    rows = [
        _header(
            [
                "dimension",
                "sub-score",
                "weight",
                "measured",
                "objective",
                "why",
            ],
            numeric=(1, 2, 3, 4),
        )
    ]
    for dim in summary.compute_dimension_rows(result):
        width = 0.0 if dim.sub_score is None else min(max(dim.sub_score, 0.0), 100.0)
        bar_class = "bar-unmeasured" if dim.passed is None else ("bar-pass" if dim.passed else "bar-fail")
        bar = (
            f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
            f'aria-label="{_e(dim.name)} sub-score {_e(dim.sub_score_text)} of 100">'
            f'<rect class="track" width="100" height="10" rx="2"/>'
            f'<rect class="{bar_class}" width="{width:.1f}" height="10" rx="2"/></svg>'
        )
        why = f'<div class="why">{_e(dim.why)}</div>' if dim.why else ""
        if dim.recommendation:
            why += f'<div class="recommendation">{_e(dim.recommendation)}</div>'
        status = " (not measured)" if dim.passed is None else (" ✓" if dim.passed else " ✗")
        rows.append(
            "<tr>"
            f'<td class="dim-name">{_e(dim.name)}{status}</td>'
            f'<td class="num">{_e(dim.sub_score_text)}{bar}</td>'
            f'<td class="num">{_e(dim.weight)}</td>'
            f'<td class="num">{_e(dim.measured)}</td>'
            f'<td class="num">{_e(dim.objective)}</td>'
            f"<td>{why}</td></tr>"
        )
    table = f'<div class="table-wrap"><table class="dimensions">{"".join(rows)}</table></div>'
    return (
        '<section aria-labelledby="score-h"><h2 id="score-h">Score</h2>'
        f'<div class="score-grid">{card}{table}</div></section>'
    )


def _repeat(result: Result) -> str:
    view = compute_repeat_view(result.repeat)
    if view is None:
        return ""
    head = _header(
        ["dimension", "verdict", "mean", "95 % interval", "objective", "runs ✓ ✗ —", "flaky", "why"], (2, 4)
    )
    rows = "".join(
        f'<tr class="repeat-{_e(r.verdict)}"><td class="dim-name">{_e(r.name)}'
        + ("" if r.counts else " (weight 0)")
        + f'</td><td class="verdict-{_e(r.verdict)}">{MARKS.get(r.verdict, "")} {_e(r.verdict)}</td>'
        f'<td class="num">{_e(r.mean)}</td><td>{_e(r.interval)}</td><td class="num">{_e(r.objective)}</td>'
        f"<td>{_e(r.runs)}</td><td>{_e(r.flips)}</td><td>{_e(r.reason)}</td></tr>"
        for r in view.rows
    )
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in view.notes)
    return (
        '<section aria-labelledby="repeat-h"><h2 id="repeat-h">Over the repeated runs: '
        f"{_e(view.title)}</h2><p>{_e(view.reason)}. Mean score {_e(view.mean_score)}. The score below "
        "is this run's own; the repeat's table is <code>../repeat.md</code>.</p>"
        f'<div class="table-wrap"><table class="repeat">{head}<tbody>{rows}</tbody></table></div>{notes}'
        "</section>"
    )


def _figures(result: Result) -> str:
    cards = "".join(
        f'<div class="card"><div class="label">{_e(f.label)}</div><div class="value">{_e(f.value)}</div>'
        f'<div class="note">{_e(f.note)}</div></div>'
        for f in summary.compute_figures(result)
    )
    return (
        '<section aria-labelledby="figures-h"><h2 id="figures-h">Key figures</h2>'
        f'<div class="cards">{cards}</div></section>'
    )


def _timeline(result: Result) -> str:
    chart = compute_timeline(result)
    legend = [
        '<li><span class="swatch-line" style="border-color: var(--accent)"></span>success ratio</li>',
        '<li><span class="swatch-line" style="border-color: var(--p95)"></span>p95 latency</li>',
        '<li><span class="swatch-dash" style="border-color: var(--muted)"></span>objective</li>',
    ]
    if chart.rto is not None:
        legend.append(
            f'<li><span class="swatch-dash" style="border-color: var(--fail)"></span>{_e(chart.rto.label)} '
            "(from the first fault)</li>"
        )
    for band in sorted(chart.phases, key=lambda b: b.index):
        planned = " (planned times)" if band.planned else ""
        target = f" on {band.target}" if band.target else ""
        legend.append(
            f'<li><span class="swatch" style="background: {_e(band.colour)}"></span>'
            f"{band.index} · {_e(band.name)} — {_e(band.kind)}{_e(target)}{planned}</li>"
        )
    return (
        '<section aria-labelledby="timeline-h"><h2 id="timeline-h">Timeline</h2><figure>'
        f"{render_timeline_svg(chart)}"
        f'<ul class="legend" aria-label="timeline legend">{"".join(legend)}</ul>'
        f"<figcaption>{_e(chart.description)} One point per window of at most 1 s; shaded bands are "
        "fault phases as applied (dashed bars: planned times, the fault was never seen applied).</figcaption>"
        "</figure></section>"
    )


def _stack_figure(chart: Stack, ident: str) -> str:
    legend = "".join(
        f'<li><span class="swatch" style="background: {_e(layer.colour)}"></span>{_e(layer.label)}'
        + ("" if layer.mean is None else f" · mean {_e(f'{layer.mean * 100:.0f} %')}")
        + "</li>"
        for layer in reversed(chart.layers)
    )
    return (
        f"<figure><h3>{_e(chart.title)}</h3>{render_stack_svg(chart, ident)}"
        f'<ul class="legend" aria-label="{_e(chart.title)} legend">{legend}</ul></figure>'
    )


def _traffic(result: Result) -> str:
    return (
        '<section aria-labelledby="traffic-h"><h2 id="traffic-h">Where the traffic went</h2><div class="two">'
        f"{_stack_figure(compute_stack(result, 'region'), 'traffic-region')}"
        f"{_stack_figure(compute_stack(result, 'level'), 'traffic-level')}"
        "</div><figcaption>Share of successful requests per window. Sovereignty levels: sovereign (EU "
        "provider, law and operation), trusted, exposed (EU region under non-EU law), foreign.</figcaption>"
        "</section>"
    )


def _phases(result: Result) -> str:
    rows = summary.compute_phase_rows(result)
    if not rows:
        body = '<p class="empty">The scenario has no fault phases.</p>'
    else:
        real = "incident time (UTC)" if result.run.scenario.started_at else "incident time"
        head = _header(
            [
                "#",
                "phase",
                "kind",
                "target",
                real,
                "run time, planned",
                "run time, actual",
                "success",
                "p95",
                "traffic reached",
            ],
            numeric=(0, 5, 6, 7, 8),
        )
        lines = [
            "<tr>"
            f'<td class="num">{_e(r.index)}</td><td>{_e(r.name)}</td><td class="nowrap">{_e(r.kind)}</td>'
            f'<td>{_e(r.target)}</td><td class="nowrap">{_e(r.real)}</td>'
            f'<td class="num">{_e(r.planned)}</td><td class="num">{_e(r.actual)}</td>'
            f'<td class="num">{_e(r.success)}</td><td class="num">{_e(r.p95)}</td>'
            f"<td>{_e(r.reached)}</td></tr>"
            for r in rows
        ]
        warnings = "".join(f'<p class="warning">{_e(w)}</p>' for w in summary.compute_unreached(result))
        body = f'{warnings}<div class="table-wrap"><table>{head}{"".join(lines)}</table></div>'
    return f'<section aria-labelledby="phases-h"><h2 id="phases-h">Phases</h2>{body}</section>'


def _findings(result: Result) -> str:
    findings = summary.compute_findings(result)
    if not findings:
        body = '<p class="empty">Nothing to report: every objective was met and the plan found nothing.</p>'
    else:
        items = "".join(
            f'<li><span class="tag tag-{f.kind.value}">{_e(_FINDING_LABELS[f.kind])}</span>'
            + (f"<strong>{_e(f.subject)}</strong>: " if f.kind is summary.FindingKind.RECOMMENDATION else "")
            + f"{_e(f.text)}</li>"
            for f in findings
        )
        body = f'<ol class="findings">{items}</ol>'
    return f'<section aria-labelledby="findings-h"><h2 id="findings-h">Findings</h2>{body}</section>'


def _level_class(level: str) -> str:
    return f" level-{level}" if level in LEVEL_COLOURS else ""


def _violations(result: Result) -> str:
    listed = result.violations
    total = result.figures.sovereignty_violations
    total = len(listed) if total is None else total
    if not listed:
        body = (
            '<p class="empty">No sovereignty violation: no request touched a region below its data '
            "class's level.</p>"
            if total == 0
            else f'<p class="empty">{fmt_count(total)} violations were counted but none is listed.</p>'
        )
    else:
        note = (
            f"<p>The first {len(listed)} of {fmt_count(total)} are listed.</p>" if len(listed) < total else ""
        )
        head = _header(
            [
                "t",
                "request",
                "source",
                "data class",
                "requires",
                "hop",
                "region",
                "provider · jurisdiction",
                "level",
            ],
            numeric=(0,),
        )
        lines = []
        for v in listed:
            hop = v.hop
            level = v.level or hop.sovereignty
            lines.append(
                "<tr>"
                f'<td class="num">{_e(fmt_instant(v.t))}</td>'
                f'<td class="mono">{_e(v.request_id)}</td><td>{_e(v.source)}</td>'
                f"<td>{_e(v.data_class)}</td><td>{_e(v.minimum)}</td>"
                f'<td>{_e(hop.component)}</td><td class="nowrap">{_e(hop.region)}</td>'
                f"<td>{_e(hop.provider)} · {_e(hop.jurisdiction)}</td>"
                f'<td class="level{_level_class(level)}">{_e(level)}</td></tr>'
            )
        body = f'{note}<div class="table-wrap"><table>{head}{"".join(lines)}</table></div>'
    title = f"Sovereignty violations ({fmt_count(total)})"
    return f'<section aria-labelledby="violations-h"><h2 id="violations-h">{_e(title)}</h2>{body}</section>'


def _events(result: Result) -> str:
    events = result.events
    if not events:
        body = '<p class="empty">No event was recorded.</p>'
    else:
        head = _header(["t", "event"], numeric=(0,))
        lines = "".join(
            f'<tr><td class="num">{_e(fmt_instant(ev.t))}</td><td>{_e(ev.text)}</td></tr>' for ev in events
        )
        body = f'<div class="table-wrap"><table>{head}{lines}</table></div>'
    return f'<section aria-labelledby="events-h"><h2 id="events-h">Events</h2>{body}</section>'


def render_html(result: Result) -> str:
    """The whole report page for one `bascule.result/1` document."""
    headline = summary.compute_headline(result)
    title = (
        f"bascule · {headline.scenario_id} on {headline.design_id} — "
        f"{headline.overall_text} {headline.grade} {headline.verdict}"
    )
    body = "".join(
        [
            _head(result),
            "<main>",
            _repeat(result),
            _score(result),
            _figures(result),
            _timeline(result),
            render_correctness_section(result),
            _traffic(result),
            _phases(result),
            _findings(result),
            _violations(result),
            _events(result),
            "</main>",
            f"<footer>Generated by bascule {_e(result.run.bascule)} from {_e(result.schema_)}. "
            "This page is self-contained: it loads nothing from the network.</footer>",
        ]
    )
    return render_page(title, body)
