"""Start nginx as the proxy of this example: render its configuration, then become nginx.

    PRIMARY_URL=http://127.0.0.1:8081 PRIMARY_REGION=aws/us-east-1 \\
    FALLBACK_URL=http://127.0.0.1:8082 FALLBACK_REGION=scaleway/fr-par \\
    python nginx_proxy.py --port 8080 --replica proxy-0

nginx reads its configuration from a file, so this wrapper fills ``nginx.conf.template`` (its
``${NAME}`` placeholders, an envsubst of the names below only: nginx's own ``$variables`` are left
alone) and writes it, with everything nginx writes (pid, logs, temp files), into its state
directory ``run/REPLICA/`` under the working directory — never /var. It also writes
``upstreams.json``, which upstream address is which deployment in which region, for ``truth.py``.
Then it replaces itself with nginx (``daemon off``), so that the process bascule supervises,
kills or stops is nginx's master.

Environment: ``PRIMARY_URL``, ``FALLBACK_URL`` (``http://HOST:PORT``), ``PRIMARY_REGION``,
``FALLBACK_REGION`` and ``CONFIDENTIAL_UPSTREAM`` (``llm``, the default: confidential requests
go where every request goes; ``llm_sovereign``: only to the fallback).

A state directory left by another run (another ``BASCULE_RUN_MARKER``) is emptied first; a
restart within the same run keeps its access log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "nginx.conf.template"
PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
GROUPS = ("llm", "llm_sovereign")


def render(template: str, values: dict[str, str]) -> str:
    """The template with every ``${NAME}`` replaced; a name without a value is an error."""
    missing = sorted({m for m in PLACEHOLDER.findall(template) if m not in values})
    if missing:
        raise SystemExit(f"nginx_proxy: no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def host_port(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise SystemExit(f"nginx_proxy: {url!r} is not http://HOST:PORT")
    return f"{parts.hostname}:{parts.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fresh_state_dir(state: Path, marker: str) -> None:
    """Make ``state`` ready for nginx: emptied when another run left it, temp dirs present."""
    marker_file = state / "run-marker"
    if state.exists() and (not marker_file.exists() or marker_file.read_text() != marker):
        shutil.rmtree(state)
    (state / "tmp").mkdir(parents=True, exist_ok=True)
    marker_file.write_text(marker)


def main() -> None:
    parser = argparse.ArgumentParser(description="render nginx.conf and run nginx in the foreground")
    parser.add_argument("--port", type=int, required=True, help="where clients reach the proxy (127.0.0.1)")
    parser.add_argument("--replica", default="proxy", help="names the state directory run/REPLICA")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = parser.parse_args()

    group = os.environ.get("CONFIDENTIAL_UPSTREAM", "llm")
    if group not in GROUPS:
        raise SystemExit(f"nginx_proxy: CONFIDENTIAL_UPSTREAM must be one of {', '.join(GROUPS)}")
    primary = host_port(os.environ["PRIMARY_URL"])
    fallback = host_port(os.environ["FALLBACK_URL"])
    state = Path("run", args.replica).resolve()
    fresh_state_dir(state, os.environ.get("BASCULE_RUN_MARKER", ""))

    values = {
        "PORT": str(args.port),
        "ROUTE_PORT": str(free_port()),
        "PRIMARY": primary,
        "FALLBACK": fallback,
        "CONFIDENTIAL_UPSTREAM": group,
        "STATE_DIR": str(state),
    }
    conf = state / "nginx.conf"
    conf.write_text(render(TEMPLATE.read_text(), values))
    upstreams = {
        primary: {"role": "primary", "region": os.environ.get("PRIMARY_REGION", "unknown")},
        fallback: {"role": "fallback", "region": os.environ.get("FALLBACK_REGION", "unknown")},
    }
    (state / "upstreams.json").write_text(json.dumps(upstreams, indent=2) + "\n")
    print(f"nginx_proxy: {conf} (access log {state / 'access.log'})", flush=True)
    argv = [args.nginx, "-p", str(state), "-c", str(conf), "-e", str(state / "error.log")]
    try:
        os.execv(args.nginx, argv)
    except OSError as exc:
        sys.exit(f"nginx_proxy: cannot run {args.nginx}: {exc}")


if __name__ == "__main__":
    main()
