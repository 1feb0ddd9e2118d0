"""An own service that, for the data classes it is told, also calls AWS STS on each request — through
the standard proxy variables (urllib honours HTTP_PROXY), passing the incoming ``traceparent`` on.
Each outside call's answer is printed, so that a test can tell where every one of them ended."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--call-out-for", default="confidential,internal", help="data classes, comma-separated")
args = parser.parse_args()
CALLING = set(filter(None, args.call_out_for.split(",")))
LOG = threading.Lock()
STS = "http://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"


def call_out(traceparent: str | None) -> str:
    request = urllib.request.Request(STS, headers={"traceparent": traceparent} if traceparent else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return f"{answer.status} {answer.read(200)!r}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read(200)!r}"
    except OSError as exc:
        return f"error {exc}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._answer({"ok": True})
            return
        self._ask(self.headers.get("x-data-class"))

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self._ask(body.get("data_class") or self.headers.get("x-data-class"))

    def _ask(self, data_class: str | None) -> None:
        if data_class in CALLING:
            outcome = call_out(self.headers.get("traceparent"))
            with LOG:  # one write per line: concurrent requests must not interleave their lines
                sys.stdout.write(f"outcall {data_class} {outcome}\n")
                sys.stdout.flush()
        self._answer({"answer": "the pumps carry a 5-year warranty", "data_class": data_class})

    def _answer(self, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
