"""The steady-state noise model on generated journals: a machine that fails a request now and
then, before and after the fault alike, does not read as an outage (no outage, RTO 0, no false
detection), while a real outage on the same noisy machine is still found and timed; a clean steady
state keeps the strict rule (any failure below the objective counts)."""

from __future__ import annotations

import random

import pytest
from journal_factory import PRIMARY, STANDBY, JournalSpec, Served, build_records, one_phase_scenario
from journal_factory import reference_design as design

from bascule.metrics import compute_metrics
from bascule.metrics.noise import ALPHA, explained_failures
from bascule.model.scenario import Objectives
from bascule.reports.result import build_result
from bascule.score import score

NOISE = 0.04
"""The noisy machine fails 4 % of requests, whatever the faults do."""


def noisy(outage: tuple[float, float] | None, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)

    def world(t: float, source: str, data_class: str) -> Served:
        if outage is not None and outage[0] <= t < outage[1] and data_class == "internal":
            return Served(False)
        return Served(rng.random() >= NOISE, STANDBY if data_class == "confidential" else PRIMARY)

    return world


def metrics(world, *, length: float = 30.0, warm_up: float = 10.0):  # type: ignore[no-untyped-def]
    # A fault that does nothing to this world but mark the impact window: 0 → 12 s, settle 10 s.
    spec = JournalSpec(design(), one_phase_scenario(), world, length=length, warm_up=warm_up)
    return compute_metrics(build_records(spec), objectives=Objectives(availability=0.99))


def test_the_noise_is_measured_before_the_first_fault() -> None:
    m = metrics(noisy(None))
    noise = m.noise
    assert noise.windows >= 9 and noise.requests > 400
    assert noise.failure_ratio is not None and 0.02 < noise.failure_ratio < 0.07
    assert noise.success_ratio_stdev is not None and noise.success_ratio_stdev > 0
    assert noise.latency_p95_mean == pytest.approx(0.05, rel=0.02)
    assert noise.latency_p95_stdev is not None and noise.latency_p95_stdev < 0.005


@pytest.mark.parametrize("seed", range(5))
def test_a_noisy_but_healthy_machine_has_no_outage(seed: int) -> None:
    m = metrics(noisy(None, seed))
    # Without the noise model, about every window below 99 % would have started an outage.
    per_window = [r for r, n in zip(m.series.success_ratio, m.series.requests, strict=True) if n and r]
    assert sum(1 for r in per_window if r < 0.99) > 10
    assert m.outages == () and m.rto == 0.0 and m.recovered is True
    assert m.time_to_detect is None and "beyond the steady state's noise" in m.notes["time_to_detect"]
    # The availability figure itself stays what was measured: noise is not forgiven there.
    assert m.success_ratio is not None and m.success_ratio < 0.99


@pytest.mark.parametrize("seed", range(5))
def test_a_real_outage_on_the_noisy_machine_is_still_found(seed: int) -> None:
    m = metrics(noisy((2.0, 6.0), seed))
    assert len(m.outages) == 1, m.outages
    outage = m.outages[0]
    assert outage.start == pytest.approx(2.0, abs=0.1)
    assert outage.cause == 0.0 and outage.end is not None
    assert m.rto == pytest.approx(6.0, abs=0.5) and m.recovered is True
    assert m.time_to_detect == pytest.approx(2.0, abs=0.1)
    graded = score(m, Objectives(availability=0.99, rto=10.0), m.weights)
    recovery = next(d for d in graded.dimensions if d.name == "recovery")
    assert recovery.measured == m.rto and recovery.passed is True


def test_a_clean_steady_state_keeps_the_strict_rule() -> None:
    # No failure before the fault: a single failed request after it is below 99 % and counts.
    def world(t: float, source: str, data_class: str) -> Served:
        return Served(not (5.0 <= t < 5.05 and source == "load"), PRIMARY)

    m = metrics(world)
    assert m.noise.failed == 0 and m.noise.failure_ratio == 0.0
    assert len(m.outages) == 1 and m.time_to_detect == pytest.approx(5.0, abs=0.05)


def test_the_noise_goes_into_the_result_document() -> None:
    m = metrics(noisy(None))
    result = build_result(m, score(m, m.objectives, m.weights))
    assert result.figures.noise is not None
    assert result.figures.noise.failed == m.noise.failed and result.figures.noise.alpha == ALPHA


def test_explained_failures_is_the_binomial_quantile() -> None:
    assert explained_failures(50, 0.0) == 0
    assert explained_failures(50, 1.0) == 50
    # Binomial(50, 0.04): P(X > 7) ≈ 0.0008 ≤ 0.001 < P(X > 6) ≈ 0.0036.
    assert explained_failures(50, 0.04) == 7
    assert explained_failures(1000, 0.04) > explained_failures(100, 0.04)


def test_the_reports_show_the_noise_when_there_was_some() -> None:
    from bascule.reports.markdown import render_markdown

    noisy_result = build_result(m := metrics(noisy(None)), score(m, m.objectives, m.weights))
    assert "**Steady-state noise** | " in render_markdown(noisy_result)
    assert "before the first fault; outages and detection count only failures beyond it" in render_markdown(
        noisy_result
    )

    def clean(t: float, source: str, data_class: str) -> Served:
        return Served(True, PRIMARY)

    clean_result = build_result(c := metrics(clean), score(c, c.objectives, c.weights))
    assert "Steady" not in render_markdown(clean_result)
