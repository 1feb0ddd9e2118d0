"""One PostgreSQL cluster of the example, as bascule starts it: initdb (primary region) or
pg_basebackup from the primary (standby regions) into the replica's data directory, then exec
Debian's `postgres` on the port bascule gave.

    python pg_node.py --port 5433 --data-dir RUN/data/db-... --region ovhcloud/gra \
        --primary-region scaleway/fr-par --upstream-port 41234 [--synchronous]
    python pg_node.py --wipe --data-dir RUN/data/db-...        # the design's wipe: command

A standby streams from 127.0.0.1:UPSTREAM — the route bascule puts between the standby's region
and the primary's (`{replication.port}`), so that `replication-pause` and `partition` cut it. Its
`primary_conninfo` is given on postgres's command line, never left in the data directory. With
`--synchronous`, the primary waits for a standby to have the WAL of each commit before it
acknowledges it (`synchronous_commit=on`, `synchronous_standby_names='*'`); a promoted standby
never does, so that it does not wait for a standby it no longer has.

PostgreSQL refuses to run as root: run as root, the node hands its data directory to the
`postgres` user (Debian's package creates it) and drops to it before initdb and postgres.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

BIN = Path("/usr/lib/postgresql/15/bin")
BASEBACKUP_FOR_S = 90.0


def _binary(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        sys.exit(f"pg_node: {name} not found (apt-get install postgresql)")
    return path


def _reachable(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may traverse every directory above `path` (pytest's 0700 tmp dirs are not)."""
    for parent in path.resolve().parents:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == user.pw_gid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


def _drop_root(data_dir: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam("postgres")
    if not _reachable(data_dir, user):
        sys.exit(
            f"pg_node: the postgres user cannot reach {data_dir} (a directory above it is closed to "
            "others): give bascule run an --out directory others may traverse"
        )
    for root, dirs, files in os.walk(data_dir):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, user.pw_uid, user.pw_gid)
    os.setgid(user.pw_gid)
    os.initgroups("postgres", user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = user.pw_dir
    os.environ["USER"] = "postgres"


def _initdb(pgdata: Path) -> None:
    subprocess.run(
        [_binary("initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        stdout=sys.stderr,
    )


def _basebackup(pgdata: Path, upstream_port: int) -> None:
    """Copy the primary through the route; it may not be up yet when both start at once."""
    deadline = time.monotonic() + BASEBACKUP_FOR_S
    while True:
        shutil.rmtree(pgdata, ignore_errors=True)
        done = subprocess.run(
            [
                _binary("pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(upstream_port),
                "-U",
                "postgres",
                "-D",
                str(pgdata),
                "-X",
                "stream",
                "--no-sync",
                "--checkpoint=fast",
                "-R",
            ],
            stdout=sys.stderr,
            stderr=sys.stderr,
            check=False,
        )
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            sys.exit(
                f"pg_node: pg_basebackup from 127.0.0.1:{upstream_port} failed for {BASEBACKUP_FOR_S:g} s"
            )
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--wipe", action="store_true", help="delete the cluster and exit")
    parser.add_argument("--port", type=int)
    parser.add_argument("--region")
    parser.add_argument("--primary-region")
    parser.add_argument("--upstream-port", type=int)
    parser.add_argument("--synchronous", action="store_true")
    args = parser.parse_args()
    pgdata = args.data_dir / "pgdata"
    if args.wipe:
        shutil.rmtree(pgdata, ignore_errors=True)
        print(f"pg_node: wiped {pgdata}", file=sys.stderr)
        return
    if None in (args.port, args.region, args.primary_region, args.upstream_port):
        parser.error("--port, --region, --primary-region and --upstream-port are required")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    _drop_root(args.data_dir)
    primary = args.region == args.primary_region
    if not (pgdata / "PG_VERSION").exists():
        if primary:
            _initdb(pgdata)
        else:
            _basebackup(pgdata, args.upstream_port)
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(args.port),
        "unix_socket_directories": "",
        "wal_level": "replica",
        "max_wal_senders": "5",
        "hot_standby": "on",
        "wal_keep_size": "256MB",
        # Durability against a machine crash is not what this example measures (replication is):
        # fsync off keeps PostgreSQL fast on a busy 2-core machine.
        "fsync": "off",
        "full_page_writes": "off",
        "shared_buffers": "16MB",
        "max_connections": "40",
    }
    if primary and args.synchronous:
        settings |= {"synchronous_commit": "on", "synchronous_standby_names": "*"}
    if (pgdata / "standby.signal").exists():
        settings["primary_conninfo"] = (
            f"host=127.0.0.1 port={args.upstream_port} user=postgres application_name={args.region}"
        )
    argv = [_binary("postgres"), "-D", str(pgdata)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    print(
        f"pg_node: {'primary' if primary else 'standby'} on 127.0.0.1:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
