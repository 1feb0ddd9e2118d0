"""The gateway's wire: the bodies it accepts and reads, its error bodies, the degraded answer,
and the ``served_by`` hops it records."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.responses import JSONResponse

from bascule.model.catalog import Sovereignty
from bascule.model.design import Design, region_slug
from bascule.stack.prompt import NO_CONTEXT_ANSWER, Passage, parse_citations
from bascule.stack.serve import SERVED_BY_HEADER

__all__ = [
    "AskRequest",
    "ChatResponse",
    "DocumentRequest",
    "HopIn",
    "RetrieveResponse",
    "error_response",
    "hop_from_header",
    "retrieval_only_answer",
    "served_by_hop",
    "validation_error",
]

_DEGRADED_SENTENCES = 2
_FIRST_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_UNKNOWN_REGION = "unknown"

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    data_class: _Text
    tenant: str | None = None


_Tag = Annotated[str, Field(min_length=1, max_length=100)]


class DocumentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: _Text | None = None
    title: str | None = None
    text: _Text
    data_class: _Text
    tags: (
        Annotated[list[Annotated[str, Field(min_length=1, max_length=100)]], Field(max_length=64)] | None
    ) = None
    """Passed to the store; ``synthetic`` keeps test writes out of search results."""


class HopIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    component: str
    region: str | None = None
    replica: str | None = None


class PassageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    doc_id: str
    title: str = ""
    text: str
    score: float = 0.0


class RetrieveResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    passages: list[PassageIn]
    served_by: list[HopIn] = []


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    content: str | list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: ChatMessage


class ChatResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    choices: Annotated[list[ChatChoice], Field(min_length=1)]


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message, **extra}, status_code=status)


def validation_error(exc: ValidationError) -> JSONResponse:
    details = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False)
    ]
    return error_response(422, "invalid-request", "the request body is not valid", detail=details)


# --- the degraded answer ---------------------------------------------------------------------


def retrieval_only_answer(
    passages: Sequence[Passage], limit: int = _DEGRADED_SENTENCES
) -> tuple[str, tuple[str, ...]]:
    """The first sentence of each of the first `limit` passages, each cited as ``[doc:ID]``,
    and the cited ids: what the gateway answers when no llm can."""
    parts = []
    for passage in passages[:limit]:
        first = _FIRST_SENTENCE_RE.split(passage.text.strip(), maxsplit=1)[0].strip()
        if first:
            parts.append(f"{first} [doc:{passage.doc_id}]")
    if not parts:
        return NO_CONTEXT_ANSWER, ()
    text = " ".join(parts)
    return text, parse_citations(text)


def served_by_hop(design: Design, component: str, region: str | None, **extra: str | None) -> dict[str, str]:
    """A ``served_by`` entry; `region` may be a region id, its slug (``aws-us-east-1``), or None
    when the upstream did not say — recorded as ``unknown`` at the ``foreign`` level."""
    slugs = {region_slug(r): r for r in design.region_map}
    region_id = slugs.get(region, region) if region else _UNKNOWN_REGION
    try:
        known = design.region(region_id)
        provider, jurisdiction, level = known.provider, known.jurisdiction, known.sovereignty
    except KeyError:
        provider, jurisdiction, level = region_id.split("/", 1)[0], "", Sovereignty.FOREIGN
    hop = {
        "component": component,
        "region": region_id,
        "provider": provider,
        "jurisdiction": jurisdiction,
        "sovereignty": level.value,
    }
    hop.update({key: value for key, value in extra.items() if value is not None})
    return hop


def hop_from_header(response: httpx.Response) -> HopIn | None:
    raw = response.headers.get(SERVED_BY_HEADER)
    if raw is None:
        return None
    try:
        return HopIn.model_validate_json(raw)
    except ValidationError:
        return None
