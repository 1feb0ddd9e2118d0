"""Which clusters the user confirmed acting on, known by their identity, never by their address.

An API server on loopback is not proof that the cluster is this machine's: ``kubectl proxy``, an SSH
tunnel or an access proxy (Teleport, a cloud's IAP) put a production cluster on 127.0.0.1. So every
context must be confirmed — ``--confirm CONTEXT`` on the command line, ``BASCULE_CONFIRM_CONTEXTS``
in CI — and bascule remembers what was confirmed by the cluster's identity: the UID of its
``kube-system`` namespace, made once when the cluster was created and unique to it. A later run
reaching a remembered cluster, under any context name or address, needs no ``--confirm``; a new
cluster behind a remembered address (a tunnel pointed elsewhere) has another UID and does.

The remembered identities are kept in ``confirmed-clusters.json`` in bascule's configuration
directory (``BASCULE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/bascule``, else ``~/.config/bascule``),
one entry per UID with the context and server it was confirmed as, and when. Reading the UID takes
``get`` on ``namespaces/kube-system`` (``deploy/rbac.yaml``, ``bascule-identity``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bascule.errors import TargetError
from bascule.targets.kubernetes.cluster import CONFIRM_ENV, KubeApi, UnreachableError, unconfirmed
from bascule.targets.kubernetes.resources import Resource

__all__ = [
    "CONFIG_ENV",
    "CONFIRMED_FILE",
    "IDENTITY_NAMESPACE",
    "Confirmed",
    "check_confirmation",
    "cluster_uid",
    "confirmed_path",
    "known_uid",
    "read_confirmed",
    "remember",
    "remember_flagged",
]

CONFIG_ENV: Final = "BASCULE_CONFIG_DIR"
CONFIRMED_FILE: Final = "confirmed-clusters.json"
IDENTITY_NAMESPACE: Final = "kube-system"
"""The namespace whose UID is a cluster's identity: every cluster has it, nobody recreates it."""
NAMESPACES: Final = Resource("", "v1", "namespaces", "Namespace", False)


@dataclass(frozen=True)
class Confirmed:
    """One cluster the user confirmed: its identity, and the context and server it was reached as."""

    uid: str
    context: str
    server: str
    at: float


def cluster_uid(api: KubeApi) -> str | None:
    """The cluster's identity: the UID of its ``kube-system`` namespace (None when it has none).
    Raises `TargetError` when the cluster cannot be reached or refuses the read."""
    found = api.get(NAMESPACES, None, IDENTITY_NAMESPACE)
    meta = (found or {}).get("metadata")
    uid = meta.get("uid") if isinstance(meta, dict) else None
    return str(uid) if uid else None


def known_uid(api: KubeApi) -> str | None:
    """`cluster_uid`, or None when the cluster refuses the read: such a cluster is unidentified, so
    it needs ``--confirm`` every time. Raises `UnreachableError` when it does not answer."""
    try:
        return cluster_uid(api)
    except UnreachableError:
        raise
    except TargetError:
        return None


def confirmed_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]) / CONFIRMED_FILE
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bascule" / CONFIRMED_FILE


def read_confirmed(path: Path) -> dict[str, Confirmed]:
    """The remembered clusters by UID; none when the file does not exist. Raises `TargetError`
    when it cannot be read (a damaged file is never taken as a confirmation)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read the confirmed clusters in {path}: {exc}") from exc
    entries = data.get("clusters") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise TargetError(f"{path}: expected {{'clusters': [...]}}")
    out: dict[str, Confirmed] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("uid"), str):
            raise TargetError(f"{path}: an entry without a uid: {entry!r}")
        context, server = str(entry.get("context", "")), str(entry.get("server", ""))
        out[entry["uid"]] = Confirmed(entry["uid"], context, server, float(entry.get("at", 0)))
    return out


def remember(path: Path, confirmed: Collection[Confirmed]) -> None:
    """Add `confirmed` to the file (written whole, then renamed over the old one; mode 0600)."""
    known = read_confirmed(path)
    for entry in confirmed:
        known[entry.uid] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"clusters": [vars(e) for e in sorted(known.values(), key=lambda e: (e.context, e.uid))]}
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    os.replace(partial, path)


def check_confirmation(
    apis: Mapping[str, KubeApi],
    confirm: Collection[str] = (),
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> list[str]:
    """The contexts of `apis` not confirmed: neither given in `confirm` (``--confirm``) or
    ``BASCULE_CONFIRM_CONTEXTS``, nor reaching a cluster whose identity was confirmed before. When
    none is left, the identities confirmed by `confirm` are remembered (those confirmed through the
    environment are not: CI confirms afresh every run). Reads each cluster's identity (one GET);
    raises `UnreachableError` when a cluster does not answer."""
    env = os.environ if environ is None else environ
    where = path or confirmed_path(env)
    identities = {context: known_uid(api) for context, api in apis.items()}
    known = read_confirmed(where)
    missing = unconfirmed(identities, confirm, env, remembered=set(known))
    if not missing:
        remember_flagged(where, apis, identities, confirm, env)
    return missing


def remember_flagged(
    path: Path,
    apis: Mapping[str, KubeApi],
    identities: Mapping[str, str | None],
    confirm: Collection[str],
    environ: Mapping[str, str],
) -> None:
    """Remember the identities of the contexts confirmed with ``--confirm`` (not those confirmed
    only through ``BASCULE_CONFIRM_CONTEXTS``) that are not remembered yet."""
    known = read_confirmed(path)
    from_env = {c.strip() for c in environ.get(CONFIRM_ENV, "").split(",")}
    new = [
        Confirmed(uid, context, apis[context].server, time.time())
        for context, uid in identities.items()
        if uid is not None and context in set(confirm) - from_env and uid not in known
    ]
    if new:
        remember(path, new)
