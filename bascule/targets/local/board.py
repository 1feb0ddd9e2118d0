"""The local stack's active faults, and the state of each part when several overlap.

Phases may overlap: a partition and a region outage both act on the route from one region to
the other, two control-plane faults freeze the same region. A `FaultBoard` keeps, for each part
(a route, a DNS name, a region's control plane, a process), the stack of active faults that set
it, by fault key, and puts the part in the state of the most recently applied fault still active.
Reverting one fault therefore never clears another's: the route falls back to the fault below,
or to `Pass` when none is left; a region thaws and a process resumes only when no fault holds
them any more.

A frozen index (`FreezeIndex`) is held like a paused process: the reference store is told over its
admin API (``POST /v1/admin/index``) to freeze when the first fault holds it and to catch up when the
last one ends. Instant effects (`Kill`, `Wipe`, `ResetConnections`) act once, when applied, and leave
nothing to revert. A reference store is wiped over its admin API; an own service by its design's `wipe:`
command, run while the replica is stopped, before it restarts. A fault whose application fails
half-way is rolled back before the error is raised.

The board acts on the live parts of one stack (its `FaultPlane`, `DnsServer` and `Supervisor`),
so it lives in the process that runs the stack; other processes reach it through the control
channel (`control.ControlServer`). It is thread-safe.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import httpx

from bascule.errors import FaultError, RevertError, TargetError
from bascule.stack.layout import OwnWipe
from bascule.stack.supervisor import Supervisor
from bascule.targets.base import FaultTraffic
from bascule.targets.local.dns import DnsServer
from bascule.targets.local.effects import (
    INSTANT,
    DnsFault,
    Effect,
    Freeze,
    FreezeIndex,
    Kill,
    Pause,
    ResetConnections,
    RouteFault,
    Wipe,
    describe_effect,
)
from bascule.targets.local.faultstate import (
    Degrade,
    DnsFaultMode,
    EmbeddingMismatch,
    ModelSwap,
    PartialIndex,
    Pass,
    ProxyFault,
    Refuse,
    StreamCut,
    Ttft,
)
from bascule.targets.local.proxy import FaultPlane

__all__ = ["FaultBoard"]

_ON_ANSWERS: Final = (Ttft, StreamCut, Degrade, ModelSwap, PartialIndex, EmbeddingMismatch)
"""The faults on what answers carry: reached only where they changed an answer (`FaultTraffic.on_answers`)."""

_ADMIN_TIMEOUT_S = 5.0

_Part = tuple[str, str]
_Value = ProxyFault | DnsFaultMode | None


@dataclass
class _Layers:
    """The faults holding one part, oldest first; the last one decides its state."""

    entries: list[tuple[str, _Value]] = field(default_factory=list)

    @property
    def top(self) -> _Value:
        return self.entries[-1][1] if self.entries else None


@dataclass(frozen=True)
class _Counts:
    """The counters of a fault's routes and names: when it was applied, or now."""

    routes: Mapping[str, tuple[int, int, int]]
    """Route → (connections accepted, bytes from clients, requests faulted), for the routes it puts
    in a state."""
    names: Mapping[str, int]
    """Name → lookups read, for the names it makes fail."""
    resets: Mapping[str, int]
    """Route → connections reset, for the routes it puts in a state or whose connections it resets."""
    refusing: bool
    """It closes a route's listener (`Refuse` not counted): the connections it turns away are
    refused by the kernel, and nothing counts them."""
    on_answers: bool = False
    """It acts on answers (`FaultTraffic.on_answers`)."""


@dataclass
class _Change:
    """A part whose layers an apply or a revert changed: its state before, and its layers now."""

    part: _Part
    before: _Value
    was_held: bool
    layers: _Layers

    @property
    def now_held(self) -> bool:
        return bool(self.layers.entries)


def _part(effect: Effect) -> tuple[_Part, _Value] | None:
    match effect:
        case RouteFault(route, state):
            return ("route", route), state
        case DnsFault(host, mode):
            return ("dns", host), mode
        case Freeze(region):
            return ("freeze", region), None
        case Pause(replica):
            return ("pause", replica), None
        case FreezeIndex(replica, _):
            return ("index", replica), None
        case _:
            return None


class FaultBoard:
    """Applies and reverts faults, as lists of effects under a key, on one stack's parts."""

    def __init__(
        self,
        plane: FaultPlane,
        dns: DnsServer,
        supervisor: Supervisor,
        wipes: Mapping[str, OwnWipe] | None = None,
    ) -> None:
        self._plane = plane
        self._dns = dns
        self._supervisor = supervisor
        self.wipes: dict[str, OwnWipe] = dict(wipes or {})
        """How each own service's replica is wiped (its ``wipe:`` command), by replica name."""
        self._lock = threading.RLock()
        self._catch_up: dict[str, float | None] = {}
        """The catch-up rate of the last `FreezeIndex` applied to each store replica."""
        self._layers: dict[_Part, _Layers] = {}
        self._active: dict[str, tuple[Effect, ...]] = {}
        self._stopped_at: dict[str, float] = {}
        """Each fault in force that stopped a process (`Kill`, an own service's `Wipe`): when its
        first one was stopped — when it took effect, whatever the wipe's own length."""
        self._applied_counts: dict[str, _Counts | None] = {}
        """Each fault in force: its routes' and names' counters as it was applied (None: it holds
        neither, or they could not be read)."""

    def active(self) -> dict[str, tuple[Effect, ...]]:
        """Every fault in force, by key, in the order applied."""
        with self._lock:
            return dict(self._active)

    def apply(self, key: str, effects: Sequence[Effect]) -> None:
        """Put the fault `key` in force; on return every effect has taken place.

        Raises `ValueError` if `key` is already in force, `FaultError` if an effect failed (what
        had been applied of it is reverted first).
        """
        with self._lock:
            if key in self._active:
                raise ValueError(f"fault {key!r} is already applied")
            self._active[key] = tuple(effects)
            self._applied_counts[key] = self._counts(effects)
            try:
                changes: list[_Change] = []
                for effect in effects:
                    if isinstance(effect, FreezeIndex):
                        self._catch_up[effect.replica] = effect.catch_up
                    held = _part(effect)
                    if held is not None:
                        part, value = held
                        layers = self._layers.setdefault(part, _Layers())
                        changes.append(_Change(part, layers.top, bool(layers.entries), layers))
                        layers.entries.append((key, value))
                self._actuate(changes)
                for effect in effects:
                    if isinstance(effect, INSTANT):
                        if isinstance(effect, Kill) or (
                            isinstance(effect, Wipe) and effect.replica in self.wipes
                        ):
                            self._stopped_at.setdefault(key, time.monotonic())
                        self._act_once(effect)
            except Exception as exc:
                try:
                    self.revert(key)
                except RevertError as undo_exc:
                    raise FaultError(
                        f"fault {key!r} failed ({exc}) and could not be fully undone: {undo_exc}"
                    ) from exc
                if isinstance(exc, FaultError):
                    raise
                raise FaultError(f"fault {key!r} could not be applied: {exc}") from exc

    def revert(self, key: str) -> bool:
        """End the fault `key`: each part it held goes back to the fault below, or to normal.

        Returns False when `key` is not in force. Every part is attempted even if one fails;
        then `RevertError` names the failures.
        """
        with self._lock:
            if self._active.pop(key, None) is None:
                return False
            self._applied_counts.pop(key, None)
            self._stopped_at.pop(key, None)
            changes: list[_Change] = []
            for part, layers in list(self._layers.items()):
                if not any(k == key for k, _ in layers.entries):
                    continue
                changes.append(_Change(part, layers.top, True, layers))
                layers.entries = [(k, v) for k, v in layers.entries if k != key]
                if not layers.entries:
                    del self._layers[part]
            failures = self._actuate(changes, keep_going=True)
            if failures:
                raise RevertError(f"fault {key!r}: " + "; ".join(failures))
            return True

    def revert_all(self) -> list[str]:
        """Revert every active fault, the most recent first; the keys reverted."""
        done: list[str] = []
        errors: list[str] = []
        for key in reversed(list(self.active())):
            try:
                self.revert(key)
            except RevertError as exc:
                errors.append(str(exc))
            done.append(key)
        if errors:
            raise RevertError("; ".join(errors))
        return done

    def stopped_at(self, key: str) -> float | None:
        """When the fault `key` stopped its first process (``time.monotonic()``), if it stopped one:
        the instant a data-loss took effect, before its wipe ran and its replica restarted."""
        with self._lock:
            return self._stopped_at.get(key)

    def traffic(self, key: str) -> FaultTraffic | None:
        """What reached the routes and names of the fault `key` since it was applied: connections
        and bytes on the routes it put in a state, lookups of the names it made fail, connections
        it reset. None when it is not in force or holds none of those (a fault on processes only)."""
        with self._lock:
            effects = self._active.get(key)
            then = self._applied_counts.get(key)
            if effects is None or then is None:
                return None
            now = self._counts(effects)
        if now is None:
            return None
        counted = FaultTraffic(
            connections=sum(now.routes[r][0] - then.routes[r][0] for r in then.routes),
            bytes=sum(now.routes[r][1] - then.routes[r][1] for r in then.routes),
            lookups=sum(now.names[n] - then.names[n] for n in then.names),
            resets=sum(now.resets[r] - then.resets[r] for r in then.resets),
            faulted=sum(now.routes[r][2] - then.routes[r][2] for r in then.routes),
            on_answers=then.on_answers,
        )
        # A route refusing with its listener closed turns clients away unseen: nothing counted there
        # is not "nothing came" (a new user's refuse on the entry every client hit read so).
        return None if then.refusing and not counted.reached else counted

    def _counts(self, effects: Sequence[Effect]) -> _Counts | None:
        routes = {e.route for e in effects if isinstance(e, RouteFault)}
        resets = routes | {e.route for e in effects if isinstance(e, ResetConnections)}
        names = {e.host for e in effects if isinstance(e, DnsFault)}
        if not (routes or resets or names):
            return None
        try:
            stats = (
                {name: info.stats for name, info in self._plane.routes().items()} if routes or resets else {}
            )
            return _Counts(
                routes={
                    r: (stats[r].connections_accepted, stats[r].bytes_from_clients, stats[r].requests_faulted)
                    for r in routes
                },
                names={n: self._dns.lookups_of(n) for n in names},
                resets={r: stats[r].connections_reset for r in resets},
                refusing=any(
                    isinstance(e, RouteFault) and isinstance(e.state, Refuse) and not e.state.counted
                    for e in effects
                ),
                on_answers=any(
                    isinstance(e, RouteFault) and isinstance(e.state, _ON_ANSWERS) for e in effects
                ),
            )
        except (KeyError, ValueError, RuntimeError, OSError):
            return None  # a route or name the stack does not have: its apply fails on its own

    def describe(self) -> dict[str, list[str]]:
        return {key: [describe_effect(e) for e in effects] for key, effects in self.active().items()}

    # -- acting on the parts --

    def _actuate(self, changes: Sequence[_Change], *, keep_going: bool = False) -> list[str]:
        """Bring every changed part to its new state: control planes first (so that nothing
        killed by the same fault comes back), then all routes at once, names, processes."""
        failures: list[str] = []

        def attempt(what: str, act: Callable[[], None]) -> None:
            try:
                act()
            except Exception as exc:
                if not keep_going:
                    raise
                failures.append(f"{what}: {exc}")

        def hold(
            change: _Change, on: str, held: Callable[[str], None], off: str, free: Callable[[str], None]
        ) -> None:
            """A part a fault holds (a frozen region, a paused process): act only where that changed."""
            if change.now_held != change.was_held:
                name = change.part[1]
                if change.now_held:
                    attempt(f"{on} {name}", partial(held, name))
                else:
                    attempt(f"{off} {name}", partial(free, name))

        by_kind: dict[str, list[_Change]] = {}
        for change in changes:
            by_kind.setdefault(change.part[0], []).append(change)
        for change in by_kind.get("freeze", []):
            hold(change, "freeze", self._supervisor.freeze, "thaw", self._supervisor.thaw)
        routes = {
            c.part[1]: _route_state(c.layers.top)
            for c in by_kind.get("route", [])
            if c.layers.top != c.before or c.was_held != c.now_held
        }
        if routes:
            attempt(f"routes {', '.join(routes)}", partial(self._plane.set_faults, routes))
        for change in by_kind.get("dns", []):
            host, top = change.part[1], change.layers.top
            if isinstance(top, DnsFaultMode):
                attempt(f"dns {host}", partial(self._dns.set_fault, host, top))
            else:
                attempt(f"dns {host}", partial(self._dns.clear_fault, host))
        for change in by_kind.get("pause", []):
            hold(change, "pause", self._supervisor.pause, "resume", self._supervisor.resume)
        for change in by_kind.get("index", []):
            hold(change, "freeze the index of", self._freeze_index, "thaw the index of", self._thaw_index)
        return failures

    def _act_once(self, effect: Effect) -> None:
        match effect:
            case Kill(replica, restart_after):
                self._supervisor.kill(replica, restart_after=restart_after)
            case Wipe(replica):
                self._wipe(replica)
            case ResetConnections(route):
                # Refusing resets the open connections; the route then takes back its state.
                current = self._layers.get(("route", route), _Layers()).top
                self._plane.set_fault(route, Refuse())
                self._plane.set_fault(route, _route_state(current))
            case _:
                raise AssertionError(f"not an instant effect: {effect!r}")

    def _freeze_index(self, replica: str) -> None:
        self._store_admin(replica, "index", {"frozen": True}, "freeze its index")

    def _thaw_index(self, replica: str) -> None:
        if self._supervisor.replica(replica).url is None:
            return  # not running: the freeze died with the process, and it restarts with a live index
        body = {"frozen": False, "catch_up": self._catch_up.pop(replica, None)}
        self._store_admin(replica, "index", body, "let its index catch up")

    def _store_admin(self, replica: str, path: str, body: Mapping[str, object] | None, what: str) -> None:
        try:
            url = self._supervisor.replica(replica).url
        except TargetError as exc:
            raise FaultError(str(exc)) from exc
        if url is None:
            raise FaultError(f"store {replica} is not running: cannot {what}")
        try:
            response = httpx.post(
                f"{url}/v1/admin/{path}",
                json=None if body is None else dict(body),
                timeout=_ADMIN_TIMEOUT_S,
                trust_env=False,
            )
        except httpx.HTTPError as exc:
            raise FaultError(f"store {replica} could not {what}: {exc}") from exc
        if response.status_code != 200:
            raise FaultError(f"store {replica} refused to {what}: HTTP {response.status_code}")

    def _wipe(self, replica: str) -> None:
        own = self.wipes.get(replica)
        if own is not None:
            try:
                log = self._supervisor.log_path(replica)
                self._supervisor.while_down(replica, partial(_run_wipe, replica, own, log))
            except TargetError as exc:
                raise FaultError(str(exc)) from exc
            return
        self._store_admin(replica, "wipe", None, "wipe its data")


def _run_wipe(replica: str, wipe: OwnWipe, log: Path) -> None:
    """Run an own service's wipe command, bounded by its timeout; its output goes to the replica's
    log, after a line that says so."""
    with log.open("ab") as out:
        out.write(f"bascule: data-loss: running {' '.join(wipe.argv)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                list(wipe.argv),
                cwd=wipe.cwd,
                env={**os.environ, **wipe.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=wipe.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FaultError(f"{replica}: its wipe command failed: {exc}") from exc
    if done.returncode != 0:
        raise FaultError(f"{replica}: its wipe command exited {done.returncode} (its output: {log})")


def _route_state(value: _Value) -> ProxyFault:
    return Pass() if value is None or isinstance(value, DnsFaultMode) else value
