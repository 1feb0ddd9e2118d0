"""The ``command`` probe: a user's own check as a command; it holds when the command exits 0.

The command runs without a shell, in its own session so that a timeout (the spec's, as for every
probe) kills everything it started, with the stack's entry points in ``BASCULE_ENTRIES`` (JSON:
region → base URL) and the probe's name in ``BASCULE_PROBE``. Its output is kept only to explain a
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys

import httpx

from bascule.journal.samples import RequestSample
from bascule.model import probes as specs
from bascule.probes.base import Probe, ProbeContext, describe_error, register

__all__ = ["CommandProbe", "explain_exit"]

_KILL_WAIT = 2.0


def explain_exit(returncode: int, stdout: bytes, stderr: bytes) -> str:
    """``exit 3: <last line of stderr, else stdout>``, or the signal that ended the command."""
    head = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    for stream in (stderr, stdout):
        lines = stream.decode("utf-8", "replace").strip().splitlines()
        if lines:
            return f"{head}: {lines[-1][:200]}"
    return head


def _kill_group(process: asyncio.subprocess.Process) -> None:
    # The command leads its own session (start_new_session), so its group id is its pid: this
    # reaches its children too and nothing else.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@register
class CommandProbe(Probe[specs.CommandProbe]):
    kind = "command"
    spec_type = specs.CommandProbe
    sample_kind = "command"

    def __init__(self, spec: specs.CommandProbe, context: ProbeContext, name: str | None = None) -> None:
        super().__init__(spec, context, name)
        self.env = {
            **os.environ,
            "BASCULE_ENTRIES": json.dumps(dict(context.entries)),
            "BASCULE_PROBE": self.name,
        }
        # `{python}`, as in a design's commands: the interpreter running bascule.
        self.argv = tuple(a.replace("{python}", sys.executable) for a in spec.argv)

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        error: str | None = None
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            error = f"cannot run {self.argv[0]!r}: {describe_error(exc)}"
        else:
            # `sample_once` bounds the wait by the spec's timeout and cancels it; the command
            # is then killed here, on the way out.
            try:
                stdout, stderr = await process.communicate()
                assert process.returncode is not None
                if process.returncode != 0:
                    error = explain_exit(process.returncode, stdout, stderr)
            finally:
                if process.returncode is None:
                    _kill_group(process)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), _KILL_WAIT)
        return self.verdict(now, error)
