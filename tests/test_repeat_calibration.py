"""The 95 % intervals of `bascule.verdicts` hold the truth 92–98 % of the time: figures with a known
truth (a failure ratio of 0.5 at a fault, measured over a few hundred requests; an outage of known
length measured with jitter) are drawn for N runs, judged as `bascule run --repeat N` judges them,
and the intervals are counted — over 400 simulated repeats, seeded. The same count shows the plain
percentile bootstrap (too narrow) and the runs' range (too wide) falling outside that band, so the
test can fail."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bascule.verdicts.judge import judge_dimension
from bascule.verdicts.model import RunValue
from bascule.verdicts.stats import bootstrap_mean_interval

REPEATS = 400
Draw = Callable[[np.random.Generator, int], list[float]]


def failure_ratio(rng: np.random.Generator, runs: int) -> list[float]:
    """Each run's success ratio at a fault failing half the requests; runs see 150–250 requests."""
    sizes = rng.integers(150, 251, size=runs)
    return [float(rng.binomial(n, 0.5) / n) for n in sizes]


def outage(rng: np.random.Generator, runs: int) -> list[float]:
    """Each run's RTO of a 12 s outage: health checks and probes put ±1 s of jitter on it, and a
    probe period's worth of timing noise on top."""
    return [float(12.0 + rng.uniform(-1.0, 1.0) + rng.normal(0.0, 0.1)) for _ in range(runs)]


CASES = {"availability": (failure_ratio, 0.5, "ratio"), "recovery": (outage, 12.0, "s")}


def coverage(name: str, runs: int, *, seed: int, **interval: object) -> float:
    draw, truth, unit = CASES[name]
    rng = np.random.default_rng(seed)
    hits = 0
    for repeat in range(REPEATS):
        sample = draw(rng, runs)
        if interval:
            bounds = bootstrap_mean_interval(sample, seed=repeat, **interval)  # type: ignore[arg-type]
            low, high = bounds.low, bounds.high
        else:
            values = [
                RunValue(run=i + 1, measured=v, objective=truth, passed=True) for i, v in enumerate(sample)
            ]
            judged = judge_dimension(name, values, unit=unit, weight=1.0, seed=repeat)
            assert judged.interval is not None
            low, high = judged.interval.low, judged.interval.high
        hits += low <= truth <= high
    return hits / REPEATS


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("runs", [8, 20])
def test_the_95_percent_intervals_hold_the_truth_92_to_98_percent_of_the_time(name: str, runs: int) -> None:
    rate = coverage(name, runs, seed=runs)
    assert 0.92 <= rate <= 0.98, (
        f"{name}, {runs} runs: the 95 % interval held the truth {rate:.3f} of the time"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_wrong_interval_falls_outside_the_band(name: str) -> None:
    """What the test above would see of a wrong method: the plain percentile bootstrap is too
    narrow with 8 runs, and the runs' own range (their spread, not the mean's uncertainty) too
    wide."""
    narrow = coverage(name, 8, seed=8, expanded=False)
    draw, truth, _ = CASES[name]
    rng = np.random.default_rng(8)
    samples = [draw(rng, 8) for _ in range(REPEATS)]
    wide = sum(min(s) <= truth <= max(s) for s in samples) / REPEATS
    assert narrow < 0.92, f"plain percentile: {narrow:.3f}"
    assert wide > 0.98, f"the runs' range: {wide:.3f}"
