"""JUnit XML from run results: passes, failures with the failing dimensions, errors for runs that
did not complete, and the score and figures as properties."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bascule.reports.junit import render_junit
from bascule.reports.model import parse_result

SAMPLE = json.loads((Path(__file__).parent / "samples" / "result-sample.json").read_text())


def variant(design: str, *, passed: bool, exit_code: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(SAMPLE)
    doc["run"]["design"]["id"] = design
    doc["run"]["exit_code"] = exit_code
    doc["score"]["passed"] = passed
    for d in doc["score"]["dimensions"]:
        d["passed"] = passed or d["name"] != "durability"
    return doc


def test_cases_properties_failures_and_errors() -> None:
    xml = render_junit(
        [
            parse_result(r)
            for r in [
                variant("good", passed=True),
                variant("lossy", passed=False, exit_code=1),
                variant("broken", passed=False, exit_code=4),
            ]
        ]
    )
    suite = ET.fromstring(xml)
    assert suite.attrib["tests"] == "3" and suite.attrib["failures"] == "1" and suite.attrib["errors"] == "1"
    good, lossy, broken = suite.findall("testcase")
    assert good.attrib["classname"] == "aws-us-east-1-2025-10-20" and good.attrib["name"] == "good"
    assert good.find("failure") is None and good.find("error") is None
    props = {p.attrib["name"]: p.attrib["value"] for p in good.iter("property")}
    assert props["bascule.grade"] == SAMPLE["score"]["grade"]
    assert props["bascule.availability.sub_score"] == "100"
    failure = lossy.find("failure")
    assert failure is not None and "durability" in failure.attrib["message"]
    assert failure.text is not None and "durability:" in failure.text
    error = broken.find("error")
    assert error is not None and error.attrib["message"].startswith("target or infrastructure error")


def test_hostile_text_is_escaped() -> None:
    doc = variant('<design & "co">', passed=False, exit_code=1)
    doc["score"]["dimensions"][4]["explanation"] = "]]></failure><x>"
    suite = ET.fromstring(render_junit([parse_result(r) for r in [doc]]))
    (case,) = suite.findall("testcase")
    assert case.attrib["name"] == '<design & "co">'
    failure = case.find("failure")
    assert failure is not None and failure.text is not None and "]]></failure><x>" in failure.text


def test_a_failure_names_what_kept_the_pass_and_not_what_was_left_out() -> None:
    """An unmeasured dimension with a weight kept the pass and is named apart from the objectives
    missed; one left out with a weight of 0 is not named (seen in a user's trial: its message
    listed correctness and sovereignty, both weighted 0, as objectives not met)."""
    doc = variant("mixed", passed=False, exit_code=1)
    for d in doc["score"]["dimensions"]:
        if d["name"] in ("correctness", "sovereignty"):
            d.update(passed=None, weight=0)
        elif d["name"] == "latency":
            d.update(passed=None, weight=15)
    (case,) = ET.fromstring(render_junit([parse_result(doc)])).findall("testcase")
    failure = case.find("failure")
    assert failure is not None
    message = failure.attrib["message"]
    assert message.endswith("objectives not met — durability; unmeasured — latency"), message
    assert failure.text is not None and "correctness:" not in failure.text and "latency:" in failure.text
