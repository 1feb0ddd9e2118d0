"""The YAML a new user copies from the docs parses: every whole design or scenario shown in the
README, docs/*.md and the examples' READMEs, and every one-line `fault:` example as a phase.

Kubernetes target files are parsed by the Kubernetes tests. Blocks that are fragments (a
`steady_state:` alone, a component, a probe list) are left to the tests of their own pages
(tests/test_probes.py checks docs/probes.md's)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bascule.model.loading import parse_design, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "examples").glob("*/README.md")),
]
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)

# A phase around a one-line fault example; the design only gives the scenario a file to name.
PHASE = """id: doc-example
title: a fault example of the docs
design: {design}
phases:
  - name: example
    at: 0s
    for: 10s
    fault: {fault}
    target: {target}
"""


def _blocks() -> Iterator[tuple[str, str]]:
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 2
            yield f"{page.relative_to(ROOT)}:{line}", match.group(1)


def _kind(block: str) -> str:
    data = yaml.safe_load(block)
    keys = set(data) if isinstance(data, dict) else set()
    if keys & {"contexts", "kubeconfig"}:
        return "target"  # a Kubernetes target file: tests/test_kubernetes_mapping.py parses those
    if "id" in keys and keys & {"phases", "replay", "steady_state", "load"}:
        return "scenario"
    if {"regions", "components"} <= keys:
        return "design"
    return "fragment"


WHOLE = [(where, block, _kind(block)) for where, block in _blocks() if _kind(block) in ("design", "scenario")]


def _fault_lines() -> Iterator[tuple[str, str, str]]:
    for where, block in _blocks():
        page, line = where.rsplit(":", 1)
        lines = block.splitlines()
        targets = [entry for entry in lines if entry.startswith("target:")]
        target = targets[0].split(":", 1)[1].split(" #")[0].strip() if targets else "{component: store}"
        for offset, entry in enumerate(lines):
            if entry.startswith("fault:"):
                yield f"{page}:{int(line) + offset}", entry.split(":", 1)[1].split(" #")[0].strip(), target


FAULTS = list(_fault_lines())


def test_the_docs_show_whole_files_and_fault_examples() -> None:
    kinds = {kind for _, _, kind in WHOLE}
    assert kinds == {"design", "scenario"}, "docs/files.md shows a whole design and a whole scenario"
    assert len(FAULTS) >= 10


@pytest.mark.parametrize(("where", "block", "kind"), WHOLE, ids=[w for w, _, _ in WHOLE])
def test_a_whole_design_or_scenario_of_the_docs_parses(where: str, block: str, kind: str) -> None:
    if kind == "design":
        parse_design(block, where)
    else:
        parse_scenario(block, where)


@pytest.mark.parametrize(("where", "fault", "target"), FAULTS, ids=[w for w, _, _ in FAULTS])
def test_a_fault_example_of_the_docs_parses_as_a_phase(where: str, fault: str, target: str) -> None:
    design = ROOT / "designs" / "active-passive-sovereign.yaml"
    parse_scenario(PHASE.format(design=design, fault=fault, target=target), where)
