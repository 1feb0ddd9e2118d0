"""``bascule init``: a design and a scenario for a service of your own, in a directory, from
flags or — on a terminal — questions. The text comes from `bascule.model.scaffold` (pure); this
module asks, checks that both files load and plan, and writes them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

from bascule.errors import ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.catalog import CATALOG
from bascule.model.durations import parse_duration
from bascule.model.loading import parse_design, parse_scenario
from bascule.model.scaffold import InitAnswers, render_design, render_scenario, slug
from bascule.model.suggest import did_you_mean
from bascule.plan import plan

__all__ = ["init_command"]

out = Console()
err = Console(stderr=True)

DESIGN_FILE = "design.yaml"
SCENARIO_FILE = "scenario.yaml"
DEFAULT_REGIONS = ("scaleway/fr-par", "ovhcloud/gra")


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error[/red] {message}", highlight=False)
    return typer.Exit(ExitCode.INVALID_INPUT)


def _regions(given: list[str], interactive: bool) -> tuple[str, ...]:
    regions = list(given)
    if not regions and interactive:
        answer = typer.prompt(
            "Regions, in routing order (the first is the primary)", default=" ".join(DEFAULT_REGIONS)
        )
        regions = answer.replace(",", " ").split()
    regions = regions or list(DEFAULT_REGIONS)
    for region in regions:
        if region not in CATALOG:
            raise _fail(
                f"unknown region {region!r}{did_you_mean(region, list(CATALOG))}; "
                "`bascule regions` lists them"
            )
    if len(set(regions)) != len(regions):
        raise _fail("a region is given twice")
    return tuple(regions)


def _urls(given: list[str], regions: tuple[str, ...]) -> tuple[str, ...]:
    by_region: dict[str, str] = {}
    for item in given:
        region, sep, url = item.partition("=")
        if not sep:
            if len(regions) != 1 or by_region:
                raise _fail(f"--url {item!r}: give REGION=URL when there are several regions")
            region, url = regions[0], item
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise _fail(f"--url {item!r}: give http://HOST:PORT")
        by_region[region] = url
    missing = [r for r in regions if r not in by_region]
    if missing:
        raise _fail(f"no --url for {', '.join(missing)}")
    extra = [r for r in by_region if r not in regions]
    if extra:
        raise _fail(f"--url for {', '.join(extra)}, which is not among the regions")
    return tuple(by_region[r] for r in regions)


def init_command(
    command: Annotated[
        str | None,
        typer.Option(
            "--command",
            "-c",
            help="How to start the service; {port} is where it must listen, {python} this Python.",
        ),
    ] = None,
    url: Annotated[
        list[str] | None,
        typer.Option("--url", "-u", help="A service already running: REGION=http://HOST:PORT (repeat)."),
    ] = None,
    region: Annotated[
        list[str] | None,
        typer.Option("--region", "-r", help="A region, in routing order (repeat; first = primary)."),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The service's name.")] = None,
    health_path: Annotated[
        str, typer.Option("--health-path", help="A path that answers 2xx when the service works.")
    ] = "/healthz",
    availability: Annotated[float, typer.Option(help="Objective: success ratio.", min=0.01, max=1.0)] = 0.99,
    rto: Annotated[str, typer.Option(help="Objective: recovery time.")] = "30s",
    latency_p95: Annotated[str, typer.Option("--latency-p95", help="Objective: p95 latency.")] = "2s",
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the two files.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write design.yaml and scenario.yaml for a service of your own: one that bascule starts
    (--command) or one already running (--url), in the regions given, with the objectives given.
    Without --command or --url, on a terminal, it asks.

    [b]Examples[/b]:
      bascule init -c "{python} app.py --port {port}" -r scaleway/fr-par -r ovhcloud/gra
      bascule init -u scaleway/fr-par=http://127.0.0.1:8080
    """
    interactive = sys.stdin.isatty()
    urls_given = list(url or [])
    if command is None and not urls_given:
        if not interactive:
            raise _fail("give --command (bascule starts the service) or --url (it already runs)")
        command = typer.prompt("Command that starts it ({port}: where it must listen; empty if running)", "")
        if not command:
            urls_given = [typer.prompt("Its URL (http://HOST:PORT)")]
    if command and urls_given:
        raise _fail("give --command or --url, not both")
    regions = _regions(list(region or []), interactive)
    argv = tuple(shlex.split(command)) if command else ()
    if command and "{port}" not in command:
        raise _fail("the command must say where to listen: put {port} in it (bascule chooses the port)")
    urls = () if argv else _urls(urls_given, regions)
    if not health_path.startswith("/"):
        raise _fail("--health-path starts with '/'")
    try:
        answers = InitAnswers(
            name=slug(name or directory.resolve().name),
            regions=regions,
            command=argv,
            urls=urls,
            health_path=health_path,
            availability=availability,
            rto=parse_duration(rto),
            latency_p95=parse_duration(latency_p95),
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    design_path, scenario_path = directory / DESIGN_FILE, directory / SCENARIO_FILE
    existing = [p for p in (design_path, scenario_path) if p.exists()]
    if existing and not force:
        raise _fail(f"{', '.join(str(p) for p in existing)} exists; pass --force to overwrite")
    design_text = render_design(answers)
    scenario_text = render_scenario(answers, DESIGN_FILE)
    try:
        design = parse_design(design_text, str(design_path))
        plan(design, parse_scenario(scenario_text, str(scenario_path)))
    except ScenarioError as exc:  # a bug of ours, or a name the model refuses: say which
        raise _fail(f"the files would not load: {exc}") from exc
    directory.mkdir(parents=True, exist_ok=True)
    design_path.write_text(design_text, encoding="utf-8")
    scenario_path.write_text(scenario_text, encoding="utf-8")
    out.print(f"wrote {design_path} and {scenario_path} for [b]{answers.name}[/b]", highlight=False)
    out.print(f"next: bascule plan {scenario_path}   then   bascule run {scenario_path}", highlight=False)
