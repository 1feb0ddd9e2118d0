"""The live view of a run, for game days: a pure rendering of a `LiveState` snapshot (rich), and
the plain line-per-event form for ``--quiet`` and CI logs."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bascule.journal import LatencySketch, Window
from bascule.model.durations import format_duration

__all__ = ["LiveState", "render_live"]


@dataclass
class LiveState:
    scenario: str
    design: str
    run_length: float
    scale: float
    stage: str = "starting"
    elapsed: float = 0.0
    """Seconds since the plan's start (negative during warm-up)."""
    phase: str = ""
    active_faults: list[str] = field(default_factory=list)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=6))
    recent: deque[Window] = field(default_factory=lambda: deque(maxlen=5))
    violations: int = 0

    def note(self, event: str) -> None:
        self.events.append(f"{self.elapsed:7.2f}s  {event}")


def _recent_figures(
    windows: list[Window],
) -> tuple[float | None, float | None, dict[str, int], dict[str, int]]:
    requests = sum(w.requests for w in windows)
    ok = sum(w.ok for w in windows)
    sketch = LatencySketch()
    regions: dict[str, int] = {}
    levels: dict[str, int] = {}
    for w in windows:
        sketch.merge(w.latency)
        for per_class in w.regions.values():
            for region, n in per_class.items():
                regions[region] = regions.get(region, 0) + n
        for level, n in w.levels.items():
            levels[level] = levels.get(level, 0) + n
    ratio = ok / requests if requests else None
    return ratio, sketch.quantile(0.95), regions, levels


def _share(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "-"
    return "  ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def render_live(state: LiveState) -> RenderableType:
    done = max(0.0, min(state.elapsed, state.run_length))
    real = done / state.scale if state.scale > 0 else 0.0
    head = Text.assemble(
        ("bascule ", "bold"),
        (state.scenario, "bold magenta"),
        " on ",
        (state.design, "bold green"),
        f" — {state.stage}",
    )
    bar = ProgressBar(total=state.run_length or 1.0, completed=done, width=40)
    if state.elapsed >= state.run_length > 0:  # settling, the closing hypothesis, read-back
        where = f"plan done ({state.run_length:.0f}s)   {state.stage}"
    else:
        where = f"run {state.elapsed:6.1f}s / {state.run_length:.0f}s"
    phase = f"   phase: {state.phase}" if state.phase else ""
    clock = Text(f"{where}   incident time +{format_duration(real)}{phase}")
    ratio, p95, regions, levels = _recent_figures(list(state.recent))
    figures = Table.grid(padding=(0, 2))
    figures.add_row(
        "success (last 5 s)",
        Text("-" if ratio is None else f"{ratio:.1%}", style="green" if (ratio or 0) >= 0.99 else "red"),
        "p95",
        "-" if p95 is None else f"{p95 * 1000:.0f} ms",
        "violations",
        Text(str(state.violations), style="red" if state.violations else "green"),
    )
    figures.add_row("traffic by region", _share(regions), "", "", "", "")
    figures.add_row("by sovereignty", _share(levels), "", "", "", "")
    faults = Text("active faults: " + (", ".join(state.active_faults) or "none"), style="yellow")
    events = Text("\n".join(state.events), style="dim")
    return Group(head, bar, clock, figures, faults, events)
