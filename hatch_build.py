"""Hatchling's build hook for bascule: compiles the fault proxy's byte searches
(`bascule/targets/local/proxy/_scan.c`) when a C compiler and Python's headers are found. Without
them bascule installs and runs the same, on the pure-Python twins in `scan.py`, only slower
(docs/performance.md). ``BASCULE_NO_COMPILE=1`` skips the compiling; ``BASCULE_REQUIRE_COMPILED=1``
(CI) makes a failed compile fail the install instead."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_SOURCE = "bascule/targets/local/proxy/_scan.c"


def _command(source: Path, out: Path) -> list[str] | str:
    """The command that compiles `source` into the extension module `out`, or why there is none."""
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return f"no Python.h in {include} (Debian: apt-get install python3-dev)"
    linker = sysconfig.get_config_var("LDSHARED")
    if not linker:
        return "this Python names no compiler to build extensions with (LDSHARED)"
    command = shlex.split(linker)
    if shutil.which(command[0]) is None:
        return f"no C compiler: {command[0]} not found (Debian: apt-get install gcc)"
    shared = shlex.split(sysconfig.get_config_var("CCSHARED") or "")
    return [*command, *shared, "-O2", "-I", str(include), str(source), "-o", str(out)]


class ScanBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        source = Path(self.root) / _SOURCE
        out = source.with_name("_scan" + str(sysconfig.get_config_var("EXT_SUFFIX")))
        if os.environ.get("BASCULE_NO_COMPILE"):
            out.unlink(missing_ok=True)  # a module of an earlier build would still be imported
            return
        # Built beside scan.py, where an editable install imports it from: under a name of its own
        # first, then renamed over the last one (a process running bascule keeps the one it mapped).
        try:
            fd, name = tempfile.mkstemp(prefix="._scan-", suffix=".so", dir=out.parent)
        except OSError as exc:  # a source tree one cannot write to
            self._fail(f"cannot write beside {_SOURCE}: {exc}", None)
            return
        os.close(fd)
        built = Path(name)
        try:
            command = _command(source, built)
            if isinstance(command, str):
                self._fail(command, out)
                return
            try:
                done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self._fail(f"{shlex.join(command)} failed: {exc}", out)
                return
            if done.returncode != 0:
                self._fail(f"{shlex.join(command)} failed:\n{done.stderr.strip()}", out)
                return
            os.replace(built, out)
        finally:
            built.unlink(missing_ok=True)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(out)] = f"bascule/targets/local/proxy/{out.name}"

    def _fail(self, why: str, out: Path | None) -> None:
        if out is not None:
            out.unlink(missing_ok=True)  # one of an earlier build, of another source, is not imported
        message = f"bascule: the fault proxy's compiled byte searches are not built ({why})"
        if os.environ.get("BASCULE_REQUIRE_COMPILED"):
            raise RuntimeError(message)
        self.app.display_warning(f"{message}; its pure-Python twins will be used, only slower")
