"""Driving probes: continuously during a run (`ProbeRunner`), once for the steady-state hypothesis
(`check_hypothesis`), and at the end for the probes that judge the whole run (`finish_probes`).

Each probe is paced at its own ``rate`` on one asyncio loop: a tick starts a sample and does not
wait for it, so a slow probe neither blocks the others nor falls below its rate while a service
hangs — which is when the samples matter most. Bounds: a sample lasts at most its spec's
``timeout`` (`sample_once`), a probe has at most ``ceil(rate × timeout) + 1`` samples in flight
(a tick beyond that is counted as skipped), and a loop that falls more than a period behind drops
the missed ticks (counted as late) rather than bursting. Each sample's ``started`` is its tick's instant
(``time.monotonic()``).

`ProbeRunner` runs its loop in a background thread and hands every sample to ``on_sample`` from that
thread. The hypothesis is judged purely by `judge_hypothesis`: every probe must pass at
``success_ratio`` or better (a sample passes when its request succeeded and, if graded, its answer
was correct) — after, when asked, waiting a bounded time until each has passed once
(`wait_until_answered`), so that a service still warming up is not judged cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import httpx

from bascule.errors import ProbeError
from bascule.journal.samples import RequestSample
from bascule.model.probes import ProbeSpec
from bascule.probes.base import Probe, ProbeContext, load_kinds, passed, sample_once

__all__ = [
    "Failure",
    "HypothesisResult",
    "ProbeRunner",
    "ProbeStats",
    "ProbeVerdict",
    "check_hypothesis",
    "collect_samples",
    "finish_probes",
    "judge_hypothesis",
    "max_in_flight",
    "wait_until_answered",
]

_log = logging.getLogger(__name__)

_MAX_IN_FLIGHT = 200
_DRAIN_GRACE = 1.0
"""Seconds granted beyond a sample's timeout for in-flight samples to end when probing stops."""

load_kinds()


@dataclass(frozen=True)
class ProbeStats:
    ticks: int = 0
    samples: int = 0
    skipped: int = 0
    """Ticks that found the probe at its in-flight bound."""
    late: int = 0
    """Ticks dropped because the loop fell more than a period behind (this machine is overloaded)."""
    failed: int = 0
    """Samples that did not pass."""


def max_in_flight(spec: ProbeSpec) -> int:
    return min(_MAX_IN_FLIGHT, math.ceil(spec.rate * spec.timeout) + 1)


Emit = Callable[[RequestSample], None]


class _Counters:
    def __init__(self, names: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._stats = {name: ProbeStats() for name in names}

    def add(self, name: str, **deltas: int) -> None:
        with self._lock:
            current = self._stats[name]
            self._stats[name] = replace(current, **{k: getattr(current, k) + v for k, v in deltas.items()})

    def snapshot(self) -> dict[str, ProbeStats]:
        with self._lock:
            return dict(self._stats)


async def _one(
    probe: Probe[Any], client: httpx.AsyncClient, now: float, emit: Emit, counters: _Counters
) -> None:
    sample = await sample_once(probe, client, now)
    counters.add(probe.name, samples=1, failed=0 if passed(sample) else 1)
    try:
        emit(sample)
    except Exception:
        # A consumer's bug must not stop the probes; it is logged once per sample.
        _log.exception("on_sample failed for a sample of %s", probe.name)


async def _pace(
    probe: Probe[Any],
    client: httpx.AsyncClient,
    emit: Emit,
    *,
    stop: asyncio.Event,
    until: float | None,
    counters: _Counters,
) -> None:
    period = 1.0 / probe.spec.rate
    limit = max_in_flight(probe.spec)
    running: set[asyncio.Task[None]] = set()
    scheduled = time.monotonic()
    started = False
    while not stop.is_set():
        now = time.monotonic()
        # A window that ran out before the first tick (a busy machine: the client took that long to
        # set up) still gets one sample per probe: a hypothesis is never judged on no sample at all.
        if until is not None and now >= until and started:
            break
        started = True
        if len(running) >= limit:
            counters.add(probe.name, ticks=1, skipped=1)
        else:
            counters.add(probe.name, ticks=1)
            task = asyncio.create_task(_one(probe, client, now, emit, counters))
            running.add(task)
            task.add_done_callback(running.discard)
        scheduled += period
        if scheduled <= now:
            counters.add(probe.name, late=int((now - scheduled) // period) + 1)
            scheduled = now + period
        delay = scheduled - time.monotonic()
        if until is not None:
            delay = min(delay, until - time.monotonic())
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    if running:
        await asyncio.wait(set(running), timeout=probe.spec.timeout + _DRAIN_GRACE)
    leftovers = set(running)
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def _drive(
    probes: Sequence[Probe[Any]],
    context: ProbeContext,
    emit: Emit,
    *,
    stop: asyncio.Event,
    until: float | None,
    counters: _Counters,
) -> None:
    async with context.client_factory() as client:
        await asyncio.gather(
            *(_pace(p, client, emit, stop=stop, until=until, counters=counters) for p in probes)
        )


def _check_names(probes: Sequence[Probe[Any]]) -> None:
    names = [p.name for p in probes]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ProbeError(f"probe names must be unique within a run; repeated: {', '.join(repeated)}")


class ProbeRunner:
    """Runs probes continuously on one asyncio loop in a background thread, from `start` to `stop`.

    ``on_sample`` is called from that thread for every sample; it must be quick (hand the sample
    to a queue or a journal writer) and thread-safe with what the caller does meanwhile.
    """

    def __init__(self, probes: Sequence[Probe[Any]], context: ProbeContext, on_sample: Emit) -> None:
        _check_names(probes)
        self.probes = tuple(probes)
        self.context = context
        self._emit = on_sample
        self._counters = _Counters(p.name for p in self.probes)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopped = False

    @property
    def stats(self) -> dict[str, ProbeStats]:
        return self._counters.snapshot()

    def start(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            raise ProbeError("the probe runner was already started")
        self._thread = threading.Thread(target=self._main, name="bascule-probes", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise ProbeError(f"the probe loop did not start within {timeout:g} s")

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await _drive(
            self.probes, self.context, self._emit, stop=self._stop, until=None, counters=self._counters
        )

    def stop(self, timeout: float | None = None) -> None:
        """Stop ticking, let in-flight samples end (each within its timeout), close the client and
        join the thread. Raises `ProbeError` if the loop failed or does not end in time."""
        thread = self._thread
        if thread is None or self._stopped:
            return
        self._stopped = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        longest = max((p.spec.timeout for p in self.probes), default=0.0)
        thread.join(timeout if timeout is not None else longest + _DRAIN_GRACE + 2.0)
        if thread.is_alive():
            raise ProbeError("the probe loop did not stop in time")
        if self._failure is not None:
            raise ProbeError(f"the probe loop failed: {self._failure!r}") from self._failure

    def finish(self, settle: float = 0.0) -> dict[str, object]:
        """After `stop`: wait ``settle`` seconds, then each probe's end-of-run verdict by name."""
        if self._thread is not None and not self._stopped:
            raise ProbeError("stop the probe runner before finishing its probes")
        return finish_probes(self.probes, self.context, settle=settle)

    def __enter__(self) -> ProbeRunner:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def collect_samples(
    probes: Sequence[Probe[Any]],
    context: ProbeContext,
    over: float,
    on_sample: Emit | None = None,
    *,
    until: float | None = None,
) -> list[RequestSample]:
    """Every sample the probes make in ticks over the next ``over`` seconds (until ``until``, a
    ``time.monotonic()`` instant, when given), each ended or timed out, in the order they ended."""
    _check_names(probes)
    samples: list[RequestSample] = []

    def emit(sample: RequestSample) -> None:
        samples.append(sample)
        if on_sample is not None:
            on_sample(sample)

    counters = _Counters(p.name for p in probes)
    if until is None:
        until = time.monotonic() + over
    await _drive(probes, context, emit, stop=asyncio.Event(), until=until, counters=counters)
    return samples


@dataclass(frozen=True)
class ProbeVerdict:
    name: str
    samples: int
    passed: int
    ratio: float
    ok: bool


@dataclass(frozen=True)
class Failure:
    probe: str
    started: float
    error: str


@dataclass(frozen=True)
class HypothesisResult:
    ok: bool
    success_ratio: float
    verdicts: tuple[ProbeVerdict, ...]
    failures: tuple[Failure, ...]
    """Each failing sample's error (or a probe that made no sample), in time order."""
    samples: tuple[RequestSample, ...]
    wait_for: float = 0.0
    """How long the check could wait for every probe to succeed once before judging (0: none)."""
    waited: float = 0.0
    """How long it waited."""
    unanswered: tuple[str, ...] = ()
    """The probes that never succeeded within ``wait_for``: then nothing was judged."""
    window: tuple[float, float] | None = None
    """``time.monotonic()`` when the judged window opened and when its probes stopped ticking
    (None: nothing was judged)."""

    def summary(self) -> str:
        if self.unanswered:
            return (
                f"hypothesis does not hold: the service never answered within wait_for "
                f"({self.wait_for:g} s): no success from {', '.join(self.unanswered)}"
            )
        parts = [f"{v.name}: {v.passed}/{v.samples}" for v in self.verdicts]
        verdict = "holds" if self.ok else "does not hold"
        waited = f" after {self.waited:.1f} s waiting for every probe to answer" if self.wait_for else ""
        return f"hypothesis {verdict} (≥ {self.success_ratio:.0%} each){waited}: " + ", ".join(parts)


def _why(sample: RequestSample) -> str:
    if sample.error:
        return sample.error
    if sample.correct is False:
        return "the answer is not correct"
    return f"HTTP {sample.status}" if sample.status is not None else "failed"


def judge_hypothesis(
    samples: Iterable[RequestSample], names: Sequence[str], success_ratio: float
) -> HypothesisResult:
    """Whether every probe named passed at ``success_ratio`` or better (pure). A probe with no
    sample fails."""
    ordered = sorted(samples, key=lambda s: s.started)
    verdicts: list[ProbeVerdict] = []
    failures: list[Failure] = []
    for name in names:
        mine = [s for s in ordered if s.source == name]
        good = sum(1 for s in mine if passed(s))
        ratio = good / len(mine) if mine else 0.0
        # A tolerance, so that 0.9 of 10 samples is not judged below 0.9 by rounding.
        ok = bool(mine) and ratio + 1e-9 >= success_ratio
        verdicts.append(ProbeVerdict(name, len(mine), good, ratio, ok))
        if not mine:
            failures.append(Failure(name, 0.0, "no sample"))
    failures += [
        Failure(s.source, s.started, _why(s)) for s in ordered if s.source in names and not passed(s)
    ]
    return HypothesisResult(
        ok=all(v.ok for v in verdicts),
        success_ratio=success_ratio,
        verdicts=tuple(verdicts),
        failures=tuple(failures),
        samples=tuple(ordered),
    )


def check_hypothesis(
    probes: Sequence[Probe[Any]],
    context: ProbeContext,
    over: float,
    success_ratio: float,
    *,
    on_sample: Emit | None = None,
    wait_for: float = 0.0,
    wait_up_to: float | None = None,
) -> HypothesisResult:
    """Run ``probes`` at their rates for ``over`` seconds and judge them; blocks the calling thread
    (which must not be running an event loop) for about ``over`` seconds plus the slowest sample.
    With `wait_for`, first wait up to that long (`wait_up_to` when given: the runner's check that
    starts before the warm-up ends may also wait the rest of it) until every probe has succeeded
    once (its samples go to `on_sample` too, and are not judged); if one never does, the
    hypothesis does not hold."""
    names = [p.name for p in probes]
    began = time.monotonic()
    bound = wait_for if wait_up_to is None else wait_up_to
    unanswered = asyncio.run(wait_until_answered(probes, context, bound, on_sample)) if wait_for else []
    waited = time.monotonic() - began
    if unanswered:
        failures = tuple(
            Failure(n, began, f"no success within wait_for ({wait_for:g} s)") for n in unanswered
        )
        return HypothesisResult(False, success_ratio, (), failures, (), wait_for, waited, tuple(unanswered))
    opened = time.monotonic()
    samples = asyncio.run(collect_samples(probes, context, over, on_sample, until=opened + over))
    judged = judge_hypothesis(samples, names, success_ratio)
    return replace(judged, wait_for=wait_for, waited=waited, window=(opened, opened + over))


async def wait_until_answered(
    probes: Sequence[Probe[Any]],
    context: ProbeContext,
    wait_for: float,
    on_sample: Emit | None = None,
) -> list[str]:
    """Run ``probes`` at their rates until each has passed once, for at most ``wait_for`` seconds
    (plus the in-flight samples' end); the names of those that never passed."""
    _check_names(probes)
    answered: set[str] = set()
    stop = asyncio.Event()

    def emit(sample: RequestSample) -> None:
        if passed(sample):
            answered.add(sample.source)
            if len(answered) == len(probes):
                stop.set()
        if on_sample is not None:
            on_sample(sample)

    counters = _Counters(p.name for p in probes)
    until = time.monotonic() + wait_for
    await _drive(probes, context, emit, stop=stop, until=until, counters=counters)
    return [p.name for p in probes if p.name not in answered]


def finish_probes(
    probes: Sequence[Probe[Any]], context: ProbeContext, *, settle: float = 0.0
) -> dict[str, object]:
    """Wait ``settle`` seconds, then each probe's end-of-run verdict (`Probe.finish`) by name, for
    the probes that give one."""
    if settle > 0:
        time.sleep(settle)

    async def run() -> dict[str, object]:
        reports: dict[str, object] = {}
        async with context.client_factory() as client:
            for probe in probes:
                report = await probe.finish(client, context)
                if report is not None:
                    reports[probe.name] = report
        return reports

    return asyncio.run(run())
