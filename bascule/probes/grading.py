"""Grading an answer against the reference knowledge base's golden set.

A correct answer states every fact of its golden question and cites every document the
question names. The probes (`rag`) and the load generator grade with the same function, so a
run's correctness means one thing wherever it is measured. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bascule.stack.corpus import GoldenQuestion

__all__ = ["grade_answer"]


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _states(fact: str, said: str) -> bool:
    # Bounded on both sides so that "2 m" is not found inside "12 m" or "2.5 m", "red" inside
    # "covered", nor "1,000" inside "1,000,000": a wrong answer must not pass by accident.
    pattern = rf"(?<!\w)(?<!\d[.,]){re.escape(_normalise(fact))}(?!\w)(?![.,]\d)"
    return re.search(pattern, said) is not None


def grade_answer(question: GoldenQuestion, answer: str, citations: Sequence[str]) -> bool:
    """Whether `answer` states every fact of `question` and `citations` name every cited doc.

    A fact is stated when it appears in the answer, case-insensitively and with runs of
    whitespace collapsed, as whole words and whole numbers (not inside a longer word or
    number). Extra citations are allowed.
    """
    said = _normalise(answer)
    states_facts = all(_states(fact, said) for fact in question.facts)
    return states_facts and set(question.cites).issubset(citations)
