"""What a scenario says about a probe: one validated spec per kind, chosen by ``kind:``.

The ``rag``, ``sovereignty`` and ``data`` kinds default to the reference gateway's API and accept a
request template and JSON paths, so that they work against a user's own service too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from bascule.model.durations import Duration

__all__ = [
    "PROBE_KINDS",
    "AnyProbe",
    "CommandProbe",
    "DataProbe",
    "HttpProbe",
    "JsonAssertion",
    "ProbeSpec",
    "PythonProbe",
    "RagProbe",
    "ResponsePaths",
    "SovereigntyProbe",
]


class ProbeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str | None = None
    rate: Annotated[float, Field(gt=0, le=100)] = 10.0
    """Samples per second when the probe runs continuously."""
    timeout: Duration = 2.0


class JsonAssertion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    """A dotted path into the JSON body: ``answer``, ``served_by.0.region``."""
    equals: str | int | float | bool | None = None
    contains: str | None = None
    exists: bool | None = None


class HttpProbe(ProbeSpec):
    """An HTTP request whose status, latency and body must match."""

    kind: Literal["http"] = "http"
    url: str
    method: Literal["GET", "POST", "PUT", "HEAD"] = "GET"
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    expect_status: tuple[int, ...] = (200,)
    max_latency: Duration | None = None
    assertions: tuple[JsonAssertion, ...] = ()


class ResponsePaths(BaseModel):
    """Where to find things in a service's answer (dotted JSON paths), for services shaped
    differently from the reference gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    answer: str = "answer"
    citations: str = "citations"
    hops: str = "served_by"
    hops_header: str | None = None
    """Read the hops from this response header (JSON) instead of the body."""


class RagProbe(ProbeSpec):
    """A golden question: the answer must contain its facts and cite its documents."""

    kind: Literal["rag"] = "rag"
    question: str | None = None
    """A golden-set question id, or ``None`` to cycle through the golden set."""
    data_class: str = "internal"
    url: str | None = None
    """Defaults to the design's gateway entry point."""
    request: dict[str, object] = {"question": "{question}", "data_class": "{data_class}"}
    paths: ResponsePaths = ResponsePaths()


class SovereigntyProbe(ProbeSpec):
    """Every hop of every request (load and probes) checked against its data class's minimum level."""

    kind: Literal["sovereignty"] = "sovereignty"
    paths: ResponsePaths = ResponsePaths()


class DataProbe(ProbeSpec):
    """Canary writes acknowledged during the run, read back from every region after it settles."""

    kind: Literal["data"] = "data"
    rate: Annotated[float, Field(gt=0, le=100)] = 2.0
    data_class: str = "internal"
    url: str | None = None
    request: dict[str, object] = {"id": "{id}", "text": "{text}", "data_class": "{data_class}"}


class CommandProbe(ProbeSpec):
    """A command that succeeds when it exits 0."""

    kind: Literal["command"] = "command"
    argv: tuple[str, ...] = Field(min_length=1)
    rate: Annotated[float, Field(gt=0, le=100)] = 1.0


class PythonProbe(ProbeSpec):
    """An importable callable ``module:function`` that returns truthy (or raises)."""

    kind: Literal["python"] = "python"
    call: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]
    rate: Annotated[float, Field(gt=0, le=100)] = 1.0


_KINDS: tuple[type[ProbeSpec], ...] = (
    HttpProbe,
    RagProbe,
    SovereigntyProbe,
    DataProbe,
    CommandProbe,
    PythonProbe,
)
PROBE_KINDS: dict[str, type[ProbeSpec]] = {str(cls.model_fields["kind"].default): cls for cls in _KINDS}

if TYPE_CHECKING:
    AnyProbe = ProbeSpec
else:
    AnyProbe = Annotated[Union[_KINDS], Field(discriminator="kind")]  # noqa: UP007
