"""The run's journal: what load and probes report about each request (`samples`), those samples
folded into bounded windows (`windows`), the hops the fault plane relayed (`hops`), the
OpenTelemetry spans received during a run with the region each was attributed to (`spans`), what
reached each fault while it was in force (`traffic`), the
append-only JSONL file a run writes (`writer`) and reads back (`reader`). Shared by the runner
that writes it and the metrics and reports that read it, so neither side imports the other.
"""

from bascule.journal.hops import PathHop, RouteHop, route_hop_from_json, route_hop_to_json
from bascule.journal.reader import (
    JOURNAL_FILE,
    JOURNAL_SCHEMA,
    HopRow,
    SampleRow,
    read_journal,
    scan_journal,
)
from bascule.journal.samples import (
    Hop,
    HopSource,
    RequestSample,
    hops_from_json,
    sample_from_json,
    sample_to_json,
)
from bascule.journal.spans import SpanKind, SpanRecord, SpanStatus, span_from_json, span_to_json
from bascule.journal.traffic import FaultTraffic
from bascule.journal.windows import LatencySketch, Window, WindowAggregator, served_region
from bascule.journal.writer import Journal

__all__ = [
    "JOURNAL_FILE",
    "JOURNAL_SCHEMA",
    "FaultTraffic",
    "Hop",
    "HopRow",
    "HopSource",
    "Journal",
    "LatencySketch",
    "PathHop",
    "RequestSample",
    "RouteHop",
    "SampleRow",
    "SpanKind",
    "SpanRecord",
    "SpanStatus",
    "Window",
    "WindowAggregator",
    "hops_from_json",
    "read_journal",
    "route_hop_from_json",
    "route_hop_to_json",
    "sample_from_json",
    "sample_to_json",
    "scan_journal",
    "served_region",
    "span_from_json",
    "span_to_json",
]
