"""The bodies the store accepts, validated at the boundary."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from bascule.stack.corpus import DataClass
from bascule.stack.embedding import DIMENSIONS
from bascule.stack.store.config import BATCH_MAX_ENTRIES

__all__ = ["LOOKUP_MAX_IDS", "MAX_K", "DocumentIn", "IndexIn", "LookupIn", "ReplicateIn", "SearchIn"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_TEXT_CHARS = 200_000
MAX_K = 100
LOOKUP_MAX_IDS = 1000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


_Id = Annotated[str, Field(pattern=ID_PATTERN)]
_Tag = Annotated[str, Field(min_length=1, max_length=100)]
_Title = Annotated[str, Field(max_length=1000)]
_Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_not_blank)]


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: _Id | None = None
    title: _Title | None = None
    text: _Text
    data_class: DataClass
    tags: Annotated[list[_Tag], Field(max_length=64)] = []


class WireDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: _Id
    title: _Title
    text: _Text
    data_class: DataClass
    tags: Annotated[list[_Tag], Field(max_length=64)]
    written_at: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    seq: Annotated[int, Field(ge=1)]
    doc: WireDocument


class ReplicateIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    origin: Annotated[str, Field(min_length=1, max_length=300)]
    entries: Annotated[list[EntryIn], Field(max_length=10 * BATCH_MAX_ENTRIES)]


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: Annotated[str, Field(max_length=10_000)] | None = None
    vector: (
        Annotated[
            list[Annotated[float, Field(allow_inf_nan=False)]],
            Field(min_length=DIMENSIONS, max_length=DIMENSIONS),
        ]
        | None
    ) = None
    k: Annotated[int, Field(ge=1, le=MAX_K)] = 5
    max_class: DataClass

    @model_validator(mode="after")
    def _query_or_vector(self) -> SearchIn:
        if (self.query is None) == (self.vector is None):
            raise ValueError("give exactly one of query and vector")
        return self


class LookupIn(BaseModel):
    """``POST /v1/documents/lookup``: which of these ids this store holds."""

    model_config = ConfigDict(extra="ignore")
    ids: Annotated[list[_Id], Field(min_length=1, max_length=LOOKUP_MAX_IDS)]


class IndexIn(BaseModel):
    """``POST /v1/admin/index``: freeze the index (the stale-index fault) or let it catch up."""

    model_config = ConfigDict(extra="forbid")

    frozen: bool
    catch_up: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    """Unfreezing: documents a second the index takes in, oldest first (default: all at once)."""
