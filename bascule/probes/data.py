"""The ``data`` probe: canary writes during the run, read back from every region at the end, to
tell which acknowledged writes were lost and over what window (the RPO).

Each sample writes one canary with a unique id (the spec's request template with ``{id}``,
``{text}`` and ``{data_class}``); the probe keeps the acknowledged ones with the instant their
acknowledgement arrived. A write that failed or timed out on the client's side is not counted: it
was never promised. After the run settles, `DataProbe.finish` asks every region's stores for every
acknowledged id (until `read_back_until`: not those too recent to have replicated, acknowledged
after the impact window) (``GET /v1/documents/{id}``, or the spec's ``read_back`` templates) and
`account_losses` decides, purely:

- a region *may hold* a canary when its level satisfies the canary's class (every region when the
  design's guard is off): a confidential canary missing from aws/us-east-1 in the sovereign design is
  not a gap, it is the design working;
- a canary is **lost** when every region that may hold it answered that it is not there; it is
  **unverified** when none has it but some could not be read (a region still down cannot tell);
- ``per_region`` lists, for each region that may hold some canary, the ids missing there, so that a
  region that lost data shows even when another region still has it;
- ``misplaced`` lists canaries found in a region that may not hold their class.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import httpx

from bascule.edge import request_headers
from bascule.errors import ProbeError
from bascule.journal.samples import RequestSample
from bascule.model import probes as specs
from bascule.model.design import Design, ReplicationMode
from bascule.probes.base import (
    Destination,
    Probe,
    ProbeContext,
    complete_hops,
    read_hops,
    register,
    render_template,
)
from bascule.probes.http import check_assertion
from bascule.probes.rag import check_data_class
from bascule.tracecontext import new_trace_id

__all__ = [
    "REPLICATION_MARGIN",
    "CanaryWrite",
    "DataProbe",
    "DataReport",
    "Presence",
    "account_losses",
    "lookup_urls",
    "may_hold",
    "presence_in",
    "read_back",
    "read_back_until",
    "read_back_urls",
    "replication_wait",
]

_READ_CONCURRENCY = 16
REPLICATION_MARGIN = 2.0
"""Seconds beyond the design's replication lag for a write to reach an asynchronous replica."""
_LOOKUP_CHUNK = 500
"""Ids per bulk read-back request (the reference store takes up to 1,000)."""


@dataclass(frozen=True)
class CanaryWrite:
    id: str
    data_class: str
    acked_at: float
    """``time.monotonic()`` when the acknowledgement arrived."""


class Presence(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class DataReport:
    acknowledged: int
    lost: tuple[tuple[str, float], ...]
    """(id, acked_at) of each acknowledged canary no region that may hold it still has."""
    lost_window: tuple[float, float] | None
    """Acknowledgement instants of the first and the last lost canary."""
    per_region: Mapping[str, tuple[str, ...]]
    """Region → ids missing there, for every region that may hold some canary."""
    unverified: tuple[str, ...] = ()
    """Ids no region that may hold them has, where some of those regions could not be read."""
    misplaced: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Region → ids found there although the region may not hold their class."""
    unreadable: Mapping[str, int] = field(default_factory=dict)
    """Region → canaries it may hold whose read-back there got no answer (an error status, no
    connection): neither found nor missing — a region that answers none is no copy one can count on."""
    read_until: float | None = None
    """``time.monotonic()``: the newest acknowledgement instant asked about (`read_back_until`)."""
    not_read: int = 0
    """Canaries acknowledged after `read_until` (all after the impact window), not asked about nor
    counted in `acknowledged`."""


def may_hold(design: Design, region: str, data_class: str) -> bool:
    """Whether ``region`` may keep documents of ``data_class``; a region or class the design does not
    know is given the benefit of the doubt (its absence then counts as a gap)."""
    if not design.routing.sovereignty_guard or data_class not in design.data_classes:
        return True
    try:
        level = design.region(region).sovereignty
    except KeyError:
        return True
    return level.satisfies(design.data_classes[data_class].min_sovereignty)


def account_losses(
    acked: Sequence[CanaryWrite],
    readings: Mapping[str, Mapping[str, Presence]],
    holds: Callable[[str, str], bool],
) -> DataReport:
    """What happened to each acknowledged canary, from what each region answered (pure).

    ``readings`` maps region → id → presence (an id a region was not asked about counts as
    unreadable there); ``holds(region, data_class)`` says whether the region may keep that class.
    """
    lost: list[tuple[str, float]] = []
    unverified: list[str] = []
    per_region: dict[str, list[str]] = {}
    misplaced: dict[str, list[str]] = {}
    unreadable: dict[str, int] = {}
    for canary in sorted(acked, key=lambda c: c.acked_at):
        answers: list[Presence] = []
        for region, seen in readings.items():
            presence = seen.get(canary.id, Presence.UNREADABLE)
            if not holds(region, canary.data_class):
                if presence is Presence.PRESENT:
                    misplaced.setdefault(region, []).append(canary.id)
                continue
            gaps = per_region.setdefault(region, [])
            if presence is Presence.MISSING:
                gaps.append(canary.id)
            elif presence is Presence.UNREADABLE:
                unreadable[region] = unreadable.get(region, 0) + 1
            answers.append(presence)
        if Presence.PRESENT in answers:
            continue
        if answers and all(presence is Presence.MISSING for presence in answers):
            lost.append((canary.id, canary.acked_at))
        else:
            unverified.append(canary.id)
    window = (lost[0][1], lost[-1][1]) if lost else None
    return DataReport(
        acknowledged=len(acked),
        lost=tuple(lost),
        lost_window=window,
        per_region={region: tuple(ids) for region, ids in per_region.items()},
        unverified=tuple(unverified),
        misplaced={region: tuple(ids) for region, ids in misplaced.items()},
        unreadable=dict(sorted(unreadable.items())),
    )


def replication_wait(design: Design, acked: Sequence[CanaryWrite], now: float) -> float:
    """Seconds to wait before reading back, so that the newest acknowledged canary is
    `REPLICATION_MARGIN` seconds older than the design's asynchronous replication lag (0 for
    synchronous or no replication, or no canary). Pure."""
    if not acked or design.replication.mode is not ReplicationMode.ASYNC:
        return 0.0
    newest = max(canary.acked_at for canary in acked)
    return max(0.0, newest + design.replication.lag + REPLICATION_MARGIN - now)


def read_back_until(design: Design, now: float, at_least_until: float | None) -> float:
    """The newest acknowledgement instant that a read-back starting at ``now`` asks about (pure).

    Asynchronous replication: ``now`` minus the lag and `REPLICATION_MARGIN` — the canaries
    acknowledged since have perhaps not reached every replica yet and are left out, rather than
    waited for — but never before ``at_least_until``, the end of what the run measures (the impact
    window: the last revert plus the settle): every canary acknowledged until then is asked about
    (the read-back then waits for the newest of them, `replication_wait`). ``at_least_until`` None
    (not known), or synchronous or no replication: ``now``, every canary."""
    if at_least_until is None or design.replication.mode is not ReplicationMode.ASYNC:
        return now
    return min(now, max(now - design.replication.lag - REPLICATION_MARGIN, at_least_until))


def read_back_urls(spec: specs.DataProbe, context: ProbeContext) -> dict[str, tuple[str, ...]]:
    """Region → URL templates (with ``{id}``) that say whether a document is there. A template that
    is a path (``/api/notes/{id}``) is asked at that region's entry point."""
    if spec.read_back:
        return {
            region: tuple(_at_entry(t, region, context) for t in templates)
            for region, templates in spec.read_back.items()
        }
    return {
        region: tuple(f"{url.rstrip('/')}/v1/documents/{{id}}" for url in urls)
        for region, urls in context.store_urls.items()
        if urls
    }


def lookup_urls(spec: specs.DataProbe, context: ProbeContext) -> dict[str, tuple[str, ...]]:
    """Region → the bulk read-back URL of each of its store replicas (the reference store's
    ``POST /v1/documents/lookup``); none when the spec says where to read back (``read_back``):
    a store of your own is asked one canary at a time."""
    if spec.read_back or spec.found:
        return {}
    return {
        region: tuple(f"{url.rstrip('/')}/v1/documents/lookup" for url in urls)
        for region, urls in context.store_urls.items()
        if urls
    }


def _at_entry(template: str, region: str, context: ProbeContext) -> str:
    if not template.startswith("/"):
        return template
    entry = context.entries.get(region)
    if entry is None:
        raise ProbeError(f"read_back {template!r} for {region}: the design has no entry point there")
    return entry.rstrip("/") + template


async def _presence(
    client: httpx.AsyncClient,
    templates: Sequence[str],
    doc_id: str,
    timeout: float,
    headers: Mapping[str, str],
    bookkeeping: Callable[[str], None],
    found: Sequence[specs.JsonAssertion] = (),
) -> Presence:
    # A region holds a document when any of its replicas does; it is missing only when every
    # replica that answered said so.
    answered = False
    for template in templates:
        try:
            trace_id = new_trace_id()
            bookkeeping(trace_id)
            sent = request_headers(headers, trace_id)
            response = await client.get(template.replace("{id}", doc_id), headers=sent, timeout=timeout)
        except httpx.HTTPError:
            continue
        if response.status_code == 200:
            if not found:
                return Presence.PRESENT
            presence = presence_in(response.content, found, doc_id)
            if presence is Presence.PRESENT:
                return presence
            answered = answered or presence is Presence.MISSING
        elif response.status_code == 404:
            answered = True
    return Presence.MISSING if answered else Presence.UNREADABLE


def presence_in(body: bytes, found: Sequence[specs.JsonAssertion], doc_id: str) -> Presence:
    """Whether a read-back's 200 answer holds the document, by the probe's ``found`` assertions
    (``{id}`` in their strings is the canary's id); unreadable when the answer is not JSON. Pure."""
    try:
        data = json.loads(body)
    except ValueError:
        return Presence.UNREADABLE
    for assertion in found:
        values = {
            name: value.replace("{id}", doc_id)
            for name in ("equals", "contains")
            if isinstance(value := getattr(assertion, name), str)
        }
        if check_assertion(assertion.model_copy(update=values), data) is not None:
            return Presence.MISSING
    return Presence.PRESENT


async def _lookup(
    client: httpx.AsyncClient,
    url: str,
    ids: Sequence[str],
    timeout: float,
    headers: Mapping[str, str],
    bookkeeping: Callable[[str], None],
) -> set[str] | None:
    """The ids among `ids` that the store replica behind `url` holds, asked in bulk; None when it
    did not answer every chunk as the reference store does (down, or a store without the route)."""
    held: set[str] = set()
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = list(ids[start : start + _LOOKUP_CHUNK])
        trace_id = new_trace_id()
        bookkeeping(trace_id)
        try:
            response = await client.post(
                url, json={"ids": chunk}, headers=request_headers(headers, trace_id), timeout=timeout
            )
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
        if not isinstance(answer, dict):
            return None
        found, missing = answer.get("found"), answer.get("missing")
        if not isinstance(found, list) or not isinstance(missing, list):
            return None
        if set(found) | set(missing) != set(chunk) or set(found) & set(missing):
            return None  # not an answer about exactly these ids
        held.update(found)
    return held


async def _lookup_region(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    ids: Sequence[str],
    timeout: float,
    headers: Mapping[str, str],
    bookkeeping: Callable[[str], None],
) -> dict[str, Presence] | None:
    # As `_presence` decides per id: present when any replica holds it, missing when every replica
    # answered and none does. None unless every replica answered.
    answers = await asyncio.gather(
        *(_lookup(client, url, ids, timeout, headers, bookkeeping) for url in urls)
    )
    held: set[str] = set()
    for answer in answers:
        if answer is None:
            return None
        held |= answer
    return {doc_id: Presence.PRESENT if doc_id in held else Presence.MISSING for doc_id in ids}


async def read_back(
    client: httpx.AsyncClient,
    ids: Sequence[str],
    urls: Mapping[str, Sequence[str]],
    timeout: float,
    headers: Mapping[str, str] | None = None,
    bookkeeping: Callable[[str], None] = lambda trace_id: None,
    found: Sequence[specs.JsonAssertion] = (),
    lookups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, Presence]]:
    """Ask every region about every id (with `headers`). A region with bulk `lookups` URLs (one per
    store replica, `lookup_urls`) is asked in bulk first, every region at once; a region without
    them, or one whose replicas did not all answer the bulk read, is asked one id at a time, a
    bounded number of requests at a time — exactly as before bulk reads existed."""
    bulk = lookups or {}
    regions = [region for region in urls if bulk.get(region) and ids]
    bulk_answers = await asyncio.gather(
        *(
            _lookup_region(client, bulk[region], ids, timeout, headers or {}, bookkeeping)
            for region in regions
        )
    )
    readings: dict[str, dict[str, Presence]] = {region: {} for region in urls}
    for region, answer in zip(regions, bulk_answers, strict=True):
        if answer is not None:
            readings[region] = answer
    answered = {region for region, answer in zip(regions, bulk_answers, strict=True) if answer is not None}
    one_by_one = [region for region in urls if region not in answered]
    limit = asyncio.Semaphore(_READ_CONCURRENCY)

    async def one(region: str, doc_id: str) -> tuple[str, str, Presence]:
        async with limit:
            presence = await _presence(
                client, urls[region], doc_id, timeout, headers or {}, bookkeeping, found
            )
            return region, doc_id, presence

    answers = await asyncio.gather(*(one(region, doc_id) for region in one_by_one for doc_id in ids))
    for region, doc_id, presence in answers:
        readings[region][doc_id] = presence
    return readings


@register
class DataProbe(Probe[specs.DataProbe]):
    kind = "data"
    spec_type = specs.DataProbe
    sample_kind = "write"

    def __init__(self, spec: specs.DataProbe, context: ProbeContext, name: str | None = None) -> None:
        super().__init__(spec, context, name)
        check_data_class(spec.data_class, context.design)
        if not read_back_urls(spec, context):
            raise ProbeError(
                "the data probe has nowhere to read canaries back from: the target gives no store "
                "replicas and the spec no `read_back`"
            )
        self.destination = Destination(spec.url, "/v1/documents", context, spec.paths, self.headers)
        # Ids unique across runs, so that a store kept between runs cannot answer for a lost write.
        self.run_id = uuid.uuid4().hex[:8]
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._acked: list[CanaryWrite] = []
        self.read_at_least_until: float | None = None
        """Set by the runner before `finish`: the end of what the run measures
        (``time.monotonic()``); see `read_back_until`."""

    @property
    def data_class(self) -> str:
        return self.spec.data_class

    def acknowledged(self) -> tuple[CanaryWrite, ...]:
        with self._lock:
            return tuple(self._acked)

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        spec = self.spec
        canary_id = f"canary-{self.run_id}-{next(self._numbers):06d}"
        text = f"bascule canary {canary_id} ({spec.data_class}), written by probe {self.name!r}."
        payload = render_template(
            spec.request, {"id": canary_id, "text": text, "data_class": spec.data_class}
        )
        trace_id = new_trace_id()
        reply = await self.destination.post(client, payload, spec.data_class, spec.timeout, trace_id=trace_id)
        acked_at = time.monotonic()
        sample = RequestSample(
            source=self.name,
            kind=self.sample_kind,
            started=now,
            latency=acked_at - now,
            ok=reply.ok,
            status=reply.status,
            data_class=spec.data_class,
            entry_region=reply.entry_region,
            error=None if reply.ok else reply.error or f"HTTP {reply.status}",
            request_id=canary_id,
            trace_id=trace_id,
        )
        if not reply.ok:
            return sample
        with self._lock:
            self._acked.append(CanaryWrite(canary_id, spec.data_class, acked_at))
        hops = complete_hops(read_hops(reply.body, reply.headers, spec.paths), self.context.design)
        return replace(
            sample, hops=hops, entry_region=sample.entry_region or (hops[0].region if hops else None)
        )

    async def finish(self, client: httpx.AsyncClient, context: ProbeContext) -> DataReport:
        everything = self.acknowledged()
        now = time.monotonic()
        until = read_back_until(context.design, now, self.read_at_least_until)
        acked = tuple(c for c in everything if c.acked_at <= until)
        # An asynchronous replica receives a write `lag` after its acknowledgement: ask no sooner,
        # or the canaries of the last instants would show as that region's gaps.
        wait = replication_wait(context.design, acked, now)
        if wait > 0:
            await asyncio.sleep(wait)
        urls = read_back_urls(self.spec, context)
        readings = await read_back(
            client,
            [c.id for c in acked],
            urls,
            self.spec.timeout,
            self.headers,
            context.bookkeeping,
            self.spec.found,
            lookup_urls(self.spec, context),
        )
        design = context.design
        report = account_losses(
            acked, readings, lambda region, data_class: may_hold(design, region, data_class)
        )
        return replace(report, read_until=until, not_read=len(everything) - len(acked))
