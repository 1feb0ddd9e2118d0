"""Static findings of the plan: hidden dependencies and sovereignty, before anything runs."""

from __future__ import annotations

from pathlib import Path

from bascule.model.loading import read_design, read_scenario
from bascule.plan import FindingKind, Severity, plan

ROOT = Path(__file__).resolve().parent.parent
AWS = read_scenario(ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml")


def test_hidden_dependency_of_a_sovereign_standby() -> None:
    built = plan(read_design(ROOT / "designs" / "hidden-dependency.yaml"), AWS)
    hidden = built.findings_of(FindingKind.HIDDEN_DEPENDENCY)
    static = [f for f in hidden if f.phase is None]
    assert len(static) == 1
    assert "scaleway/fr-par (sovereign) relies on identity service 'aws-sts'" in static[0].message
    assert "aws/us-east-1" in static[0].message
    # Both STS phases take the standby down with the primary.
    per_phase = [f for f in hidden if f.phase is not None]
    assert {f.phase for f in per_phase} == {2, 5}
    assert all(f.severity is Severity.CRITICAL and "scaleway/fr-par" in f.regions for f in per_phase)
    assert "scaleway/fr-par" in built.phases[2].touch.indirect


def test_no_hidden_dependency_when_the_standby_stands_alone() -> None:
    built = plan(read_design(ROOT / "designs" / "active-passive-sovereign.yaml"), AWS)
    assert built.findings_of(FindingKind.HIDDEN_DEPENDENCY) == []
    assert built.findings_of(FindingKind.CLASS_OUTAGE) == []
    assert all(f.severity is not Severity.CRITICAL for f in built.findings)


def test_confidential_failover_to_us_west_2_is_a_sovereignty_finding() -> None:
    built = plan(read_design(ROOT / "designs" / "us-fallback.yaml"), AWS)
    critical = [
        f
        for f in built.findings_of(FindingKind.SOVEREIGNTY)
        if f.severity is Severity.CRITICAL and f.data_class == "confidential"
    ]
    messages = " | ".join(f.message for f in critical)
    assert "aws/us-west-2" in messages and "on failover" in messages
    assert "aws/us-east-1" in messages and "in normal operation" in messages
    assert any("replication copies 'confidential'" in f.message for f in critical)
    # Classes whose minimum is met raise nothing.
    assert not [f for f in built.findings if f.data_class == "internal"]


def test_guard_on_refuses_instead_of_leaking() -> None:
    built = plan(read_design(ROOT / "designs" / "active-passive-sovereign.yaml"), AWS)
    sovereignty = built.findings_of(FindingKind.SOVEREIGNTY)
    assert sovereignty and all(f.severity is Severity.INFO for f in sovereignty)
    (single,) = built.findings_of(FindingKind.NO_FAILOVER)
    assert "only scaleway/fr-par may serve 'confidential'" in single.message


def test_a_design_of_ones_own_is_promised_no_gateway_guard() -> None:
    """A stack entered through the user's own service has no gateway applying the routing: the
    finding says what bascule's edge does and that the rest is measured, not promised."""
    from pathlib import Path

    from bascule.model.loading import read_design, read_scenario
    from bascule.plan import plan

    root = Path(__file__).resolve().parent.parent / "examples" / "proxy-fallback"
    built = plan(read_design(root / "design.yaml"), read_scenario(root / "scenario.yaml"))
    texts = [f.message for f in built.findings if f.kind.value == "sovereignty"]
    assert texts and not any("gateway" in text for text in texts)
    assert any("bascule's edge never sends it to proxy" in text for text in texts)
