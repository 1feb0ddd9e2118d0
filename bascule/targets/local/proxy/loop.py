"""The event loop the fault plane runs on (uvloop where installed) and the thread that drives it
from ordinary synchronous code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Final, TypeVar

from bascule.errors import TargetError

__all__ = ["EVENT_LOOP_ENV", "LoopThread", "new_event_loop"]

_CONTROL_TIMEOUT: Final = 5.0
_T = TypeVar("_T")


EVENT_LOOP_ENV: Final = "BASCULE_EVENT_LOOP"
"""``asyncio`` forces the standard library's event loop even where uvloop is installed."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed — a relayed request costs about half as much CPU in
    it — unless ``BASCULE_EVENT_LOOP=asyncio``; the standard library's otherwise."""
    if os.environ.get(EVENT_LOOP_ENV, "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """An asyncio event loop running in a daemon thread, driven from other threads.

    `call` runs a function on the loop and returns its result; from the loop's own thread it
    runs inline. `stop` runs an optional shutdown coroutine on the loop, then ends the thread.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise TargetError(f"{self._name} is not running")
        return self._loop

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already started")
        loop = new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=self._run, args=(loop, ready), name=self._name, daemon=True)
        self._loop = loop
        self._thread = thread
        thread.start()
        if not ready.wait(_CONTROL_TIMEOUT):
            raise RuntimeError(f"{self._name}: the event loop did not start")

    def stop(self, shutdown: Callable[[], Coroutine[object, object, None]] | None = None) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            try:
                if shutdown is not None:
                    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_CONTROL_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_CONTROL_TIMEOUT)
        self._loop = None
        self._thread = None

    def call(self, fn: Callable[[], _T]) -> _T:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            raise TargetError(f"{self._name} is not running")
        if threading.get_ident() == thread.ident:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(_CONTROL_TIMEOUT)

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
