"""``bascule suite``: a resilience suite for CI — many scenarios × designs, one exit code, JUnit XML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bascule.ci.results import RunResult
from bascule.ci.suite import SuiteCase, collect_scenarios, plan_suite, run_suite
from bascule.cli.options import OtlpTimelineOption
from bascule.cli.repeat import repeat_suite
from bascule.cli.reporting import append_step_summary
from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.runner.interrupt import Abort, signals
from bascule.traces.timeline import TimelineExport

__all__ = ["suite_command"]

out = Console()
err = Console(stderr=True)


def suite_command(
    paths: Annotated[list[str], typer.Argument(help="Scenario files, folders or globs.", show_default=False)],
    designs: Annotated[
        list[Path] | None,
        typer.Option("--design", "-d", help="Run every scenario against this design (repeatable)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where the runs and the suite's reports go.")
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", min=0, max=100, help="A run scoring below this fails (exit 1)."),
    ] = None,
    stack_timeout: Annotated[
        float,
        typer.Option(
            "--stack-timeout", min=1.0, help="Seconds every process has to start and be ready (local target)."
        ),
    ] = 60.0,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat", min=1, help="Run each item N times and judge it over its runs (docs/repeats.md)."
        ),
    ] = 1,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="With --repeat: flag regressions beyond noise against this earlier output."
        ),
    ] = None,
    otlp_timeline: OtlpTimelineOption = None,
) -> None:
    """Run a resilience suite: every scenario against every design, one at a time, then write
    suite.md, suite.json and junit.xml (and append suite.md to $GITHUB_STEP_SUMMARY when set).

    Every file is loaded and planned first: a mistake anywhere exits 2 before anything runs.
    Exit code: the most serious of the runs' — 4 target error, 3 aborted, 1 objectives not met, 0.
    With --repeat N: each item judged over N runs (pass / fail / inconclusive, flaky apart in
    suite.md and junit.xml); an inconclusive item exits 1. --baseline DIR (an earlier suite's
    output): each item's figures against its own there; a regression beyond noise exits 1.

    Ctrl-C or SIGTERM stops the whole suite: the run in progress is reverted, no further scenario
    starts, the summary lists what completed, and the suite exits 3 (4 if a run had a target error).

    [b]Example[/b]: bascule suite scenarios/faults --design designs/active-passive-sovereign.yaml
    """
    try:
        cases = plan_suite(collect_scenarios(paths), designs or [])
        if otlp_timeline is not None:  # its URL and the SDK checked before the first run
            TimelineExport(otlp_timeline)
    except ScenarioError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = out_dir or Path("runs") / f"suite-{stamp}"
    if repeat > 1 or baseline is not None:
        repeat_suite(
            cases,
            target,
            repeat,
            min_score=min_score,
            stack_timeout=stack_timeout,
            baseline=baseline,
            console=out,
            otlp_timeline=otlp_timeline,
        )
    total = len(cases)
    out.print(f"suite: {total} run(s) into {target}", highlight=False)

    def started(index: int, case: SuiteCase) -> None:
        out.print(f"[{index + 1}/{total}] {case.scenario_id} on {case.design_id} …", highlight=False)

    def finished(index: int, case: SuiteCase, result: RunResult) -> None:
        overall = "—" if result.score is None else f"{result.score:.1f}"
        style = "green" if result.passed else "red"
        grade = result.grade or "—"
        line = f"    [{style}]exit {result.exit_code}[/{style}] score {overall} ({grade}): {result.reason}"
        out.print(line, highlight=False)

    with signals(Abort()) as abort:
        outcome = run_suite(
            cases,
            target,
            min_score=min_score,
            stack_timeout=stack_timeout,
            otlp_timeline=otlp_timeline,
            on_start=started,
            on_done=finished,
            abort=abort,
            say=lambda line: out.print(line, highlight=False),
        )
    passed = sum(1 for _, r in outcome.results if r.passed)
    style = "green" if outcome.exit_code == 0 else "red"
    if outcome.interrupted:
        ended = ", ".join(
            f"{c.scenario_id} on {c.design_id} (exit {r.exit_code})" for c, r in outcome.results
        )
        out.print(
            f"[red]{outcome.interrupted}[/red]: the suite stopped; runs: {ended or 'none'}", highlight=False
        )
        for case in outcome.not_run:
            out.print(f"    not run: {case.scenario_id} on {case.design_id}", highlight=False)
    out.print(f"[{style}]{passed}/{total} passed[/{style}] (exit {outcome.exit_code})", highlight=False)
    for path in outcome.files:
        out.print(f"  {path}", highlight=False)
    append_step_summary(target / "suite.md")
    raise typer.Exit(outcome.exit_code)
