"""Target name → the package that starts it, with its command-line options declared as data.

    chosen = choose("kubernetes", {"target_file": Path("target.yaml"), "kubeconfig": None})
    started = chosen.start(StartRequest(design, design_path, run_dir, progress))  # Target | Refusal
    described = describe_plan("kubernetes", built, design, values)  # what `bascule plan` prints
    for report in recover(run_dir, grace=3.0): ...                   # `bascule recover`

A target's package gives a `TargetPackage` (its module's ``PACKAGE``), imported on first use: the
Kubernetes client takes about a second to import, and only the verbs that act on clusters pay for
it. Adding a target is its package and one `Entry` here (or a call to `register`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from bascule.model.design import Design
from bascule.plan.model import Plan
from bascule.targets.base import Refusal, StartRequest, Target, TargetStarter

__all__ = [
    "TARGETS",
    "Entry",
    "OptionValue",
    "PlanDescription",
    "Recovery",
    "TargetOption",
    "TargetPackage",
    "Verb",
    "choose",
    "describe_plan",
    "names",
    "options",
    "recover",
    "register",
    "unfinished_runs",
]

OptionValue = Path | str | bool | float | tuple[str, ...] | None
Verb = Literal["plan", "run"]


@dataclass(frozen=True)
class TargetOption:
    """One command-line option of a target: ``--<name with dashes>`` on the verbs named."""

    name: str
    """The parameter's name, e.g. ``target_file`` (``--target-file``)."""
    kind: Literal["path", "text", "flag", "seconds"]
    help: str
    verbs: tuple[Verb, ...] = ("plan", "run")
    multiple: bool = False
    """Repeatable (``--confirm a --confirm b``): its value is a tuple of texts."""
    default: float | None = None
    """A ``seconds`` option's default, shown in ``--help``."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class PlanDescription:
    """What ``bascule plan --target X`` prints beyond the plan: the target's own lines (what it
    would do, none of it done) and the phases it refuses. No lines: the plan's rendering says it all."""

    lines: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()


class Recovery(Protocol):
    """What recovering one target's part of a run found and did."""

    @property
    def clean(self) -> bool: ...

    def lines(self) -> list[str]: ...


class TargetPackage(Protocol):
    """What a target's package gives the registry (its module's ``PACKAGE``)."""

    def choose(self, values: Mapping[str, OptionValue]) -> TargetStarter:
        """The target bound to its options, parsed into its own typed options."""
        ...

    def describe_plan(
        self, built: Plan, design: Design, values: Mapping[str, OptionValue]
    ) -> PlanDescription | Refusal: ...

    def recover(self, run_dir: Path, *, grace: float) -> Recovery | None:
        """Clean up what a killed run left on this target; None when it left nothing of it."""
        ...

    def unfinished_runs(self, root: Path) -> list[Path]:
        """Run directories under `root` this target's ledger says were neither closed nor recovered."""
        ...


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    """The module whose ``PACKAGE`` is the target's `TargetPackage`, imported on first use."""
    options: tuple[TargetOption, ...] = ()

    def package(self) -> TargetPackage:
        found: TargetPackage = importlib.import_module(self.module).PACKAGE
        return found


TARGETS: dict[str, Entry] = {}


def register(entry: Entry) -> None:
    TARGETS[entry.name] = entry


register(
    Entry(
        "local",
        "bascule.targets.local.package",
        (
            TargetOption(
                "stack_timeout",
                "seconds",
                "Local: seconds every process has to start and be ready (a component's "
                "command: start_timeout: gives it longer).",
                verbs=("run",),
                default=60.0,
            ),
        ),
    )
)
register(
    Entry(
        "kubernetes",
        "bascule.targets.kubernetes.package",
        (
            TargetOption("target_file", "path", "Kubernetes: the target file (docs/kubernetes.md)."),
            TargetOption("kubeconfig", "path", "Kubernetes: the kubeconfig (default: the target file's)."),
            TargetOption(
                "confirm",
                "text",
                "Kubernetes: a context on another machine you mean to act on (repeat; or "
                "BASCULE_CONFIRM_CONTEXTS).",
                verbs=("run",),
                multiple=True,
            ),
            TargetOption(
                "discover",
                "flag",
                "Kubernetes: ask each cluster what it serves and holds (GET only): Chaos Mesh, and "
                "the PodDisruptionBudgets a deletion would break.",
                verbs=("plan",),
            ),
        ),
    )
)


def names() -> Sequence[str]:
    return list(TARGETS)


def options(verb: Verb) -> list[TargetOption]:
    """Every target's options for `verb`, each once (targets may share one), in registry order."""
    found: dict[str, TargetOption] = {}
    for entry in TARGETS.values():
        for option in entry.options:
            if verb in option.verbs:
                found.setdefault(option.name, option)
    return list(found.values())


def _unknown(name: str) -> str:
    return f"unknown target {name!r}: {' or '.join(TARGETS)}"


def _own(entry: Entry, values: Mapping[str, OptionValue] | None) -> dict[str, OptionValue]:
    names = {o.name for o in entry.options}
    return {k: v for k, v in (values or {}).items() if k in names}


@dataclass(frozen=True)
class _Unknown:
    """A name no entry has: the run refuses it at start, journaled like any refusal."""

    name: str

    def start(self, request: StartRequest) -> Target | Refusal:
        return Refusal(_unknown(self.name))


def choose(name: str, values: Mapping[str, OptionValue] | None = None) -> TargetStarter:
    """The target `name` bound to its options (`values` by option name; other targets' are ignored)."""
    entry = TARGETS.get(name)
    if entry is None:
        return _Unknown(name)
    return entry.package().choose(_own(entry, values))


def describe_plan(
    name: str, built: Plan, design: Design, values: Mapping[str, OptionValue] | None = None
) -> PlanDescription | Refusal:
    """What ``bascule plan --target NAME`` prints. Raises `ScenarioError` for a bad target file."""
    entry = TARGETS.get(name)
    if entry is None:
        return Refusal(_unknown(name))
    return entry.package().describe_plan(built, design, _own(entry, values))


def recover(run_dir: Path, *, grace: float = 3.0) -> Iterator[Recovery]:
    """Recover every target's part of the run in `run_dir`, one report each as it is done. Raises
    `TargetError` when a target could not read what the run left, `FileNotFoundError` when no
    target left anything there."""
    found = False
    for entry in TARGETS.values():
        report = entry.package().recover(run_dir, grace=grace)
        if report is not None:
            found = True
            yield report
    if not found:
        raise FileNotFoundError(f"{run_dir} holds no target's ledger: not a run directory")


def unfinished_runs(root: Path) -> list[Path]:
    """Run directories under `root` that some target's ledger says were left unfinished."""
    found: list[Path] = []
    for entry in TARGETS.values():
        found += [d for d in entry.package().unfinished_runs(root) if d not in found]
    return sorted(found)
