"""The scenario file: what happens to a design — an incident's phases on its real timeline, how
to compress it into a run, the load, the steady-state hypothesis, the objectives, the score weights
and the guardrails that abort a run.

Phase times (``at``, ``until``, ``for``) are incident time, measured from first customer impact;
the planner compresses them. Everything else (load shape, settle, guardrail windows, objectives) is
run time, in real seconds: time compression never applies to the system's reactions.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from bascule.errors import PathElement
from bascule.faults import AnyFault, Flap
from bascule.model.durations import MAX_DURATION, Duration, Interval, format_duration
from bascule.model.headers import Headers
from bascule.model.probes import AnyProbe
from bascule.model.selector import Selector
from bascule.model.setup import SetupStep, setup_problems
from bascule.model.source import SourceMap

__all__ = [
    "DIMENSIONS",
    "Guardrail",
    "Load",
    "LoadRequests",
    "LoadStep",
    "Objectives",
    "Phase",
    "Replay",
    "RequestMix",
    "Scenario",
    "SteadyState",
    "Weights",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


MAX_FLAP_CYCLES = 10_000
"""On/off cycles of one flapping phase in run time: each is two actions of the plan."""


class Replay(_Spec):
    """How incident time becomes run time: ``compress_to`` a run length, or a fixed ``time_scale``
    (run seconds per incident second). Neither means real time. Phases never run shorter than
    ``min_phase``, so that a 3-minute event in a 14-hour incident stays observable."""

    compress_to: Duration | None = None
    time_scale: float | None = None
    min_phase: Duration = 3.0

    @field_validator("time_scale")
    @classmethod
    def _sane_scale(cls, value: float | None) -> float | None:
        if value is not None and not 1e-6 <= value <= 100:
            raise ValueError(
                "time_scale is run seconds per incident second, between 0.000001 (30 days in under "
                "3 s) and 100 (a run a hundred times slower than the incident)"
            )
        return value

    def scale(self, real_duration: float) -> float:
        """Run seconds per incident second for an incident of ``real_duration`` seconds."""
        if self.compress_to is not None:
            return self.compress_to / real_duration if real_duration > 0 else 1.0
        return self.time_scale if self.time_scale is not None else 1.0

    @model_validator(mode="after")
    def _one_way(self) -> Replay:
        if self.compress_to is not None and self.time_scale is not None:
            raise ValueError("give either compress_to or time_scale, not both")
        if self.compress_to is not None and self.compress_to <= 0:
            raise ValueError("compress_to must be above 0")
        if self.compress_to is not None and self.min_phase > self.compress_to:
            raise ValueError("min_phase cannot exceed compress_to")
        return self


class Phase(_Spec):
    """One fault over a stretch of incident time, on a target."""

    name: str
    at: Duration
    until: Duration | None = None
    for_: Duration | None = Field(default=None, alias="for")
    fault: AnyFault
    target: Selector
    note: str = ""
    """Why the phase is modelled this way, and what in the source supports it."""

    @model_validator(mode="after")
    def _one_end(self) -> Phase:
        if (self.until is None) == (self.for_ is None):
            raise ValueError("give exactly one of 'until' and 'for'")
        if self.until is not None and self.until <= self.at:
            raise ValueError(f"'until' ({self.until:g}s) must come after 'at' ({self.at:g}s)")
        if self.for_ is not None and self.for_ <= 0:
            raise ValueError("'for' must be above 0")
        return self

    @property
    def end(self) -> float:
        if self.until is not None:
            return self.until
        assert self.for_ is not None
        return self.at + self.for_


class LoadStep(_Spec):
    at: Duration
    """Run time from the start of the plan."""
    users: Annotated[int, Field(ge=0, le=10_000)] | None = None
    rate: Annotated[float, Field(ge=0, le=100_000)] | None = None


class RequestMix(_Spec):
    data_classes: dict[str, Annotated[float, Field(ge=0)]] = {"internal": 0.7, "confidential": 0.3}
    """Relative weights of the data classes of asks."""
    writes: Annotated[float, Field(ge=0, le=1)] = 0.05
    """Share of requests that are document writes."""


class LoadRequests(_Spec):
    """What each load request sends, for a service shaped differently from the reference gateway.
    Templates have ``{question}`` and ``{data_class}`` (asks), ``{id}``, ``{text}`` and
    ``{data_class}`` (writes) replaced in every string; paths are taken at every entry point."""

    ask_path: str = "/v1/ask"
    ask: dict[str, object] = {"question": "{question}", "data_class": "{data_class}"}
    questions: tuple[str, ...] = ()
    """Questions asks draw from; by default the golden set's questions of the request's class
    (graded). Questions of your own are not graded: success is a 2xx."""
    write_path: str = "/v1/documents"
    write: dict[str, object] | None = None
    """Default: the reference store's document (``id``, ``title``, ``text``, ``data_class``, tags)."""
    headers: Headers = {}
    """Request headers of your own (an API key) on every load request: values may read
    ``${ENV_VAR}``, resolved in the load generator's processes, never written to a file."""

    @field_validator("ask_path", "write_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path at the entry points, starting with '/'")
        return value


class Load(_Spec):
    """Traffic during the run: closed-model ``users`` or an open-model arrival ``rate`` (req/s)."""

    users: Annotated[int, Field(ge=1, le=10_000)] | None = None
    rate: Annotated[float, Field(gt=0, le=100_000)] | None = None
    ramp_up: Duration = 0.0
    steps: tuple[LoadStep, ...] = ()
    mix: RequestMix = RequestMix()
    think_time: Duration = 0.0
    requests: LoadRequests = LoadRequests()

    @model_validator(mode="after")
    def _users_or_rate(self) -> Load:
        if (self.users is None) == (self.rate is None):
            raise ValueError("give exactly one of 'users' and 'rate'")
        return self


DIMENSIONS = ("availability", "recovery", "latency", "correctness", "durability", "sovereignty")


class Objectives(_Spec):
    """What the service must achieve during the run (DESIGN.md's score table)."""

    availability: Annotated[float, Field(gt=0, le=1)] = 0.99
    rto: Duration = 30.0
    latency_p95: Duration = 2.0
    correctness: Annotated[float, Field(ge=0, le=1)] | None = None
    """Golden-set accuracy to keep; ``None`` means the run's own pre-fault baseline."""
    rpo: Duration = 0.0
    failback: Duration | None = None
    sovereignty_violations: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class Weights(_Spec):
    availability: Annotated[float, Field(ge=0)] = 25
    recovery: Annotated[float, Field(ge=0)] = 20
    latency: Annotated[float, Field(ge=0)] = 15
    correctness: Annotated[float, Field(ge=0)] = 15
    durability: Annotated[float, Field(ge=0)] = 10
    sovereignty: Annotated[float, Field(ge=0)] = 15

    @model_validator(mode="after")
    def _some_weight(self) -> Weights:
        if sum(getattr(self, d) for d in DIMENSIONS) <= 0:
            raise ValueError("at least one weight must be above 0")
        return self


class GuardrailKind(StrEnum):
    SUCCESS_RATIO = "success-ratio"
    LATENCY_P95 = "latency-p95"
    ERROR_BUDGET = "error-budget"
    SOVEREIGNTY = "sovereignty-violations"
    PROBE = "probe"
    ALERT = "alert"


class _Guardrail(_Spec):
    name: str | None = None


class SuccessRatioGuardrail(_Guardrail):
    """Abort when the success ratio stays below ``below`` for ``for`` seconds of run time."""

    kind: Literal["success-ratio"] = "success-ratio"
    below: Annotated[float, Field(gt=0, le=1)]
    for_: Duration = Field(default=5.0, alias="for")


class LatencyGuardrail(_Guardrail):
    """Abort when p95 latency stays above ``above`` for ``for`` seconds of run time."""

    kind: Literal["latency-p95"] = "latency-p95"
    above: Duration
    for_: Duration = Field(default=5.0, alias="for")


class ErrorBudgetGuardrail(_Guardrail):
    """Abort when more than ``burnt`` of the run's error budget (from the availability objective) is spent."""

    kind: Literal["error-budget"] = "error-budget"
    burnt: Annotated[float, Field(gt=0, le=1000)] = 1.0


class SovereigntyGuardrail(_Guardrail):
    """Abort as soon as more than ``above`` sovereignty violations are seen."""

    kind: Literal["sovereignty-violations"] = "sovereignty-violations"
    above: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class ProbeGuardrail(_Guardrail):
    """Abort when the steady-state probe named ``probe`` (its ``name:``) has failed without a
    success for ``for`` seconds — a stop condition on any probe kind: an SLO query to Prometheus,
    a health endpoint, a command. ``for: 0s`` aborts on its first failure."""

    kind: Literal["probe"] = "probe"
    probe: str
    for_: Duration = Field(default=0.0, alias="for")


class AlertGuardrail(_Guardrail):
    """Abort when one of the named alerts fires (for ``for`` seconds) in the team's Prometheus
    (``/api/v1/alerts``: state ``firing``; ``pending`` is not yet) or Alertmanager
    (``/api/v2/alerts``: active, neither silenced nor inhibited) — the stop condition a team
    already pages on. ``labels`` narrows them (``{severity: page}``); no ``alerts`` with some
    ``labels``: any alert carrying them. An alert source that cannot be read stops the run too
    (``unreadable: abort``), since a stop condition nobody can see is none; ``ignore`` only
    journals it."""

    kind: Literal["alert"] = "alert"
    url: Annotated[str, Field(pattern=r"^https?://")]
    api: Literal["prometheus", "alertmanager"] = "prometheus"
    alerts: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()
    labels: dict[str, str] = {}
    for_: Duration = Field(default=0.0, alias="for")
    rate: Annotated[float, Field(gt=0, le=20)] = 1.0
    """Reads of the alert source per second."""
    timeout: Annotated[float, Field(gt=0, le=30)] = 2.0
    unreadable: Literal["abort", "ignore"] = "abort"
    headers: Headers = {}
    """Request headers of your own (a bearer token): values may read ``${ENV_VAR}`` at run time."""

    @model_validator(mode="after")
    def _something_named(self) -> AlertGuardrail:
        if not self.alerts and not self.labels:
            raise ValueError("name the `alerts` to stop on, or the `labels` they carry (or both)")
        return self


if TYPE_CHECKING:
    Guardrail = _Guardrail
else:
    Guardrail = Annotated[
        Union[  # noqa: UP007
            SuccessRatioGuardrail,
            LatencyGuardrail,
            ErrorBudgetGuardrail,
            SovereigntyGuardrail,
            ProbeGuardrail,
            AlertGuardrail,
        ],
        Field(discriminator="kind"),
    ]


class SteadyState(_Spec):
    """The hypothesis: these probes pass at ``success_ratio`` or better over ``over`` seconds, before
    any fault and again after rollback."""

    probes: tuple[AnyProbe, ...] = Field(min_length=1)
    success_ratio: Annotated[float, Field(gt=0, le=1)] = 1.0
    over: Interval = 3.0
    wait_for: Duration = 0.0
    """Before any fault, first wait up to this long until every probe has succeeded once (a service
    still warming up), then judge over ``over``; if it runs out, the hypothesis does not hold.
    0: judge at once."""


class Scenario(_Spec):
    """An incident replay or a fault drill."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", max_length=80)]
    title: str
    description: str = ""
    source: tuple[str, ...] = ()
    """Post-mortem URLs for incident replays."""
    design: str | None = None
    """Default design file, relative to this scenario file."""
    started_at: datetime | None = None
    duration: Duration | None = None
    """Real duration of the incident; defaults to the end of the last phase."""
    replay: Replay = Replay()
    warm_up: Duration = 5.0
    settle: Duration = 10.0
    """Run time kept probing after the last revert, before the hypothesis is checked again."""
    setup: tuple[SetupStep, ...] = ()
    """Requests made once the stack is ready, before probes and load; their answers fill
    ``{setup.NAME}`` in the probes and load (bascule/model/setup.py)."""
    steady_state: SteadyState | None = None
    phases: tuple[Phase, ...] = Field(min_length=1)
    load: Load | None = None
    objectives: Objectives = Objectives()
    weights: Weights = Weights()
    guardrails: tuple[Guardrail, ...] = ()

    _source: SourceMap | None = PrivateAttr(default=None)

    @field_validator("source")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"source entries are URLs, got {url!r}")
        return value

    @model_validator(mode="after")
    def _duration_covers_phases(self) -> Scenario:
        if self.duration is not None:
            last = max(p.end for p in self.phases)
            if last > self.duration + 1e-9:
                raise ValueError(
                    f"a phase ends at {last:g}s of incident time, after the incident's duration "
                    f"({self.duration:g}s)"
                )
        return self

    def check(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """What the fields allow one by one but not together, as ``(path, message)``: a run
        longer than 30 days, a phase flapping more than ``MAX_FLAP_CYCLES`` times. Pure."""
        problems: list[tuple[tuple[PathElement, ...], str]] = []
        scale = self.replay.scale(self.real_duration)
        if self.real_duration * scale > MAX_DURATION:
            run = format_duration(self.real_duration * scale)
            problems.append((("replay",), f"the run would last {run}, more than 30 days"))
        for index, phase in enumerate(self.phases):
            if not isinstance(phase.fault, Flap):
                continue
            length = max((phase.end - phase.at) * scale, self.replay.min_phase)
            period = max(phase.fault.period * scale, phase.fault.min_period)
            if period <= 0 or length / period > MAX_FLAP_CYCLES:
                problems.append(
                    (
                        ("phases", index, "fault", "period"),
                        f"the phase would flap more than {MAX_FLAP_CYCLES} times in run time: "
                        "give a longer period or min_period",
                    )
                )
        problems += setup_problems(self.setup, {"steady_state": self.steady_state, "load": self.load})
        named = {p.name for p in self.steady_state.probes if p.name} if self.steady_state else set()
        for index, guardrail in enumerate(self.guardrails):
            if isinstance(guardrail, ProbeGuardrail) and guardrail.probe not in named:
                known = ", ".join(sorted(named)) or "none has a name"
                problems.append(
                    (
                        ("guardrails", index, "probe"),
                        f"no steady-state probe is named {guardrail.probe!r} (give the probe "
                        f"`name: {guardrail.probe}`; named probes: {known})",
                    )
                )
        return problems

    @property
    def real_duration(self) -> float:
        return self.duration if self.duration is not None else max(p.end for p in self.phases)

    def attach_source(self, source: SourceMap) -> Scenario:
        self._source = source
        return self

    @property
    def source_map(self) -> SourceMap | None:
        return self._source
