"""Request headers of the user's own on probes and load: checked at the YAML boundary, read from
the environment when requests are made, never written into a file bascule keeps."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from bascule.edge import Edge
from bascule.errors import ProbeError
from bascule.journal.samples import RequestSample
from bascule.load.mix import edge_post
from bascule.model.headers import MissingVariableError, resolve_headers
from bascule.model.loading import read_design
from bascule.model.probes import AnyProbe, ProbeSpec
from bascule.model.scenario import LoadRequests
from bascule.probes.base import Probe, ProbeContext, make_probe
from bascule.probes.runner import sample_once

ROOT = Path(__file__).resolve().parent.parent
APS = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")
ENTRIES = {"aws/us-east-1": "http://aws.test", "scaleway/fr-par": "http://par.test"}
SPECS: TypeAdapter[ProbeSpec] = TypeAdapter(AnyProbe)


def test_values_read_the_environment_and_name_what_is_missing() -> None:
    headers = {"authorization": "Bearer ${API_KEY}", "x-tenant": "team-${TEAM}-eu", "x-plain": "a"}
    env = {"API_KEY": "s3cret", "TEAM": "7"}
    assert resolve_headers(headers, env) == {
        "authorization": "Bearer s3cret",
        "x-tenant": "team-7-eu",
        "x-plain": "a",
    }
    with pytest.raises(MissingVariableError) as missing:
        resolve_headers(headers, {"OTHER": "x"})
    assert "API_KEY, TEAM" in str(missing.value) and "s3cret" not in str(missing.value)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"bad name": "x"}, "not an HTTP header name"),
        ({"traceparent": "x"}, "set by bascule"),
        ({"x-a": "one\r\ntwo"}, "one line"),
    ],
)
def test_a_bad_header_is_refused_at_the_yaml_boundary(headers: dict[str, str], why: str) -> None:
    with pytest.raises(ValidationError) as refused:
        LoadRequests(headers=headers)
    assert why in str(refused.value)
    with pytest.raises(ValidationError):
        SPECS.validate_python({"kind": "http", "url": "/healthz", "headers": headers})


def one_sample(probe: Probe[Any]) -> RequestSample:
    async def go() -> RequestSample:
        async with probe.context.client_factory() as client:
            return await sample_once(probe, client, time.monotonic())

    return asyncio.run(go())


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "http", "url": "http://svc.test/healthz"},
        {"kind": "http", "url": "/healthz"},
        {"kind": "rag", "data_class": "internal"},
        {"kind": "sovereignty"},
        {"kind": "data", "data_class": "internal"},
    ],
)
def test_every_http_probe_sends_the_headers(spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASCULE_TEST_KEY", "k-123")
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"status": "ok", "id": "x", "answer": "", "citations": []})

    context = ProbeContext(
        design=APS,
        entries=ENTRIES,
        store_urls={"aws/us-east-1": ["http://s.test"]},
        client_factory=lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    probe = make_probe(
        SPECS.validate_python({**spec, "headers": {"authorization": "Key ${BASCULE_TEST_KEY}"}}), context
    )
    one_sample(probe)
    assert seen and seen[0] == "Key k-123"


def test_a_probe_whose_variable_is_not_set_stops_before_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASCULE_TEST_MISSING", raising=False)
    spec = SPECS.validate_python(
        {"kind": "http", "url": "/healthz", "headers": {"x-k": "${BASCULE_TEST_MISSING}"}}
    )
    with pytest.raises(ProbeError, match="BASCULE_TEST_MISSING"):
        make_probe(spec, ProbeContext(design=APS, entries=ENTRIES))


def test_the_load_sends_the_headers_on_every_attempt() -> None:
    sent: list[dict[str, str]] = []

    def send(
        region: str, url: str, payload: Any, headers: Any
    ) -> tuple[int | None, dict[str, Any] | None, str | None]:
        sent.append(dict(headers))
        return (503, None, None) if region == "aws/us-east-1" else (200, {"answer": "ok"}, None)

    answer = edge_post(
        Edge(APS, ENTRIES), send, "/v1/ask", {}, "internal", trace_id="ab" * 16, headers={"x-k": "v"}
    )
    assert answer.ok and len(sent) == 2
    assert all(h["x-k"] == "v" and "traceparent" in h for h in sent)


def test_the_journal_keeps_the_template_not_the_value(tmp_path: Path) -> None:
    """The scenario is journaled as written: `${API_KEY}`, never the key."""
    spec = LoadRequests(headers={"authorization": "Bearer ${API_KEY}"})
    dumped = json.dumps(spec.model_dump(mode="json"))
    assert "${API_KEY}" in dumped
