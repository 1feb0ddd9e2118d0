"""The ``python`` probe: a user's own check as an importable callable ``module:function``.

The callable takes no argument and holds when it returns a truthy value; an exception is a failed
sample with the exception as its error. A coroutine function is awaited on the probes' loop; a plain
function runs in a daemon thread of its own, so that a slow or hung check neither blocks the other
probes nor keeps the runner from stopping (its sample times out; the thread is left to finish).
The module must be importable from the process running bascule (installed, or on ``PYTHONPATH``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import threading
from collections.abc import Callable

import httpx

from bascule.errors import ProbeError
from bascule.journal.samples import RequestSample
from bascule.model import probes as specs
from bascule.probes.base import Probe, ProbeContext, describe_error, register

__all__ = ["PythonProbe", "load_callable"]


def load_callable(call: str) -> Callable[[], object]:
    """The callable ``module:function`` names; `ProbeError` when it cannot be had."""
    module_name, _, attribute = call.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProbeError(f"cannot import {module_name!r} for the python probe {call!r}: {exc}") from exc
    function = getattr(module, attribute, None)
    if function is None:
        raise ProbeError(f"module {module_name!r} has no {attribute!r} (python probe {call!r})")
    if not callable(function):
        raise ProbeError(f"{call!r} is a {type(function).__name__}, not a callable")
    checked: Callable[[], object] = function
    return checked


async def _in_daemon_thread(function: Callable[[], object]) -> object:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(outcome: object, failure: BaseException | None) -> None:
        if future.done():
            return
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(outcome)

    def run() -> None:
        outcome: object = None
        failure: BaseException | None = None
        try:
            outcome = function()
        except Exception as exc:
            failure = exc
        except BaseException as exc:
            # SystemExit and the like must fail this sample, not end the probes' loop.
            failure = RuntimeError(f"the check raised {describe_error(exc)}")
        # The loop may have closed while a hung check was left behind: nobody waits any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome, failure)

    threading.Thread(target=run, name="bascule-python-probe", daemon=True).start()
    return await future


@register
class PythonProbe(Probe[specs.PythonProbe]):
    kind = "python"
    spec_type = specs.PythonProbe
    sample_kind = "python"

    def __init__(self, spec: specs.PythonProbe, context: ProbeContext, name: str | None = None) -> None:
        super().__init__(spec, context, name)
        self.function = load_callable(spec.call)

    async def _call(self) -> object:
        if inspect.iscoroutinefunction(self.function):
            return await self.function()
        result = await _in_daemon_thread(self.function)
        if inspect.isawaitable(result):
            return await result
        return result

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        error: str | None
        try:
            result = await self._call()
        except Exception as exc:
            error = describe_error(exc)
        else:
            error = None if result else f"{self.spec.call} returned {result!r}"
        return self.verdict(now, error)
