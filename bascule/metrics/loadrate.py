"""What the load's own rate says about a run: a closed-model load that slowed down with the service.
Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bascule.metrics.model import Finding, PhasePlan
from bascule.metrics.state import FaultInterval, MergedWindow

__all__ = ["slowed_load"]

_EPS = 1e-9


def slowed_load(
    windows: Sequence[MergedWindow],
    intervals: Sequence[FaultInterval],
    first_fault: float | None,
    users: int | None,
    plans: Mapping[int, PhasePlan],
) -> tuple[Finding, ...]:
    """The phase where a closed-model load's request rate fell most below half its rate before
    the first fault: its users wait for each answer, so a slow service gets fewer requests, and
    what it did then weighs less in the run's figures (seen in a user's trial: availability 99 %
    over a fault that failed every write)."""
    if users is None or first_fault is None:
        return ()
    before = [w for w in windows if w.end <= first_fault + _EPS][1:]  # the first: a partial one
    seconds = sum(w.length for w in before)
    if not seconds:
        return ()
    usual = sum(w.requests for w in before) / seconds
    worst: tuple[float, int, float] | None = None
    for iv in intervals:
        if iv.revert is None:
            continue
        inside = [w for w in windows if w.start >= iv.apply - _EPS and w.end <= iv.revert + _EPS]
        span = sum(w.length for w in inside)
        if span >= 2.0:
            rate = sum(w.requests for w in inside) / span
            if rate < usual / 2 and (worst is None or rate / usual < worst[0]):
                worst = (rate / usual, iv.phase, rate)
    if worst is None:
        return ()
    _, phase, rate = worst
    plan = plans.get(phase)
    name = plan.name if plan is not None else f"phase {phase}"
    message = (
        f"During “{name}” the service got {rate:.1f} requests a second, against {usual:.1f} "
        f"before the first fault: the load's {users} users (a closed model) wait for each "
        "answer, so a slow service gets fewer requests, and its failures and latency then "
        "weigh less in the run's figures. To weigh a fault that slows the service by its "
        "time, give the load an arrival rate (load.rate; docs/load.md)."
    )
    return (Finding(kind="load", message=message, phase=phase),)
