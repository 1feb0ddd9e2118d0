"""What summary.md, report.html and ``bascule compare`` show of a repeated item (`Result.repeat`):
its verdict over the runs and, per dimension, the verdict, the mean and the 95 % interval, as text.
Shared by the renderers so that they say the same thing. Pure.

A dimension no run measured is ``unmeasured`` — never shown as a pass, whatever its per-run
``passed`` flags say."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bascule.reports._format import DASH, fmt_number, fmt_value
from bascule.reports.model import RepeatContext, RepeatDimension

__all__ = ["MARKS", "RepeatRow", "RepeatView", "compute_repeat_view", "fmt_interval", "verdict_text"]

MARKS = {"pass": "✅", "fail": "❌", "inconclusive": "❔", "unmeasured": "⚪"}


@dataclass(frozen=True)
class RepeatRow:
    name: str
    verdict: str
    """``pass``, ``fail``, ``inconclusive`` or ``unmeasured``."""
    mean: str
    interval: str
    objective: str
    runs: str
    """``3✓ 2✗`` (and ``1—`` for runs that did not measure it)."""
    flips: str
    reason: str
    counts: bool


@dataclass(frozen=True)
class RepeatView:
    title: str
    """``inconclusive over 5 runs (flaky) · this is run 2``."""
    reason: str
    mean_score: str
    rows: tuple[RepeatRow, ...]
    notes: tuple[str, ...]


def verdict_text(context: RepeatContext) -> str:
    """``inconclusive ×5, flaky``: the item's verdict in a few words."""
    return f"{context.verdict} ×{context.judged}" + (", flaky" if context.flaky else "")


def _value(value: float | None, unit: str) -> str:
    if value is not None and math.isinf(value):
        return "never" if value > 0 else "−∞"
    return fmt_value(value, unit)


def fmt_interval(d: RepeatDimension) -> str:
    """``[97.96 %, 98.60 %]``; a margin's interval is in the dimension's unit, marked as such."""
    if d.low is None or d.high is None:
        return DASH
    text = f"[{_value(d.low, d.unit)}, {_value(d.high, d.unit)}]"
    return text + " (margin to each run's objective)" if d.of == "margin" else text


def _row(d: RepeatDimension, judged: int) -> RepeatRow:
    unmeasured = judged - d.passed_runs - d.failed_runs
    runs = f"{d.passed_runs}✓ {d.failed_runs}✗" + (f" {unmeasured}—" if unmeasured > 0 else "")
    return RepeatRow(
        name=d.name,
        verdict=d.verdict if d.measured_runs else "unmeasured",
        mean=_value(d.mean, d.unit),
        interval=fmt_interval(d),
        objective=_value(d.objective, d.unit),
        runs=runs,
        flips=d.flips or DASH,
        reason=d.reason,
        counts=d.counts,
    )


def compute_repeat_view(context: RepeatContext | None) -> RepeatView | None:
    if context is None:
        return None
    title = f"{context.verdict} over {context.judged} of {context.repeats} runs"
    if context.flaky:
        title += " (flaky)"
    if context.run is not None:
        title += f" · this is run {context.run}"
    score = DASH if context.mean_score is None else fmt_number(context.mean_score, 1)
    return RepeatView(
        title=title,
        reason=context.reason,
        mean_score=score,
        rows=tuple(_row(d, context.judged) for d in context.dimensions),
        notes=context.notes,
    )
