"""The report's charts as PNG files, for places that cannot show HTML (a wiki page, a chat message,
a slide): `timeline.png` (success ratio and p95 latency with the fault phases and the RTO),
`traffic-region.png` and `traffic-level.png` (stacked traffic shares). Pure:
`render_charts(result) -> {file name: PNG bytes}`.

They are drawn by matplotlib's Agg canvas on figures made without pyplot, so rendering changes no
global backend or state, from the same chart data (`_chartdata`) as the HTML report's SVG."""

from __future__ import annotations

import io

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from bascule.reports._chartdata import Axis, Point, Stack, Timeline, compute_stack, compute_timeline
from bascule.reports._format import as_str, fmt_percent, fmt_seconds
from bascule.reports.model import Result

__all__ = ["render_charts"]

_DPI = 110
_FONT = "DejaVu Sans"  # shipped with matplotlib: the same PNG on every machine
_FG = "#1c2430"
_MUTED = "#5b6573"
_GRID = "#e3e6ea"
_SUCCESS = "#1565c0"
_P95 = "#7b1fa2"
_FAIL = "#c62828"
_CHAR_WIDTH_PX = 6.6  # average advance of an 8 pt DejaVu Sans glyph at _DPI, to fit lane labels
_PLOT_LEFT, _PLOT_RIGHT = 0.08, 0.98


_LABEL_MAX = 90


def _plain(text: str) -> str:
    # Document strings are never mathtext: a "$" in a phase name must print as a dollar sign.
    # A PNG cannot wrap or scroll, so an overlong name is cut rather than drawn off the canvas.
    if len(text) > _LABEL_MAX:
        text = text[: _LABEL_MAX - 1] + "…"
    return text.replace("$", r"\$")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # The figure draws on its own Agg canvas: no pyplot, no global backend switch.
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", metadata={"Software": "bascule"})
    return buffer.getvalue()


def _style(ax: Axes) -> None:
    ax.set_facecolor("white")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(_GRID)
    ax.tick_params(colors=_MUTED, labelsize=8, length=0)
    ax.grid(True, color=_GRID, linewidth=0.8)
    ax.set_axisbelow(True)


def _y_ticks(ax: Axes, ticks: tuple[float, ...], labels: list[str]) -> None:
    ax.yaxis.set_major_locator(FixedLocator(list(ticks)))
    ax.set_yticks(list(ticks), labels)


def _curve(
    ax: Axes,
    segments: tuple[tuple[Point, ...], ...],
    colour: str,
    linewidth: float,
    axis: Axis,
    labels: list[str],
    ylabel: str,
) -> None:
    """A panel's curve, broken where a window had nothing to measure, on its own y axis."""
    for segment in segments:
        ax.plot([p[0] for p in segment], [p[1] for p in segment], color=colour, linewidth=linewidth)
    ax.set_ylim(axis.lo, axis.hi)
    _y_ticks(ax, axis.ticks, labels)
    ax.set_ylabel(ylabel, color=_MUTED, fontsize=9, family=_FONT)


def _objective(ax: Axes, x: float, y: float, label: str, va: str) -> None:
    """A panel's objective: a dashed line across it, labelled at its right end (above or below)."""
    ax.axhline(y, color=_MUTED, linewidth=1, linestyle=(0, (6, 4)))
    ax.text(x, y, f"objective {label} ", ha="right", va=va, fontsize=8, color=_FG, family=_FONT)


def _context(result: Result) -> str:
    scenario = as_str(result.run.scenario.id)
    design = as_str(result.run.design.id)
    return _plain(f"{scenario} on {design}" if scenario and design else scenario or design)


def _draw_timeline(chart: Timeline, context: str) -> bytes:
    lanes = max(chart.lanes, 1)
    figure = Figure(figsize=(10, 5.4 + 0.22 * lanes), dpi=_DPI, facecolor="white")
    grid = figure.add_gridspec(
        3, 1, height_ratios=[0.32 * lanes, 3, 2], hspace=0.12, left=_PLOT_LEFT, right=_PLOT_RIGHT, top=0.9
    )
    lane_ax = figure.add_subplot(grid[0])
    success_ax = figure.add_subplot(grid[1], sharex=lane_ax)
    p95_ax = figure.add_subplot(grid[2], sharex=lane_ax)
    figure.suptitle(
        "Success ratio and p95 latency", x=_PLOT_LEFT, ha="left", fontsize=12, color=_FG, family=_FONT
    )
    figure.text(_PLOT_LEFT, 0.925, context, fontsize=8.5, color=_MUTED, family=_FONT)

    span = chart.x.hi - chart.x.lo or 1.0
    px_per_s = 10 * _DPI * (_PLOT_RIGHT - _PLOT_LEFT) / span
    lane_ax.set_ylim(lanes, 0)
    lane_ax.set_xlim(chart.x.lo, chart.x.hi)
    lane_ax.axis("off")
    for band in chart.phases:
        width = max(band.end - band.start, 0.0)
        lane_ax.barh(
            band.lane + 0.5,
            width,
            left=band.start,
            height=0.82,
            color=band.colour,
            alpha=0.45 if band.planned else 0.9,
            edgecolor=band.colour,
            linestyle="--" if band.planned else "-",
        )
        label = next(
            (
                t
                for t in (band.long_label, band.short_label)
                if len(t) * _CHAR_WIDTH_PX + 8 <= width * px_per_s
            ),
            str(band.index),
        )
        lane_ax.text(
            band.start + 4 / px_per_s,
            band.lane + 0.5,
            _plain(label),
            va="center",
            ha="left",
            fontsize=8,
            color="white",
            fontweight="bold",
            family=_FONT,
            clip_on=True,
        )

    for ax in (success_ax, p95_ax):
        _style(ax)
        for band in chart.phases:
            ax.axvspan(band.start, band.end, color=band.colour, alpha=0.08, linewidth=0)
        if chart.fault_start is not None:
            ax.axvline(chart.fault_start, color=_FG, alpha=0.5, linewidth=0.9, linestyle=":")
        if chart.rto is not None:
            ax.axvline(chart.rto.at, color=_FAIL, linewidth=1.3, linestyle="--")

    success_labels = [fmt_percent(v, 0) for v in chart.success_axis.ticks]
    _curve(success_ax, chart.success, _SUCCESS, 1.8, chart.success_axis, success_labels, "success ratio")
    success_ax.tick_params(labelbottom=False)
    if chart.success_objective is not None and chart.success_axis.lo <= chart.success_objective <= 1:
        # Below the line: the success ratio sits just above it most of the time.
        objective = chart.success_objective
        _objective(success_ax, chart.x.hi, objective, fmt_percent(objective), "top")
    if chart.rto is not None:
        bottom = chart.success_axis.lo + 0.06 * (chart.success_axis.hi - chart.success_axis.lo)
        if chart.fault_start is not None:
            success_ax.plot([chart.fault_start, chart.rto.at], [bottom, bottom], color=_FAIL, linewidth=1.3)
        success_ax.text(
            chart.rto.at + 4 / px_per_s,
            bottom,
            chart.rto.label,
            color=_FAIL,
            fontsize=8.5,
            fontweight="bold",
            va="bottom",
            family=_FONT,
        )

    p95_labels = [fmt_seconds(v) for v in chart.p95_axis.ticks]
    _curve(p95_ax, chart.p95, _P95, 1.6, chart.p95_axis, p95_labels, "p95 latency")
    if chart.p95_objective is not None and chart.p95_objective <= chart.p95_axis.hi:
        _objective(p95_ax, chart.x.hi, chart.p95_objective, fmt_seconds(chart.p95_objective), "bottom")
    p95_ax.xaxis.set_major_locator(FixedLocator(list(chart.x.ticks)))
    p95_ax.xaxis.set_minor_locator(NullLocator())
    p95_ax.set_xlim(chart.x.lo, chart.x.hi)
    p95_ax.set_xlabel("run time, s since the plan started", color=_MUTED, fontsize=9, family=_FONT)
    return _png(figure)


def _draw_stack(chart: Stack, context: str) -> bytes:
    figure = Figure(figsize=(8, 3.6), dpi=_DPI, facecolor="white")
    ax = figure.add_axes((0.08, 0.26, 0.9, 0.55))
    _style(ax)
    figure.text(0.08, 0.93, chart.title, fontsize=12, color=_FG, family=_FONT)
    figure.text(0.08, 0.885, context, fontsize=8.5, color=_MUTED, family=_FONT)
    handles = []
    labels = []
    for layer in chart.layers:
        handle = None
        for segment in layer.segments:
            handle = ax.fill_between(
                [p[0] for p in segment],
                [p[1] for p in segment],
                [p[2] for p in segment],
                color=layer.colour,
                alpha=0.88,
                linewidth=0,
            )
        if handle is not None:
            handles.append(handle)
            mean = "" if layer.mean is None else f" · mean {layer.mean * 100:.0f} %"
            labels.append(_plain(layer.label + mean))
    if chart.faults is not None:
        for at in chart.faults:
            ax.axvline(at, color=_FG, alpha=0.55, linewidth=0.9, linestyle=":")
        ax.annotate(
            "",
            xy=(chart.faults[1], 1.03),
            xytext=(chart.faults[0], 1.03),
            xycoords=("data", "axes fraction"),
            arrowprops={"arrowstyle": "-", "color": _FG, "alpha": 0.5, "linewidth": 2.5},
        )
        ax.text(
            (chart.faults[0] + chart.faults[1]) / 2,
            1.05,
            "faults",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=8,
            color=_FG,
            family=_FONT,
        )
    ax.set_xlim(chart.x.lo, chart.x.hi)
    ax.set_ylim(chart.y.lo, chart.y.hi)
    ax.xaxis.set_major_locator(FixedLocator(list(chart.x.ticks)))
    _y_ticks(ax, chart.y.ticks, [fmt_percent(v, 0) for v in chart.y.ticks])
    ax.set_xlabel("run time, s since the plan started", color=_MUTED, fontsize=9, family=_FONT)
    if handles:
        # Top layer first, as the eye reads the stack.
        ax.legend(
            handles[::-1],
            labels[::-1],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.22),
            ncol=min(len(handles), 3),
            frameon=False,
            fontsize=8.5,
        )
    return _png(figure)


def render_charts(result: Result) -> dict[str, bytes]:
    """`timeline.png`, `traffic-region.png` and `traffic-level.png` for one `bascule.result/1` document."""
    context = _context(result)
    return {
        "timeline.png": _draw_timeline(compute_timeline(result), context),
        "traffic-region.png": _draw_stack(compute_stack(result, "region"), context),
        "traffic-level.png": _draw_stack(compute_stack(result, "level"), context),
    }
