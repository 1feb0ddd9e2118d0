"""The ``rag`` probe: a golden question asked as a user would; the answer must state its facts and
cite its documents.

The question comes from the reference knowledge base's golden set (one by id, or each question of
the probe's data class in turn), or is the user's own with its facts and citations given in the
spec. The request is the spec's template with ``{question}`` and ``{data_class}`` filled in; the
answer, citations, hops and degraded flag are read where `ResponsePaths` says, so the probe fits a
service shaped differently from the reference gateway. Reading and grading are pure
(`read_answer`, `grade`, `rag_sample`); `RagProbe.sample` sends.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import httpx

from bascule.errors import ProbeError
from bascule.journal.samples import Hop, RequestSample
from bascule.model import probes as specs
from bascule.model.design import Design
from bascule.probes.base import (
    MISSING,
    Destination,
    Probe,
    ProbeContext,
    Reply,
    complete_hops,
    new_request_id,
    read_hops,
    read_path,
    register,
    render_template,
)
from bascule.probes.grading import grade_answer
from bascule.stack.corpus import DataClass, GoldenQuestion, load_golden_set
from bascule.tracecontext import new_trace_id

__all__ = [
    "Answer",
    "RagProbe",
    "check_data_class",
    "grade",
    "rag_sample",
    "read_answer",
    "select_questions",
]


@dataclass(frozen=True)
class Answer:
    text: str
    citations: tuple[str, ...]
    hops: tuple[Hop, ...]
    degraded: bool


def read_answer(reply: Reply, paths: specs.ResponsePaths) -> Answer | str:
    """The answer in a successful reply, or why none can be read."""
    text = read_path(reply.body, paths.answer)
    if not isinstance(text, str):
        found = "nothing" if text is MISSING else type(text).__name__
        return f"no answer text at {paths.answer!r} (found {found})"
    cited = read_path(reply.body, paths.citations)
    if cited is MISSING:
        citations: tuple[str, ...] = ()
    elif isinstance(cited, list) and all(isinstance(c, str | int) for c in cited):
        citations = tuple(str(c) for c in cited)
    else:
        return f"citations at {paths.citations!r} are not a list of ids"
    degraded = read_path(reply.body, paths.degraded) is True
    return Answer(text, citations, read_hops(reply.body, reply.headers, paths), degraded)


def grade(question: GoldenQuestion, answer: Answer) -> str | None:
    """What a wrong answer lacks, or ``None`` when it is correct (`grade_answer`)."""
    if grade_answer(question, answer.text, answer.citations):
        return None
    missing_facts = [
        fact
        for fact in question.facts
        if not grade_answer(replace(question, facts=(fact,), cites=()), answer.text, ())
    ]
    missing_cites = [doc for doc in question.cites if doc not in answer.citations]
    parts = []
    if missing_facts:
        parts.append(f"does not state {missing_facts}")
    if missing_cites:
        parts.append(f"does not cite {missing_cites}")
    return f"{question.id}: the answer " + " and ".join(parts)


def rag_sample(
    *,
    source: str,
    question: GoldenQuestion,
    data_class: str,
    reply: Reply,
    paths: specs.ResponsePaths,
    design: Design,
    started: float,
    latency: float,
    request_id: str,
    trace_id: str | None = None,
) -> RequestSample:
    """The sample for one golden question and the reply it got. ``ok`` says the service answered;
    ``correct`` says the answer was right, and ``error`` then says what it lacked."""
    base = RequestSample(
        source=source,
        kind="ask",
        started=started,
        latency=latency,
        ok=False,
        status=reply.status,
        data_class=data_class,
        entry_region=reply.entry_region,
        request_id=request_id,
        trace_id=trace_id,
    )
    if not reply.ok:
        return replace(base, error=reply.error or f"HTTP {reply.status}")
    answer = read_answer(reply, paths)
    if isinstance(answer, str):
        return replace(base, error=answer)
    hops = complete_hops(answer.hops, design)
    wrong = grade(question, answer)
    return replace(
        base,
        ok=True,
        entry_region=base.entry_region or (hops[0].region if hops else None),
        hops=hops,
        correct=wrong is None,
        degraded=answer.degraded,
        error=wrong,
    )


def _own_question(text: str, data_class: str, facts: Sequence[str], cites: Sequence[str]) -> GoldenQuestion:
    # grade_answer reads only facts and cites; the class is set for completeness, most sensitive
    # when the user's class is not one of the knowledge base's.
    try:
        level = DataClass(data_class)
    except ValueError:
        level = DataClass.CONFIDENTIAL
    return GoldenQuestion("own", text, level, tuple(facts), tuple(cites))


def select_questions(spec: specs.RagProbe, golden: Sequence[GoldenQuestion]) -> tuple[GoldenQuestion, ...]:
    """The questions the probe asks in turn. Raises `ProbeError` when there is none."""
    if spec.facts or spec.cites:
        assert spec.question is not None
        return (_own_question(spec.question, spec.data_class, spec.facts, spec.cites),)
    if spec.question is not None:
        chosen = [q for q in golden if q.id == spec.question]
        if not chosen:
            raise ProbeError(
                f"question {spec.question!r} is not in the golden set; to ask a question of your own, "
                "give its `facts` and `cites`"
            )
        return tuple(chosen)
    of_class = tuple(q for q in golden if q.data_class.value == spec.data_class)
    if not of_class:
        classes = sorted({q.data_class.value for q in golden})
        raise ProbeError(
            f"the golden set has no question of class {spec.data_class!r} (it has {', '.join(classes)}); "
            "name a `question` or give one of your own"
        )
    return of_class


def check_data_class(data_class: str, design: Design) -> None:
    if data_class not in design.data_classes:
        known = ", ".join(design.data_classes)
        raise ProbeError(f"data class {data_class!r} is not in the design (it has: {known})")


@register
class RagProbe(Probe[specs.RagProbe]):
    kind = "rag"
    spec_type = specs.RagProbe
    sample_kind = "ask"

    def __init__(self, spec: specs.RagProbe, context: ProbeContext, name: str | None = None) -> None:
        super().__init__(spec, context, name)
        check_data_class(spec.data_class, context.design)
        self.questions = select_questions(spec, load_golden_set())
        self.destination = Destination(spec.url, "/v1/ask", context, spec.paths, self.headers)
        self._turn = itertools.count()

    @property
    def data_class(self) -> str:
        return self.spec.data_class

    async def sample(self, client: httpx.AsyncClient, now: float) -> RequestSample:
        spec = self.spec
        question = self.questions[next(self._turn) % len(self.questions)]
        payload = render_template(
            spec.request, {"question": question.question, "data_class": spec.data_class}
        )
        trace_id = new_trace_id()
        reply = await self.destination.post(client, payload, spec.data_class, spec.timeout, trace_id=trace_id)
        return rag_sample(
            source=self.name,
            question=question,
            data_class=spec.data_class,
            reply=reply,
            paths=spec.paths,
            design=self.context.design,
            started=now,
            latency=time.monotonic() - now,
            request_id=new_request_id(),
            trace_id=trace_id,
        )
