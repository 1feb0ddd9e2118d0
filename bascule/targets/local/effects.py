"""What each fault kind does to a local stack, as plain effects on its parts. Pure.

The local target carries out every kind of the vocabulary by composing a few effects on the parts
of `LocalStack`: a proxy route put in a state, a DNS name failing, a region's control plane
frozen, a process paused, killed or wiped. `compute_effects(fault, touch, layout)` turns a fault
and its blast radius (the planner's `Touch`) into those effects, or raises `FaultError` with the
reason the local stack cannot do it — so a kind it cannot carry out is refused at plan time,
never silently ignored.

- region-outage, provider-outage: every route into or out of the regions blackholed (or refused,
  per `mode`), and their control plane frozen;
- crash: each replica killed; the supervisor restarts it after `restart_after` unless its region
  is frozen;
- hang: each replica paused (SIGSTOP) until the fault ends;
- blackhole, refuse, latency, http-error, throttle: that state on the route of each hop;
- ttft, stream-cut, token-rate, degrade, model-swap, bandwidth, limit-data, slicer, slow-close:
  that state on the route of each hop — the route then reads the answers it relays
  (`proxy.answers`, `proxy.modelswap`, `proxy.transport`);
- partial-index, embedding-mismatch: that state on the route of each hop, once no hop leads to a
  component that neither searches nor embeds (a gateway or identity service of the reference
  stack, or its llm for partial-index);
- dns: each name fails with the answer; without `new_connections_only`, the connections open on
  routes to it are reset too, so that their clients must look it up again (an own service's name
  only where a caller was given it: ``{NAME.dns_url}``);
- partition, replication-pause: the hops' routes blackholed (for an own service that replicates,
  the route each standby streams from its primary through);
- control-plane: the regions frozen;
- data-loss: each store replica wiped (irreversible) — an own service's by its `wipe:` command,
  run while the replica is stopped;
- stale-index: each reference store replica's index frozen over its admin API until the fault ends
  (own services are refused by the planner);
- identity: the routes to the token service (a dependency, or an own `kind: identity` component)
  — `error` gives HTTP errors, `slow` latency, `timeout` a blackhole.

Routes out of a region are cut by an outage too: a region whose network is down sends nothing,
so replication from it stops as well. Effects are JSON-ready through `dump_effect` /
`parse_effect`, for the undo ledger and the control channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from bascule import faults
from bascule.errors import FaultError
from bascule.faults import Fault
from bascule.model.topology import Link
from bascule.plan.model import Touch
from bascule.stack.layout import ProcessKind, ReplicaSpec, StackLayout
from bascule.targets.local import faultstate as fs
from bascule.targets.local.faultstate import DnsFaultMode, ProxyFault, dump_proxy_fault, parse_proxy_fault

__all__ = [
    "INSTANT",
    "DnsFault",
    "Effect",
    "Freeze",
    "FreezeIndex",
    "Kill",
    "Pause",
    "ResetConnections",
    "RouteFault",
    "Wipe",
    "compute_effects",
    "describe_effect",
    "dump_effect",
    "parse_effect",
]


@dataclass(frozen=True, slots=True)
class RouteFault:
    """Route `route` is in `state` while the fault holds."""

    route: str
    state: ProxyFault


@dataclass(frozen=True, slots=True)
class DnsFault:
    """Lookups of `host` get `mode` while the fault holds."""

    host: str
    mode: DnsFaultMode


@dataclass(frozen=True, slots=True)
class ResetConnections:
    """Reset the connections open on `route` once, so that their clients must look the name up again."""

    route: str


@dataclass(frozen=True, slots=True)
class Freeze:
    """Nothing in `region` restarts while the fault holds."""

    region: str


@dataclass(frozen=True, slots=True)
class Pause:
    """Process `replica` is stopped (SIGSTOP) while the fault holds."""

    replica: str


@dataclass(frozen=True, slots=True)
class Kill:
    """Process `replica` is killed once; the supervisor restarts it after `restart_after` seconds."""

    replica: str
    restart_after: float


@dataclass(frozen=True, slots=True)
class Wipe:
    """Store `replica` loses every document once (an own service: its wipe command, run while it is
    stopped). Nothing brings them back."""

    replica: str


@dataclass(frozen=True, slots=True)
class FreezeIndex:
    """Store `replica` searches a copy of its index taken when the fault began, while the fault
    holds; writes go on. Reverting lets the index catch up: at once, or `catch_up` documents a second."""

    replica: str
    catch_up: float | None = None


Effect = RouteFault | DnsFault | ResetConnections | Freeze | Pause | Kill | Wipe | FreezeIndex
"""Any effect on a part of the local stack."""

INSTANT: Final = (ResetConnections, Kill, Wipe)
"""Effects that act once, when the fault is applied; the others hold until it is reverted."""


def describe_effect(effect: Effect) -> str:
    """One line for reports: ``route clients->gateway@aws-us-east-1: blackhole``."""
    match effect:
        case RouteFault(route, state):
            return f"route {route}: {state.mode.value}"
        case DnsFault(host, mode):
            return f"dns {host}: {mode.value}"
        case ResetConnections(route):
            return f"route {route}: connections reset"
        case Freeze(region):
            return f"region {region}: control plane frozen"
        case Pause(replica):
            return f"process {replica}: paused"
        case Kill(replica, restart_after):
            return f"process {replica}: killed (restart after {restart_after:g} s)"
        case Wipe(replica):
            return f"store {replica}: wiped"
        case FreezeIndex(replica, catch_up):
            then = "" if catch_up is None else f" (then catching up at {catch_up:g} documents/s)"
            return f"store {replica}: index frozen{then}"


def dump_effect(effect: Effect) -> dict[str, object]:
    """A JSON-ready mapping; `parse_effect` reads it back."""
    match effect:
        case RouteFault(route, state):
            return {"op": "route", "route": route, "state": dump_proxy_fault(state)}
        case DnsFault(host, mode):
            return {"op": "dns", "host": host, "mode": mode.value}
        case ResetConnections(route):
            return {"op": "reset", "route": route}
        case Freeze(region):
            return {"op": "freeze", "region": region}
        case Pause(replica):
            return {"op": "pause", "replica": replica}
        case Kill(replica, restart_after):
            return {"op": "kill", "replica": replica, "restart_after": restart_after}
        case Wipe(replica):
            return {"op": "wipe", "replica": replica}
        case FreezeIndex(replica, catch_up):
            return {"op": "freeze-index", "replica": replica, "catch_up": catch_up}


def _text(data: Mapping[str, object], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"effect {data.get('op')!r} needs a non-empty string {key!r}, got {value!r}")
    return value


def parse_effect(data: Mapping[str, object]) -> Effect:
    """Raises `ValueError` naming what is wrong."""
    op = data.get("op")
    match op:
        case "route":
            state = data.get("state")
            if not isinstance(state, Mapping):
                raise ValueError(f"a route effect needs a 'state' mapping, got {state!r}")
            return RouteFault(_text(data, "route"), parse_proxy_fault(state))
        case "dns":
            try:
                mode = DnsFaultMode(data.get("mode"))
            except ValueError:
                raise ValueError(f"unknown DNS fault mode {data.get('mode')!r}") from None
            return DnsFault(_text(data, "host"), mode)
        case "reset":
            return ResetConnections(_text(data, "route"))
        case "freeze":
            return Freeze(_text(data, "region"))
        case "pause":
            return Pause(_text(data, "replica"))
        case "kill":
            delay = data.get("restart_after")
            if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                raise ValueError(f"a kill effect needs 'restart_after' >= 0, got {delay!r}")
            return Kill(_text(data, "replica"), float(delay))
        case "wipe":
            return Wipe(_text(data, "replica"))
        case "freeze-index":
            rate = data.get("catch_up")
            if rate is not None and (
                isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0
            ):
                raise ValueError(f"a freeze-index effect needs 'catch_up' > 0 or null, got {rate!r}")
            return FreezeIndex(_text(data, "replica"), None if rate is None else float(rate))
        case _:
            raise ValueError(f"unknown effect op {op!r}")


# -- from a fault to its effects ------------------------------------------------------------------


class _Parts:
    """Lookups of a layout's routes and processes."""

    def __init__(self, layout: StackLayout) -> None:
        self.layout = layout
        self.route_of: dict[Link, str] = {r.hop: r.name for r in layout.routes}
        self.replica_of: dict[tuple[str, str, int], ReplicaSpec] = {
            (r.component, r.region, r.index): r for r in layout.replicas
        }
        self.urls = set(layout.fronted)
        self.own = self.urls | {r.component for r in layout.replicas if r.kind is ProcessKind.SERVICE}

    def routes(self, hops: Iterable[Link], what: str) -> list[str]:
        hops = list(hops)
        names = list(dict.fromkeys(self.route_of[h] for h in hops if h in self.route_of))
        if hops and not names:
            missing = sorted({str(h.target) for h in hops})
            raise FaultError(
                f"{what}: the local stack runs nothing behind {', '.join(missing)} (of the shared "
                "dependencies, only identity services are run as processes)"
            )
        return names

    def replicas(self, touch: Touch, what: str, kinds: Iterable[ProcessKind] | None = None) -> list[str]:
        wanted = set(kinds) if kinds is not None else None
        found = [
            self.replica_of[key]
            for ref in touch.replicas
            if (key := (ref.component, ref.region, ref.index)) in self.replica_of
        ]
        found = [r for r in found if wanted is None or r.kind in wanted]
        if touch.replicas and not found:
            running = sorted(
                {f"{r.component}@{r.region}" for r in touch.replicas if r.component in self.urls}
            )
            if running:
                raise FaultError(
                    f"{what}: {', '.join(running)} is a url service, already running and not started by "
                    "bascule: only the faults of its routes reach it (blackhole, refuse, latency, "
                    "http-error, throttle, ttft, stream-cut, token-rate, degrade, model-swap, partial-index, "
                    "embedding-mismatch, "
                    "bandwidth, limit-data, slicer, slow-close, an outage of its region)"
                )
            refs = ", ".join(str(r) for r in touch.replicas)
            raise FaultError(
                f"{what}: the local stack runs no process for {refs} (a component whose kind is not "
                "gateway, retriever, store, llm or a service with a command)"
            )
        return [r.name for r in found]


_HopFault = (
    faults.Blackhole
    | faults.Refuse
    | faults.Latency
    | faults.HttpError
    | faults.Throttle
    | faults.Ttft
    | faults.StreamCut
    | faults.TokenRate
    | faults.Degrade
    | faults.ModelSwap
    | faults.PartialIndex
    | faults.EmbeddingMismatch
    | faults.Bandwidth
    | faults.LimitData
    | faults.Slicer
    | faults.SlowClose
)


def _hop_state(fault: _HopFault) -> ProxyFault:
    match fault:
        case faults.Blackhole():
            return fs.Blackhole(new_connections_only=fault.new_connections_only)
        case faults.Refuse():
            return fs.Refuse(
                new_connections_only=fault.new_connections_only, count=fault.count, every=fault.every
            )
        case faults.Latency():
            return fs.Latency(fixed=fault.fixed, jitter=fault.jitter, per=fs.LatencyPer(fault.per.value))
        case faults.HttpError():
            return fs.HttpError(
                statuses=fault.statuses, ratio=fault.ratio, count=fault.count, every=fault.every
            )
        case faults.Throttle():
            return fs.Throttle(retry_after=fault.retry_after, body=fault.body, ratio=fault.ratio)
        case faults.Ttft():
            return fs.Ttft(delay=fault.delay)
        case faults.StreamCut():
            return fs.StreamCut(
                after_events=fault.after_events, after_bytes=fault.after_bytes, how=fs.CutHow(fault.how.value)
            )
        case faults.TokenRate():
            return fs.TokenRate(tokens_per_minute=fault.tokens_per_minute, body=fault.body)
        case faults.Degrade():
            return fs.Degrade(
                ratio=fault.ratio,
                how=fs.DegradeHow(fault.how.value),
                tokens=fault.tokens,
                sticky=fault.sticky,
            )
        case faults.ModelSwap():
            return fs.ModelSwap(to=fault.to, answers=fs.SwapAnswers(fault.answers.value), ratio=fault.ratio)
        case faults.PartialIndex():
            return fs.PartialIndex(ratio=fault.ratio, salt=fault.salt)
        case faults.EmbeddingMismatch():
            return fs.EmbeddingMismatch(model=fault.model)
        case faults.Bandwidth():
            return fs.Bandwidth(rate=fault.rate)
        case faults.LimitData():
            return fs.LimitData(limit=fault.limit, reset=fault.reset)
        case faults.Slicer():
            return fs.Slicer(
                average_size=fault.average_size, size_variation=fault.size_variation, delay=fault.delay
            )
        case faults.SlowClose():
            return fs.SlowClose(delay=fault.delay)


def _outage(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    assert isinstance(fault, faults.RegionOutage | faults.ProviderOutage)
    regions = set(touch.regions)
    state: ProxyFault = fs.Refuse() if fault.mode is faults.OutageMode.REFUSE else fs.Blackhole()
    routes = [
        r.name
        for r in parts.layout.routes
        if r.hop.target.region in regions or (r.hop.source is not None and r.hop.source.region in regions)
    ]
    effects: list[Effect] = [Freeze(region) for region in sorted(regions)]
    return effects + [RouteFault(name, state) for name in routes]


def _crash(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    assert isinstance(fault, faults.Crash)
    return [Kill(name, fault.restart_after) for name in parts.replicas(touch, "crash")]


def _hang(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    return [Pause(name) for name in parts.replicas(touch, "hang")]


def _on_hops(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    assert isinstance(fault, _HopFault)
    state = _hop_state(fault)
    return [RouteFault(name, state) for name in parts.routes(touch.hops, fault.kind)]


# The reference components whose hops carry no search answers (partial-index), or neither query
# vectors nor embeddings (embedding-mismatch): a fault there would change nothing.
_NOT_SEARCHING: Final = {
    faults.PartialIndex: frozenset({ProcessKind.GATEWAY, ProcessKind.LLM, ProcessKind.IDENTITY}),
    faults.EmbeddingMismatch: frozenset({ProcessKind.GATEWAY, ProcessKind.IDENTITY}),
}


def _on_search_hops(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    wrong = sorted(
        {
            f"{hop.target} ({spec.kind.value})"
            for hop in touch.hops
            for spec in parts.layout.replicas_of(hop.target)[:1]
            if spec.kind in _NOT_SEARCHING[type(fault)]
        }
    )
    if wrong:
        carries = (
            "search answers (a JSON list of results naming their documents)"
            if isinstance(fault, faults.PartialIndex)
            else "query vectors nor embeddings"
        )
        raise FaultError(
            f"{fault.kind}: {', '.join(wrong)} carries no {carries}: target the retriever or the "
            "store, or a service of your own that searches (docs/faults.md)"
        )
    return _on_hops(fault, touch, parts)


def _cut(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    return [RouteFault(name, fs.Blackhole()) for name in parts.routes(touch.hops, fault.kind)]


def _dns(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    assert isinstance(fault, faults.Dns)
    # An own service's callers see a DNS fault only where they were given its name ({NAME.dns_url}).
    unnamed = sorted(
        {
            str(r.hop.target)
            for r in parts.layout.routes
            if r.host in touch.hosts
            and r.hop.target.name in parts.own
            and not any(c.host == r.host and c.name in parts.layout.named_routes for c in parts.layout.routes)
        }
    )
    if unnamed:
        raise FaultError(
            f"dns: no caller of {', '.join(unnamed)} is given its name: they reach it at 127.0.0.1 and a "
            "port, so a DNS fault would change nothing they see; give its callers {NAME.dns_url} (or "
            "{NAME.dns_host}) instead of {NAME.url} (docs/own-services.md), or use blackhole or refuse "
            "on its hops"
        )
    served = set(parts.layout.hosts())
    hosts = [h for h in touch.hosts if h in served]
    if touch.hosts and not hosts:
        raise FaultError(
            f"dns: the local stack's DNS server serves none of {', '.join(touch.hosts)} (of the shared "
            "dependencies, only identity services are run as processes)"
        )
    mode = DnsFaultMode(fault.answer.value)
    effects: list[Effect] = [DnsFault(host, mode) for host in hosts]
    if not fault.new_connections_only:
        # A pooled connection never looks its name up again: reset it, so the fault reaches it.
        names = set(hosts)
        effects += [
            ResetConnections(r.name)
            for r in parts.layout.routes
            if r.host in names and r.hop.source is not None
        ]
    return effects


def _control_plane(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    started = {r.region for r in parts.layout.replicas}
    if touch.regions and not started & set(touch.regions):
        raise FaultError(
            f"control-plane: bascule starts nothing in {', '.join(touch.regions)} (only url services, "
            "already running, are there), so there is nothing to keep from restarting or scaling"
        )
    return [Freeze(region) for region in touch.regions]


def _data_loss(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    # The planner keeps to stores and own services with a wipe command (`resolve._data_loss`).
    return [
        Wipe(name) for name in parts.replicas(touch, "data-loss", [ProcessKind.STORE, ProcessKind.SERVICE])
    ]


def _stale_index(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    # The planner keeps to reference stores (`resolve._stale_index`).
    assert isinstance(fault, faults.StaleIndex)
    stores = parts.replicas(touch, "stale-index", [ProcessKind.STORE])
    return [FreezeIndex(name, fault.catch_up) for name in stores]


def _identity(fault: Fault, touch: Touch, parts: _Parts) -> list[Effect]:
    assert isinstance(fault, faults.Identity)
    state: ProxyFault
    match fault.mode:
        case faults.IdentityMode.ERROR:
            state = fs.HttpError(statuses=fault.statuses)
        case faults.IdentityMode.SLOW:
            state = fs.Latency(fixed=fault.latency)
        case faults.IdentityMode.TIMEOUT:
            state = fs.Blackhole()
    return [RouteFault(name, state) for name in parts.routes(touch.hops, "identity")]


_Mapper = Callable[[Fault, Touch, _Parts], list[Effect]]

_MAPPERS: dict[type[Fault], _Mapper] = {
    faults.RegionOutage: _outage,
    faults.ProviderOutage: _outage,
    faults.Crash: _crash,
    faults.Hang: _hang,
    faults.Blackhole: _on_hops,
    faults.Refuse: _on_hops,
    faults.Latency: _on_hops,
    faults.HttpError: _on_hops,
    faults.Throttle: _on_hops,
    faults.Ttft: _on_hops,
    faults.StreamCut: _on_hops,
    faults.TokenRate: _on_hops,
    faults.Degrade: _on_hops,
    faults.ModelSwap: _on_hops,
    faults.PartialIndex: _on_search_hops,
    faults.EmbeddingMismatch: _on_search_hops,
    faults.Bandwidth: _on_hops,
    faults.LimitData: _on_hops,
    faults.Slicer: _on_hops,
    faults.SlowClose: _on_hops,
    faults.Dns: _dns,
    faults.Partition: _cut,
    faults.ReplicationPause: _cut,
    faults.ControlPlane: _control_plane,
    faults.DataLoss: _data_loss,
    faults.StaleIndex: _stale_index,
    faults.Identity: _identity,
}

_ORDER: dict[type[object], int] = {
    # Frozen first, so that a process killed by the same fault does not come back; killed and
    # wiped last, once every route already shows the fault.
    Freeze: 0,
    RouteFault: 1,
    DnsFault: 2,
    ResetConnections: 3,
    Pause: 4,
    FreezeIndex: 5,
    Kill: 6,
    Wipe: 7,
}


def compute_effects(fault: Fault, touch: Touch, layout: StackLayout) -> tuple[Effect, ...]:
    """The effects of `fault` on the parts `touch` names, in the order they are to be applied.

    Raises `FaultError` with the reason when the local stack cannot carry the fault out. A flap
    is not a fault of its own here: the planner expands it into its inner fault's cycles.
    """
    if isinstance(fault, faults.Flap):
        raise FaultError("a flap is applied as its inner fault, one cycle at a time (see the plan's actions)")
    mapper = _MAPPERS.get(type(fault))
    if mapper is None:
        raise FaultError(f"the local target does not know how to carry out {fault.kind!r}")
    effects = list(dict.fromkeys(mapper(fault, touch, _Parts(layout))))
    return tuple(sorted(effects, key=lambda e: _ORDER[type(e)]))
