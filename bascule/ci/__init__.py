"""bascule in CI pipelines: runs from Python (`run` → `RunResult`), suites of scenarios × designs
with JUnit XML and Markdown summaries (`suite`), and the pytest plugin (`pytest_plugin`)."""

from bascule.ci.results import Dimension, RunResult, read_result, run

__all__ = ["Dimension", "RunResult", "read_result", "run"]
