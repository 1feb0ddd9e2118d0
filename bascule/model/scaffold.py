"""What ``bascule init`` writes: a design and a scenario for a service of the user's own. Pure:
answers in, YAML text out (the CLI asks, checks and writes).

The scenario is a start, meant to be edited: an ``http`` probe of the service's health path through
the edge, a blackhole of its primary region's entry for 10 s and — for a service bascule starts —
a crash of it, and the objectives asked for. Correctness and durability are weighted 0 until the
user adds ``rag`` and ``data`` probes for the service's own request shapes (docs/own-services.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from bascule.model.durations import format_duration

__all__ = ["InitAnswers", "render_design", "render_scenario", "slug"]


@dataclass(frozen=True)
class InitAnswers:
    name: str
    """The service's component name (lower-case, dashes)."""
    regions: tuple[str, ...]
    """In routing order: the first is the primary."""
    command: tuple[str, ...] = ()
    """argv with placeholders ({port}, {python}…), or empty for a service already running."""
    urls: tuple[str, ...] = ()
    """For a service already running: its base URL in each region, in the order of ``regions``."""
    health_path: str = "/healthz"
    availability: float = 0.99
    rto: float = 30.0
    latency_p95: float = 2.0


def slug(text: str) -> str:
    """A component or design name from free text: ``My Service`` → ``my-service``."""
    name = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"svc-{name}" if name else "service"
    return name[:40].rstrip("-")


def _q(value: str) -> str:
    # JSON strings are YAML strings: placeholders and colons stay literal.
    return json.dumps(value, ensure_ascii=False)


def render_design(answers: InitAnswers) -> str:
    name = answers.name
    lines = [
        f"# {name}: a service of your own, tested by bascule on this machine (`bascule init`).",
        "# Regions are in routing order: clients go to the first, and fail over to the next.",
        "# Add `cost: {replica_hour: …, currency: EUR}` to a region to see cost next to resilience.",
        f"id: {name}",
        f"title: {name} under bascule",
        "",
        "regions:",
        *(f"  - id: {region}" for region in answers.regions),
        "",
        "components:",
        f"  {name}:",
        "    entry: true",
    ]
    if answers.command:
        argv = ", ".join(_q(a) for a in answers.command)
        lines += [
            "    command:",
            f"      argv: [{argv}]",
            '      # env: {UPSTREAM_URL: "{other.url}"}   with `calls: [other]` for a dependency',
            f"      ready: {{path: {_q(answers.health_path)}}}",
        ]
    else:
        lines += ["    url:"]
        lines += [
            f"      {region}: {_q(url)}" for region, url in zip(answers.regions, answers.urls, strict=True)
        ]
    placement = ", ".join(f"{region}: 1" for region in answers.regions)
    lines += [
        f"    replicas: {{{placement}}}",
        "",
        "routing:",
        "  mode: active-passive",
        f"  order: [{', '.join(answers.regions)}]",
        "",
        "replication: {mode: none}",
        "",
    ]
    return "\n".join(lines)


def render_scenario(answers: InitAnswers, design_file: str) -> str:
    name = answers.name
    primary = answers.regions[0]
    lines = [
        f"id: {name}-first-game-day",
        f"title: {_q(f'{name}: its primary region blackholed, then the service crashes')}",
        "description: |",
        f"  A first game day for {name}, written by `bascule init` to be edited: the entry of",
        f"  {primary} stops answering for 10 s (packets dropped), so clients must fail over;",
    ]
    if answers.command:
        lines += [f"  then the service in {primary} is killed and restarted 3 s later."]
    else:
        lines += ["  (a service bascule did not start cannot be crashed by it: only its routes are faulted)."]
    lines += [
        f"design: {design_file}",
        "",
        "replay: {time_scale: 1, min_phase: 1s}",
        "warm_up: 3s",
        "settle: 5s",
        "",
        "steady_state:",
        "  probes:",
        f"    - {{kind: http, url: {_q(answers.health_path)}, rate: 10, timeout: 1s}}",
        "    # Ask it real questions and check its answers, and check writes survive:",
        '    # - {kind: rag, url: /your/ask/path, request: {q: "{question}"}, question: …, facts: […],',
        "    #    paths: {answer: …, citations: …, hops: …}}",
        '    # - {kind: data, url: /your/write/path, request: {id: "{id}", text: "{text}"},',
        "    #    read_back: {" + primary + ': ["/your/read/path/{id}"]}}',
        "  success_ratio: 1.0",
        "  over: 2s",
        "",
        "phases:",
        f"  - name: {_q(f'{primary} entry blackholed')}",
        "    at: 3s",
        "    for: 10s",
        "    fault: {kind: blackhole}",
        f"    target: {{component: {name}, region: {primary}}}",
    ]
    if answers.command:
        lines += [
            f"  - name: {_q(f'{name} in {primary} killed')}",
            "    at: 18s",
            "    for: 5s",
            "    fault: {kind: crash, restart_after: 3s}",
            f"    target: {{component: {name}, region: {primary}}}",
        ]
    lines += [
        "",
        "objectives:",
        f"  availability: {answers.availability:g}",
        f"  rto: {format_duration(answers.rto)}",
        f"  latency_p95: {format_duration(answers.latency_p95)}",
        "  sovereignty_violations: 0",
        "",
        "# Nothing grades answers or checks writes yet (see the probes above): left out on purpose.",
        "weights: {correctness: 0, durability: 0}",
        "",
    ]
    return "\n".join(lines)
