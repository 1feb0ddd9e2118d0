"""``bascule inject`` and ``bascule recover``: one fault by hand on a running stack, and the
clean-up after a run that was killed. Thin verbs over `bascule.targets.local.inject` and the
target registry's `recover` (each target cleans up its own part of a run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.markup import escape

from bascule.errors import BasculeError, FaultError, PlanError, TargetError
from bascule.exit_codes import ExitCode
from bascule.faults import FAULT_KINDS, AnyFault, Fault
from bascule.model.durations import parse_duration
from bascule.model.selector import Selector
from bascule.targets.local.inject import InjectEvent, InjectEventKind, inject
from bascule.targets.registry import recover, unfinished_runs

__all__ = ["inject_command", "parse_fault_argument", "parse_target_argument", "recover_command"]

out = Console()
err = Console(stderr=True)

DEFAULT_STACK_DIR = Path("runs/stack")
RUNS_DIR = Path("runs")

_FAULT_ADAPTER: TypeAdapter[Fault] = TypeAdapter(AnyFault)


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_fault_argument(kind: str, params: list[str]) -> Fault:
    """A fault from the command line: ``latency fixed=200ms jitter=50ms``; values are read as YAML
    (``statuses=[502,503]``, ``fault={kind: crash}``). Raises `ValueError` with a message for the user."""
    if kind not in FAULT_KINDS:
        raise ValueError(
            f"unknown fault kind {kind!r}; `bascule faults` lists them: {', '.join(FAULT_KINDS)}"
        )
    data: dict[str, Any] = {"kind": kind}
    for param in params:
        name, sep, value = param.partition("=")
        if not sep or not name:
            raise ValueError(f"a fault parameter is NAME=VALUE, got {param!r}")
        data[name.strip().replace("-", "_")] = _yaml_value(value)
    try:
        return _FAULT_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or kind}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"fault {kind!r}: {problems}") from None


def parse_target_argument(text: str) -> Selector:
    """A selector from ``component=store,region=aws/us-east-1`` or a YAML flow mapping
    (``{link: [aws/us-east-1, scaleway/fr-par]}``). Raises `ValueError`."""
    stripped = text.strip()
    if stripped.startswith("{"):
        data = _yaml_value(stripped)
        if not isinstance(data, dict):
            raise ValueError(f"--target {text!r} is not a mapping")
    else:
        data = {}
        for part in filter(None, (p.strip() for p in stripped.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not name:
                raise ValueError(f"--target takes NAME=VALUE[,NAME=VALUE…], got {part!r}")
            data[name.strip()] = _yaml_value(value.strip())
    try:
        return Selector.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise ValueError(f"--target {text!r}: {problems}") from None


def _print_event(event: InjectEvent, began: float) -> None:
    stamp = f"[dim]{event.monotonic - began:7.2f}s[/dim]"
    message = escape(event.message)  # effects name routes and values: [503] is no markup
    match event.kind:
        case InjectEventKind.PLANNED:
            out.print(f"{stamp} [bold]{message}[/bold]", highlight=False)
        case InjectEventKind.APPLIED:
            took = (
                f" (in force {event.transition.took * 1e3:.1f} ms after the call)" if event.transition else ""
            )
            out.print(f"{stamp} [red]applied[/red]{took}: {message}", highlight=False)
        case InjectEventKind.REVERTED:
            out.print(f"{stamp} [green]reverted[/green] {message}", highlight=False)
        case InjectEventKind.INTERRUPTED:
            out.print(f"{stamp} [yellow]interrupted[/yellow]: {message}", highlight=False)
        case InjectEventKind.NOTE:
            out.print(f"{stamp} {message}", highlight=False)


def inject_command(
    kind: Annotated[
        str, typer.Argument(help="The fault kind (`bascule faults` lists them).", show_default=False)
    ],
    params: Annotated[
        list[str] | None,
        typer.Argument(help="Fault parameters, NAME=VALUE (values read as YAML).", show_default=False),
    ] = None,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            "-t",
            help="What it acts on: component=store,region=aws/us-east-1 or a YAML mapping.",
            show_default=False,
        ),
    ] = "",
    for_: Annotated[
        str | None,
        typer.Option("--for", help="How long to hold it (30s, 2m); default: until Ctrl-C."),
    ] = None,
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="The running stack's directory (bascule stack up --run-dir).")
    ] = DEFAULT_STACK_DIR,
) -> None:
    """Inject one fault into a running `bascule stack up`, hold it, and revert it — whatever ends
    the wait (the duration, Ctrl-C, SIGTERM). Its undo is recorded in the stack's ledger first:
    if this command is killed outright, `bascule recover RUN_DIR` reverts it.

    [b]Examples[/b]:
      bascule inject crash --target component=retriever,region=aws/us-east-1 --for 30s
      bascule inject dns answer=nodata new_connections_only=true -t component=store,region=aws/us-east-1
      bascule inject flap 'fault={kind: refuse}' period=4s duty=0.5 -t dependency=aws-sts --for 1m
    """
    try:
        fault = parse_fault_argument(kind, params or [])
        if not target:
            raise ValueError("--target is required: what the fault acts on (component=…, region=…)")
        selector = parse_target_argument(target)
        duration = None if for_ is None else parse_duration(for_)
    except ValueError as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    began = time.monotonic()
    held = "until Ctrl-C" if duration is None else f"for {duration:g} s"
    out.print(f"injecting {kind} on {selector.describe()} {held} (stack in {run_dir})", highlight=False)
    try:
        report = inject(run_dir, fault, selector, duration, on_event=lambda e: _print_event(e, began))
    except PlanError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    except FaultError as exc:  # the fault touches nothing, or this stack cannot carry it out
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    except (BasculeError, OSError) as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(ExitCode.TARGET_ERROR) from exc
    ending = "interrupted, reverted" if report.interrupted else "reverted"
    out.print(
        f"[green]{ending}[/green]: held {report.held:.2f} s, nothing of it left in force", highlight=False
    )
    if report.interrupted:
        raise typer.Exit(ExitCode.ABORTED)


def recover_command(
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run directories to clean up (default: every run under ./runs left unfinished).",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 3.0,
) -> None:
    """Clean up after a run that was killed: stop every process it started (checked by PID and
    start time, so an unrelated process that reused a PID is never signalled), revert the faults
    its ledger holds, and report any port of it still bound. Recovering twice does no harm.

    A directory with no ledger in it — a run killed before it had started anything, even before
    its directory existed — has nothing to recover: it says so and counts as clean. With no
    directory named and no ./runs here, it warns that it looked at nothing.

    Exit codes: 0 nothing of the runs is left (or there was nothing to do), 4 something could not
    be cleaned up (see the report).

    [b]Example[/b]: bascule recover runs/20261126-101500-aws-us-east-1-2025-10-20
    """
    targets = list(run_dirs or [])
    if not targets:
        targets = unfinished_runs(RUNS_DIR)
        if not targets and not RUNS_DIR.is_dir():
            # Not "clean": nothing was looked at (a shell in another directory, runs made with --out).
            err.print(
                f"[yellow]warning[/yellow] there is no {RUNS_DIR}/ directory in {Path.cwd()}: nothing "
                "was looked at. Run `bascule recover` where your runs are, or name their directories.",
                highlight=False,
                soft_wrap=True,
            )
            return
        if not targets:
            out.print(f"no unfinished run under {RUNS_DIR}/: nothing to recover")
            return
    clean = True
    for run_dir in targets:
        try:
            for report in recover(run_dir, grace=grace):
                for line in report.lines():
                    out.print(line, highlight=False, soft_wrap=True)
                clean = clean and report.clean
        except FileNotFoundError:
            what = "holds no undo ledger" if run_dir.is_dir() else "does not exist"
            out.print(
                f"{run_dir} {what}: the run started nothing there, nothing to recover",
                highlight=False,
                soft_wrap=True,
            )
        except TargetError as exc:
            err.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
            clean = False
    if not clean:
        raise typer.Exit(ExitCode.TARGET_ERROR)
