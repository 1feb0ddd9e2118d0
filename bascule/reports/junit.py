"""JUnit XML for CI systems: one test case per scenario × design, from `bascule.result/1` results
(`bascule.reports.model.Result`). Pure.

A case passes when the run completed and met its objectives; it *fails* (``<failure>``) when the
objectives were not met — its message names the failing dimensions, its text explains each — and
it is in *error* (``<error>``) when the run did not complete (invalid input, aborted, target
error). The score, the grade and the key figures are the case's ``<properties>``, which GitLab,
Jenkins and GitHub test reporters show next to the case.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from bascule.reports._discovered import discovered_lines
from bascule.reports._summary import compute_unreached, count_unreached
from bascule.reports.model import Result, ResultScore

__all__ = ["render_junit", "text_value"]

_ERRORS = {2: "invalid input", 3: "aborted", 4: "target or infrastructure error"}


def text_value(value: object) -> str:
    """A property's value as JUnit consumers show it: ``null``, 6 significant digits, or text."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _properties(case: ET.Element, result: Result) -> None:
    score, figures = result.score, result.figures
    violations = figures.sovereignty_violations
    if not violations and "sovereignty" in figures.notes:
        violations = None  # none seen where not every path was known: unmeasured, never 0
    values: dict[str, object] = {
        "bascule.score": score.overall,
        "bascule.grade": score.grade,
        "bascule.passed": score.passed,
        "bascule.success_ratio": figures.success_ratio,
        "bascule.rto_s": figures.rto,
        "bascule.recovered": figures.recovered,
        "bascule.latency_p95_s": figures.latency.p95,
        "bascule.writes_lost": None if figures.rpo is None else figures.rpo.lost,
        "bascule.sovereignty_violations": violations,
        "bascule.discovered_dependencies": len(result.discovered),
        # Phases whose fault reached no traffic while in force (null: none was counted).
        "bascule.faults_unreached": count_unreached(result),
        "bascule.run_dir": result.run.dir,
    }
    for entry in score.dimensions:
        values[f"bascule.{entry.name}.sub_score"] = entry.sub_score
    properties = ET.SubElement(case, "properties")
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=text_value(value))


def _failuretext_value(score: ResultScore) -> tuple[str, str]:
    # What kept the pass: an objective missed, or a dimension with a weight left unmeasured (one
    # left out with a weight of 0 keeps nothing, and is not named).
    missed = [d for d in score.dimensions if d.passed is False]
    unmeasured = [d for d in score.dimensions if d.passed is None and (d.weight or 0) > 0]
    failing = missed + unmeasured
    parts = [f"objectives not met — {', '.join(d.name for d in missed)}"] if missed else []
    if unmeasured:
        parts.append(f"unmeasured — {', '.join(d.name for d in unmeasured)}")
    said = "; ".join(parts) or "objectives not met — the overall score"
    message = f"score {text_value(score.overall)} ({score.grade}): {said}"
    lines = []
    for d in failing:
        lines.append(f"{d.name}: {d.explanation}")
        if d.recommendation:
            lines.append(f"  → {d.recommendation}")
    if score.cap is not None:
        lines.append(f"capped at {score.cap.at}: {score.cap.reason}")
    return message, "\n".join(lines)


def render_junit(
    results: Sequence[Result],
    *,
    suite_name: str = "bascule",
    not_run: Sequence[tuple[str, str]] = (),
    why_not_run: str = "",
) -> str:
    """The JUnit XML document for `results`, one ``<testcase>`` each, in the order given; then each
    (scenario, design) of `not_run` as a skipped one (a suite stopped before it: `why_not_run`)."""
    suite = ET.Element("testsuite", name=suite_name)
    failures = errors = 0
    total_time = 0.0
    for result in results:
        run, score = result.run, result.score
        scenario = "?" if run.scenario.id is None else run.scenario.id
        design = "?" if run.design.id is None else run.design.id
        elapsed = run.elapsed or 0.0
        total_time += elapsed
        case = ET.SubElement(suite, "testcase", classname=scenario, name=design, time=f"{elapsed:.3f}")
        _properties(case, result)
        lines = discovered_lines(result)
        said = [f"warning: {sentence}" for sentence in compute_unreached(result)]
        if lines:
            said += ["discovered dependencies (hosts outside the design):", *lines]
        if said:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(said)
        code = run.exit_code or 0
        reason = run.reason or ""
        if code in _ERRORS:
            errors += 1
            error = ET.SubElement(case, "error", message=f"{_ERRORS[code]}: {reason}")
            error.text = reason
        elif code != 0 or not score.passed:
            failures += 1
            message, text = _failuretext_value(score)
            if code == 1 and score.passed:
                message = f"the steady-state hypothesis failed after rollback: {reason}"
            failure = ET.SubElement(case, "failure", message=message)
            failure.text = text
    for scenario, design in not_run:
        case = ET.SubElement(suite, "testcase", classname=scenario, name=design, time="0.000")
        skipped = ET.SubElement(case, "skipped", message=f"not run: {why_not_run or 'the suite stopped'}")
        skipped.text = why_not_run
    suite.set("tests", str(len(results) + len(not_run)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    if not_run:
        suite.set("skipped", str(len(not_run)))
    suite.set("time", f"{total_time:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
