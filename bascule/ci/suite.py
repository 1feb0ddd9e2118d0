"""`bascule suite`: many scenarios × one or more designs, one after the other, with one exit code,
a Markdown summary, a JSON summary and JUnit XML for the CI system.

The suite's exit code is the most serious of its runs': 4 (a target or infrastructure error) over
3 (aborted) over 1 (objectives not met) over 0; 2 (invalid input) is reported before anything
runs, since every file is loaded and planned first.

SIGINT or SIGTERM stops the suite, not only the run in progress: that run is reverted and ends
(exit 3), no further scenario starts, and the summary lists the runs that completed and those not
run (`SuiteOutcome.not_run`); the suite then exits 3 (4 if a run before had a target error).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bascule.ci.repeat import read_design_file
from bascule.ci.results import RunResult, run
from bascule.errors import Problem, ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.loading import read_design, read_scenario, scenario_design_path
from bascule.plan import plan
from bascule.reports.junit import render_junit
from bascule.reports.model import Result
from bascule.rundir import prepare_run_directory
from bascule.runner.interrupt import Abort
from bascule.targets.local.shared import needs_fork_server, shared_fork_server

__all__ = [
    "SuiteCase",
    "SuiteOutcome",
    "collect_scenarios",
    "plan_suite",
    "render_suite_markdown",
    "run_suite",
]

_SEVERITY = {
    ExitCode.OK: 0,
    ExitCode.OBJECTIVES_FAILED: 1,
    ExitCode.ABORTED: 2,
    ExitCode.TARGET_ERROR: 3,
    ExitCode.INVALID_INPUT: 4,
}


@dataclass(frozen=True)
class SuiteCase:
    scenario: Path
    design: Path
    scenario_id: str
    design_id: str

    @property
    def slug(self) -> str:
        return f"{self.scenario_id}--{self.design_id}"


@dataclass(frozen=True)
class SuiteOutcome:
    exit_code: int
    results: tuple[tuple[SuiteCase, RunResult], ...]
    files: tuple[Path, ...]
    not_run: tuple[SuiteCase, ...] = ()
    """The cases an interruption left unstarted."""
    interrupted: str | None = None
    """Why the suite stopped early (``interrupted by SIGINT``), or None."""


def collect_scenarios(paths: Iterable[str | Path]) -> list[Path]:
    """Scenario files from files, folders (every ``*.yaml`` below) and globs, in order, once each.
    Raises `ScenarioError` for a path that matches nothing."""
    found: list[Path] = []
    problems: list[Problem] = []
    for item in paths:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            matches = sorted(path.rglob("*.yaml"))
        elif path.exists():
            matches = [path]
        else:
            matches = sorted(
                Path(m) for m in glob.glob(text, recursive=True) if m.endswith((".yaml", ".yml"))
            )
        if not matches:
            problems.append(Problem("matches no scenario file", (), text))
        found += [m for m in matches if m not in found]
    if problems:
        raise ScenarioError(problems)
    return found


def plan_suite(scenarios: Sequence[Path], designs: Sequence[Path]) -> list[SuiteCase]:
    """Every scenario × design, each loaded and planned, so that a mistake anywhere stops the suite
    before anything runs. Without designs, each scenario runs against the design it names.
    Raises `ScenarioError` with every problem found."""
    cases: list[SuiteCase] = []
    problems: list[Problem] = []
    for scenario_path in scenarios:
        try:
            scenario = read_scenario(scenario_path)
        except ScenarioError as exc:
            problems += exc.problems
            continue
        own = None
        if not designs:  # the scenario's own design, which must then exist
            try:
                own = scenario_design_path(scenario_path, scenario)
            except ScenarioError as exc:
                problems += exc.problems
                continue
        targets = list(designs) or ([own] if own is not None else [])
        if not targets:
            problems.append(Problem("names no design; pass --design", (), str(scenario_path)))
        for design_path in targets:
            try:
                design = read_design(design_path)
                plan(design, scenario)
            except ScenarioError as exc:
                problems += exc.problems
                continue
            cases.append(SuiteCase(scenario_path, Path(design_path), scenario.id, design.id))
    if problems:
        raise ScenarioError(problems)
    return cases


def suite_exit_code(codes: Iterable[int]) -> int:
    worst = ExitCode.OK
    for code in codes:
        current = ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.TARGET_ERROR
        if _SEVERITY[current] > _SEVERITY[worst]:
            worst = current
    return int(worst)


def _row(case: SuiteCase, result: RunResult) -> str:
    overall = "—" if result.score is None else f"{result.score:.1f}"
    verdict = "✅ pass" if result.passed else f"❌ exit {result.exit_code}"
    failing = ", ".join(d.name for d in result.dimensions if d.passed is False) or "—"
    return (
        f"| {case.scenario_id} | {case.design_id} | {verdict} | {overall} | {result.grade or '—'} "
        f"| {failing} | {result.reason.replace('|', '/')} |"
    )


def render_suite_markdown(
    results: Sequence[tuple[SuiteCase, RunResult]],
    exit_code: int,
    *,
    not_run: Sequence[SuiteCase] = (),
    interrupted: str | None = None,
) -> str:
    passed = sum(1 for _, r in results if r.passed)
    head = "✅" if exit_code == 0 else "❌"
    lines = [
        f"## {head} bascule suite: {passed}/{len(results)} passed (exit {exit_code})",
        "",
        "| scenario | design | verdict | score | grade | failing | reason |",
        "|---|---|---|---:|---|---|---|",
        *(_row(case, result) for case, result in results),
    ]
    if interrupted:
        ran = f"{len(results)} run(s) ran (each with its exit code above)" if results else "no run started"
        lines += ["", f"**The suite was {interrupted}**: {ran}, {len(not_run)} not run."]
        lines += [f"- not run: {case.scenario_id} on {case.design_id}" for case in not_run]
    return "\n".join(lines) + "\n"


def run_suite(
    cases: Sequence[SuiteCase],
    out_dir: Path,
    *,
    min_score: float | None = None,
    stack_timeout: float | None = None,
    otlp_timeline: str | None = None,
    on_start: Callable[[int, SuiteCase], None] | None = None,
    on_done: Callable[[int, SuiteCase, RunResult], None] | None = None,
    abort: Abort | None = None,
    say: Callable[[str], None] | None = None,
) -> SuiteOutcome:
    """Run every case in turn into ``out_dir/<scenario>--<design>/``, then write ``suite.md``,
    ``suite.json`` and ``junit.xml`` into `out_dir`. Once `abort` is set (a signal, see
    `bascule.runner.interrupt`), the run in progress ends and no further case starts. With
    `otlp_timeline`, each run's timeline is sent there as OpenTelemetry spans (one trace a run).
    The runs share one fork server (`shared_fork_server`, its ledger in `out_dir`); `say` is told
    its PID."""
    prepare_run_directory(out_dir, fresh=True, within=True)
    done: list[tuple[SuiteCase, RunResult]] = []
    stop = abort or Abort()
    with shared_fork_server(out_dir, say=say, needed=needs_fork_server(c.design for c in cases)):
        for index, case in enumerate(cases):
            if stop.is_set:
                break
            if on_start is not None:
                on_start(index, case)
            result = run(
                case.scenario,
                design=case.design,
                out=out_dir / case.slug,
                min_score=min_score,
                stack_timeout=stack_timeout,
                otlp_timeline=otlp_timeline,
                abort=stop.child(),
            )
            done.append((case, result))
            if on_done is not None:
                on_done(index, case, result)
    interrupted = stop.reason if stop.is_set else None
    not_run = tuple(cases[len(done) :])
    codes = [r.exit_code for _, r in done] + ([ExitCode.ABORTED] if interrupted else [])
    code = suite_exit_code(codes)
    summary: dict[str, Any] = {
        "schema": "bascule.suite/1",
        "exit_code": code,
        "interrupted": interrupted,
        "not_run": [{"scenario": c.scenario_id, "design": c.design_id} for c in not_run],
        "runs": [
            {
                "scenario": case.scenario_id,
                "design": case.design_id,
                "exit_code": result.exit_code,
                "reason": result.reason,
                "score": result.score,
                "grade": result.grade,
                "run_dir": str(result.run_dir),
                "design_file": None
                if (design := read_design_file(case.design)) is None
                else design.model_dump(),
            }
            for case, result in done
        ],
    }
    files = {
        out_dir / "suite.md": render_suite_markdown(done, code, not_run=not_run, interrupted=interrupted),
        out_dir / "suite.json": json.dumps(summary, indent=2) + "\n",
        out_dir / "junit.xml": render_junit(
            [_with_exit(result) for _, result in done],
            suite_name="bascule suite",
            not_run=[(c.scenario_id, c.design_id) for c in not_run],
            why_not_run=f"the suite was stopped ({interrupted})" if interrupted else "",
        ),
    }
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return SuiteOutcome(code, tuple(done), tuple(files), not_run, interrupted)


def _with_exit(result: RunResult) -> Result:
    """The result document with the run's final exit code (a --min-score may have raised it)."""
    run = result.document.run.model_copy(update={"exit_code": result.exit_code, "reason": result.reason})
    return result.document.model_copy(update={"run": run})
