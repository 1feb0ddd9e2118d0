"""``{NAME@REGION.url}``: one own service calling the same component in two regions, each through a
fault route of its own — validated with file and line, laid out as routes, and run for real."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from bascule.errors import ScenarioError
from bascule.model.loading import parse_design
from bascule.model.topology import LinkPurpose
from bascule.stack.layout import layout, own_command

PAR = "scaleway/fr-par"
US = "aws/us-east-1"
HERE = Path(__file__).resolve().parent / "regional_callees"


def design_text(env: str, *, calls: str = "[llm]", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        id: regional
        regions: [{{id: {PAR}}}, {{id: {US}}}]
        routing: {{order: [{PAR}, {US}]}}
        components:
          proxy:
            entry: true
            calls: {calls}
            command:
              argv: ["{{python}}", proxy.py, --port, "{{port}}"]
              env: {env}
            replicas: {{{PAR}: 1}}
          llm:
            command: {{argv: ["{{python}}", upstream.py, --port, "{{port}}", --region, "{{region}}"]}}
            replicas: {{{PAR}: 1, {US}: 1}}
        {extra}"""
    )


TWO = '{PRIMARY: "{llm@aws/us-east-1.url}", FALLBACK: "{llm@scaleway/fr-par.url}", DEFAULT: "{llm.port}"}'


def test_each_regional_placeholder_is_the_route_to_that_region() -> None:
    design = parse_design(design_text(TWO), "d.yaml")
    stack = layout(design)
    calls = [r for r in stack.routes if r.hop.purpose is LinkPurpose.CALL]
    assert sorted(r.hop.target.region for r in calls) == [US, PAR]
    ports = {r.name: 41000 + i for i, r in enumerate(stack.routes)}
    by_region = {r.hop.target.region: ports[r.name] for r in calls}
    (proxy,) = [r for r in stack.replicas if r.component == "proxy"]
    command = own_command(
        design, stack, proxy, port=40000, route_ports=ports, base_dir=".", data_dir="/tmp/d"
    )
    assert command.env == {
        "PRIMARY": f"http://127.0.0.1:{by_region[US]}",
        "FALLBACK": f"http://127.0.0.1:{by_region[PAR]}",
        # {llm.…} stays the route in the caller's own region.
        "DEFAULT": str(by_region[PAR]),
    }


def test_without_a_regional_placeholder_only_the_default_route_exists() -> None:
    design = parse_design(design_text('{LLM: "{llm.url}"}'), "d.yaml")
    calls = [r for r in layout(design).routes if r.hop.purpose is LinkPurpose.CALL]
    assert [r.hop.target.region for r in calls] == [PAR]


@pytest.mark.parametrize(
    ("env", "calls", "message"),
    [
        ('{X: "{lm@aws/us-east-1.url}"}', "[llm]", "unknown component 'lm' (did you mean 'llm'?)"),
        ('{X: "{llm@ovhcloud/gra.url}"}', "[llm]", "llm is not placed in 'ovhcloud/gra'"),
        ('{X: "{llm@aws/us-east-1.url}"}', "[]", "llm is not in calls"),
        ('{X: "{llm.dns_host}"}', "[]", "{llm.dns_host}: llm is not in calls; add it there"),
        ('{X: "{llm@aws/us-east-1.path}"}', "[llm]", "give .url, .host, .port, .dns_url or .dns_host"),
    ],
)
def test_a_wrong_regional_placeholder_is_reported_at_its_line(env: str, calls: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_design(design_text(env, calls=calls), "d.yaml")
    (problem,) = info.value.problems
    assert message in problem.message, problem
    # The line of the proxy's env, where the placeholder is.
    assert problem.file == "d.yaml" and problem.line == 10, problem


def test_a_service_reaches_each_region_of_one_component_through_its_placeholder(tmp_path: Path) -> None:
    import httpx

    from bascule.targets.local.faultstate import Pass, Refuse
    from bascule.targets.local.stack import LocalStack

    for script in ("proxy.py", "upstream.py"):
        shutil.copy(HERE / script, tmp_path / script)
    text = design_text(TWO)
    (tmp_path / "d.yaml").write_text(text)
    design = parse_design(text, str(tmp_path / "d.yaml"))
    stack = LocalStack.start(design, tmp_path / "d.yaml", tmp_path / "run", timeout=30.0)
    try:
        entry = stack.entries()[PAR]
        assert httpx.get(entry + "/primary", timeout=5).json() == {"region": US}
        assert httpx.get(entry + "/fallback", timeout=5).json() == {"region": PAR}
        # A fault on the route to llm in aws/us-east-1 reaches the primary alone.
        (to_us,) = [
            r for r in stack.layout.routes if r.hop.purpose is LinkPurpose.CALL and r.hop.target.region == US
        ]
        stack.plane.set_fault(to_us.name, Refuse())
        assert httpx.get(entry + "/primary", timeout=5).status_code == 502
        assert httpx.get(entry + "/fallback", timeout=5).json() == {"region": PAR}
        stack.plane.set_fault(to_us.name, Pass())
        assert httpx.get(entry + "/primary", timeout=5).json() == {"region": US}
    finally:
        stack.stop()
