"""JUnit XML for a suite run with ``--repeat N``: one test case per scenario × design, judged over
its N runs (`bascule.verdicts`), with flaky items marked the way Maven Surefire's rerun reports do
— the convention JUnit XML consumers (Jenkins, GitLab, publish-unit-test-result-action) read. Pure.

- verdict **pass**: the case passes; each run that failed is a ``<flakyFailure>``, so a consumer
  that knows flakes counts the case as a flaky pass — and when every run exited 0 yet a deciding
  dimension flipped (measured in some runs only), each run where it did not pass is one.
- verdict **fail**, **inconclusive** or **unmeasured**: a ``<failure>`` whose message says which.
- a run that did not complete (exit 2, 3, 4; the repeats stop there): an ``<error>``.
- in the last two, each run that failed is a ``<rerunFailure>`` (``<rerunError>`` for the one that
  did not complete).

Each flaky element carries ``message`` and ``type`` and a ``<stackTrace>`` child with the run's
directory and failing dimensions (Surefire's schema); the case's ``<properties>`` carry the verdict,
``bascule.flaky`` and, per dimension, its verdict, mean and interval.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from bascule.reports.junit import text_value as _text
from bascule.reports.model import Result
from bascule.verdicts.model import RepeatSummary, Verdict

__all__ = ["render_junit_repeats"]


def _properties(case: ET.Element, summary: RepeatSummary) -> None:
    values: dict[str, object] = {
        "bascule.verdict": summary.verdict.value,
        "bascule.flaky": summary.flaky,
        "bascule.repeats": summary.repeats,
        "bascule.runs_judged": sum(1 for r in summary.runs if r.counted),
    }
    for d in summary.dimensions:
        values[f"bascule.{d.name}.verdict"] = d.verdict.value
        values[f"bascule.{d.name}.mean"] = d.mean
        if d.interval is not None:
            values[f"bascule.{d.name}.interval"] = f"[{_text(d.interval.low)}, {_text(d.interval.high)}]"
        if d.flaky:
            values[f"bascule.{d.name}.flips"] = d.flips
    properties = ET.SubElement(case, "properties")
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=_text(value))


def _run_failure(parent: ET.Element, tag: str, result: Result, index: int) -> None:
    failing = [d.name for d in result.score.dimensions if d.passed is False]
    reason = result.run.reason or ""
    message = f"run {index}: exit {result.run.exit_code}" + (
        f", failing: {', '.join(failing)}" if failing else f": {reason}"
    )
    element = ET.SubElement(parent, tag, message=message, type=f"bascule.exit-{result.run.exit_code}")
    trace = ET.SubElement(element, "stackTrace")
    lines = [f"run directory: {result.run.dir or '—'}", f"reason: {reason}"]
    lines += [f"{d.name}: {d.explanation}" for d in result.score.dimensions if d.passed is False]
    trace.text = "\n".join(lines)


def _quiet_flakes(case: ET.Element, summary: RepeatSummary) -> None:
    """A flaky pass whose runs all exited 0 (a dimension measured in some runs only, e.g.
    sovereignty of weight 0): each run in which a flaky dimension did not pass is a
    ``<flakyFailure>``, so that a consumer counts the case as flaky rather than a plain pass."""
    shaky = [d for d in summary.flaky_dimensions if d.counts]
    runs = sorted({v.run for d in shaky for v in d.values if v.passed is not True})
    for run in runs:
        what = [
            f"{d.name} {'failed' if v.passed is False else 'unmeasured'}"
            for d in shaky
            for v in d.values
            if v.run == run and v.passed is not True
        ]
        element = ET.SubElement(
            case, "flakyFailure", message=f"run {run}: exit 0, {', '.join(what)}", type="bascule.flaky"
        )
        trace = ET.SubElement(element, "stackTrace")
        trace.text = "\n".join(f"{d.name}: {d.flips}" for d in shaky)


def _reruns(case: ET.Element, failed: Sequence[tuple[int, Result]]) -> None:
    for index, result in failed:
        tag = "rerunFailure" if result.run.exit_code == 1 else "rerunError"
        _run_failure(case, tag, result, index)


def _verdict_text(summary: RepeatSummary) -> str:
    lines = [f"{d.name}: {d.verdict.value} — {d.reason}" for d in summary.dimensions if d.counts]
    lines += [f"flaky: {d.name}, {d.flips}" for d in summary.flaky_dimensions]
    return "\n".join([*lines, *summary.notes])


def render_junit_repeats(
    items: Sequence[tuple[RepeatSummary, Sequence[Result]]], *, suite_name: str = "bascule suite"
) -> str:
    """The JUnit XML document: one ``<testcase>`` per (summary, its runs' results), in order."""
    suite = ET.Element("testsuite", name=suite_name)
    failures = errors = 0
    total_time = 0.0
    for summary, results in items:
        elapsed = sum(r.run.elapsed or 0.0 for r in results)
        total_time += elapsed
        case = ET.SubElement(
            suite,
            "testcase",
            classname=summary.scenario or "?",
            name=summary.design or "?",
            time=f"{elapsed:.3f}",
        )
        _properties(case, summary)
        failed = [(i, r) for i, r in enumerate(results, start=1) if (r.run.exit_code or 0) != 0]
        if summary.exit_code not in (0, 1):
            errors += 1
            error = ET.SubElement(case, "error", message=f"exit {summary.exit_code}: {summary.reason}")
            error.text = _verdict_text(summary)
            _reruns(case, failed)
        elif summary.verdict is Verdict.PASS:
            for index, result in failed:
                _run_failure(case, "flakyFailure", result, index)
            if summary.flaky and not failed:
                _quiet_flakes(case, summary)
        else:
            failures += 1
            failure = ET.SubElement(
                case, "failure", message=f"{summary.verdict.value} over {len(results)} runs: {summary.reason}"
            )
            failure.text = _verdict_text(summary)
            _reruns(case, failed)
    suite.set("tests", str(len(items)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", f"{total_time:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
