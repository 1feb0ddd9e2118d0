"""The scenario's setup requests, made once the stack is ready and before probes and load: each
answer's saved values fill ``{setup.NAME}`` in the rest of the scenario (bascule/model/setup.py).
A step that fails stops the run before anything is injected."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import httpx

from bascule.edge import NOT_JSON, Edge, NoEntryError, request_headers
from bascule.errors import TargetError
from bascule.journal import Journal
from bascule.model.design import Design
from bascule.model.headers import MissingVariableError, resolve_headers
from bascule.model.scenario import Scenario
from bascule.model.setup import SetupStep, env_name, fill_setup
from bascule.probes.base import MISSING, read_path
from bascule.probes.http import least_demanding_class
from bascule.runner.display import Display
from bascule.tracecontext import new_trace_id

__all__ = ["SetupError", "run_setup", "set_up"]


class SetupError(TargetError):
    """A setup request failed or its answer lacked a value to save."""


def set_up(
    scenario: Scenario, design: Design, entries: Mapping[str, str], journal: Journal, display: Display
) -> Scenario:
    """``scenario`` with its setup requests made and their values filled in (itself without any)."""
    if not scenario.setup:
        return scenario
    return fill_setup(scenario, run_setup(scenario.setup, design, entries, journal, display))


def run_setup(
    steps: tuple[SetupStep, ...],
    design: Design,
    entries: Mapping[str, str],
    journal: Journal,
    display: Display,
) -> dict[str, str]:
    """Make each step's request in order and return the saved values. Values are also put in the
    environment as ``BASCULE_SETUP_NAME`` (header values read them there, in this process and in
    the load generator's); the journal gets the names and lengths, never the values."""
    values: dict[str, str] = {}
    for step in steps:
        filled = fill_setup(step, values)
        display.status(f"setup: {step.name} ({step.method} {step.url})")
        status, body = asyncio.run(_request(filled, design, entries))
        if status not in step.expect_status:
            expected = ", ".join(str(s) for s in step.expect_status)
            excerpt = "" if body is MISSING else f": {str(body)[:200]}"
            raise SetupError(f"setup step {step.name!r} got HTTP {status}, expected {expected}{excerpt}")
        saved: dict[str, int] = {}
        for name, path in step.save.items():
            value = read_path(body, path)  # MISSING when the answer was not JSON
            if value is MISSING or isinstance(value, dict | list) or value is None:
                raise SetupError(
                    f"setup step {step.name!r}: the answer has no string or number at "
                    f"{path or '(the whole answer)'!r} to save as {{setup.{name}}}"
                )
            values[name] = str(value).lower() if isinstance(value, bool) else str(value)
            os.environ[env_name(name)] = values[name]
            saved[name] = len(values[name])
        journal.write("setup", name=step.name, status=status, saved=saved)
    return values


async def _request(step: SetupStep, design: Design, entries: Mapping[str, str]) -> tuple[int, object]:
    try:
        headers = resolve_headers(step.headers, os.environ)
    except MissingVariableError as exc:
        raise SetupError(f"setup step {step.name!r}: {exc}") from exc
    trace_id = new_trace_id()
    async with httpx.AsyncClient(trust_env=False, timeout=step.timeout) as client:
        if not step.url.startswith("/"):
            try:
                response = await client.request(
                    step.method, step.url, json=step.json_body, headers=request_headers(headers, trace_id)
                )
            except httpx.HTTPError as exc:
                raise SetupError(f"setup step {step.name!r}: {type(exc).__name__}: {exc}") from exc
            return response.status_code, _json(response)
        edge = Edge(design, entries)
        data_class = step.data_class or least_demanding_class(design)
        try:
            answer = await edge.post(
                client,
                step.url,
                step.json_body,
                data_class,
                method=step.method,
                trace_id=trace_id,
                headers=headers,
            )
        except NoEntryError as exc:
            raise SetupError(f"setup step {step.name!r}: {exc}") from exc
        if answer.status is None:
            raise SetupError(f"setup step {step.name!r}: no entry point answered ({answer.error})")
        return answer.status, MISSING if answer.value is NOT_JSON else answer.value


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return MISSING
