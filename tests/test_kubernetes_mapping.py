"""The Kubernetes target file: validated like designs, every problem at file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kube_world import TARGET, design

from bascule.errors import ScenarioError
from bascule.model.loading import parse_design
from bascule.targets.kubernetes.mapping import ALWAYS_PROTECTED, WorkloadKind, bind, parse_target, read_target


def _problems(text: str, with_design: bool = True) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_target(text, "target.yaml", design() if with_design else None)
    return [str(p) for p in caught.value.problems]


def test_the_reference_target_file_binds_to_its_design() -> None:
    target = parse_target(TARGET, "target.yaml", design())
    bound = bind(target, design())
    assert bound.contexts == ("aws", "scw")
    assert bound.protected == ALWAYS_PROTECTED | {"payments"}
    assert bound.pod_labels("store", "aws/eu-west-3") == {
        "app": "store",
        "bascule.io/region": "aws-eu-west-3",
    }
    assert bound.regions_in("aws") == ["aws/us-east-1", "aws/eu-west-3"]
    assert bound.placed("gateway", "aws/us-east-1") == 2 and bound.placed("aws-sts", "aws/us-east-1") == 1
    assert target.components["store"].kind is WorkloadKind.STATEFULSET


def test_unknown_keys_are_rejected_at_their_line() -> None:
    text = TARGET.replace("allow_data_loss: true", "allow_data_lose: true")
    (problem,) = _problems(text)
    line = text.splitlines().index("allow_data_lose: true") + 1
    assert problem.startswith(f"target.yaml:{line}:1: allow_data_lose: unknown key 'allow_data_lose'")
    assert "did you mean 'allow_data_loss'" in problem


def test_a_region_context_must_be_listed() -> None:
    text = TARGET.replace("contexts: [aws, scw]", "contexts: [aws]")
    (problem,) = _problems(text)
    assert "regions.scaleway/fr-par.context: context 'scw' is not listed" in problem
    line = text.splitlines().index("    context: scw") + 1
    assert problem.startswith(f"target.yaml:{line}:")


def test_every_design_region_must_be_mapped() -> None:
    start = TARGET.index("  scaleway/fr-par:")
    end = TARGET.index("components:")
    (problem,) = _problems(TARGET[:start] + TARGET[end:])
    assert "design region 'scaleway/fr-par' is not mapped" in problem


def test_regions_sharing_a_context_must_say_which_nodes_and_pods_are_theirs() -> None:
    text = TARGET.replace("    nodes: {topology.kubernetes.io/region: eu-west-3}\n", "")
    (problem,) = _problems(text)
    assert "aws/eu-west-3 shares context 'aws'" in problem and "'nodes'" in problem
    same = TARGET.replace("region: eu-west-3}", "region: us-east-1}")
    assert any("selects the same nodes as aws/us-east-1" in p for p in _problems(same))


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("selector: {app: gateway}", "selector: {}", "empty selector"),
        ("selector: {app: gateway}", "selector: {app: -bad-}", "not a valid label value"),
        ("cidrs: [192.0.2.0/25]", "cidrs: [192.0.2.1/25]", "not a network in CIDR notation"),
        ("namespace: identity", "namespace: Identity", "should match pattern"),
        ("port: 8080}", "port: 70000}", "less than or equal to 65535"),
        ("protected_namespaces: [payments]", "protected_namespaces: [kube-system]", "always protected"),
        ("  aws-sts: {namespace", "  aws-stx: {namespace", "unknown component or dependency 'aws-stx'"),
        ("contexts: [aws, scw]", "contexts: [aws, scw, aws]", "listed twice"),
    ],
)
def test_invalid_values_are_reported(old: str, new: str, words: str) -> None:
    assert old in TARGET
    problems = _problems(TARGET.replace(old, new, 1))
    assert any(words in p for p in problems), problems


def test_several_problems_are_reported_at_once() -> None:
    text = TARGET.replace("allow_data_loss: true", "allow_data_lose: true").replace(
        "port: 8080}", "port: 0}", 1
    )
    assert len(_problems(text)) == 2


def test_read_target_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such file"):
        read_target(tmp_path / "absent.yaml")
    (tmp_path / "t.yaml").write_text(TARGET, encoding="utf-8")
    assert read_target(tmp_path / "t.yaml", design()).allow_coredns_override


DOCS = Path(__file__).resolve().parent.parent / "docs" / "kubernetes.md"


def _yaml_blocks(path: Path) -> list[tuple[int, str]]:
    """Each ```yaml block of `path`, with the line its text starts on."""
    out: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start: int | None = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```yaml":
            start = number + 1
        elif start is not None and line.strip() == "```":
            out.append((start, "".join(lines[start - 1 : number - 1])))
            start = None
    assert start is None, f"{path}: a ```yaml block is never closed"
    return out


def test_every_yaml_example_in_docs_kubernetes_parses_with_its_parser() -> None:
    # A design (parse_design) and the target file mapping it (parse_target, then bind); every
    # problem would be reported at its line of the page.
    blocks = _yaml_blocks(DOCS)
    assert blocks
    last_design = None
    targets = []
    for start, text in blocks:
        padded = "\n" * (start - 1) + text
        head = yaml.safe_load(text)
        if isinstance(head, dict) and "contexts" in head:
            assert last_design is not None, f"docs/kubernetes.md:{start}: a target file before its design"
            targets.append(bind(parse_target(padded, "docs/kubernetes.md", last_design), last_design))
        elif isinstance(head, dict) and {"id", "regions", "components"} <= set(head):
            last_design = parse_design(padded, "docs/kubernetes.md")
        else:
            pytest.fail(
                f"docs/kubernetes.md:{start}: a YAML block that is neither a design nor a target file"
            )
    (first,) = targets
    # What the comments around it say.
    assert first.contexts == ("aws-east", "scw-par")
    assert first.regions_in("aws-east") == ["aws/us-east-1", "aws/eu-west-3"]
    assert first.pod_labels("gateway", "aws/eu-west-3") == {
        "app": "gateway",
        "bascule.io/region": "aws-eu-west-3",
    }
    assert first.workload("retriever") is None and first.workload("llm") is None
    store = first.workload("store")
    assert store is not None and store.kind is WorkloadKind.STATEFULSET and store.service == "store"
    assert first.target.allow_coredns_override is False and first.target.allow_data_loss is False
    assert set(first.target.entries) == {"aws/us-east-1", "scaleway/fr-par"}
