"""Correctness over time in the HTML report: the share of graded golden answers that were right,
window by window — overall and by the region whose llm wrote them — with the fault phases shaded
and the correctness RTO marked; "unmeasured" (never a pass) when the run graded no answer. Chart
data first (`compute_correctness_chart`), then inline SVG drawn from it. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from bascule.reports._chartdata import (
    Axis,
    Marker,
    PhaseBand,
    Point,
    _fault_window,
    _floats,
    _layer_order,
    _phases,
    _segments,
    _x_axis,
)
from bascule.reports._format import as_float, fmt_percent, fmt_seconds
from bascule.reports._svg import num, scale, svg_open, svg_text, x_grid, y_grid
from bascule.reports.model import Result

__all__ = [
    "CorrectnessChart",
    "CorrectnessLine",
    "CorrectnessRow",
    "compute_correctness_chart",
    "compute_correctness_rows",
    "render_correctness_section",
]

_OVERALL_COLOUR = "#222222"
_WIDTH = 960
_LEFT = 70
_RIGHT = 24
_TOP = 10
_HEIGHT = 170
_Y = Axis(0.0, 1.025, (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))


@dataclass(frozen=True)
class CorrectnessLine:
    label: str
    colour: str
    segments: tuple[tuple[Point, ...], ...]
    dashed: bool


@dataclass(frozen=True)
class CorrectnessChart:
    x: Axis
    lines: tuple[CorrectnessLine, ...]
    phases: tuple[PhaseBand, ...]
    fault_start: float | None
    rto: Marker | None
    description: str


def compute_correctness_chart(result: Result) -> CorrectnessChart | None:
    """The chart's data; ``None`` when no window graded an answer (nothing to draw)."""
    series = result.series
    if not any(series.graded):
        return None
    t = _floats(series.t)
    phases, _ = _phases(result)
    lines = [
        CorrectnessLine("all regions", _OVERALL_COLOUR, _segments(t, _floats(series.correct_ratio)), True)
    ]
    for key, label, colour in _layer_order("region", list(series.correct_region), result):
        lines.append(CorrectnessLine(label, colour, _segments(t, _floats(series.correct_region[key])), False))
    window = _fault_window(result, phases)
    c = result.figures.correctness
    rto = as_float(c.rto)
    marker = (
        None
        if window is None or rto is None
        else Marker(window[0] + rto, f"correctness RTO {fmt_seconds(rto)}")
    )
    parts = [f"{fmt_percent(c.wrong_share)} of graded answers served wrong during the impact window"]
    if marker is not None:
        parts.append(f"answers right again, sustained, {fmt_seconds(rto)} after the first fault")
    elif c.recovered is False:
        parts.append("answers were not right again before the run ended")
    description = "Share of graded golden answers that were right, per window and by answering region: " + (
        "; ".join(parts) + "."
    )
    return CorrectnessChart(
        x=_x_axis(t, phases),
        lines=tuple(lines),
        phases=phases,
        fault_start=None if window is None else window[0],
        rto=marker,
        description=description,
    )


def _e(text: str) -> str:
    return escape(text, quote=True)


def render_correctness_svg(chart: CorrectnessChart, ident: str = "correctness") -> str:
    right = _WIDTH - _RIGHT
    bottom = _TOP + _HEIGHT
    x = scale(chart.x, _LEFT, right - _LEFT)
    y = scale(_Y, _TOP, _HEIGHT, flip=True)
    out = [svg_open(_WIDTH, round(bottom + 44), ident, "Correct answers over the run", chart.description)]
    out.append('<g class="phase-shading" aria-hidden="true">')
    for band in chart.phases:
        x0, x1 = x(band.start), x(band.end)
        out.append(
            f'<rect x="{num(x0)}" y="{_TOP}" width="{num(max(x1 - x0, 1))}" height="{_HEIGHT}" '
            f'fill="{band.colour}" fill-opacity="0.09"><title>{_e(band.tooltip)}</title></rect>'
        )
    out.append("</g>")
    out += x_grid(chart.x, x, _TOP, bottom, bottom + 16)
    out += y_grid(_Y, y, _LEFT, right, lambda v: fmt_percent(v, 0))
    out.append(f'<rect class="frame" x="{_LEFT}" y="{_TOP}" width="{right - _LEFT}" height="{_HEIGHT}"/>')
    for line in chart.lines:
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        for segment in line.segments:
            points = " ".join(f"{num(x(px))},{num(y(py))}" for px, py in segment)
            out.append(
                f'<polyline fill="none" stroke="{line.colour}" stroke-width="2"{dash} points="{points}">'
                f"<title>{_e(line.label)}</title></polyline>"
            )
    if chart.fault_start is not None:
        px = num(x(chart.fault_start))
        out.append(f'<line class="marker" x1="{px}" y1="{_TOP}" x2="{px}" y2="{bottom}"/>')
    if chart.rto is not None:
        rx = x(chart.rto.at)
        anchor, dx = ("end", -5) if rx > right - 120 else ("start", 5)
        label = svg_text("annotation rto-label", rx + dx, bottom - 8, chart.rto.label, anchor)
        out.append(
            f'<g class="rto"><line class="marker rto-line" x1="{num(rx)}" y1="{_TOP}" x2="{num(rx)}" '
            f'y2="{bottom}"/>{label}</g>'
        )
    out.append(
        f'<text class="axis-title" transform="translate(16 {num(_TOP + _HEIGHT / 2)}) rotate(-90)" '
        'text-anchor="middle">correct answers</text>'
        + svg_text(
            "axis-title", (_LEFT + right) / 2, bottom + 36, "run time, s since the plan started", "middle"
        )
    )
    out.append("</svg>")
    return "".join(out)


def render_correctness_section(result: Result) -> str:
    """The report's "Correct answers" section."""
    head = '<section aria-labelledby="correctness-h"><h2 id="correctness-h">Correct answers</h2>'
    chart = compute_correctness_chart(result)
    if chart is None:
        why = result.figures.notes.get("correctness", "no golden answer was graded during the run")
        return f'{head}<p class="empty">Correctness unmeasured: {_e(why)}.</p></section>'
    legend = "".join(
        f'<li><span class="swatch-line" style="border-color: {_e(line.colour)}"></span>{_e(line.label)}</li>'
        for line in chart.lines
    )
    return (
        f"{head}<figure>{render_correctness_svg(chart)}"
        f'<ul class="legend" aria-label="correct answers legend">{legend}</ul>'
        f"<figcaption>{_e(chart.description)} One point per window of at most 1 s with graded answers; a "
        "gap is a window that graded none. Shaded bands are fault phases.</figcaption></figure></section>"
    )


@dataclass(frozen=True)
class CorrectnessRow:
    """One line of summary.md's "Correct answers over time": a region's (or every region's) windows."""

    label: str
    windows: int
    """Windows in which it had graded answers."""
    lowest: float | None
    lowest_at: float | None
    wrong_windows: int
    """Of those, windows with a wrong answer."""
    last_wrong: float | None
    """Start of the last window with a wrong answer, s since the plan started."""


def compute_correctness_rows(result: Result) -> list[CorrectnessRow]:
    """Every region's correctness series summed up, then all regions'; empty when none was graded."""
    series = result.series
    t = _floats(series.t)
    named = [
        (label, series.correct_region[key])
        for key, label, _ in _layer_order("region", list(series.correct_region), result)
    ]
    rows = []
    for label, values in [*named, ("all regions", series.correct_ratio)]:
        points = [(x, v) for x, v in zip(t, _floats(values), strict=False) if x is not None and v is not None]
        if not points:
            continue
        low_at, low = min(points, key=lambda p: (p[1], p[0]))
        wrong = [x for x, v in points if v < 1.0]
        rows.append(CorrectnessRow(label, len(points), low, low_at, len(wrong), max(wrong, default=None)))
    return rows
