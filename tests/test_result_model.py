"""The typed `bascule.result/1` (bascule.reports.model): ``result.json`` written from the model is
byte for byte what the dict builder wrote, documents of older and newer bascules still parse, and a
foreign document is refused.

``samples/results-by-dict-builder/*.json`` are what the dict builder (replaced by the model in the
commit that added this file) wrote for the journals of `SPECS`: a change of the metrics, the score or
the document shows here as a diff of those files."""

from __future__ import annotations

import json
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

from bascule.metrics import Metrics, compute_metrics
from bascule.reports.model import RESULT_SCHEMA, Result, dump_result, parse_result
from bascule.reports.result import build_result
from bascule.score import score

SAMPLES = Path(__file__).parent / "samples"
SAMPLE = SAMPLES / "result-sample.json"
BY_DICT_BUILDER = SAMPLES / "results-by-dict-builder"


def failover(t: float, source: str, data_class: str) -> Served:
    if data_class == "internal" and 0.0 <= t < 3.0:
        return Served(False)
    if data_class == "internal" and t < 17.0:
        return Served(True, STANDBY, latency=0.3, correct=True)
    return Served(True, STANDBY if data_class == "confidential" else PRIMARY, correct=True)


def leaking(t: float, source: str, data_class: str) -> Served:
    """An outage, then every answer's llm hop in the foreign primary: sovereignty violations."""
    if 0.0 <= t < 6.0:
        return Served(False)
    return Served(True, STANDBY, latency=0.2, correct=t > 10.0, llm_region=PRIMARY)


def metrics_of(spec: JournalSpec) -> Metrics:
    return compute_metrics(build_records(spec))


SPECS = {
    "failover-with-lost-writes": JournalSpec(
        reference_design(), one_phase_scenario(), failover, length=40.0, lost=(1.0, 2.5)
    ),
    "sovereignty-leak": JournalSpec(reference_design(), one_phase_scenario(length=8.0), leaking, length=25.0),
    "no-data-probe": JournalSpec(
        reference_design(), one_phase_scenario(), failover, length=20.0, canary_period=None
    ),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_model_writes_the_bytes_the_dict_builder_wrote(name: str) -> None:
    m = metrics_of(SPECS[name])
    graded = score(m, m.objectives, m.weights)
    old = (BY_DICT_BUILDER / f"{name}.json").read_text(encoding="utf-8")
    new = dump_result(build_result(m, graded, run_dir="runs/x"))
    assert new == old
    assert parse_result(new) == build_result(m, graded, run_dir="runs/x")


def test_the_sample_covers_violations_and_findings() -> None:
    m = metrics_of(SPECS["sovereignty-leak"])
    result = build_result(m, score(m, m.objectives, m.weights))
    assert result.violations and result.findings and result.figures.sovereignty_violations > 0
    assert result.run.dir is None and result.score.cap is not None


def test_an_older_document_with_fewer_keys_parses_with_defaults() -> None:
    result = parse_result(SAMPLE.read_bytes())
    assert result.run.design.id == "active-passive-sovereign"
    assert result.run.plan_start is None and result.series.p99 == ()
    assert result.events[0].kind == ""


def test_an_older_document_s_span_of_failover_reads_as_its_end() -> None:
    # Before 2026-12-05 a span was given by its start, 0 s for a 3.6 s failover (trial 11).
    doc = json.loads(SAMPLE.read_text(encoding="utf-8"))
    doc["figures"].update(time_to_failover=0.0, time_to_failover_within=3.79)
    figures = parse_result(doc).figures
    assert (figures.time_to_failover, figures.time_to_failover_earliest) == (3.79, 0.0)
    doc["figures"].update(time_to_failover=1.2, time_to_failover_within=None)
    figures = parse_result(doc).figures
    assert (figures.time_to_failover, figures.time_to_failover_earliest) == (1.2, None)


def test_a_newer_document_with_more_keys_parses() -> None:
    doc = json.loads(SAMPLE.read_text(encoding="utf-8"))
    doc["figures"]["blast_radius"] = {"regions": 2}
    doc["run"]["operator"] = "sre"
    doc["phases"][0]["lanes"] = [1, 2]
    result = parse_result(doc)
    assert result.figures.requests == doc["figures"]["requests"]
    assert "blast_radius" not in json.loads(dump_result(result))["figures"]


def test_foreign_documents_are_refused() -> None:
    with pytest.raises(ValueError, match=r"bascule\.result/1"):
        parse_result({"schema": "other"})
    with pytest.raises(ValueError, match=r"bascule\.result/1"):
        parse_result({"schema": RESULT_SCHEMA, "figures": {"requests": "many"}})
    with pytest.raises(ValueError, match=r"bascule\.result/1"):
        parse_result("[1, 2]")


def test_the_model_is_frozen() -> None:
    result = Result()
    with pytest.raises(ValueError, match="frozen"):
        result.figures.requests = 3  # type: ignore[misc]
