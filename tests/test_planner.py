"""The planner: properties of the timeline (hypothesis) and the AWS 2025-10-20 example."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bascule.errors import PlanError
from bascule.model.design import Design
from bascule.model.loading import parse_scenario, read_design, read_scenario
from bascule.model.scenario import Scenario
from bascule.plan import ActionOp, Plan, plan

ROOT = Path(__file__).resolve().parent.parent
DESIGN = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")

FAULTS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"kind": "region-outage"}, {"region": "aws/us-east-1"}),
    ({"kind": "dns", "answer": "nodata"}, {"component": "store", "region": "aws/us-east-1"}),
    ({"kind": "latency", "fixed": "200ms"}, {"component": "llm"}),
    ({"kind": "partition"}, {"link": ["aws/us-east-1", "scaleway/fr-par"]}),
    ({"kind": "control-plane"}, {"region": "scaleway/fr-par"}),
    ({"kind": "identity"}, {"dependency": "aws-sts"}),
    ({"kind": "crash"}, {"component": "retriever", "region": "aws/us-east-1"}),
    (
        {"kind": "flap", "period": "10m", "duty": 0.5, "fault": {"kind": "http-error", "ratio": 0.5}},
        {"component": "gateway", "region": "aws/us-east-1"},
    ),
]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    real = draw(st.floats(min_value=60, max_value=86400 * 2))
    compress_to = draw(st.floats(min_value=5, max_value=600))
    min_phase = draw(st.floats(min_value=0, max_value=min(5.0, compress_to)))
    phases = []
    for i in range(draw(st.integers(min_value=1, max_value=8))):
        at = draw(st.floats(min_value=0, max_value=real * 0.99))
        end = draw(st.floats(min_value=at + real * 1e-4, max_value=real))
        fault, target = draw(st.sampled_from(FAULTS))
        phases.append({"name": f"p{i}", "at": at, "until": end, "fault": fault, "target": target})
    data = {
        "id": "generated",
        "title": "generated",
        "duration": real,
        "replay": {"compress_to": compress_to, "min_phase": min_phase},
        "phases": phases,
    }
    return Scenario.model_validate(data)


def _plan(scenario: Scenario, design: Design = DESIGN) -> Plan:
    return plan(design, scenario)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_order_preserved_under_compression(scenario: Scenario) -> None:
    built = _plan(scenario)
    by_real = sorted(built.phases, key=lambda p: p.real_start)
    starts = [p.run_start for p in by_real]
    assert starts == sorted(starts)
    for a, b in itertools.pairwise(by_real):
        if a.real_start < b.real_start:
            assert a.run_start <= b.run_start


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_every_apply_has_a_revert_after_it(scenario: Scenario) -> None:
    built = _plan(scenario)
    seen: dict[str, list[tuple[int, float, ActionOp]]] = defaultdict(list)
    for position, action in enumerate(built.actions):
        seen[action.key].append((position, action.offset, action.op))
    assert seen, "a plan with phases has actions"
    for key, events in seen.items():
        assert [op for _, _, op in events] == [ActionOp.APPLY, ActionOp.REVERT], key
        (apply_pos, apply_at, _), (revert_pos, revert_at, _) = events
        assert revert_pos > apply_pos and revert_at > apply_at
    offsets = [a.offset for a in built.actions]
    assert offsets == sorted(offsets)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_min_phase_respected(scenario: Scenario) -> None:
    built = _plan(scenario)
    for phase in built.phases:
        assert phase.run_end - phase.run_start >= scenario.replay.min_phase - 1e-9


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_run_length_is_compress_to_within_min_phase(scenario: Scenario) -> None:
    built = _plan(scenario)
    compress_to = scenario.replay.compress_to
    assert compress_to is not None
    assert compress_to - 1e-6 <= built.run_length <= compress_to + scenario.replay.min_phase + 1e-6
    if not any(p.stretched for p in built.phases):
        assert built.run_length == pytest.approx(compress_to)
    assert all(a.offset <= built.run_length + 1e-6 for a in built.actions)


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_flap_windows_stay_inside_their_phase(scenario: Scenario) -> None:
    built = _plan(scenario)
    for action in built.actions:
        phase = built.phases[action.phase]
        assert phase.run_start - 1e-9 <= action.offset <= phase.run_end + 1e-9


def test_aws_replay_timeline(aws_scenario_path: Path, aps_design_path: Path) -> None:
    built = plan(read_design(aps_design_path), read_scenario(aws_scenario_path))
    assert built.run_length == pytest.approx(60.0)
    assert len(built.phases) == 6
    assert all(p.run_end - p.run_start >= 3.0 for p in built.phases)
    dns = built.phases[0]
    assert dns.run_start == 0 and dns.run_end == pytest.approx((2 * 3600 + 37 * 60) * 60 / 52320)
    assert dns.touch.hosts == ("store.aws-us-east-1.bascule.internal",)
    second_sts = built.phases[5]
    assert second_sts.run_start == pytest.approx((7 * 3600 + 43 * 60) * 60 / 52320)
    flap_cycles = {a.cycle for a in built.actions if a.phase == 4}
    assert len(flap_cycles) > 3


def test_min_phase_stretches_short_phases() -> None:
    scenario = parse_scenario(
        """\
id: short
title: a 3-minute event in a 14-hour incident
duration: 14h
replay: {compress_to: 60s, min_phase: 4s}
phases:
  - {name: blip, at: 1h, for: 3m, fault: {kind: refuse}, target: {component: llm}}
  - {name: last, at: 13h59m, until: 14h, fault: {kind: refuse}, target: {component: store}}
""",
        "short.yaml",
    )
    built = plan(DESIGN, scenario)
    blip, last = built.phases
    assert blip.stretched and blip.run_end - blip.run_start == pytest.approx(4.0)
    assert last.stretched and built.run_length == pytest.approx(last.run_end)
    assert 60 < built.run_length <= 64


def test_scenario_naming_what_the_design_lacks_is_located() -> None:
    scenario = parse_scenario(
        """\
id: typos
title: typos
replay: {compress_to: 30s}
phases:
  - name: a
    at: 0s
    for: 1m
    fault: {kind: crash}
    target: {component: retreiver, region: aws/us-east-1}
  - name: b
    at: 0s
    for: 1m
    fault: {kind: partition}
    target: {link: [aws/us-east-1, scaleway/fr-pa]}
  - name: c
    at: 0s
    for: 1m
    fault: {kind: partition}
    target: {region: aws/us-east-1}
""",
        "typos.yaml",
    )
    with pytest.raises(PlanError) as info:
        plan(DESIGN, scenario)
    problems = {(p.line, p.message.split(";")[0]) for p in info.value.problems}
    assert (9, "unknown component 'retreiver' (did you mean 'retriever'?)") in problems
    assert any(line == 14 and "unknown region 'scaleway/fr-pa'" in m for line, m in problems)
    assert any(line == 19 and "'partition' cannot act on a region target" in m for line, m in problems)


def test_a_fault_that_strikes_nothing_makes_an_idle_phase() -> None:
    scenario = parse_scenario(
        """\
id: idle
title: faults as given that strike nothing, and one that does
phases:
  - {name: none fail, at: 0s, for: 5s, fault: {kind: http-error, ratio: 0}, target: {component: llm}}
  - {name: no delay, at: 5s, for: 5s, fault: {kind: latency, fixed: 0s}, target: {component: llm}}
  - name: flapping nothing
    at: 10s
    for: 5s
    fault: {kind: flap, period: 2s, fault: {kind: throttle, ratio: 0}}
    target: {component: llm}
  - {name: some fail, at: 15s, for: 5s, fault: {kind: http-error, ratio: 0.01}, target: {component: llm}}
  - {name: counted, at: 20s, for: 5s, fault: {kind: http-error, every: 1000}, target: {component: llm}}
""",
        "idle.yaml",
    )
    built = plan(DESIGN, scenario)
    idle = [f for f in built.findings if f.kind.value == "idle-phase"]
    assert [f.phase for f in idle] == [0, 1, 2]
    assert "strikes nothing: a ratio of 0" in idle[0].message
    assert "strikes nothing: a delay of 0 s" in idle[1].message


def test_catalog_region_outside_the_design_makes_an_inert_phase() -> None:
    scenario = parse_scenario(
        """\
id: elsewhere
title: an outage in a region this design does not use
replay: {compress_to: 30s}
phases:
  - {name: gcp down, at: 0s, for: 1h, fault: {kind: region-outage}, target: {region: gcp/us-central1}}
""",
        "elsewhere.yaml",
    )
    built = plan(DESIGN, scenario)
    assert built.phases[0].touch.empty and built.actions == ()
    assert any(f.kind.value == "inert-phase" for f in built.findings)
