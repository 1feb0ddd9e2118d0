"""`report.html`: one run as a single self-contained page an SRE can attach to a game-day write-up —
the score and its dimensions, key figures, the timeline with every fault phase and the RTO, where
the traffic went (by region and by sovereignty level), the phases in incident and run time, the
findings, sovereignty violations and events. Pure: `render_html(result) -> str`.

The page loads nothing: no script, no font, no stylesheet or image from anywhere; a Content
Security Policy says so to the browser. Charts are inline SVG drawn from the same chart data as
the PNGs. Every string from the document is HTML-escaped; only the scenario's http(s) sources
become links."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from bascule.reports._chartdata import LEVEL_COLOURS, Stack, compute_stack, compute_timeline
from bascule.reports._format import (
    DASH,
    as_float,
    as_int,
    as_list,
    as_map,
    as_str,
    fmt_count,
    fmt_instant,
    fmt_seconds,
)
from bascule.reports._summary import (
    FindingKind,
    compute_cap,
    compute_dimension_rows,
    compute_figures,
    compute_findings,
    compute_headline,
    compute_phase_rows,
    safe_links,
)
from bascule.reports._svg import render_stack_svg, render_timeline_svg

__all__ = ["render_html"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
_GRADES = frozenset("ABCDF")
_FINDING_LABELS = {
    FindingKind.RECOMMENDATION: "fix",
    FindingKind.SOVEREIGNTY: "sovereignty",
    FindingKind.PLAN: "plan",
}

_CSS = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --fg: #1c2430; --muted: #5b6573; --line: #dde1e7; --grid: #e9ecf0;
  --accent: #1565c0; --p95: #7b1fa2; --pass: #1b873f; --fail: #c62828; --warn: #b26a00;
  --font: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  --mono: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #12161c; --card: #1b2129; --fg: #e6e9ee; --muted: #9aa4b2; --line: #2d3540; --grid: #262d37;
          --accent: #64a8f0; --p95: #ce93d8; --pass: #4cc46e; --fail: #ef6a6a; --warn: #f0a848; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg); font: 15px/1.5 var(--font); }
main, .page-head, footer { max-width: 1120px; margin: 0 auto; padding: 0 20px; }
.page-head { padding-top: 28px; }
.eyebrow { margin: 0; color: var(--muted); font-size: 13px; letter-spacing: .04em;
           text-transform: uppercase; }
h1 { margin: 4px 0 2px; font-size: 26px; line-height: 1.25; }
h2 { font-size: 19px; margin: 0 0 12px; }
.sub { margin: 0 0 14px; color: var(--muted); }
.sub strong { color: var(--fg); font-weight: 600; }
code, .id, .mono { font-family: var(--mono); font-size: 13px; }
a { color: var(--accent); }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
          margin: 16px 0; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 6px 18px;
          margin: 0 0 8px; font-size: 14px; }
dl.meta div { min-width: 0; }
dl.meta dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
.score-grid { display: grid; grid-template-columns: 220px 1fr; gap: 22px; align-items: start; }
@media (max-width: 760px) { .score-grid { grid-template-columns: 1fr; } }
.score-card { border-radius: 10px; padding: 16px; text-align: center; border: 1px solid var(--line); }
.overall { font-size: 52px; font-weight: 700; line-height: 1; font-variant-numeric: tabular-nums; }
.overall small { font-size: 18px; color: var(--muted); font-weight: 500; }
.grade { display: inline-block; margin: 10px 0 8px; width: 54px; height: 54px; line-height: 54px;
         border-radius: 50%; font-size: 30px; font-weight: 700; color: #fff; background: var(--muted); }
.grade-A { background: #1b873f; } .grade-B { background: #4d8f1e; } .grade-C { background: #b88a00; }
.grade-D { background: #d96c00; } .grade-F { background: #c62828; }
.verdict { display: block; font-weight: 700; letter-spacing: .08em; }
.verdict.pass { color: var(--pass); } .verdict.fail { color: var(--fail); }
.cap { margin-top: 10px; font-size: 13px; color: var(--fail); }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase;
     letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
.table-wrap { overflow-x: auto; }
.dim-name { font-weight: 600; text-transform: capitalize; white-space: nowrap; }
.why { color: var(--muted); font-size: 13px; }
.recommendation { color: var(--fg); font-size: 13px; margin-top: 4px; }
.recommendation::before { content: "→ "; color: var(--fail); }
svg.bar { width: 120px; height: 10px; display: block; margin-top: 5px; }
svg.bar .track { fill: var(--grid); }
.bar-pass { fill: var(--pass); } .bar-fail { fill: var(--fail); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
.card .value { font-size: 21px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12.5px; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 8px; }
svg.chart { width: 100%; height: auto; display: block; font-family: var(--font); }
svg.chart .grid { stroke: var(--grid); stroke-width: 1; }
svg.chart .frame { fill: none; stroke: var(--line); }
svg.chart .plot-bg { fill: none; }
svg.chart .tick { fill: var(--muted); font-size: 11px; }
svg.chart .axis-title { fill: var(--muted); font-size: 12px; }
svg.chart .annotation { fill: var(--fg); font-size: 11.5px; paint-order: stroke; stroke: var(--card);
                        stroke-width: 3px; stroke-linejoin: round; }
svg.chart .objective { stroke: var(--muted); stroke-width: 1.2; stroke-dasharray: 6 4; }
svg.chart .marker { stroke: var(--fg); stroke-width: 1; stroke-opacity: .55; stroke-dasharray: 2 3; }
svg.chart .rto-line { stroke: var(--fail); stroke-width: 1.4; stroke-dasharray: 5 3; stroke-opacity: 1; }
svg.chart .rto-label { fill: var(--fail); font-weight: 600; }
svg.chart .fault-bar { stroke: var(--fg); stroke-width: 3; stroke-opacity: .5; }
svg.chart .line-success { fill: none; stroke: var(--accent); stroke-width: 2.2; stroke-linejoin: round; }
svg.chart .line-p95 { fill: none; stroke: var(--p95); stroke-width: 2; stroke-linejoin: round; }
svg.chart .lane-label { fill: #fff; font-size: 11px; font-weight: 600; pointer-events: none; }
svg.chart .hover circle { fill: transparent; stroke: none; }
svg.chart .hover circle:hover { fill: var(--fg); fill-opacity: .6; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; margin: 10px 0 0; padding: 0; list-style: none;
          font-size: 13px; }
.legend li { display: flex; align-items: center; gap: 6px; }
.swatch { width: 12px; height: 12px; border-radius: 2px; flex: none; }
.swatch-line { width: 18px; height: 0; border-top: 3px solid; flex: none; }
.swatch-dash { width: 18px; height: 0; border-top: 2px dashed; flex: none; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 22px; }
@media (max-width: 860px) { .two { grid-template-columns: 1fr; } }
h3 { font-size: 15px; margin: 0 0 6px; }
ol.findings { margin: 0; padding-left: 22px; }
ol.findings li { margin: 4px 0; }
.tag { display: inline-block; font-size: 11px; font-weight: 650; text-transform: uppercase;
       letter-spacing: .04em; border-radius: 4px; padding: 0 6px; margin-right: 6px;
       border: 1px solid currentColor; }
.tag-recommendation { color: var(--fail); } .tag-sovereignty { color: var(--warn); }
.tag-plan { color: var(--muted); }
.level { font-weight: 600; }
.level-sovereign { color: #2e9e4f; } .level-trusted { color: #2f6fd0; }
.level-exposed { color: #f08a24; } .level-foreign { color: #d6342c; }
.empty { color: var(--muted); margin: 0; }
footer { color: var(--muted); font-size: 12.5px; padding-bottom: 30px; }
@media print {
  body { background: #fff; }
  section { break-inside: avoid; border-color: #ccc; }
}
"""


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


def _head(result: Mapping[str, Any]) -> str:
    headline = compute_headline(result)
    run = as_map(result.get("run"))
    scenario = as_map(run.get("scenario"))
    hypothesis = run.get("hypothesis")
    if isinstance(hypothesis, Mapping):

        def said(value: object) -> str:
            return "held" if value is True else "failed" if value is False else "not checked"

        hyp = (
            f"before faults: {said(hypothesis.get('before'))}; "
            f"after rollback: {said(hypothesis.get('after'))}"
        )
    else:
        hyp = "skipped (the scenario has none)"
    scale = as_float(scenario.get("time_scale"))
    replay = f"{fmt_seconds(scenario.get('duration'))} of incident in {fmt_seconds(run.get('run_length'))}"
    if scale:
        replay += f" (1:{round(1 / scale):,})"
    exit_code = as_int(run.get("exit_code"))
    reason = as_str(run.get("reason"))
    links = safe_links(result)
    sources = [f'<a href="{_e(link)}" rel="noopener noreferrer">{_e(link)}</a>' for link in links] + [
        _e(s) for s in as_list(scenario.get("source")) if as_str(s).strip() not in links
    ]
    items = [
        ("Run", f'<span class="mono">{_e(run.get("dir")) or DASH}</span>'),
        ("Started", _e(run.get("started_wall")) or DASH),
        ("Incident", f"{_e(scenario.get('started_at')) or DASH}; {_e(replay)}"),
        ("Run took", f"{_e(fmt_seconds(run.get('elapsed')))} in all"),
        ("Exit", f"{DASH if exit_code is None else exit_code}{' — ' + _e(reason) if reason else ''}"),
        ("Steady-state hypothesis", _e(hyp)),
        ("Sources", ", ".join(sources) or DASH),
        ("bascule", _e(run.get("bascule")) or DASH),
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


def _score(result: Mapping[str, Any]) -> str:
    headline = compute_headline(result)
    grade_class = f" grade-{headline.grade}" if headline.grade in _GRADES else ""
    verdict_class = "" if headline.passed is None else (" pass" if headline.passed else " fail")
    cap = compute_cap(result)
    card = (
        f'<div class="score-card" aria-label="overall score {_e(headline.overall_text)} of 100, grade '
        f'{_e(headline.grade)}, {_e(headline.verdict)}">'
        f'<div class="overall">{_e(headline.overall_text)}<small>/100</small></div>'
        f'<div class="grade{grade_class}" title="grade">{_e(headline.grade)}</div>'
        f'<span class="verdict{verdict_class}">{_e(headline.verdict)}</span>'
        + (f'<div class="cap">{_e(cap)}</div>' if cap else "")
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
    for dim in compute_dimension_rows(result):
        width = 0.0 if dim.sub_score is None else min(max(dim.sub_score, 0.0), 100.0)
        bar_class = "bar-fail" if dim.passed is False else "bar-pass"
        bar = (
            f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
            f'aria-label="{_e(dim.name)} sub-score {_e(dim.sub_score_text)} of 100">'
            f'<rect class="track" width="100" height="10" rx="2"/>'
            f'<rect class="{bar_class}" width="{width:.1f}" height="10" rx="2"/></svg>'
        )
        why = f'<div class="why">{_e(dim.why)}</div>' if dim.why else ""
        if dim.recommendation:
            why += f'<div class="recommendation">{_e(dim.recommendation)}</div>'
        status = "" if dim.passed is None else (" ✓" if dim.passed else " ✗")
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


def _figures(result: Mapping[str, Any]) -> str:
    cards = "".join(
        f'<div class="card"><div class="label">{_e(f.label)}</div><div class="value">{_e(f.value)}</div>'
        f'<div class="note">{_e(f.note)}</div></div>'
        for f in compute_figures(result)
    )
    return (
        '<section aria-labelledby="figures-h"><h2 id="figures-h">Key figures</h2>'
        f'<div class="cards">{cards}</div></section>'
    )


def _timeline(result: Mapping[str, Any]) -> str:
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


def _traffic(result: Mapping[str, Any]) -> str:
    return (
        '<section aria-labelledby="traffic-h"><h2 id="traffic-h">Where the traffic went</h2><div class="two">'
        f"{_stack_figure(compute_stack(result, 'region'), 'traffic-region')}"
        f"{_stack_figure(compute_stack(result, 'level'), 'traffic-level')}"
        "</div><figcaption>Share of successful requests per window. Sovereignty levels: sovereign (EU "
        "provider, law and operation), trusted, exposed (EU region under non-EU law), foreign.</figcaption>"
        "</section>"
    )


def _phases(result: Mapping[str, Any]) -> str:
    rows = compute_phase_rows(result)
    if not rows:
        body = '<p class="empty">The scenario has no fault phases.</p>'
    else:
        started = as_map(as_map(result.get("run")).get("scenario")).get("started_at")
        real = "incident time (UTC)" if isinstance(started, str) and started else "incident time"
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
            ],
            numeric=(0, 5, 6, 7, 8),
        )
        lines = [
            "<tr>"
            f'<td class="num">{_e(r.index)}</td><td>{_e(r.name)}</td><td class="nowrap">{_e(r.kind)}</td>'
            f'<td>{_e(r.target)}</td><td class="nowrap">{_e(r.real)}</td>'
            f'<td class="num">{_e(r.planned)}</td><td class="num">{_e(r.actual)}</td>'
            f'<td class="num">{_e(r.success)}</td><td class="num">{_e(r.p95)}</td></tr>'
            for r in rows
        ]
        body = f'<div class="table-wrap"><table>{head}{"".join(lines)}</table></div>'
    return f'<section aria-labelledby="phases-h"><h2 id="phases-h">Phases</h2>{body}</section>'


def _findings(result: Mapping[str, Any]) -> str:
    findings = compute_findings(result)
    if not findings:
        body = '<p class="empty">Nothing to report: every objective was met and the plan found nothing.</p>'
    else:
        items = "".join(
            f'<li><span class="tag tag-{f.kind.value}">{_e(_FINDING_LABELS[f.kind])}</span>'
            + (f"<strong>{_e(f.subject)}</strong>: " if f.kind is FindingKind.RECOMMENDATION else "")
            + f"{_e(f.text)}</li>"
            for f in findings
        )
        body = f'<ol class="findings">{items}</ol>'
    return f'<section aria-labelledby="findings-h"><h2 id="findings-h">Findings</h2>{body}</section>'


def _level_class(level: str) -> str:
    return f" level-{level}" if level in LEVEL_COLOURS else ""


def _violations(result: Mapping[str, Any]) -> str:
    listed = [as_map(v) for v in as_list(result.get("violations"))]
    total = as_int(as_map(result.get("figures")).get("sovereignty_violations"))
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
            hop = as_map(v.get("hop"))
            level = as_str(v.get("level") or hop.get("sovereignty"))
            lines.append(
                "<tr>"
                f'<td class="num">{_e(fmt_instant(v.get("t")))}</td>'
                f'<td class="mono">{_e(v.get("request_id"))}</td><td>{_e(v.get("source"))}</td>'
                f"<td>{_e(v.get('data_class'))}</td><td>{_e(v.get('minimum'))}</td>"
                f'<td>{_e(hop.get("component"))}</td><td class="nowrap">{_e(hop.get("region"))}</td>'
                f"<td>{_e(hop.get('provider'))} · {_e(hop.get('jurisdiction'))}</td>"
                f'<td class="level{_level_class(level)}">{_e(level)}</td></tr>'
            )
        body = f'{note}<div class="table-wrap"><table>{head}{"".join(lines)}</table></div>'
    title = f"Sovereignty violations ({fmt_count(total)})"
    return f'<section aria-labelledby="violations-h"><h2 id="violations-h">{_e(title)}</h2>{body}</section>'


def _events(result: Mapping[str, Any]) -> str:
    events = [as_map(e) for e in as_list(result.get("events"))]
    if not events:
        body = '<p class="empty">No event was recorded.</p>'
    else:
        head = _header(["t", "event"], numeric=(0,))
        lines = "".join(
            f'<tr><td class="num">{_e(fmt_instant(ev.get("t")))}</td><td>{_e(ev.get("text"))}</td></tr>'
            for ev in events
        )
        body = f'<div class="table-wrap"><table>{head}{lines}</table></div>'
    return f'<section aria-labelledby="events-h"><h2 id="events-h">Events</h2>{body}</section>'


def render_html(result: Mapping[str, Any]) -> str:
    """The whole report page for one `bascule.result/1` document."""
    headline = compute_headline(result)
    run = as_map(result.get("run"))
    title = (
        f"bascule · {headline.scenario_id} on {headline.design_id} — "
        f"{headline.overall_text} {headline.grade} {headline.verdict}"
    )
    body = "".join(
        [
            _head(result),
            "<main>",
            _score(result),
            _figures(result),
            _timeline(result),
            _traffic(result),
            _phases(result),
            _findings(result),
            _violations(result),
            _events(result),
            "</main>",
            f"<footer>Generated by bascule {_e(run.get('bascule'))} from {_e(result.get('schema'))}. "
            "This page is self-contained: it loads nothing from the network.</footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
