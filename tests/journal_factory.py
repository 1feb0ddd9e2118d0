"""Synthetic run journals with known answers, for the metrics and score tests.

A *world* says what happens to each request: ``world(t, source, data_class) -> Served``, with ``t``
in plan seconds. The factory sends probe requests every ``probe_period`` and load requests at
``load_rate``, folds them into windows with the runner's own `WindowAggregator`, judges them with
the runner's sovereignty judge, and writes the records the runner writes (docs/journal.md), in the
order it writes them: a sample when it is drained, a window once closed, a fault when applied.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bascule.journal import WindowAggregator
from bascule.journal.samples import Hop, RequestSample, sample_to_json
from bascule.model.design import Design
from bascule.model.loading import read_design
from bascule.model.scenario import Scenario
from bascule.plan import ActionOp, plan, plan_to_dict
from bascule.probes.sovereignty import violations

ROOT = Path(__file__).resolve().parent.parent
PRIMARY = "aws/us-east-1"
STANDBY = "scaleway/fr-par"
ORIGIN = 1000.0
"""The run's origin on the (synthetic) monotonic clock."""


@dataclass(frozen=True)
class Served:
    """What happened to one request."""

    ok: bool
    region: str | None = None
    """The serving region (retriever, store and llm hops are placed there)."""
    latency: float = 0.05
    correct: bool | None = None
    """For golden questions: whether the answer was right (``None``: not a golden question)."""
    llm_region: str | None = None
    """Where the llm hop ran, when not in the serving region (a sovereignty leak)."""


World = Callable[[float, str, str], Served]


@dataclass(frozen=True)
class FaultSpan:
    """A fault in force over ``[apply, revert)``, plan seconds; ``revert=None``: never reverted."""

    phase: int
    apply: float
    revert: float | None
    cycle: int | None = None
    traffic: dict[str, int] | None = None
    """The revert's ``traffic`` (what the target counted on the fault's parts); None: absent."""


@dataclass
class JournalSpec:
    design: Design
    scenario: Scenario
    world: World
    length: float
    """Plan seconds of traffic after the plan starts."""
    warm_up: float = 5.0
    """Run seconds before the plan starts (the plan starts at this instant of the run)."""
    faults: Sequence[FaultSpan] | None = None
    """Default: the plan's own actions, on time."""
    probe_period: float = 0.1
    probes: Sequence[tuple[str, str]] = (("rag-internal", "internal"), ("rag-confidential", "confidential"))
    load_rate: float = 40.0
    load_classes: Sequence[str] = ("internal",) * 7 + ("confidential",) * 3
    raw_load: bool = False
    canary_period: float | None = 0.5
    """A data probe writing canaries at this period (None: no data probe, no data-report)."""
    lost: Sequence[float] = ()
    """Plan seconds: canaries acknowledged at (about) these instants are reported lost."""
    data_report: bool = True
    exit_code: int = 0
    extra: list[dict[str, Any]] = field(default_factory=list)


def reference_design() -> Design:
    return read_design(ROOT / "designs" / "active-passive-sovereign.yaml")


def one_phase_scenario(
    *,
    kind: str = "region-outage",
    target: dict[str, str] | None = None,
    at: float = 0.0,
    length: float = 12.0,
    settle: float = 10.0,
    objectives: dict[str, Any] | None = None,
    weights: dict[str, float] | None = None,
    fault: dict[str, Any] | None = None,
    name: str | None = None,
) -> Scenario:
    """A real-time scenario with one phase (``at`` and ``length`` in plan seconds)."""
    return Scenario.model_validate(
        {
            "id": "synthetic",
            "title": "synthetic outage",
            "replay": {"time_scale": 1, "min_phase": 1},
            "warm_up": 5,
            "settle": settle,
            "phases": [
                {
                    "name": name or f"{kind} of the primary",
                    "at": at,
                    "for": length,
                    "fault": fault or {"kind": kind},
                    "target": target or {"region": PRIMARY},
                }
            ],
            "objectives": objectives or {},
            "weights": weights or {},
        }
    )


def hops(design: Design, region: str, llm_region: str | None = None) -> tuple[Hop, ...]:
    out = []
    for component in ("gateway", "retriever", "store", "llm"):
        where = llm_region if component == "llm" and llm_region else region
        r = design.region(where)
        out.append(Hop(component, where, r.provider, r.jurisdiction, r.sovereignty.value))
    return tuple(out)


def build_records(spec: JournalSpec) -> list[dict[str, Any]]:
    """The records of one synthetic run, in journal order."""
    return [record for _, _, record in sorted(_timed(spec), key=lambda x: (x[0], x[1]))]


def write_journal(spec: JournalSpec, path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for record in build_records(spec):
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    return path


def _timed(spec: JournalSpec) -> Iterator[tuple[float, int, dict[str, Any]]]:
    seq = itertools.count()
    design, scenario = spec.design, spec.scenario
    built = plan(design, scenario)
    plan_start = spec.warm_up
    end = plan_start + spec.length

    def rec(t: float, record_type: str, **fields: Any) -> tuple[float, int, dict[str, Any]]:
        head = {"type": record_type, "t": round(t, 6), "wall": "2026-01-01T00:00:00.000+00:00"}
        return t, next(seq), {**head, **fields}

    yield rec(
        0.0,
        "run-started",
        schema="bascule.journal/1",
        bascule="0.1.0",
        python="3.11",
        machine={"platform": "synthetic", "cpus": 2},
        scenario=scenario.model_dump(mode="json", by_alias=True),
        design=design.model_dump(mode="json"),
        plan=plan_to_dict(built),
        options={"target": "synthetic", "load_workers": 0, "raw_samples": spec.raw_load},
    )
    yield rec(0.5, "probes-started", probes=[name for name, _ in spec.probes])
    yield rec(plan_start - 0.01, "hypothesis", when="before", ok=True, summary="held", failures=[])
    yield rec(plan_start, "plan-started", run_length=built.run_length)

    faults = spec.faults
    if faults is None:
        opened: dict[tuple[int, int | None], float] = {}
        spans = []
        for action in built.actions:
            if action.op is ActionOp.APPLY:
                opened[(action.phase, action.cycle)] = action.offset
            else:
                start = opened.pop((action.phase, action.cycle))
                spans.append(FaultSpan(action.phase, start, action.offset, action.cycle))
        faults = spans
    for f in faults:
        phase = built.phases[f.phase]
        common = {"phase": f.phase, "name": phase.name, "kind": phase.kind, "cycle": f.cycle}
        yield rec(
            plan_start + f.apply,
            "fault-applied",
            **common,
            planned=f.apply,
            actual=f.apply,
            late_by=0.0,
            took=0.001,
            effects=[],
        )
        if f.revert is not None:
            yield rec(
                plan_start + f.revert,
                "fault-reverted",
                **common,
                planned=f.revert,
                actual=f.revert,
                late_by=0.0,
                took=0.001,
                effects=[],
                **({} if f.traffic is None else {"traffic": f.traffic}),
            )

    aggregator = WindowAggregator(origin=ORIGIN, grace=1.0)
    acked: list[tuple[str, float]] = []

    def sample(t: float, source: str, kind: str, data_class: str, number: int) -> RequestSample:
        served = spec.world(t - plan_start, source, data_class)
        region = served.region or PRIMARY
        return RequestSample(
            source=source,
            kind=kind,
            started=ORIGIN + t,
            latency=served.latency,
            ok=served.ok,
            status=200 if served.ok else 503,
            data_class=data_class,
            entry_region=region,
            hops=hops(design, region, served.llm_region) if served.ok else (),
            correct=(served.correct if kind == "ask" and source != "load" else None) if served.ok else None,
            error=None if served.ok else "HTTP 503",
            request_id=f"{source}-{number}",
        )

    streams: list[tuple[float, str, str, str, bool]] = []
    for offset, (name, data_class) in enumerate(spec.probes):
        n = int((end - 0.0) / spec.probe_period)
        streams += [
            (0.013 * (offset + 1) + i * spec.probe_period, name, "ask", data_class, True) for i in range(n)
        ]
    if spec.canary_period:
        n = int(end / spec.canary_period)
        streams += [(0.031 + i * spec.canary_period, "canary", "write", "internal", True) for i in range(n)]
    if spec.load_rate:
        n = int(end * spec.load_rate)
        streams += [
            (
                0.007 + i / spec.load_rate,
                "load",
                "ask",
                spec.load_classes[i % len(spec.load_classes)],
                spec.raw_load,
            )
            for i in range(n)
        ]
    streams.sort()
    for number, (t, source, kind, data_class, journaled) in enumerate(streams):
        s = sample(t, source, kind, data_class, number)
        aggregator.add(s)
        if journaled:
            yield rec(t, "sample", **sample_to_json(s))
        for v in violations(s, design):
            yield rec(
                t,
                "sovereignty-violation",
                request_id=v.request_id,
                source=v.source,
                data_class=v.data_class,
                hop=asdict(v.hop),
                minimum=v.minimum.value,
                level=v.level.value,
            )
        if kind == "write" and s.ok:
            acked.append((s.request_id or "", ORIGIN + t + s.latency))
        for window in aggregator.close_before(ORIGIN + t):
            record = window.to_record()
            record.pop("type")
            yield rec(window.start + window.length + 1.0, "window", **record)
    for window in aggregator.close_all():
        record = window.to_record()
        record.pop("type")
        yield rec(end + 1.5, "window", **record)

    yield rec(end + 1.6, "hypothesis", when="after", ok=True, summary="held", failures=[])
    if spec.canary_period and spec.data_report:
        lost = []
        for when in spec.lost:
            target = ORIGIN + plan_start + when
            lost.append(min(acked, key=lambda a: abs(a[1] - target)))
        lost = sorted(set(lost), key=lambda a: a[1])
        yield rec(
            end + 2.0,
            "data-report",
            probe="canary",
            acknowledged=len(acked),
            lost=[list(x) for x in lost],
            lost_window=[lost[0][1], lost[-1][1]] if lost else None,
            per_region={},
            unverified=[],
            misplaced={},
        )
    for extra in spec.extra:
        yield rec(
            float(extra.get("t", end + 2.5)),
            str(extra["type"]),
            **{k: v for k, v in extra.items() if k not in ("t", "type")},
        )
    yield rec(end + 3.0, "run-ended", exit_code=spec.exit_code, reason="completed", elapsed=end + 3.0)
