"""The reference stack's knowledge base: Calmeau Solaire's documents and the golden question set.

Calmeau Solaire is a fictional floating-solar company; its internal documentation (product
datasheets, mooring procedures, maintenance, safety, incident reports, site handbooks,
runbooks, HR policies and R&D notes) is what the reference RAG stack answers questions
about. Each document carries a data class, so requests about confidential documents can be
held to a stricter sovereignty level than public ones. The golden set lists questions with
the short facts a correct answer must contain and the documents it must cite.

Both ship as package data (``documents/<id>.md`` with YAML front matter, and
``golden.yaml``). Parsing is pure; `load_documents` and `load_golden_set` read the package
data once and cache the result. Malformed data raises `ValueError` naming the file and the
entry at fault. Grading an answer against the golden set is the tool's business, not the
stack's: `bascule.probes.grading`.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

__all__ = [
    "DataClass",
    "Document",
    "GoldenQuestion",
    "load_documents",
    "load_golden_set",
    "most_sensitive",
    "parse_document",
    "parse_documents",
    "parse_golden_set",
]

DOCUMENT_ID_RE = re.compile(r"^[A-Z]{2,5}-\d{3}$")
QUESTION_ID_RE = re.compile(r"^Q-\d{3}$")

_FRONT_MATTER_RE = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n(.*)\Z", re.DOTALL)
_DOCUMENT_KEYS = frozenset({"id", "title", "data_class", "tags"})
_QUESTION_KEYS = frozenset({"id", "question", "data_class", "facts", "cites"})
_GOLDEN_SOURCE = "golden.yaml"


class DataClass(enum.StrEnum):
    """How sensitive a document is, from least to most sensitive (declaration order)."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"

    @property
    def rank(self) -> int:
        """0 for public, 1 for internal, 2 for confidential: compare sensitivity with it."""
        return list(DataClass).index(self)


def most_sensitive(classes: Iterable[DataClass]) -> DataClass:
    """The most sensitive of `classes`; a `ValueError` when there is none."""
    ranked = sorted(classes, key=lambda data_class: data_class.rank)
    if not ranked:
        raise ValueError("no data class given")
    return ranked[-1]


@dataclass(frozen=True)
class Document:
    """One knowledge-base document; `text` is its markdown body without the front matter."""

    id: str
    title: str
    data_class: DataClass
    tags: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class GoldenQuestion:
    """A question, the facts a correct answer contains and the documents it must cite.

    `data_class` is the class of the most sensitive cited document.
    """

    id: str
    question: str
    data_class: DataClass
    facts: tuple[str, ...]
    cites: tuple[str, ...]


def _parse_data_class(value: Any, where: str) -> DataClass:
    try:
        return DataClass(value)
    except ValueError:
        known = ", ".join(data_class.value for data_class in DataClass)
        raise ValueError(f"{where}: unknown data_class {value!r} (known: {known})") from None


def _require_text(value: Any, field: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {field} must be a non-empty string, got {value!r}")
    return value.strip()


def _require_texts(value: Any, field: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: {field} must be a non-empty list, got {value!r}")
    items = tuple(_require_text(item, f"each of {field}", where) for item in value)
    if len(set(items)) != len(items):
        raise ValueError(f"{where}: {field} lists an entry twice: {list(items)}")
    return items


def _check_keys(entry: Mapping[Any, Any], expected: frozenset[str], where: str) -> None:
    missing = sorted(expected - entry.keys())
    unknown = sorted(str(key) for key in entry.keys() - expected)
    if missing or unknown:
        raise ValueError(f"{where}: missing keys {missing}, unknown keys {unknown}")


def parse_document(source: str, raw: str) -> Document:
    """The document in `raw` (YAML front matter, then a markdown body); `source` names it."""
    match = _FRONT_MATTER_RE.match(raw)
    if match is None:
        raise ValueError(f"{source}: no front matter (a '---' line, YAML, then a '---' line)")
    try:
        header = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: front matter is not valid YAML: {exc}") from exc
    if not isinstance(header, dict):
        raise ValueError(f"{source}: front matter must be a mapping, got {header!r}")
    _check_keys(header, _DOCUMENT_KEYS, source)
    document_id = _require_text(header["id"], "id", source)
    if not DOCUMENT_ID_RE.match(document_id):
        raise ValueError(f"{source}: id {document_id!r} is not of the form AREA-NNN")
    tags = header["tags"]
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
        raise ValueError(f"{source}: tags must be a list of non-empty strings, got {tags!r}")
    return Document(
        id=document_id,
        title=_require_text(header["title"], "title", source),
        data_class=_parse_data_class(header["data_class"], source),
        tags=tuple(tags),
        text=_require_text(match.group(2), "body", source),
    )


def parse_documents(files: Mapping[str, str]) -> tuple[Document, ...]:
    """The documents of `files` (file name to content), sorted by id.

    Each file must be named after its document's id (``<id>.md``), which also makes ids unique.
    """
    documents = []
    for name in sorted(files):
        document = parse_document(name, files[name])
        if name != f"{document.id}.md":
            raise ValueError(f"{name}: file name must be {document.id}.md, after the id")
        documents.append(document)
    if not documents:
        raise ValueError("the knowledge base holds no document")
    return tuple(sorted(documents, key=lambda document: document.id))


def _parse_question(entry: Any, position: int, classes: Mapping[str, DataClass]) -> GoldenQuestion:
    where = f"{_GOLDEN_SOURCE} entry {position}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: must be a mapping, got {entry!r}")
    _check_keys(entry, _QUESTION_KEYS, where)
    question_id = _require_text(entry["id"], "id", where)
    if not QUESTION_ID_RE.match(question_id):
        raise ValueError(f"{where}: id {question_id!r} is not of the form Q-NNN")
    where = f"{_GOLDEN_SOURCE} {question_id}"
    cites = _require_texts(entry["cites"], "cites", where)
    unknown = [doc_id for doc_id in cites if doc_id not in classes]
    if unknown:
        raise ValueError(f"{where}: cites unknown documents {unknown}")
    data_class = _parse_data_class(entry["data_class"], where)
    expected = most_sensitive(classes[doc_id] for doc_id in cites)
    if data_class is not expected:
        raise ValueError(
            f"{where}: data_class is {data_class.value} but its most sensitive cited document "
            f"is {expected.value}"
        )
    return GoldenQuestion(
        id=question_id,
        question=_require_text(entry["question"], "question", where),
        data_class=data_class,
        facts=_require_texts(entry["facts"], "facts", where),
        cites=cites,
    )


def parse_golden_set(raw: str, documents: Iterable[Document]) -> tuple[GoldenQuestion, ...]:
    """The golden questions in the YAML list `raw`, checked against `documents`."""
    try:
        entries = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ValueError(f"{_GOLDEN_SOURCE}: not valid YAML: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{_GOLDEN_SOURCE}: must be a non-empty list of questions")
    classes = {document.id: document.data_class for document in documents}
    questions = [_parse_question(entry, position, classes) for position, entry in enumerate(entries, 1)]
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise ValueError(f"{_GOLDEN_SOURCE}: question id {question.id} appears twice")
        seen.add(question.id)
    return tuple(questions)


@functools.cache
def load_documents() -> tuple[Document, ...]:
    """Every document of the packaged knowledge base, sorted by id (read once, then cached)."""
    folder = resources.files(__name__) / "documents"
    files = {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".md")
    }
    return parse_documents(files)


@functools.cache
def load_golden_set() -> tuple[GoldenQuestion, ...]:
    """The packaged golden question set, in file order (read once, then cached)."""
    raw = (resources.files(__name__) / _GOLDEN_SOURCE).read_text(encoding="utf-8")
    return parse_golden_set(raw, load_documents())
