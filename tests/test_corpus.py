"""The reference stack's knowledge base: documents, golden set, validation and answer grading.

Besides structure (counts, ids, classes, citations), these tests hold the corpus to what the
reference pipeline needs: every golden fact sits in one sentence of a cited document, as the
llm splits sentences, and the golden set is answerable by hashing-embedding retrieval followed
by the llm's extractive answer.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from bascule.probes.grading import grade_answer
from bascule.stack.corpus import (
    DataClass,
    Document,
    GoldenQuestion,
    load_documents,
    load_golden_set,
    most_sensitive,
    parse_document,
    parse_documents,
    parse_golden_set,
)
from bascule.stack.embedding import embed
from bascule.stack.prompt import Passage, extract_answer

# The llm's sentence rule (bascule.stack.prompt): terminal punctuation then whitespace, or a
# line break.
SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
DOCUMENTS = load_documents()
GOLDEN = load_golden_set()
BY_ID = {document.id: document for document in DOCUMENTS}


def sentences(text: str) -> list[str]:
    return [part.strip() for part in SENTENCE_SPLIT_RE.split(text) if part.strip()]


def normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def fact_sentences(question: GoldenQuestion, fact: str) -> list[tuple[str, str]]:
    return [
        (doc_id, sentence)
        for doc_id in question.cites
        for sentence in sentences(BY_ID[doc_id].text)
        if normalise(fact) in normalise(sentence)
    ]


def document_file(doc_id: str, data_class: str = "internal", body: str = "Some text.") -> str:
    return f"---\nid: {doc_id}\ntitle: A title\ndata_class: {data_class}\ntags: [a, b]\n---\n{body}\n"


# --- documents -------------------------------------------------------------------------------


def test_the_knowledge_base_has_enough_documents_of_each_class() -> None:
    counts = Counter(document.data_class for document in DOCUMENTS)
    assert len(DOCUMENTS) >= 42
    assert counts[DataClass.CONFIDENTIAL] >= 8
    assert counts[DataClass.PUBLIC] >= 6
    assert (
        counts[DataClass.INTERNAL]
        == len(DOCUMENTS) - counts[DataClass.CONFIDENTIAL] - (counts[DataClass.PUBLIC])
    )
    assert counts[DataClass.INTERNAL] > counts[DataClass.CONFIDENTIAL]


def test_document_ids_are_unique_and_follow_the_area_number_scheme() -> None:
    ids = [document.id for document in DOCUMENTS]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[A-Z]{2,5}-\d{3}", doc_id) for doc_id in ids), ids
    assert ids == sorted(ids)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: document.id)
def test_each_document_is_a_150_to_500_word_markdown_body(document: Document) -> None:
    words = len(document.text.split())
    assert 150 <= words <= 500, f"{document.id} has {words} words"
    assert not document.text.startswith("---"), "front matter must be stripped"
    assert document.title and document.tags


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda document: document.id)
def test_every_text_line_ends_a_sentence(document: Document) -> None:
    # The llm also splits at line breaks, so a sentence wrapped over two lines would be cut.
    for line in document.text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert stripped[-1] in ".!?:", f"{document.id}: {stripped!r}"


def test_load_documents_is_cached() -> None:
    assert load_documents() is load_documents()
    assert load_golden_set() is load_golden_set()


# --- golden set ------------------------------------------------------------------------------


def test_the_golden_set_has_enough_questions_with_unique_ids() -> None:
    ids = [question.id for question in GOLDEN]
    assert len(GOLDEN) >= 42
    assert len(ids) == len(set(ids))
    counts = Counter(question.data_class for question in GOLDEN)
    assert counts[DataClass.CONFIDENTIAL] >= 8
    assert counts[DataClass.PUBLIC] >= 1


def test_every_document_is_asked_about() -> None:
    cited = {doc_id for question in GOLDEN for doc_id in question.cites}
    assert cited == set(BY_ID)


@pytest.mark.parametrize("question", GOLDEN, ids=lambda question: question.id)
def test_each_fact_appears_in_one_sentence_of_a_cited_document(question: GoldenQuestion) -> None:
    assert all(doc_id in BY_ID for doc_id in question.cites)
    for fact in question.facts:
        assert fact_sentences(question, fact), f"{question.id}: no cited sentence holds {fact!r}"
    # A document cited alongside others must contribute a fact of its own.
    for doc_id in question.cites:
        assert any(
            source == doc_id for fact in question.facts for source, _ in fact_sentences(question, fact)
        ), f"{question.id}: {doc_id} contributes no fact"


@pytest.mark.parametrize("question", GOLDEN, ids=lambda question: question.id)
def test_a_question_neither_gives_away_its_facts_nor_cites_much(question: GoldenQuestion) -> None:
    assert 1 <= len(question.cites) <= 2
    assert question.question.endswith("?")
    for fact in question.facts:
        assert normalise(fact) not in normalise(question.question), (question.id, fact)


@pytest.mark.parametrize("question", GOLDEN, ids=lambda question: question.id)
def test_a_question_has_the_class_of_its_most_sensitive_cited_document(
    question: GoldenQuestion,
) -> None:
    ranks = [BY_ID[doc_id].data_class.rank for doc_id in question.cites]
    assert question.data_class.rank == max(ranks)


def test_the_golden_set_is_answerable_by_the_reference_pipeline() -> None:
    # Retrieval as the reference retriever does it: hashing embeddings, cosine, top 4 documents;
    # then the llm's extractive answer over those documents.
    matrix = np.stack([embed(f"{document.title}\n{document.text}") for document in DOCUMENTS])
    correct = []
    for question in GOLDEN:
        scores = matrix @ embed(question.question)
        top = np.argsort(-scores, kind="stable")[:4]
        passages = [Passage(DOCUMENTS[i].id, DOCUMENTS[i].title, DOCUMENTS[i].text) for i in top]
        answer = extract_answer(question.question, passages)
        if grade_answer(question, answer.text, answer.citations):
            correct.append(question.id)
    accuracy = len(correct) / len(GOLDEN)
    missed = sorted({question.id for question in GOLDEN} - set(correct))
    assert accuracy >= 0.9, f"accuracy {accuracy:.1%}, missed {missed}"


# --- grading ---------------------------------------------------------------------------------

QUESTION = GoldenQuestion(
    id="Q-900",
    question="What chain and pretension does a mooring line use?",
    data_class=DataClass.INTERNAL,
    facts=("22 mm grade 3 studless chain", "4 kN"),
    cites=("MOOR-002",),
)


def test_grade_answer_accepts_every_fact_and_citation() -> None:
    answer = "The bottom is a 22 mm Grade 3\n studless   chain. It is pulled to 4 kN."
    assert grade_answer(QUESTION, answer, ["MOOR-002"])
    assert grade_answer(QUESTION, answer, ("MOOR-003", "MOOR-002"))


def test_grade_answer_rejects_a_missing_fact_or_citation() -> None:
    assert not grade_answer(QUESTION, "It uses a 22 mm grade 3 studless chain.", ["MOOR-002"])
    assert not grade_answer(QUESTION, "22 mm grade 3 studless chain at 4 kN.", ["MOOR-003"])
    assert not grade_answer(QUESTION, "22 mm grade 3 studless chain at 4 kN.", [])


@pytest.mark.parametrize(
    ("fact", "answer", "expected"),
    [
        ("2 m", "within 12 m of the array", False),
        ("2 m", "a wave height of 2.5 m", False),
        ("2 m", "a strip 2 m wide.", True),
        ("red padlock", "a covered padlock", False),
        ("1,000", "1,000,000 floats", False),
        ("98.6 %", "is 98.6 %, and", True),
        ("3.2 %", "budget is 3.2 %.", True),
        ("Élodie Marchetti", "ÉLODIE   MARCHETTI manages it", True),
    ],
)
def test_grade_answer_matches_whole_words_and_numbers(fact: str, answer: str, expected: bool) -> None:
    question = GoldenQuestion("Q-901", "Which?", DataClass.PUBLIC, (fact,), ("PRD-001",))
    assert grade_answer(question, answer, ["PRD-001"]) is expected


def test_the_cited_sentences_pass_and_a_non_answer_fails_for_each_golden_question() -> None:
    for question in GOLDEN:
        cited = [sentence for fact in question.facts for _, sentence in fact_sentences(question, fact)]
        assert grade_answer(question, " ".join(cited), question.cites), question.id
        assert not grade_answer(question, "I do not know.", question.cites), question.id


# --- data classes and validation -------------------------------------------------------------


def test_data_classes_rank_by_sensitivity() -> None:
    assert [data_class.value for data_class in DataClass] == ["public", "internal", "confidential"]
    assert DataClass.PUBLIC.rank < DataClass.INTERNAL.rank < DataClass.CONFIDENTIAL.rank
    assert most_sensitive([DataClass.INTERNAL, DataClass.PUBLIC]) is DataClass.INTERNAL
    assert most_sensitive([DataClass.CONFIDENTIAL, DataClass.PUBLIC]) is DataClass.CONFIDENTIAL
    with pytest.raises(ValueError, match="no data class"):
        most_sensitive([])


def test_parse_document_reads_front_matter_and_body() -> None:
    document = parse_document("TST-001.md", document_file("TST-001", "confidential", "## H\n\nBody."))
    assert document.id == "TST-001"
    assert document.title == "A title"
    assert document.data_class is DataClass.CONFIDENTIAL
    assert document.tags == ("a", "b")
    assert document.text == "## H\n\nBody."


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("no front matter at all", "no front matter"),
        (document_file("TST-001", "secret"), "unknown data_class 'secret'"),
        (document_file("x1"), "not of the form AREA-NNN"),
        (document_file("TST-001").replace("tags: [a, b]", "tags: a"), "tags must be a list"),
        (document_file("TST-001").replace("title: A title\n", ""), "missing keys \\['title'\\]"),
        (document_file("TST-001").replace("tags:", "owner: me\ntags:"), "unknown keys \\['owner'\\]"),
        (document_file("TST-001", body=""), "body must be a non-empty string"),
        ("---\n[unclosed\n---\nBody.\n", "not valid YAML"),
    ],
)
def test_parse_document_rejects_malformed_files(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_document("TST-001.md", raw)


def test_parse_documents_requires_file_names_after_ids() -> None:
    with pytest.raises(ValueError, match=r"TST-002\.md: file name must be TST-001\.md"):
        parse_documents({"TST-002.md": document_file("TST-001")})
    with pytest.raises(ValueError, match="no document"):
        parse_documents({})


GOLDEN_DOCUMENTS = parse_documents(
    {"TST-001.md": document_file("TST-001", "public"), "TST-002.md": document_file("TST-002", "confidential")}
)


def golden_entry(**fields: str) -> str:
    entry = {
        "id": "Q-001",
        "question": "Which?",
        "data_class": "confidential",
        "facts": "[a fact]",
        "cites": "[TST-001, TST-002]",
    } | fields
    return "- " + "\n  ".join(f"{key}: {value}" for key, value in entry.items()) + "\n"


def test_parse_golden_set_reads_questions() -> None:
    (question,) = parse_golden_set(golden_entry(), GOLDEN_DOCUMENTS)
    assert question == GoldenQuestion(
        "Q-001", "Which?", DataClass.CONFIDENTIAL, ("a fact",), ("TST-001", "TST-002")
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (golden_entry(cites="[TST-001, TST-404]"), r"cites unknown documents \['TST-404'\]"),
        (golden_entry(data_class="public"), "most sensitive cited document is confidential"),
        (golden_entry(data_class="top-secret"), "unknown data_class"),
        (golden_entry(facts="[]"), "facts must be a non-empty list"),
        (golden_entry(cites="[TST-001, TST-001]"), "lists an entry twice"),
        (golden_entry(id="question-1"), "not of the form Q-NNN"),
        (golden_entry() + golden_entry(), "Q-001 appears twice"),
        ("{}", "non-empty list"),
        ("- just a string\n", "must be a mapping"),
    ],
)
def test_parse_golden_set_rejects_malformed_entries(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_golden_set(raw, GOLDEN_DOCUMENTS)
