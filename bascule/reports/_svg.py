"""Inline SVG for the HTML report, drawn from the chart data of `_chartdata`: the timeline (phase
lanes, success ratio and p95 latency with their objectives, RTO) and the stacked traffic shares.
No script and no external reference; colours that follow the page's theme come from CSS classes
defined in the report's stylesheet, data colours are inline. Every string is escaped. The
primitives (`scale`, `svg_open`, the grids, `num`) also draw compare.html's charts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from bascule.reports._chartdata import Axis, Point, Stack, StackPoint, Timeline
from bascule.reports._format import fmt_percent, fmt_seconds

__all__ = [
    "num",
    "render_stack_svg",
    "render_timeline_svg",
    "scale",
    "svg_open",
    "svg_text",
    "x_grid",
    "y_grid",
]

_WIDTH = 960
_LEFT = 70
_RIGHT = 24
_LANE = 18
_LANE_GAP = 3
_SUCCESS_HEIGHT = 170
_P95_HEIGHT = 120
_PANEL_GAP = 22
_CHAR_WIDTH = 6.4  # average advance of an 11 px sans-serif glyph, to decide which label fits a bar

_X_TITLE = "run time, s since the plan started"
_STACK_WIDTH = 480
_STACK_LEFT = 48
_STACK_RIGHT = 14
_STACK_TOP = 26
_STACK_HEIGHT = 170


def num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _e(text: str) -> str:
    return escape(text, quote=True)


def scale(axis: Axis, start: float, length: float, flip: bool = False) -> Callable[[float], float]:
    span = axis.hi - axis.lo or 1.0

    def to_px(v: float) -> float:
        clamped = min(max(v, axis.lo), axis.hi)
        frac = (clamped - axis.lo) / span
        return start + (1 - frac) * length if flip else start + frac * length

    return to_px


def _polyline(points: Sequence[Point], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    return " ".join(f"{num(x(px))},{num(y(py))}" for px, py in points)


def _area(points: Sequence[StackPoint], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    upper = [f"{num(x(t))},{num(y(hi))}" for t, _, hi in points]
    lower = [f"{num(x(t))},{num(y(lo))}" for t, lo, _ in reversed(points)]
    return " ".join(upper + lower)


def _rect(css: str, x: float, y: float, width: float, height: float) -> str:
    return f'<rect class="{css}" x="{num(x)}" y="{num(y)}" width="{num(width)}" height="{num(height)}"/>'


def _line(css: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<line class="{css}" x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}"/>'


def svg_text(css: str, x: float, y: float, text: str, anchor: str = "start") -> str:
    return f'<text class="{css}" x="{num(x)}" y="{num(y)}" text-anchor="{anchor}">{_e(text)}</text>'


def svg_open(width: int, height: int, ident: str, title: str, description: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{ident}-title">{_e(title)}</title><desc id="{ident}-desc">{_e(description)}</desc>'
    )


def x_grid(
    axis: Axis, x: Callable[[float], float], top: float, bottom: float, labels_at: float | None
) -> list[str]:
    out = []
    for tick in axis.ticks:
        px = num(x(tick))
        out.append(f'<line class="grid" x1="{px}" y1="{num(top)}" x2="{px}" y2="{num(bottom)}"/>')
        if labels_at is not None:
            out.append(
                f'<text class="tick" x="{px}" y="{num(labels_at)}" text-anchor="middle">{tick:g}</text>'
            )
    return out


def y_grid(
    axis: Axis, y: Callable[[float], float], left: float, right: float, label: Callable[[float], str]
) -> list[str]:
    out = []
    for tick in axis.ticks:
        py = num(y(tick))
        out.append(f'<line class="grid" x1="{num(left)}" y1="{py}" x2="{num(right)}" y2="{py}"/>')
        out.append(
            f'<text class="tick" x="{num(left - 6)}" y="{py}" text-anchor="end" dominant-baseline="middle">'
            f"{_e(label(tick))}</text>"
        )
    return out


def _objective_line(
    value: float | None,
    y: Callable[[float], float],
    axis: Axis,
    left: float,
    right: float,
    label: str,
    below: bool = False,
) -> list[str]:
    if value is None or not axis.lo <= value <= axis.hi:
        return []
    py = y(value)
    label_y = py + 13 if below else py - 4
    return [
        f'<line class="objective" x1="{num(left)}" y1="{num(py)}" x2="{num(right)}" y2="{num(py)}"/>',
        svg_text("annotation", right - 4, label_y, label, anchor="end"),
    ]


def _points(
    segments: Sequence[Sequence[Point]],
    x: Callable[[float], float],
    y: Callable[[float], float],
    what: str,
    fmt: Callable[[float], str],
) -> list[str]:
    # Invisible hover targets: the browser shows each window's value as a tooltip, without script.
    out = ['<g class="hover">']
    for segment in segments:
        for t, v in segment:
            tip = f"{t:g} s: {what} {fmt(v)}"
            out.append(f'<circle cx="{num(x(t))}" cy="{num(y(v))}" r="4"><title>{_e(tip)}</title></circle>')
    out.append("</g>")
    return out


def render_timeline_svg(chart: Timeline, ident: str = "timeline") -> str:
    right = _WIDTH - _RIGHT
    lanes_top = 6.0
    lanes_bottom = lanes_top + chart.lanes * (_LANE + _LANE_GAP)
    s_top = lanes_bottom + 12
    s_bottom = s_top + _SUCCESS_HEIGHT
    p_top = s_bottom + _PANEL_GAP
    p_bottom = p_top + _P95_HEIGHT
    height = round(p_bottom + 44)
    x = scale(chart.x, _LEFT, right - _LEFT)
    ys = scale(chart.success_axis, s_top, _SUCCESS_HEIGHT, flip=True)
    yp = scale(chart.p95_axis, p_top, _P95_HEIGHT, flip=True)
    out = [svg_open(_WIDTH, height, ident, "Success ratio and p95 latency over the run", chart.description)]

    out.append('<g class="phase-shading" aria-hidden="true">')
    for band in chart.phases:
        x0, x1 = x(band.start), x(band.end)
        for top, bottom in ((s_top, s_bottom), (p_top, p_bottom)):
            out.append(
                f'<rect x="{num(x0)}" y="{num(top)}" width="{num(max(x1 - x0, 1))}" '
                f'height="{num(bottom - top)}" '
                f'fill="{band.colour}" fill-opacity="0.09"/>'
            )
    out.append("</g>")

    out.append('<g class="lanes">')
    for band in chart.phases:
        x0, x1 = x(band.start), x(band.end)
        width = max(x1 - x0, 2)
        top = lanes_top + band.lane * (_LANE + _LANE_GAP)
        dashed = ' stroke-dasharray="4 3" fill-opacity="0.45"' if band.planned else ' fill-opacity="0.9"'
        label = next(
            (text for text in (band.long_label, band.short_label) if len(text) * _CHAR_WIDTH + 8 <= width),
            str(band.index),
        )
        out.append(
            f'<g class="lane"><title>{_e(band.tooltip)}</title>'
            f'<rect x="{num(x0)}" y="{num(top)}" width="{num(width)}" height="{_LANE}" rx="3" '
            f'fill="{band.colour}" stroke="{band.colour}"{dashed}/>'
            f'<text class="lane-label" x="{num(x0 + 4)}" y="{num(top + _LANE / 2)}" '
            'dominant-baseline="middle">'
            f"{_e(label)}</text></g>"
        )
    out.append("</g>")

    out += x_grid(chart.x, x, s_top, s_bottom, None)
    out += x_grid(chart.x, x, p_top, p_bottom, p_bottom + 16)
    out += y_grid(chart.success_axis, ys, _LEFT, right, lambda v: fmt_percent(v, 0))
    out += y_grid(chart.p95_axis, yp, _LEFT, right, fmt_seconds)
    for top, bottom in ((s_top, s_bottom), (p_top, p_bottom)):
        out.append(_rect("frame", _LEFT, top, right - _LEFT, bottom - top))
    out += _objective_line(
        chart.success_objective,
        ys,
        chart.success_axis,
        _LEFT,
        right,
        f"objective {fmt_percent(chart.success_objective)}",
        below=True,
    )
    out += _objective_line(
        chart.p95_objective, yp, chart.p95_axis, _LEFT, right, f"objective {fmt_seconds(chart.p95_objective)}"
    )

    for segment in chart.success:
        out.append(f'<polyline class="line-success" points="{_polyline(segment, x, ys)}"/>')
    for segment in chart.p95:
        out.append(f'<polyline class="line-p95" points="{_polyline(segment, x, yp)}"/>')

    if chart.fault_start is not None:
        px = num(x(chart.fault_start))
        out.append(f'<line class="marker" x1="{px}" y1="{num(s_top)}" x2="{px}" y2="{num(p_bottom)}"/>')
    if chart.rto is not None:
        rx = x(chart.rto.at)
        out.append(
            f'<g class="rto"><title>{_e(chart.rto.label)} after the first fault</title>'
            + _line("marker rto-line", rx, s_top, rx, p_bottom)
        )
        if chart.fault_start is not None:
            f0 = x(chart.fault_start)
            yb = s_bottom - 12
            out.append(
                f'<line class="rto-line" x1="{num(f0)}" y1="{num(yb)}" x2="{num(rx)}" y2="{num(yb)}"/>'
                f'<line class="rto-line" x1="{num(f0)}" y1="{num(yb - 4)}" x2="{num(f0)}" '
                f'y2="{num(yb + 4)}"/>'
            )
        anchor, dx = ("end", -5) if rx > right - 90 else ("start", 5)
        out.append(
            svg_text("annotation rto-label", rx + dx, s_bottom - 16, chart.rto.label, anchor=anchor) + "</g>"
        )

    out += _points(chart.success, x, ys, "success ratio", fmt_percent)
    out += _points(chart.p95, x, yp, "p95", fmt_seconds)

    mid_s, mid_p = (s_top + s_bottom) / 2, (p_top + p_bottom) / 2
    out.append(
        f'<text class="axis-title" transform="translate(16 {num(mid_s)}) rotate(-90)" text-anchor="middle">'
        "success ratio</text>"
        f'<text class="axis-title" transform="translate(16 {num(mid_p)}) rotate(-90)" text-anchor="middle">'
        "p95 latency</text>"
        + svg_text("axis-title", (_LEFT + right) / 2, p_bottom + 36, _X_TITLE, anchor="middle")
    )
    out.append("</svg>")
    return "".join(out)


def render_stack_svg(chart: Stack, ident: str) -> str:
    right = _STACK_WIDTH - _STACK_RIGHT
    top, bottom = _STACK_TOP, _STACK_TOP + _STACK_HEIGHT
    height = bottom + 40
    x = scale(chart.x, _STACK_LEFT, right - _STACK_LEFT)
    y = scale(chart.y, top, _STACK_HEIGHT, flip=True)
    out = [svg_open(_STACK_WIDTH, height, ident, chart.title, chart.description)]
    for layer in chart.layers:
        mean = "" if layer.mean is None else f", mean {fmt_percent(layer.mean, 1)}"
        out.append(f'<g class="layer"><title>{_e(layer.label)}{_e(mean)}</title>')
        for segment in layer.segments:
            out.append(
                f'<polygon points="{_area(segment, x, y)}" fill="{layer.colour}" fill-opacity="0.88"/>'
            )
        out.append("</g>")
    out += x_grid(chart.x, x, top, bottom, bottom + 16)
    out += y_grid(chart.y, y, _STACK_LEFT, right, lambda v: fmt_percent(v, 0))
    out.append(_rect("frame", _STACK_LEFT, top, right - _STACK_LEFT, _STACK_HEIGHT))
    if chart.faults is not None:
        f0, f1 = x(chart.faults[0]), x(chart.faults[1])
        tip = f"Faults in force from {chart.faults[0]:.2f} s to {chart.faults[1]:.2f} s"
        out.append(
            f'<g class="faults"><title>{_e(tip)}</title>'
            f'<line class="marker" x1="{num(f0)}" y1="18" x2="{num(f0)}" y2="{bottom}"/>'
            f'<line class="marker" x1="{num(f1)}" y1="18" x2="{num(f1)}" y2="{bottom}"/>'
            f'<line class="fault-bar" x1="{num(f0)}" y1="18" x2="{num(f1)}" y2="18"/>'
            f'<text class="annotation" x="{num((f0 + f1) / 2)}" y="13" text-anchor="middle">faults</text></g>'
        )
    out.append(svg_text("axis-title", (_STACK_LEFT + right) / 2, bottom + 34, _X_TITLE, anchor="middle"))
    out.append("</svg>")
    return "".join(out)
