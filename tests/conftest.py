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
