"""A repeat compared with a baseline — a previous suite's or repeat's output, e.g. from the main
branch: each figure's interval now against its interval then, and a regression flagged only
beyond noise, when the two intervals do not overlap and now is on the worse side. Pure.

A baseline of one run (a suite run without --repeat) has no interval: its single value stands for
it, so only the interval of now decides. Disjoint 95 % intervals are a conservative test — a
difference of means that is real but smaller than both runs' noise is not flagged — which is what
a CI gate needs: a rerun of the same design must not read as a regression.
"""

from __future__ import annotations

from bascule.verdicts.designdiff import design_differences
from bascule.verdicts.model import Better, DimensionVerdict, FigureChange, RepeatSummary
from bascule.verdicts.render import show_value

__all__ = ["compare_with_baseline", "design_changes", "with_baseline"]


def _bounds(d: DimensionVerdict) -> tuple[float, float] | None:
    if d.interval is not None and d.interval.of == "mean":
        return d.interval.low, d.interval.high
    if d.minimum is not None and d.maximum is not None and d.measured_runs == 1:
        return d.minimum, d.maximum
    return None


def _change(now: DimensionVerdict, then: DimensionVerdict) -> FigureChange | None:
    a, b = _bounds(then), _bounds(now)
    if a is None or b is None:
        return None
    higher = now.better is Better.HIGHER
    worse = (b[1] < a[0]) if higher else (b[0] > a[1])
    better = (b[0] > a[1]) if higher else (b[1] < a[0])

    def span(bounds: tuple[float, float]) -> str:
        return f"[{show_value(bounds[0], now.unit)}, {show_value(bounds[1], now.unit)}]"

    if worse:
        reason = f"regressed beyond noise: {span(b)} now, {span(a)} in the baseline"
    elif better:
        reason = f"improved beyond noise: {span(b)} now, {span(a)} in the baseline"
    else:
        reason = f"within noise: {span(b)} now overlaps {span(a)} in the baseline"
    return FigureChange(
        name=now.name,
        unit=now.unit,
        better=now.better,
        baseline_low=a[0],
        baseline_high=a[1],
        baseline_runs=then.measured_runs,
        now_low=b[0],
        now_high=b[1],
        regressed=worse,
        improved=better,
        reason=reason,
    )


def compare_with_baseline(now: RepeatSummary, baseline: RepeatSummary) -> tuple[FigureChange, ...]:
    """The change of every dimension measured in both, in the order of `now`'s dimensions."""
    changes = []
    for dimension in now.dimensions:
        then = baseline.dimension(dimension.name)
        change = None if then is None else _change(dimension, then)
        if change is not None:
            changes.append(change)
    return tuple(changes)


def with_baseline(summary: RepeatSummary, baseline: RepeatSummary, source: str) -> RepeatSummary:
    """`summary` with its comparison to `baseline` (read from `source`); a regression of a
    dimension that decides the verdict turns exit 0 into 1."""
    changes = compare_with_baseline(summary, baseline)
    deciding = {d.name for d in summary.dimensions if d.counts}
    regressed = [c.name for c in changes if c.regressed and c.name in deciding]
    design = design_changes(summary, baseline)
    update: dict[str, object] = {"baseline": changes, "baseline_source": source, "design_changes": design}
    if design is None:
        update["notes"] = (
            *summary.notes,
            f"The baseline {source} or this run recorded no design file: the design's differences "
            "cannot be listed.",
        )
    if regressed:
        reason = f"{summary.reason}; regressed against the baseline: {', '.join(regressed)}"
        if design:
            reason += f" (the design changed: {'; '.join(design)})"
        elif design == ():
            reason += " (same design file as the baseline)"
        update["reason"] = reason
        update["exit_code"] = max(summary.exit_code, 1) if summary.exit_code in (0, 1) else summary.exit_code
    return summary.model_copy(update=update)


def design_changes(summary: RepeatSummary, baseline: RepeatSummary) -> tuple[str, ...] | None:
    """The fields of the design file that differ from the baseline's; ``()`` for the same file
    (same SHA-256), None when either recorded none."""
    now, then = summary.design_file, baseline.design_file
    if now is None or then is None:
        return None
    if now.sha256 == then.sha256:
        return ()
    return design_differences(then.text, now.text)
