"""CI integration: `bascule suite` (exit code, suite.md, suite.json, JUnit XML), the pytest plugin
(items per scenario × design, failures printed as the score table, JUnit properties), the Python
API, and every exit code produced by a real command. The runs are short but real (~13 s each):
marked slow, except the checks that stop before anything runs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bascule.ci.suite import collect_scenarios, plan_suite, suite_exit_code
from bascule.cli import app
from bascule.errors import ScenarioError

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "samples"
APS = ROOT / "designs" / "active-passive-sovereign.yaml"
CLI = [sys.executable, "-c", "from bascule.cli import main; main()"]

pytest_plugins = ["pytester"]


def test_suite_exit_code_is_the_most_serious() -> None:
    assert suite_exit_code([]) == 0
    assert suite_exit_code([0, 1, 0]) == 1
    assert suite_exit_code([1, 3, 0]) == 3
    assert suite_exit_code([3, 4, 1]) == 4


def test_suite_collects_files_folders_and_globs_and_plans_everything_first(tmp_path: Path) -> None:
    faults = collect_scenarios([ROOT / "scenarios" / "faults"])
    # Every fault scenario, one per kind (named by kind), and nothing else.
    assert sorted(f.stem for f in faults) == sorted(
        f.stem for f in (ROOT / "scenarios" / "faults").glob("*.yaml")
    )
    assert {"bandwidth", "ttft", "slicer"} <= {f.stem for f in faults}
    assert collect_scenarios([str(ROOT / "scenarios" / "incidents" / "aws-*.yaml")])[0].name.startswith(
        "aws-"
    )
    with pytest.raises(ScenarioError, match="matches no scenario file"):
        collect_scenarios([tmp_path / "nothing-*.yaml"])
    cases = plan_suite(faults[:2], [APS, ROOT / "designs" / "single-region.yaml"])
    assert [(c.scenario_id, c.design_id) for c in cases][:2] == [
        (cases[0].scenario_id, "active-passive-sovereign"),
        (cases[0].scenario_id, "single-region"),
    ]
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "id: broken\ntitle: x\nphases:\n"
        "  - {name: p, at: 0s, for: bogus, fault: {kind: crash}, target: {component: gateway}}\n"
    )
    result = CliRunner().invoke(app, ["suite", str(broken), str(faults[0]), "--design", str(APS)])
    assert result.exit_code == 2 and "broken.yaml" in result.output


def test_exit_code_2_for_invalid_input_and_4_for_a_target_that_is_not_there(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["run", str(tmp_path / "missing.yaml")]).exit_code == 2
    # A Kubernetes cluster that does not answer: its API server on a loopback port nobody serves.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: ghost\n"
        "clusters: [{name: ghost, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: ghost, context: {cluster: ghost, user: u}}]\n"
    )
    target_file = tmp_path / "target.yaml"
    target_file.write_text(
        "contexts: [ghost]\n"
        "regions:\n"
        "  aws/us-east-1: {context: ghost, nodes: {r: a}, pods: {r: a}}\n"
        "  scaleway/fr-par: {context: ghost, nodes: {r: b}, pods: {r: b}}\n"
        "components: {llm: {namespace: rag, selector: {app: llm}, port: 8080}}\n"
        "entries: {aws/us-east-1: 'http://127.0.0.1:9', scaleway/fr-par: 'http://127.0.0.1:9'}\n"
    )
    args = ["run", str(SAMPLES / "ci-pass.yaml"), "--quiet", "--out", str(tmp_path / "k")]
    result = CliRunner().invoke(
        app,
        [*args, "--target", "kubernetes", "--target-file", str(target_file), "--kubeconfig", str(kubeconfig)],
    )
    assert result.exit_code == 4, result.output
    unknown = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "mars"), "--target", "mars"])
    assert unknown.exit_code == 2 and "unknown target 'mars'" in unknown.output
    assert "ghost" in json.loads((tmp_path / "k" / "journal.jsonl").read_text().splitlines()[-1])["reason"]
    assert (  # the targets there are, named in the journal of the run refused
        "kubernetes"
        in json.loads((tmp_path / "mars" / "journal.jsonl").read_text().splitlines()[-1])["reason"]
    )


@pytest.mark.slow
def test_suite_with_one_impossible_scenario_exits_1_and_writes_junit(tmp_path: Path) -> None:
    folder = tmp_path / "suite-in"
    folder.mkdir()
    for name in ("ci-pass.yaml", "ci-impossible.yaml"):
        text = (SAMPLES / name).read_text().replace("../../designs/", f"{ROOT}/designs/")
        (folder / name).write_text(text)
    summary = tmp_path / "step-summary.md"
    proc = subprocess.run(
        [*CLI, "suite", str(folder), "--design", str(APS), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1/2 passed" in proc.stdout
    suite = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert {r["scenario"]: r["exit_code"] for r in suite["runs"]} == {"ci-impossible": 1, "ci-pass": 0}
    junit = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert junit.attrib["tests"] == "2" and junit.attrib["failures"] == "1"
    failed = next(c for c in junit.iter("testcase") if c.find("failure") is not None)
    failure = failed.find("failure")
    assert failed.attrib["classname"] == "ci-impossible" and failure is not None
    assert "latency" in failure.attrib["message"]
    assert "| ci-impossible | active-passive-sovereign | ❌ exit 1 |" in summary.read_text()


@pytest.mark.slow
def test_pytest_plugin_items_failures_and_junit_properties(pytester: pytest.Pytester) -> None:
    for name in ("ci-pass.yaml", "ci-impossible.yaml"):
        shutil.copy(SAMPLES / name, pytester.path / name)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--bascule",
        "--bascule-design",
        str(APS),
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        timeout=300,
    )
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "FAILED" in text and "ci-impossible.yaml::active-passive-sovereign" in text
    assert "dimension" in text and "latency" in text and "FAIL" in text  # the score table, not a traceback
    assert "Traceback" not in text
    (passed,) = [c for c in ET.parse(junit).getroot().iter("testcase") if "ci-pass" in c.attrib["classname"]]
    assert passed.attrib["name"] == "active-passive-sovereign"
    props = {p.attrib["name"]: p.attrib["value"] for p in passed.iter("property")}
    assert props["bascule.exit_code"] == "0" and float(props["bascule.score"]) >= 90
    assert "bascule.faults_unreached" in props
    # A second session runs into the items' own directories again: the earlier run is replaced, not
    # mixed with (nor refused as a directory in use).
    again = pytester.runpytest_subprocess(
        "--bascule", "--bascule-design", str(APS), "-p", "no:cacheprovider", timeout=300
    )
    again.assert_outcomes(passed=1, failed=1)
    assert "RunDirectoryInUse" not in again.stdout.str()
    selected = pytester.runpytest_subprocess(
        "--bascule", "--bascule-design", str(APS), "-k", "impossible", "--collect-only", "-q", timeout=120
    )
    assert "ci-impossible.yaml::active-passive-sovereign" in selected.stdout.str()
    assert "ci-pass" not in selected.stdout.str()


@pytest.mark.slow
def test_the_fixture_runs_a_scenario_from_python(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        def test_quick(bascule):
            result = bascule.run({str(SAMPLES / "ci-pass.yaml")!r}, design={str(APS)!r})
            assert result.exit_code == 0, result.failure_text()
            assert result.dimension("rto").name == "recovery"
            assert result.dimension("latency").measured < 2.0
            assert result.grade == "A"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_the_plugin_repeats_an_item_and_judges_it_over_its_runs(pytester: pytest.Pytester) -> None:
    """Real runs: ci-impossible ×2 fails on its verdict over both runs, with the verdict lines as
    the failure and each dimension's verdict and interval as JUnit properties."""
    shutil.copy(SAMPLES / "ci-impossible.yaml", pytester.path / "ci-impossible.yaml")
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--bascule",
        "--bascule-design",
        str(APS),
        "--bascule-repeat",
        "2",
        "--bascule-out",
        str(pytester.path / "runs"),
        f"--junitxml={junit}",
        "-p",
        "no:cacheprovider",
        timeout=600,
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*repeat: fail over 2 of 2 runs*"])
    (case,) = ET.parse(junit).getroot().iter("testcase")
    props = {p.attrib["name"]: p.attrib["value"] for p in case.iter("property")}
    assert props["bascule.verdict"] == "fail" and props["bascule.runs_judged"] == "2"
    assert props["bascule.latency.verdict"] == "fail" and props["bascule.latency.interval"].startswith("[")
    repeat_dir = Path(props["bascule.repeat_dir"])
    assert json.loads((repeat_dir / "run-2" / "result.json").read_text())["repeat"]["verdict"] == "fail"


@pytest.mark.parametrize("name", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_run_a_suite_that_plans(name: str) -> None:
    import yaml

    text = (ROOT / "examples" / "ci" / name).read_text()
    yaml.safe_load(text)
    assert "bascule suite scenarios/faults" in text and "junit.xml" in text
    cases = plan_suite(
        collect_scenarios(
            [
                ROOT / "scenarios" / "faults",
                ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml",
            ]
        ),
        [APS],
    )
    # One case per fault scenario, and the incident (counted, so that a new kind needs no edit here).
    assert len(cases) == len(list((ROOT / "scenarios" / "faults").glob("*.yaml"))) + 1


@pytest.mark.slow
def test_suite_repeat_judges_each_item_over_its_runs(tmp_path: Path) -> None:
    """`suite --repeat 2`: ci-pass passes over its runs, ci-impossible fails in both (each run a
    Surefire rerunFailure), every run has its own directory and the items their repeat.json."""
    folder = tmp_path / "suite-in"
    folder.mkdir()
    for name in ("ci-pass.yaml", "ci-impossible.yaml"):
        text = (SAMPLES / name).read_text().replace("../../designs/", f"{ROOT}/designs/")
        (folder / name).write_text(text)
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "suite", str(folder), "--design", str(APS), "--out", str(out), "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1/2 passed, 0 flaky (exit 1)" in proc.stdout
    suite = json.loads((out / "suite.json").read_text())
    assert suite["repeat"] == 2
    assert {r["scenario"]: r["verdict"] for r in suite["runs"]} == {
        "ci-impossible": "fail",
        "ci-pass": "pass",
    }
    for item in suite["runs"]:
        assert [Path(d).name for d in item["run_dirs"]] == ["run-1", "run-2"]
        assert all((Path(d) / "result.json").exists() for d in item["run_dirs"])
        repeat = json.loads((Path(item["repeat_dir"]) / "repeat.json").read_text())
        assert repeat["schema"] == "bascule.repeat/1" and len(repeat["runs"]) == 2
        # The design file it ran is recorded for a later --baseline, and each run carries the verdict.
        assert repeat["design_file"]["sha256"] == hashlib.sha256(APS.read_bytes()).hexdigest()
        assert item["design_file"]["sha256"] == repeat["design_file"]["sha256"]
        for k, run_dir in enumerate(item["run_dirs"], start=1):
            carried = json.loads((Path(run_dir) / "result.json").read_text())["repeat"]
            assert carried["run"] == k and carried["verdict"] == item["verdict"]
            assert "Over the repeated runs" in (Path(run_dir) / "summary.md").read_text()
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.attrib["tests"] == "2" and junit.attrib["failures"] == "1"
    impossible = next(c for c in junit.iter("testcase") if c.attrib["classname"] == "ci-impossible")
    assert len(impossible.findall("rerunFailure")) == 2
    assert (
        "| ci-pass | active-passive-sovereign | ✅ pass | no | 2/2 of 2 |" in (out / "suite.md").read_text()
    )


_PRELOAD = """
import sys, threading
from bascule.ci import results
assert "matplotlib" not in sys.modules
results._preload_charts()
loading = [t for t in threading.enumerate() if t.name == "bascule-preload-charts"]
assert len(loading) == 1 and loading[0].daemon
loading[0].join(60)
assert "bascule.reports.charts" in sys.modules and "matplotlib" in sys.modules
results._preload_charts()  # imported already: no second thread
assert not [t for t in threading.enumerate() if t.name == "bascule-preload-charts"]
"""


def test_the_charts_module_is_imported_in_a_thread_while_a_run_starts() -> None:
    # In a fresh interpreter: this test process may have imported matplotlib already.
    proc = subprocess.run(
        [sys.executable, "-c", _PRELOAD], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
