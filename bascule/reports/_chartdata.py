"""The charts of a run, as data: what to draw and where, computed from a `bascule.result/1`
document independently of how it is drawn. The HTML report draws these as inline SVG and
`render_charts` as PNG through matplotlib, so both show the same lines, bands, lanes, axes and
colours. Null points break a line (a window with no request is a gap, not a zero)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bascule.reports._format import as_float, fmt_percent, fmt_seconds
from bascule.reports.model import Phase, Result

__all__ = [
    "LEVEL_COLOURS",
    "LEVEL_ORDER",
    "Axis",
    "Layer",
    "Marker",
    "PhaseBand",
    "Point",
    "Stack",
    "StackPoint",
    "Timeline",
    "compute_stack",
    "compute_timeline",
    "nice_ticks",
]

LEVEL_ORDER = ("sovereign", "trusted", "exposed", "foreign")
LEVEL_COLOURS = {"sovereign": "#2e9e4f", "trusted": "#2f6fd0", "exposed": "#f08a24", "foreign": "#d6342c"}
_UNKNOWN_COLOUR = "#8c8c8c"
# Several regions at one level share its hue, from dark to light, so both traffic charts read alike.
_LEVEL_SHADES = {
    "sovereign": ("#2e9e4f", "#85cf97", "#1b6b33", "#b9e4c3"),
    "trusted": ("#2f6fd0", "#8fb3ec", "#1d4a8f", "#c3d6f6"),
    "exposed": ("#f08a24", "#f7bd80", "#b3620f", "#fbdcb9"),
    "foreign": ("#d6342c", "#ec8b85", "#952019", "#f5c1bd"),
}
_UNKNOWN_SHADES = ("#8c8c8c", "#bdbdbd", "#5f5f5f", "#dcdcdc")
# Phase colours by fault kind (the two STS phases share one), from a palette clear of the level hues.
_PHASE_PALETTE = ("#7b4fb0", "#b8860b", "#0f8b8d", "#c2185b", "#5d6d7e", "#8d6e63", "#3949ab", "#689f38")
_STACK_TOP_TOLERANCE = 1.02
_LONE_HALF_WIDTH = 0.4


@dataclass(frozen=True)
class Axis:
    lo: float
    hi: float
    ticks: tuple[float, ...]


Point = tuple[float, float]
# (t, lower edge, upper edge) of one layer of a stacked area
StackPoint = tuple[float, float, float]


@dataclass(frozen=True)
class PhaseBand:
    index: int
    name: str
    kind: str
    target: str
    start: float
    end: float
    planned: bool  # True when the fault was never seen applied/reverted and the plan's times are drawn
    lane: int
    colour: str

    @property
    def short_label(self) -> str:
        return f"{self.index} {self.kind}".strip()

    @property
    def long_label(self) -> str:
        return f"{self.index} · {self.name}" if self.name else self.short_label

    @property
    def tooltip(self) -> str:
        where = f" on {self.target}" if self.target else ""
        timing = "planned" if self.planned else "applied"
        span = f"{self.start:.2f} → {self.end:.2f} s"
        return f"Phase {self.index}: {self.name} ({self.kind}{where}), {timing} {span}"


@dataclass(frozen=True)
class Marker:
    at: float
    label: str


@dataclass(frozen=True)
class Timeline:
    x: Axis
    success: tuple[tuple[Point, ...], ...]
    success_axis: Axis
    success_objective: float | None
    p95: tuple[tuple[Point, ...], ...]
    p95_axis: Axis
    p95_objective: float | None
    phases: tuple[PhaseBand, ...]
    lanes: int
    fault_start: float | None
    rto: Marker | None
    description: str


@dataclass(frozen=True)
class Layer:
    key: str
    label: str
    colour: str
    segments: tuple[tuple[StackPoint, ...], ...]
    mean: float | None  # mean share over the windows that had traffic


@dataclass(frozen=True)
class Stack:
    title: str
    x: Axis
    y: Axis
    layers: tuple[Layer, ...]
    faults: tuple[float, float] | None  # first apply → last revert
    description: str


def nice_ticks(lo: float, hi: float, count: int = 6) -> Axis:
    """An axis from lo to hi widened to round ticks (steps of 1, 2 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step + 1e-9) * step
    last = math.ceil(hi / step - 1e-9) * step
    n = round((last - first) / step)
    ticks = tuple(round(first + i * step, 10) for i in range(n + 1))
    return Axis(ticks[0], ticks[-1], ticks)


def _floats(values: Sequence[float | None]) -> list[float | None]:
    return [as_float(v) for v in values]


def _segments(t: Sequence[float | None], y: Sequence[float | None]) -> tuple[tuple[Point, ...], ...]:
    segments: list[tuple[Point, ...]] = []
    current: list[Point] = []
    for x, v in zip(t, y, strict=False):
        if x is None or v is None:
            if current:
                segments.append(tuple(current))
            current = []
        else:
            current.append((x, v))
    if current:
        segments.append(tuple(current))
    return tuple(_widen(s) for s in segments)


def _widen(segment: tuple[Point, ...]) -> tuple[Point, ...]:
    # A lone point between gaps draws nothing as a line or an area: give it its window's width.
    if len(segment) != 1:
        return segment
    ((x, y),) = segment
    return ((x - _LONE_HALF_WIDTH, y), (x + _LONE_HALF_WIDTH, y))


def _widen_stack(segment: tuple[StackPoint, ...]) -> tuple[StackPoint, ...]:
    if len(segment) != 1:
        return segment
    ((x, lower, upper),) = segment
    return ((x - _LONE_HALF_WIDTH, lower, upper), (x + _LONE_HALF_WIDTH, lower, upper))


def _phase_span(phase: Phase) -> tuple[float, float, bool] | None:
    actual = as_float(phase.actual_start), as_float(phase.actual_end)
    planned = as_float(phase.planned_start), as_float(phase.planned_end)
    start = actual[0] if actual[0] is not None else planned[0]
    end = actual[1] if actual[1] is not None else planned[1]
    if start is None or end is None:
        return None
    return start, max(end, start), actual[0] is None or actual[1] is None


def _phases(result: Result) -> tuple[tuple[PhaseBand, ...], int]:
    colours: dict[str, str] = {}
    spans = []
    for position, phase in enumerate(result.phases):
        span = _phase_span(phase)
        if span is None:
            continue
        kind = phase.kind
        if kind not in colours:
            colours[kind] = _PHASE_PALETTE[len(colours) % len(_PHASE_PALETTE)]
        spans.append((span, phase, kind, position if phase.index is None else phase.index))
    spans.sort(key=lambda s: (s[0][0], s[3]))
    lane_ends: list[float] = []
    bands = []
    for (start, end, planned), phase, kind, index in spans:
        # Greedy interval colouring: overlapping phases get their own lane, the rest reuse one.
        lane = next((i for i, last in enumerate(lane_ends) if last <= start), len(lane_ends))
        if lane == len(lane_ends):
            lane_ends.append(end)
        else:
            lane_ends[lane] = end
        bands.append(
            PhaseBand(
                index=index,
                name=phase.name,
                kind=kind,
                target=phase.target,
                start=start,
                end=end,
                planned=planned,
                lane=lane,
                colour=colours[kind],
            )
        )
    return tuple(bands), len(lane_ends)


def _fault_window(result: Result, phases: Sequence[PhaseBand]) -> tuple[float, float] | None:
    window = result.figures.impact_window
    start = as_float(window[0]) if window else None
    if start is None and phases:
        start = min(p.start for p in phases)
    if start is None:
        return None
    end = max((p.end for p in phases), default=start)
    return start, max(end, start)


def _x_axis(t: Sequence[float | None], phases: Sequence[PhaseBand]) -> Axis:
    known = [x for x in t if x is not None]
    lo = min([*known, *(p.start for p in phases)], default=0.0)
    hi = max([*known, *(p.end for p in phases)], default=1.0)
    axis = nice_ticks(lo, hi, 9)
    # Ticks outside the data would leave empty margins; keep the range tight and the ticks inside.
    return Axis(lo, hi, tuple(x for x in axis.ticks if lo - 1e-9 <= x <= hi + 1e-9))


def _objective(result: Result, name: str) -> float | None:
    dim = result.score.dimension(name)
    return None if dim is None else as_float(dim.objective)


def _success_axis(values: Sequence[float], objective: float | None) -> Axis:
    low = min([*values, *([objective] if objective is not None else [])], default=0.0)
    # Zoom only so far that a dip never looks like an outage: 0, 50, 80 or 90 % at the bottom.
    lo = next((b for b in (0.9, 0.8, 0.5) if low >= b + 0.01), 0.0)
    step = {0.9: 0.02, 0.8: 0.05, 0.5: 0.1}.get(lo, 0.2)
    n = round((1.0 - lo) / step)
    # Headroom above 100 % so that a line at 100 % is not drawn on the frame.
    return Axis(lo, 1.0 + 0.025 * (1.0 - lo), tuple(round(lo + i * step, 10) for i in range(n + 1)))


def compute_timeline(result: Result) -> Timeline:
    series = result.series
    t = _floats(series.t)
    success = _floats(series.success_ratio)
    p95 = _floats(series.p95)
    phases, lanes = _phases(result)
    x = _x_axis(t, phases)
    success_objective = _objective(result, "availability")
    p95_objective = _objective(result, "latency")
    known_p95 = [v for v in p95 if v is not None]
    p95_top = max([*known_p95, *([p95_objective] if p95_objective else [])], default=1.0)
    p95_axis = nice_ticks(0.0, p95_top * 1.08, 5)
    known_success = [v for v in success if v is not None]
    window = _fault_window(result, phases)
    figures = result.figures
    rto = as_float(figures.rto)
    rto_marker = None
    if window is not None and rto is not None:
        rto_marker = Marker(window[0] + rto, f"RTO {fmt_seconds(rto)}")
    parts = []
    if known_success:
        worst = min(range(len(success)), key=lambda i: 2.0 if success[i] is None else success[i] or 0.0)
        parts.append(f"Success ratio lowest at {fmt_percent(success[worst])} at {t[worst] or 0.0:.0f} s")
    if known_p95:
        peak = max(range(len(p95)), key=lambda i: -1.0 if p95[i] is None else p95[i] or 0.0)
        parts.append(f"p95 latency peaked at {fmt_seconds(p95[peak])} at {t[peak] or 0.0:.0f} s")
    if rto_marker is not None:
        parts.append(f"recovery (RTO) {fmt_seconds(rto)} after the first fault")
    elif figures.recovered is False:
        parts.append("the success ratio never recovered")
    parts.append(f"{len(phases)} fault phases shaded")
    return Timeline(
        x=x,
        success=_segments(t, success),
        success_axis=_success_axis(known_success, success_objective),
        success_objective=success_objective,
        p95=_segments(t, p95),
        p95_axis=p95_axis,
        p95_objective=p95_objective,
        phases=phases,
        lanes=lanes,
        fault_start=None if window is None else window[0],
        rto=rto_marker,
        description="; ".join(parts) + ".",
    )


def _region_levels(result: Result) -> dict[str, str]:
    return {region.id: region.sovereignty for region in result.run.design.regions}


def _layer_order(by: str, keys: Sequence[str], result: Result) -> list[tuple[str, str, str]]:
    """(key, label, colour) bottom to top: levels from sovereign up, regions in the design's order."""
    if by == "level":
        ordered = [k for k in LEVEL_ORDER if k in keys] + sorted(k for k in keys if k not in LEVEL_ORDER)
        return [(k, k, LEVEL_COLOURS.get(k, _UNKNOWN_COLOUR)) for k in ordered]
    levels = _region_levels(result)
    ordered = [k for k in levels if k in keys] + sorted(k for k in keys if k not in levels)
    used: dict[str, int] = {}
    layers = []
    for key in ordered:
        level = levels.get(key, "")
        shades = _LEVEL_SHADES.get(level, _UNKNOWN_SHADES)
        n = used.get(level, 0)
        used[level] = n + 1
        label = f"{key} ({level})" if level else key
        layers.append((key, label, shades[n % len(shades)]))
    return layers


def compute_stack(result: Result, by: str) -> Stack:
    """Traffic share over time, stacked, by `region` or by sovereignty `level`."""
    series = result.series
    t = _floats(series.t)
    shares = series.share_level if by == "level" else series.share_region
    keys = list(shares)
    values = {k: _floats(shares[k]) for k in keys}
    order = _layer_order(by, keys, result)
    phases, _ = _phases(result)
    # A window where no layer has a value had no successful request: a gap in every layer.
    valid = [
        t[i] is not None and any(i < len(values[k]) and values[k][i] is not None for k in keys)
        for i in range(len(t))
    ]
    base = [0.0] * len(t)
    layers = []
    for key, label, colour in order:
        column = values[key]
        edges: list[StackPoint | None] = []
        total = 0.0
        count = 0
        for i, x in enumerate(t):
            if x is None or not valid[i]:
                edges.append(None)
                continue
            v = column[i] if i < len(column) else None
            share = max(v or 0.0, 0.0)
            edges.append((x, base[i], base[i] + share))
            base[i] += share
            total += share
            count += 1
        segments: list[tuple[StackPoint, ...]] = []
        current: list[StackPoint] = []
        for edge in edges:
            if edge is None:
                if current:
                    segments.append(tuple(current))
                current = []
            else:
                current.append(edge)
        if current:
            segments.append(tuple(current))
        layers.append(
            Layer(
                key, label, colour, tuple(_widen_stack(s) for s in segments), total / count if count else None
            )
        )
    top = max(base, default=1.0)
    y = Axis(0.0, 1.0, (0.0, 0.25, 0.5, 0.75, 1.0))
    if top > _STACK_TOP_TOLERANCE:
        y = nice_ticks(0.0, top, 5)
    what = "sovereignty level" if by == "level" else "region"
    means = ", ".join(
        f"{layer.label} {fmt_percent(layer.mean, 0)}" for layer in layers if layer.mean is not None
    )
    description = f"Share of successful requests by {what} over time, stacked" + (
        f"; mean share: {means}." if means else "; no traffic was recorded."
    )
    return Stack(
        title=f"Traffic by {what}",
        x=_x_axis(t, phases),
        y=y,
        layers=tuple(layers),
        faults=_fault_window(result, phases),
        description=description,
    )
