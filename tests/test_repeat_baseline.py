"""`--baseline`: a repeat compared with an earlier one, from synthetic journals — a rerun of the
same world (other seeds) is within noise, a worse world (70 % of requests failing at the fault
instead of 50 %) is a regression beyond noise and exits 1; the baseline is found in a repeat's,
a suite's (moved elsewhere, with or without --repeat) or a run's directory."""

from __future__ import annotations

import json
import random
import shutil
from functools import cache
from pathlib import Path

import pytest
from journal_factory import (
    PRIMARY,
    STANDBY,
    JournalSpec,
    Served,
    build_records,
    one_phase_scenario,
    reference_design,
)

from bascule.ci.repeat import compare_baseline, read_baseline
from bascule.ci.suite import SuiteCase
from bascule.ci.suite_repeat import render_suite_repeat_markdown
from bascule.metrics import compute_metrics
from bascule.model.scenario import Objectives, Weights
from bascule.reports.model import Result, dump_result
from bascule.reports.result import build_result
from bascule.score import score
from bascule.verdicts import dump_repeat, judge_runs, render_repeat_markdown

WEIGHTS = Weights(availability=25, recovery=20, latency=15, correctness=0, durability=0, sovereignty=15)


@cache
def runs(failing: float, seeds: tuple[int, ...]) -> tuple[Result, ...]:
    scenario = one_phase_scenario(length=3.0, settle=2.0)
    out = []
    for seed in seeds:
        rng = random.Random(seed)

        def world(t: float, source: str, data_class: str, rng: random.Random = rng) -> Served:
            if data_class == "confidential":
                return Served(True, STANDBY, correct=True)
            if 0.0 <= t < 3.0:
                return Served(rng.random() >= failing, PRIMARY, correct=True)
            return Served(True, PRIMARY, correct=True)

        spec = JournalSpec(reference_design(), scenario, world, length=7.0, warm_up=1.0, canary_period=None)
        m = compute_metrics(build_records(spec))
        result = build_result(m, score(m, Objectives(availability=0.5), WEIGHTS))
        code = 0 if result.score.passed else 1
        out.append(result.model_copy(update={"run": result.run.model_copy(update={"exit_code": code})}))
    return tuple(out)


def baseline_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "base"
    directory.mkdir()
    (directory / "repeat.json").write_text(dump_repeat(judge_runs(runs(0.5, (0, 1, 2, 3, 4)))))
    return directory


def test_a_rerun_of_the_same_world_is_within_noise(tmp_path: Path) -> None:
    now = compare_baseline(judge_runs(runs(0.5, (5, 6, 7, 8, 9))), baseline_dir(tmp_path))
    assert now.baseline is not None and now.regressions == ()
    availability = next(c for c in now.baseline if c.name == "availability")
    assert "within noise" in availability.reason and not availability.improved
    assert now.exit_code == 0 and "regressed" not in now.reason


def test_a_worse_world_regresses_beyond_noise_and_exits_1(tmp_path: Path) -> None:
    now = compare_baseline(judge_runs(runs(0.7, (5, 6, 7, 8, 9))), baseline_dir(tmp_path))
    assert [c.name for c in now.regressions] == ["availability"]
    change = now.regressions[0]
    assert change.now_high < change.baseline_low
    assert change.reason.startswith("regressed beyond noise: [")
    assert now.verdict.value == "pass" and now.exit_code == 1  # objectives met, yet worse than before
    assert "regressed against the baseline: availability" in now.reason
    assert "| availability | [" in render_repeat_markdown(now) and "❌ regressed" in render_repeat_markdown(
        now
    )
    case = SuiteCase(Path("s.yaml"), Path("d.yaml"), "synthetic", "active-passive-sovereign")
    suite_md = render_suite_repeat_markdown([(case, now)], 1)
    assert "### ❌ Regressions against the baseline (beyond noise)" in suite_md
    assert "1 regressed against the baseline." in suite_md


def test_an_improvement_is_said_and_does_not_fail(tmp_path: Path) -> None:
    base = tmp_path / "worse"
    base.mkdir()
    (base / "repeat.json").write_text(dump_repeat(judge_runs(runs(0.7, (0, 1, 2, 3, 4)))))
    now = compare_baseline(judge_runs(runs(0.5, (5, 6, 7, 8, 9))), base)
    assert now.regressions == () and now.exit_code == 0
    assert any(c.improved for c in now.baseline or ())


def test_the_baseline_is_found_in_a_moved_suite_with_or_without_repeats(tmp_path: Path) -> None:
    summary = judge_runs(runs(0.5, (0, 1, 2)))
    slug = f"{summary.scenario}--{summary.design}"
    repeated = tmp_path / "suite-r"
    (repeated / slug).mkdir(parents=True)
    (repeated / slug / "repeat.json").write_text(dump_repeat(summary))
    item = {"scenario": summary.scenario, "design": summary.design, "repeat_dir": f"/elsewhere/{slug}"}
    (repeated / "suite.json").write_text(json.dumps({"runs": [item]}))
    moved = tmp_path / "downloaded"
    shutil.copytree(repeated, moved)
    assert read_baseline(moved, summary.scenario, summary.design) == summary
    assert read_baseline(moved, summary.scenario, "another-design") is None

    plain = tmp_path / "suite-1"
    (plain / slug).mkdir(parents=True)
    (plain / slug / "result.json").write_text(dump_result(runs(0.5, (0,))[0]))
    item = {"scenario": summary.scenario, "design": summary.design, "run_dir": f"/elsewhere/{slug}"}
    (plain / "suite.json").write_text(json.dumps({"runs": [item]}))
    one = read_baseline(plain, summary.scenario, summary.design)
    assert one is not None and len(one.runs) == 1
    availability = one.dimension("availability")
    assert availability is not None and availability.interval is None and availability.measured_runs == 1
    # One baseline run: its value stands for the interval.
    now = compare_baseline(judge_runs(runs(0.5, (5, 6, 7))), plain)
    change = next(c for c in now.baseline or () if c.name == "availability")
    assert change.baseline_low == change.baseline_high == availability.mean and change.baseline_runs == 1


def test_a_directory_that_is_no_baseline_is_refused_and_a_missing_item_is_said(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a baseline"):
        read_baseline(tmp_path, "x", "y")
    other = tmp_path / "other"
    other.mkdir()
    (other / "suite.json").write_text('{"runs": []}')
    now = compare_baseline(judge_runs(runs(0.5, (5, 6))), other)
    assert now.baseline is None and any("has no run of synthetic" in n for n in now.notes)
