"""Reports: metrics computed from a run's journal, the explainable 0–100 score, and the renderings
people and machines read — result.json, summary.md, a self-contained report.html, JUnit XML, and
the side-by-side comparison of designs. Pure functions of the journal."""
