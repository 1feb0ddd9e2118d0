"""A repeat compared with a baseline — a previous suite's or repeat's output, e.g. from the main
branch: each figure's interval now against its interval then, and a regression flagged only
beyond noise, when the two intervals do not overlap and now is on the worse side. Pure.

Disjoint 95 % intervals are a conservative test — a difference of means that is real but smaller
than both sides' noise is not flagged — which is what a CI gate needs: a rerun of the same design
must not read as a regression. It is conservative only when the intervals really are 95 %
intervals, and the verdicts' bootstrap interval never leaves the runs' range: with 2 runs it is at
most [min, max], which holds the mean half the time, and two reruns of one design would read as a
change about one time in three. So each side's interval here is the wider of that one and Student's t
interval of the mean, mean ± t(0.975; n − 1) · s / √n (12.7 · s / √2 with 2 runs) — below the
CALIBRATED_FROM runs from which the calibration test finds the bootstrap's interval true to its
95 %: with as many, the bootstrap's decides alone, as it always has.

A side with no spread of its own — one run (a suite without --repeat), or runs that all measured
the same value — tells nothing of the noise. If nothing changed, both sides share one noise, so
it is given the other side's: its value ± t(0.975; n′ − 1) · s′ / √n, n′ and s′ the other side's.
When neither side has a spread, a difference cannot be weighed against anything: it is "too few
runs to tell", neither regressed nor improved, and a note says so.

A ratio of counts (availability, correctness) has a spread of at least one count, 1/N for N
requests: runs a failure apart are no closer than that, whatever their ratios say.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from bascule.verdicts.designdiff import design_differences
from bascule.verdicts.judge import CALIBRATED_FROM
from bascule.verdicts.model import Better, DimensionVerdict, FigureChange, RepeatSummary
from bascule.verdicts.render import show_value
from bascule.verdicts.stats import t_half_width

__all__ = ["compare_with_baseline", "design_changes", "with_baseline"]

# What a figure can be: a t interval is cut there (every dimension's figure is ≥ 0).
_DOMAIN = {"ratio": (0.0, 1.0), "points": (0.0, 100.0)}


@dataclass(frozen=True)
class _Side:
    """One side as compared: its interval, runs and mean, and the spread its runs showed — `flat`
    when they showed none (one run, or every run the same value)."""

    low: float
    high: float
    runs: int
    mean: float
    stdev: float | None = None
    """The spread it can lend a flat side: None when flat, or when a run never recovered."""
    flat: bool = False
    floor: float = 0.0
    """The least spread its figure can have: one count, for a ratio of counts."""

    def widened(self, half: float, unit: str) -> _Side:
        least, most = _DOMAIN.get(unit, (0.0, math.inf))
        low = min(self.low, max(least, self.mean - half))
        return replace(self, low=low, high=max(self.high, min(most, self.mean + half)))

    def words(self) -> str:
        return "1 run" if self.runs == 1 else f"{self.runs} identical runs"


def _count_floor(d: DimensionVerdict) -> float:
    """The least spread of a ratio of counts: one count in the runs' requests (1/N). Runs that
    each had a request fail among a few thousand measure ratios a hair apart, as their counts
    differ; that is no measure of their noise, and runs that all had none would otherwise read as
    changed. 0 for a figure that is no ratio of counts, or runs that did not record their counts."""
    sizes = [v.samples or 0 for v in d.values if v.measured is not None]
    if d.unit != "ratio" or not sizes or 0 in sizes:
        return 0.0
    return statistics.fmean(1.0 / n for n in sizes)


def _side(d: DimensionVerdict, confidence: float) -> _Side | None:
    if d.mean is None or d.minimum is None or d.maximum is None:
        return None
    floor = _count_floor(d)
    if d.measured_runs == 1:
        return _Side(d.minimum, d.maximum, 1, d.mean, flat=True, floor=floor)
    if d.interval is None or d.interval.of != "mean":
        return None
    side = _Side(d.interval.low, d.interval.high, d.measured_runs, d.mean, floor=floor)
    if d.minimum == d.maximum:
        return replace(side, flat=True)
    if not math.isfinite(d.mean) or not d.stdev:
        return side  # a run that never recovered: the bootstrap's interval reaches `never`
    side = replace(side, stdev=max(d.stdev, floor))
    if side.runs >= CALIBRATED_FROM:
        return side  # as many runs as the calibration test shows the bootstrap's interval holds for
    return side.widened(
        t_half_width(side.stdev or 0.0, side.runs, df=side.runs - 1, confidence=confidence), d.unit
    )


def _lend(flat: _Side, other: _Side, unit: str, confidence: float) -> _Side:
    if not flat.flat or other.flat or other.stdev is None:
        return flat
    stdev = max(other.stdev, flat.floor)
    return flat.widened(t_half_width(stdev, flat.runs, df=other.runs - 1, confidence=confidence), unit)


def _change(now: DimensionVerdict, then: DimensionVerdict) -> FigureChange | None:
    confidence = 0.95 if now.interval is None else now.interval.confidence
    before, after = _side(then, confidence), _side(now, confidence)
    if before is None or after is None:
        return None
    a, b = _lend(before, after, now.unit, confidence), _lend(after, before, now.unit, confidence)
    lent_to = "baseline" if a != before else ("now" if b != after else "")
    too_few = a.flat and b.flat and (a.low, a.high) != (b.low, b.high)
    higher = now.better is Better.HIGHER
    worse = not too_few and ((b.high < a.low) if higher else (b.low > a.high))
    better = not too_few and ((b.low > a.high) if higher else (b.high < a.low))

    def span(side: _Side) -> str:
        return f"[{show_value(side.low, now.unit)}, {show_value(side.high, now.unit)}]"

    lent = {
        "baseline": f" (the baseline's {before.words()} given the spread of the runs now)",
        "now": f" (now's {after.words()} given the spread of the baseline's runs)",
    }.get(lent_to, "")
    if too_few:
        reason = (
            f"within noise — too few runs to tell: {show_value(b.mean, now.unit)} now ({after.words()}), "
            f"{show_value(a.mean, now.unit)} in the baseline ({before.words()}), and neither side has "
            "a spread to weigh the difference against"
        )
    elif worse:
        reason = f"regressed beyond noise: {span(b)} now, {span(a)} in the baseline{lent}"
    elif better:
        reason = f"improved beyond noise: {span(b)} now, {span(a)} in the baseline{lent}"
    else:
        reason = f"within noise: {span(b)} now overlaps {span(a)} in the baseline{lent}"
    return FigureChange(
        name=now.name,
        unit=now.unit,
        better=now.better,
        baseline_low=a.low,
        baseline_high=a.high,
        baseline_runs=then.measured_runs,
        now_low=b.low,
        now_high=b.high,
        regressed=worse,
        improved=better,
        too_few_runs=too_few,
        spread_lent_to=lent_to,
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
    notes = list(summary.notes)
    untold = [c.name for c in changes if c.too_few_runs]
    if untold:
        notes.append(
            f"Against the baseline, too few runs to tell for {', '.join(untold)}: neither side has a "
            "spread (one run, or runs that all measured the same value), so a difference cannot be "
            "weighed against noise and is not flagged either way. Runs that differ on either side "
            "would tell."
        )
    if design is None:
        notes.append(
            f"The baseline {source} or this run recorded no design file: the design's differences "
            "cannot be listed."
        )
    if notes != list(summary.notes):
        update["notes"] = tuple(notes)
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
