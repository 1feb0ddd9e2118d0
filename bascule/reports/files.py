"""The report files of a run directory: its journal read, measured, scored and rendered — the thin
effectful shell around the pure core (`compute_metrics`, `score`, `build_result`, the renderers).
A run's caller passes `score_run` to the runner (the ``score`` record, before ``run-ended``) and
calls `report_run` once the journal is closed (`bascule.ci.results.run_scored`); `bascule report
RUN_DIR` calls it again."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bascule.exit_codes import ExitCode
from bascule.journal import scan_journal
from bascule.metrics import Metrics, compute_metrics
from bascule.metrics.model import KILLED
from bascule.reports.html import render_html
from bascule.reports.markdown import render_markdown
from bascule.reports.model import Result, dump_result, parse_result
from bascule.reports.result import build_result
from bascule.score import Score, score
from bascule.verdicts.context import with_repeat
from bascule.verdicts.model import parse_repeat

__all__ = [
    "REPORT_FILES",
    "ScoredRun",
    "grade_journal",
    "read_result",
    "report_run",
    "score_run",
    "with_own_repeat",
    "write_reports",
]

REPORT_FILES = (
    "result.json",
    "summary.md",
    "report.html",
    "timeline.png",
    "traffic-region.png",
    "traffic-level.png",
)


def _write(path: Path, data: bytes) -> None:
    # Write beside, then rename: a reader (a CI step, a browser reloading) never sees half a file.
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def read_result(path: Path) -> Result:
    """The `Result` in a ``result.json`` file; `ValueError` when it is not a ``bascule.result/1``
    document, `OSError` when it cannot be read."""
    return parse_result(path.read_bytes())


def write_reports(run_dir: Path, result: Result, *, charts: bool = True) -> list[Path]:
    """Write result.json, summary.md, report.html and (with `charts`) the PNG charts into
    `run_dir`; returns the paths written."""
    written: list[Path] = []
    outputs: dict[str, bytes] = {
        "result.json": dump_result(result).encode(),
        "summary.md": render_markdown(result).encode(),
        "report.html": render_html(result).encode(),
    }
    if charts:
        from bascule.reports.charts import render_charts  # matplotlib: half a second to import

        outputs.update(render_charts(result))
    for name, data in outputs.items():
        path = run_dir / name
        _write(path, data)
        written.append(path)
    return written


def grade_journal(run_dir: Path, *, killed: str | None = None) -> tuple[Metrics, Score]:
    """The metrics and score of the run journaled in `run_dir` (complete or still in progress),
    against the objectives and weights its scenario gave. `killed`: why a journal with no end will
    never have one (its run's process is gone) — such a run is not scored (`KILLED`)."""
    metrics = compute_metrics(scan_journal(run_dir))
    if killed is not None and metrics.run.exit_code is None:
        metrics = replace(metrics, run=replace(metrics.run, reason=f"{KILLED}: {killed}"))
    return metrics, score(metrics, metrics.objectives, metrics.weights)


def report_run(run_dir: Path, *, charts: bool = True, killed: str | None = None) -> tuple[Result, list[Path]]:
    """Measure, score and render the run in `run_dir`; returns its result document and the files
    written. Raises `FileNotFoundError` when there is no journal. `killed`: as `grade_journal`."""
    if not (run_dir / "journal.jsonl").exists():
        raise FileNotFoundError(f"{run_dir / 'journal.jsonl'} does not exist: not a run directory")
    metrics, graded = grade_journal(run_dir, killed=killed)
    result = with_own_repeat(build_result(metrics, graded, run_dir=str(run_dir)), run_dir)
    return result, write_reports(run_dir, result, charts=charts)


def with_own_repeat(result: Result, run_dir: Path) -> Result:
    """`result` with the verdicts of the repeat it belongs to, when ``run_dir`` is one of the runs
    its parent's ``repeat.json`` lists (docs/repeats.md); as it is otherwise."""
    path = run_dir.parent / "repeat.json"
    try:
        summary = parse_repeat(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return result
    mine = (
        None
        if summary is None
        else next((r for r in summary.runs if r.dir and Path(r.dir).name == run_dir.name), None)
    )
    if summary is None or mine is None:
        return result
    return with_repeat(result, summary, mine.run)


@dataclass(frozen=True)
class ScoredRun:
    """A completed run scored: its final exit code and reason, the ``score`` record's fields."""

    exit_code: int
    reason: str
    record: dict[str, Any] | None
    """None when the journal could not be scored (`note` says why)."""
    note: str


def score_run(run_dir: Path, code: int, reason: str, *, min_score: float | None = None) -> ScoredRun:
    """Score the completed run journaled in `run_dir`; objectives not met (or a score below
    `min_score`) turn a completed run's exit code into 1."""
    try:
        _, graded = grade_journal(run_dir)
    except Exception as exc:  # a run's journal must end even if measuring it fails
        return ScoredRun(code, reason, None, f"scoring failed: {type(exc).__name__}: {exc}")
    failing = [d.name for d in graded.dimensions if d.passed is False]
    below = min_score is not None and (graded.overall is None or graded.overall < min_score)
    record = {
        "overall": graded.overall,
        "grade": None if graded.grade is None else str(graded.grade),
        "passed": graded.passed and not below,
        "failing": failing,
        "unmeasured": list(graded.unmeasured),
        "cap": None if graded.cap is None else {"at": graded.cap.at, "reason": graded.cap.reason},
        "min_score": min_score,
    }
    shown = "—" if graded.overall is None else f"{graded.overall:.1f}"
    note = f"score {shown}/100, grade {graded.grade or '—'}" + (
        f"; failing: {', '.join(failing)}" if failing else ""
    )
    if code != ExitCode.OK:
        return ScoredRun(code, reason, record, note)
    said: list[str] = []
    if below:
        said.append(f"score {shown} is below --min-score {min_score:g}")
    if not graded.passed:
        # Those left out with a weight of 0 are unmeasured on purpose: the others kept the pass.
        kept = [d.name for d in graded.dimensions if d.passed is None and d.weight > 0]
        said.append(f"objectives not met: {', '.join(failing) or _unmeasured(kept)}")
    if said:  # both, when both: a score under the floor does not hide an objective missed
        return ScoredRun(ExitCode.OBJECTIVES_FAILED, "; ".join(said), record, note)
    return ScoredRun(code, reason, record, note)


def _unmeasured(names: Sequence[str]) -> str:
    """Why a run with no failing dimension did not pass, and the way out where it is on purpose."""
    if not names:
        return "some could not be measured"
    return (
        f"some could not be measured: {', '.join(names)} (the summary says why; a dimension this "
        f"stack cannot give is left out with a weight of 0 — weights: {{{': 0, '.join(names)}: 0}})"
    )
