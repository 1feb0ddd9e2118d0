"""N runs of one scenario × design, one after the other (each starts its own stack), judged
together: ``run-1/`` … ``run-N/`` and, next to them, ``repeat.json`` and ``repeat.md``
(docs/repeats.md). The judging is `bascule.verdicts.judge_runs`; this module only runs and writes.

A run that does not complete (exit 2, 3 or 4 — invalid input, aborted or interrupted, target error)
stops the repeats: an interrupt must stop them all, and a target that failed once will most likely
fail again. Its exit code is then the repeat's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bascule.ci.results import RunResult, read_result, run
from bascule.model.loading import read_scenario, scenario_design_path
from bascule.reports.files import write_reports
from bascule.reports.model import Result
from bascule.rundir import prepare_run_directory
from bascule.targets.local.shared import needs_fork_server, shared_fork_server
from bascule.verdicts import RepeatSummary, dump_repeat, judge_runs, parse_repeat, render_repeat_markdown
from bascule.verdicts.baseline import with_baseline
from bascule.verdicts.context import with_repeat
from bascule.verdicts.designdiff import design_digest
from bascule.verdicts.model import DesignFile

__all__ = [
    "RepeatOutcome",
    "compare_baseline",
    "final_document",
    "read_baseline",
    "read_design_file",
    "repeat",
    "run_repeated",
]

RunOnce = Callable[[int, Path], RunResult]
"""Runs the k-th repeat (1-based) into the directory given, and returns its result."""


@dataclass(frozen=True)
class RepeatOutcome:
    summary: RepeatSummary
    results: tuple[RunResult, ...]
    files: tuple[Path, ...]

    @property
    def exit_code(self) -> int:
        return self.summary.exit_code


def final_document(result: RunResult) -> Result:
    """The run's result document with its final exit code, reason and directory (a --min-score
    may have raised the exit code after result.json was written)."""
    run = result.document.run.model_copy(
        update={"exit_code": result.exit_code, "reason": result.reason, "dir": str(result.run_dir)}
    )
    return result.document.model_copy(update={"run": run})


def _one_run(run_dir: Path) -> RepeatSummary:
    return judge_runs([final_document(read_result(run_dir))])


def read_design_file(path: Path | None) -> DesignFile | None:
    """The design file as the runs ran it: its path, SHA-256 and text (None when unreadable)."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return DesignFile(path=str(path), sha256=design_digest(text), text=text)


def _design_of(item: dict[str, object]) -> DesignFile | None:
    recorded = item.get("design_file")
    return DesignFile.model_validate(recorded) if isinstance(recorded, dict) else None


def read_baseline(directory: Path, scenario: str | None, design: str | None) -> RepeatSummary | None:
    """The baseline of `scenario` × `design` in `directory`: a repeat's output (its repeat.json), a
    suite's (the item's repeat.json, or its one run's result.json when the suite ran without
    --repeat) or one run's directory. ``None`` when the directory holds no such item; raises
    `FileNotFoundError` when it is none of these."""
    if (directory / "repeat.json").exists():
        found = parse_repeat((directory / "repeat.json").read_text(encoding="utf-8"))
        return found if (found.scenario, found.design) == (scenario, design) else None
    if (directory / "suite.json").exists():
        items = json.loads((directory / "suite.json").read_text(encoding="utf-8")).get("runs", [])
        for item in items:
            if (item.get("scenario"), item.get("design")) != (scenario, design):
                continue
            # Beside suite.json first: a baseline downloaded from another job has moved.
            here = directory / f"{scenario}--{design}"
            for candidate in (here, Path(str(item.get("repeat_dir") or item.get("run_dir") or here))):
                if (candidate / "repeat.json").exists():
                    return parse_repeat((candidate / "repeat.json").read_text(encoding="utf-8"))
                if (candidate / "result.json").exists():
                    return _one_run(candidate).model_copy(update={"design_file": _design_of(item)})
        return None
    if (directory / "result.json").exists():
        found = _one_run(directory)
        return found if (found.scenario, found.design) == (scenario, design) else None
    raise FileNotFoundError(f"{directory}: no repeat.json, suite.json or result.json — not a baseline")


def compare_baseline(summary: RepeatSummary, baseline: Path) -> RepeatSummary:
    """`summary` compared with its item in `baseline`, or with a note that it has none."""
    found = read_baseline(baseline, summary.scenario, summary.design)
    if found is None:
        note = f"The baseline {baseline} has no run of {summary.scenario} on {summary.design}: not compared."
        return summary.model_copy(update={"notes": (*summary.notes, note), "baseline_source": str(baseline)})
    return with_baseline(summary, found, str(baseline))


def run_repeated(
    run_once: RunOnce,
    repeats: int,
    out_dir: Path,
    *,
    min_score: float | None = None,
    seed: int = 0,
    baseline: Path | None = None,
    design_file: Path | None = None,
    on_done: Callable[[int, RunResult], None] | None = None,
) -> RepeatOutcome:
    """Run `run_once` `repeats` times into ``out_dir/run-K``, then judge the runs (against
    `baseline` when given, `read_baseline`) and write ``repeat.json`` and ``repeat.md`` into
    `out_dir`. `design_file`, the design the runs run, is recorded (path, SHA-256, text) for a
    later baseline comparison to list its differences."""
    design = read_design_file(design_file)
    if repeats < 2:
        raise ValueError("--repeat needs at least 2 runs to judge them together")
    prepare_run_directory(out_dir, fresh=True, within=True)
    done: list[RunResult] = []
    for k in range(1, repeats + 1):
        result = run_once(k, out_dir / f"run-{k}")
        done.append(result)
        if on_done is not None:
            on_done(k, result)
        if result.exit_code not in (0, 1):
            break
    summary = judge_runs([final_document(r) for r in done], repeats=repeats, min_score=min_score, seed=seed)
    summary = summary.model_copy(update={"design_file": design})
    if baseline is not None:
        summary = compare_baseline(summary, baseline)
    for info, result in zip(summary.runs, done, strict=True):
        if info.counted and (result.run_dir / "result.json").is_file():
            # Each run's own reports carry the repeat's verdicts (result.json, summary.md, report.html).
            write_reports(result.run_dir, with_repeat(result.document, summary, info.run), charts=False)
    files = {
        out_dir / "repeat.json": dump_repeat(summary),
        out_dir / "repeat.md": render_repeat_markdown(summary),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return RepeatOutcome(summary, tuple(done), tuple(files))


def repeat(
    scenario: str | Path,
    repeats: int,
    *,
    design: str | Path | None = None,
    out: str | Path,
    target: str = "local",
    min_score: float | None = None,
    baseline: str | Path | None = None,
    stack_timeout: float | None = None,
) -> RepeatOutcome:
    """`run` `repeats` times into ``out/run-K`` and judge the runs (docs/repeats.md) — the Python
    face of ``bascule run --repeat N``, used by the pytest plugin. Raises `ScenarioError` for
    invalid input before anything runs."""
    scenario_path = Path(scenario)
    design_path = Path(design) if design is not None else None
    if design_path is None:
        design_path = scenario_design_path(scenario_path, read_scenario(scenario_path))

    def run_once(k: int, run_dir: Path) -> RunResult:
        return run(
            scenario_path,
            design=design_path,
            out=run_dir,
            target=target,
            min_score=min_score,
            stack_timeout=stack_timeout,
        )

    # The runs share one fork server when they run on this machine (`shared_fork_server`).
    local = target == "local" and (design_path is None or needs_fork_server([design_path]))
    sharing = shared_fork_server(Path(out)) if local else contextlib.nullcontext()
    with sharing:
        return run_repeated(
            run_once,
            repeats,
            Path(out),
            min_score=min_score,
            baseline=None if baseline is None else Path(baseline),
            design_file=design_path,
        )
