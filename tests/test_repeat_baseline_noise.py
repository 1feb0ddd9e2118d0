"""`--baseline` with few runs (docs/repeats.md, "Against a baseline"): each side's interval is at
least as wide as Student's t interval of its mean, so that a rerun of one design with 2 or 3 runs a
side does not read as a change — the bootstrap's interval alone, never wider than the runs' range,
read a third of the reruns with 2 runs as regressed or improved. A large change is still flagged;
a side whose runs show no spread is given the other side's; one run against one run is "too few
runs to tell", said in repeat.md, the printed lines and suite.md, and exits 0; only a regression of
a deciding dimension exits 1. Figures are drawn from known distributions, seeded."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from bascule.ci.suite import SuiteCase
from bascule.ci.suite_repeat import render_suite_repeat_markdown
from bascule.verdicts import Verdict, render_repeat_lines, render_repeat_markdown
from bascule.verdicts.baseline import compare_with_baseline, with_baseline
from bascule.verdicts.judge import judge_dimension
from bascule.verdicts.model import DimensionVerdict, FigureChange, RepeatRun, RepeatSummary, RunValue

DRAWS = 300
Figure = tuple[float, int | None]  # the measured value, and the requests a ratio was counted over
Draw = Callable[[np.random.Generator, int], list[Figure]]


def counted(success: float, fewest: int, most: int) -> Draw:
    """A success ratio of a binomial number of requests, as availability is counted."""

    def draw(rng: np.random.Generator, runs: int) -> list[Figure]:
        sizes = rng.integers(fewest, most + 1, size=runs)
        return [(float(rng.binomial(n, success) / n), int(n)) for n in sizes]

    return draw


def outage_availability(rng: np.random.Generator, runs: int) -> list[Figure]:
    """A 10 s outage in a 35 s impact window whose length jitters by ±2 s: more spread than the
    requests' count alone gives."""
    out = []
    for _ in range(runs):
        n = int(rng.integers(250, 351))
        out.append((float(rng.binomial(n, 1.0 - (10.0 + rng.uniform(-2.0, 2.0)) / 35.0) / n), n))
    return out


def outage_rto(rng: np.random.Generator, runs: int) -> list[Figure]:
    """The RTO of a 12 s outage, with health-check jitter (tests/test_repeat_calibration.py)."""
    return [(float(12.0 + rng.uniform(-1.0, 1.0) + rng.normal(0.0, 0.1)), None) for _ in range(runs)]


def long_tail_rto(rng: np.random.Generator, runs: int) -> list[Figure]:
    """An RTO that sometimes takes much longer."""
    return [(float(3.0 + rng.lognormal(0.0, 1.0)), None) for _ in range(runs)]


WORLDS: dict[str, tuple[Draw, str, str]] = {
    "availability at a fault failing half": (counted(0.5, 150, 250), "availability", "ratio"),
    "steady availability 97.4 %": (counted(0.974, 2000, 3000), "availability", "ratio"),
    "availability nearly 100 %": (counted(0.9996, 1500, 2500), "availability", "ratio"),
    "availability over a jittered outage": (outage_availability, "availability", "ratio"),
    "recovery of a jittered outage": (outage_rto, "recovery", "s"),
    "recovery with a long tail": (long_tail_rto, "recovery", "s"),
}


def judged(name: str, figures: Sequence[Figure], unit: str, objective: float = 0.5) -> DimensionVerdict:
    values = [
        RunValue(run=i + 1, measured=value, objective=objective, passed=True, samples=samples)
        for i, (value, samples) in enumerate(figures)
    ]
    return judge_dimension(name, values, unit=unit, weight=1.0, seed=0)


def change(name: str, now: Sequence[Figure], then: Sequence[Figure], unit: str = "ratio") -> FigureChange:
    (found,) = compare_with_baseline(summary(judged(name, now, unit)), summary(judged(name, then, unit)))
    return found


def summary(*dimensions: DimensionVerdict) -> RepeatSummary:
    runs = max((len(d.values) for d in dimensions), default=0)
    return RepeatSummary(
        scenario="synthetic",
        design="active-passive-sovereign",
        repeats=runs,
        runs=tuple(RepeatRun(run=k + 1) for k in range(runs)),
        dimensions=dimensions,
        verdict=Verdict.PASS,
        exit_code=0,
        reason=f"every objective met over the {runs} runs",
    )


def plain(*values: float, samples: int | None = None) -> list[Figure]:
    return [(v, samples) for v in values]


@pytest.mark.parametrize("world", sorted(WORLDS))
def test_a_rerun_with_2_or_3_runs_a_side_reads_as_no_change(world: str) -> None:
    """Both sides drawn from one world, DRAWS times for each pair of run counts: the bootstrap
    alone called 7–37 % of these a change; at most 1 % may be now (disjoint 95 % intervals keep a
    fraction of a percent even with many runs)."""
    draw, name, unit = WORLDS[world]
    rates = {}
    for base, now in ((2, 2), (2, 3), (3, 2), (3, 3)):
        rng = np.random.default_rng([base, now, len(world)])
        flagged = 0
        for _ in range(DRAWS):
            found = change(name, draw(rng, now), draw(rng, base), unit)
            flagged += found.regressed or found.improved
        rates[f"{base} vs {now}"] = flagged / DRAWS
    assert max(rates.values()) <= 0.01, f"{world}: read as a change {rates}"


def test_the_new_users_two_runs_a_side_are_within_noise_not_improved_or_regressed() -> None:
    """97.36 % against 97.40 %, 2 runs a side: the bootstrap's intervals [97.34 %, 97.38 %] and
    [97.39 %, 97.41 %] did not overlap, and read as improved — or, the other way round, as a
    regression that exited 1."""
    base, now = plain(0.9734, 0.9738, samples=2500), plain(0.9739, 0.9741, samples=2500)
    for then, later in ((base, now), (now, base)):
        found = change("availability", later, then)
        assert not found.regressed and not found.improved and not found.too_few_runs
        assert found.reason.startswith("within noise: [")
        assert found.now_low < min(v for v, _ in later) and found.now_high > max(v for v, _ in later)
        outcome = with_baseline(
            summary(judged("availability", later, "ratio")),
            summary(judged("availability", then, "ratio")),
            "base",
        )
        assert outcome.exit_code == 0 and outcome.regressions == ()


def test_a_large_change_with_3_runs_a_side_is_still_flagged() -> None:
    """Availability 99.9 % then, 70 % now (a jittered outage), and a recovery of none then, 12 s
    now: every draw regressed — and, the other way round, improved."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        good, bad = counted(0.999, 2000, 3000)(rng, 3), outage_availability(rng, 3)
        worse, better = change("availability", bad, good), change("availability", good, bad)
        assert worse.regressed and better.improved, (worse.reason, better.reason)
        slow = change("recovery", outage_rto(rng, 3), plain(0.0, 0.0, 0.0), "s")
        assert slow.regressed and slow.spread_lent_to == "baseline", slow.reason


def test_one_run_against_one_run_is_too_few_runs_to_tell_and_says_so(tmp_path: Path) -> None:
    base = summary(judged("availability", plain(0.9740, samples=2500), "ratio"))
    now = summary(judged("availability", plain(0.9736, samples=2500), "ratio"))
    outcome = with_baseline(now, base, "runs/base")
    (found,) = outcome.baseline or ()
    assert found.too_few_runs and not found.regressed and not found.improved
    assert found.reason.startswith("within noise — too few runs to tell: 97.36 % now (1 run), 97.40 % in")
    assert outcome.exit_code == 0 and outcome.too_few_runs == (found,)
    assert any("too few runs to tell for availability" in note for note in outcome.notes)
    assert "| availability | [97.36 %, 97.36 %] | [97.40 %, 97.40 %] (1 run) | ❔ too few runs to tell |" in (
        render_repeat_markdown(outcome)
    )
    assert "  baseline: availability within noise — too few runs to tell: " in "\n".join(
        render_repeat_lines(outcome)
    )
    case = SuiteCase(Path("s.yaml"), Path("d.yaml"), "synthetic", "active-passive-sovereign")
    suite_md = render_suite_repeat_markdown([(case, outcome)], 0)
    assert (
        "Too few runs to tell against the baseline (not flagged): "
        "synthetic on active-passive-sovereign (availability)." in suite_md
    )
    # Neither a large change: one run a side has no noise to weigh it by (the verdict judges it).
    far = change("availability", plain(0.70), plain(0.999))
    assert far.too_few_runs and not far.regressed
    # The same value is no change at all.
    same = change("availability", plain(1.0), plain(1.0))
    assert not same.too_few_runs and same.reason.startswith("within noise: [100.00 %, 100.00 %] now overlaps")


def test_a_side_with_no_spread_is_given_the_other_sides() -> None:
    """One baseline run (a suite without --repeat), or baseline runs that all measured 100 %: their
    interval is their value ± t · the spread of the runs now."""
    now = plain(0.80, 0.81, 0.79)
    one = change("availability", now, plain(0.88))
    assert one.spread_lent_to == "baseline" and one.baseline_runs == 1
    half = 4.302652729749456 * 0.01  # t(0.975; 2) · s now (0.01), over √1
    assert one.baseline_low == pytest.approx(0.88 - half) and one.baseline_high == pytest.approx(0.88 + half)
    assert one.reason.endswith("(the baseline's 1 run given the spread of the runs now)")
    assert one.regressed  # 88 % ± 4.3 points lies above 80 % ± 2.5 points

    # Every baseline run at 100 %, a third of a point of spread now: still a regression, exit 1.
    retry = plain(0.9796, 0.9830, 0.9860, samples=1000)
    base = summary(judged("availability", plain(1.0, 1.0, 1.0, samples=1000), "ratio"))
    outcome = with_baseline(summary(judged("availability", retry, "ratio")), base, "runs/base")
    (found,) = outcome.regressions
    assert found.spread_lent_to == "baseline" and found.baseline_high == 1.0 and found.baseline_low < 1.0
    assert outcome.exit_code == 1 and "regressed against the baseline: availability" in outcome.reason
    assert "(3 runs, spread of the runs now) | ❌ regressed |" in render_repeat_markdown(outcome)


def test_runs_a_failure_apart_are_not_read_as_a_change_from_runs_with_none() -> None:
    """One request failing among ~2,300 in each run now, none in the baseline's: the runs now are
    a hair apart only because their counts differ. A ratio's spread is at least one count."""
    found = change(
        "availability", plain(1 - 1 / 2300, 1 - 1 / 2330, samples=2300), plain(1.0, 1.0, samples=2300)
    )
    assert not found.regressed and found.spread_lent_to == "baseline", found.reason
    uncounted = change("availability", plain(1 - 1 / 2300, 1 - 1 / 2330), plain(1.0, 1.0))
    assert uncounted.regressed  # without the counts (a baseline of an older bascule), as before


def test_only_a_deciding_dimension_regressed_exits_1() -> None:
    weightless = judged("latency", plain(0.30, 0.31, 0.32), "s").model_copy(update={"counts": False})
    before = judged("latency", plain(0.10, 0.11, 0.12), "s").model_copy(update={"counts": False})
    outcome = with_baseline(summary(weightless), summary(before), "base")
    assert [c.name for c in outcome.regressions] == ["latency"] and outcome.exit_code == 0


def test_a_run_that_never_recovered_keeps_the_bootstraps_interval() -> None:
    found = change("recovery", plain(5.0, math.inf), plain(4.0, 5.0, 6.0), "s")
    assert found.now_high == math.inf and not found.regressed and not found.too_few_runs


def test_with_8_runs_a_side_the_bootstrap_decides_as_before() -> None:
    """From 8 runs on, the calibration test finds the bootstrap's interval true to its 95 %: the
    comparison keeps it, and verdicts with enough runs are those they always were."""
    rng = np.random.default_rng(8)
    for _ in range(20):
        then = judged("availability", counted(0.80, 250, 350)(rng, 8), "ratio")
        now = judged("availability", counted(0.78, 250, 350)(rng, 8), "ratio")
        (found,) = compare_with_baseline(summary(now), summary(then))
        assert now.interval is not None and then.interval is not None
        assert (found.now_low, found.now_high) == (now.interval.low, now.interval.high)
        assert (found.baseline_low, found.baseline_high) == (then.interval.low, then.interval.high)
