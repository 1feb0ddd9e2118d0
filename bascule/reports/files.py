"""The report files of a run directory: its journal read, measured, scored and rendered — the thin
effectful shell around the pure core (`compute_metrics`, `score`, `build_result`, the renderers).
`bascule run` calls `report_run` at the end of every run; `bascule report RUN_DIR` calls it again."""

from __future__ import annotations

import os
from pathlib import Path

from bascule.journal import read_journal
from bascule.metrics import Metrics, compute_metrics
from bascule.reports.html import render_html
from bascule.reports.markdown import render_markdown
from bascule.reports.model import Result, dump_result, parse_result
from bascule.reports.result import build_result
from bascule.score import Score, score

__all__ = ["REPORT_FILES", "grade_journal", "read_result", "report_run", "write_reports"]

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


def grade_journal(run_dir: Path) -> tuple[Metrics, Score]:
    """The metrics and score of the run journaled in `run_dir` (complete or still in progress),
    against the objectives and weights its scenario gave."""
    metrics = compute_metrics(read_journal(run_dir))
    return metrics, score(metrics, metrics.objectives, metrics.weights)


def report_run(run_dir: Path, *, charts: bool = True) -> tuple[Result, list[Path]]:
    """Measure, score and render the run in `run_dir`; returns its result document and the files
    written. Raises `FileNotFoundError` when there is no journal."""
    if not (run_dir / "journal.jsonl").exists():
        raise FileNotFoundError(f"{run_dir / 'journal.jsonl'} does not exist: not a run directory")
    metrics, graded = grade_journal(run_dir)
    result = build_result(metrics, graded, run_dir=str(run_dir))
    return result, write_reports(run_dir, result, charts=charts)
