"""`compute_metrics`: a run's figures from its journal's records, in one pass and bounded memory.

Windows (≤ 1 s, merged by ``start``) carry the ratios, the latency sketches, the serving regions and
the golden grades of every request. Sample records (every probe request, and load requests with
``--raw-samples``) time what windows cannot: they are folded, as they stream by, into 10 ms ticks
(`bascule.metrics.ticks`), so that a journal of a million raw samples costs memory in proportion to
its duration, never to its length. Instants then come from samples where they exist and from
windows otherwise (docs/scoring.md, "Measurements").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bascule.journal import SampleRow
from bascule.metrics.figures import SUSTAIN, derive
from bascule.metrics.model import Metrics
from bascule.metrics.state import MAX_EVENTS, MAX_VIOLATIONS, JournalState
from bascule.metrics.ticks import TICK
from bascule.model.scenario import Objectives

__all__ = ["MAX_EVENTS", "MAX_VIOLATIONS", "SUSTAIN", "TICK", "compute_metrics"]


def compute_metrics(
    records: Iterable[Mapping[str, Any] | SampleRow], *, objectives: Objectives | None = None
) -> Metrics:
    """The figures of one run from its journal's records (as `read_journal` or, faster,
    `scan_journal` yields them), in one pass. ``objectives`` overrides the journal's own (they set
    the success ratio an outage is judged against, and the error budget)."""
    state = JournalState(objectives)
    add, extras, feed = state.ticks.add_record, state.sample_extras, state.feed
    add_row, row_extras = state.ticks.add_row, state.row_extras
    # Sample records are most of a journal: they take the shortest path, typed ones the shortest.
    for record in records:
        if isinstance(record, SampleRow):
            add_row(record)
            if state.origin_mono is None or record.kind == "write":
                row_extras(record)
        elif record.get("type") == "sample":
            add(record)
            if state.origin_mono is None or record.get("kind") == "write":
                extras(record)
        else:
            feed(record)
    return derive(state)
