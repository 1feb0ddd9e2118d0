"""``bascule stack``: run the reference stack of a design on this machine, and ask it questions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bascule.edge import Edge, NoEntryError
from bascule.errors import BasculeError, ScenarioError
from bascule.exit_codes import ExitCode
from bascule.model.loading import read_design
from bascule.rundir import prepare_run_directory
from bascule.runner.interrupt import Abort, signals
from bascule.targets.local.stack import LocalStack, read_state
from bascule.web.stack import StackPage

__all__ = ["stack_app"]

stack_app = typer.Typer(
    name="stack",
    help="Run a design's reference RAG stack on this machine and query it.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)

DEFAULT_DESIGN = Path("designs/active-passive-sovereign.yaml")
DEFAULT_RUN_DIR = Path("runs/stack")


@stack_app.command("up")
def up(
    design: Annotated[Path, typer.Option("--design", "-d", help="The design file.")] = DEFAULT_DESIGN,
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Where logs and the stack's state go.")
    ] = DEFAULT_RUN_DIR,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", "--stack-timeout", help="Seconds allowed for every process to start and be ready."
        ),
    ] = 60.0,
    for_seconds: Annotated[
        float | None,
        typer.Option("--for", help="Stop by itself after this many seconds (default: until Ctrl-C)."),
    ] = None,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Serve a page on 127.0.0.1 to inject and revert faults (URL with a token printed; "
            "docs/game-day.md).",
        ),
    ] = False,
    web_port: Annotated[
        int | None,
        typer.Option(
            "--web-port", min=0, max=65535, help="The page's port (implies --web; default: a free one)."
        ),
    ] = None,
) -> None:
    """Start one process per component replica per region, a DNS server and a route per hop; wait
    until all are ready, print the endpoints, and run until Ctrl-C or SIGTERM (then stop
    everything; a second one kills rather than stops). Exit 0 when stopped that way or after
    --for; 3 when interrupted while still starting (everything started is stopped); 4 when the
    stack could not start.

    With --web: a page on 127.0.0.1 offers the fault vocabulary as a form; each fault is injected
    as `bascule inject` does (undo in the ledger first) and held until its duration ends or its
    revert button is pressed; the abort button, and stopping the stack, revert them all.

    [b]Example[/b]: bascule stack up --design designs/active-passive-sovereign.yaml --web
    """
    try:
        loaded = read_design(design)
    except ScenarioError as exc:
        for problem in exc.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False)
        raise typer.Exit(ExitCode.INVALID_INPUT) from exc
    prepare_run_directory(run_dir)
    with signals(Abort()) as abort:
        try:
            with out.status(f"starting the stack of {loaded.id!r}…") as status:
                stack = LocalStack.start(
                    loaded,
                    design,
                    run_dir,
                    timeout=timeout,
                    progress=status.update,
                    control=True,
                    cancel=abort.event,
                )
        except BasculeError as exc:
            if abort.is_set:
                err.print(f"[yellow]{abort.reason}[/yellow] while starting: everything started was stopped")
                raise typer.Exit(ExitCode.ABORTED) from exc
            err.print(f"[red]error[/red] {exc}", highlight=False)
            raise typer.Exit(ExitCode.TARGET_ERROR) from exc
        page = None
        try:
            if not abort.is_set:
                _announce(stack, run_dir)
            if web or web_port is not None:
                page = StackPage(loaded, run_dir, port=web_port or 0)
                out.print(f"game-day page: {page.start()}", highlight=False, soft_wrap=True)
            deadline = None if for_seconds is None else time.monotonic() + for_seconds
            while not abort.is_set and (deadline is None or time.monotonic() < deadline):
                abort.event.wait(0.2)
        except OSError as exc:  # the page's port
            err.print(f"[red]error[/red] the game-day page: {exc}", highlight=False)
            raise typer.Exit(ExitCode.TARGET_ERROR) from exc
        finally:
            if page is not None:
                page.stop()  # reverts what the page injected while the stack still runs
            with out.status("stopping…"):
                stack.stop(timeout=0.5 if abort.hurry else 3.0)
            out.print("stopped: every process of the stack is gone.")


def _announce(stack: LocalStack, run_dir: Path) -> None:
    t = stack.timings
    out.print(
        f"[green]ready[/green]: {len(stack.layout.replicas)} processes, {len(stack.route_ports)} routes, "
        f"all ready in [bold]{t.ready:.2f} s[/bold] (announced {t.announced:.2f} s)"
    )
    out.print(_endpoints(stack))
    out.print(f"state: {run_dir / 'stack.json'} · logs: {run_dir / 'logs'}")
    if stack.scrape is not None:
        out.print(f"Prometheus scrape targets (file_sd, docs/metrics.md): {stack.scrape.path}")
    design = stack.design
    entry = design.entry_component()
    if entry is None:  # the reference stack: its gateway answers questions
        out.print(
            f'ask it: bascule stack ask "What pretension is applied to a mooring line?" --run-dir {run_dir}'
        )
        component, region = "retriever", design.regions[0].id
    else:  # services of one's own: bascule knows their addresses, not their requests
        entries = stack.entries()
        # The first region of the routing order that has an entry route: no failover, as the edge
        # gives clients.
        first = next(((r, entries[r]) for r in design.routing_order if r in entries), None)
        if first is not None:
            where, url = first
            out.print(f"call it: curl {url}/  (your {entry} in {where}, through its route)")
        component = next((c for c in design.components if c != entry), entry)
        region = next(iter(design.components[component].replicas))
    out.print(
        f"break it: bascule inject crash --target component={component},region={region} "
        f"--for 30s --run-dir {run_dir}"
    )


def _endpoints(stack: LocalStack) -> Table:
    asked = " (through the edge: bascule stack ask)" if stack.design.entry_component() is None else ""
    table = Table(title=f"Entry points{asked}", title_justify="left")
    table.add_column("region")
    table.add_column("sovereignty")
    table.add_column("entry point")
    for region, url in stack.entries().items():
        level = stack.design.region(region).sovereignty.value
        table.add_row(region, level, url)
    processes = Table(title="Processes", title_justify="left")
    for column in ("name", "region", "pid", "address"):
        processes.add_column(column)
    for replica in stack.supervisor.replicas():
        # host:port, not a URL: a process of one's own may speak any protocol (a database, a cache).
        address = replica.url.removeprefix("http://") if replica.url else "-"
        processes.add_row(replica.spec.name, replica.spec.group, str(replica.pid), address)
    grid = Table.grid(padding=(1, 0))
    grid.add_row(table)
    grid.add_row(processes)
    return grid


@stack_app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    data_class: Annotated[
        str, typer.Option("--data-class", "-c", help="The request's data class.")
    ] = "internal",
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="The running stack's directory.")
    ] = DEFAULT_RUN_DIR,
) -> None:
    """Ask a running stack a question through its edge, and show which regions served it.

    [b]Example[/b]: bascule stack ask "What is the weekly on-call allowance?" --data-class confidential
    """
    try:
        state = read_state(run_dir)
        entries = state["entries"]
        assert isinstance(entries, dict)
        design = read_design(str(state["design_path"]))
        entry = design.entry_component()
        if entry is not None:  # a service of one's own: its requests are its own, not /v1/ask
            urls = ", ".join(f"{region}: {url}" for region, url in entries.items())
            err.print(
                f"[red]error[/red] stack ask speaks the reference stack's question API (POST /v1/ask); "
                f"this design enters through your own {entry!r} — call it yourself ({urls}), "
                "or inject faults with bascule inject",
                highlight=False,
            )
            raise typer.Exit(ExitCode.INVALID_INPUT)
        if data_class not in design.data_classes:
            err.print(
                f"[red]error[/red] unknown data class {data_class!r}; the design has: "
                f"{', '.join(design.data_classes)}",
                highlight=False,
            )
            raise typer.Exit(ExitCode.INVALID_INPUT)
        edge = Edge(design, {str(k): str(v) for k, v in entries.items()})
        answer = edge.ask_once(question, data_class)
    except (BasculeError, NoEntryError) as exc:
        err.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(ExitCode.TARGET_ERROR) from exc
    body = answer.body or {}
    if not answer.ok:
        err.print(
            f"[red]failed[/red] after {len(answer.attempts)} attempt(s): {answer.error}", highlight=False
        )
        for attempt in answer.attempts:
            err.print(f"  {attempt.region}: {attempt.status or attempt.error}", highlight=False)
        raise typer.Exit(ExitCode.TARGET_ERROR)
    out.print(str(body.get("answer", "")), highlight=False, markup=False)
    citations = body.get("citations") or []
    out.print(
        f"[dim]citations:[/dim] {', '.join(map(str, citations)) or 'none'}"
        + ("  [yellow](degraded: retrieval only)[/yellow]" if body.get("degraded") else "")
    )
    hops = Table(
        title=f"served by (entry {answer.region}, {answer.seconds * 1000:.0f} ms)", title_justify="left"
    )
    for column in ("component", "region", "provider", "jurisdiction", "sovereignty"):
        hops.add_column(column)
    for hop in body.get("served_by") or []:
        if isinstance(hop, dict):
            hops.add_row(
                *(
                    str(hop.get(c, ""))
                    for c in ("component", "region", "provider", "jurisdiction", "sovereignty")
                )
            )
    out.print(hops)
