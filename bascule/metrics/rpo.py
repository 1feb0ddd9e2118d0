"""The RPO: acknowledged canary writes lost, from the ``data-report`` records. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from bascule.metrics.model import Rpo
from bascule.metrics.state import JournalState, rounded

__all__ = ["compute_rpo"]


def _by_region(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counts summed per region over the data reports, regions with none left out, sorted."""
    total: Counter[str] = Counter()
    for each in counts:
        total.update(each)
    return {region: n for region, n in sorted(total.items()) if n > 0}


def compute_rpo(
    r: JournalState, notes: dict[str, str], rel: Callable[[float | None], float | None]
) -> Rpo | None:
    """Acknowledged canary writes lost, from the journal's ``data-report`` records
    (docs/scoring.md, "RPO"); `rel` makes a run instant one of the plan. Why not, in `notes`."""
    reports = r.data_reports
    if not reports:
        notes["rpo"] = (
            "no data-report in the journal: the run stopped before the canary writes were read back"
            if r.data_probes is not False
            else "no canary writes were made: the run had no data probe (docs/probes.md)"
        )
        return None
    acknowledged = sum(d.acknowledged for d in reports)
    lost_at: list[float] = []
    intervals: list[float] = []
    for d in reports:
        lost_at.extend(d.lost)
        stats = r.writes.get(d.probe)
        if d.lost and stats is not None and stats.interval is not None:
            intervals.append(stats.interval)
    unverified = sum(len(d.unverified) for d in reports)
    missing = _by_region(d.per_region for d in reports)
    unread = _by_region(d.unreadable for d in reports)
    if unverified:
        # Neither lost nor kept (docs/probes.md): no region that answered holds them, and one that
        # may did not answer. What was verified bounds the RPO from below only.
        cannot = (
            f"{unverified} of {acknowledged} acknowledged canary writes could not be verified: no region "
            f"that answered the read-back holds them, and {', '.join(unread) or 'a region that may'} "
            "did not answer it"
        )
        notes["rpo_unverified"] = cannot
        if not lost_at:
            notes["rpo"] = f"{cannot}; whether they were lost cannot be told"
            return Rpo(acknowledged, 0, unverified, None, None, None, None, None, missing, unread)
    if not lost_at:
        return Rpo(acknowledged, 0, unverified, None, None, None, None, 0.0, missing, unread)
    window = max(lost_at) - min(lost_at)
    interval = max(intervals) if intervals else None
    if interval is None:
        notes["rpo_interval"] = "the canary interval is unknown: the RPO is the lost writes' span"
    origin = r.origin_mono
    first = None if origin is None else rel(min(lost_at) - origin)
    last = None if origin is None else rel(max(lost_at) - origin)
    return Rpo(
        acknowledged=acknowledged,
        lost=len(lost_at),
        unverified=unverified,
        window=round(window, 6),
        first_lost=first,
        last_lost=last,
        interval=rounded(interval),
        seconds=round(window + (interval or 0.0), 6),
        missing_by_region=missing,
        unreadable_by_region=unread,
    )
