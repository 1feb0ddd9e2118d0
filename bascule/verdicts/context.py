"""A repeat's verdicts as each of its runs' result documents carry them (`Result.repeat`), so that
result.json, summary.md, report.html and ``bascule compare`` show the interval and the verdict of a
repeated item wherever they show one of its runs. Pure."""

from __future__ import annotations

from bascule.reports.model import RepeatContext, RepeatDimension, Result
from bascule.verdicts.model import RepeatSummary

__all__ = ["repeat_context", "with_repeat"]


def repeat_context(summary: RepeatSummary, run: int | None = None) -> RepeatContext:
    """`summary` in the words of the result document; `run`: which run the document is."""
    scores = [r.score for r in summary.runs if r.counted and r.score is not None]
    return RepeatContext(
        run=run,
        repeats=summary.repeats,
        judged=sum(1 for r in summary.runs if r.counted),
        verdict=summary.verdict.value,
        flaky=summary.flaky,
        exit_code=summary.exit_code,
        reason=summary.reason,
        mean_score=sum(scores) / len(scores) if scores else None,
        dimensions=tuple(
            RepeatDimension(
                name=d.name,
                unit=d.unit,
                verdict=d.verdict.value,
                mean=d.mean,
                low=None if d.interval is None else d.interval.low,
                high=None if d.interval is None else d.interval.high,
                of="mean" if d.interval is None else d.interval.of,
                confidence=0.95 if d.interval is None else d.interval.confidence,
                objective=d.objective,
                measured_runs=d.measured_runs,
                passed_runs=d.passed_runs,
                failed_runs=d.failed_runs,
                flaky=d.flaky,
                flips=d.flips,
                reason=d.reason,
                counts=d.counts,
            )
            for d in summary.dimensions
        ),
        notes=summary.notes,
    )


def with_repeat(result: Result, summary: RepeatSummary, run: int | None) -> Result:
    """`result` carrying the verdicts of the repeat it belongs to."""
    return result.model_copy(update={"repeat": repeat_context(summary, run)})
