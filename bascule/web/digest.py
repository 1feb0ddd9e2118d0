"""What the live page is told: journal records, as they are written, turned into the few events the
page draws (`PageEvent`), and the figures of the last seconds computed from the run's windows.
Pure: records in, events out; the server (`bascule.web.server`) only carries them.

Events, each with ``t`` (run seconds: the journal's clock):

- ``run``: the plan — scenario, design, regions with their sovereignty level, phases with their
  planned instants, the plan's findings, the guardrails.
- ``stage``: where the run is (``target started``, ``plan started``, ``hypothesis before: ok``…).
- ``fault``: a fault applied or reverted (``op``), with its phase (``phase`` is null for a
  rollback revert, which names its ``key``).
- ``figures``: success ratio, p95 and traffic share per region and per sovereignty level over the
  last `RECENT` seconds of windows (a window is written about 2 s after it ends).
- ``violation``, ``guardrail``, ``problem`` (an ``error`` or ``refused`` record; not named
  ``error``, the event source's own event), ``score``, ``ended``: as their records say.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from bascule.journal import LatencySketch
from bascule.model.design import Design

__all__ = ["RECENT", "PageEvent", "RunDigest", "recent_figures"]

RECENT = 5
"""Windows (seconds) the figures are computed over."""


@dataclass(frozen=True)
class PageEvent:
    name: str
    data: Mapping[str, Any]


@dataclass
class _Region:
    ok: int = 0
    requests: int = 0
    sketch: LatencySketch = field(default_factory=LatencySketch)


def _ratio(ok: int, requests: int) -> float | None:
    return round(ok / requests, 4) if requests else None


def _ms(sketch: LatencySketch) -> float | None:
    p95 = sketch.quantile(0.95)
    return None if p95 is None else round(p95 * 1000, 1)


def _share(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(v / total, 4) for k, v in sorted(counts.items())} if total else {}


def recent_figures(windows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures of these window records, merged: overall and per region {requests, ok, ratio,
    p95_ms}, ``share`` of successful requests by serving region and ``levels`` by lowest
    sovereignty level (fractions of 1)."""
    overall = _Region()
    regions: dict[str, _Region] = {}
    served: dict[str, int] = {}
    levels: dict[str, int] = {}
    for w in windows:
        overall.ok += int(w.get("ok", 0))
        overall.requests += int(w.get("requests", 0))
        overall.sketch.merge(LatencySketch.from_json(w.get("latency") or {}))
        for region, figures in (w.get("by_region") or {}).items():
            into = regions.setdefault(region, _Region())
            into.ok += int(figures.get("ok", 0))
            into.requests += int(figures.get("requests", 0))
            into.sketch.merge(LatencySketch.from_json(figures.get("latency") or {}))
        for per_region in (w.get("regions") or {}).values():
            for region, n in per_region.items():
                served[region] = served.get(region, 0) + int(n)
        for level, n in (w.get("levels") or {}).items():
            levels[level] = levels.get(level, 0) + int(n)
    return {
        "overall": {
            "requests": overall.requests,
            "ok": overall.ok,
            "ratio": _ratio(overall.ok, overall.requests),
            "p95_ms": _ms(overall.sketch),
        },
        "regions": {
            region: {
                "requests": r.requests,
                "ok": r.ok,
                "ratio": _ratio(r.ok, r.requests),
                "p95_ms": _ms(r.sketch),
            }
            for region, r in sorted(regions.items())
        },
        "share": _share(served),
        "levels": _share(levels),
    }


def _guardrail_text(spec: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "kind" and v not in (None, "", [], {}))
    return f"{spec.get('kind', '?')}: {rest}" if rest else str(spec.get("kind", "?"))


def _regions(design: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The design's regions with their provider and level — the catalog's where the design file
    leaves them out."""
    try:
        resolved = Design.model_validate(design)
    except ValidationError:  # a journal of another version: what it says, no more
        return [
            {"id": r.get("id"), "provider": r.get("provider"), "sovereignty": r.get("sovereignty")}
            for r in design.get("regions") or []
        ]
    return [
        {"id": r.id, "provider": r.provider, "sovereignty": r.sovereignty.value}
        for r in (resolved.region(spec.id) for spec in resolved.regions)
    ]


def _run_event(record: Mapping[str, Any]) -> PageEvent:
    plan = record.get("plan") or {}
    scenario = record.get("scenario") or {}
    design = record.get("design") or {}
    return PageEvent(
        "run",
        {
            "t": record.get("t"),
            "scenario": plan.get("scenario") or scenario.get("id"),
            "title": scenario.get("title") or "",
            "design": plan.get("design") or design.get("id"),
            "run_length": (plan.get("time") or {}).get("run_length_s"),
            "scale": (plan.get("time") or {}).get("scale"),
            "regions": _regions(design),
            "phases": [
                {
                    "index": p.get("index"),
                    "name": p.get("name"),
                    "kind": p.get("kind"),
                    "target": str(p.get("target")),
                    "start": p.get("run_start_s"),
                    "end": p.get("run_end_s"),
                    "note": p.get("note") or "",
                }
                for p in plan.get("phases") or []
            ],
            "findings": [
                {"severity": f.get("severity"), "kind": f.get("kind"), "message": f.get("message")}
                for f in plan.get("findings") or []
            ],
            "guardrails": [_guardrail_text(g) for g in scenario.get("guardrails") or []],
            "guardrail_kinds": [g.get("kind") for g in scenario.get("guardrails") or []],
        },
    )


_STAGES = {
    "target-started": "target started",
    "probes-started": "probes started",
    "load-started": "load started",
    "plan-started": "plan started",
}
_KEY = re.compile(r"(?:^|/)p(\d+)(?:\.c\d+)?$")
"""An action's key (`Action.key`), as a rollback names it: ``p2``, ``p4.c1``, ``run-3f9a/p0``."""
_PASSED = ("phase", "name", "kind", "cycle", "actual", "planned", "key", "rollback", "effects")


class RunDigest:
    """Turns one run's records into page events, in order; keeps the last windows for the figures."""

    def __init__(self) -> None:
        self._windows: deque[Mapping[str, Any]] = deque(maxlen=RECENT)

    def take(self, record: Mapping[str, Any]) -> list[PageEvent]:
        kind = str(record.get("type", ""))
        t = record.get("t")
        if kind == "run-started":
            return [_run_event(record)]
        if kind in _STAGES:
            return [PageEvent("stage", {"t": t, "stage": _STAGES[kind]})]
        if kind == "hypothesis":
            verdict = "skipped" if record.get("skipped") else ("ok" if record.get("ok") else "failed")
            stage = f"steady-state hypothesis {record.get('when')}: {verdict}"
            return [PageEvent("stage", {"t": t, "stage": stage, "summary": record.get("summary") or ""})]
        if kind in ("fault-applied", "fault-reverted"):
            op = "applied" if kind == "fault-applied" else "reverted"
            data = {"t": t, "op": op} | {k: record.get(k) for k in _PASSED}
            keyed = _KEY.search(str(record.get("key") or ""))
            if data["phase"] is None and keyed:  # a rollback revert names its action's key
                data["phase"] = int(keyed.group(1))
            return [PageEvent("fault", data)]
        if kind == "window":
            self._windows.append(record)
            figures = recent_figures(self._windows)
            end = float(record.get("start", 0.0)) + float(record.get("length", 0.0))
            return [PageEvent("figures", {"t": t, "window_end": round(end, 3), **figures})]
        if kind == "sovereignty-violation":
            hop = record.get("hop") or {}
            data = {"t": t, "data_class": record.get("data_class"), "region": hop.get("region")}
            return [PageEvent("violation", data)]
        if kind == "guardrail-tripped":
            data = {"t": t, "guardrail": record.get("guardrail"), "reason": record.get("reason")}
            return [PageEvent("guardrail", data)]
        if kind in ("error", "refused"):
            return [PageEvent("problem", {"t": t, "message": record.get("message")})]
        if kind == "score":
            keep = ("overall", "grade", "passed", "failing", "unmeasured")
            return [PageEvent("score", {"t": t} | {k: record.get(k) for k in keep})]
        if kind == "run-ended":
            data = {"t": t, "exit_code": record.get("exit_code"), "reason": record.get("reason")}
            return [PageEvent("ended", data)]
        return []
