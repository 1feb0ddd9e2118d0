"""What load the locust processes make, and when: the configuration handed to them (`LoadConfig`,
self-contained JSON in `CONFIG_ENV`), the names of the environment and messages the generator and
the locustfile share, and the users over time (`LoadSchedule`, `compute_schedule`). Pure: imported
by the locustfile, it must never import locust or gevent, nor the subprocess driver (`generator`).

Times are ``time.monotonic()`` seconds, which on Linux every process of the machine shares: the
load's ``origin`` and its samples' ``started`` line up with the runner's clock."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from bascule.errors import PathElement, PlanError, Problem
from bascule.model.design import Design
from bascule.model.loading import parse_design
from bascule.model.scenario import Load

__all__ = [
    "CONFIG_ENV",
    "MASTER_INFO_ENV",
    "MASTER_WAIT_ENV",
    "SAMPLES_MESSAGE",
    "STARTUP_TIMEOUT",
    "STREAM_ENV",
    "TICK",
    "LoadConfig",
    "LoadSchedule",
    "check_load",
    "compute_schedule",
    "parse_load_config",
    "user_slot",
]

CONFIG_ENV: Final = "BASCULE_LOAD_CONFIG"
"""The `LoadConfig` as JSON, for every locust process (master, workers, remote workers)."""
STREAM_ENV: Final = "BASCULE_LOAD_STREAM"
"""The file a locust process appends its samples to; a worker without one forwards them to its
master (a worker on another machine)."""
MASTER_INFO_ENV: Final = "BASCULE_LOAD_MASTER_INFO"
"""Where a master writes ``{"port", "pid"}`` once it listens, so workers can be pointed at it."""
MASTER_WAIT_ENV: Final = "BASCULE_LOAD_MASTER_WAIT"
"""For a worker started with its master: the master's info file, from which the locustfile takes
the master's port before locust reads its options."""
SAMPLES_MESSAGE: Final = "bascule-samples"
"""The locust message a worker without a stream file sends its samples to the master in."""

TICK: Final = 1.0
"""How often locust asks a `LoadTestShape` for the number of users (fixed by locust)."""
STARTUP_TIMEOUT: Final = 20.0
"""Seconds for the locust processes to start and the workers to connect."""


# -- configuration handed to the locust processes ----------------------------------------------


@dataclass(frozen=True)
class LoadConfig:
    """Everything a locust process needs, self-contained so that a worker on another machine
    needs nothing but this JSON (the design travels as text)."""

    design_path: str
    design_text: str
    entries: dict[str, str]
    load: dict[str, Any]
    """The scenario's `Load`, as JSON."""
    duration: float
    """Seconds of load from ``origin``."""
    origin: float
    """``time.monotonic()`` at which load time 0 falls (the runner's machine)."""
    seed: int
    marker: str
    """Written into the text of every document the load writes."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def design(self) -> Design:
        return parse_design(self.design_text, self.design_path)

    def load_spec(self) -> Load:
        return Load.model_validate(self.load)


def parse_load_config(text: str) -> LoadConfig:
    """A `LoadConfig` from its JSON. Raises ``ValueError`` when it is not one."""
    try:
        data = json.loads(text)
        return LoadConfig(
            design_path=str(data["design_path"]),
            design_text=str(data["design_text"]),
            entries={str(k): str(v) for k, v in dict(data["entries"]).items()},
            load=dict(data["load"]),
            duration=float(data["duration"]),
            origin=float(data["origin"]),
            seed=int(data["seed"]),
            marker=str(data["marker"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"not a load configuration: {exc}") from exc


# -- users over time -----------------------------------------------------------------------------


def user_slot(design: Design) -> float:
    """Seconds an open-model user spends per request at most before it falls behind its rate: one
    entry point's connect and request timeouts, and at least a second."""
    timeouts = design.routing.timeouts
    return max(1.0, timeouts.connect + timeouts.request)


@dataclass(frozen=True)
class LoadSchedule:
    """How many locust users run at each instant of load time (seconds since the origin).

    A closed-model load (``users``) runs its users with ``think_time`` between requests. An
    open-model load (``rate``) is approximated with users that each make at most ``user_rate``
    requests a second (locust's ``constant_throughput``), as many as the rate needs: the rate is
    exact while requests take less than `user_slot`, quantised to ``user_rate`` between steps, and
    falls below its target when requests take longer (the users then run back to back).
    """

    levels: tuple[tuple[float, int], ...]
    """``(from, users)`` in time order; the first is from 0."""
    ramp_up: float
    """Seconds over which the first level is reached from 0 (until the first step)."""
    duration: float
    user_rate: float | None
    """Requests per second per user (open model), or None (closed model)."""
    think_time: float

    @property
    def peak_users(self) -> int:
        return max(users for _, users in self.levels)

    def level(self, t: float) -> int:
        """Users at load time ``t`` once any ramp is over."""
        users = self.levels[0][1]
        for start, count in self.levels:
            if start <= t:
                users = count
        return users

    def tick(self, t: float) -> tuple[int, float] | None:
        """What locust's shape answers at load time ``t``: ``(users, spawn rate)``, or None once
        the load is over. The first users are asked for one tick before the origin (they wait for
        it, so that the load starts on time); a ramp asks each tick for the users due at the next
        tick, at the ramp's own pace, so that locust (which blocks while it spawns) stays on time;
        a step is reached at once, at the first tick after its time."""
        if t >= self.duration:
            return None
        fast = float(max(self.peak_users, 1) * 10)
        if t < -TICK:
            return (0, fast)
        t = max(t, 0.0)
        users = self.level(t)
        before_steps = len(self.levels) == 1 or t < self.levels[1][0]
        if users > 0 and self.ramp_up > 0 and t < self.ramp_up and before_steps:
            due = math.ceil(users * min(1.0, (t + TICK) / self.ramp_up))
            return (due, users / self.ramp_up)
        return (users, fast)


def check_load(design: Design, load: Load) -> list[Problem]:
    """What in ``load`` does not fit ``design`` or cannot be run; pure."""
    problems: list[Problem] = []
    mix_path: tuple[PathElement, ...] = ("load", "mix", "data_classes")
    for name in load.mix.data_classes:
        if name not in design.data_classes:
            known = ", ".join(design.data_classes)
            problems.append(
                Problem(f"the design has no data class {name!r} (it has: {known})", (*mix_path, name))
            )
    if sum(load.mix.data_classes.values()) <= 0:
        problems.append(Problem("the mix needs a data class with a weight above 0", mix_path))
    unit = "users" if load.users is not None else "rate"
    for index, step in enumerate(load.steps):
        given = [name for name in ("users", "rate") if getattr(step, name) is not None]
        if given != [unit]:
            problems.append(
                Problem(f"a step of a {unit} load gives {unit} (and only that)", ("load", "steps", index))
            )
    return problems


def compute_schedule(design: Design, load: Load, duration: float) -> LoadSchedule:
    """The users over time of ``load`` for ``duration`` seconds. Raises `PlanError` when the load
    does not fit the design (`check_load`), ``ValueError`` when ``duration`` is not above 0."""
    if not duration > 0:
        raise ValueError(f"the load duration must be above 0 s, got {duration}")
    problems = check_load(design, load)
    if problems:
        raise PlanError(problems)
    steps = sorted(load.steps, key=lambda s: s.at)
    if load.users is not None:
        levels = [(0.0, load.users), *((s.at, s.users or 0) for s in steps)]
        return LoadSchedule(_merge(levels), load.ramp_up, duration, None, load.think_time)
    assert load.rate is not None
    rates = [(0.0, load.rate), *((s.at, s.rate or 0.0) for s in steps)]
    peak = max(rate for _, rate in rates)
    user_rate = peak / math.ceil(peak * user_slot(design))
    # The epsilon keeps a rate that is an exact multiple of user_rate from asking one user too many.
    levels = [(at, math.ceil(rate / user_rate - 1e-9)) for at, rate in rates]
    return LoadSchedule(_merge(levels), load.ramp_up, duration, user_rate, load.think_time)


def _merge(levels: Sequence[tuple[float, int]]) -> tuple[tuple[float, int], ...]:
    # A step at 0 replaces the base level instead of making a zero-length one.
    out: list[tuple[float, int]] = []
    for at, users in levels:
        if out and out[-1][0] == at:
            out[-1] = (at, users)
        else:
            out.append((at, users))
    return tuple(out)
