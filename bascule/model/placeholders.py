"""The placeholders of an own service's command (``{port}``, ``{kv.url}``, ``{kv.dns_url}``,
``{llm@aws/us-east-1.url}``…): which names a template uses, which callees it asks for by DNS name,
and what is wrong with the ones a design cannot fill. Pure; the
design (`bascule.model.design`) gives the templates, the callees and where each is placed, and
the stack (`bascule.stack.layout`) fills them."""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence

from bascule.errors import PathElement
from bascule.model.suggest import unknown_name

__all__ = [
    "CALLEE_FIELDS",
    "NAME_FIELDS",
    "OWN_PLACEHOLDERS",
    "named_callees",
    "placeholder_problems",
    "placeholders",
    "regional_callees",
]

OWN_PLACEHOLDERS = ("port", "host", "region", "replica", "python", "otlp.url", "data_dir")
NAME_FIELDS = ("dns_url", "dns_host")
"""The fields that give a callee by its name in the run's DNS zone, not by address: a service that
uses one is started with a resolver that asks bascule's DNS server."""
CALLEE_FIELDS = ("url", "host", "port", *NAME_FIELDS)

Where = tuple[PathElement, ...]


def placeholders(text: str) -> list[str]:
    """The ``{…}`` field names in `text` (``{{`` and ``}}`` are literal braces). Raises
    ValueError on a malformed template."""
    return [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]


def regional_callees(texts: Iterable[str]) -> set[tuple[str, str]]:
    """The ``(component, region)`` pairs the ``{NAME@REGION.…}`` placeholders of `texts` name
    (a malformed template names none: `placeholder_problems` reports it)."""
    found: set[tuple[str, str]] = set()
    for text in texts:
        try:
            fields = placeholders(text)
        except ValueError:
            continue
        for field in fields:
            head = field.split(".", 1)[0]
            if "@" in head:
                name, region = head.split("@", 1)
                found.add((name, region))
    return found


def named_callees(texts: Iterable[str]) -> set[str]:
    """The callees `texts` ask for by DNS name (``{NAME.dns_url}``, ``{NAME@REGION.dns_host}``…), as
    written before the field: ``NAME`` or ``NAME@REGION`` (a malformed template names none)."""
    found: set[str] = set()
    for text in texts:
        try:
            fields = placeholders(text)
        except ValueError:
            continue
        for field in fields:
            head, _, attribute = field.rpartition(".")
            if head and attribute in NAME_FIELDS:
                found.add(head)
    return found


def placeholder_problems(
    texts: Sequence[tuple[Where, str]],
    calls: Sequence[str],
    placed: Mapping[str, Sequence[str]],
    *,
    replication: bool = False,
) -> list[tuple[Where, str]]:
    """What is wrong with each template of `texts` (by where it is), given the components the
    service `calls`, the regions each component of the design is `placed` in, and whether it
    declares `replication` (then ``{replication.url}``, ``.host`` and ``.port`` are known)."""
    allowed = [*OWN_PLACEHOLDERS, *(f"{c}.{f}" for c in calls for f in CALLEE_FIELDS)]
    if replication:
        allowed += [f"replication.{f}" for f in CALLEE_FIELDS]
    problems: list[tuple[Where, str]] = []
    for where, text in texts:
        try:
            fields = placeholders(text)
        except ValueError as exc:
            problems.append((where, f"{text!r}: {exc} (write {{{{ and }}}} for literal braces)"))
            continue
        for field in fields:
            if field in allowed:
                continue
            regional = _regional_problem(field, calls, placed)
            if regional is None:
                continue
            problems.append((where, regional or _unknown_placeholder(field, allowed)))
    return problems


def _unknown_placeholder(field: str, allowed: list[str]) -> str:
    return f"unknown placeholder {{{field}}}; known here: " + ", ".join(f"{{{a}}}" for a in allowed)


def _regional_problem(field: str, calls: Sequence[str], placed: Mapping[str, Sequence[str]]) -> str | None:
    """What is wrong with a ``{NAME@REGION.FIELD}`` placeholder: None when it is right, "" when it
    is not of that form at all (then it is simply unknown)."""
    head, _, attribute = field.partition(".")
    if "@" not in head:
        if head in placed and head not in calls and attribute in CALLEE_FIELDS:
            return f"{{{field}}}: {head} is not in calls; add it there to call it"
        return ""
    callee, _, region = head.partition("@")
    if attribute not in CALLEE_FIELDS:
        fields = ", ".join(f".{f}" for f in CALLEE_FIELDS[:-1])
        return f"{{{field}}}: give {fields} or .{CALLEE_FIELDS[-1]} after {head}"
    if callee not in placed:
        return f"{{{field}}}: " + unknown_name("component", callee, placed)
    if callee not in calls:
        return f"{{{field}}}: {callee} is not in calls; add it there to call it"
    if region not in placed[callee]:
        return f"{{{field}}}: {callee} is not placed in {region!r}; it runs in " + ", ".join(placed[callee])
    return None
