"""Faults on regions that carried none of the service's traffic: a run that measures no failover,
however well it scores. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bascule.metrics.model import Finding

__all__ = ["IDLE_REGIONS", "idle_regions"]

IDLE_REGIONS = "The regions the faults impair ("
"""How the finding begins (the terminal shows it as a warning, beside the faults that reached nothing)."""


def idle_regions(served: Mapping[tuple[str, str], int], impaired: Sequence[str]) -> tuple[Finding, ...]:
    """A finding when the regions the plan impairs served no request of the steady state while
    others did (`served`: the steady state's successes by data class and serving region): the
    traffic had left them before the first fault — an edge that had set the primary aside, a
    routing order the design does not follow —, so the faults struck no client's request there and
    a pass says nothing of a failover."""
    if not impaired:
        return ()
    there = sum(n for (_, region), n in served.items() if region in impaired)
    elsewhere = {region: n for (_, region), n in served.items() if region not in impaired and n}
    if there or not elsewhere:
        return ()
    regions = ", ".join(impaired)
    serving = ", ".join(sorted(elsewhere, key=lambda region: -elsewhere[region]))
    message = (
        f"{IDLE_REGIONS}{regions}) served no request in the steady state before "
        f"the first fault: the traffic was already on {serving}. The faults struck no client's "
        "request there, and this run measured no failover, whatever it scored. Where they are "
        "standbys by design, that is what the scenario tests; otherwise check why the service had "
        "left them before the faults (an edge that had set them aside, a start-up failure that "
        "tripped its health checks) and run it again."
    )
    return (Finding(kind="idle-regions", message=message, regions=tuple(impaired)),)
