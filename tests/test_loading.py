"""Loading designs and scenarios: precise, complete error reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from bascule.errors import ScenarioError
from bascule.faults import Dns, DnsAnswer, Flap, Refuse
from bascule.model.catalog import Sovereignty
from bascule.model.loading import parse_design, parse_scenario, read_any, read_design, read_scenario
from bascule.model.probes import HttpProbe
from bascule.model.setup import fill_setup

THREE_MISTAKES = (Path(__file__).parent / "samples" / "three-mistakes.yaml").read_text()


def _problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "s.yaml")
    return [(p.line, p.message) for p in info.value.problems]


def test_three_mistakes_three_errors_with_lines() -> None:
    problems = _problems(THREE_MISTAKES)
    assert len(problems) == 3
    lines = [line for line, _ in problems]
    assert lines == [7, 13, 15]
    assert "invalid duration '10x'" in problems[0][1]
    assert "unknown fault kind 'dsn'" in problems[1][1] and "did you mean 'dns'" in problems[1][1]
    assert "unknown key 'colour'" in problems[2][1]


def test_error_names_file_line_column_and_path() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(THREE_MISTAKES, "s.yaml")
    first = str(info.value.problems[0])
    assert first.startswith("s.yaml:7:12: phases[0].until: ")


def test_unknown_key_suggests_field_of_the_right_model() -> None:
    text = THREE_MISTAKES.replace("answer: nodata", "answr: nodata")
    messages = [m for _, m in _problems(text)]
    assert any("unknown key 'answr' (did you mean 'answer'?)" in m for m in messages)


def test_a_misspelt_value_suggests_the_value_meant() -> None:
    # trial 11: `answer: nodta` got the list of values without "did you mean".
    text = THREE_MISTAKES.replace("answer: nodata", "answer: nodta")
    messages = [m for _, m in _problems(text)]
    assert any("(got 'nodta') (did you mean 'nodata'?)" in m for m in messages), messages


def test_missing_field_and_wrong_type() -> None:
    text = """\
id: x
title: t
phases:
  - name: p
    at: 0s
    fault: {kind: latency}
    target: {region: aws/us-east-1}
"""
    messages = [m for _, m in _problems(text)]
    assert any("missing required field 'fixed'" in m for m in messages)
    # Checks across fields run once the fields themselves are valid.
    messages = [m for _, m in _problems(text.replace("{kind: latency}", "{kind: latency, fixed: 1s}"))]
    assert messages == ["give exactly one of 'until' and 'for'"]


def test_yaml_syntax_error_is_located() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("id: x\nphases: [\n", "bad.yaml")
    assert info.value.problems[0].line is not None
    assert "invalid YAML" in info.value.problems[0].message


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario("id: x\nid: y\ntitle: t\nphases: []\n", "dup.yaml")
    assert any("duplicate key 'id'" in p.message and p.line == 2 for p in info.value.problems)


def test_unsafe_yaml_tags_are_refused() -> None:
    with pytest.raises(ScenarioError):
        parse_scenario("id: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_examples_load(aws_scenario_path: Path, aps_design_path: Path) -> None:
    design = read_design(aps_design_path)
    scenario = read_scenario(aws_scenario_path)
    assert design.region("scaleway/fr-par").sovereignty is Sovereignty.SOVEREIGN
    assert design.region("aws/us-east-1").sovereignty is Sovereignty.FOREIGN
    assert scenario.real_duration == 14 * 3600 + 32 * 60
    first = scenario.phases[0].fault
    assert isinstance(first, Dns) and first.answer is DnsAnswer.NODATA and first.new_connections_only
    flap = next(p.fault for p in scenario.phases if isinstance(p.fault, Flap))
    assert isinstance(flap.fault, Refuse)
    assert scenario.source == ("https://aws.amazon.com/message/101925/",)
    assert isinstance(read_any(aps_design_path), type(design))


DESIGN = """\
id: d
regions:
  - id: aws/us-east-1
    depends_on: [sts]
  - id: moon/base-1
    jurisdiction: MOON
    sovereignty: sovereign
  - id: scaleway/fr-par
    cost: {replica_hour: 0.1}
dependencies:
  sts: {kind: identity, region: aws/us-east-1}
components:
  gateway: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}
"""


def test_catalog_regions_inherit_and_custom_regions_are_complete() -> None:
    design = parse_design(DESIGN)
    assert design.region("moon/base-1").jurisdiction == "MOON"
    assert design.region("scaleway/fr-par").provider == "scaleway"
    assert design.routing_order == ("aws/us-east-1", "moon/base-1", "scaleway/fr-par")


def test_custom_region_without_level_is_an_error() -> None:
    text = DESIGN.replace("    sovereignty: sovereign\n", "")
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "d.yaml")
    (problem,) = info.value.problems
    assert problem.line == 5 and "not in the built-in catalog" in problem.message


def test_design_cross_references_are_located() -> None:
    text = DESIGN.replace("depends_on: [sts]", "depends_on: [stss]").replace(
        "gateway: {replicas: {aws/us-east-1: 1, scaleway/fr-par: 1}}",
        "gateway: {replicas: {aws/us-east-1: 1, scaleway/fr-pa: 1}}",
    )
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "d.yaml")
    found = {(p.line, p.message.split(";")[0]) for p in info.value.problems}
    assert (4, "unknown dependency 'stss' (did you mean 'sts'?)") in found
    assert any(line == 13 and "unknown region 'scaleway/fr-pa'" in m for line, m in found)


def test_a_region_that_scales_up_needs_a_gateway_with_slots_and_only_gateways_take_them() -> None:
    text = """id: pl
regions: [{id: aws/us-east-1}, {id: scaleway/fr-par}]
components:
  gateway: {replicas: {aws/us-east-1: 2, scaleway/fr-par: {replicas: 1, max_replicas: 3}}}
  llm: {replicas: {aws/us-east-1: {replicas: 1, max_inflight: 4}}}
"""
    with pytest.raises(ScenarioError) as info:
        parse_design(text, "d.yaml")
    found = {(p.line, p.message) for p in info.value.problems}
    assert (5, "only gateway components take max_inflight") in found
    assert any(
        line == 4 and "scaleway/fr-par scales up" in message and "max_inflight" in message
        for line, message in found
    ), found
    fixed = text.replace("max_replicas: 3}", "max_replicas: 3, max_inflight: 8}").replace(
        "{replicas: 1, max_inflight: 4}", "1"
    )
    assert parse_design(fixed, "d.yaml").growing_regions() == ["scaleway/fr-par"]


SETUP_SCENARIO = """id: s
title: t
setup:
  - {name: make, url: /things, save: {thing: id}}
  - {name: again, url: "/things/{setup.later}", save: {thing: id}}
steady_state:
  probes:
    - {kind: http, url: "/things/{setup.thing}"}
    - {kind: http, url: "/x/{setup.nope}"}
phases:
  - {name: p, at: 0s, for: 1s, fault: {kind: latency, fixed: 1ms}, target: {component: gateway}}
"""


def test_setup_placeholders_are_checked_with_their_lines() -> None:
    problems = _problems(SETUP_SCENARIO)
    assert problems == [
        (5, "{setup.later} is not saved by an earlier setup step"),
        (5, "{setup.thing} is saved twice"),
        (9, "{setup.nope} is not saved by any setup step (saved: thing)"),
    ]


def test_fill_setup_puts_values_in_urls_and_env_references_in_headers() -> None:
    text = """id: s
title: t
setup:
  - {name: make, url: /things, save: {thing: id, token: token}}
steady_state:
  probes:
    - {kind: http, url: "/things/{setup.thing}"}
    - {kind: http, url: /private, headers: {authorization: "Bearer {setup.token}"}}
phases:
  - {name: p, at: 0s, for: 1s, fault: {kind: latency, fixed: 1ms}, target: {component: gateway}}
"""
    scenario = parse_scenario(text, "s.yaml")
    filled = fill_setup(scenario, {"thing": "t-1", "token": "secret"})
    assert filled.steady_state is not None
    first, second = filled.steady_state.probes
    assert isinstance(first, HttpProbe) and isinstance(second, HttpProbe)
    assert first.url == "/things/t-1"
    assert second.headers == {"authorization": "Bearer ${BASCULE_SETUP_TOKEN}"}
    assert filled.source_map is scenario.source_map


def test_a_misspelt_phases_is_still_read_as_a_scenario_and_its_errors_reported(tmp_path: Path) -> None:
    from bascule.model.loading import detect_kind, read_any

    assert detect_kind({"id": "x", "phses": [], "design": "d.yaml"}) == "scenario"
    assert detect_kind({"id": "x", "regoins": []}) == "design"
    assert detect_kind({"id": "x"}) is None
    typo = tmp_path / "typo.yaml"
    typo.write_text("id: x\ndesign: d.yaml\nphses:\n  - {name: a, at: 0s, for: 1s, fault: {kind: crash}}\n")
    with pytest.raises(ScenarioError) as caught:
        read_any(typo)
    text = str(caught.value)
    assert "did you mean 'phases'?" in text and "not a bascule file" not in text
