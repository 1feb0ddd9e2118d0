"""A service that takes a while before it listens: ``late.py --port P --after SECONDS``; it serves
every path but ``/missing…`` (404)."""

from __future__ import annotations

import argparse
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--after", type=float, required=True)
args = parser.parse_args()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


time.sleep(args.after)
ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()
