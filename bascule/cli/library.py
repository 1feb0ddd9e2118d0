"""``bascule scenarios list`` and ``bascule designs list``: what the library holds, at a glance."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.design import Design
from bascule.model.durations import format_duration
from bascule.model.loading import read_design, read_scenario, scenario_design_path
from bascule.model.scenario import Scenario
from bascule.plan import plan

__all__ = ["designs_app", "scenarios_app"]

scenarios_app = typer.Typer(help="The scenario library.", no_args_is_help=True)
designs_app = typer.Typer(help="The design library.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

T = TypeVar("T")


def _files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found += sorted(path.rglob("*.yaml")) if path.is_dir() else [path]
    return found


def _read_each(paths: list[Path], read: Callable[[Path], T]) -> tuple[list[tuple[Path, T]], int]:
    """Every file read with `read`; one line on stderr for each that does not load, and how many."""
    loaded: list[tuple[Path, T]] = []
    failed = 0
    for path in _files(paths):
        try:
            loaded.append((path, read(path)))
        except ScenarioError as exc:
            err.print(
                f"[red]error[/red] {path}: {len(exc.problems)} problem(s); run bascule validate",
                highlight=False,
            )
            failed += 1
    return loaded, failed


def _kinds(scenario: Scenario) -> str:
    kinds: list[str] = []
    for phase in scenario.phases:
        kind = phase.fault.kind
        inner = getattr(phase.fault, "fault", None)
        label = f"{kind}({inner.kind})" if inner is not None else kind
        if label not in kinds:
            kinds.append(label)
    return ", ".join(kinds)


def _run_length(path: Path, scenario: Scenario) -> str:
    try:
        design_path = scenario_design_path(path, scenario)
        if design_path is None:
            return "—"
        return f"{plan(read_design(design_path), scenario).run_length:.0f} s"
    except ScenarioError:
        return "(does not plan)"


@scenarios_app.command("list")
def list_scenarios(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (default: scenarios/).", show_default=False)
    ] = None,
) -> None:
    """List scenarios: id, title, source, real duration, run length, the fault kinds used.

    [b]Example[/b]: bascule scenarios list scenarios/incidents
    """
    table = Table(title="Scenarios", title_justify="left")
    for column in ("id", "title", "source", "incident", "run", "kinds", "file"):
        table.add_column(column, overflow="fold")
    scenarios, failed = _read_each(paths or [Path("scenarios")], read_scenario)
    for path, scenario in scenarios:
        source = ", ".join(urlsplit(url).netloc for url in scenario.source) or "—"
        real = format_duration(scenario.duration) if scenario.duration else "—"
        table.add_row(
            scenario.id,
            scenario.title,
            source,
            real,
            _run_length(path, scenario),
            _kinds(scenario),
            str(path),
        )
    out.print(table)
    if failed:
        raise typer.Exit(ExitCode.INVALID_INPUT)


def _describe_design(design: Design) -> tuple[str, str, str, str]:
    regions = " → ".join(
        f"{region} ({design.region(region).sovereignty.value})" for region in design.routing_order
    )
    replication = design.replication.mode.value
    if design.replication.mode.value == "async":
        replication += f", lag {format_duration(design.replication.lag)}"
    guard = "on" if design.routing.sovereignty_guard else "off"
    return regions, design.routing.mode.value, replication, guard


@designs_app.command("list")
def list_designs(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders (default: designs/).", show_default=False)
    ] = None,
) -> None:
    """List designs: id, title, regions in routing order with their sovereignty level, routing
    mode, replication, and whether the sovereignty guard is on.

    [b]Example[/b]: bascule designs list
    """
    table = Table(title="Designs", title_justify="left")
    for column in ("id", "title", "regions (routing order)", "mode", "replication", "guard", "file"):
        table.add_column(column, overflow="fold")
    designs, failed = _read_each(paths or [Path("designs")], read_design)
    for path, design in designs:
        table.add_row(design.id, design.title, *_describe_design(design), str(path))
    out.print(table)
    if failed:
        raise typer.Exit(ExitCode.INVALID_INPUT)
