"""What Linux's /proc says about a run's processes and ports, for the ledger and `bascule recover`.

A process is named by its PID *and* its kernel start time (`bascule.stack.supervisor`): a PID is
reused, the pair is not. A zombie (killed, not yet reaped by whoever adopted it) counts as gone —
it holds no port and runs nothing, and an orphan's new parent may never reap it.

Processes a run starts carry a random *marker* in their environment (`MARKER_ENV`), so that one
started in the instant between its spawn and its ledger record is still found by scanning
``/proc/*/environ`` — only the run's own processes (and their children) can carry it.

Sockets come from ``/proc/net/{tcp,tcp6,udp,udp6}``: a port counts as bound when a socket that a
process still owns (inode ≠ 0) listens on it (TCP), holds it without listening (TCP, as the fault
proxy's port holder does), or is bound to it (UDP). Parsing is pure (`parse_proc_net`); reading
is separate.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bascule.stack.supervisor import process_start_time

__all__ = [
    "MARKER_ENV",
    "BoundSocket",
    "bound_ports",
    "find_marked",
    "parse_proc_net",
    "process_alive",
    "signal_process",
]

MARKER_ENV: Final = "BASCULE_RUN_MARKER"
_PROC: Final = Path("/proc")
_TCP_LISTEN: Final = "0A"
_TCP_CLOSE: Final = "07"


def _state(pid: int) -> str | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat[stat.rindex(")") + 2 :].split(maxsplit=1)[0]


def process_alive(pid: int, start_time: int) -> bool:
    """True while `pid` is the process that started at `start_time` and is not a zombie."""
    if process_start_time(pid) != start_time:
        return False
    state = _state(pid)
    return state is not None and state not in ("Z", "X")


def signal_process(pid: int, start_time: int, sig: signal.Signals) -> None:
    """Signal the process — and its process group when it leads one, as every process a run starts
    runs in a session of its own — if the PID is still that process."""
    if not process_alive(pid, start_time):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def find_marked(marker: str, *, exclude: Iterable[int] = ()) -> list[tuple[int, int]]:
    """(pid, start time) of every live process whose environment carries ``MARKER_ENV=marker``."""
    wanted = f"{MARKER_ENV}={marker}".encode()
    skip = {os.getpid(), *exclude}
    found: list[tuple[int, int]] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        pid = int(entry.name)
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted not in environ.split(b"\0"):
            continue
        start = process_start_time(pid)
        if start is not None and process_alive(pid, start):
            found.append((pid, start))
    return found


@dataclass(frozen=True, slots=True)
class BoundSocket:
    proto: str
    """``tcp`` or ``udp``."""
    port: int
    state: str
    """The kernel's hexadecimal state (``0A`` is a TCP listener)."""
    inode: int


def parse_proc_net(text: str, proto: str) -> Iterator[BoundSocket]:
    """The sockets of one ``/proc/net/{tcp,tcp6,udp,udp6}`` file that hold their local port."""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        _address, _, port_hex = fields[1].rpartition(":")
        state, inode = fields[3], int(fields[9])
        if inode == 0:
            continue
        if proto == "tcp" and state not in (_TCP_LISTEN, _TCP_CLOSE):
            continue
        yield BoundSocket(proto, int(port_hex, 16), state, inode)


def bound_ports(ports: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Those of `ports` (``(proto, port)``) that some socket on this machine still holds."""
    wanted = set(ports)
    held: set[tuple[str, int]] = set()
    for name, proto in (("tcp", "tcp"), ("tcp6", "tcp"), ("udp", "udp"), ("udp6", "udp")):
        try:
            text = (_PROC / "net" / name).read_text()
        except OSError:
            continue
        held |= {(s.proto, s.port) for s in parse_proc_net(text, proto)}
    return sorted(wanted & held)
