"""``bascule run --repeat N`` and ``bascule suite --repeat N``: the same scenario × design N times,
each on a fresh stack, judged together (docs/repeats.md). Kept out of the verbs so that each
stays one call.

Exit code: 0 when every objective's interval is on its passing side; 1 when one is on its failing
side, straddles it (inconclusive) or was not measured — a CI gate asks whether the objectives were
shown to be met, and an inconclusive answer is a no (repeat.json tells the two apart); 3 or 4 when
a run was aborted or met a target error (the repeats stop there).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from bascule.ci.repeat import run_repeated
from bascule.ci.results import RunResult, read_result, run_scored
from bascule.ci.suite import SuiteCase
from bascule.ci.suite_repeat import run_suite_repeated
from bascule.cli.reporting import append_step_summary
from bascule.exit_codes import ExitCode
from bascule.model.loading import read_scenario, scenario_design_path
from bascule.runner.run import RunOptions
from bascule.targets.local.shared import needs_fork_server, shared_fork_server
from bascule.verdicts import RepeatSummary, Verdict, render_repeat_lines

__all__ = ["repeat_run", "repeat_suite"]


_BASELINE_FILES = ("repeat.json", "suite.json", "result.json")


def _check_baseline(repeats: int, baseline: Path | None, console: Console) -> None:
    problem = None
    if baseline is not None and repeats < 2:
        problem = "--baseline compares intervals: it needs --repeat N with N ≥ 2"
    elif baseline is not None and not any((baseline / f).is_file() for f in _BASELINE_FILES):
        problem = f"--baseline {baseline}: no {', '.join(_BASELINE_FILES)} there — not a baseline"
    if problem is not None:
        console.print(f"[red]error[/red] {problem}", highlight=False)
        raise typer.Exit(ExitCode.INVALID_INPUT)


def repeat_run(
    options: RunOptions, repeats: int, *, min_score: float | None, baseline: Path | None, console: Console
) -> None:
    """Run `options` `repeats` times, print the verdicts, exit with the repeat's exit code.
    Raises `ScenarioError` for invalid input, before anything runs."""
    _check_baseline(repeats, baseline, console)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = options.out or Path("runs") / f"{stamp}-repeat-{options.scenario.stem}"

    def run_once(k: int, run_dir: Path) -> RunResult:
        console.print(f"[bold]repeat {k}/{repeats}[/bold] → {run_dir}", highlight=False)
        outcome = run_scored(
            replace(options, out=run_dir), min_score=min_score, console=console, charts=False
        )
        return read_result(outcome.run_dir, outcome.exit_code, outcome.reason)

    def done(k: int, result: RunResult) -> None:
        style = "green" if result.exit_code == 0 else "red"
        score = "—" if result.score is None else f"{result.score:.1f}"
        line = f"  run {k}: [{style}]exit {result.exit_code}[/{style}] score {score}: {result.reason}"
        console.print(line, highlight=False)

    design = options.design or scenario_design_path(options.scenario, read_scenario(options.scenario))
    # The runs share one fork server when they run on this machine (`shared_fork_server`).
    sharing = (
        shared_fork_server(out_dir, say=lambda line: console.print(line, highlight=False))
        if options.target.name == "local" and (design is None or needs_fork_server([design]))
        else contextlib.nullcontext()
    )
    with sharing:
        outcome = run_repeated(
            run_once,
            repeats,
            out_dir,
            min_score=min_score,
            baseline=baseline,
            design_file=design,
            on_done=done,
        )
    style = {"pass": "green", "fail": "red"}.get(outcome.summary.verdict.value, "yellow")
    for index, line in enumerate(render_repeat_lines(outcome.summary)):
        console.print(
            f"[{style}]{line}[/{style}]" if index == 0 else line,
            highlight=False,
            markup=index == 0,
            soft_wrap=True,
        )
    for path in outcome.files:
        console.print(f"  {path}", highlight=False)
    append_step_summary(out_dir / "repeat.md")
    raise typer.Exit(outcome.exit_code)


def repeat_suite(
    cases: Sequence[SuiteCase],
    target: Path,
    repeats: int,
    *,
    min_score: float | None,
    stack_timeout: float | None,
    baseline: Path | None,
    console: Console,
    otlp_timeline: str | None = None,
) -> None:
    """``bascule suite --repeat N``: every case N times, judged per item; prints each run and each
    verdict, exits with the suite's exit code."""
    _check_baseline(repeats, baseline, console)
    total = len(cases)
    console.print(f"suite: {total} item(s) × {repeats} runs into {target}", highlight=False)

    def started(index: int, case: SuiteCase) -> None:
        console.print(f"[{index + 1}/{total}] {case.scenario_id} on {case.design_id} …", highlight=False)

    def ran(index: int, case: SuiteCase, k: int, result: RunResult) -> None:
        score = "—" if result.score is None else f"{result.score:.1f}"
        console.print(f"    run {k}: exit {result.exit_code} score {score}: {result.reason}", highlight=False)

    def judged(index: int, case: SuiteCase, summary: RepeatSummary) -> None:
        for line in render_repeat_lines(summary):
            console.print(f"    {line}", highlight=False, markup=False, soft_wrap=True)

    outcome = run_suite_repeated(
        cases,
        target,
        repeats,
        min_score=min_score,
        stack_timeout=stack_timeout,
        baseline=baseline,
        otlp_timeline=otlp_timeline,
        on_start=started,
        on_run=ran,
        on_done=judged,
        say=lambda line: console.print(line, highlight=False),
    )
    passed = sum(1 for _, o in outcome.items if o.summary.verdict is Verdict.PASS)
    flaky = sum(1 for _, o in outcome.items if o.summary.flaky)
    style = "green" if outcome.exit_code == 0 else "red"
    console.print(
        f"[{style}]{passed}/{total} passed[/{style}], {flaky} flaky (exit {outcome.exit_code})",
        highlight=False,
    )
    for path in outcome.files:
        console.print(f"  {path}", highlight=False)
    append_step_summary(target / "suite.md")
    raise typer.Exit(outcome.exit_code)
