"""What load and probes report about each request, in one shape, so that the journal, the live
view and the metrics read them alike. Pure data.

Times are ``time.monotonic()`` seconds. On Linux that clock (CLOCK_MONOTONIC) is shared by every
process of the machine, so a sample stamped in the load generator's process lines up with a fault
applied in the runner's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Hop", "HopSource", "RequestSample", "hops_from_json", "sample_from_json", "sample_to_json"]


class HopSource:
    """Where a hop was learnt, in order of trust (docs/journal.md)."""

    FAULT_PLANE = "fault-plane"
    """A route of the fault plane relayed the request (or answered it with a fault)."""
    OTLP = "otlp"
    """A span the service exported over OTLP, attributed by its resource attributes."""
    SERVED_BY = "served_by"
    """The service's own report of the hops it touched (the reference stack's ``served_by``)."""
    EGRESS = "egress"
    """The local target's egress proxy: a service sent the request on to a host the design does not
    declare (a discovered dependency, `bascule.journal.discovered`). Bascule answered in the host's
    stead (nothing leaves the machine), but the request's data was sent there: it counts as relayed."""


@dataclass(frozen=True)
class Hop:
    """One component that served (part of) a request, where it ran."""

    component: str
    region: str
    provider: str = ""
    jurisdiction: str = ""
    sovereignty: str = ""
    via: str = HopSource.SERVED_BY
    status: int | None = None
    """The answer's HTTP status on that hop, where the source tells it."""
    relayed: bool = True
    """Whether the request reached the component (False: a fault answered in front of it)."""

    @property
    def served(self) -> bool:
        """Reached the component and answered without a server error or a throttle."""
        return self.relayed and (self.status is None or (self.status < 500 and self.status != 429))


@dataclass(frozen=True)
class RequestSample:
    """One request made by the load generator or a probe."""

    source: str
    """``load`` or the probe's name."""
    kind: str
    """``ask``, ``write``, ``read``, ``http``, ``command``, ``python``."""
    started: float
    """``time.monotonic()`` when the request was sent."""
    latency: float
    ok: bool
    status: int | None = None
    data_class: str | None = None
    entry_region: str | None = None
    """The regional entry point (gateway) that answered, through the edge."""
    hops: tuple[Hop, ...] = ()
    correct: bool | None = None
    """For golden questions: facts present and documents cited."""
    degraded: bool = False
    error: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    """The W3C trace id the request was sent with (`bascule.tracecontext`): the key that ties the
    hops the fault plane relayed, and the spans a service exported, to this request."""
    unplaced: tuple[str, ...] = ()
    """Components a source saw serve this request but could not place in a region (an OTLP server
    span with no region: docs/traces.md): where its path went is not known whole."""


def hops_from_json(items: Sequence[Mapping[str, Any]] | None, *, recorded: bool = False) -> tuple[Hop, ...]:
    """Hops from a ``served_by`` list; unknown fields are ignored, missing ones left empty. A
    service's own report is always ``served_by``; ``recorded`` hops (read back from a journal)
    keep the source, status and relaying they were written with."""
    out: list[Hop] = []
    for item in items or ():
        if isinstance(item, Mapping) and "component" in item:
            out.append(
                Hop(
                    component=str(item.get("component", "")),
                    region=str(item.get("region", "")),
                    provider=str(item.get("provider", "")),
                    jurisdiction=str(item.get("jurisdiction", "")),
                    sovereignty=str(item.get("sovereignty", "")),
                    via=str(item.get("via", HopSource.SERVED_BY)) if recorded else HopSource.SERVED_BY,
                    status=_status(item.get("status")) if recorded else None,
                    relayed=bool(item.get("relayed", True)) if recorded else True,
                )
            )
    return tuple(out)


def _status(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def sample_to_json(sample: RequestSample) -> dict[str, Any]:
    data = asdict(sample)
    data["hops"] = [asdict(h) for h in sample.hops]
    if sample.unplaced:
        data["unplaced"] = list(sample.unplaced)
    else:
        del data["unplaced"]  # the common case, left out of each sample record
    return data


def sample_from_json(data: Mapping[str, Any]) -> RequestSample:
    fields = dict(data)
    fields["hops"] = hops_from_json(fields.get("hops"), recorded=True)
    unplaced = fields.get("unplaced")
    fields["unplaced"] = tuple(str(c) for c in unplaced) if isinstance(unplaced, list) else ()
    known = RequestSample.__dataclass_fields__
    return RequestSample(**{k: v for k, v in fields.items() if k in known})
