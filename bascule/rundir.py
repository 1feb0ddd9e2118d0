"""Run directories (``--out``, ``--run-dir``): made ready before anything starts, every way they
can fail — a file in the way, a path under a file, no permission, a read-only or full file
system — told as one `RunDirectoryError` that names the directory and what is wrong."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bascule.errors import RunDirectoryError, RunDirectoryInUseError

__all__ = ["describe_os_error", "prepare_run_directory", "refuse_used"]

_JOURNAL = "journal.jsonl"  # bascule.journal.JOURNAL_FILE

_WHY = {
    errno.EEXIST: "a file is in the way",
    errno.ENOTDIR: "a part of its path is a file, not a directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "a file grew beyond the size allowed",
    errno.ENAMETOOLONG: "the path is too long",
}


def describe_os_error(exc: OSError) -> str:
    """What an `OSError` met on a run directory means, in words (the errno's text otherwise)."""
    return _WHY.get(exc.errno or 0) or exc.strerror or str(exc)


def refuse_used(path: Path, *, within: bool = False) -> None:
    """Raise `RunDirectoryInUseError` when `path` already holds a run's journal — or, `within`, when any
    directory below it (two levels down: a suite's or a repeat's runs) does: a run there would append
    to it, and its result would count both runs' requests."""
    found = [path / _JOURNAL] if (path / _JOURNAL).is_file() else []
    if within and path.is_dir():
        below = (*path.glob(f"*/{_JOURNAL}"), *path.glob(f"*/*/{_JOURNAL}"))
        found += sorted(p for p in below if p.is_file())
    if found:
        shown = ", ".join(str(p) for p in found[:3]) + (
            f" and {len(found) - 3} more" if len(found) > 3 else ""
        )
        raise RunDirectoryInUseError(
            f"{path} already holds {'a run' if len(found) == 1 else 'runs'} ({shown}): a new run there "
            "would mix with it — give another --out (or none: a new directory under runs/), or remove it"
        )


def prepare_run_directory(path: Path, *, fresh: bool = False, within: bool = False) -> Path:
    """Create `path` (and its parents) and check that a file can be written in it. Raises
    `RunDirectoryError` saying why not; with `fresh`, `RunDirectoryInUseError` when it already holds a
    run (`within`: or any directory below it does, `refuse_used`)."""
    if fresh:
        refuse_used(path, within=within)
    try:
        if path.exists() and not path.is_dir():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".bascule-write-check.{os.getpid()}"
        with probe.open("wb") as f:
            f.write(b"ok\n")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as exc:
        raise RunDirectoryError(f"cannot use {path} as a run directory: {describe_os_error(exc)}") from exc
    return path
