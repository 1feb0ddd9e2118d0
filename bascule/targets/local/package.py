"""The local target as the registry knows it (`targets.registry`): started for a run, described
for a plan, recovered after a killed run."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bascule.model.design import Design
from bascule.plan.model import Plan
from bascule.stack.layout import layout
from bascule.targets.base import Refusal, StartRequest, Target
from bascule.targets.local.ledger import LEDGER_FILE, read_ledger
from bascule.targets.local.names import names_refusal
from bascule.targets.local.recover import RecoverReport, recover
from bascule.targets.local.stack import LocalStack
from bascule.targets.local.target import LocalTarget, check_plan
from bascule.targets.registry import OptionValue, PlanDescription

__all__ = ["PACKAGE", "LocalOptions", "LocalPackage", "LocalStarter"]


@dataclass(frozen=True)
class LocalOptions:
    stack_timeout: float = 60.0
    """Seconds every process has to start and be ready (``--stack-timeout``); an own service's
    ``start_timeout`` gives it longer."""


@dataclass(frozen=True)
class LocalStarter:
    options: LocalOptions
    name: str = "local"

    def start(self, request: StartRequest) -> Target | Refusal:
        refused = names_refusal(layout(request.design).resolving)
        if refused is not None:
            return Refusal(refused)
        if request.plan is not None:
            # Pure: a phase this stack cannot carry out is refused before any process starts.
            phases = check_plan(request.plan, request.design)
            if phases:
                return Refusal(f"the local target refuses: {'; '.join(phases)}", phases=tuple(phases))
        request.progress("starting the stack")
        stack = LocalStack.start(
            request.design,
            request.design_path,
            request.run_dir,
            timeout=self.options.stack_timeout,
            progress=request.progress,
            otlp_endpoint=request.otlp_endpoint,
            cancel=request.cancel,
        )
        return LocalTarget(stack)


class LocalPackage:
    def choose(self, values: Mapping[str, OptionValue]) -> LocalStarter:
        timeout = values.get("stack_timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            return LocalStarter(LocalOptions(stack_timeout=float(timeout)))
        return LocalStarter(LocalOptions())

    def describe_plan(
        self, built: Plan, design: Design, values: Mapping[str, OptionValue]
    ) -> PlanDescription | Refusal:
        """The phases this machine's local stack could not carry out, and why; and, when services
        are given names and this machine cannot give them a resolver of their own, that."""
        refused = names_refusal(layout(design).resolving)
        return PlanDescription(refusals=(*((refused,) if refused else ()), *check_plan(built, design)))

    def recover(self, run_dir: Path, *, grace: float) -> RecoverReport | None:
        if not (run_dir / LEDGER_FILE).exists():
            return None
        return recover(run_dir, grace=grace)

    def unfinished_runs(self, root: Path) -> list[Path]:
        """Run directories under `root` whose ledger is unfinished: a run's (``root/RUN``), a
        command's shared fork server's (``root/SUITE``, `shared`) and the runs of that command
        (``root/SUITE/RUN``, ``root/SUITE/ITEM/run-K`` with ``--repeat``)."""
        found: list[Path] = []
        ledgers = (root.glob("/".join(["*"] * depth + [LEDGER_FILE])) for depth in (1, 2, 3))
        for ledger in sorted(itertools.chain.from_iterable(ledgers)):
            try:
                state = read_ledger(ledger)
            except OSError:
                continue
            if state.run is not None and not state.finished:
                found.append(ledger.parent)
        return found


PACKAGE = LocalPackage()
