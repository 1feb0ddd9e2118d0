"""What reached the parts a fault held while it was in force (a ``fault-reverted`` record's
``traffic``): written by the target that counts it, read by the metrics. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FaultTraffic", "over_cycles"]


@dataclass(frozen=True)
class FaultTraffic:
    """Connections and bytes sent on the routes a fault put in a state, lookups of the names it made
    fail, connections it reset, requests it answered or changed — over one cycle of it (a target's
    revert), or summed over a phase. Nothing reached (`reached`): the fault changed nothing the
    service used then, and the run says nothing of how the service bears it."""

    connections: int = 0
    """Connections the routes it held accepted."""
    bytes: int = 0
    """Bytes clients sent on those routes."""
    lookups: int = 0
    """Lookups of the names it made fail."""
    resets: int = 0
    """Connections it reset (a `dns` fault's, so that their clients look the name up again)."""
    faulted: int = 0
    """Requests on those routes it answered itself or whose answers it changed."""
    on_answers: bool = False
    """A fault on answers (`ttft`, `stream-cut`, `token-rate`, `degrade`, `model-swap`,
    `partial-index`, `embedding-mismatch`): traffic reached it only where it changed an answer —
    a stream-cut on routes that carried no event stream changed nothing the service used."""

    @property
    def reached(self) -> bool:
        if self.on_answers:
            return bool(self.faulted)
        return bool(self.connections or self.bytes or self.lookups or self.resets)

    def __add__(self, other: FaultTraffic) -> FaultTraffic:
        return FaultTraffic(
            self.connections + other.connections,
            self.bytes + other.bytes,
            self.lookups + other.lookups,
            self.resets + other.resets,
            self.faulted + other.faulted,
            self.on_answers or other.on_answers,
        )

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def over_cycles(counts: Sequence[FaultTraffic | None]) -> FaultTraffic | None:
    """What reached a phase's fault over its cycles (None: a cycle not counted): None unless every
    cycle was counted — or one that was counted did see traffic, which no uncounted one takes back."""
    counted = [c for c in counts if c is not None]
    if not counted:
        return None
    total = sum(counted, FaultTraffic())
    return total if total.reached or len(counted) == len(counts) else None
