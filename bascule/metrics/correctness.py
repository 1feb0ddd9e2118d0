"""Correctness over time: how many graded golden answers were right, window by window and region by
region, the stretches in which they were wrong, the *correctness RTO* (fault → answers correct
again, sustained) and the share of answers served wrong. Pure; docs/scoring.md defines each figure.

A window is *wrong* when its graded answers fall below the target — the scenario's
``objectives.correctness``, else the accuracy before the first fault, else 1 — by more wrong answers
than the steady state's own wrong answers explain (the binomial test of `explained_failures`, as for
availability). A wrong stretch ends once windows with graded answers have been right for `SUSTAIN`
seconds in a row: the availability RTO's definition, with graded answers in place of requests.
Windows that graded nothing neither prolong nor end a stretch: they say nothing of correctness.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bascule.metrics.model import Correctness
from bascule.metrics.noise import explained_failures
from bascule.metrics.state import Aggregate, MergedWindow, rounded

__all__ = [
    "SUSTAIN",
    "CorrectnessSeries",
    "WrongStretch",
    "compute_correctness",
    "correctness_series",
    "wrong_stretches",
]

SUSTAIN = 1.0
"""Seconds of right windows that end a wrong stretch (the availability RTO's `SUSTAIN`)."""
_EPS = 1e-9

Cause = Callable[[float, float], tuple[float | None, tuple[int, ...]]]
"""``cause(began, first window's end) -> (fault start, phases)``: what a stretch is counted from."""


@dataclass(frozen=True)
class WrongStretch:
    """Windows in which graded answers were below the target, merged until right for `SUSTAIN`."""

    start: float
    end: float | None
    """The end of its last wrong window; ``None`` if answers were not right again before the end."""
    cause: float | None
    """The fault start it counts from (as for an availability outage); ``None`` before any fault."""
    graded: int
    wrong: int

    @property
    def rto(self) -> float | None:
        if self.end is None or self.cause is None:
            return None
        return max(0.0, self.end - self.cause)


@dataclass(frozen=True)
class CorrectnessSeries:
    """One point per window: graded answers, and the share of them that was right (overall and by
    the region whose llm wrote them); ``None`` where a window graded nothing."""

    graded: tuple[int, ...]
    correct_ratio: tuple[float | None, ...]
    correct_region: dict[str, tuple[float | None, ...]]


def correctness_series(windows: Sequence[MergedWindow]) -> CorrectnessSeries:
    regions = sorted({r for w in windows for r, (_, n) in w.golden_by_region.items() if n})
    by_region: dict[str, list[float | None]] = {r: [] for r in regions}
    graded, ratio = [], []
    for w in windows:
        graded.append(w.golden[1])
        ratio.append(rounded(w.golden[0] / w.golden[1]) if w.golden[1] else None)
        for region, values in by_region.items():
            correct, n = w.golden_by_region.get(region, (0, 0))
            values.append(rounded(correct / n) if n else None)
    return CorrectnessSeries(tuple(graded), tuple(ratio), {r: tuple(v) for r, v in by_region.items()})


def _is_wrong(w: MergedWindow, target: float, noise_rate: float, alpha: float) -> bool:
    correct, graded = w.golden
    if not graded or correct >= target * graded - _EPS:
        return False
    return graded - correct > explained_failures(graded, noise_rate, alpha)


def wrong_stretches(
    windows: Sequence[MergedWindow],
    start: float,
    until: float,
    *,
    target: float,
    noise_rate: float,
    cause: Cause,
    alpha: float,
) -> list[WrongStretch]:
    """Wrong stretches that began in ``[start, until)``; `windows` in time order."""
    found: list[WrongStretch] = []
    first: MergedWindow | None = None
    last: MergedWindow | None = None
    right = 0.0
    graded = wrong = 0

    def close(ended: bool) -> None:
        assert first is not None and last is not None
        began, _ = cause(first.start, first.end)
        found.append(WrongStretch(first.start, last.end if ended else None, began, graded, wrong))

    for w in windows:
        if w.end <= start + _EPS or not w.golden[1]:
            continue
        if _is_wrong(w, target, noise_rate, alpha):
            if first is None:
                if w.start >= until:
                    break
                first, graded, wrong = w, 0, 0
            last, right = w, 0.0
        elif first is not None:
            right += w.length
        if first is not None:
            graded += w.golden[1]
            wrong += w.golden[1] - w.golden[0]
            if right >= SUSTAIN - _EPS:
                close(True)
                first = last = None
                right = 0.0
    if first is not None:
        close(False)
    return found


def compute_correctness(
    windows: Sequence[MergedWindow],
    baseline: Aggregate,
    whole: Aggregate,
    impact: tuple[float, float] | None,
    *,
    objective: float | None,
    cause: Cause,
    alpha: float,
    notes: dict[str, str],
    origin: float = 0.0,
) -> tuple[Correctness, tuple[WrongStretch, ...]]:
    """The run's correctness figures. `baseline` is what came before the first fault, `whole` the
    impact window (``impact``, journal instants; `origin` is the plan's start among them); `notes`
    gets why a figure is ``None``."""
    b_correct, b_graded = baseline.golden
    correct, graded = whole.golden
    base = b_correct / b_graded if b_graded else None
    during = correct / graded if graded else None
    if impact is not None and during is None:
        notes["correctness"] = "no golden answer was graded during the impact window"
    if base is None:
        notes["correctness_baseline"] = "no golden answer was graded before the first fault"
    stretches: list[WrongStretch] = []
    rto: float | None = None
    rto_from: float | None = None
    recovered: bool | None = None
    if impact is None or not graded:
        notes["correctness_rto"] = (
            "no fault was applied" if impact is None else "no golden answer was graded after the first fault"
        )
    else:
        target = objective if objective is not None else (base if base is not None else 1.0)
        noise_rate = (b_graded - b_correct) / b_graded if b_graded else 0.0
        stretches = wrong_stretches(
            windows, impact[0], impact[1], target=target, noise_rate=noise_rate, cause=cause, alpha=alpha
        )
        stretches = [s for s in stretches if s.cause is not None]
        if any(s.end is None for s in stretches):
            recovered = False
            notes["correctness_rto"] = (
                f"graded answers were not back at {target:.1%} correct, sustained {SUSTAIN:g} s, "
                "before the journal ended"
            )
        else:
            recovered = True
            rto = round(max((s.rto or 0.0 for s in stretches), default=0.0), 6)
            longest = max(stretches, key=lambda s: s.rto or 0.0, default=None)
            if longest is not None and longest.cause is not None:
                rto_from = round(longest.cause - origin, 6)
    figures = Correctness(
        baseline=rounded(base),
        impact=rounded(during),
        graded=graded,
        baseline_graded=b_graded,
        wrong=graded - correct,
        wrong_share=rounded((graded - correct) / graded) if graded else None,
        rto=rto,
        rto_from=rto_from,
        recovered=recovered,
        wrong_stretches=len(stretches),
    )
    if graded == 0 and impact is not None:
        notes["wrong_share"] = "no golden answer was graded during the impact window"
    return figures, tuple(stretches)
