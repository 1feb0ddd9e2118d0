"""The ``sovereignty`` probe: a judge of every request of a run, and a check of its own.

The judge is pure: `violations(sample, design)` lists each hop of a request (load or probe) whose
level is below the minimum its data class accepts. A hop is held to the lower of the level the
design gives its region and the level it claims, and to ``foreign`` when neither is known, so that
an unidentified hop is never mistaken for a safe one. A sample without a data class, or with one the
design does not know, cannot be judged. The guard being off does not excuse a violation: it is how a
design that does not enforce residency gets scored.

`SovereigntyJudge` records the violations of every sample the run shows it (its ``observe`` is the
sink for load and probe samples alike). `SovereigntyProbe` carries one as ``judge``; its own
``sample`` asks a question of the design's most demanding class (or the spec's) through the edge and
fails when the answer touched a hop below that class's minimum, and its ``finish`` returns the
judge's report.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import httpx

from bascule.journal.samples import Hop, HopSource, RequestSample
from bascule.model import probes as specs
from bascule.model.catalog import Sovereignty
from bascule.model.design import Design
from bascule.model.topology import blind_services
from bascule.probes.base import (
    Destination,
    Probe,
    ProbeContext,
    complete_hops,
    hop_level,
    new_request_id,
    register,
    render_template,
)
from bascule.probes.rag import check_data_class, read_answer
from bascule.stack.corpus import load_golden_set
from bascule.tracecontext import new_trace_id

__all__ = [
    "SovereigntyJudge",
    "SovereigntyProbe",
    "SovereigntyReport",
    "Violation",
    "describe_violations",
    "most_demanding_class",
    "violations",
]


_OBSERVED = (HopSource.FAULT_PLANE, HopSource.EGRESS)
"""Hops bascule saw itself, rather than the service reporting them."""


@dataclass(frozen=True)
class Violation:
    """One hop of one request below its data class's minimum level."""

    request_id: str | None
    source: str
    """``load`` or the probe's name."""
    data_class: str
    hop: Hop
    minimum: Sovereignty
    level: Sovereignty
    """The level the hop was held to."""
    started: float


def violations(sample: RequestSample, design: Design) -> list[Violation]:
    """Every hop of ``sample`` below the minimum of its data class (pure)."""
    data_class = sample.data_class
    if data_class is None or data_class not in design.data_classes:
        return []
    minimum = design.data_classes[data_class].min_sovereignty
    out = []
    for hop in sample.hops:
        if not hop.relayed:
            continue  # a fault answered in front of it: the request's data never got there
        level = hop_level(hop, design)
        if not level.satisfies(minimum):
            out.append(
                Violation(sample.request_id, sample.source, data_class, hop, minimum, level, sample.started)
            )
    return out


def describe_violations(found: Iterable[Violation]) -> str:
    return "; ".join(
        f"{v.hop.component} in {v.hop.region or 'an unnamed region'} is {v.level.value}, "
        f"below {v.minimum.value} for {v.data_class}"
        for v in found
    )


def most_demanding_class(design: Design) -> str:
    """The data class with the highest minimum level (the first of them on a tie)."""
    classes = design.data_classes
    return max(classes, key=lambda name: classes[name].min_sovereignty.rank)


@dataclass(frozen=True)
class SovereigntyReport:
    judged: int
    """Samples that carried a data class the design knows and at least one hop the request reached:
    a request whose path nobody could tell is not judged (it could not have failed)."""
    violations: tuple[Violation, ...]
    requests: int
    """Requests with at least one violation."""
    by_hop: Mapping[tuple[str, str], int]
    """(component, region) → violations there."""
    unattributed: int = 0
    """Answered samples of a data class the design knows whose path no source could tell."""
    relayed_only: int = 0
    """Judged samples whose path only the fault plane told (their service reported no hop): their
    paths are complete only where every component propagated the trace context. Of the classes a
    hop could violate (a minimum above ``foreign``), as every count of unknown paths below."""
    open_paths: int = 0
    """Judged samples with no violation whose service reported hops, but whose path reached a
    component in a region that called another over connections that were not HTTP (`report`'s
    `opaque_calls`) and names no hop of the component called: where they went from there is
    unknown."""
    unplaced_paths: int = 0
    """Judged samples with no violation whose service reported hops, and whose trace had a server
    span that could not be placed in a region (`RequestSample.unplaced`): a hop of unknown place."""
    blind_paths: int = 0
    """Judged samples with no violation whose path only bascule saw (of `relayed_only`) and that
    reached a ``url:`` service of a design where some component is called by no declared `calls`:
    that service's calls go nowhere bascule relays, so where the request went from it is unknown
    (`bascule.model.topology.blind_services`)."""


class SovereigntyJudge:
    """Records the violations of every sample it observes; safe to feed from several threads."""

    def __init__(self, design: Design) -> None:
        self.design = design
        self._lock = threading.Lock()
        self._judged = 0
        self._unattributed = 0
        self._relayed_only = 0
        self._unplaced = 0
        self._blind_paths = 0
        self._blind = frozenset(blind_services(design))
        self._at_risk = frozenset(
            name for name, c in design.data_classes.items() if c.min_sovereignty is not Sovereignty.FOREIGN
        )
        """The classes some hop could violate (a minimum above foreign): only their paths left unknown
        keep sovereignty from being judged."""
        self._found: list[Violation] = []
        self._reported: Counter[frozenset[tuple[str, str | None]]] = Counter()
        """The places (component, region) of each judged sample with no violation that its service
        told (not the fault plane alone), counted by path: few distinct ones in any run."""

    def observe(self, sample: RequestSample) -> list[Violation]:
        found = violations(sample, self.design)
        with self._lock:
            if sample.data_class in self.design.data_classes:
                if any(hop.relayed for hop in sample.hops):
                    self._judged += 1
                    if sample.data_class not in self._at_risk:
                        pass  # no hop can be below its minimum: where it went cannot matter
                    elif all(hop.via in _OBSERVED for hop in sample.hops):
                        self._relayed_only += 1
                        if not found and (sample.unplaced or self._reaches_blind(sample)):
                            self._blind_paths += 1
                    elif not found and sample.unplaced:
                        self._unplaced += 1
                    elif not found:
                        places = frozenset((h.component, h.region) for h in sample.hops if h.relayed)
                        self._reported[places] += 1
                elif sample.ok:
                    self._unattributed += 1
            self._found.extend(found)
        return found

    def report(self, opaque_calls: Iterable[tuple[str, str, str]] = ()) -> SovereigntyReport:
        """The totals; `opaque_calls` (calling component, its region, component called): the calls
        over connections that were not HTTP, whose requests nobody could tell apart
        (`PathReport.opaque_calls`)."""
        with self._lock:
            found = tuple(self._found)
            judged, unattributed, relayed_only = self._judged, self._unattributed, self._relayed_only
            unplaced, blind = self._unplaced, self._blind_paths
            reported = list(self._reported.items())
        calls = tuple(opaque_calls)
        open_paths = sum(n for places, n in reported if _open_path(places, calls))
        requests = len({(v.source, v.request_id, v.started) for v in found})
        by_hop = Counter((v.hop.component, v.hop.region) for v in found)
        return SovereigntyReport(
            judged, found, requests, dict(by_hop), unattributed, relayed_only, open_paths, unplaced, blind
        )

    def _reaches_blind(self, sample: RequestSample) -> bool:
        return bool(self._blind) and any(h.relayed and h.component in self._blind for h in sample.hops)


def _open_path(places: frozenset[tuple[str, str | None]], calls: tuple[tuple[str, str, str], ...]) -> bool:
    """Whether a path that reached `places` went through a call of `calls` and named no place of the
    component called: a service that reported only part of its path (its own hop, say) while its
    calls to a cache in another region went unseen."""
    components = {component for component, _ in places}
    return any((caller, region) in places and callee not in components for caller, region, callee in calls)


@register
class SovereigntyProbe(Probe[specs.SovereigntyProbe]):
    kind = "sovereignty"
    spec_type = specs.SovereigntyProbe
    sample_kind = "ask"

    def __init__(self, spec: specs.SovereigntyProbe, context: ProbeContext, name: str | None = None) -> None:
        super().__init__(spec, context, name)
        design = context.design
        self._class = spec.data_class or most_demanding_class(design)
        check_data_class(self._class, design)
        self.judge = SovereigntyJudge(design)
        self.destination = Destination(spec.url, "/v1/ask", context, spec.paths, self.headers)
        golden = load_golden_set()
        if spec.question is not None:
            named = [q.question for q in golden if q.id == spec.question]
            self.questions: tuple[str, ...] = tuple(named) or (spec.question,)
        else:
            of_class = [q.question for q in golden if q.data_class.value == self._class]
            self.questions = tuple(of_class or [q.question for q in golden])
        self._turn = itertools.count()

    @property
    def data_class(self) -> str:
        return self._class

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        spec = self.spec
        question = self.questions[next(self._turn) % len(self.questions)]
        payload = render_template(spec.request, {"question": question, "data_class": self._class})
        trace_id = new_trace_id()
        reply = await self.destination.post(client, payload, self._class, spec.timeout, trace_id=trace_id)
        sample = RequestSample(
            source=self.name,
            kind=self.sample_kind,
            started=now,
            latency=time.monotonic() - now,
            ok=False,
            status=reply.status,
            data_class=self._class,
            entry_region=reply.entry_region,
            request_id=new_request_id(),
            trace_id=trace_id,
        )
        if not reply.ok:
            return replace(sample, error=reply.error or f"HTTP {reply.status}")
        answer = read_answer(reply, spec.paths)
        if isinstance(answer, str):
            return replace(sample, error=answer)
        hops = complete_hops(answer.hops, self.context.design)
        sample = replace(
            sample,
            hops=hops,
            degraded=answer.degraded,
            entry_region=sample.entry_region or (hops[0].region if hops else None),
        )
        found = violations(sample, self.context.design)
        if not hops:
            return replace(sample, error="the answer names no hop: nothing to judge")
        return replace(sample, ok=not found, error=describe_violations(found) or None)

    async def finish(self, client: httpx.AsyncClient, context: ProbeContext) -> SovereigntyReport:
        return self.judge.report()
