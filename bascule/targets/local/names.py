"""A resolver for each own-service replica given its callees by name, whatever its language.

A service bascule did not write resolves names with the system's resolver — glibc's
``getaddrinfo``, Go's resolver, the JVM's — which reads ``/etc/resolv.conf`` and asks port 53 of the
address it names. So each replica of a component that uses ``{NAME.dns_url}`` (`StackLayout.resolving`)
is started in a mount namespace of its own, where a generated resolv.conf is bind-mounted over
``/etc/resolv.conf`` (and an nsswitch.conf whose ``hosts`` line is ``files dns``, so that no
mDNS or systemd-resolved module answers first), and bascule's DNS server listens on port 53 of a
loopback address of that replica's own (127.x.y.z: the whole of 127/8 is loopback on Linux). The
server then knows which replica asked each query (`dns.Lookup.asker`).

    problem = resolver_problem()                 # None, or why this machine cannot (and what would)
    address = listen_for(dns, "kv-scaleway-fr-par-0")
    files = write_resolver(run_dir / "resolv", "kv-scaleway-fr-par-0", address)
    argv = namespace_argv(argv, files)           # unshare … mount --bind … exec argv

The wrapper execs the service in place (``unshare`` without ``--fork``, ``exec`` in the shell), so
the PID the supervisor started is the service's: its kill, pause, marker and start time are as
before. This needs Linux, root (mounting, and binding port 53) and util-linux's ``unshare`` and
``mount``; where any is missing, a design that uses names is refused before anything starts.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

__all__ = [
    "DNS_PORT",
    "ResolverFiles",
    "listen_for",
    "names_refusal",
    "namespace_argv",
    "nsswitch_text",
    "resolv_conf_text",
    "resolver_problem",
    "write_resolver",
]

DNS_PORT: Final = 53
RESOLV_CONF: Final = "/etc/resolv.conf"
NSSWITCH_CONF: Final = "/etc/nsswitch.conf"
_ATTEMPTS: Final = 32
_TRIAL_TIMEOUT_S: Final = 10.0
# Mount in the child's own namespace, then become the service (same PID: exec, no fork).
_SCRIPT: Final = 'mount --bind "$0" /etc/resolv.conf && {nss}exec "$@"'
_NSS_MOUNT: Final = 'mount --bind "$1" /etc/nsswitch.conf && shift && '


class _Listens(Protocol):
    def listen(self, address: str, port: int, *, asker: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ResolverFiles:
    """The files mounted over the system's for one replica, and the address its resolver asks."""

    address: str
    resolv_conf: Path
    nsswitch: Path | None
    """None when this machine has no /etc/nsswitch.conf (glibc then asks DNS anyway)."""


def resolv_conf_text(address: str, replica: str) -> str:
    """The resolv.conf of one replica: bascule's DNS server at `address`, nothing else. No search
    domain, no options: a name is looked up as given, with the resolver's default timeouts."""
    return f"# bascule: the resolver of {replica}, asking the run's DNS server only\nnameserver {address}\n"


def nsswitch_text(original: str) -> str:
    """`original` with its ``hosts:`` line made ``files dns`` (added when it has none), so that no
    other module (mdns, resolve, myhostname) answers or stops a lookup before DNS is asked."""
    lines = [
        "hosts:          files dns" if line.split(":", 1)[0].strip() == "hosts" else line
        for line in original.splitlines()
    ]
    if not any(line.startswith("hosts:") for line in lines):
        lines.append("hosts:          files dns")
    return "\n".join(lines) + "\n"


def namespace_argv(argv: tuple[str, ...], files: ResolverFiles) -> tuple[str, ...]:
    """`argv` run in a mount namespace of its own where `files` are the system's resolver files."""
    nss = _NSS_MOUNT if files.nsswitch is not None else ""
    extra = (str(files.nsswitch),) if files.nsswitch is not None else ()
    return (
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _SCRIPT.format(nss=nss),
        str(files.resolv_conf),
        *extra,
        *argv,
    )


def write_resolver(directory: Path, replica: str, address: str) -> ResolverFiles:
    """Write one replica's resolv.conf (and nsswitch.conf) under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    resolv = directory / f"{replica}.resolv.conf"
    resolv.write_text(resolv_conf_text(address, replica))
    nsswitch: Path | None = None
    if os.path.exists(NSSWITCH_CONF):
        nsswitch = directory / f"{replica}.nsswitch.conf"
        nsswitch.write_text(nsswitch_text(Path(NSSWITCH_CONF).read_text()))
    return ResolverFiles(address, resolv.resolve(), nsswitch.resolve() if nsswitch else None)


def listen_for(dns: _Listens, asker: str, *, rng: random.Random | None = None) -> str:
    """Make `dns` listen on port 53 of a loopback address of `asker`'s own; that address. Another
    run on this machine may hold some: a random one is tried until one is free."""
    pick = rng or random.SystemRandom()
    last: OSError | None = None
    for _ in range(_ATTEMPTS):
        # Clear of 127.0.0.0/16 (127.0.0.1, systemd-resolved's 127.0.0.53) and of broadcast.
        address = f"127.{pick.randint(64, 254)}.{pick.randint(0, 255)}.{pick.randint(1, 254)}"
        try:
            dns.listen(address, DNS_PORT, asker=asker)
        except OSError as exc:
            last = exc
            continue
        return address
    raise OSError(f"no free loopback address for {asker}'s resolver on port {DNS_PORT}: {last}")


_NEEDS: Final = (
    "a service given its callees by name ({NAME.dns_url}, {NAME.dns_host}) is started with a "
    "resolv.conf of its own, which needs Linux, root (to mount it in a private mount namespace and "
    "to serve DNS on port 53 of a loopback address) and util-linux's unshare and mount"
)


@functools.cache
def resolver_problem() -> str | None:
    """Why replicas cannot be given a resolver of their own on this machine, and what would make it
    possible; None when they can. Tries it once (a namespace, a bind mount), then remembers."""
    if not sys.platform.startswith("linux"):
        return f"{_NEEDS}; this is {sys.platform}"
    if os.geteuid() != 0:
        return f"{_NEEDS}; bascule runs as uid {os.geteuid()}: run it as root (a container or CI job)"
    missing = [tool for tool in ("unshare", "mount") if shutil.which(tool) is None]
    if missing:
        return f"{_NEEDS}; {' and '.join(missing)} not found: install util-linux and mount"
    if not os.path.exists(RESOLV_CONF):
        return f"{_NEEDS}; there is no {RESOLV_CONF} to mount over: create one (it may be empty)"
    return _trial()


def _trial() -> str | None:
    """Mount a file over /etc/resolv.conf in a throwaway namespace and read it back."""
    with tempfile.TemporaryDirectory(prefix="bascule-resolv-") as tmp:
        probe = Path(tmp) / "resolv.conf"
        probe.write_text("# bascule trial\n")
        files = ResolverFiles("127.0.0.1", probe, None)
        argv = namespace_argv(("cat", RESOLV_CONF), files)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=_TRIAL_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{_NEEDS}; trying it failed: {exc}"
    if done.returncode != 0 or done.stdout != "# bascule trial\n":
        said = (done.stderr.strip() or done.stdout.strip())[:300]
        return (
            f"{_NEEDS}; trying it failed ({said or f'exit {done.returncode}'}): a container needs "
            "CAP_SYS_ADMIN (e.g. docker run --cap-add SYS_ADMIN, or --privileged)"
        )
    return None


def names_refusal(resolving: frozenset[str]) -> str | None:
    """Why a stack whose components `resolving` use names cannot start here, or None."""
    if not resolving:
        return None
    problem = resolver_problem()
    if problem is None:
        return None
    return f"{', '.join(sorted(resolving))}: {problem}; or give callees by address ({{NAME.url}})"
