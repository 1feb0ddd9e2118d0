"""The journal: bounded windows, a mergeable latency sketch, records readable while written."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.journal import (
    Journal,
    LatencySketch,
    SampleRow,
    WindowAggregator,
    read_journal,
    scan_journal,
    served_region,
)
from bascule.journal.samples import Hop, RequestSample


def sample(started: float, ok: bool = True, latency: float = 0.02, **kw: object) -> RequestSample:
    return RequestSample("load", "ask", started, latency, ok, **kw)  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-4, max_value=60.0), min_size=1, max_size=400),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_sketch_quantiles_within_one_percent(values: list[float], q: float) -> None:
    sketch = LatencySketch()
    for v in values:
        sketch.add(v)
    exact = sorted(values)[int(q * (len(values) - 1))]
    estimate = sketch.quantile(q)
    assert estimate is not None and abs(estimate - exact) <= 0.0101 * exact


@given(
    st.lists(st.floats(min_value=1e-4, max_value=10.0), max_size=100),
    st.lists(st.floats(min_value=1e-4, max_value=10.0), max_size=100),
)
def test_sketches_merge_like_one(a: list[float], b: list[float]) -> None:
    left, right, whole = LatencySketch(), LatencySketch(), LatencySketch()
    for v in a:
        left.add(v)
        whole.add(v)
    for v in b:
        right.add(v)
        whole.add(v)
    left.merge(right)
    assert left.buckets == whole.buckets and left.count == whole.count
    assert LatencySketch.from_json(left.to_json()).buckets == whole.buckets


def test_windows_by_start_time_closed_after_grace() -> None:
    agg = WindowAggregator(origin=100.0, length=1.0, grace=2.0)
    aws = (
        Hop("gateway", "aws/us-east-1", sovereignty="foreign"),
        Hop("retriever", "aws/us-east-1", sovereignty="foreign"),
    )
    par = (
        Hop("gateway", "scaleway/fr-par", sovereignty="sovereign"),
        Hop("retriever", "scaleway/fr-par", sovereignty="sovereign"),
    )
    agg.add(sample(100.1, data_class="internal", hops=aws))
    agg.add(sample(100.9, ok=False, data_class="internal", error="ConnectError: refused"))
    agg.add(sample(101.2, data_class="confidential", hops=par, correct=True))
    assert agg.close_before(102.5) == []
    (first,) = agg.close_before(103.1)
    assert (first.start, first.requests, first.ok) == (0.0, 2, 1)
    record = first.to_record()
    assert record["regions"] == {"internal": {"aws/us-east-1": 1}}
    assert record["levels"] == {"foreign": 1} and record["errors"] == {"ConnectError": 1}
    (second,) = agg.close_all()
    assert second.to_record()["golden"] == {"correct": 1, "graded": 1}
    assert second.to_record()["levels"] == {"sovereign": 1}


def test_windows_are_at_most_one_second() -> None:
    with pytest.raises(ValueError):
        WindowAggregator(0.0, length=2.0)


def test_served_region_prefers_the_retriever() -> None:
    hops = (
        Hop("gateway", "aws/us-east-1"),
        Hop("retriever", "scaleway/fr-par"),
        Hop("llm", "scaleway/fr-par"),
    )
    assert served_region(sample(0, hops=hops, entry_region="aws/us-east-1")) == "scaleway/fr-par"
    assert served_region(sample(0, entry_region="aws/us-east-1")) == "aws/us-east-1"


def test_journal_is_readable_while_written_and_tolerates_a_cut_line(tmp_path: Path) -> None:
    journal = Journal(tmp_path, origin=50.0, raw_samples=True)
    journal.write("run-started", scenario="s", at=50.0)
    journal.sample(sample(51.0))
    records = list(read_journal(tmp_path))
    assert [r["type"] for r in records] == ["run-started", "sample"]
    assert records[0]["t"] == 0.0 and records[1]["t"] == 1.0
    journal.close()
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write(json.dumps({"type": "fault-applied"})[:10])
    assert len(list(read_journal(tmp_path))) == 2


def test_a_journal_is_read_alike_by_both_readers_nan_and_cut_line_included(tmp_path: Path) -> None:
    journal = Journal(tmp_path, origin=50.0, raw_samples=True)
    journal.write("run-started", scenario="s", at=50.0)
    journal.sample(sample(51.0))
    journal.write("hypothesis", at=52.0, value=math.nan)  # the stdlib writes NaN; msgspec refuses it
    journal.close()
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write("[1, 2]\nnot json\n")
        f.write(json.dumps({"type": "sample", "t": 3.0})[:20])
    records = list(read_journal(tmp_path))
    assert [r["type"] for r in records] == ["run-started", "sample", "hypothesis"]
    assert math.isnan(records[2]["value"])
    scanned = list(scan_journal(tmp_path))
    assert isinstance(scanned[1], SampleRow) and scanned[1].t == 1.0 and scanned[1].source == "load"
    assert scanned[0] == records[0] and scanned[2]["type"] == "hypothesis"
    assert len(scanned) == 3


def test_probe_samples_are_journaled_always_load_samples_only_when_raw(tmp_path: Path) -> None:
    journal = Journal(tmp_path, origin=0.0)
    journal.sample(sample(1.0))
    journal.sample(replace(sample(2.0), source="rag-internal"))
    journal.close()
    assert [r["source"] for r in read_journal(tmp_path) if r["type"] == "sample"] == ["rag-internal"]


def test_served_region_is_the_last_hop_that_served_and_the_record_reader_agrees() -> None:
    from bascule.journal import HopSource, sample_from_json, sample_to_json
    from bascule.metrics.ticks import served_region as served_region_of_record

    plane = HopSource.FAULT_PLANE
    cases = [
        ((), "eu", "eu"),
        (
            (
                Hop("proxy", "par", via=plane, status=200),
                Hop("llm", "us", via=plane, status=429, relayed=False),
                Hop("llm", "par2", via=plane, status=200),
            ),
            "par",
            "par2",
        ),
        ((Hop("proxy", "par", via=plane, status=200), Hop("llm", "us", via=plane, status=503)), "par", "par"),
        ((Hop("gateway", "a"), Hop("retriever", "b"), Hop("llm", "c")), "a", "b"),
        ((Hop("llm", "us", via=plane, status=None, relayed=False),), "par", "par"),
    ]
    for hops, entry, expected in cases:
        sample = RequestSample("load", "ask", 0.0, 0.1, True, entry_region=entry, hops=hops)
        assert served_region(sample) == expected
        record = sample_to_json(sample)
        assert served_region_of_record(record) == expected
        assert sample_from_json(record) == sample


def test_a_service_cannot_claim_a_hop_source_in_its_own_report() -> None:
    from bascule.journal import HopSource, hops_from_json

    (hop,) = hops_from_json([{"component": "x", "region": "r", "via": "fault-plane", "status": 503}])
    assert (hop.via, hop.status, hop.relayed) == (HopSource.SERVED_BY, None, True)
