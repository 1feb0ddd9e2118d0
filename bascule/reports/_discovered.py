"""One line per discovered dependency — a host outside the design the stack reached — as every
report format shows it (summary.md, report.html, JUnit, compare). Pure."""

from __future__ import annotations

from bascule.reports._format import as_float
from bascule.reports.model import DiscoveredDependency, Result

__all__ = ["describe_dependency", "discovered_lines"]


def describe_dependency(dep: DiscoveredDependency) -> str:
    """``sts.amazonaws.com — Amazon Web Services (aws), US law, foreign: reached from scaleway/fr-par
    (api-scaleway-fr-par-0) by confidential 12×, internal 9×; 12 violations; 21 requests, first at
    1.20 s, last at 9.80 s.``"""
    if dep.provider is None:
        owner = "operator unknown to bascule's endpoint catalog, jurisdiction unknown, level unknown"
    else:
        owner = f"{dep.operator or dep.provider} ({dep.provider}), {dep.jurisdiction} law, {dep.sovereignty}"
    text = f"{dep.host} — {owner}"
    where = ", ".join(dep.regions)
    who = ", ".join(dep.askers)
    if where or who:
        text += f": reached from {where or 'an unknown region'}" + (f" ({who})" if who else "")
    if dep.classes:
        text += " by " + ", ".join(f"{klass} {n}×" for klass, n in dep.classes.items())
    if dep.violations:
        text += f"; {dep.violations} violation{'s' if dep.violations != 1 else ''}"
    seen = [
        f"{n} {noun}{'s' if n != 1 else ''}"
        for n, noun in (
            (dep.requests, "request"),
            (dep.tunnels, "HTTPS tunnel"),
            (dep.lookups, "DNS lookup"),
            (dep.spans, "client span"),
        )
        if n
    ]
    if seen:
        text += "; " + ", ".join(seen)
    if dep.unattributed:
        text += f", {dep.unattributed} tied to no request (what data went there is unknown)"
    if dep.unanswered:
        text += f", {dep.unanswered} of requests whose answer never came (not judged)"
    if dep.at_start:
        text += f", {dep.at_start} before any request (the stack starting)"
    first, last = as_float(dep.first), as_float(dep.last)
    if first is not None and last is not None:
        text += f"; first at {first:.2f} s, last at {last:.2f} s"
    return text + "."


def discovered_lines(result: Result) -> list[str]:
    """One line per discovered dependency, the most reached first."""
    return [describe_dependency(d) for d in result.discovered]
