"""Shared fixtures: paths to the repository's example files."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def aws_scenario_path() -> Path:
    return ROOT / "scenarios" / "incidents" / "aws-us-east-1-2025-10-20.yaml"


@pytest.fixture
def aps_design_path() -> Path:
    return ROOT / "designs" / "active-passive-sovereign.yaml"


@pytest.fixture(autouse=True)
def _own_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """bascule's configuration directory (the Kubernetes clusters confirmed) is the test's own,
    never the user's."""
    monkeypatch.setenv("BASCULE_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
