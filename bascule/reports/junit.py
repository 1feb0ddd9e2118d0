"""JUnit XML for CI systems: one test case per scenario × design, from `bascule.result/1`
documents. Pure.

A case passes when the run completed and met its objectives; it *fails* (``<failure>``) when the
objectives were not met — its message names the failing dimensions, its text explains each — and
it is in *error* (``<error>``) when the run did not complete (invalid input, aborted, target
error). The score, the grade and the key figures are the case's ``<properties>``, which GitLab,
Jenkins and GitHub test reporters show next to the case.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_junit"]

_ERRORS = {2: "invalid input", 3: "aborted", 4: "target or infrastructure error"}


def _text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _properties(case: ET.Element, result: Mapping[str, Any]) -> None:
    score = result.get("score") or {}
    figures = result.get("figures") or {}
    latency = figures.get("latency") or {}
    rpo = figures.get("rpo") or {}
    values: dict[str, object] = {
        "bascule.score": score.get("overall"),
        "bascule.grade": score.get("grade"),
        "bascule.passed": score.get("passed"),
        "bascule.success_ratio": figures.get("success_ratio"),
        "bascule.rto_s": figures.get("rto"),
        "bascule.recovered": figures.get("recovered"),
        "bascule.latency_p95_s": latency.get("p95"),
        "bascule.writes_lost": rpo.get("lost"),
        "bascule.sovereignty_violations": figures.get("sovereignty_violations"),
        "bascule.run_dir": (result.get("run") or {}).get("dir"),
    }
    for entry in score.get("dimensions") or ():
        values[f"bascule.{entry.get('name')}.sub_score"] = entry.get("sub_score")
    properties = ET.SubElement(case, "properties")
    for name, value in values.items():
        ET.SubElement(properties, "property", name=name, value=_text(value))


def _failure_text(score: Mapping[str, Any]) -> tuple[str, str]:
    failing = [d for d in score.get("dimensions") or () if not d.get("passed", False)]
    names = ", ".join(str(d.get("name")) for d in failing) or "the overall score"
    message = f"score {_text(score.get('overall'))} ({score.get('grade')}): objectives not met — {names}"
    lines = []
    for d in failing:
        lines.append(f"{d.get('name')}: {d.get('explanation', '')}")
        if d.get("recommendation"):
            lines.append(f"  → {d['recommendation']}")
    cap = score.get("cap")
    if cap:
        lines.append(f"capped at {cap.get('at')}: {cap.get('reason')}")
    return message, "\n".join(lines)


def render_junit(results: Sequence[Mapping[str, Any]], *, suite_name: str = "bascule") -> str:
    """The JUnit XML document for `results`, one ``<testcase>`` each, in the order given."""
    suite = ET.Element("testsuite", name=suite_name)
    failures = errors = 0
    total_time = 0.0
    for result in results:
        run = result.get("run") or {}
        scenario = (run.get("scenario") or {}).get("id", "?")
        design = (run.get("design") or {}).get("id", "?")
        elapsed = float(run.get("elapsed") or 0.0)
        total_time += elapsed
        case = ET.SubElement(
            suite, "testcase", classname=str(scenario), name=str(design), time=f"{elapsed:.3f}"
        )
        _properties(case, result)
        code = int(run.get("exit_code") or 0)
        score = result.get("score") or {}
        if code in _ERRORS:
            errors += 1
            error = ET.SubElement(case, "error", message=f"{_ERRORS[code]}: {run.get('reason', '')}")
            error.text = str(run.get("reason", ""))
        elif code != 0 or not score.get("passed", False):
            failures += 1
            message, text = _failure_text(score)
            if code == 1 and score.get("passed", False):
                message = f"the steady-state hypothesis failed after rollback: {run.get('reason', '')}"
            failure = ET.SubElement(case, "failure", message=message)
            failure.text = text
    suite.set("tests", str(len(results)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("time", f"{total_time:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
