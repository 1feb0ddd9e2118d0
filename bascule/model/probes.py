"""What a scenario says about a probe: one validated spec per kind, chosen by ``kind:``.

The ``rag``, ``sovereignty`` and ``data`` kinds default to the reference gateway's API and accept a
request template and JSON paths, so that they work against a user's own service too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bascule.model.durations import Duration, Timeout
from bascule.model.headers import Headers

__all__ = [
    "PROBE_KINDS",
    "AnyProbe",
    "CommandProbe",
    "DataProbe",
    "FreshnessProbe",
    "HttpProbe",
    "JsonAssertion",
    "KubernetesReadyProbe",
    "ProbeSpec",
    "PrometheusProbe",
    "PythonProbe",
    "RagProbe",
    "ResponsePaths",
    "SovereigntyProbe",
]


class ProbeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str
    name: str | None = None
    rate: Annotated[float, Field(gt=0, le=100)] = 10.0
    """Samples per second when the probe runs continuously."""
    timeout: Timeout = 2.0


class JsonAssertion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: str
    """A dotted path into the JSON body: ``answer``, ``served_by.0.region``, ``items.*.id`` (``*``
    maps over a list); empty: the whole body."""
    equals: str | int | float | bool | None = None
    contains: str | int | float | None = None
    """A string that has it as a substring, or a list that holds it."""
    exists: bool | None = None
    not_empty: bool | None = None
    """``true``: a non-empty list, object or string is there; ``false``: an empty one or nothing."""


class HttpProbe(ProbeSpec):
    """An HTTP request whose status, latency and body must match."""

    kind: Literal["http"] = "http"
    url: str
    """A full URL, asked directly; or a path (``/healthz``), asked at the design's entry points
    through the edge — in routing order, failing over as clients do."""
    data_class: str | None = None
    """Through the edge: the class whose allowed regions it may go to (default: the design's
    least demanding class)."""
    method: Literal["GET", "POST", "PUT", "HEAD"] = "GET"
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = (200,)
    max_latency: Timeout | None = None
    assertions: tuple[JsonAssertion, ...] = ()
    headers: Headers = {}
    """Request headers of your own (an API key): values may read ``${ENV_VAR}`` at run time."""


class ResponsePaths(BaseModel):
    """Where to find things in a service's answer (dotted JSON paths), for services shaped
    differently from the reference gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    answer: str = "answer"
    citations: str = "citations"
    """A list of document ids; ``*`` maps over a list: ``result.sources.*.id``."""
    hops: str = "served_by"
    hops_header: str | None = None
    """Read the hops from this response header (JSON) instead of the body."""
    degraded: str = "degraded"
    """A boolean saying the answer is a degraded one (absent means not degraded)."""


class RagProbe(ProbeSpec):
    """A golden question: the answer must contain its facts and cite its documents."""

    kind: Literal["rag"] = "rag"
    question: str | None = None
    """A golden-set question id, or ``None`` to cycle through the golden set's questions of
    ``data_class``; with ``facts`` or ``cites``, the text of a question of the user's own."""
    data_class: str = "internal"
    url: str | None = None
    """Defaults to the design's gateway entry points, through the edge. A path (``/v1/ask``) goes
    through the edge too; a full URL is asked directly."""
    request: dict[str, object] = {"question": "{question}", "data_class": "{data_class}"}
    paths: ResponsePaths = ResponsePaths()
    facts: tuple[str, ...] = ()
    """For a question of the user's own: the facts a correct answer states."""
    cites: tuple[str, ...] = ()
    """For a question of the user's own: the document ids a correct answer cites."""
    headers: Headers = {}
    """Request headers of your own (an API key): values may read ``${ENV_VAR}`` at run time."""

    @model_validator(mode="after")
    def _own_question_has_text(self) -> RagProbe:
        if (self.facts or self.cites) and not self.question:
            raise ValueError("facts and cites grade a question of your own: give its text as `question`")
        return self


class SovereigntyProbe(ProbeSpec):
    """Every hop of every request (load and probes) checked against its data class's minimum level."""

    kind: Literal["sovereignty"] = "sovereignty"
    data_class: str | None = None
    """The class its own check asks with; defaults to the design's most demanding one."""
    question: str | None = None
    """A golden-set question id or a question's text; defaults to cycling the golden set."""
    url: str | None = None
    """As for ``rag``: the edge by default, a path through the edge, or a full URL."""
    request: dict[str, object] = {"question": "{question}", "data_class": "{data_class}"}
    paths: ResponsePaths = ResponsePaths()
    headers: Headers = {}
    """Request headers of your own (an API key): values may read ``${ENV_VAR}`` at run time."""


def _mentions(template: object, placeholder: str) -> bool:
    if isinstance(template, str):
        return placeholder in template
    if isinstance(template, dict):
        return any(_mentions(k, placeholder) or _mentions(v, placeholder) for k, v in template.items())
    if isinstance(template, list | tuple):
        return any(_mentions(item, placeholder) for item in template)
    return False


class DataProbe(ProbeSpec):
    """Canary writes acknowledged during the run, read back from every region after it settles."""

    kind: Literal["data"] = "data"
    rate: Annotated[float, Field(gt=0, le=100)] = 2.0
    data_class: str = "internal"
    url: str | None = None
    """As for ``rag``: the edge by default (``/v1/documents``), a path through the edge, or a full URL."""
    request: dict[str, object] = {
        "id": "{id}",
        "text": "{text}",
        "data_class": "{data_class}",
        # The reference store keeps synthetic documents out of search: canaries must not change answers.
        "tags": ["synthetic"],
    }
    paths: ResponsePaths = ResponsePaths()
    read_back: dict[str, tuple[str, ...]] = {}
    """Per region, URL templates with ``{id}`` answering 200 when the document is there and 404
    when it is not — or paths, asked at that region's entry point; defaults to each store
    replica's ``/v1/documents/{id}`` (reference stack)."""
    found: tuple[JsonAssertion, ...] = ()
    """For stores that answer a read-back with 200 either way (a search, a query over HTTP): what
    the JSON answer must hold for the document to be there — every assertion, with ``{id}`` in a
    string the canary's id. Empty: any 200 means found, 404 missing."""
    headers: Headers = {}
    """Request headers of your own (an API key): values may read ``${ENV_VAR}`` at run time."""

    @model_validator(mode="after")
    def _request_names_the_id(self) -> DataProbe:
        if not _mentions(self.request, "{id}"):
            raise ValueError("the request template must send the canary's `{id}`, to read it back")
        return self


class FreshnessProbe(ProbeSpec):
    """Read-your-writes through search: a document written, then asked about; the answer must cite
    it. What a frozen or lagging index (``stale-index``) takes away while writes still succeed."""

    kind: Literal["freshness"] = "freshness"
    rate: Annotated[float, Field(gt=0, le=100)] = 1.0
    timeout: Timeout = 5.0
    """For the write and the question together."""
    data_class: str = "internal"
    wait: Duration = 0.0
    """Seconds between the write's acknowledgement and the question: the freshness the service
    promises (an index refreshed every second: ``1s``; a question answered by another region than
    the write: at least the replication lag)."""
    write_url: str | None = None
    """As for ``data``: the edge by default (``/v1/documents``), a path through the edge, or a full URL."""
    ask_url: str | None = None
    """As for ``rag``: the edge by default (``/v1/ask``), a path through the edge, or a full URL."""
    write_request: dict[str, object] = {
        "id": "{id}",
        "title": "{text}",
        "text": "{text}",
        "data_class": "{data_class}",
    }
    """``{text}`` is two words found in no other document (the title too, so that nothing else
    of the document is searched), and ``{question}`` asks for them."""
    ask_request: dict[str, object] = {"question": "{question}", "data_class": "{data_class}"}
    paths: ResponsePaths = ResponsePaths()
    """Where the question's answer keeps its citations (and hops); the document's ``{id}`` must be
    among the citations."""
    headers: Headers = {}
    """Request headers of your own (an API key), on both requests: values may read ``${ENV_VAR}``."""

    @model_validator(mode="after")
    def _templates_carry_the_marker(self) -> FreshnessProbe:
        if not _mentions(self.write_request, "{text}") or not _mentions(self.write_request, "{id}"):
            raise ValueError("the write_request template must send the document's `{id}` and `{text}`")
        if not _mentions(self.ask_request, "{question}"):
            raise ValueError("the ask_request template must send the `{question}` that asks for it")
        return self


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


class KubernetesReadyProbe(ProbeSpec):
    """Ready replicas of each mapped workload in each region of a Kubernetes target, against the
    replicas the design places there."""

    kind: Literal["kubernetes-ready"] = "kubernetes-ready"
    target_file: str
    """The Kubernetes target file (docs/kubernetes.md); relative paths from the working directory."""
    kubeconfig: str | None = None
    """Default: the target file's, else ``$KUBECONFIG`` or ``~/.kube/config``."""
    components: tuple[str, ...] = ()
    """Only these components (default: every mapped one)."""
    regions: tuple[str, ...] = ()
    """Only these regions (default: every mapped one)."""
    min_ready: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Fraction of the placed replicas that must be ready, in each workload and region."""
    rate: Annotated[float, Field(gt=0, le=100)] = 1.0


class PrometheusProbe(ProbeSpec):
    """A PromQL instant query against a Prometheus server: it holds when every series of the
    answer is below ``below`` and/or above ``above`` — the team's SLO, read where it already lives."""

    kind: Literal["prometheus"] = "prometheus"
    url: Annotated[str, Field(pattern=r"^https?://")]
    """The Prometheus server (``http://127.0.0.1:9090``); the query goes to ``/api/v1/query``."""
    query: Annotated[str, Field(min_length=1, max_length=10_000)]
    below: float | None = None
    above: float | None = None
    empty: Literal["fail", "pass"] = "fail"
    """An answer with no series: a failure (the default — no data is not a healthy SLO), or a pass
    (for a query that lists what is wrong, such as firing alerts)."""
    rate: Annotated[float, Field(gt=0, le=100)] = 1.0
    headers: Headers = {}
    """Request headers of your own (a bearer token): values may read ``${ENV_VAR}`` at run time."""

    @model_validator(mode="after")
    def _a_threshold(self) -> PrometheusProbe:
        if self.below is None and self.above is None and self.empty == "fail":
            raise ValueError(
                "give `below`, `above` (or both), or `empty: pass` for a query that lists problems"
            )
        if self.below is not None and self.above is not None and self.above >= self.below:
            raise ValueError(f"`above` ({self.above:g}) must be less than `below` ({self.below:g})")
        return self


_KINDS: tuple[type[ProbeSpec], ...] = (
    HttpProbe,
    RagProbe,
    SovereigntyProbe,
    DataProbe,
    FreshnessProbe,
    CommandProbe,
    PythonProbe,
    KubernetesReadyProbe,
    PrometheusProbe,
)
PROBE_KINDS: dict[str, type[ProbeSpec]] = {str(cls.model_fields["kind"].default): cls for cls in _KINDS}

if TYPE_CHECKING:
    AnyProbe = ProbeSpec
else:
    AnyProbe = Annotated[Union[_KINDS], Field(discriminator="kind")]  # noqa: UP007
