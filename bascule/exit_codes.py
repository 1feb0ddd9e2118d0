"""Exit codes, the same for every verb that runs scenarios (documented in the README)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    OBJECTIVES_FAILED = 1
    INVALID_INPUT = 2
    ABORTED = 3
    TARGET_ERROR = 4
