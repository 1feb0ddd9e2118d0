"""What ``--otlp-timeline`` costs (docs/traces.md, "The run's timeline as spans").

- the journal listener, per record, for a record it drops (a window) and one it keeps (a fault);
- sending a run's timeline to a collector on 127.0.0.1 that answers (a minimal OTLP/HTTP server);
- giving up on a collector that refuses connections, and on one that accepts and never answers.

    python bench/timeline_export.py
"""

from __future__ import annotations

import socket
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bascule.traces.timeline import TimelineExport

PLAN = {"phases": [{"index": 0, "name": "outage", "kind": "region-outage", "target": "region=aws/us-east-1"}]}


def journal() -> list[dict[str, Any]]:
    """A run's timeline records: started, target, hypotheses, a fault applied and reverted, ended."""
    wall = "2026-12-02T23:00:00.000+00:00"
    kinds = [
        ("run-started", 0.0, {"scenario": {"id": "s"}, "design": {"id": "d"}, "plan": PLAN}),
        ("target-started", 5.0, {}),
        ("hypothesis", 8.0, {"when": "before", "ok": True}),
        ("plan-started", 8.1, {"run_length": 20.0}),
        ("fault-applied", 9.0, {"phase": 0, "kind": "region-outage", "effects": ["blackhole"]}),
        ("fault-reverted", 19.0, {"phase": 0, "kind": "region-outage"}),
        ("hypothesis", 30.0, {"when": "after", "ok": True}),
        ("run-ended", 31.0, {"exit_code": 0, "reason": "completed"}),
    ]
    return [{"type": k, "t": t, "wall": wall, **f} for k, t, f in kinds]


def filled(url: str) -> TimelineExport:
    export = TimelineExport(url)
    for record in journal():
        export(record)
    return export


class _Answer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def timed(export: TimelineExport) -> tuple[bool, float]:
    began = time.monotonic()
    sent, _ = export.export()
    return sent, time.monotonic() - began


def main() -> None:
    listener = TimelineExport("http://127.0.0.1:9")
    n = 200_000
    dropped = timeit.timeit(lambda: listener({"type": "window", "t": 1.0}), number=n) / n
    kept = timeit.timeit(lambda: listener({"type": "fault-applied", "t": 1.0}), number=n) / n
    print(f"listener: {dropped * 1e9:.0f} ns a record it drops, {kept * 1e9:.0f} ns one it keeps")

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        sent, took = timed(filled(f"http://127.0.0.1:{server.server_address[1]}"))
        print(f"collector answering: sent={sent} in {took:.3f} s")
    finally:
        server.shutdown()
        server.server_close()

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    sent, took = timed(filled(f"http://127.0.0.1:{port}"))
    print(f"collector refusing: sent={sent}, given up in {took:.2f} s")

    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        sent, took = timed(filled(f"http://127.0.0.1:{hung.getsockname()[1]}"))
    print(f"collector never answering: sent={sent}, given up in {took:.2f} s")


if __name__ == "__main__":
    main()
