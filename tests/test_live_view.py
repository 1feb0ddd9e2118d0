"""The live view's clock: the plan's progress while it runs, the stage once it is done."""

from __future__ import annotations

from rich.console import Console

from bascule.runner.live import LiveState, render_live


def shown(state: LiveState) -> str:
    console = Console(width=140, record=True, color_system=None)
    console.print(render_live(state))
    return console.export_text()


def test_the_clock_counts_the_plan_then_names_the_stage_after_it() -> None:
    state = LiveState("aws", "aps", run_length=20.0, scale=1.0, stage="faults", elapsed=12.5)
    assert "run   12.5s / 20s" in shown(state)
    state.elapsed, state.stage = 25.0, "checking the steady-state hypothesis (after)"
    text = shown(state)
    assert "25.0s / 20s" not in text
    assert "plan done (20s)   checking the steady-state hypothesis (after)" in text
