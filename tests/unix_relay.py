"""Relays byte streams between a TCP socket and a Unix socket, to join two network namespaces: a Unix
socket is a file, reachable from any of them, where a TCP port on 127.0.0.1 is reachable only from
its own. Run as a process (in a namespace with ``nsenter --net=…``), stopped by its PID:

    python tests/unix_relay.py --seconds 3600 tcp:127.0.0.1:6443=unix:/tmp/x/api.sock \\
        unix:/tmp/x/hook.sock=tcp:127.0.0.1:9443

each ``LISTEN=TARGET`` accepts on LISTEN and connects every connection to TARGET. Prints
``relaying`` on standard error once every listener is open. Exits after ``--seconds`` at the latest.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time


def _address(text: str) -> tuple[int, str | tuple[str, int]]:
    kind, _, rest = text.partition(":")
    if kind == "unix":
        return socket.AF_UNIX, rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return socket.AF_INET, (host, int(port))
    raise SystemExit(f"not tcp:HOST:PORT or unix:PATH: {text}")


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _serve(listener: socket.socket, target: tuple[int, str | tuple[str, int]], deadline: float) -> None:
    listener.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            accepted, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        accepted.settimeout(None)
        family, address = target
        outgoing = socket.socket(family, socket.SOCK_STREAM)
        try:
            outgoing.connect(address)
        except OSError:
            accepted.close()
            outgoing.close()
            continue
        for a, b in ((accepted, outgoing), (outgoing, accepted)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("forwards", nargs="+")
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    threads = []
    for forward in args.forwards:
        listen, _, target = forward.partition("=")
        family, address = _address(listen)
        listener = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(64)
        thread = threading.Thread(target=_serve, args=(listener, _address(target), deadline), daemon=True)
        thread.start()
        threads.append(thread)
    print("relaying", file=sys.stderr, flush=True)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + 1)
    sys.exit(0)


if __name__ == "__main__":
    main()
