"""bascule from Python: `run(scenario, design=…) -> RunResult`, for tests written by hand (the pytest
plugin's ``bascule`` fixture) and for scripts.

    result = run("scenarios/faults/crash.yaml", design="designs/active-passive-sovereign.yaml")
    assert result.exit_code == 0, result.failure_text()
    assert result.dimension("recovery").measured < 10

A `RunResult` reads the run's `bascule.result/1` document (docs/result.md); its figures are exactly
what the reports show.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from rich.console import Console

from bascule.exit_codes import ExitCode
from bascule.reports._summary import compute_unreached, count_unreached
from bascule.reports.files import read_result as read_result_file
from bascule.reports.files import report_run, score_run
from bascule.reports.model import Dimension, Figures, Result, Run
from bascule.runner.interrupt import Abort, StepInterruptedError, stoppable
from bascule.runner.run import RunOptions, RunOutcome, run_scenario
from bascule.targets.registry import choose

__all__ = ["Dimension", "RunResult", "read_result", "run", "run_scored"]

_DIMENSIONS = {"rto": "recovery", "rpo": "durability", "p95": "latency", "accuracy": "correctness"}


@dataclass(frozen=True)
class RunResult:
    """One finished run: its exit code and its result document."""

    exit_code: int
    reason: str
    run_dir: Path
    document: Result

    @property
    def score(self) -> float | None:
        return self.document.score.overall

    @property
    def grade(self) -> str | None:
        return self.document.score.grade

    @property
    def passed(self) -> bool:
        """Completed, and every objective met."""
        return self.exit_code == ExitCode.OK

    @property
    def figures(self) -> Figures:
        """The key figures (docs/result.md's ``figures``): ``result.figures.time_to_failover``."""
        return self.document.figures

    @property
    def dimensions(self) -> tuple[Dimension, ...]:
        return self.document.score.dimensions

    def dimension(self, name: str) -> Dimension:
        """A dimension by name: availability, recovery (or ``rto``), latency (``p95``), correctness
        (``accuracy``), durability (``rpo``), sovereignty. Raises `KeyError` naming the known ones."""
        wanted = _DIMENSIONS.get(name, name)
        for dimension in self.dimensions:
            if dimension.name == wanted:
                return dimension
        known = ", ".join(d.name for d in self.dimensions)
        raise KeyError(f"no dimension {name!r} in this result; it has: {known}")

    @property
    def faults_unreached(self) -> int | None:
        """Phases whose fault reached no traffic while in force (None: none was counted)."""
        return count_unreached(self.document)

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the run says nothing of, though it may pass: a phase whose fault reached no traffic
        while in force (docs/faults.md, "Did the fault reach anything?"), one sentence each."""
        return tuple(compute_unreached(self.document))

    def score_table(self) -> str:
        """The score table as plain text: what a failing test prints."""
        rows = [f"{'dimension':<13}{'measured':>14}{'objective':>14}{'sub-score':>11}{'weight':>8}  why"]
        for d in self.dimensions:
            mark = "ok  " if d.passed else ("FAIL" if d.passed is False else "n/a ")
            rows.append(
                f"{d.name:<13}{_show(d.measured, d.unit):>14}{_show(d.objective, d.unit):>14}"
                f"{_show(d.sub_score, ''):>11}{d.weight or 0.0:>8g}  {mark} {d.explanation}"
            )
        return "\n".join(rows)

    def failure_text(self) -> str:
        """Why this run did not pass, for a test report: the verdict, the score table and each
        failing dimension's recommendation."""
        overall = "—" if self.score is None else f"{self.score:.1f}"
        lines = [
            f"bascule: exit {self.exit_code} — {self.reason}",
            f"score {overall}/100, grade {self.grade or '—'} · run directory {self.run_dir}",
            "",
            self.score_table(),
        ]
        advice = [
            f"- {d.name}: {d.recommendation}"
            for d in self.dimensions
            if d.passed is False and d.recommendation
        ]
        if advice:
            lines += ["", "what to do:", *advice]
        cap = self.document.score.cap
        if cap is not None:
            lines.append(f"overall capped at {cap.at}: {cap.reason}")
        return "\n".join(lines)


def _show(value: object, unit: str) -> str:
    if value is None:
        return "—"
    if not isinstance(value, int | float):
        return str(value)
    if unit == "ratio":
        return f"{value * 100:.2f} %"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:g}"


def read_result(run_dir: str | Path, exit_code: int | None = None, reason: str = "") -> RunResult:
    """The result of a finished run, from its result.json (rendered again from the journal when
    missing). Without `exit_code`, the run's own, and `FileNotFoundError` for a directory that
    does not exist."""
    run_dir = Path(run_dir)
    if exit_code is None and not run_dir.is_dir():
        raise FileNotFoundError(f"no run directory {run_dir}")
    path = run_dir / "result.json"
    if path.exists():
        document = read_result_file(path)
    else:
        try:
            document, _ = report_run(run_dir, charts=False)
        except Exception as exc:  # a run that ended before anything could be measured
            document = Result(run=Run(exit_code=exit_code, reason=reason or f"no result: {exc}"))
    run_info = document.run
    code = (run_info.exit_code or 0) if exit_code is None else exit_code
    return RunResult(code, reason or (run_info.reason or ""), run_dir, document)


def run_scored(
    options: RunOptions,
    *,
    min_score: float | None = None,
    console: Console | None = None,
    charts: bool = True,
    abort: Abort | None = None,
) -> RunOutcome:
    """Run one scenario, score it and write its reports — the one way every caller runs one
    (`bascule run`, `bascule compare`, `bascule suite`, `run`). The ``score`` record comes before
    ``run-ended``; objectives not met, or a score below `min_score`, turn a completed run's exit
    code into 1; the report files are written once the journal is closed, and a failure to write
    them is printed on `console`, not raised (`charts`: the PNG charts too). `abort` is shared by
    the runs of a suite (`bascule.runner.interrupt`).

    Interrupted, the PNG charts are left to `bascule report`; interrupted twice, or while the
    reports are written, every report not yet written is."""
    out = console or Console()
    scoring = partial(score_run, min_score=min_score)
    if charts:
        _preload_charts()
    outcome = run_scenario(options, console=out, scoring=scoring, abort=abort)
    if outcome.hurried:
        out.print(f"reports not written: `bascule report {outcome.run_dir}` writes them", highlight=False)
        return outcome
    if outcome.reason.startswith("interrupted by"):
        # Whoever interrupted wants the process gone: the PNG charts (the slow part) are left to
        # `bascule report RUN_DIR`, which writes them from the journal.
        charts = False
    try:
        with stoppable(abort):
            _, written = report_run(outcome.run_dir, charts=charts)
    except StepInterruptedError as stopped:
        out.print(
            f"{stopped} while writing the reports: `bascule report {outcome.run_dir}` writes them",
            highlight=False,
        )
        return outcome
    except Exception as exc:  # the run itself is over and journaled; say so and go on
        out.print(f"[red]could not write the reports[/red]: {type(exc).__name__}: {exc}", highlight=False)
        return outcome
    return replace(outcome, reports=tuple(written))


def _import_charts() -> None:
    # A failure here is `write_reports`'s to report: it imports the module again.
    with contextlib.suppress(Exception):
        importlib.import_module("bascule.reports.charts")


def _preload_charts() -> None:
    """Import the PNG charts' module (matplotlib: 0.5 s of CPU, 2–4 s of wall on a loaded 2-core
    machine) in a thread while the run starts its stack, when this process mostly waits, rather
    than after the run, when the user does. Importing is all it does: no figure, no state; the
    module lock makes `write_reports`'s own import wait for it if it is not done by then."""
    if "bascule.reports.charts" not in sys.modules:
        threading.Thread(target=_import_charts, name="bascule-preload-charts", daemon=True).start()


def run(
    scenario: str | Path,
    *,
    design: str | Path | None = None,
    out: str | Path | None = None,
    target: str = "local",
    min_score: float | None = None,
    console: Console | None = None,
    stack_timeout: float | None = None,
    abort: Abort | None = None,
    otlp_timeline: str | None = None,
) -> RunResult:
    """Run one scenario (quietly) and return its result. Raises `ScenarioError` for invalid input;
    anything that happens during the run is in the result's exit code and reason. `abort`: as for
    `run_scored`."""
    outcome = run_scored(
        RunOptions(
            scenario=Path(scenario),
            target=choose(target, {"stack_timeout": stack_timeout}),
            design=None if design is None else Path(design),
            out=None if out is None else Path(out),
            quiet=True,
            otlp_timeline=otlp_timeline,
        ),
        min_score=min_score,
        console=console or Console(quiet=True),
        abort=abort,
    )
    return read_result(outcome.run_dir, outcome.exit_code, outcome.reason)
