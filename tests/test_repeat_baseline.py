"""`--baseline`: a repeat compared with an earlier one, from synthetic journals — a rerun of the
same world (other seeds) is within noise, a worse world (70 % of requests failing at the fault
instead of 50 %) is a regression beyond noise and exits 1; the baseline is found in a repeat's,
a suite's (moved elsewhere, with or without --repeat) or a run's directory."""

from __future__ import annotations

import hashlib
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

from bascule.ci.repeat import compare_baseline, read_baseline, read_design_file, run_repeated
from bascule.ci.results import RunResult
from bascule.ci.suite import SuiteCase
from bascule.ci.suite_repeat import render_suite_repeat_markdown
from bascule.metrics import compute_metrics
from bascule.model.scenario import Objectives, Weights
from bascule.reports.model import Result, dump_result
from bascule.reports.result import build_result
from bascule.score import score
from bascule.verdicts import (
    dump_repeat,
    judge_runs,
    parse_repeat,
    render_repeat_lines,
    render_repeat_markdown,
)
from bascule.verdicts.designdiff import design_differences

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
    # One baseline run: its value stands for the baseline, given the spread of the runs now.
    now = compare_baseline(judge_runs(runs(0.5, (5, 6, 7))), plain)
    change = next(c for c in now.baseline or () if c.name == "availability")
    assert availability.mean is not None and change.baseline_runs == 1 and change.spread_lent_to == "baseline"
    assert change.baseline_low < availability.mean < change.baseline_high
    assert (change.baseline_low + change.baseline_high) / 2 == pytest.approx(availability.mean)


def test_a_directory_that_is_no_baseline_is_refused_and_a_missing_item_is_said(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a baseline"):
        read_baseline(tmp_path, "x", "y")
    other = tmp_path / "other"
    other.mkdir()
    (other / "suite.json").write_text('{"runs": []}')
    now = compare_baseline(judge_runs(runs(0.5, (5, 6))), other)
    assert now.baseline is None and any("has no run of synthetic" in n for n in now.notes)


DESIGN = Path(__file__).resolve().parent.parent / "designs" / "active-passive-sovereign.yaml"


def slower_breaker(tmp_path: Path) -> Path:
    """The reference design with one field changed: the breaker stays open 30 s instead of 3 s."""
    text = DESIGN.read_text(encoding="utf-8")
    assert "open_for: 3s}" in text
    path = tmp_path / "slower-breaker.yaml"
    path.write_text(text.replace("open_for: 3s}", "open_for: 30s}"), encoding="utf-8")
    return path


def repeated(documents: tuple[Result, ...], out: Path, design: Path, baseline: Path | None = None):  # type: ignore[no-untyped-def]
    def run_once(k: int, run_dir: Path) -> RunResult:
        document = documents[k - 1]
        return RunResult(document.run.exit_code or 0, "completed", run_dir, document)

    return run_repeated(run_once, len(documents), out, baseline=baseline, design_file=design)


def test_a_regression_names_the_design_field_that_changed(tmp_path: Path) -> None:
    base = repeated(runs(0.5, (0, 1, 2, 3, 4)), tmp_path / "base", DESIGN)
    recorded = parse_repeat((tmp_path / "base" / "repeat.json").read_text()).design_file
    assert recorded is not None and recorded.text == DESIGN.read_text(encoding="utf-8")
    assert recorded.sha256 == hashlib.sha256(DESIGN.read_bytes()).hexdigest()
    assert base.summary.design_changes is None  # no baseline given

    # The slower breaker keeps more requests failing at the fault: 70 % instead of 50 %.
    now = repeated(runs(0.7, (5, 6, 7, 8, 9)), tmp_path / "now", slower_breaker(tmp_path), tmp_path / "base")
    summary = now.summary
    assert [c.name for c in summary.regressions] == ["availability"] and now.exit_code == 1
    assert summary.design_changes == ("routing.circuit_breaker.open_for: 3s → 30s",)
    assert "(the design changed: routing.circuit_breaker.open_for: 3s → 30s)" in summary.reason
    markdown = (tmp_path / "now" / "repeat.md").read_text()
    assert "**Design changes since the baseline**" in markdown
    assert "- `routing.circuit_breaker.open_for: 3s → 30s`" in markdown
    case = SuiteCase(Path("s.yaml"), DESIGN, "synthetic", "active-passive-sovereign")
    suite_md = render_suite_repeat_markdown([(case, summary)], 1)
    regressions = suite_md.split("### ❌ Regressions against the baseline (beyond noise)")[1]
    assert "    - `routing.circuit_breaker.open_for: 3s → 30s`" in regressions
    # The line docs/repeats.md shows ("What changed in the design").
    assert "availability regressed beyond noise: [70.54 %, 74.80 %] now, [79.00 %, 86.01 %] in" in regressions
    assert any(
        "design changes: routing.circuit_breaker.open_for: 3s → 30s" in line
        for line in render_repeat_lines(summary)
    )


def test_a_rerun_of_the_same_design_file_is_not_flagged(tmp_path: Path) -> None:
    repeated(runs(0.5, (0, 1, 2, 3, 4)), tmp_path / "base", DESIGN)
    copy = tmp_path / "same.yaml"
    shutil.copy(DESIGN, copy)  # another path, the same content
    now = repeated(runs(0.5, (5, 6, 7, 8, 9)), tmp_path / "now", copy, tmp_path / "base").summary
    assert now.regressions == () and now.exit_code == 0 and now.design_changes == ()
    assert "Same design file as the baseline" in render_repeat_markdown(now)


def test_a_plain_suite_records_its_design_file_for_a_later_baseline(tmp_path: Path) -> None:
    summary = judge_runs(runs(0.5, (0,)))
    slug = f"{summary.scenario}--{summary.design}"
    (tmp_path / slug).mkdir()
    (tmp_path / slug / "result.json").write_text(dump_result(runs(0.5, (0,))[0]))
    design = read_design_file(DESIGN)
    assert design is not None
    item = {"scenario": summary.scenario, "design": summary.design, "design_file": design.model_dump()}
    (tmp_path / "suite.json").write_text(json.dumps({"runs": [item]}))
    found = read_baseline(tmp_path, summary.scenario, summary.design)
    assert found is not None and found.design_file == design
    now = repeated(runs(0.5, (5, 6, 7)), tmp_path / "now", slower_breaker(tmp_path), tmp_path).summary
    assert now.design_changes == ("routing.circuit_breaker.open_for: 3s → 30s",)


def test_without_a_recorded_design_the_differences_are_said_to_be_unknown(tmp_path: Path) -> None:
    now = compare_baseline(judge_runs(runs(0.5, (5, 6, 7))), baseline_dir(tmp_path))
    assert now.design_changes is None
    assert any("recorded no design file" in note for note in now.notes)


def test_design_differences_name_fields_and_list_items_by_id() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    changed = text.replace("replica_hour: 0.0750", "replica_hour: 0.09").replace("  lag: 1s\n", "")
    assert design_differences(text, changed) == (
        "regions[scaleway/fr-par].cost.replica_hour: 0.075 → 0.09",
        "replication.lag: 1s removed",
    )
    assert design_differences(text, text) == ()
    assert design_differences("not: [valid", "a: 1") == ("-not: [valid", "+a: 1")
