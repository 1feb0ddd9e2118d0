"""The design fields of a service of the user's own (docs/own-services.md): how bascule starts it
(``command``), knows it is ready, wipes its data (``wipe``) and gives its standbys the route to
their primary (``replication``). Pure; `bascule.model.design` places them under a component."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bascule.errors import PathElement
from bascule.model.durations import Duration, Timeout
from bascule.model.placeholders import named_callees, regional_callees
from bascule.model.selector import RegionId

__all__ = ["CommandSpec", "OwnReplication", "Readiness", "WipeSpec"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Readiness(_Spec):
    """How bascule knows an own service is up: an HTTP path answering 2xx, else a TCP connect."""

    path: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("a readiness path starts with '/', e.g. /healthz")
        return value


class WipeSpec(_Spec):
    """How a replica of an own service loses its data (the ``data-loss`` fault): a command bascule
    runs while that replica is stopped, then the replica is started again. Same placeholders as
    the command (``{data_dir}`` above all)."""

    argv: Annotated[tuple[str, ...], Field(min_length=1)]
    timeout: Timeout = 30.0
    """How long the command may run; past it, it is killed and the fault fails."""


class CommandSpec(_Spec):
    """An own service bascule starts and supervises, one process per replica.

    Strings of ``argv`` and ``env`` may hold placeholders, filled per replica: ``{port}`` (the port
    it must listen on, chosen by bascule), ``{host}`` (127.0.0.1), ``{region}``, ``{replica}`` (its
    name), ``{python}`` (the interpreter running bascule), and for each component it ``calls``:
    ``{NAME.url}``, ``{NAME.host}``, ``{NAME.port}`` — the fault route in front of that component,
    which is how faults reach the hop — and ``{NAME@REGION.url}`` (``.host``, ``.port``): the route
    to its replicas in that region, so that one service can call the same component in two regions,
    each through a route of its own. ``{NAME.dns_url}`` and ``{NAME.dns_host}`` (and their
    ``@REGION`` forms) give the same route by its DNS name in the run's zone
    (``http://kv.scaleway-fr-par.bascule.internal:PORT``): a replica that uses one runs with a
    resolver that asks bascule's DNS server, so that ``dns`` faults reach it. ``{{`` and ``}}`` are
    literal braces."""

    argv: Annotated[tuple[str, ...], Field(min_length=1)]
    cwd: str | None = None
    """Working directory, relative to the design file's directory (default: that directory)."""
    env: dict[str, str] = {}
    ready: Readiness = Readiness()
    restart_delay: Duration = 1.0
    """How long a crashed replica stays down before it is restarted (unless its region is frozen)."""
    start_timeout: Timeout | None = None
    """How long each replica may take to start and be ready, when longer than the stack's start
    timeout (``bascule run --stack-timeout``, 60 s by default): a service that needs 90 s to start."""
    wipe: WipeSpec | None = None
    """How to wipe a replica's data (``data-loss``); without it, that fault is refused."""

    def templates(self) -> list[tuple[tuple[PathElement, ...], str]]:
        """Every string that may hold placeholders, by where it is under ``command``."""
        out: list[tuple[tuple[PathElement, ...], str]] = [(("argv", i), a) for i, a in enumerate(self.argv)]
        out += [(("env", k), v) for k, v in self.env.items()]
        if self.wipe is not None:
            out += [(("wipe", "argv", i), a) for i, a in enumerate(self.wipe.argv)]
        return out

    def named_callees(self) -> set[str]:
        """The callees (``NAME`` or ``NAME@REGION``) the service is given by DNS name
        (``{….dns_url}``…): its argv and env, what runs in its resolver's namespace."""
        return named_callees([*self.argv, *self.env.values()])

    def regional_callees(self) -> set[tuple[str, str]]:
        """The ``(component, region)`` pairs its ``{NAME@REGION.…}`` placeholders name."""
        return regional_callees(text for _, text in self.templates())


class OwnReplication(_Spec):
    """How an own service replicates between its regions: every other region's replica streams
    from the one in ``primary``, over a route bascule creates (``{replication.url}``,
    ``.host``, ``.port`` in its command), so that ``replication-pause`` and ``partition`` reach it."""

    primary: RegionId
    """The region the others replicate from."""
