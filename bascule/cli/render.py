"""Rich renderables for the CLI: plans, validation results, the fault vocabulary. Pure: data in,
renderables out; the CLI prints them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from pydantic.fields import FieldInfo
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from bascule.faults import FAULT_KINDS
from bascule.model.catalog import CATALOG, PROVIDERS
from bascule.model.durations import format_duration, parse_duration
from bascule.plan import Finding, Link, Plan, Severity

__all__ = ["render_catalog", "render_faults", "render_plan"]

_SEVERITY_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _run_seconds(value: float) -> str:
    return f"{value:7.2f}s"


def render_plan(plan: Plan, *, show_actions: bool = False) -> RenderableType:
    t = plan.time
    ratio = f"1:{1 / t.scale:,.0f}" if t.scale < 1 else f"{t.scale:g}:1"
    header = Text.assemble(
        ("Plan ", "bold"),
        (plan.scenario_id, "bold magenta"),
        " on ",
        (plan.design_id, "bold green"),
        f" — incident {format_duration(t.real_duration)} replayed in {t.run_length:.1f} s "
        f"(time scale {ratio}, phases ≥ {format_duration(t.min_phase)})",
    )
    timeline = Table(title="Timeline", title_justify="left", expand=False)
    timeline.add_column("#", justify="right")
    timeline.add_column("phase")
    timeline.add_column("fault")
    timeline.add_column("target")
    timeline.add_column("incident time", justify="right")
    timeline.add_column("run time", justify="right")
    for p in plan.phases:
        inner = p.fault.describe()
        fault = f"{p.kind} ({inner})" if inner else p.kind
        run = f"{_run_seconds(p.run_start)} → {_run_seconds(p.run_end)}"
        if p.stretched:
            run += " *"
        incident = f"+{format_duration(p.real_start)} → +{format_duration(p.real_end)}"
        timeline.add_row(str(p.index), p.name, fault, p.selector, incident, run)
    parts: list[RenderableType] = [header, timeline]
    if any(p.stretched for p in plan.phases):
        parts.append(Text("  * stretched to min_phase so that it stays observable", style="dim"))

    radius = Table(title="Blast radius", title_justify="left")
    radius.add_column("#", justify="right")
    radius.add_column("regions")
    radius.add_column("also hit (dependencies)")
    radius.add_column("replicas")
    radius.add_column("hops / names")
    for p in plan.phases:
        touch = p.touch
        if touch.empty:
            radius.add_row(str(p.index), Text("nothing in this design", style="dim"), "", "", "")
            continue
        shown = "\n".join(_hop_summary(touch.hops) + [f"dns {h}" for h in touch.hosts])
        replicas = ", ".join(str(r) for r in touch.replicas[:6])
        if len(touch.replicas) > 6:
            replicas += f", … {len(touch.replicas) - 6} more"
        radius.add_row(
            str(p.index),
            ", ".join(touch.regions),
            Text(", ".join(touch.indirect), style="bold red") if touch.indirect else "",
            replicas,
            shown,
        )
    parts.append(radius)
    parts.append(render_findings(plan.findings))
    if show_actions:
        actions = Table(title="Actions", title_justify="left")
        actions.add_column("run time", justify="right")
        actions.add_column("op")
        actions.add_column("phase")
        actions.add_column("fault")
        for a in plan.actions:
            actions.add_row(_run_seconds(a.offset), a.op.value, a.key, a.fault.kind)
        parts.append(actions)
    else:
        parts.append(Text(f"{len(plan.actions)} actions (show them with --actions)", style="dim"))
    return Group(*parts)


def _hop_summary(hops: Sequence[Link]) -> list[str]:
    callers: dict[str, int] = {}
    for hop in hops:
        callers[str(hop.target)] = callers.get(str(hop.target), 0) + 1
    return [f"→ {target} ({n} caller{'s' if n > 1 else ''})" for target, n in callers.items()]


def render_findings(findings: Sequence[Finding]) -> RenderableType:
    if not findings:
        return Text("Findings: none", style="green")
    table = Table(title="Findings", title_justify="left", show_lines=False)
    table.add_column("severity")
    table.add_column("kind")
    table.add_column("finding")
    for f in findings:
        table.add_row(Text(f.severity.value, style=_SEVERITY_STYLE[f.severity]), f.kind.value, f.message)
    return table


def render_faults() -> RenderableType:
    table = Table(title="Fault vocabulary", title_justify="left")
    table.add_column("kind", style="bold")
    table.add_column("what a client sees")
    table.add_column("targets")
    table.add_column("parameters")
    for name, cls in FAULT_KINDS.items():
        params = ", ".join(
            f"{field}={'(required)' if info.is_required() else _default(info)}"
            for field, info in cls.model_fields.items()
            if field != "kind"
        )
        scopes = ", ".join(sorted(s.value for s in cls.scopes))
        table.add_row(name, cls.client_sees, scopes, params)
    return table


def _default(info: FieldInfo) -> str:
    value = info.default
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, float) and any(getattr(m, "func", None) is parse_duration for m in info.metadata):
        return format_duration(value) if value else "0s"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def render_catalog() -> RenderableType:
    table = Table(title="Region catalog", title_justify="left")
    for column in ("region", "provider", "location", "jurisdiction", "sovereignty", "note"):
        table.add_column(column)
    for region in CATALOG.values():
        table.add_row(
            region.id,
            PROVIDERS[region.provider].name,
            region.location,
            region.jurisdiction,
            region.sovereignty.value,
            region.note,
        )
    return table
