"""What every probe shares: the context it runs in, the protocol it follows, the registry from a spec's
``kind:`` to its class, and the pure helpers that read a service's answer.

A probe makes one check per call to `Probe.sample` and reports it as a `RequestSample`, the shape
load and the journal use too. `sample_once` bounds that call by the spec's ``timeout`` and turns any
exception into a failed sample, so that neither a hung service nor a probe's own bug stops the loop
that drives it (`bascule.probes.runner`). Probes that judge at the end of a run (``data``) also
implement `Probe.finish`.

Requests go where the spec says: without ``url``, or with a path such as ``/v1/ask``, through the
edge (`bascule.edge`) to the design's regional entry points, failing over as clients do; with
a full URL, straight to that service (a user's own, shaped as the request template and the
`ResponsePaths` say). The edge only returns bodies, so hops in a response header need a full URL.

`PROBES` maps each kind to its class. The kind modules register themselves when imported;
`make_probe` and the runner import them all first (`load_kinds`), so that reading a scenario's
probe specs does not pull in httpx and the stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, Generic, TypeVar

import httpx

from bascule.edge import NOT_JSON, Edge, NoEntryError, answer_value, request_headers
from bascule.errors import ProbeError
from bascule.eventstream import EventStream
from bascule.journal.samples import Hop, RequestSample, hops_from_json
from bascule.model.catalog import Sovereignty
from bascule.model.design import Design
from bascule.model.headers import MissingVariableError, resolve_headers
from bascule.model.probes import ProbeSpec, ResponsePaths

__all__ = [
    "KINDS",
    "MISSING",
    "PROBES",
    "Destination",
    "Probe",
    "ProbeContext",
    "Reply",
    "complete_hops",
    "default_client",
    "default_name",
    "describe_error",
    "hop_level",
    "hops_from_header",
    "load_kinds",
    "make_probe",
    "make_probes",
    "new_request_id",
    "passed",
    "read_hops",
    "read_path",
    "register",
    "render_template",
    "sample_once",
]

KINDS: Final = (
    "http",
    "rag",
    "sovereignty",
    "data",
    "freshness",
    "command",
    "python",
    "kubernetes-ready",
    "prometheus",
)
"""The built-in kinds, each in the module of that name (dashes as underscores)."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What `read_path` returns when a path leads nowhere (``None`` is a JSON value)."""


def default_client() -> httpx.AsyncClient:
    # trust_env=False: a proxy variable of the host must not reroute probes away from the stack.
    return httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=100))


@dataclass(frozen=True)
class ProbeContext:
    """What probes need from the run: the design, the regional entry points the edge fails over
    between, each region's store replicas (for reading canaries back) and how to make the client
    they share."""

    design: Design
    entries: Mapping[str, str] = field(default_factory=dict)
    """Region → base URL of its entry point (gateways)."""
    store_urls: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Region → base URLs of its store replicas."""
    client_factory: Callable[[], httpx.AsyncClient] = default_client
    bookkeeping: Callable[[str], None] = field(default=lambda trace_id: None)
    """Told the trace id of each request a probe makes that is no sample (a canary read-back), so
    that the hops it causes are known to be bascule's own, not a request whose path was lost."""


S = TypeVar("S", bound=ProbeSpec)


class Probe(ABC, Generic[S]):
    """One kind of check. `sample` makes one; `finish` judges what only the end of a run can tell.

    A probe instance is driven by one event loop at a time: its edge and counters are not shared
    between threads.
    """

    kind: ClassVar[str]
    spec_type: ClassVar[type[ProbeSpec]]
    sample_kind: ClassVar[str]
    """The ``kind`` of the samples it makes: ``ask``, ``write``, ``http``, ``command``, ``python``."""

    def __init__(self, spec: S, context: ProbeContext, name: str | None = None) -> None:
        self.spec = spec
        self.context = context
        self.name = name or spec.name or default_name(spec)
        self.headers = own_headers(spec)
        """The spec's request headers with ``${ENV_VAR}`` read now: a missing variable stops the
        run before it starts, and the values live in memory only."""

    @property
    def data_class(self) -> str | None:
        """The data class its requests carry, if any."""
        return None

    def verdict(self, now: float, error: str | None) -> RequestSample:
        """The sample of a check started at ``now`` that ends now: passed when ``error`` is None."""
        return RequestSample(
            source=self.name,
            kind=self.sample_kind,
            started=now,
            latency=time.monotonic() - now,
            ok=error is None,
            data_class=self.data_class,
            error=error,
            request_id=new_request_id(),
        )

    @abstractmethod
    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        """One check, started at ``now`` (``time.monotonic()``)."""

    async def finish(self, client: httpx.AsyncClient, context: ProbeContext) -> object | None:
        """A verdict on the whole run, once probing stopped; ``None`` for kinds that judge each
        sample alone."""
        return None


PROBES: dict[str, type[Probe[Any]]] = {}
"""Kind → class; complete once `load_kinds` ran."""

P = TypeVar("P", bound=type[Probe[Any]])


def register(cls: P) -> P:
    """Class decorator: make ``cls`` the probe for its spec's kind."""
    PROBES[cls.kind] = cls
    return cls


def load_kinds() -> None:
    """Import every built-in kind module, which registers it."""
    for kind in KINDS:
        importlib.import_module(f"bascule.probes.{kind.replace('-', '_')}")


def make_probe(spec: ProbeSpec, context: ProbeContext, name: str | None = None) -> Probe[Any]:
    """The probe for ``spec``. Raises `ProbeError` when it cannot run as specified (an unknown
    question, data class or callable, nowhere to read canaries back from, …)."""
    load_kinds()
    cls = PROBES.get(spec.kind)
    if cls is None:
        raise ProbeError(f"no probe of kind {spec.kind!r}; known kinds: {', '.join(sorted(PROBES))}")
    if not isinstance(spec, cls.spec_type):
        raise ProbeError(
            f"a {spec.kind} probe needs a {cls.spec_type.__name__} spec, got {type(spec).__name__}"
        )
    return cls(spec, context, name)


def make_probes(specs: Iterable[ProbeSpec], context: ProbeContext) -> list[Probe[Any]]:
    """One probe per spec, named uniquely: a repeated name gets ``#2``, ``#3``…"""
    probes: list[Probe[Any]] = []
    seen: dict[str, int] = {}
    for spec in specs:
        base = spec.name or default_name(spec)
        seen[base] = seen.get(base, 0) + 1
        probes.append(make_probe(spec, context, base if seen[base] == 1 else f"{base}#{seen[base]}"))
    return probes


def default_name(spec: ProbeSpec) -> str:
    """A readable name from what the spec checks: ``rag internal``, ``http GET http://…``."""
    detail = {
        "http": ("method", "url"),
        "rag": ("data_class", "question"),
        "sovereignty": ("data_class",),
        "data": ("data_class",),
        "freshness": ("data_class",),
        "command": ("argv",),
        "python": ("call",),
        "kubernetes-ready": ("components",),
        "prometheus": ("query",),
    }.get(spec.kind, ())
    words = [spec.kind]
    for attribute in detail:
        value = getattr(spec, attribute, None)
        if isinstance(value, tuple):
            value = value[0] if value else None
        if value:
            words.append(str(value))
    return " ".join(words)


def own_headers(spec: ProbeSpec) -> dict[str, str]:
    """The request headers a probe's spec gives (none for kinds that send no HTTP request), with
    their ``${ENV_VAR}`` references resolved; `ProbeError` naming a variable that is not set."""
    try:
        return resolve_headers(getattr(spec, "headers", {}), os.environ)
    except MissingVariableError as exc:
        raise ProbeError(f"{spec.name or spec.kind} probe: {exc}") from exc


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def passed(sample: RequestSample) -> bool:
    """A sample holds when the request succeeded and, if graded, its answer was correct."""
    return sample.ok and sample.correct is not False


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def sample_once(probe: Probe[Any], client: httpx.AsyncClient, now: float) -> RequestSample:
    """``probe.sample`` bounded by the spec's timeout; a timeout or an exception is a failed sample."""
    timeout = probe.spec.timeout
    try:
        async with asyncio.timeout(timeout):
            return await probe.sample(client, now)
    except TimeoutError:
        error = f"no result within the probe's timeout ({timeout:g} s)"
    except Exception as exc:
        error = describe_error(exc)
    return probe.verdict(now, error)


# --- reading a service's answer (pure) -----------------------------------------------------------


def render_template(template: object, values: Mapping[str, str]) -> object:
    """``template`` with ``{name}`` placeholders replaced in every string, keys included. Unknown
    placeholders and other braces are left as they are, so JSON-looking text survives."""
    if isinstance(template, str):
        out = template
        for key, value in values.items():
            out = out.replace("{" + key + "}", value)
        return out
    if isinstance(template, Mapping):
        return {str(render_template(k, values)): render_template(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [render_template(item, values) for item in template]
    return template


def read_path(data: object, path: str) -> object:
    """The value at a dotted path: ``answer``, ``served_by.0.region``, ``result.sources.*.id``
    (``*`` maps over a list). `MISSING` when the path leads nowhere; an empty path is ``data``. Over
    an event stream (`EventStream`), the strings at the path in its events joined, as a client joins
    a streamed answer's pieces; any other value the last event's."""
    if not path:
        return data
    if isinstance(data, EventStream):
        # A streamed answer as its client assembles it: the strings at the path over every event
        # joined in order (``choices.0.delta.content``), any other value the last event's.
        found = [v for event in data.data if (v := _walk(event, path.split("."))) is not MISSING]
        if not found:
            return MISSING
        texts = [v for v in found if isinstance(v, str)]
        return "".join(texts) if len(texts) == len(found) else found[-1]
    return _walk(data, path.split("."))


def _walk(data: object, parts: Sequence[str]) -> object:
    if not parts:
        return data
    head, rest = parts[0], parts[1:]
    if head == "*":
        if not isinstance(data, list):
            return MISSING
        found = [_walk(item, rest) for item in data]
        return [item for item in found if item is not MISSING]
    if isinstance(data, Mapping):
        return _walk(data[head], rest) if head in data else MISSING
    if isinstance(data, list) and head.lstrip("-").isdigit():
        index = int(head)
        return _walk(data[index], rest) if -len(data) <= index < len(data) else MISSING
    return MISSING


def hops_from_header(value: str | None) -> tuple[Hop, ...] | None:
    """Hops from a header holding a JSON list of ``{component, region, …}`` (or one such object);
    ``None`` when the header is absent or not such JSON."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if isinstance(data, Mapping):
        data = [data]
    return hops_from_json(data) if isinstance(data, list) else None


def read_hops(body: object, headers: Mapping[str, str], paths: ResponsePaths) -> tuple[Hop, ...]:
    """The hops a response reports, from the header or the body path ``paths`` name."""
    if paths.hops_header is not None:
        return hops_from_header(headers.get(paths.hops_header)) or ()
    found = read_path(body, paths.hops)
    return hops_from_json(found) if isinstance(found, list) else ()


def complete_hops(hops: Iterable[Hop], design: Design) -> tuple[Hop, ...]:
    """Hops with provider, jurisdiction and level filled from the design (or the catalog) where the
    service left them out, so that every sample carries the same facts whatever served it."""
    out = []
    for hop in hops:
        try:
            region = design.region(hop.region)
        except KeyError:
            out.append(hop)
            continue
        out.append(
            replace(
                hop,
                provider=hop.provider or region.provider,
                jurisdiction=hop.jurisdiction or region.jurisdiction,
                sovereignty=hop.sovereignty or region.sovereignty.value,
            )
        )
    return tuple(out)


def hop_level(hop: Hop, design: Design) -> Sovereignty:
    """The level a hop is held to: the lower of what the design says of its region and what the hop
    says of itself; ``foreign`` when neither is known, so that an unidentified hop is never taken
    for a safe one."""
    levels: list[Sovereignty] = []
    with contextlib.suppress(KeyError):
        levels.append(design.region(hop.region).sovereignty)
    with contextlib.suppress(ValueError):
        levels.append(Sovereignty(hop.sovereignty))
    return min(levels, key=lambda level: level.rank) if levels else Sovereignty.FOREIGN


# --- sending (effectful) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What came back from one request, through the edge or straight from a service."""

    status: int | None
    body: Any
    headers: Mapping[str, str]
    entry_region: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Destination:
    """Where a probe's requests go: the edge (no URL, or a path) or one service (a full URL)."""

    def __init__(
        self,
        url: str | None,
        default_path: str,
        context: ProbeContext,
        paths: ResponsePaths | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url: str | None = None
        self.headers = dict(headers or {})
        self.path = default_path
        self.edge: Edge | None = None
        if url is not None and not url.startswith("/"):
            if not url.startswith(("http://", "https://")):
                raise ProbeError(f"url {url!r} is neither a path (/v1/ask) nor an http(s) URL")
            self.url = url
            return
        if paths is not None and paths.hops_header is not None:
            raise ProbeError(
                f"hops in the {paths.hops_header!r} header need a full `url`: the edge returns bodies only"
            )
        if not context.entries:
            raise ProbeError("no entry point to send probes to: give the probe a full `url`")
        self.path = url or default_path
        self.edge = Edge(context.design, context.entries)

    def __str__(self) -> str:
        return self.url or f"edge {self.path}"

    async def post(
        self,
        client: httpx.AsyncClient,
        payload: object,
        data_class: str,
        timeout: float,
        *,
        trace_id: str | None = None,
    ) -> Reply:
        """One request with a ``traceparent`` of `trace_id` (through the edge, every attempt)."""
        if self.edge is not None:
            if not isinstance(payload, Mapping):
                raise ProbeError("a request sent through the edge must be a JSON object")
            try:
                answer = await self.edge.post(
                    client, self.path, payload, data_class, trace_id=trace_id, headers=self.headers
                )
            except NoEntryError as exc:
                return Reply(None, None, {}, None, f"no entry point: {exc}")
            value = None if answer.value is NOT_JSON else answer.value
            return Reply(answer.status, value, {}, answer.region, answer.error)
        assert self.url is not None
        try:
            response = await client.post(
                self.url, json=payload, headers=request_headers(self.headers, trace_id), timeout=timeout
            )
        except httpx.HTTPError as exc:
            return Reply(None, None, {}, None, describe_error(exc))
        value = answer_value(response)
        if isinstance(value, EventStream) and (cut := value.cut_reason()) is not None:
            return Reply(None, None, response.headers, None, cut)
        body = None if value is NOT_JSON else value
        ok = 200 <= response.status_code < 300
        return Reply(
            response.status_code,
            body,
            response.headers,
            None,
            None if ok else f"HTTP {response.status_code}",
        )
