"""The reference services' ``/metrics``: requests by route and status, latency histograms, and the
gateway's routing state (upstream region served, breakers, degraded answers, shed requests) — read
from real gateways and fake upstreams served by uvicorn (tests/test_gateway.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bascule.stack.service import ServedBy, create_service_app
from tests.test_gateway import AWS, PAR, QUESTION, StackFactory, make_stack  # noqa: F401 (the fixture)

Sample = tuple[str, dict[str, str], float]


def scrape(client: httpx.Client | TestClient) -> list[Sample]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    ]


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
    return sum(v for n, got, v in samples if n == name and labels.items() <= got.items())


def test_every_service_that_names_its_hop_counts_and_times_its_requests() -> None:
    async def hello(request: object) -> JSONResponse:
        return JSONResponse({"hello": "world"})

    async def broken(request: object) -> JSONResponse:
        raise RuntimeError("boom")

    app = create_service_app(
        [Route("/v1/items/{item}", hello, methods=["GET"]), Route("/v1/broken", broken, methods=["GET"])],
        served_by=ServedBy("retriever", PAR, "retriever-scaleway-fr-par-0"),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        for item in ("a", "b", "c"):
            assert client.get(f"/v1/items/{item}").status_code == 200
        assert client.get("/v1/broken").status_code == 500
        assert client.get("/no/such/path").status_code == 404
        assert client.get("/healthz").status_code == 200
        samples = scrape(client)
        again = scrape(client)
    own = {"component": "retriever", "region": PAR, "replica": "retriever-scaleway-fr-par-0"}
    requests = "bascule_stack_requests_total"
    # A route template, never the path: one series for every item.
    assert value(samples, requests, route="/v1/items/{item}", method="GET", status="200", **own) == 3
    assert value(samples, requests, route="/v1/broken", status="500") == 1
    assert value(samples, requests, route="other", status="404") == 1
    assert value(samples, requests, route="/healthz", status="200") == 1
    assert value(samples, requests, route="/metrics") == 0, "scrapes are not requests"
    assert value(again, requests) == value(samples, requests) == 6
    histogram = "bascule_stack_request_duration_seconds"
    assert value(samples, f"{histogram}_count", route="/v1/items/{item}") == 3
    assert value(samples, f"{histogram}_bucket", route="/v1/items/{item}", le="+Inf") == 3
    assert 0 < value(samples, f"{histogram}_sum", route="/v1/items/{item}") < 5


def test_a_service_that_names_no_hop_serves_no_metrics() -> None:
    app = create_service_app([])
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 404


def test_the_gateway_tells_which_region_served_and_its_breakers(make_stack: StackFactory) -> None:  # noqa: F811
    stack = make_stack()
    assert stack.ask().status_code == 200
    assert stack.ask("confidential").status_code == 200
    assert stack.write().status_code == 200
    samples = scrape(stack.client)
    served = "bascule_gateway_upstream_served_total"
    own = {"component": "gateway", "region": PAR, "replica": "gateway-test"}
    aws = {"upstream_region": AWS, "data_class": "internal"}
    assert value(samples, served, upstream="retriever", **aws, **own) == 1
    assert value(samples, served, upstream="llm", upstream_region=AWS, data_class="internal") == 1
    # The sovereignty guard keeps confidential asks in the sovereign region.
    assert value(samples, served, upstream="retriever", upstream_region=PAR, data_class="confidential") == 1
    assert value(samples, served, upstream="store", upstream_region=AWS, data_class="internal") == 1
    assert value(samples, "bascule_stack_requests_total", route="/v1/ask", status="200", **own) == 2
    for component in ("retriever", "llm", "store"):
        for region in (AWS, PAR):
            labels = {"upstream": component, "upstream_region": region}
            assert value(samples, "bascule_gateway_breaker_state", **labels) == 0  # closed
            assert value(samples, "bascule_gateway_breaker_trips_total", **labels) == 0
    assert value(samples, "bascule_gateway_shed_total", **own) == 0
    assert value(samples, "bascule_gateway_degraded_total") == 0

    retriever = stack.up("retriever", AWS).server
    assert retriever is not None
    retriever.stop()
    for _ in range(3):
        assert stack.ask().status_code == 200
    samples = scrape(stack.client)
    aws = {"upstream": "retriever", "upstream_region": AWS}
    assert value(samples, "bascule_gateway_breaker_state", **aws) in (1, 2)  # open, or trying again
    assert value(samples, "bascule_gateway_breaker_trips_total", **aws) >= 1
    assert value(samples, served, upstream="retriever", upstream_region=PAR, data_class="internal") == 3

    # Every series is documented, under the name a query uses.
    documented = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    names = {
        n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for n, _, _ in samples
        if not n.endswith("_created")  # the client library's own, documented once
    }
    assert names and all(f"`{name}`" in documented for name in names), names - set(documented.split("`"))

    for region in (AWS, PAR):
        stack.up("llm", region).status = 500
    assert stack.ask().json()["degraded"] is True
    assert value(scrape(stack.client), "bascule_gateway_degraded_total", data_class="internal") == 1


def test_the_gateway_counts_shed_requests(make_stack: StackFactory) -> None:  # noqa: F811
    stack = make_stack(max_inflight=1)
    for region in (AWS, PAR):
        stack.up("retriever", region).delay = 0.6
    body = {"question": QUESTION, "data_class": "internal"}
    with (
        httpx.Client(base_url=stack.gateway.url, timeout=10, trust_env=False) as other,
        ThreadPoolExecutor(2) as pool,
    ):
        slow = pool.submit(other.post, "/v1/ask", json=body)
        time.sleep(0.3)
        assert value(scrape(stack.client), "bascule_gateway_inflight") == 1
        assert stack.ask().status_code == 503
        assert slow.result().status_code == 200
    samples = scrape(stack.client)
    assert value(samples, "bascule_gateway_shed_total") == 1
    assert value(samples, "bascule_gateway_inflight") == 0
    assert value(samples, "bascule_stack_requests_total", route="/v1/ask", status="503") == 1


def test_the_targets_file_lists_the_serving_replicas_that_are_up(tmp_path: Path) -> None:
    from bascule.stack.layout import ProcessKind, ReplicaSpec
    from bascule.stack.supervisor import ProcessSpec, ProcessState, Replica
    from bascule.targets.local.scrape import ScrapeTargets, scrape_groups

    def replica(component: str, kind: ProcessKind, index: int, port: int | None, state: ProcessState) -> Any:
        spec = ReplicaSpec(component, AWS, index, kind)
        url = None if port is None else f"http://127.0.0.1:{port}"
        return spec, Replica(ProcessSpec(spec.name, ("x",)), url=url, state=state)

    pairs = [
        replica("gateway", ProcessKind.GATEWAY, 0, 4001, ProcessState.RUNNING),
        replica("gateway", ProcessKind.GATEWAY, 1, 4002, ProcessState.PAUSED),  # hung: scraped, up == 0
        replica("retriever", ProcessKind.RETRIEVER, 0, 4003, ProcessState.DOWN),  # killed
        replica("llm", ProcessKind.LLM, 0, None, ProcessState.STARTING),
        replica("aws-sts", ProcessKind.IDENTITY, 0, 4004, ProcessState.RUNNING),  # no /metrics
        replica("notes", ProcessKind.SERVICE, 0, 4005, ProcessState.RUNNING),  # the user's own
    ]
    expected = [
        {
            "targets": ["127.0.0.1:4001", "127.0.0.1:4002"],
            "labels": {"bascule_component": "gateway", "bascule_region": AWS},
        }
    ]
    assert scrape_groups(pairs) == expected
    targets = ScrapeTargets(tmp_path)
    targets.write(pairs)
    assert json.loads(targets.path.read_text()) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["prometheus-targets.json"]
