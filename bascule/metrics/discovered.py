"""Discovered dependencies as the metrics read them: the run's ``discovered-dependencies`` record,
its instants made plan-relative, and what it does to the sovereignty verdict. Pure.

A request of a data class that reached a host below its class's level is already a violation (the
runner judged its ``egress`` hop like any other). What this adds is the other half: reaches of an
outside host while bascule's traffic ran that no request could be tied to — no trace context, an
HTTPS tunnel, a DNS lookup — leave sovereignty unmeasured, since nobody can tell what data went
there. A violation seen elsewhere still fails it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bascule.journal.discovered import DiscoveredDependency, dependency_from_json

__all__ = ["outside_note", "parse_discovered", "shift_discovered"]


def parse_discovered(record: Mapping[str, Any]) -> tuple[DiscoveredDependency, ...]:
    """The entries of a ``discovered-dependencies`` record (those it cannot read are left out)."""
    items = record.get("dependencies")
    if not isinstance(items, Sequence) or isinstance(items, str):
        return ()
    readable = [item for item in items if isinstance(item, Mapping) and item.get("host")]
    return tuple(dependency_from_json(item) for item in readable)


def shift_discovered(found: Sequence[DiscoveredDependency], base: float) -> tuple[DiscoveredDependency, ...]:
    """`found` with its first and last reach in seconds since ``plan-started`` (`base`, run s)."""

    def at(t: float | None) -> float | None:
        return None if t is None else round(t - base, 6)

    return tuple(replace(d, first=at(d.first), last=at(d.last)) for d in found)


def outside_note(found: Sequence[DiscoveredDependency]) -> str | None:
    """Why sovereignty cannot pass on what was seen of outside hosts; None when it can."""
    blind = [d for d in found if d.unattributed]
    if not blind:
        return None
    n = sum(d.unattributed for d in blind)
    hosts = ", ".join(f"{d.host} ({d.unattributed})" for d in blind[:5])
    more = f" and {len(blind) - 5} more" if len(blind) > 5 else ""
    return (
        f"{n} reach{'es' if n != 1 else ''} of hosts outside the design could not be tied to a "
        f"request — {hosts}{more}: without trace context, through an HTTPS tunnel or seen only as a "
        "DNS lookup, which data went there is unknown"
    )
