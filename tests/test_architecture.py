"""The package boundaries of docs/architecture.md are kept by import-linter's contracts
(``[tool.importlinter]`` in pyproject.toml): they hold on the tree as it is, and they break — with
the offending import named — as soon as a forbidden import is added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# `lint-imports`, run by the interpreter of the tests (the console script may not be on PATH).
_LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _LINT, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "bascule", tmp_path / "bascule", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold_on_the_tree() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("bascule/metrics/compute.py", "bascule.runner.engine", "the pure core imports no edge"),
        ("bascule/reports/html.py", "bascule.probes.base", "the pure core imports no edge"),
        ("bascule/stack/llm.py", "bascule.plan.planner", "the system under test imports nothing"),
        ("bascule/runner/run.py", "bascule.targets.local.stack", "the runner names no target"),
        ("bascule/runner/traffic.py", "bascule.targets.kubernetes.cluster", "the runner names no target"),
        ("bascule/runner/run.py", "bascule.reports.files", "the runner leaves scoring to its caller"),
        ("bascule/web/server.py", "bascule.runner.interrupt", "the live page is driven by its command"),
        ("bascule/runner/run.py", "bascule.web.stack", "the runner names no target"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, forbidden: str, contract: str
) -> None:
    root = copy_tree(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\nimport {forbidden}  # added by the test\n")
    done = lint_imports(root)
    assert done.returncode != 0, done.stdout
    assert f"{contract}" in done.stdout
    assert "BROKEN" in done.stdout
    assert forbidden in done.stdout


def test_no_module_is_over_600_lines_and_the_run_loop_stays_small() -> None:
    """A module a newcomer can read: none over 600 lines; the runner's lifecycle under 400."""
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in (ROOT / "bascule").rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 600} == {}
    assert sizes["bascule/runner/run.py"] <= 400
