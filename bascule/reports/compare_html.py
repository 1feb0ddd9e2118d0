"""`compare.html`: designs side by side for the architects choosing between them — the matrix of
grades and key figures per scenario and design, each design's steady-state cost next to its average
score (a table row and a scatter), one grouped-bar chart per score dimension, and who wins each
scenario and why. Pure: `render_compare_html(comparison) -> str`, from `build_comparison`.

The page is report.html's shell and stylesheet: it loads nothing, charts are inline SVG, every
string is escaped. Its only links open each run's own report.html, as the relative path
`<run dir>/report.html`; a run directory that is absolute or carries a URL scheme gets no link."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from bascule._version import __version__
from bascule.reports._chartdata import Axis, nice_ticks
from bascule.reports._compare_repeat import REPEAT_CSS, render_repeat_badge, render_repeats_section
from bascule.reports._format import (
    DASH,
    as_float,
    as_str,
    fmt_count,
    fmt_money,
    fmt_percent,
    fmt_seconds,
    fmt_value,
)
from bascule.reports._page import render_page
from bascule.reports._summary import failback_value, failover_value
from bascule.reports._svg import num, scale, svg_open, svg_text, x_grid, y_grid
from bascule.reports.compare import DIMENSIONS, Cell, Comparison

__all__ = ["render_compare_html"]

_GRADES = frozenset("ABCDF")
# One hue per design, clear of the grade colours (green to red) so a design never reads as a grade.
_DESIGN_PALETTE = (
    "#3b75af",
    "#ef8636",
    "#17a2a2",
    "#8e6bbf",
    "#a0522d",
    "#d0589c",
    "#a89224",
    "#6b7b8c",
)
_BAD = ' class="bad"'
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_TIE = 0.05  # the margin under which compare.py calls two overall scores a tie
_CHAR_WIDTH = 6.4  # average advance of an 11 px sans-serif glyph, to decide whether a label fits

_BAR_WIDTH, _BAR_LEFT, _BAR_RIGHT, _BAR_TOP, _BAR_HEIGHT = 520, 44, 12, 14, 150
_SUB_AXIS = Axis(0.0, 100.0, (0.0, 25.0, 50.0, 75.0, 100.0))
_DOT_WIDTH, _DOT_LEFT, _DOT_RIGHT, _DOT_TOP, _DOT_HEIGHT = 560, 56, 24, 16, 240

_CSS = """
ul.designs { list-style: none; margin: 4px 0 10px; padding: 0; display: grid; gap: 3px; font-size: 14px; }
ul.designs li { display: flex; align-items: baseline; gap: 8px; }
ul.designs .swatch { align-self: center; }
table .swatch, ol.ranking .swatch { display: inline-block; vertical-align: -1px; }
td.design { white-space: nowrap; }
ul.designs .title { color: var(--muted); }
table.matrix thead th { vertical-align: bottom; }
table.matrix th .title { display: block; color: var(--muted); font-weight: 400; text-transform: none;
                         letter-spacing: 0; font-size: 12.5px; max-width: 260px; }
table.matrix th .id { text-transform: none; letter-spacing: 0; color: var(--fg); }
table.matrix th[scope="row"] { color: var(--fg); font-size: 14px; text-transform: none; letter-spacing: 0;
                               min-width: 170px; max-width: 260px; }
table.matrix th[scope="row"] .id { display: block; color: var(--muted); font-weight: 400; font-size: 12px;
                                   overflow-wrap: anywhere; }
td.cell { min-width: 190px; border-left: 4px solid var(--line); }
td.cell-A { border-left-color: #1b873f; background: rgba(27, 135, 63, .07); }
td.cell-B { border-left-color: #4d8f1e; background: rgba(77, 143, 30, .07); }
td.cell-C { border-left-color: #b88a00; background: rgba(184, 138, 0, .08); }
td.cell-D { border-left-color: #d96c00; background: rgba(217, 108, 0, .08); }
td.cell-F { border-left-color: #c62828; background: rgba(198, 40, 40, .08); }
td.missing { position: relative; color: var(--muted); text-align: center; vertical-align: middle;
             font-size: 20px; }
.cell-head { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.grade-dot { display: inline-block; min-width: 28px; height: 28px; line-height: 28px; border-radius: 14px;
             padding: 0 6px; text-align: center; font-weight: 700; color: #fff; overflow-wrap: anywhere; }
:where(.grade-dot) { background: var(--muted); }  /* zero specificity: a grade's colour wins */
.cell-score { font-size: 22px; font-weight: 700; font-variant-numeric: tabular-nums; }
.mark { font-size: 12px; font-weight: 700; letter-spacing: .06em; }
.mark.pass { color: var(--pass); } .mark.fail { color: var(--fail); }
.best-tag { font-size: 11px; font-weight: 650; text-transform: uppercase; letter-spacing: .04em;
            border: 1px solid var(--accent); color: var(--accent); border-radius: 4px; padding: 0 5px; }
td.cell .cap { margin-top: 6px; text-align: left; }
dl.figs { display: grid; grid-template-columns: 1fr auto; gap: 1px 10px; margin: 8px 0 0; font-size: 13px; }
dl.figs div { display: contents; }
dl.figs dt { color: var(--muted); }
dl.figs dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.figs dd.bad { color: var(--fail); font-weight: 600; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
                   white-space: nowrap; }
.report-link { display: inline-block; margin-top: 6px; font-size: 13px; }
table.matrix tfoot th, table.matrix tfoot td { border-bottom: none; border-top: 2px solid var(--line); }
table.matrix tfoot tr + tr th, table.matrix tfoot tr + tr td { border-top: 1px solid var(--line); }
.foot-value { font-weight: 650; font-size: 16px; font-variant-numeric: tabular-nums; }
.foot-note { color: var(--muted); font-size: 12.5px; }
.cost-grid { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 22px;
             align-items: start; }
@media (max-width: 860px) { .cost-grid { grid-template-columns: minmax(0, 1fr); } }
.dims { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 440px), 1fr));
        gap: 18px 22px; margin-top: 12px; }
.winners { display: grid; gap: 12px; }
.winner { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.winner h3 .id { color: var(--muted); font-weight: 400; margin-left: 6px; }
ol.ranking { margin: 6px 0 8px; padding-left: 24px; }
ol.ranking li { margin: 3px 0; }
ol.ranking .grade-dot { min-width: 22px; height: 22px; line-height: 22px; font-size: 12.5px; padding: 0 5px; }
.why-text { margin: 0; }
svg.chart .point { stroke: var(--card); stroke-width: 2; }
svg.chart .bar-label { fill: var(--muted); font-size: 10px; }
svg.chart .bar-label.failed { fill: var(--fail); font-weight: 700; }
svg.chart .absent { fill: var(--muted); font-size: 12px; }
svg.chart .baseline { stroke: var(--muted); stroke-width: 1; }
"""


@dataclass(frozen=True)
class _DesignSummary:
    design: str
    average: float | None  # mean overall score over the scenarios the design was run under
    runs: int
    passed: int
    cost: float | None
    currency: str


def _e(value: object) -> str:
    return escape(as_str(value), quote=True)


def _report_href(run_dir: str) -> str | None:
    # Percent-encoding keeps '#', '?', spaces and control characters inside the path; a scheme or a
    # leading slash would point somewhere other than the run directory beside this page.
    if not run_dir or run_dir.startswith(("/", "\\")) or _SCHEME.match(run_dir):
        return None
    return quote(run_dir.rstrip("/"), safe="/") + "/report.html"


def _colours(designs: Sequence[str]) -> dict[str, str]:
    return {d: _DESIGN_PALETTE[i % len(_DESIGN_PALETTE)] for i, d in enumerate(designs)}


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background: {colour}" aria-hidden="true"></span>'


def _grade_class(prefix: str, grade: str) -> str:
    return f" {prefix}-{grade}" if grade in _GRADES else ""


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _score_text(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def _summaries(comparison: Comparison) -> list[_DesignSummary]:
    out = []
    for design in comparison.designs:
        cells = [c for (_, d), c in comparison.cells.items() if d == design]
        scores = [c.overall for c in cells if c.overall is not None]
        cost, currency = comparison.costs.get(design, (None, ""))
        out.append(
            _DesignSummary(
                design=design,
                average=sum(scores) / len(scores) if scores else None,
                runs=len(cells),
                passed=sum(1 for c in cells if c.passed),
                cost=as_float(cost),
                currency=currency,
            )
        )
    return out


def _best(comparison: Comparison) -> set[tuple[str, str]]:
    """The cells with the top score of their scenario, when the scenario has more than one design."""
    best: set[tuple[str, str]] = set()
    for verdict in comparison.verdicts:
        if len(verdict.ranking) < 2:
            continue
        top = max(c.overall or 0.0 for c in verdict.ranking)
        best.update((c.scenario, c.design) for c in verdict.ranking if top - (c.overall or 0.0) < _TIE)
    return best


# --- header and matrix -------------------------------------------------------------------------


def _head(comparison: Comparison, colours: Mapping[str, str]) -> str:
    n_d, n_s, n_runs = len(comparison.designs), len(comparison.scenarios), len(comparison.cells)
    designs = "".join(
        f'<li>{_swatch(colours[d])}<span class="id">{_e(d)}</span>'
        + (f'<span class="title">{_e(title)}</span>' if (title := comparison.titles.get(d)) else "")
        + "</li>"
        for d in comparison.designs
    )
    return (
        '<header class="page-head"><p class="eyebrow">bascule · design comparison</p>'
        "<h1>Failover designs side by side</h1>"
        f'<p class="sub"><strong>{_count(n_d, "design")}</strong> under '
        f"<strong>{_count(n_s, 'scenario')}</strong>: {_count(n_runs, 'run')} of {n_d * n_s} possible.</p>"
        f'<ul class="designs" aria-label="designs and their colours">{designs}</ul></header>'
    )


def _cell_figures(cell: Cell) -> str:
    f = cell.figures
    rows: list[tuple[str, str, bool]] = [("availability", fmt_percent(f.success_ratio), False)]
    if f.recovered is False:
        rows.append(("RTO", "never recovered", True))
    else:
        rows.append(("RTO", fmt_seconds(f.rto), False))
    rows.append(("p95", fmt_seconds(f.latency.p95), False))
    rows.append(("time to fail over", failover_value(f), False))
    back, not_back = failback_value(f)
    rows.append(("failback", back, not_back))
    lost, acknowledged = (None, None) if f.rpo is None else (f.rpo.lost, f.rpo.acknowledged)
    if lost is None:
        rows.append(("writes lost", DASH, False))
    else:
        of = "" if acknowledged is None else f" of {fmt_count(acknowledged)}"
        rows.append(("writes lost", f"{fmt_count(lost)}{of}", lost > 0))
    violations = f.sovereignty_violations
    rows.append(("sovereignty violations", fmt_count(violations), bool(violations)))
    if cell.discovered:
        rows.append(("outside the design", "; ".join(cell.discovered), True))
    if cell.unreached:
        rows.append(("faults that reached no traffic", "phase " + ", ".join(cell.unreached), True))
    return (
        '<dl class="figs">'
        + "".join(
            f"<div><dt>{label}</dt><dd{_BAD if bad else ''}>{_e(value)}</dd></div>"
            for label, value, bad in rows
        )
        + "</dl>"
    )


def _cell(cell: Cell | None, scenario: str, design: str, best: bool) -> str:
    if cell is None:
        return (
            f'<td class="cell missing" title="{_e(design)} was not run under {_e(scenario)}">'
            f'{DASH}<span class="visually-hidden"> not run</span></td>'
        )
    mark = '<span class="mark pass">✓ PASS</span>' if cell.passed else '<span class="mark fail">✗ FAIL</span>'
    mark = mark if cell.repeat is None else render_repeat_badge(cell.repeat)
    tag = '<span class="best-tag">best</span>' if best else ""
    cap = f'<div class="cap">capped: {_e(cell.capped)}</div>' if cell.capped else ""
    href = _report_href(cell.run_dir)
    link = (
        f'<a class="report-link" href="{_e(href)}" title="{_e(cell.run_dir)}">run report</a>'
        if href is not None
        else ""
    )
    return (
        f'<td class="cell{_grade_class("cell", cell.grade)}{" best" if best else ""}">'
        '<div class="cell-head">'
        f'<span class="grade-dot{_grade_class("grade", cell.grade)}" title="grade">{_e(cell.grade)}</span>'
        f'<span class="cell-score">{_overall_text(cell)}</span>{mark}{tag}</div>'
        f"{cap}{_cell_figures(cell)}{link}</td>"
    )


def _matrix(comparison: Comparison, colours: Mapping[str, str], summaries: Sequence[_DesignSummary]) -> str:
    best = _best(comparison)
    head = '<thead><tr><th scope="col">scenario</th>' + "".join(
        f'<th scope="col">{_swatch(colours[d])} <span class="id">{_e(d)}</span>'
        + (f'<span class="title">{_e(t)}</span>' if (t := comparison.titles.get(d)) else "")
        + "</th>"
        for d in comparison.designs
    )
    head += "</tr></thead>"
    titles = {v.scenario: v.title for v in comparison.verdicts}
    rows = []
    for scenario in comparison.scenarios:
        title = titles.get(scenario) or scenario
        cells = "".join(
            _cell(comparison.cells.get((scenario, d)), scenario, d, (scenario, d) in best)
            for d in comparison.designs
        )
        rows.append(f'<tr><th scope="row">{_e(title)}<span class="id">{_e(scenario)}</span></th>{cells}</tr>')
    n_s = len(comparison.scenarios)
    averages = "".join(
        f'<td><span class="foot-value">{_score_text(s.average)}</span>'
        f'<div class="foot-note">over {s.runs} of {n_s} scenarios; {s.passed} passed</div></td>'
        for s in summaries
    )
    costs = "".join(
        f'<td><span class="foot-value">{_e(fmt_money(s.cost, s.currency))}</span>'
        + ('<div class="foot-note">no cost rates</div>' if s.cost is None else "")
        + "</td>"
        for s in summaries
    )
    foot = (
        f'<tfoot><tr><th scope="row">average score</th>{averages}</tr>'
        f'<tr><th scope="row">steady-state cost / h</th>{costs}</tr></tfoot>'
    )
    return (
        '<section aria-labelledby="matrix-h"><h2 id="matrix-h">Scores side by side</h2>'
        '<p class="sub">One row per scenario, one column per design: the grade and overall score out of 100, '
        "whether every objective was met, and the figures that decide a failover. "
        f"{DASH} marks a design not run under a scenario.</p>"
        f'<div class="table-wrap"><table class="matrix">{head}<tbody>{"".join(rows)}</tbody>{foot}'
        "</table></div></section>"
    )


# --- cost next to resilience -------------------------------------------------------------------


def _label_positions(
    points: Sequence[tuple[float, float, str]], right: float
) -> list[tuple[float, float, str]]:
    """(x, y, anchor) of each point's label: beside the point, nudged down past labels it would overlap."""
    placed: list[tuple[float, float, float]] = []  # left, right, baseline of each label drawn
    out: list[tuple[float, float, str]] = []
    for px, py, text in points:
        width = len(text) * _CHAR_WIDTH
        anchor = "end" if px + 10 + width > right else "start"
        left = px - 10 - width if anchor == "end" else px + 10
        baseline = py + 4
        for other_left, other_right, other_base in sorted(placed, key=lambda p: p[2]):
            if left < other_right and other_left < left + width and abs(baseline - other_base) < 13:
                baseline = other_base + 13
        placed.append((left, left + width, baseline))
        out.append((px - 10 if anchor == "end" else px + 10, baseline, anchor))
    return out


def _scatter(summaries: Sequence[_DesignSummary], colours: Mapping[str, str]) -> tuple[str, str]:
    """The cost/score scatter and a sentence on the designs left out of it."""
    priced = [s for s in summaries if s.cost is not None and s.average is not None]
    currencies = Counter(s.currency for s in priced)
    currency = currencies.most_common(1)[0][0] if currencies else ""
    shown = [s for s in priced if s.currency == currency]
    left_out = [
        f"{s.design} (no cost rates)"
        if s.cost is None
        else f"{s.design} (cost in {s.currency or 'no currency'})"
        for s in summaries
        if s not in shown and s.average is not None
    ]
    note = f"Not plotted: {', '.join(left_out)}." if left_out else ""
    if not shown:
        return "", note or "No design has both a steady-state cost and a score."
    right = _DOT_WIDTH - _DOT_RIGHT
    top, bottom = _DOT_TOP, _DOT_TOP + _DOT_HEIGHT
    costs = [s.cost or 0.0 for s in shown]
    x_axis = nice_ticks(0.0, max(costs) * 1.08 or 1.0, 6)
    low = min(s.average or 0.0 for s in shown)
    y_axis = nice_ticks(max(0.0, low - 10.0), 100.0, 6)
    x = scale(x_axis, _DOT_LEFT, right - _DOT_LEFT)
    y = scale(y_axis, top, _DOT_HEIGHT, flip=True)
    unit = f"{currency} per hour" if currency else "per hour"
    description = "; ".join(
        f"{s.design}: {fmt_money(s.cost, currency)} per hour, average score {_score_text(s.average)}"
        for s in shown
    )
    out = [
        svg_open(
            _DOT_WIDTH,
            bottom + 44,
            "cost-scatter",
            "Steady-state cost per hour against average score, one point per design",
            description + (f". {note}" if note else "."),
        )
    ]
    out += x_grid(x_axis, x, top, bottom, bottom + 16)
    out += y_grid(y_axis, y, _DOT_LEFT, right, lambda v: f"{v:g}")
    out.append(
        f'<rect class="frame" x="{_DOT_LEFT}" y="{top}" width="{right - _DOT_LEFT}" height="{_DOT_HEIGHT}"/>'
    )
    ordered = sorted(shown, key=lambda s: (-(s.average or 0.0), s.cost or 0.0))
    points = [(x(s.cost or 0.0), y(s.average or 0.0), s.design) for s in ordered]
    for s, (px, py, _), (lx, ly, anchor) in zip(
        ordered, points, _label_positions(points, right), strict=True
    ):
        tip = (
            f"{s.design}: {fmt_money(s.cost, currency)} per hour; average score {_score_text(s.average)} "
            f"over {_count(s.runs, 'scenario')}, {s.passed} passed"
        )
        out.append(
            f'<g class="design-point"><title>{_e(tip)}</title>'
            f'<circle class="point" cx="{num(px)}" cy="{num(py)}" r="7" fill="{colours[s.design]}"/>'
            + svg_text("annotation", lx, ly, s.design, anchor=anchor)
            + "</g>"
        )
    out.append(
        svg_text("axis-title", (_DOT_LEFT + right) / 2, bottom + 36, f"steady-state cost, {unit}", "middle")
    )
    out.append(
        f'<text class="axis-title" transform="translate(16 {num((top + bottom) / 2)}) rotate(-90)" '
        'text-anchor="middle">average score</text></svg>'
    )
    return "".join(out), note


def _cost(summaries: Sequence[_DesignSummary], colours: Mapping[str, str]) -> str:
    chart, note = _scatter(summaries, colours)
    figure = (
        f"<figure>{chart}<figcaption>Up and to the left is better: more resilience for less money. "
        "Average over the scenarios each design was run under.</figcaption></figure>"
        if chart
        else ""
    )
    rows = "".join(
        f'<tr><td class="design">{_swatch(colours[s.design])} <span class="id">{_e(s.design)}</span></td>'
        f'<td class="num">{_e(fmt_money(s.cost, s.currency))}</td>'
        f'<td class="num">{_score_text(s.average)}</td><td class="num">{s.passed} of {s.runs}</td></tr>'
        for s in summaries
    )
    table = (
        '<div class="table-wrap"><table><thead><tr><th scope="col">design</th>'
        '<th scope="col" class="num">cost / h</th><th scope="col" class="num">avg score</th>'
        f'<th scope="col" class="num">passed</th></tr></thead><tbody>{rows}</tbody></table></div>'
    )
    aside = table + (f'<p class="why">{_e(note)}</p>' if note else "")
    if not figure:
        figure = f'<p class="empty">{_e(note)}</p>'
    return (
        '<section aria-labelledby="cost-h"><h2 id="cost-h">Cost next to resilience</h2>'
        f'<div class="cost-grid">{figure}<div>{aside}</div></div>'
        "</section>"
    )


# --- sub-scores by dimension -------------------------------------------------------------------


def _fit(text: str, width: float) -> str:
    room = max(int(width / _CHAR_WIDTH), 2)
    return text if len(text) <= room else text[: room - 1] + "…"


def _bar_chart(comparison: Comparison, dimension: str, colours: Mapping[str, str]) -> str:
    right = _BAR_WIDTH - _BAR_RIGHT
    top, bottom = _BAR_TOP, _BAR_TOP + _BAR_HEIGHT
    y = scale(_SUB_AXIS, top, _BAR_HEIGHT, flip=True)
    n_s, n_d = max(len(comparison.scenarios), 1), max(len(comparison.designs), 1)
    group = (right - _BAR_LEFT) / n_s
    bar = min(36.0, group * 0.8 / n_d)
    said: list[str] = []
    out: list[str] = []
    for i, scenario in enumerate(comparison.scenarios):
        start = _BAR_LEFT + i * group + (group - bar * n_d) / 2
        parts = []
        for j, design in enumerate(comparison.designs):
            bx = start + j * bar
            cx = bx + bar / 2
            cell = comparison.cells.get((scenario, design))
            value = None if cell is None else cell.sub(dimension)
            if value is None:
                why = "not run" if cell is None else "not measured"
                parts.append(f"{design} {why}")
                out.append(
                    f'<g class="absent-bar"><title>{_e(f"{design} under {scenario}: {why}")}</title>'
                    + svg_text("absent", cx, bottom - 4, DASH, "middle")
                    + "</g>"
                )
                continue
            entry = cell.dimensions.get(dimension) if cell is not None else None
            passed = None if entry is None else entry.passed
            failed = passed is False
            measured = None if entry is None else entry.measured
            shown = "not measured" if entry is None or measured is None else fmt_value(measured, entry.unit)
            verdict = ", failed" if failed else ", passed" if passed is True else ""
            tip = f"{design} under {scenario}: {dimension} {value:.0f} of 100{verdict}; measured {shown}"
            parts.append(f"{design} {value:.0f}{' (failed)' if failed else ''}")
            top_y = y(value)
            height = max(bottom - top_y, 1.5)  # a sub-score of 0 still shows as a sliver on the baseline
            label = f"{value:.0f}" if bar >= 18 else ""
            if failed:
                label += "✗"
            out.append(
                f'<g class="sub-bar"><title>{_e(tip)}</title>'
                f'<rect x="{num(bx + 1)}" y="{num(bottom - height)}" width="{num(max(bar - 2, 1))}" '
                f'height="{num(height)}" rx="2" fill="{colours[design]}"/>'
                + (
                    svg_text(
                        f"bar-label{' failed' if failed else ''}", cx, bottom - height - 3, label, "middle"
                    )
                    if label
                    else ""
                )
                + "</g>"
            )
        out.append(
            f"<g><title>{_e(scenario)}</title>"
            + svg_text(
                "tick", _BAR_LEFT + (i + 0.5) * group, bottom + 16, _fit(scenario, group - 4), "middle"
            )
            + "</g>"
        )
        said.append(f"{scenario}: {', '.join(parts)}")
    name = dimension.capitalize()
    description = (
        f"{name} sub-score out of 100 per scenario (groups) and design (bars). " + "; ".join(said) + "."
    )
    head = [
        svg_open(
            _BAR_WIDTH,
            bottom + 26,
            f"dim-{dimension}",
            f"{name} sub-score by scenario and design",
            description,
        )
    ]
    head += y_grid(_SUB_AXIS, y, _BAR_LEFT, right, lambda v: f"{v:g}")
    baseline = f'<line class="baseline" x1="{_BAR_LEFT}" y1="{bottom}" x2="{num(right)}" y2="{bottom}"/>'
    return "".join([*head, *out, baseline, "</svg>"])


def _dimensions(comparison: Comparison, colours: Mapping[str, str]) -> str:
    legend = "".join(
        f'<li><span class="swatch" style="background: {colours[d]}"></span>{_e(d)}</li>'
        for d in comparison.designs
    )
    figures = "".join(
        f"<figure><h3>{_e(name.capitalize())}</h3>{_bar_chart(comparison, name, colours)}</figure>"
        for name in DIMENSIONS
    )
    return (
        '<section aria-labelledby="dims-h"><h2 id="dims-h">Sub-scores by dimension</h2>'
        f'<ul class="legend" aria-label="design colours">{legend}</ul>'
        f'<div class="dims">{figures}</div>'
        f'<p class="why">Each dimension\'s sub-score out of 100, one group per scenario. ✗ marks a dimension '
        f"that missed its objective; {DASH} a design not run under the scenario, or a dimension not "
        "measured. Hover a bar for the measured value.</p></section>"
    )


# --- who wins ----------------------------------------------------------------------------------


def _verdicts(comparison: Comparison, colours: Mapping[str, str]) -> str:
    cards = []
    for verdict in comparison.verdicts:
        ranking = "".join(
            f'<li>{_swatch(colours[c.design])} <span class="id">{_e(c.design)}</span> — '
            f'<span class="grade-dot{_grade_class("grade", c.grade)}">{_e(c.grade)}</span> '
            f"{_overall_text(c)} "
            + (
                render_repeat_badge(c.repeat)
                if c.repeat is not None
                else '<span class="mark pass">PASS</span>'
                if c.passed
                else '<span class="mark fail">FAIL</span>'
            )
            + (f' <span class="why">capped: {_e(c.capped)}</span>' if c.capped else "")
            + "</li>"
            for c in verdict.ranking
        )
        title = verdict.title or verdict.scenario
        cards.append(
            f'<article class="winner"><h3>{_e(title)}<span class="id">{_e(verdict.scenario)}</span></h3>'
            f'<ol class="ranking">{ranking}</ol><p class="why-text">{_e(verdict.why)}</p></article>'
        )
    body = f'<div class="winners">{"".join(cards)}</div>' if cards else '<p class="empty">No scenario.</p>'
    return f'<section aria-labelledby="wins-h"><h2 id="wins-h">Who wins, and why</h2>{body}</section>'


def render_compare_html(comparison: Comparison) -> str:
    """The whole comparison page for the result of `build_comparison`."""
    colours = _colours(comparison.designs)
    summaries = _summaries(comparison)
    n_d, n_s = len(comparison.designs), len(comparison.scenarios)
    title = f"bascule · design comparison — {_count(n_d, 'design')} × {_count(n_s, 'scenario')}"
    body = "".join(
        [
            _head(comparison, colours),
            "<main>",
            _matrix(comparison, colours, summaries),
            _cost(summaries, colours),
            _dimensions(comparison, colours),
            _verdicts(comparison, colours),
            render_repeats_section(
                (c.scenario, c.design, c.repeat) for c in comparison.cells.values() if c.repeat
            ),
            "</main>",
            f"<footer>Generated by bascule {_e(__version__)} from {len(comparison.cells)} run results "
            "(bascule.result/1). This page is self-contained: it loads nothing from the network; its only "
            "links open each run's own report.html.</footer>",
        ]
    )
    return render_page(title, body, _CSS + REPEAT_CSS)


def _overall_text(cell: Cell) -> str:
    return "not scored" if cell.overall is None else f"{cell.overall:.1f}"
