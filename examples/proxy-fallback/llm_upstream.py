"""An LLM-like upstream: a tiny chat-completions server that says where it runs.

    python llm_upstream.py --port 8081 --name llm-us --region aws/us-east-1

It stands in for a hosted model API (Mistral's, OpenAI's), with only the Python standard library:

- ``POST /v1/chat/completions {"model", "messages": [{"role", "content"}]}`` → a
  ``chat.completion`` object whose answer names the region that wrote it;
- ``GET /v1/models``, ``GET /healthz``.

Every answer carries ``x-llm-region`` (the region) and ``x-llm-name`` (the deployment), as a
provider's headers name its deployment, and echoes the W3C ``traceparent`` it received in
``x-received-traceparent``, which shows whether the proxy in front passed it on. It does not speak
bascule's ``served_by``: like a real model API, it knows nothing of the tool testing it.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "llm"
    region = "unknown"

    def _json(self, status: int, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-llm-region", self.region)
        self.send_header("x-llm-name", self.name)
        traceparent = self.headers.get("traceparent")
        if traceparent is not None:
            self.send_header("x-received-traceparent", traceparent)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._json(200, {"status": "ok", "region": self.region})
        elif self.path == "/v1/models":
            model = {"id": "chat", "object": "model", "owned_by": self.name}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._json(404, {"object": "error", "message": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
            messages = request["messages"]
            question = str(messages[-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._json(400, {"object": "error", "message": f"invalid request: {exc}"})
            return
        if self.path != "/v1/chat/completions":
            self._json(404, {"object": "error", "message": "not found"})
            return
        self._json(200, completion(str(request.get("model", "chat")), question, self.name, self.region))

    def log_message(self, format: str, *args: object) -> None:
        pass


def completion(model: str, question: str, name: str, region: str) -> dict[str, Any]:
    """A chat.completion in the Mistral/OpenAI shape; the answer says who wrote it."""
    answer = f"[{name} in {region}] You asked: {question}"
    prompt_tokens, completion_tokens = len(question.split()), len(answer.split())
    return {
        "id": uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"},
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="an LLM-like upstream that names its region")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="llm")
    parser.add_argument("--region", required=True)
    args = parser.parse_args()
    Handler.name = args.name
    Handler.region = args.region
    with ThreadingHTTPServer((args.host, args.port), Handler) as server:
        server.daemon_threads = True
        server.serve_forever()


if __name__ == "__main__":
    main()
