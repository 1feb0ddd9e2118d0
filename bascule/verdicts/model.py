"""The ``bascule.repeat/1`` document (docs/repeats.md): the verdicts of N runs of one scenario ×
design, as typed, frozen records — what `judge_runs` returns, what ``repeat.json`` holds and what
``--baseline`` reads back. Pure.

``inf`` stands for "never recovered" in a run's RTO; JSON has no infinity, so it is written as the
string ``"inf"`` and read back as ``float("inf")``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "REPEAT_SCHEMA",
    "Better",
    "DesignFile",
    "DimensionVerdict",
    "FigureChange",
    "Interval",
    "RepeatRun",
    "RepeatSummary",
    "RunValue",
    "Verdict",
    "dump_repeat",
    "parse_repeat",
]

REPEAT_SCHEMA = "bascule.repeat/1"


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    """The interval straddles the objective: the runs cannot say which side the figure is on."""
    UNMEASURED = "unmeasured"


class Better(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Interval(_Record):
    low: float
    high: float
    confidence: float = 0.95
    """Nominal; with fewer than 8 runs the real coverage is lower (docs/repeats.md)."""
    of: str = "mean"
    """``mean`` of the measured values, or ``margin`` (measured − objective, signed so that above 0
    is better) when the objective differs between runs."""
    coverage_limit: float = 1.0
    """The most often an interval within the runs' range can hold the truth: 1 − 2^(1−n)."""


class RunValue(_Record):
    run: int
    """1-based index of the run."""
    measured: float | None = None
    """``inf``: never recovered (an RTO); ``None``: unmeasured."""
    objective: float | None = None
    passed: bool | None = None
    samples: int | None = None
    """For a ratio of counts — availability, correctness — the requests or graded answers it was
    counted over: one count of them (1/N) is the least spread a baseline comparison assumes."""


class DimensionVerdict(_Record):
    name: str
    unit: str = ""
    weight: float | None = None
    better: Better = Better.HIGHER
    objective: float | None = None
    """The runs' objective (the first run's when they differ)."""
    values: tuple[RunValue, ...] = ()
    measured_runs: int = 0
    passed_runs: int = 0
    failed_runs: int = 0
    mean: float | None = None
    stdev: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    interval: Interval | None = None
    verdict: Verdict = Verdict.UNMEASURED
    reason: str = ""
    flaky: bool = False
    """Its per-run verdicts (pass, fail, unmeasured) differ across the runs."""
    flips: str = ""
    """How often it flipped, in words (``failed 2 of 5 runs``); empty when not flaky."""
    counts: bool = True
    """Whether it decides the overall verdict (a weight above 0, or sovereignty, or the score under
    --min-score)."""


class FigureChange(_Record):
    """One dimension now against the baseline (docs/repeats.md, "Against a baseline"). The bounds
    are the intervals compared: below 8 runs, each at least as wide as Student's t interval of its
    side's mean; a side with no spread of its own is given the other side's."""

    name: str
    unit: str = ""
    better: Better = Better.HIGHER
    baseline_low: float
    baseline_high: float
    baseline_runs: int = 0
    now_low: float
    now_high: float
    regressed: bool = False
    """The intervals do not overlap and now is on the worse side."""
    improved: bool = False
    too_few_runs: bool = False
    """The figures differ but neither side has a spread to weigh the difference against (one run,
    or runs that all measured the same value): neither regressed nor improved."""
    spread_lent_to: str = ""
    """``baseline`` or ``now``: the side with no spread of its own, given the other side's."""
    reason: str = ""


class DesignFile(_Record):
    """The design file the runs ran, as it was: what a later `--baseline` diffs against."""

    path: str
    sha256: str
    text: str


class RepeatRun(_Record):
    run: int
    dir: str | None = None
    exit_code: int = 0
    reason: str = ""
    score: float | None = None
    grade: str | None = None
    counted: bool = True
    """False for a run that did not complete (exit 2, 3 or 4): it measured nothing to compare."""


class RepeatSummary(_Record):
    schema_: str = Field(REPEAT_SCHEMA, alias="schema")
    scenario: str | None = None
    design: str | None = None
    repeats: int = 0
    """Runs asked for."""
    runs: tuple[RepeatRun, ...] = ()
    dimensions: tuple[DimensionVerdict, ...] = ()
    verdict: Verdict = Verdict.UNMEASURED
    flaky: bool = False
    exit_code: int = 0
    reason: str = ""
    notes: tuple[str, ...] = ()
    seed: int = 0
    baseline: tuple[FigureChange, ...] | None = None
    """Set with --baseline: every dimension measured both now and then."""
    baseline_source: str | None = None
    design_file: DesignFile | None = None
    """The design file's path, hash and text (None: not recorded, e.g. from Python without it)."""
    design_changes: tuple[str, ...] | None = None
    """With --baseline: the design's fields that differ from the baseline's, one line each
    (``routing.circuit_breaker.open_for: 3s → 30s``); ``()`` for the same file; None when either
    side recorded no design file."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    def dimension(self, name: str) -> DimensionVerdict | None:
        return next((d for d in self.dimensions if d.name == name), None)

    @property
    def regressions(self) -> tuple[FigureChange, ...]:
        return tuple(c for c in self.baseline or () if c.regressed)

    @property
    def too_few_runs(self) -> tuple[FigureChange, ...]:
        return tuple(c for c in self.baseline or () if c.too_few_runs)

    @property
    def flaky_dimensions(self) -> tuple[DimensionVerdict, ...]:
        return tuple(d for d in self.dimensions if d.flaky)


def _encode(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def dump_repeat(summary: RepeatSummary) -> str:
    """``repeat.json``'s text (two-space indent, a final newline)."""
    document = _encode(summary.model_dump(by_alias=True, mode="python"))
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def parse_repeat(document: Mapping[str, Any] | str | bytes) -> RepeatSummary:
    """The `RepeatSummary` of a ``bascule.repeat/1`` document; `ValueError` otherwise."""
    data: object = json.loads(document) if isinstance(document, str | bytes) else document
    schema = data.get("schema") if isinstance(data, Mapping) else None
    if schema != REPEAT_SCHEMA:
        raise ValueError(f"not a {REPEAT_SCHEMA} document (schema {schema!r})")
    try:
        return RepeatSummary.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"not a valid {REPEAT_SCHEMA} document: {exc}") from exc
