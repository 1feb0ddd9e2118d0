"""The local target's autoscaler: what grows a pilot-light region to its ``max_replicas``.

A pilot-light region runs a few replicas and parks the rest (`bascule.stack.layout`'s reserves).
When failover traffic arrives, its gateways run out of slots (``max_inflight``) and shed load;
the autoscaler samples their busy slots on ``/v1/status`` four times a second and, as a
Kubernetes HPA does with a utilisation target, once the mean over the last 3 s reaches 80 % — or
they shed 5 requests within 3 s — asks the supervisor to start the region's reserves after
``routing.scale_up_delay``, the time a cloud takes to provision nodes and start pods. A frozen
control plane (the ``control-plane`` fault, a region outage) holds them back until it thaws, as
on 2025-10-20 when EC2 could not launch instances. The region stays scaled up until the stack
stops: scaling down is a cost matter, and the cost figures count the time failed over.

The decision (`should_scale`) is pure; `Autoscaler` is the small polling loop around it. It reads
the gateways directly, not through the fault plane: it is the control plane's metrics pipeline,
not a client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from bascule.stack.supervisor import ProcessState, Supervisor

__all__ = [
    "POLL_INTERVAL",
    "SCALE_AT",
    "SHED_AT",
    "WINDOW",
    "Autoscaler",
    "GatewayLoad",
    "ScaleEvent",
    "read_load",
    "should_scale",
]

_log = logging.getLogger(__name__)

SCALE_AT = 0.8
"""Scale up once a region's gateways have, on average, this fraction of their slots busy…"""
SHED_AT = 5
"""…or have shed this many requests within the window."""
POLL_INTERVAL = 0.25
WINDOW = 12
"""Samples averaged (3 s): a burst that fills the slots for an instant is not failover traffic."""


@dataclass(frozen=True)
class GatewayLoad:
    """What a region's running gateways report, summed."""

    inflight: int
    slots: int
    shed: int

    @property
    def utilisation(self) -> float:
        return self.inflight / self.slots if self.slots else 0.0


def should_scale(
    history: Sequence[GatewayLoad],
    *,
    threshold: float = SCALE_AT,
    window: int = WINDOW,
    shed_at: int = SHED_AT,
) -> bool:
    """True when, over the last `window` samples, the gateways were on average at least
    `threshold` busy, or shed at least `shed_at` requests (failover traffic that comes and goes,
    as a flapping primary sends, sheds without keeping the slots full on average)."""
    recent = list(history)[-window:]
    if len(recent) >= 2 and recent[-1].shed - recent[0].shed >= shed_at:
        return True
    if len(recent) < window:
        return False
    return sum(load.utilisation for load in recent) / window >= threshold


@dataclass(frozen=True)
class ScaleEvent:
    """``requested`` (the reserves will start at ``due``), ``started`` (the last reserve of the
    region is running)."""

    kind: str
    region: str
    replicas: tuple[str, ...]
    at: float
    """``time.monotonic()`` of the event."""
    due: float | None = None


def read_load(client: httpx.Client, urls: Sequence[str]) -> GatewayLoad | None:
    """Sum the ``load`` of the gateways at `urls`; None when none of them answered."""
    inflight = slots = shed = answered = 0
    for url in urls:
        try:
            load = client.get(url + "/v1/status").json()["load"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            continue
        answered += 1
        inflight += int(load["inflight"])
        slots += int(load["max_inflight"] or 0)
        shed += int(load["shed"])
    return GatewayLoad(inflight, slots, shed) if answered else None


class Autoscaler:
    """Samples each growing region's gateways every `interval` seconds and starts its reserves
    once `should_scale` says so, after `delay` seconds. Stops with `stop`."""

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        gateways: Mapping[str, Sequence[str]],
        reserves: Mapping[str, Sequence[str]],
        delay: float,
        interval: float = POLL_INTERVAL,
        listener: Callable[[ScaleEvent], None] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.gateways = {region: list(names) for region, names in gateways.items()}
        self.reserves = {region: list(names) for region, names in reserves.items() if names}
        self.delay = delay
        self.interval = interval
        self._listeners: list[Callable[[ScaleEvent], None]] = [listener] if listener else []
        self._requested: dict[str, float] = {}
        self._started: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bascule-autoscaler", daemon=True)

    def subscribe(self, listener: Callable[[ScaleEvent], None]) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        if self.reserves:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def scale_up(self, region: str) -> ScaleEvent | None:
        """Start `region`'s reserves after the delay; None if already requested or it has none."""
        if region in self._requested or region not in self.reserves:
            return None
        now = time.monotonic()
        names = tuple(self.supervisor.unpark(self.reserves[region], after=self.delay))
        self._requested[region] = now
        event = ScaleEvent("requested", region, names, now, due=now + self.delay)
        self._emit(event)
        return event

    def _emit(self, event: ScaleEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def _urls(self, region: str) -> list[str]:
        urls = []
        for name in self.gateways.get(region, ()):
            replica = self.supervisor.replica(name)
            if replica.url and replica.state is ProcessState.RUNNING:
                urls.append(replica.url)
        return urls

    def _loop(self) -> None:
        history: dict[str, deque[GatewayLoad]] = {r: deque(maxlen=WINDOW) for r in self.reserves}
        with httpx.Client(timeout=max(0.1, self.interval), trust_env=False) as client:
            while not self._stop.wait(self.interval):
                for region in self.reserves:
                    if region in self._requested:
                        self._check_started(region)
                        continue
                    load = read_load(client, self._urls(region))
                    if load is None:
                        continue
                    history[region].append(load)
                    if should_scale(history[region]):
                        self._scale_or_log(region)

    def _scale_or_log(self, region: str) -> None:
        # The loop is the region's only way to grow: an error must not end it silently.
        try:
            self.scale_up(region)
        except Exception:
            _log.exception("could not scale %s up", region)

    def _check_started(self, region: str) -> None:
        if region in self._started:
            return
        states = [self.supervisor.replica(n).state for n in self.reserves[region]]
        if all(s is ProcessState.RUNNING for s in states):
            self._started.add(region)
            self._emit(ScaleEvent("started", region, tuple(self.reserves[region]), time.monotonic()))
