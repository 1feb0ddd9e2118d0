"""Verdicts CI can trust: N runs of one scenario × design judged together — a 95 % bootstrap
interval per dimension, pass / fail / inconclusive against the objective, and flaky dimensions
(docs/repeats.md). Pure: `Result` documents in, a ``bascule.repeat/1`` `RepeatSummary` out."""

from bascule.verdicts.judge import judge_dimension, judge_runs
from bascule.verdicts.model import RepeatSummary, Verdict, dump_repeat, parse_repeat
from bascule.verdicts.render import render_repeat_lines, render_repeat_markdown

__all__ = [
    "RepeatSummary",
    "Verdict",
    "dump_repeat",
    "judge_dimension",
    "judge_runs",
    "parse_repeat",
    "render_repeat_lines",
    "render_repeat_markdown",
]
