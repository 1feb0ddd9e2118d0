"""The sentences of the score: why each dimension scored what it did, and what to change when it
falls short — specific to the phase that hurt and to the design's own settings. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from bascule.faults import FAULT_KINDS
from bascule.metrics.model import Metrics, PhaseMetrics

__all__ = [
    "fmt_ratio",
    "fmt_seconds",
    "phase_advice",
    "recommend_availability",
    "recommend_correctness",
    "recommend_durability",
    "recommend_latency",
    "recommend_recovery",
    "recommend_sovereignty",
    "worst_phase",
]


def fmt_ratio(value: float) -> str:
    """``0.99341`` → ``99.34 %``; ``0.99`` → ``99 %``."""
    text = f"{value * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text} %"


def fmt_seconds(value: float) -> str:
    """``12.34`` → ``12.3 s``; ``1.5`` → ``1.50 s``; ``0.212`` → ``212 ms``; ``0`` → ``0 s``."""
    if value == 0:
        return "0 s"
    if value >= 10:
        return f"{value:.1f} s"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.0f} ms"


def worst_phase(metrics: Metrics, key: str) -> PhaseMetrics | None:
    """The phase with the most failed requests (``failed``), the highest p95 (``p95``) or the longest
    recovery (``rto``)."""
    phases = [p for p in metrics.phases if p.actual_start is not None]

    def tie(p: PhaseMetrics) -> tuple[bool, float]:
        # Phases in force together share their windows' figures: the one that impairs answers,
        # then the latest applied (the change nearest the failures), is the one to blame — a
        # replication paused since 2 s is not why a region blackholed at 8 s failed requests.
        known = FAULT_KINDS.get(p.kind)
        return known is None or known.impairs_serving, p.actual_start or 0.0

    if key == "failed":
        phases = [p for p in phases if p.failed]
        return max(phases, key=lambda p: (p.failed, *tie(p)), default=None)
    if key == "p95":
        phases = [p for p in phases if p.latency.p95 is not None]
        return max(phases, key=lambda p: (p.latency.p95 or 0.0, *tie(p)), default=None)
    phases = [p for p in phases if p.rto or p.recovered is False]
    return max(phases, key=lambda p: (float("inf") if p.rto is None else p.rto, *tie(p)), default=None)


def _regions(regions: Sequence[str]) -> str:
    return ", ".join(regions) if regions else "the impaired regions"


def phase_advice(metrics: Metrics, phase: PhaseMetrics) -> str:
    """What would have kept the service up through a phase of this kind, in this design."""
    facts = metrics.design
    kind = phase.kind
    if kind == "control-plane":
        standbys = {r: n for r, n in facts.scale_up.items() if r != facts.primary}
        frozen = {r: n for r, n in standbys.items() if r in phase.regions}
        if frozen:
            region, (now, ceiling) = next(iter(frozen.items()))
            return (
                f"the standby could not scale while the control plane was frozen: run it at full size "
                f"({ceiling} replicas instead of {now} in {region})"
            )
        if standbys:
            region, (now, ceiling) = next(iter(standbys.items()))
            return (
                f"the pilot-light standby had to scale up before it could take all the traffic: keep "
                f"more of it running ({ceiling} replicas instead of {now} in {region}) or shorten its "
                "scale-up"
            )
        return (
            "nothing could start or restart while the control plane was frozen: keep enough replicas "
            "running in another region to carry the whole load without starting anything"
        )
    if kind == "dns":
        # Said of any stack: whether pooled connections survived depends on the fault's
        # `new_connections_only` and on the clients, which the score does not see.
        return (
            "the name did not resolve for its callers: fail over on resolution errors too, not only "
            "on refused connections and timeouts; connections already open keep working through a "
            "real DNS outage, so keep them pooled for longer than one (your clients' keep-alive; on "
            "the reference design, its edge's connection_pool.keepalive_expiry)"
        )
    if kind == "identity":
        return (
            f"services in {_regions(phase.regions)} lost their credentials with the identity service: "
            "cache tokens for longer than such an outage, or give each region its own identity service"
        )
    if kind in ("region-outage", "provider-outage", "blackhole", "hang"):
        detect = facts.detection_delay
        timeout = facts.request_timeout
        if facts.own_entry is not None:
            return (
                f"fail over sooner in {facts.own_entry}, the design's entry, whose own settings pace "
                "it: check its upstreams' health more often, lower its upstream timeouts and set an "
                "upstream aside after fewer failures (the design's routing health_check and timeouts "
                "pace only bascule's clients in front of it)"
            )
        if detect is not None and timeout is not None:
            return (
                f"unanswered requests are noticed only after {fmt_seconds(detect)} of health checks and "
                f"{fmt_seconds(timeout)} request timeouts: check health more often, lower the timeout and "
                "open the circuit breaker after fewer failures"
            )
        return "fail over sooner: shorten failure detection and lower request timeouts"
    if kind == "crash":
        return (
            "the process was down, then restarted: retry what it refused or failed on the next "
            "region at once, and check that it came back with its data before traffic returns to it"
        )
    if kind == "refuse":
        return "refused connections should fail over at once: retry them on the next region"
    if kind == "http-error":
        return "retry 5xx answers on another region, within the retry budget"
    if kind == "throttle":
        return "honour Retry-After and send retries to another region instead of the throttled one"
    if kind == "latency":
        return "hedge slow requests to another region and lower the request timeout"
    if kind == "flap":
        return (
            "the fault switched on and off: require several healthy checks before sending traffic back "
            "(health_check.healthy_after, failback.after_healthy_for) so that it does not ping-pong"
        )
    if kind == "partition":
        return "the regions were cut apart: make sure each one can serve on its own data"
    if kind in ("replication-pause", "data-loss"):
        return (
            "serve reads from a region whose store is complete, and re-sync the lost one before failing back"
        )
    return "fail over sooner: shorten failure detection and retry on another region"


def _no_failover(metrics: Metrics) -> str | None:
    """The plan's finding that explains failures no failover could avoid: a data class that only
    impaired regions may serve, and that did fail."""
    impaired = {r for p in metrics.phases if p.actual_start is not None for r in p.regions}
    failing = {k for k, (n, ok) in metrics.by_class.items() if ok < n}
    for f in metrics.findings:
        if f.kind not in ("no-failover", "class-outage"):
            continue
        if f.data_class in failing and (not f.regions or set(f.regions) <= impaired):
            return f"{f.message.rstrip('.')} — add a region allowed for that data class"
    return None


def recommend_availability(metrics: Metrics) -> str:
    phase = worst_phase(metrics, "failed")
    finding = _no_failover(metrics)
    if finding:
        return f"{finding[0].upper()}{finding[1:]}."
    if phase is None:
        return "Fail over sooner: shorten failure detection and retry on another region."
    advice = phase_advice(metrics, phase)
    return f"Most failures came during “{phase.name}” ({phase.kind}): {advice}."


def recommend_recovery(metrics: Metrics) -> str:
    longest = max(metrics.outages, key=lambda o: float("inf") if o.rto is None else o.rto, default=None)
    in_force = [p for p in metrics.phases if longest is not None and p.index in longest.phases]
    frozen = next((p for p in in_force if p.kind == "control-plane"), None)
    standbys = [r for r in metrics.design.scale_up if r != metrics.design.primary]
    if frozen is not None and any(r in frozen.regions for r in standbys):
        return f"Recovery was slow while “{frozen.name}” was in force: {phase_advice(metrics, frozen)}."
    finding = _no_failover(metrics)
    if finding:
        return f"Some traffic had nowhere to go: {finding}."
    cause = longest.cause if longest is not None else None
    started = [
        p for p in in_force if p.actual_start is not None and cause is not None and p.actual_start <= cause
    ]
    phase = max(started, key=lambda p: p.actual_start or 0.0, default=None) or worst_phase(metrics, "rto")
    if phase is None:
        return "Fail over sooner: shorten failure detection and retry on another region."
    return f"The longest outage came during “{phase.name}” ({phase.kind}): {phase_advice(metrics, phase)}."


def recommend_latency(metrics: Metrics) -> str:
    phase = worst_phase(metrics, "p95")
    facts = metrics.design
    if phase is not None and phase.kind in (
        "hang",
        "blackhole",
        "latency",
        "region-outage",
        "provider-outage",
    ):
        timeout = (
            f"a request timeout of {fmt_seconds(facts.request_timeout)}"
            if facts.request_timeout
            else "long timeouts"
        )
        return (
            f"During “{phase.name}” ({phase.kind}) {timeout} let stuck hops hold requests: lower it "
            "and hedge slow requests to another region."
        )
    if phase is not None:
        return (
            f"Latency peaked during “{phase.name}” ({phase.kind}): give the region that takes the traffic "
            "enough replicas for the whole load, and keep connection pools warm there."
        )
    return "Give the region that takes the traffic enough replicas for the whole load."


def recommend_correctness(metrics: Metrics) -> str:
    facts = metrics.design
    wiped = [p for p in metrics.phases if p.kind == "data-loss" and p.actual_start is not None]
    if wiped:
        # A wiped store explains wrong answers better than any model difference.
        where = _regions(list(dict.fromkeys(r for p in wiped for r in p.regions)))
        return (
            f"The store in {where} was wiped during “{wiped[0].name}”: answers there lack their documents "
            "until the store is rebuilt. Restore it from another region or a backup automatically, or stop "
            "routing to a region whose store is empty."
        )
    primary_model = facts.llm_models.get(facts.primary or "")
    others = {r: m for r, m in facts.llm_models.items() if r != facts.primary and m != primary_model}
    if primary_model and others:
        region, model = next(iter(others.items()))
        return (
            f"The standby in {region} answers with {model} instead of {primary_model}: serve the same model "
            "in every region, or set objectives.correctness to the accuracy you accept after failover."
        )
    if metrics.degraded:
        return (
            f"{metrics.degraded} answers were degraded during the impact: keep a retriever and a complete "
            "store in every region that answers."
        )
    return (
        "Answers were less accurate during the impact: check that the store of the region taking the "
        "traffic holds the whole corpus (replication) and that its model is the same."
    )


_SHIPPED_S = 1.0
"""Seconds beyond the design's replication lag after which an acknowledged write had been shipped."""


def _lost_before_the_faults(metrics: Metrics) -> float | None:
    """How long before the first fault the first lost write was acknowledged, when that is longer
    than any replication lag could explain; else None."""
    rpo = metrics.rpo
    starts = [p.actual_start for p in metrics.phases if p.actual_start is not None]
    if rpo is None or rpo.first_lost is None or not starts:
        return None
    ahead = min(starts) - rpo.first_lost
    return ahead if ahead > (metrics.design.replication_lag or 0.0) + _SHIPPED_S else None


def recommend_durability(metrics: Metrics) -> str:
    facts = metrics.design
    mode = facts.replication_mode
    ahead = _lost_before_the_faults(metrics)
    if ahead is not None:
        # Replication's lag cannot explain these: they had been stored, and were lost from where
        # they were kept.
        return (
            f"Writes acknowledged {fmt_seconds(ahead)} before the first fault were lost too, longer "
            "ago than any replication lag: they had been stored, and were lost where they were kept — "
            "a store that restarted without its data, a wipe, or a replica that re-synced from an "
            "emptied primary. Keep each store's data across a restart (persistent storage), and never "
            "let an empty node become the source its replicas re-sync from."
        )
    if mode == "async":
        lag = (
            f" with {fmt_seconds(facts.replication_lag)} of lag" if facts.replication_lag is not None else ""
        )
        return (
            f"Replication is asynchronous{lag}, so a region lost before shipping its writes loses them: "
            "acknowledge writes only once replicated (sync) for data that must survive, or shorten the lag."
        )
    if mode == "none":
        return "The design replicates nothing: replicate the store to the standby region."
    if mode == "own":
        return (
            "Acknowledged writes were lost though your service replicates: a write acknowledged before "
            "the standby has it is lost with the primary's region. Acknowledge only once a standby has "
            "it (PostgreSQL: synchronous_commit with synchronous_standby_names), or promote only a "
            "standby that has caught up."
        )
    return (
        "Writes were lost despite synchronous replication: acknowledge a write only once every replica "
        "has it."
    )


def recommend_sovereignty(metrics: Metrics) -> str:
    if not metrics.violations_by_hop:
        return "Route every data class only to regions of at least its minimum level."
    klass, component, region, level, _ = metrics.violations_by_hop[0]
    minimum = next((v.minimum for v in metrics.violations if v.data_class == klass), "")
    needs = f" (it requires {minimum})" if minimum else ""
    if not region:  # a host outside the design (a discovered dependency)
        return (
            f"{klass} data reached {component}, outside the design ({level}){needs}: stop sending "
            f"{klass} requests' data there, or use an endpoint of that level and declare it in the design."
        )
    if metrics.design.sovereignty_guard is False:
        return (
            f"The sovereignty guard is off: turn routing.sovereignty_guard on so that {klass} data is never "
            f"sent to {region} ({level}){needs}."
        )
    if component not in ("gateway", "retriever", "store", "llm"):
        return (
            f"{klass} data reached {component} in {region} ({level}){needs}: move that dependency to a "
            "region of that level, or do without it for this class."
        )
    return (
        f"{klass} data reached the {component} in {region} ({level}){needs}: place a {component} of that "
        f"level in every region that serves {klass} data."
    )
