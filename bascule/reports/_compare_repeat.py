"""compare.html's parts for repeated items (docs/repeats.md): the verdict badge of a cell and the
table of each dimension's verdict and 95 % interval over the runs. Pure; every string escaped."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from bascule.reports._format import as_str
from bascule.reports._repeat import MARKS, compute_repeat_view, verdict_text
from bascule.reports.model import RepeatContext

__all__ = ["REPEAT_CSS", "render_repeat_badge", "render_repeats_section"]

REPEAT_CSS = """
.mark.inconclusive, .mark.unmeasured { color: var(--muted); }
table.repeats td.verdict-pass { color: var(--pass); } table.repeats td.verdict-fail { color: var(--fail); }
"""


def _e(value: object) -> str:
    return escape(as_str(value), quote=True)


def render_repeat_badge(repeat: RepeatContext) -> str:
    """``❔ INCONCLUSIVE ×5, flaky`` in the mark's style, for a matrix cell or a ranking line."""
    return (
        f'<span class="mark {_e(repeat.verdict)}" title="{_e(repeat.reason)}">'
        f"{MARKS.get(repeat.verdict, '')} {_e(verdict_text(repeat).upper())}</span>"
    )


def render_repeats_section(cells: Iterable[tuple[str, str, RepeatContext]]) -> str:
    """The section over (scenario, design, repeat) of every repeated item; "" when there is none."""
    rows = []
    for scenario, design, repeat in cells:
        view = compute_repeat_view(repeat)
        if view is None:
            continue
        for index, r in enumerate(view.rows):
            head = (
                f'<th scope="row" rowspan="{len(view.rows)}">{_e(scenario)}<br>{_e(design)}<br>'
                f"{render_repeat_badge(repeat)}<br>mean score {_e(view.mean_score)}</th>"
                if index == 0
                else ""
            )
            rows.append(
                f'<tr>{head}<td>{_e(r.name)}</td><td class="verdict-{_e(r.verdict)}">'
                f"{MARKS.get(r.verdict, '')} {_e(r.verdict)}</td><td>{_e(r.interval)}</td>"
                f'<td class="num">{_e(r.objective)}</td><td>{_e(r.runs)}</td><td>{_e(r.flips)}</td></tr>'
            )
    if not rows:
        return ""
    head = (
        '<thead><tr><th scope="col">item</th><th scope="col">dimension</th><th scope="col">verdict</th>'
        '<th scope="col">95 % interval</th><th scope="col" class="num">objective</th>'
        '<th scope="col">runs ✓ ✗ —</th><th scope="col">flaky</th></tr></thead>'
    )
    return (
        '<section aria-labelledby="repeats-h"><h2 id="repeats-h">Over repeated runs</h2>'
        "<p>A repeated item's score is the mean of its runs; its figures and sub-scores elsewhere on "
        "this page are its last run's.</p>"
        f'<div class="table-wrap"><table class="repeats">{head}<tbody>{"".join(rows)}</tbody></table></div>'
        "</section>"
    )
