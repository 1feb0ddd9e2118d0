""" "Did you mean …?" for names a user mistyped."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

__all__ = ["did_you_mean", "unknown_name"]


def did_you_mean(name: str, candidates: Iterable[object]) -> str:
    """`` (did you mean 'dns'?)`` or an empty string."""
    close = get_close_matches(name, [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(what: str, name: str, candidates: Iterable[object]) -> str:
    names = [str(c) for c in candidates]
    listing = ", ".join(names) if names else "none"
    return f"unknown {what} {name!r}{did_you_mean(name, names)}; the design has: {listing}"
