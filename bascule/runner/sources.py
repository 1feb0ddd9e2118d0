"""The same run's paths as each source told them, side by side: the fault plane's hops and the
services' OpenTelemetry spans, each judged alone — how many requests it attributed, how many of
them violated sovereignty, when the first request failed over — and whether the two agree on the
requests both saw. Pure: the runner feeds it every sample with each source's hops.

Failover, per source, is timed as the metrics time it (`bascule.metrics`, "time to fail over"),
from the requests' own start instants: the first fault's instant → the first request that
succeeded, of a data class the impaired regions served before that fault (as that source saw it),
served outside them. A request's serving region, per source, is that of its hops alone
(`bascule.journal.served_region`, without the entry point the edge reports).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from bascule.journal import Hop, RequestSample, served_region
from bascule.model.design import Design
from bascule.probes.sovereignty import violations

__all__ = ["SourceComparison", "SourceFigures", "SourcesReport"]


@dataclass(frozen=True)
class SourceFigures:
    requests: int = 0
    """Requests this source told at least one hop of (a hop the request reached)."""
    violating: int = 0
    """Of those, requests with a hop below their data class's minimum level."""
    time_to_failover: float | None = None
    """Seconds from the first fault; None when this source saw no request fail over."""


@dataclass(frozen=True)
class SourcesReport:
    sources: dict[str, SourceFigures]
    """``fault-plane`` and ``otlp`` → what each told on its own."""
    both: int = 0
    """Requests both sources attributed."""
    same_region: int = 0
    """Of those, requests both say were served in the same region."""
    same_verdict: int = 0
    """Of those, requests both judge alike for sovereignty (both violating, or neither)."""


class _Tally:
    def __init__(self) -> None:
        self.requests = 0
        self.violating = 0
        self.baseline: Counter[tuple[str, str]] = Counter()
        """(data class, region) → successes started before the first fault."""
        self.elsewhere: dict[tuple[str, str], float] = {}
        """(data class, region) → the earliest success started after the first fault there."""

    def figures(self, first_fault: float | None, impaired: frozenset[str]) -> SourceFigures:
        ttf = None
        if first_fault is not None and impaired:
            classes = {k for (k, region), n in self.baseline.items() if n and region in impaired}
            if not self.baseline:
                classes = {k for (k, _) in self.elsewhere}
            found = [
                t for (k, region), t in self.elsewhere.items() if k in classes and region not in impaired
            ]
            ttf = round(max(0.0, min(found) - first_fault), 6) if found else None
        return SourceFigures(self.requests, self.violating, ttf)


class SourceComparison:
    """Fed every sample once, with the hops each source told of it."""

    def __init__(self, design: Design, impaired: Iterable[str]) -> None:
        self.design = design
        self.impaired = frozenset(impaired)
        self.first_fault: float | None = None
        self._tallies: dict[str, _Tally] = {}
        self._both = self._same_region = self._same_verdict = 0

    def fault_applied(self, at: float) -> None:
        if self.first_fault is None or at < self.first_fault:
            self.first_fault = at

    def add(self, sample: RequestSample, by_source: dict[str, Sequence[Hop]]) -> None:
        seen: dict[str, tuple[str | None, bool]] = {}
        for source, hops in by_source.items():
            tally = self._tallies.setdefault(source, _Tally())
            if not any(hop.relayed for hop in hops):
                continue
            alone = replace(sample, hops=tuple(hops), entry_region=None)
            region = served_region(alone)
            violated = bool(violations(alone, self.design))
            seen[source] = (region, violated)
            tally.requests += 1
            tally.violating += violated
            if not sample.ok or region is None:
                continue
            key = (sample.data_class or "-", region)
            if self.first_fault is None or sample.started < self.first_fault:
                tally.baseline[key] += 1
            else:
                known = tally.elsewhere.get(key)
                tally.elsewhere[key] = sample.started if known is None else min(known, sample.started)
        if len(seen) >= 2:
            (region_a, verdict_a), (region_b, verdict_b) = list(seen.values())[:2]
            self._both += 1
            self._same_region += region_a == region_b
            self._same_verdict += verdict_a == verdict_b

    def report(self) -> SourcesReport:
        sources = {
            name: tally.figures(self.first_fault, self.impaired)
            for name, tally in sorted(self._tallies.items())
        }
        return SourcesReport(sources, self._both, self._same_region, self._same_verdict)
