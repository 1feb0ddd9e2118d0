"""Incident time to run time. Pure.

``scale`` is run seconds per incident second: ``compress_to / duration``, or ``time_scale``, or 1.
A phase starts at ``at × scale`` and ends at ``end × scale``, stretched to last at least
``min_phase``. Starts keep their order (scaling is monotonic); a stretched phase may end later than
a phase that followed it. The run lasts ``duration × scale`` — exactly ``compress_to`` — unless a
stretched phase ends after that, in which case it lasts until that phase ends (at most
``compress_to + min_phase``).
"""

from __future__ import annotations

from dataclasses import dataclass

from bascule.faults import Flap
from bascule.model.scenario import Replay

__all__ = ["FlapWindow", "PhaseTimes", "compute_scale", "flap_windows", "phase_times"]


def compute_scale(replay: Replay, real_duration: float) -> float:
    if replay.compress_to is not None:
        return replay.compress_to / real_duration if real_duration > 0 else 1.0
    if replay.time_scale is not None:
        return replay.time_scale
    return 1.0


@dataclass(frozen=True)
class PhaseTimes:
    run_start: float
    run_end: float
    stretched: bool


def phase_times(at: float, end: float, scale: float, min_phase: float) -> PhaseTimes:
    start = at * scale
    natural = end * scale
    stretched_end = start + min_phase
    if natural + 1e-9 < stretched_end:
        return PhaseTimes(start, stretched_end, True)
    return PhaseTimes(start, natural, False)


@dataclass(frozen=True)
class FlapWindow:
    on: float
    off: float


def flap_windows(flap: Flap, run_start: float, run_end: float, scale: float) -> list[FlapWindow]:
    """The on-windows of a flap in run time: period compressed, but never below ``min_period``."""
    period = max(flap.period * scale, flap.min_period)
    on_for = period * flap.duty
    windows: list[FlapWindow] = []
    t = run_start
    while t < run_end - 1e-6:
        windows.append(FlapWindow(t, min(t + on_for, run_end)))
        t += period
    return windows
