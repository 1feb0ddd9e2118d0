"""``bascule report`` and ``bascule compare``: a run's reports re-rendered from its journal, and
designs side by side over the same scenarios. Thin verbs over `bascule.reports`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bascule.ci.results import run_scored
from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.reports.compare import build_comparison, render_compare_markdown, splice_generated
from bascule.reports.compare_html import render_compare_html
from bascule.reports.files import read_result, report_run, with_own_repeat
from bascule.reports.model import Result
from bascule.reports.terminal import score_line
from bascule.rundir import prepare_run_directory
from bascule.runner.interrupt import Abort, signals
from bascule.runner.run import RunOptions
from bascule.targets.ledgerfile import run_process_gone
from bascule.targets.local.shared import needs_fork_server, shared_fork_server
from bascule.targets.registry import choose
from bascule.verdicts.model import parse_repeat

__all__ = ["append_step_summary", "compare_command", "report_command"]

out = Console()
err = Console(stderr=True)


def append_step_summary(summary: Path) -> None:
    """In a GitHub Actions job, add `summary` to the job's step summary."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target and summary.exists():
        with open(target, "a", encoding="utf-8") as f:
            f.write(summary.read_text(encoding="utf-8") + "\n")


def report_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (it holds journal.jsonl).", show_default=False)
    ],
    charts: Annotated[bool, typer.Option("--charts/--no-charts", help="Also write the PNG charts.")] = True,
) -> None:
    """Measure, score and render a run again from its journal: result.json, summary.md,
    report.html and the PNG charts, in the run directory. Works on a run still in progress; a run
    whose process is gone without ending it (killed) is not scored.

    [b]Example[/b]: bascule report runs/20261126-101500-aws-us-east-1-2025-10-20-active-passive-sovereign
    """
    began = time.perf_counter()
    gone = run_process_gone(run_dir)
    killed = (
        None
        if gone is None
        else f"its process (PID {gone}) is gone and its journal has no end (SIGKILL, out of memory, or "
        f"its machine stopped); bascule recover {run_dir} undoes what it left"
    )
    try:
        result, written = report_run(run_dir, charts=charts, killed=killed)
    except FileNotFoundError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    took = time.perf_counter() - began
    out.print(score_line(result), highlight=False)
    for path in written:
        out.print(f"  {path}", highlight=False)
    out.print(f"rendered in {took:.2f} s", highlight=False)


def _result_of(run_dir: Path) -> Result:
    """The run's result.json, parsed; measured again from its journal when there is none. Raises
    `ValueError` when result.json is not a ``bascule.result/1`` document."""
    path = run_dir / "result.json"
    if path.exists():
        return read_result(path)
    result, _ = report_run(run_dir, charts=False)
    return result


def _last_run_of_repeat(repeat_dir: Path) -> Path:
    """The last judged run of a repeat's directory (``--repeat N``): it stands for the item, and
    carries the verdicts over all its runs. The repeat directory itself when none can be read."""
    try:
        summary = parse_repeat((repeat_dir / "repeat.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return repeat_dir
    judged = [repeat_dir / Path(r.dir).name for r in summary.runs if r.counted and r.dir]
    present = [d for d in judged if (d / "journal.jsonl").exists()]
    return present[-1] if present else repeat_dir


def compare_command(
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Existing run directories, or repeat directories (--repeat N), to compare instead of "
            "running.",
            show_default=False,
        ),
    ] = None,
    designs: Annotated[
        list[Path] | None, typer.Option("--designs", "-d", help="Design files to run (repeat the option).")
    ] = None,
    scenarios: Annotated[
        list[Path] | None,
        typer.Option("--scenarios", "-s", help="Scenario files to run (repeat the option)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where compare.md, compare.html and the runs go.")
    ] = None,
    into: Annotated[
        Path | None,
        typer.Option(
            "--into",
            help="Also put compare.md into this Markdown file, between its bascule-compare markers "
            "(docs/results.md).",
        ),
    ] = None,
    stack_timeout: Annotated[
        float,
        typer.Option(
            "--stack-timeout", min=1.0, help="Seconds every process has to start and be ready (local target)."
        ),
    ] = 60.0,
) -> None:
    """Compare designs over the same scenarios: run every scenario against every design (one at a
    time), or take existing run directories, and write compare.md and compare.html — the scores
    and key figures side by side, the cost of each design next to its resilience, and which design
    wins each scenario and why. Ctrl-C or SIGTERM stops the whole comparison: the run in progress
    is reverted, no further one starts, the runs completed are listed, and it exits 3.

    [b]Examples[/b]:
      bascule compare -d designs/active-passive-sovereign.yaml -d designs/single-region.yaml
          -s scenarios/incidents/aws-us-east-1-2025-10-20.yaml
      bascule compare runs/*-aws-us-east-1-2025-10-20-*
      bascule compare runs/results/*--* --into docs/results.md
      bascule compare runs/suite-x5/*--*        (a suite --repeat 5: each item's verdict and intervals)
    """
    page = None
    if into is not None:
        try:
            page = into.read_text(encoding="utf-8")
            splice_generated(page, "")
        except (OSError, ValueError) as exc:
            err.print(f"[red]error[/red] --into {into}: {exc}", highlight=False)
            raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = out_dir or Path("runs") / f"compare-{stamp}"
    results: list[Result] = []
    completed: list[Path] = []
    if run_dirs and (designs or scenarios):
        err.print("[red]error[/red] give run directories, or --designs and --scenarios, not both")
        raise typer.Exit(ExitCode.INVALID_INPUT)
    # The comparison's directory is made once its inputs are known good: a refused compare leaves none.
    if run_dirs:
        for given in run_dirs:
            repeated = (given / "repeat.json").is_file() and not (given / "journal.jsonl").exists()
            run_dir = _last_run_of_repeat(given) if repeated else given
            if not (run_dir / "journal.jsonl").exists():
                err.print(f"[red]error[/red] {run_dir} holds no journal.jsonl", highlight=False)
                raise typer.Exit(ExitCode.INVALID_INPUT)
            try:
                results.append(with_own_repeat(_result_of(run_dir), run_dir))
            except ValueError as exc:
                err.print(f"[red]error[/red] {run_dir / 'result.json'}: {exc}", highlight=False)
                raise typer.Exit(ExitCode.INVALID_INPUT) from exc
        prepare_run_directory(target)
    else:
        if not designs or not scenarios:
            err.print(
                "[red]error[/red] give --designs and --scenarios (each at least once), or run directories"
            )
            raise typer.Exit(ExitCode.INVALID_INPUT)
        prepare_run_directory(target, fresh=True, within=True)
        total = len(designs) * len(scenarios)
        pairs = [(scenario, design) for scenario in scenarios for design in designs]
        # The runs share one fork server (`shared_fork_server`, its ledger in the target).
        sharing = shared_fork_server(
            target, say=lambda line: out.print(line, highlight=False), needed=needs_fork_server(designs)
        )
        with signals(Abort()) as abort, sharing:
            for done, (scenario, design) in enumerate(pairs, start=1):
                if abort.is_set:
                    break
                run_dir = target / f"{scenario.stem}--{design.stem}"
                out.print(f"[{done}/{total}] {scenario.stem} on {design.stem} → {run_dir}", highlight=False)
                try:
                    outcome = run_scored(
                        RunOptions(
                            scenario,
                            choose("local", {"stack_timeout": stack_timeout}),
                            design=design,
                            out=run_dir,
                            quiet=True,
                        ),
                        console=Console(quiet=True),
                        abort=abort.child(),
                    )
                except ScenarioError as exc:
                    for problem in exc.problems:
                        err.print(f"[red]error[/red] {problem}", highlight=False)
                    raise typer.Exit(ExitCode.INVALID_INPUT) from exc
                if outcome.reason.startswith("interrupted by"):
                    out.print(f"    exit {outcome.exit_code}: {outcome.reason}", highlight=False)
                    break
                result = _result_of(outcome.run_dir)
                out.print(f"    exit {outcome.exit_code}: {score_line(result)}", highlight=False)
                results.append(result)
                completed.append(outcome.run_dir)
        if abort.is_set:
            err.print(
                f"[red]{abort.reason}[/red]: the comparison stopped, {len(completed)} of {total} run(s) "
                f"completed: {', '.join(map(str, completed)) or 'none'}",
                highlight=False,
            )
            if completed:
                err.print(f"compare them: bascule compare {' '.join(map(str, completed))}", highlight=False)
            raise typer.Exit(ExitCode.ABORTED)
    try:
        comparison = build_comparison(results)
    except ValueError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    target.mkdir(parents=True, exist_ok=True)
    markdown = target / "compare.md"
    html = target / "compare.html"
    markdown.write_text(render_compare_markdown(comparison), encoding="utf-8")
    if into is not None and page is not None:
        into.write_text(splice_generated(page, render_compare_markdown(comparison)), encoding="utf-8")
        out.print(f"updated {into}", highlight=False)
    html.write_text(render_compare_html(comparison), encoding="utf-8")
    for verdict in comparison.verdicts:
        out.print(f"{verdict.scenario}: {verdict.why}", highlight=False)
    out.print(f"comparison: {markdown} · {html}", highlight=False)
    append_step_summary(markdown)
    failed = sorted(f"{s} on {d}" for (s, d), cell in comparison.cells.items() if not cell.passed)
    if failed:  # as for every verb: 0 only when every objective was met (README, "Exit codes")
        out.print(f"objectives not met by {len(failed)} of {len(comparison.cells)}: {', '.join(failed)}")
        raise typer.Exit(ExitCode.OBJECTIVES_FAILED)
