"""Shared fixtures: paths to the repository's example files; the llm route of the fault plane's
behaviour tests on answers. And SIGTERM ends a test session as Ctrl-C does."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from bascule.targets.local.proxy import FaultPlane

ROOT = Path(__file__).resolve().parent.parent


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A CI time limit or a `kill` sends SIGTERM, which would end pytest at once and leave the
    processes its fixtures started (control planes, stacks, servers) running: as a
    KeyboardInterrupt, pytest tears its fixtures down first (and exits 2)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)


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


# The fault plane's behaviour tests on answers (test_counted_faults, test_idle_answer_faults,
# test_transport_faults): the reference llm served once per module, a fault plane per test, and one
# route `r` through it to the llm. A module defining fixtures of these names keeps its own.


@pytest.fixture(scope="module")
def llm() -> Iterator[str]:
    from bascule.stack.llm import LlmConfig
    from tests.test_llm import MODEL, serve

    with serve(LlmConfig(model=MODEL, provider="scaleway")) as url:
        yield url


@pytest.fixture
def plane() -> Iterator[FaultPlane]:
    from bascule.targets.local.proxy import FaultPlane

    with FaultPlane() as fp:
        yield fp


@pytest.fixture
def route(plane: FaultPlane, llm: str) -> str:
    from bascule.targets.local.proxy import Upstream

    port = urlsplit(llm).port
    assert port is not None
    return f"http://127.0.0.1:{plane.add_route('r', Upstream('127.0.0.1', port))}"
