"""The plan's data: resolved phases, the ordered apply/revert actions, and the static findings.
Frozen records, built by :func:`bascule.plan.plan` and read by targets, the runner and reports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bascule.faults import Fault
from bascule.model.topology import Link

__all__ = [
    "Action",
    "ActionOp",
    "Finding",
    "FindingKind",
    "Plan",
    "PlannedPhase",
    "ReplicaRef",
    "Severity",
    "TimeMap",
    "Touch",
]


@dataclass(frozen=True, order=True)
class ReplicaRef:
    component: str
    region: str
    index: int

    def __str__(self) -> str:
        return f"{self.component}#{self.index}@{self.region}"


@dataclass(frozen=True)
class Touch:
    """What a phase acts on, concretely, in this design (its blast radius)."""

    replicas: tuple[ReplicaRef, ...] = ()
    hops: tuple[Link, ...] = ()
    hosts: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    """Regions the fault acts in directly."""
    indirect: tuple[str, ...] = ()
    """Other regions hit through a shared dependency located in, or failing with, the above."""

    @property
    def empty(self) -> bool:
        return not (self.replicas or self.hops or self.hosts or self.dependencies or self.regions)


@dataclass(frozen=True)
class TimeMap:
    """How incident time maps to run time: ``run = incident × scale``, phases stretched to ``min_phase``."""

    scale: float
    real_duration: float
    run_length: float
    min_phase: float


@dataclass(frozen=True)
class PlannedPhase:
    index: int
    name: str
    fault: Fault
    selector: str
    real_start: float
    real_end: float
    run_start: float
    run_end: float
    stretched: bool
    """True when ``min_phase`` made the phase longer than its compressed length."""
    touch: Touch
    note: str = ""

    @property
    def kind(self) -> str:
        return self.fault.kind


class ActionOp(StrEnum):
    APPLY = "apply"
    REVERT = "revert"


@dataclass(frozen=True)
class Action:
    """Apply or revert one fault at ``offset`` seconds of run time. For a ``flap`` phase, each on/off
    cycle is its own apply/revert pair of the inner fault, numbered by ``cycle``."""

    offset: float
    op: ActionOp
    phase: int
    fault: Fault
    cycle: int | None = None

    @property
    def key(self) -> str:
        cycle = f".c{self.cycle}" if self.cycle is not None else ""
        return f"p{self.phase}{cycle}"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class FindingKind(StrEnum):
    HIDDEN_DEPENDENCY = "hidden-dependency"
    SOVEREIGNTY = "sovereignty"
    NO_FAILOVER = "no-failover"
    CLASS_OUTAGE = "class-outage"
    SCALE_UP_BLOCKED = "scale-up-blocked"
    INERT_PHASE = "inert-phase"
    IDLE_PHASE = "idle-phase"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    severity: Severity
    message: str
    regions: tuple[str, ...] = ()
    phase: int | None = None
    data_class: str | None = None


@dataclass(frozen=True)
class Plan:
    scenario_id: str
    design_id: str
    time: TimeMap
    phases: tuple[PlannedPhase, ...]
    actions: tuple[Action, ...]
    findings: tuple[Finding, ...]

    @property
    def run_length(self) -> float:
        return self.time.run_length

    def findings_of(self, kind: FindingKind) -> list[Finding]:
        return [f for f in self.findings if f.kind is kind]
