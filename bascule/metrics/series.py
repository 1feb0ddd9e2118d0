"""The run's time series: one point per merged window — requests, success ratio, latency
quantiles and the traffic share per region, provider and sovereignty level. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from bascule.metrics.context import region_facts
from bascule.metrics.correctness import correctness_series
from bascule.metrics.model import Series
from bascule.metrics.state import MergedWindow, rounded
from bascule.model.design import Design

__all__ = ["compute_series"]

_LEVELS = ("sovereign", "trusted", "exposed", "foreign", "unknown")


def compute_series(
    windows: Sequence[MergedWindow], design: Design | None, rel: Callable[[float | None], float | None]
) -> Series:
    """`windows` in time order; `rel` turns a journal instant into plan seconds."""
    regions: dict[str, None] = {}
    if design is not None:
        regions.update(dict.fromkeys(design.routing_order))
    for w in windows:
        for _, region in w.served:
            regions.setdefault(region, None)
    facts = region_facts(design, regions)
    providers = list(dict.fromkeys(facts[r][0] for r in regions))
    levels = [lv for lv in _LEVELS if any(facts[r][1] == lv for r in regions)]
    share_region: dict[str, list[float | None]] = {r: [] for r in regions}
    share_provider: dict[str, list[float | None]] = {p: [] for p in providers}
    share_level: dict[str, list[float | None]] = {lv: [] for lv in levels}
    ts, lengths, reqs, ratios, p50, p95, p99 = [], [], [], [], [], [], []
    for w in windows:
        ts.append(rel(w.start) or 0.0)
        lengths.append(w.length)
        reqs.append(w.requests)
        ratios.append(rounded(w.ok / w.requests) if w.requests else None)
        p50.append(rounded(w.sketch.quantile(0.5)))
        p95.append(rounded(w.sketch.quantile(0.95)))
        p99.append(rounded(w.sketch.quantile(0.99)))
        by_region: Counter[str] = Counter()
        for (_, region), n in w.served.items():
            by_region[region] += n
        total = sum(by_region.values())
        by_provider: Counter[str] = Counter()
        by_level: Counter[str] = Counter()
        for region, n in by_region.items():
            by_provider[facts[region][0]] += n
            by_level[facts[region][1]] += n
        pairs = ((by_region, share_region), (by_provider, share_provider), (by_level, share_level))
        for counts, shares in pairs:
            for key, values in shares.items():
                values.append(round(counts[key] / total, 6) if total else None)
    graded = correctness_series(windows)
    return Series(
        t=tuple(ts),
        length=tuple(lengths),
        requests=tuple(reqs),
        success_ratio=tuple(ratios),
        p50=tuple(p50),
        p95=tuple(p95),
        p99=tuple(p99),
        share_region={k: tuple(v) for k, v in share_region.items()},
        share_provider={k: tuple(v) for k, v in share_provider.items()},
        share_level={k: tuple(v) for k, v in share_level.items()},
        graded=graded.graded,
        correct_ratio=graded.correct_ratio,
        correct_region=graded.correct_region,
    )
