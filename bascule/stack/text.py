"""Words of a text, as every part of the reference stack sees them: case-folded content tokens
without stop words. Kept free of numpy so that services that only read text (the gateway, the
llm's chat path) start fast."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["STOP_WORDS", "tokenize"]

_STOP_WORDS_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m re ve
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())

# A word is a run of letters/digits, optionally joined by "-", "." or "/" to another run, so
# "sf-220", "3.5" and "v1/v2" stay one token while sentence punctuation is dropped.
_WORD_RE = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Content word tokens of `text`, case-folded, in order, stop words removed."""
    normalised = unicodedata.normalize("NFKC", text).casefold()
    return [word for word in _WORD_RE.findall(normalised) if word not in STOP_WORDS]
