"""The ``prometheus`` probe: a PromQL instant query, held when every series of the answer is
within the spec's threshold — the SLO a team already keeps in Prometheus as the steady state, and
(with a ``probe`` guardrail) as a stop condition. `check_answer` decides (pure); the probe asks
``/api/v1/query`` (the Prometheus HTTP API)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import httpx

from bascule.journal.samples import RequestSample
from bascule.model import probes as specs
from bascule.probes.base import Probe, describe_error, register

__all__ = ["PrometheusProbe", "check_answer"]

_SHOWN = 3
"""Series named in a failure's error, at most."""


def _series(metric: object) -> str:
    if not isinstance(metric, Mapping):
        return "{}"
    name = str(metric.get("__name__", ""))
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{labels}}}"


def _values(data: Mapping[str, object]) -> list[tuple[str, float]] | str:
    """``(series, value)`` of an instant query's ``data``, or why it cannot be read."""
    kind, result = data.get("resultType"), data.get("result")
    try:
        if kind == "scalar" and isinstance(result, list):
            return [("scalar", float(result[1]))]
        if kind == "vector" and isinstance(result, list):
            return [(_series(item.get("metric")), float(item["value"][1])) for item in result]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return "the answer's samples are not [time, value] pairs"
    return f"a {kind} answer: the probe takes an instant vector or a scalar"


def check_answer(spec: specs.PrometheusProbe, answer: object) -> str | None:
    """Why the ``/api/v1/query`` answer fails ``spec``, or None when it holds. Pure."""
    if not isinstance(answer, Mapping):
        return "the answer is not a Prometheus API document"
    if answer.get("status") != "success":
        return f"Prometheus: {answer.get('errorType', 'error')}: {answer.get('error', 'no detail')}"
    data = answer.get("data")
    if not isinstance(data, Mapping):
        return "the answer has no data"
    values = _values(data)
    if isinstance(values, str):
        return values
    if not values:
        return None if spec.empty == "pass" else "no series: the query returned nothing"
    bad = [
        (series, value)
        for series, value in values
        if math.isnan(value)
        or (spec.below is not None and not value < spec.below)
        or (spec.above is not None and not value > spec.above)
    ]
    if not bad:
        return None
    bounds = [f"below {spec.below:g}"] if spec.below is not None else []
    bounds += [f"above {spec.above:g}"] if spec.above is not None else []
    wanted = " and ".join(bounds) or "no series"
    shown = ", ".join(f"{series} = {value:g}" for series, value in bad[:_SHOWN])
    more = f" (and {len(bad) - _SHOWN} more)" if len(bad) > _SHOWN else ""
    return f"{shown}{more}; expected {wanted}"


@register
class PrometheusProbe(Probe[specs.PrometheusProbe]):
    kind = "prometheus"
    spec_type = specs.PrometheusProbe
    sample_kind = "prometheus"

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        spec = self.spec
        try:
            response = await client.get(
                spec.url.rstrip("/") + "/api/v1/query",
                params={"query": spec.query},
                headers=self.headers,
                timeout=spec.timeout,
            )
        except httpx.HTTPError as exc:
            return self.verdict(now, describe_error(exc))
        try:
            answer: object = response.json()
        except ValueError:
            return self.verdict(now, f"HTTP {response.status_code}: the answer is not JSON")
        return replace(self.verdict(now, check_answer(spec, answer)), status=response.status_code)
