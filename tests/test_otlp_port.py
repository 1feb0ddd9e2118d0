"""`--otlp-port`: the receiver on a port given, for services already running (url:) to be pointed at
before the run starts — a new user had to write a forwarder, the port being new at each run."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bascule.cli as cli
from bascule.errors import TargetError
from bascule.model.loading import read_design
from bascule.traces.receiver import TraceReceiver

ROOT = Path(__file__).resolve().parent.parent
DESIGN = read_design(ROOT / "designs" / "active-passive-sovereign.yaml")


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def test_the_receiver_listens_on_the_port_given_and_says_so_when_taken() -> None:
    port = _free_port()
    receiver = TraceReceiver(DESIGN, port=port)
    receiver.start()
    try:
        assert receiver.endpoint == f"http://127.0.0.1:{port}"
        with pytest.raises(TargetError, match=f"cannot listen on 127.0.0.1:{port}"):
            TraceReceiver(DESIGN, port=port).start()
    finally:
        receiver.stop()


def test_otlp_port_implies_otlp(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(options: Any, **_: Any) -> Any:
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr(cli, "run_scored", fake_run)
    scenario = ROOT / "scenarios" / "faults" / "latency.yaml"
    CliRunner().invoke(cli.app, ["run", str(scenario), "--otlp-port", "14318"])
    options = seen["options"]
    assert options.otlp and options.otlp_port == 14318
