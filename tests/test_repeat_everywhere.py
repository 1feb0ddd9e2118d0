"""A repeated item shows its interval and verdict wherever one of its runs is shown: each run's
result.json (`repeat`), summary.md and report.html — kept by `bascule report` —, compare.md and
compare.html (and `bascule compare` given a repeat's directory), and the pytest plugin with
``--bascule-repeat N`` (a failing verdict's lines as the failure, a flaky pass counted ``flaky``,
the intervals as JUnit properties). A dimension no run measured shows as unmeasured, never as a
pass. The runs are real journals of generated worlds (`journal_factory`), measured and reported by
bascule's own pipeline; only the running is left out."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import pytest
from journal_factory import JournalSpec, one_phase_scenario, reference_design, write_journal
from test_repeat_verdicts import RUNS, half_failing, ratios
from typer.testing import CliRunner

from bascule.ci.repeat import RepeatOutcome, run_repeated
from bascule.ci.results import RunResult, read_result
from bascule.cli import app
from bascule.reports.compare import build_comparison, render_compare_markdown
from bascule.reports.compare_html import render_compare_html
from bascule.reports.files import report_run
from bascule.reports.model import parse_result

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]
WEIGHTS = {
    "availability": 25,
    "recovery": 20,
    "latency": 15,
    "correctness": 0,
    "durability": 0,
    "sovereignty": 15,
}


def middle() -> float:
    values = sorted(ratios())
    return (values[1] + values[2]) / 2  # two runs below, three above: inconclusive and flaky


def just_above_the_worst() -> float:
    return min(ratios()) + 1e-6  # the worst run fails, the mean's interval is clear above: a flaky pass


def write_run(run_dir: Path, seed: int, availability: float) -> RunResult:
    """Run `seed` of the generated world journaled into `run_dir`, and its reports written by
    bascule's own pipeline (`report_run`, as `bascule report` does)."""
    scenario = one_phase_scenario(
        length=3.0, settle=2.0, objectives={"availability": availability}, weights=WEIGHTS
    )
    spec = JournalSpec(
        reference_design(), scenario, half_failing(seed), length=7.0, warm_up=1.0, canary_period=None
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    write_journal(spec, run_dir / "journal.jsonl")
    result, _ = report_run(run_dir, charts=False)
    code = 0 if result.score.passed else 1
    return RunResult(code, "completed" if code == 0 else "objectives not met", run_dir, result)


def repeated(out: Path, availability: float) -> RepeatOutcome:
    return run_repeated(lambda k, run_dir: write_run(run_dir, k - 1, availability), RUNS, out)


@cache
def _outcome(root: str) -> RepeatOutcome:
    return repeated(Path(root) / "rep", middle())


@pytest.fixture
def outcome(tmp_path_factory: pytest.TempPathFactory) -> RepeatOutcome:
    return _outcome(str(tmp_path_factory.getbasetemp() / "everywhere"))


def test_each_runs_result_json_carries_the_repeats_verdicts(outcome: RepeatOutcome) -> None:
    assert outcome.summary.verdict.value == "inconclusive" and outcome.summary.flaky
    run_dir = outcome.results[1].run_dir
    document = parse_result((run_dir / "result.json").read_text())
    repeat = document.repeat
    assert repeat is not None and repeat.run == 2 and repeat.repeats == repeat.judged == RUNS
    assert repeat.verdict == "inconclusive" and repeat.flaky and repeat.exit_code == 1
    availability = next(d for d in repeat.dimensions if d.name == "availability")
    expected = outcome.summary.dimension("availability")
    assert expected is not None and expected.interval is not None
    assert (availability.low, availability.high) == (expected.interval.low, expected.interval.high)
    assert availability.verdict == "inconclusive" and availability.flips == "passed 3, failed 2 of 5 runs"
    # The run's own score is unchanged: its availability passed or failed by itself.
    assert document.score.dimensions == read_result(run_dir).document.score.dimensions
    assert json.loads((run_dir / "result.json").read_text())["repeat"]["summary"] == "../repeat.json"


def test_summary_md_and_report_html_show_the_interval_and_verdict(outcome: RepeatOutcome) -> None:
    run_dir = outcome.results[1].run_dir
    summary = (run_dir / "summary.md").read_text()
    assert "### Over the repeated runs: inconclusive over 5 of 5 runs (flaky) · this is run 2" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| availability | ❔ inconclusive |"))
    assert "| \\[" in row and "passed 3, failed 2 of 5 runs" in row  # brackets escaped for Markdown
    html = (run_dir / "report.html").read_text()
    assert (
        '<h2 id="repeat-h">Over the repeated runs: inconclusive over 5 of 5 runs (flaky) · this is run 2'
        in html
    )
    assert 'class="verdict-inconclusive">❔ inconclusive</td>' in html


def test_a_dimension_no_run_measured_is_never_shown_as_a_pass(outcome: RepeatOutcome) -> None:
    # No data probe in these runs: durability is measured in none of them.
    durability = outcome.summary.dimension("durability")
    assert (
        durability is not None and durability.measured_runs == 0 and durability.verdict.value == "unmeasured"
    )
    run_dir = outcome.results[0].run_dir
    summary = (run_dir / "summary.md").read_text()
    row = next(line for line in summary.splitlines() if line.startswith("| durability (weight 0) |"))
    assert "⚪ unmeasured" in row and "pass" not in row
    html = (run_dir / "report.html").read_text()
    start = html.index('<td class="dim-name">durability (weight 0)')
    assert 'class="verdict-unmeasured">⚪ unmeasured' in html[start : start + 300]
    comparison = build_comparison([read_result(run_dir).document])
    markdown = render_compare_markdown(comparison)
    assert "⚪ durability unmeasured —" in markdown and "durability pass" not in markdown


def test_bascule_report_keeps_the_repeats_verdicts(outcome: RepeatOutcome) -> None:
    run_dir = outcome.results[2].run_dir
    result, _ = report_run(run_dir, charts=False)
    assert result.repeat is not None and result.repeat.run == 3 and result.repeat.verdict == "inconclusive"
    assert "· this is run 3" in (run_dir / "summary.md").read_text()


def test_compare_shows_the_verdict_and_intervals_of_a_repeated_item(
    outcome: RepeatOutcome, tmp_path: Path
) -> None:
    repeated_cell = read_result(outcome.results[-1].run_dir).document
    plain = write_run(tmp_path / "plain", 0, middle()).document
    plain = plain.model_copy(
        update={
            "run": plain.run.model_copy(
                update={"design": plain.run.design.model_copy(update={"id": "other"})}
            )
        }
    )
    comparison = build_comparison([repeated_cell, plain])
    cell = comparison.cells[("synthetic", "active-passive-sovereign")]
    scores = [r.score for r in outcome.summary.runs if r.score is not None]
    assert cell.repeat is not None and cell.overall == pytest.approx(sum(scores) / len(scores))
    assert not cell.passed  # inconclusive is not a pass
    markdown = render_compare_markdown(comparison)
    assert "## Over repeated runs" in markdown
    assert "mean, inconclusive ×5, flaky<br>last run:" in markdown
    row = next(
        line
        for line in markdown.splitlines()
        if line.startswith("| synthetic | active-passive-sovereign | ❔")
    )
    assert "❔ availability inconclusive [" in row
    html = render_compare_html(comparison)
    assert '<h2 id="repeats-h">Over repeated runs</h2>' in html
    assert "❔ INCONCLUSIVE ×5, FLAKY</span>" in html


def test_bascule_compare_takes_a_repeats_directory(outcome: RepeatOutcome, tmp_path: Path) -> None:
    repeat_dir = outcome.results[0].run_dir.parent
    proc = CliRunner().invoke(app, ["compare", str(repeat_dir), "--out", str(tmp_path / "cmp")])
    assert proc.exit_code == 1, proc.output  # an inconclusive item has not met its objectives
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "## Over repeated runs" in markdown and "inconclusive ×5, flaky" in markdown


def plugin_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, availability: float, *args: str
):  # type: ignore[no-untyped-def]
    """The plugin on one scenario item with --bascule-repeat 5, each run a generated journal."""
    import bascule.ci.repeat

    def run(scenario: object, *, out: Path, **options: object) -> RunResult:
        return write_run(Path(out), int(Path(out).name.removeprefix("run-")) - 1, availability)

    monkeypatch.setattr(bascule.ci.repeat, "run", run)
    text = (
        (ROOT / "tests" / "samples" / "ci-pass.yaml")
        .read_text()
        .replace("../../designs/", f"{ROOT}/designs/")
    )
    (pytester.path / "ci-pass.yaml").write_text(text)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_inprocess(
        "--bascule",
        "--bascule-repeat",
        "5",
        "--bascule-out",
        str(pytester.path / "runs"),
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        *args,
    )
    properties = {p.attrib["name"]: p.attrib["value"] for p in ET.parse(junit).getroot().iter("property")}
    return result, properties


def test_the_pytest_plugin_fails_an_inconclusive_item_with_its_verdict(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, properties = plugin_session(pytester, monkeypatch, middle())
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*repeat: inconclusive (flaky) over 5 of 5 runs*", "*availability*inconclusive*straddles*"]
    )
    assert properties["bascule.verdict"] == "inconclusive" and properties["bascule.flaky"] == "True"
    assert properties["bascule.availability.verdict"] == "inconclusive"
    assert properties["bascule.availability.interval"].startswith("[0.")
    assert properties["bascule.durability.verdict"] == "unmeasured"


def test_the_pytest_plugin_counts_a_flaky_pass_as_flaky(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, properties = plugin_session(pytester, monkeypatch, just_above_the_worst(), "-v")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*FLAKY*", "*1 flaky*"])
    assert properties["bascule.verdict"] == "pass" and properties["bascule.flaky"] == "True"
    assert properties["bascule.availability.flips"] == "passed 4, failed 1 of 5 runs"
