"""Run directories (``--out``, ``--run-dir``): made ready before anything starts, every way they
can fail — a file in the way, a path under a file, no permission, a read-only or full file
system — told as one `RunDirectoryError` that names the directory and what is wrong."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bascule.errors import RunDirectoryError

__all__ = ["describe_os_error", "prepare_run_directory"]

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


def prepare_run_directory(path: Path) -> Path:
    """Create `path` (and its parents) and check that a file can be written in it. Raises
    `RunDirectoryError` saying why not."""
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
