"""The prompt contract between the reference gateway and the llm, and the llm's extractive answer.

The gateway renders a question and its retrieved passages into Mistral chat messages with
`build_messages`; the prompt reads naturally, so the gateway can also be pointed at a real
Mistral endpoint. The reference llm reads the same messages back with `parse_context` and
"generates" with `extract_answer`: it picks the passage sentences that share the most (and the
rarest) content words with the question and cites each with a `[doc:ID]` marker, which
`parse_citations` reads back. Everything here is pure.

Context layout inside the system message (after the instructions)::

    Context:
    [doc:ID] title
    text

    [doc:ID2] title
    text

A document id never contains whitespace or ``]``, and a passage text line must not itself
start with ``[doc:`` (it would read as the start of a new passage). Titles and texts are
stripped of surrounding whitespace when rendered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bascule.stack.text import tokenize

__all__ = [
    "CITATION_RE",
    "CONTEXT_HEADER",
    "NOT_IN_CONTEXT_ANSWER",
    "NO_CONTEXT_ANSWER",
    "SYSTEM_INSTRUCTIONS",
    "ExtractedAnswer",
    "Passage",
    "build_messages",
    "extract_answer",
    "message_text",
    "parse_citations",
    "parse_context",
]

SYSTEM_INSTRUCTIONS = (
    "You answer questions about the company's internal documentation. Answer only from the "
    "context below, in at most two sentences. After each sentence, cite the document it comes "
    "from as [doc:ID]. If the context does not contain the answer, say that you do not know."
)
CONTEXT_HEADER = "Context:"
NO_CONTEXT_ANSWER = "I have no context to answer from."
NOT_IN_CONTEXT_ANSWER = "The context does not contain the answer."

CITATION_RE = re.compile(r"\[doc:([^\]\s]+)\]")

_HEADER_RE = re.compile(rf"^{re.escape(CONTEXT_HEADER)}[ \t]*$", re.MULTILINE)
_BLOCK_RE = re.compile(r"^\[doc:([^\]\s]+)\][ \t]?(.*)$", re.MULTILINE)
# Sentence ends: terminal punctuation followed by whitespace, or a line break.
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


@dataclass(frozen=True)
class Passage:
    """One retrieved document chunk as the llm sees it."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class ExtractedAnswer:
    """An extractive answer: its text with inline `[doc:ID]` markers and the ids it cites."""

    text: str
    citations: tuple[str, ...]


def build_messages(question: str, passages: Sequence[Passage]) -> list[dict[str, str]]:
    """Mistral chat messages asking `question` over `passages`: a system and a user message."""
    blocks = [
        f"[doc:{passage.doc_id}] {passage.title.strip()}\n{passage.text.strip()}" for passage in passages
    ]
    system = f"{SYSTEM_INSTRUCTIONS}\n\n{CONTEXT_HEADER}\n" + "\n\n".join(blocks)
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": question.strip()},
    ]


def message_text(content: Any) -> str:
    """The text of a message `content`: a string, or the text chunks of a Mistral chunk list."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = [
            str(chunk.get("text", ""))
            for chunk in content
            if isinstance(chunk, Mapping) and chunk.get("type", "text") == "text"
        ]
        return "".join(parts)
    return ""


def _parse_blocks(context: str) -> list[Passage]:
    starts = list(_BLOCK_RE.finditer(context))
    passages = []
    for position, match in enumerate(starts):
        end = starts[position + 1].start() if position + 1 < len(starts) else len(context)
        text = context[match.end() : end].strip()
        passages.append(Passage(doc_id=match.group(1), title=match.group(2).strip(), text=text))
    return passages


def parse_context(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[Passage]]:
    """The question and the passages carried by `messages` (the inverse of `build_messages`).

    The question is the last user message; passages come from every system or user message
    holding a ``Context:`` section. A prompt without one yields no passages, and a user
    message that carries the context itself contributes only the text before it as question.
    """
    question = ""
    passages: list[Passage] = []
    for message in messages:
        role = message.get("role")
        if role not in ("system", "user"):
            continue
        text = message_text(message.get("content"))
        header = _HEADER_RE.search(text)
        if header is not None:
            passages.extend(_parse_blocks(text[header.end() :]))
            text = text[: header.start()]
        if role == "user":
            question = text.strip()
    return question, passages


def _sentences(text: str) -> list[str]:
    # Markdown headings share a section's words but answer nothing: they are never quoted.
    parts = (part.strip() for part in _SENTENCE_SPLIT_RE.split(text))
    return [part for part in parts if part and not part.startswith("#")]


def extract_answer(question: str, passages: Sequence[Passage], max_sentences: int = 2) -> ExtractedAnswer:
    """The `max_sentences` passage sentences most relevant to `question`, each cited.

    A sentence scores the idf-weighted sum of the question's content tokens it contains (idf
    over `passages`, so a word every passage shares counts least); ties go to the earlier
    passage, then the earlier sentence. The chosen sentences keep their document order.
    """
    if max_sentences < 1:
        raise ValueError(f"max_sentences must be at least 1, got {max_sentences}")
    if not passages:
        return ExtractedAnswer(text=NO_CONTEXT_ANSWER, citations=())
    question_tokens = set(tokenize(question))
    passage_tokens = [set(tokenize(f"{p.title} {p.text}")) for p in passages]
    count = len(passages)
    idf = {
        token: math.log((1 + count) / (1 + sum(token in tokens for tokens in passage_tokens))) + 1.0
        for token in question_tokens
    }
    candidates: list[tuple[float, int, int, str]] = []
    for passage_index, passage in enumerate(passages):
        for sentence_index, sentence in enumerate(_sentences(passage.text)):
            shared = question_tokens.intersection(tokenize(sentence))
            score = sum(idf[token] for token in shared)
            if score > 0.0:
                candidates.append((score, passage_index, sentence_index, sentence))
    if not candidates:
        return ExtractedAnswer(text=NOT_IN_CONTEXT_ANSWER, citations=())
    best = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))[:max_sentences]
    chosen = sorted(best, key=lambda c: (c[1], c[2]))
    parts = [f"{sentence} [doc:{passages[index].doc_id}]" for _, index, _, sentence in chosen]
    citations = tuple(dict.fromkeys(passages[index].doc_id for _, index, _, _ in chosen))
    return ExtractedAnswer(text=" ".join(parts), citations=citations)


def parse_citations(text: str) -> tuple[str, ...]:
    """The document ids cited in `text` as `[doc:ID]`, each once, in order of first mention."""
    return tuple(dict.fromkeys(CITATION_RE.findall(text)))
