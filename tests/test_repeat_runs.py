"""`run_repeated` and `suite --repeat`'s reports without processes: N results (from synthetic
journals, tests/test_repeat_verdicts.py) handed out by a stand-in for one run — the loop, where it
stops, repeat.json / repeat.md, the suite's Markdown with the flaky items apart and its closing
note, and the JUnit XML with Surefire's flakyFailure / rerunFailure elements."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_repeat_verdicts import ratios, results
from typer.testing import CliRunner

from bascule.ci.repeat import run_repeated
from bascule.ci.results import RunResult
from bascule.ci.suite import SuiteCase
from bascule.ci.suite_repeat import render_suite_repeat_markdown
from bascule.cli import app
from bascule.reports.junit_repeat import render_junit_repeats
from bascule.reports.model import Result, Run
from bascule.verdicts import Verdict, judge_runs, parse_repeat


def player(documents: Sequence[Result], seen: list[Path]):  # type: ignore[no-untyped-def]
    def run_once(k: int, run_dir: Path) -> RunResult:
        seen.append(run_dir)
        document = documents[k - 1]
        return RunResult(document.run.exit_code or 0, document.run.reason or "completed", run_dir, document)

    return run_once


def middle() -> float:
    values = sorted(ratios())
    return (values[1] + values[2]) / 2


def test_run_repeated_runs_n_times_and_writes_the_summary_next_to_the_runs(tmp_path: Path) -> None:
    seen: list[Path] = []
    outcome = run_repeated(player(results(middle()), seen), 5, tmp_path / "rep")
    assert seen == [tmp_path / "rep" / f"run-{k}" for k in range(1, 6)]
    assert outcome.files == (tmp_path / "rep" / "repeat.json", tmp_path / "rep" / "repeat.md")
    summary = parse_repeat((tmp_path / "rep" / "repeat.json").read_text())
    assert summary == outcome.summary and summary.verdict is Verdict.INCONCLUSIVE and outcome.exit_code == 1
    assert [r.dir for r in summary.runs] == [str(p) for p in seen]
    assert "❔ inconclusive" in (tmp_path / "rep" / "repeat.md").read_text()


def test_a_run_that_did_not_complete_stops_the_repeats(tmp_path: Path) -> None:
    documents = results(0.5)
    documents[1] = Result(run=Run(exit_code=3, reason="interrupted by SIGINT"))
    seen: list[Path] = []
    outcome = run_repeated(player(documents, seen), 5, tmp_path)
    assert len(seen) == 2 and outcome.exit_code == 3
    assert outcome.summary.repeats == 5 and len(outcome.summary.runs) == 2


def test_one_run_is_not_a_repeat(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        run_repeated(player(results(0.5), []), 1, tmp_path)


def cases() -> list[SuiteCase]:
    design = Path("designs/active-passive-sovereign.yaml")
    return [
        SuiteCase(Path(f"{name}.yaml"), design, name, "active-passive-sovereign") for name in ("a", "b", "c")
    ]


def test_the_suite_markdown_puts_flaky_items_apart_and_closes_with_the_inconclusive_ones() -> None:
    low = min(ratios()) - 0.02
    summaries = [judge_runs(results(low)), judge_runs(results(middle())), judge_runs(results(0.999))]
    text = render_suite_repeat_markdown(list(zip(cases(), summaries, strict=True)), 1)
    assert text.startswith("## ❌ bascule suite ×5: 1/3 passed (exit 1)")
    assert "| a | active-passive-sovereign | ✅ pass | no | 5/5 of 5 |" in text
    assert "| b | active-passive-sovereign | ❔ inconclusive | ⚠️ yes | 3/5 of 5 |" in text
    assert "| c | active-passive-sovereign | ❌ fail | no | 0/5 of 5 |" in text
    assert "### ⚠️ Flaky" in text
    assert (
        "- **b** on **active-passive-sovereign** (inconclusive): availability: passed 3, failed 2 of 5"
        in text
    )
    assert "> 1 pass, 1 fail, 1 inconclusive; 1 flaky. Inconclusive (the interval straddles" in text
    flaky_note = "Flaky (verdicts differ across runs): b on active-passive-sovereign (inconclusive)."
    assert text.count(flaky_note) == 1
    assert "b on active-passive-sovereign." in text


def test_junit_marks_flaky_runs_the_surefire_way() -> None:
    low = min(ratios()) - 0.02
    # A pass whose runs flip on a dimension of weight 0: flaky, still a pass.
    flaky_pass = [
        r.model_copy(update={"run": r.run.model_copy(update={"exit_code": 1 if i < 2 else 0})})
        for i, r in enumerate(results(low))
    ]
    items = [
        (judge_runs(flaky_pass), flaky_pass),
        (judge_runs(results(middle())), results(middle())),
        (judge_runs(results(0.999)), results(0.999)),
    ]
    assert items[0][0].verdict is Verdict.PASS and items[0][0].flaky
    root = ET.fromstring(render_junit_repeats(items).split("\n", 1)[1])
    assert root.attrib["tests"] == "3" and root.attrib["failures"] == "2" and root.attrib["errors"] == "0"
    first, second, third = root.iter("testcase")
    assert first.find("failure") is None and len(first.findall("flakyFailure")) == 2
    flaky = first.findall("flakyFailure")[0]
    assert flaky.attrib["message"].startswith("run 1: exit 1") and flaky.attrib["type"] == "bascule.exit-1"
    assert flaky.find("stackTrace") is not None
    failure = second.find("failure")
    assert failure is not None and failure.attrib["message"].startswith("inconclusive over 5 runs")
    assert len(second.findall("rerunFailure")) == 2 and second.find("flakyFailure") is None
    properties = {p.attrib["name"]: p.attrib["value"] for p in second.iter("property")}
    assert properties["bascule.verdict"] == "inconclusive" and properties["bascule.flaky"] == "True"
    assert properties["bascule.availability.flips"] == "passed 3, failed 2 of 5 runs"
    assert third.find("failure") is not None and len(third.findall("rerunFailure")) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeat", "2", "--baseline", "nowhere"], "not a baseline"),
        (["--baseline", "."], "needs --repeat N with N ≥ 2"),
    ],
)
def test_a_baseline_that_cannot_be_used_exits_2_before_anything_runs(
    tmp_path: Path, args: list[str], message: str
) -> None:
    root = Path(__file__).resolve().parent.parent
    scenario = str(root / "scenarios" / "faults" / "latency.yaml")
    for verb in (["run", scenario], ["suite", scenario]):
        done = CliRunner().invoke(app, [*verb, *args, "--out", str(tmp_path / "out")], env={"COLUMNS": "200"})
        assert done.exit_code == 2, done.output
        assert message in done.output
        assert not (tmp_path / "out").exists()


def test_a_flaky_pass_whose_runs_all_exited_0_is_still_flaky_in_junit() -> None:
    runs = results(min(ratios()) - 0.02)

    def unjudged(result: Result) -> Result:
        # Sovereignty not measured in this run (no request's path was known); the run exits 0.
        dims = tuple(
            d.model_copy(update={"measured": None, "passed": None, "sub_score": None})
            if d.name == "sovereignty"
            else d
            for d in result.score.dimensions
        )
        return result.model_copy(update={"score": result.score.model_copy(update={"dimensions": dims})})

    runs[2] = unjudged(runs[2])
    summary = judge_runs(runs)
    assert summary.verdict is Verdict.PASS and summary.flaky and {r.exit_code for r in summary.runs} == {0}
    case = next(ET.fromstring(render_junit_repeats([(summary, runs)]).split("\n", 1)[1]).iter("testcase"))
    assert case.find("failure") is None
    (flaky,) = case.findall("flakyFailure")
    assert flaky.attrib == {"message": "run 3: exit 0, sovereignty unmeasured", "type": "bascule.flaky"}
    trace = flaky.find("stackTrace")
    assert trace is not None and trace.text == "sovereignty: passed 4, unmeasured 1 of 5 runs"
