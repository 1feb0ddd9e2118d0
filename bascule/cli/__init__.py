"""The ``bascule`` command line: one front door, thin verbs over the library.

Exit codes, the same for every verb: 0 success, 1 objectives failed, 2 invalid input,
3 aborted (guardrail or interrupt), 4 target or infrastructure error.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import inspect
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from bascule._version import __version__
from bascule.ci.results import run_scored
from bascule.cli.gameday import inject_command, recover_command
from bascule.cli.init import init_command
from bascule.cli.kube import cluster_app, deploy_command, render_app
from bascule.cli.library import designs_app, scenarios_app
from bascule.cli.options import OtlpTimelineOption
from bascule.cli.render import render_catalog, render_faults, render_plan
from bascule.cli.repeat import repeat_run
from bascule.cli.reporting import append_step_summary, compare_command, report_command
from bascule.cli.stack import stack_app
from bascule.cli.suite import suite_command
from bascule.errors import BasculeError, Problem, RunDirectoryInUseError, ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.design import Design
from bascule.model.loading import read_any, read_design, read_scenario, scenario_design_path
from bascule.model.scenario import Scenario
from bascule.plan import plan as make_plan
from bascule.plan import plan_to_dict
from bascule.reports.files import read_result
from bascule.reports.terminal import render_terminal
from bascule.runner.inputs import check_pair
from bascule.runner.interrupt import signalled
from bascule.runner.run import RunOptions
from bascule.targets.base import Refusal
from bascule.targets.registry import OptionValue, TargetOption, Verb, choose, describe_plan, options

__all__ = ["ExitCode", "app", "main"]


app = typer.Typer(
    name="bascule",
    help="Resilience chaos testing: replay real cloud outages against a service and score its failover.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
out_console = out
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from bascule.targets.local.proxy import scan

        out.print(f"bascule {__version__}")
        if scan.COMPILED:
            out.print("fault proxy: compiled byte searches")
        else:
            out.print(
                f"fault proxy: pure-Python byte searches, slower: {scan.NOT_COMPILED_WHY}", soft_wrap=True
            )
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """bascule — failover, tested. See `bascule COMMAND --help` for each verb."""


def _fail_input(exc: ScenarioError) -> typer.Exit:
    for problem in exc.problems:
        err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
    count = len(exc.problems)
    err.print(f"{count} problem{'s' if count != 1 else ''} found.", highlight=False)
    return typer.Exit(ExitCode.INVALID_INPUT)


@app.command()
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="Scenario and design files (YAML).", show_default=False)
    ],
) -> None:
    """Check scenario and design files; every problem is reported with file:line:column.

    A scenario that names its default design is also planned against it, so that references to
    regions, components and links are checked too, and so is what the local target (the default
    one) would refuse, as `bascule plan` and `bascule run` do. Exit 0 when all files are valid, 2
    otherwise.

    [b]Example[/b]: bascule validate scenarios/incidents/*.yaml designs/*.yaml
    """
    failed = 0
    for path in files:
        try:
            document = read_any(path)
            detail = _check(path, document)
        except ScenarioError as exc:
            failed += 1
            for problem in exc.problems:
                err.print(f"[red]error[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)
            continue
        out.print(f"[green]ok[/green] {escape(f'{path}: {detail}')}", highlight=False)
    if failed:
        err.print(f"{failed} of {len(files)} file{'s' if len(files) != 1 else ''} invalid.")
        raise typer.Exit(ExitCode.INVALID_INPUT)


def _check(path: Path, document: Design | Scenario) -> str:
    if isinstance(document, Design):
        return (
            f"design {document.id!r}, {len(document.regions)} regions, {len(document.components)} components"
        )
    detail = f"scenario {document.id!r}, {len(document.phases)} phases"
    design_path = scenario_design_path(path, document)
    if design_path is not None:
        design = read_design(design_path)
        built = make_plan(design, document)
        check_pair(document, design, str(path))
        described = describe_plan("local", built, design)
        refused = [described.reason] if isinstance(described, Refusal) else described.refusals
        if refused:
            raise ScenarioError(
                [Problem(f"the local target refuses it: {r}", (), str(path)) for r in refused]
            )
        detail += f", plans against {document.design} ({built.run_length:.1f} s)"
    return detail


DesignOption = Annotated[
    Path | None,
    typer.Option("--design", "-d", help="The design file (default: the one the scenario names)."),
]
TargetValues = dict[str, OptionValue]


def _annotation(option: TargetOption) -> tuple[object, object]:
    """The typer annotation and default of a target's option."""
    flag = typer.Option(option.flag, help=option.help)
    if option.kind == "flag":
        return Annotated[bool, flag], False
    if option.kind == "seconds":
        return Annotated[float, typer.Option(option.flag, help=option.help, min=1.0)], option.default
    if option.multiple:
        return Annotated[list[str] | None, flag], None
    if option.kind == "path":
        return Annotated[Path | None, flag], None
    return Annotated[str | None, flag], None


def _target_options(verb: Verb) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a verb every registered target's options for it (`targets.registry.options`), as
    command-line options of its own; the verb receives their values in ``target_values``."""

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        declared = options(verb)
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "target_values"]
        added = []
        for option in declared:
            annotation, default = _annotation(option)
            added.append(
                inspect.Parameter(
                    option.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )

        @functools.wraps(func)
        def command(**kwargs: Any) -> None:
            values: TargetValues = {}
            for option in declared:
                value = kwargs.pop(option.name)
                values[option.name] = tuple(value or ()) if option.multiple else value
            func(**kwargs, target_values=values)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
        return command

    return decorate


@app.command()
@_target_options("plan")
def plan(
    scenario: Annotated[Path, typer.Argument(help="The scenario file.", show_default=False)],
    design: DesignOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    actions: Annotated[bool, typer.Option("--actions", help="List every apply/revert action.")] = False,
    target: Annotated[
        str, typer.Option(help="local, or kubernetes: list every API call the run would make.")
    ] = "local",
    target_values: TargetValues | None = None,
) -> None:
    """Show what a run would do, without running anything: the timeline in incident and run time,
    the blast radius of each phase, and the findings (hidden dependencies, sovereignty). With
    --target kubernetes, every API call (verb, kind, namespace/name, field changes) each action
    would make — and none is made; --discover only reads which APIs each cluster serves and the
    PodDisruptionBudgets a deletion or eviction would break.

    [b]Example[/b]:
      bascule plan scenarios/incidents/aws-us-east-1-2025-10-20.yaml -d designs/active-passive-sovereign.yaml
    """
    try:
        loaded = read_scenario(scenario)
        design_path = design or scenario_design_path(scenario, loaded)
        if design_path is None:
            err.print("[red]error[/red] the scenario names no design: pass --design FILE")
            raise typer.Exit(ExitCode.INVALID_INPUT)
        the_design = read_design(design_path)
        built = make_plan(the_design, loaded)
        check_pair(loaded, the_design, str(scenario))
        described = describe_plan(target, built, the_design, target_values)
    except ScenarioError as exc:
        raise _fail_input(exc) from exc
    if isinstance(described, Refusal):
        err.print(f"[red]error[/red] {escape(described.reason)}", highlight=False)
        raise typer.Exit(described.exit_code)
    if described.lines:  # the target's own account of what the run would do
        for line in described.lines:
            out.print(line, highlight=False, soft_wrap=True, markup=False)
    elif as_json:
        typer.echo(json.dumps(plan_to_dict(built), indent=2, ensure_ascii=False))
    else:
        out.print(render_plan(built, show_actions=actions))
    for refusal in described.refusals:
        err.print(f"[red]refused[/red] {escape(refusal)}", highlight=False, soft_wrap=True)
    if described.refusals:
        raise typer.Exit(ExitCode.INVALID_INPUT)


@app.command()
@_target_options("run")
def run(
    scenario: Annotated[Path, typer.Argument(help="The scenario file.", show_default=False)],
    design: DesignOption = None,
    target: Annotated[
        str, typer.Option(help="Where to run: local (the embedded target) or kubernetes.")
    ] = "local",
    out: Annotated[
        Path | None, typer.Option("--out", help="The run directory (default: runs/<time>-<ids>).")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="One line per event instead of the live view.")
    ] = False,
    load_workers: Annotated[
        int, typer.Option("--load-workers", min=0, help="Locust worker processes (0: one process).")
    ] = 0,
    raw_samples: Annotated[
        bool, typer.Option("--raw-samples", help="Journal every request, not only windows.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve live figures as Prometheus metrics (127.0.0.1)."),
    ] = None,
    otlp: Annotated[
        bool,
        typer.Option(
            "--otlp",
            help="Receive the services' OpenTelemetry spans (OTLP/HTTP on 127.0.0.1) as a source of "
            "paths; started services are pointed at it (docs/traces.md).",
        ),
    ] = False,
    otlp_port: Annotated[
        int | None,
        typer.Option(
            "--otlp-port",
            min=1,
            max=65535,
            help="The --otlp receiver's port on 127.0.0.1 (implies --otlp; default: an ephemeral one): a "
            "fixed endpoint for services already running (url:) to export to.",
        ),
    ] = None,
    otlp_timeline: OtlpTimelineOption = None,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Serve the live game-day page on 127.0.0.1 (its URL, with a token, printed at start; "
            "docs/game-day.md).",
        ),
    ] = False,
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port", min=0, max=65535, help="The page's port (implies --web; default: a free one)."
        ),
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", min=0, max=100, help="Exit 1 when the score is below this (0–100)."),
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            min=1,
            help="Run it N times (fresh stack each) and judge the runs together (docs/repeats.md).",
        ),
    ] = 1,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="With --repeat: flag regressions beyond noise against this earlier output."
        ),
    ] = None,
    target_values: TargetValues | None = None,
) -> None:
    """Run a scenario end to end: start the design's stack, drive load and probes, replay the
    incident's faults, roll everything back, and write the run's journal.

    Writes the journal, then result.json, summary.md, report.html and PNG charts into the run
    directory (re-render them with `bascule report RUN_DIR`).

    Exit codes: 0 completed and every objective met, 1 objectives not met (or the score below
    --min-score, or the hypothesis failed after rollback), 2 invalid input, 3 aborted (guardrail,
    Ctrl-C, SIGTERM), 4 target or infrastructure error.

    With --repeat N (N ≥ 2): N runs into OUT/run-1 … run-N, then repeat.json and repeat.md with a
    95 % interval and a pass / fail / inconclusive verdict per objective, and the flaky ones;
    exit 0 only when every objective passes (inconclusive exits 1), docs/repeats.md. With
    --baseline DIR (a previous repeat's or suite's output) too: a figure whose interval is worse
    than and apart from its baseline interval is a regression, and exits 1.

    With --web: a live page on 127.0.0.1 shows the plan's timeline, success ratio and p95 per
    region, traffic share by region and sovereignty level, findings and guardrails; its abort
    button stops the run and rolls everything back, as Ctrl-C does (docs/game-day.md).

    [b]Example[/b]: bascule run scenarios/incidents/aws-us-east-1-2025-10-20.yaml
    """
    options = RunOptions(
        scenario=scenario,
        target=choose(target, target_values),
        design=design,
        out=out,
        quiet=quiet,
        load_workers=load_workers,
        raw_samples=raw_samples,
        metrics_port=metrics_port,
        otlp=otlp or otlp_port is not None,
        otlp_port=otlp_port,
        otlp_timeline=otlp_timeline,
        web_port=web_port if web_port is not None else (0 if web else None),
    )
    if repeat > 1 or baseline is not None:
        try:
            repeat_run(options, repeat, min_score=min_score, baseline=baseline, console=out_console)
        except ScenarioError as exc:
            raise _fail_input(exc) from exc
    try:
        outcome = run_scored(options, min_score=min_score, console=out_console)
    except ScenarioError as exc:
        raise _fail_input(exc) from exc
    if outcome.run_dir / "result.json" in outcome.reports:  # written by this run
        _print_verdict(outcome.run_dir / "result.json")
    style = "green" if outcome.exit_code == 0 else "red"
    out_console.print(f"[{style}]{outcome.reason}[/{style}] (exit {outcome.exit_code})", highlight=False)
    out_console.print(f"journal: {outcome.run_dir / 'journal.jsonl'}", highlight=False)
    report = outcome.run_dir / "report.html"
    if report in outcome.reports:
        out_console.print(f"report: {report} · summary: {outcome.run_dir / 'summary.md'}", highlight=False)
        append_step_summary(outcome.run_dir / "summary.md")
    _done_with_everything.set()
    raise typer.Exit(outcome.exit_code)


def _print_verdict(path: Path) -> None:
    """The score, its dimensions and the key figures of the run's result."""
    try:
        result = read_result(path)
    except (OSError, ValueError) as exc:
        out_console.print(f"[yellow]{escape(f'cannot read {path}: {exc}')}[/yellow]", highlight=False)
        return
    out_console.print()
    out_console.print(render_terminal(result), highlight=False)
    out_console.print()


@app.command()
def faults() -> None:
    """List the fault vocabulary: each kind, what a client sees, what it can target, its parameters.

    [b]Example[/b]: bascule faults
    """
    out.print(render_faults())


@app.command()
def regions() -> None:
    """List the built-in region catalog with provider, jurisdiction and sovereignty level.

    [b]Example[/b]: bascule regions
    """
    out.print(render_catalog())


# Registered after the verbs defined above, so that `bascule --help` lists them in this order.
app.command("suite", short_help="Run scenarios × designs for CI: one exit code, JUnit XML, suite.md.")(
    suite_command
)
app.command("report", short_help="Re-render a run's result.json, summary.md, report.html, charts.")(
    report_command
)
app.command("compare", short_help="Designs side by side over the same scenarios: compare.md, .html.")(
    compare_command
)
app.add_typer(stack_app, name="stack")
app.command("inject", short_help="One fault, by hand, on a running `bascule stack up`.")(inject_command)
app.command("recover", short_help="Clean up after a killed run or injector: processes, faults.")(
    recover_command
)
app.command("init", short_help="Write a design and a scenario for a service of your own.")(init_command)
app.add_typer(render_app, name="render")
app.command("deploy", short_help="Apply rendered manifests to the mapped Kubernetes clusters.")(
    deploy_command
)
app.add_typer(cluster_app, name="cluster")
app.add_typer(scenarios_app, name="scenarios")
app.add_typer(designs_app, name="designs")


_done_with_everything = threading.Event()
"""Set by a command once everything it wrote is closed (`bascule run`: journal, ledger, reports,
the step summary), so that `main` may exit without tearing the interpreter down."""


def main() -> None:
    try:
        app()
    except BasculeError as exc:
        err.print(f"[red]error[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        used = isinstance(exc, RunDirectoryInUseError)  # the --out given, not the machine
        raise SystemExit(ExitCode.INVALID_INPUT if used else ExitCode.TARGET_ERROR) from exc
    except SystemExit as done:
        if isinstance(done.code, int) and (done.code == ExitCode.ABORTED or signalled()):
            _exit_now(done.code)
        if isinstance(done.code, int) and _done_with_everything.is_set() and not _working_threads():
            # A finished run: the user waits on nothing but the interpreter's teardown, 1.1–1.4 s
            # on a loaded 2-core machine (0.05 s without it); the atexit handlers still run.
            atexit._run_exitfuncs()
            _exit_now(done.code)
        raise


def _working_threads() -> list[threading.Thread]:
    """Threads other than the main one that a normal exit would wait for."""
    main_thread = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main_thread and not t.daemon and t.is_alive()]


def _exit_now(code: int) -> None:
    """Exit without tearing the interpreter down: an interrupted command (whoever interrupted it
    wants it gone), or a finished `bascule run` — the teardown of bascule's modules alone takes
    0.6–1.4 s on a loaded 2-core machine. Everything the command wrote is closed by now (journal,
    ledger, reports); the standard streams and the logging handlers are flushed first."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
