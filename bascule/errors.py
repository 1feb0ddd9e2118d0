"""bascule's exception tree. Foreign exceptions are translated at the boundary with ``raise … from``.

BasculeError
├── ScenarioError      an input file (scenario or design) is invalid: every problem, with file:line:column
│   └── PlanError      the files are valid alone but do not fit together (unknown region, link, …)
├── TargetError        a target cannot start, reach or drive the system under test
├── FaultError         a fault could not be applied
├── RevertError        a fault could not be reverted (the undo ledger keeps it for `bascule recover`)
├── ProbeError         a probe is misconfigured or cannot run
└── RunDirectoryError  a run directory cannot be created or written (exit 4; nothing was started)
    └── RunDirectoryInUseError  it already holds a run, which a new one would mix with (exit 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BasculeError",
    "FaultError",
    "PlanError",
    "ProbeError",
    "Problem",
    "RevertError",
    "RunDirectoryError",
    "RunDirectoryInUseError",
    "ScenarioError",
    "TargetError",
    "format_path",
]

PathElement = str | int


def format_path(path: Sequence[PathElement]) -> str:
    """``("phases", 2, "fault", "kind")`` → ``phases[2].fault.kind``."""
    out = ""
    for element in path:
        if isinstance(element, int):
            out += f"[{element}]"
        else:
            out += f".{element}" if out else element
    return out or "(top level)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as the file allows."""

    message: str
    path: tuple[PathElement, ...] = ()
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        field = format_path(self.path) if self.path else ""
        return f"{where}: {field}: {self.message}" if field else f"{where}: {self.message}"


class BasculeError(Exception):
    """Base of every error bascule raises on purpose."""


class ScenarioError(BasculeError):
    """An input file is invalid. Carries every problem found, so a user fixes them in one pass."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(ScenarioError):
    """A scenario does not fit its design: it names a region, component, link or dependency the
    design lacks, or asks a fault kind of a target shape it cannot act on."""


class TargetError(BasculeError):
    """A target could not start, reach or drive the system under test."""


class FaultError(BasculeError):
    """A fault could not be applied."""


class RevertError(BasculeError):
    """A fault could not be reverted; its undo record stays in the ledger for ``bascule recover``."""


class ProbeError(BasculeError):
    """A probe is misconfigured or cannot run."""


class RunDirectoryError(BasculeError):
    """A run directory (``--out``, ``--run-dir``) cannot be created or written; raised before
    anything starts, or while a run writes its journal (the disk full), which ends the run."""


class RunDirectoryInUseError(RunDirectoryError):
    """A run directory already holds a run's journal: a new run there would append to it, and its
    result would mix both runs' requests. Refused before anything starts (exit 2)."""
