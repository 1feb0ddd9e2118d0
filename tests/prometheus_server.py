"""A real Prometheus (Debian's ``prometheus`` package) for the tests, scraping an exporter whose
values the test sets. Skipped where the binary is missing, unless ``BASCULE_REQUIRE_PROMETHEUS=1``
(CI sets it: there a missing install fails, never skips)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"
SCRAPE = 0.5
"""Seconds between scrapes (and their timeout: a scrape that fails marks every series stale at
once, so it must not be so short that a busy machine misses it)."""


INSTALLED = Path(BINARY).is_file()
# .ci/run installs Prometheus and sets BASCULE_REQUIRE_PROMETHEUS: there, a missing one fails.
REQUIRED = os.environ.get("BASCULE_REQUIRE_PROMETHEUS") == "1"
NEEDS_PROMETHEUS = pytest.mark.skipif(
    not INSTALLED and not REQUIRED,
    reason="prometheus is not installed (Debian: apt-get install -y prometheus)",
)
"""For the tests that run a real Prometheus."""


def require_prometheus() -> None:
    """Tests marked `NEEDS_PROMETHEUS` reach here only with Prometheus installed, or required."""
    assert INSTALLED, "BASCULE_REQUIRE_PROMETHEUS=1, but prometheus is not installed (apt-get install)"


@dataclass
class Exporter:
    """``/metrics`` in the text exposition format, from ``values`` (series → value)."""

    values: dict[str, float] = field(default_factory=dict)
    port: int = 0

    def text(self) -> bytes:
        lines = ["# TYPE slo_error_ratio gauge"]
        lines += [f"{series} {value}" for series, value in self.values.items()]
        return ("\n".join(lines) + "\n").encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    exporter: Exporter

    def wait_for(self, query: str, timeout: float = 20.0) -> None:
        """Until ``query`` returns a series (the first scrapes are in)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=2).json()
                if answer.get("data", {}).get("result"):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"prometheus returned nothing for {query} within {timeout} s")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until Prometheus answers ``/-/ready`` (its storage opened, its API and scrapes running): a
    test that asks it sooner gets connection errors, or data only from seconds later."""
    deadline = time.monotonic() + timeout
    name = Path(str(process.args[0])).name  # type: ignore[index]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited ({process.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{name} was not ready within {timeout} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def running_prometheus(
    tmp_path: Path,
    targets: list[str],
    file_sd: Path | None = None,
    *,
    rules: str = "",
    alertmanager: str | None = None,
) -> Iterator[str]:
    """A Prometheus scraping ``targets`` (``host:port``) every `SCRAPE` seconds, and those a
    ``file_sd`` file lists (re-read every second, and as it changes), evaluating ``rules`` (a rule
    file's YAML) every second and sending their alerts to ``alertmanager`` (``host:port``); yields
    its URL."""
    require_prometheus()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    listed = ", ".join(f"'{t}'" for t in targets)
    discovered = f"    file_sd_configs: [{{files: ['{file_sd}'], refresh_interval: 1s}}]\n" if file_sd else ""
    extra = ""
    if rules:
        (tmp_path / "rules.yml").write_text(rules)
        extra += f"rule_files: ['{tmp_path / 'rules.yml'}']\n"
    if alertmanager:
        extra += f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['{alertmanager}']}}]}}]}}\n"
    config.write_text(
        f"global: {{scrape_interval: {int(SCRAPE * 1000)}ms, evaluation_interval: 1s}}\n"
        + extra
        + "scrape_configs:\n  - job_name: tests\n"
        f"    static_configs: [{{targets: [{listed}]}}]\n" + discovered
    )
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, tmp_path / "prometheus.log")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serving(exporter: Exporter) -> Iterator[str]:
    """``exporter`` served on a free loopback port; yields its ``host:port``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.text()
            self.send_response(200)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    exporter.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{exporter.port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    require_prometheus()
    exporter = Exporter({'slo_error_ratio{region="fr-par"}': 0.001})
    with serving(exporter) as target, running_prometheus(tmp_path, [target]) as url:
        found = Prometheus(url, exporter)
        found.wait_for("slo_error_ratio")
        yield found


ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
NEEDS_ALERTMANAGER = pytest.mark.skipif(
    not Path(ALERTMANAGER).is_file() and not REQUIRED,
    reason="alertmanager is not installed (Debian: apt-get install -y prometheus-alertmanager)",
)
"""For the tests that run a real Alertmanager (required where Prometheus is: CI installs both)."""


@contextlib.contextmanager
def running_alertmanager(tmp_path: Path) -> Iterator[str]:
    """A lone Alertmanager (no cluster: nothing listens beyond loopback) that routes every alert to
    a receiver that sends nothing; yields its ``host:port``."""
    assert Path(ALERTMANAGER).is_file(), "alertmanager is required but not installed (apt-get install)"
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: nobody, group_wait: 0s}\nreceivers: [{name: nobody}]\n")
    log = tmp_path / "alertmanager.log"
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
    )
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process, log)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
