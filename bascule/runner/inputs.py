"""What a run is given and what it gives back: its options, its loaded inputs (scenario, design,
plan), its outcome and the caller's scoring step — kept apart from the lifecycle in
`bascule.runner.run`, which re-exports them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from bascule.errors import Problem, ScenarioError
from bascule.model.design import Design
from bascule.model.loading import read_design, read_scenario, scenario_design_path
from bascule.model.scenario import Scenario
from bascule.plan import Plan, plan
from bascule.targets.base import JsonFields, TargetStarter

__all__ = [
    "RunInputs",
    "RunOptions",
    "RunOutcome",
    "Scored",
    "Scoring",
    "check_pair",
    "default_run_dir",
    "load_inputs",
]


@dataclass(frozen=True)
class RunOptions:
    scenario: Path
    target: TargetStarter
    """The target chosen with its options (`bascule.targets.registry.choose`)."""
    design: Path | None = None
    """The design file (default: the one the scenario names)."""
    out: Path | None = None
    """The run directory (default: ``runs/<time>-<scenario>-<design>``)."""
    quiet: bool = False
    """One line per event instead of the live view."""
    load_workers: int = 0
    """Locust worker processes (0: one process)."""
    raw_samples: bool = False
    """Journal every request, not only windows."""
    metrics_port: int | None = None
    """Serve live figures as Prometheus metrics on this port of 127.0.0.1."""
    otlp: bool = False
    """Receive the services' OpenTelemetry spans over OTLP/HTTP for the run (``--otlp``,
    docs/traces.md): their endpoint is handed to the target, and spans are a source of paths."""
    otlp_port: int | None = None
    """The receiver's port on 127.0.0.1 (``--otlp-port``); None: an ephemeral one."""
    otlp_timeline: str | None = None
    """Send the run's timeline as OpenTelemetry spans to this OTLP/HTTP collector once the run is
    over (``--otlp-timeline``, `bascule.traces.timeline`)."""
    web_port: int | None = None
    """Serve the live game-day page on this port of 127.0.0.1 (0: a free one; ``--web``,
    docs/game-day.md); None: no page."""


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    run_dir: Path
    reason: str
    """Why the run ended as it did: ``completed``, the abort's reason, the error."""
    reports: tuple[Path, ...] = ()
    """The report files its caller wrote (`bascule.ci.results.run_scored`)."""
    hurried: bool = False
    """A second signal asked to exit at once (the reports are left to `bascule report`)."""


class Scored(Protocol):
    """What the caller's scoring step found (`bascule.reports.files.score_run`)."""

    @property
    def exit_code(self) -> int: ...

    @property
    def reason(self) -> str: ...

    @property
    def record(self) -> JsonFields | None:
        """The fields of the ``score`` record; None when scoring failed."""
        ...

    @property
    def note(self) -> str:
        """The live view's line, or why scoring failed."""
        ...


Scoring = Callable[[Path, int, str], Scored]
"""Scores a completed run from its journal (run directory, exit code, reason), before ``run-ended``."""


@dataclass(frozen=True)
class RunInputs:
    scenario: Scenario
    design: Design
    design_path: Path
    plan: Plan


def default_run_dir(scenario: Scenario, design: Design) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{scenario.id}-{design.id}"


_REFERENCE_PATHS: dict[str, tuple[tuple[str, ...], str]] = {
    "rag": (("url",), "POST /v1/ask"),
    "sovereignty": (("url",), "POST /v1/ask"),
    "data": (("url",), "POST /v1/documents"),
    "freshness": (("write_url", "ask_url"), "POST /v1/documents and /v1/ask"),
}
"""Probe kinds that default to the reference gateway's paths: the fields that move them, and the
requests they would send without them."""


def check_pair(scenario: Scenario, design: Design, source: str) -> None:
    """What a scenario must say to run on a design entered through a service of one's own (how to
    probe it, what the load sends it). Raises `ScenarioError`; `bascule validate` and `plan` ask
    it too, so that they refuse what `run` would."""
    if design.entry_component() is not None and scenario.steady_state is None:
        raise ScenarioError(
            [
                Problem(
                    f"{design.id} enters through a service of your own ({design.entry_component()}), "
                    "which bascule has no default probe for: say how to check it in "
                    "steady_state.probes (an http probe with a path, or rag/data probes with their "
                    "request templates; docs/own-services.md)",
                    ("steady_state",),
                    source,
                )
            ]
        )
    entry, load = design.entry_component(), scenario.load
    if entry is not None and scenario.steady_state is not None:
        problems = [
            Problem(
                f"{design.id} enters through a service of your own ({entry}): this {probe.kind} "
                f"probe has no {', '.join(missing)}, and would send the reference gateway's "
                f"{_REFERENCE_PATHS[probe.kind][1]} to it — give the path on your service and its "
                "request and response shapes (docs/probes.md, docs/own-services.md)",
                ("steady_state", "probes", i),
                source,
            )
            for i, probe in enumerate(scenario.steady_state.probes)
            if (
                missing := [
                    f for f in _REFERENCE_PATHS.get(probe.kind, ((), ""))[0] if getattr(probe, f) is None
                ]
            )
        ]
        if problems:
            raise ScenarioError(problems)
    if entry is not None and load is not None and "requests" not in load.model_fields_set:
        raise ScenarioError(
            [
                Problem(
                    f"{design.id} enters through a service of your own ({entry}): say what the load "
                    "sends it in load.requests (ask_path, ask and questions; write_path and write when "
                    "mix.writes is above 0; docs/own-services.md) — without it, the reference "
                    "gateway's POST /v1/ask and /v1/documents would go to it",
                    ("load", "requests"),
                    source,
                )
            ]
        )


def load_inputs(options: RunOptions) -> RunInputs:
    scenario = read_scenario(options.scenario)
    design_path = options.design or scenario_design_path(options.scenario, scenario)
    if design_path is None:
        raise ScenarioError(
            [Problem("the scenario names no design: pass --design FILE", (), str(options.scenario))]
        )
    design = read_design(design_path)
    check_pair(scenario, design, str(options.scenario))
    return RunInputs(scenario, design, Path(design_path), plan(design, scenario))
