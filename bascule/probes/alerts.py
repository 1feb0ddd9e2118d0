"""The ``alert`` guardrail's eyes: which of the named alerts fire in a Prometheus
(``/api/v1/alerts``) or an Alertmanager (``/api/v2/alerts``). `firing` reads an answer (pure);
`AlertWatch` asks the source at the guardrail's rate in a thread of its own, until stopped or its
deadline, and hands each reading on — the runner feeds them to the guardrail monitor."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from bascule.errors import ProbeError
from bascule.model.headers import MissingVariableError, resolve_headers
from bascule.model.scenario import AlertGuardrail
from bascule.probes.base import describe_error

__all__ = ["AlertReading", "AlertWatch", "firing", "matches"]

_PATHS = {"prometheus": "/api/v1/alerts", "alertmanager": "/api/v2/alerts"}
_ALERTMANAGER_QUERY = {"active": "true", "silenced": "false", "inhibited": "false"}


@dataclass(frozen=True)
class AlertReading:
    """One read of a guardrail's alert source (monotonic seconds): the matching alerts firing,
    by name with their labels, or why the source could not be read."""

    guardrail: int
    """Its index in the scenario's guardrails."""
    started: float
    ended: float
    firing: tuple[str, ...] = ()
    error: str | None = None


def matches(spec: AlertGuardrail, labels: Mapping[str, str]) -> bool:
    """Whether an alert with these labels is one the guardrail stops on."""
    if spec.alerts and labels.get("alertname") not in spec.alerts:
        return False
    return all(labels.get(name) == value for name, value in spec.labels.items())


def _describe(labels: Mapping[str, str]) -> str:
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "alertname")
    return f"{labels.get('alertname', '?')}{{{rest}}}"


def firing(spec: AlertGuardrail, answer: object) -> tuple[str, ...] | str:
    """The guardrail's alerts that fire in ``answer`` (the API's JSON document), described
    ``Name{label="value"}`` and sorted; or why the answer cannot be read. Pure."""
    if spec.api == "prometheus":
        if not isinstance(answer, Mapping):
            return "the answer is not a Prometheus API document"
        if answer.get("status") != "success":
            return f"Prometheus: {answer.get('errorType', 'error')}: {answer.get('error', 'no detail')}"
        data = answer.get("data")
        alerts = data.get("alerts") if isinstance(data, Mapping) else None
        wanted_state, state_of = "firing", _prometheus_state
    else:
        alerts = answer
        wanted_state, state_of = "active", _alertmanager_state
    if not isinstance(alerts, list):
        return f"the answer has no list of alerts (is {spec.url} a{_an(spec.api)} {spec.api}?)"
    found: set[str] = set()
    for alert in alerts:
        labels = alert.get("labels") if isinstance(alert, Mapping) else None
        if not isinstance(labels, Mapping):
            return "an alert of the answer has no labels"
        labels = {str(k): str(v) for k, v in labels.items()}
        if state_of(alert) == wanted_state and matches(spec, labels):
            found.add(_describe(labels))
    return tuple(sorted(found))


def _an(api: str) -> str:
    return "n" if api[0] in "aeiou" else ""


def _prometheus_state(alert: Mapping[str, object]) -> object:
    return alert.get("state")


def _alertmanager_state(alert: Mapping[str, object]) -> object:
    status = alert.get("status")
    return status.get("state") if isinstance(status, Mapping) else None


class AlertWatch:
    """Reads each alert guardrail's source at its rate, each in a daemon thread, until `stop` or
    ``deadline`` (monotonic); ``on_reading`` gets every reading, from those threads."""

    def __init__(
        self,
        guardrails: Sequence[tuple[int, AlertGuardrail]],
        on_reading: Callable[[AlertReading], None],
        *,
        deadline: float,
    ) -> None:
        self._guardrails = list(guardrails)
        self._on_reading = on_reading
        self._deadline = deadline
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The headers' ${ENV_VAR}s are read now, so that a missing one stops the run before it starts.
        try:
            self._headers = [resolve_headers(spec.headers, os.environ) for _, spec in self._guardrails]
        except MissingVariableError as exc:
            raise ProbeError(f"alert guardrail: {exc}") from exc

    def start(self) -> None:
        for (index, spec), headers in zip(self._guardrails, self._headers, strict=True):
            thread = threading.Thread(
                target=self._watch, args=(index, spec, headers), name=f"alert-guardrail-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _watch(self, index: int, spec: AlertGuardrail, headers: Mapping[str, str]) -> None:
        url = spec.url.rstrip("/") + _PATHS[spec.api]
        params = _ALERTMANAGER_QUERY if spec.api == "alertmanager" else {}
        period = 1.0 / spec.rate
        with httpx.Client(headers=dict(headers), timeout=spec.timeout) as client:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                started = time.monotonic()
                self._on_reading(read_alerts(client, index, spec, url, params, started))
                self._stop.wait(max(0.0, started + period - time.monotonic()))


def read_alerts(
    client: httpx.Client,
    index: int,
    spec: AlertGuardrail,
    url: str,
    params: Mapping[str, str],
    started: float,
) -> AlertReading:
    """One read of the source (effectful)."""
    try:
        response = client.get(url, params=dict(params))
        answer: object = response.json()
    except httpx.HTTPError as exc:
        return AlertReading(index, started, time.monotonic(), error=describe_error(exc))
    except ValueError:
        error = f"HTTP {response.status_code} from {url}: the answer is not JSON"
        return AlertReading(index, started, time.monotonic(), error=error)
    ended = time.monotonic()
    if response.status_code != 200 and spec.api == "alertmanager":
        return AlertReading(index, started, ended, error=f"HTTP {response.status_code} from {url}")
    found = firing(spec, answer)
    if isinstance(found, str):
        return AlertReading(index, started, ended, error=found)
    return AlertReading(index, started, ended, firing=found)
