"""The common shape of a fault kind, and the registry from YAML ``kind:`` to class.

A fault class is pure data: its validated parameters, the selector shapes it can act on, and what a
client sees while it holds. Targets (``bascule.targets``) carry it out; a target that cannot do a
kind refuses it at plan time.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from bascule.model.durations import format_duration, parse_duration
from bascule.model.selector import Scope

__all__ = ["FAULT_KINDS", "Fault", "fault_kind", "register"]


class Fault(BaseModel):
    """Base of every fault kind. Subclasses declare ``kind: Literal["…"] = "…"`` and their parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    scopes: ClassVar[frozenset[Scope]]
    """The selector shapes this kind can act on."""
    client_sees: ClassVar[str]
    """What a client of the affected part observes, in a few words (DESIGN.md's fault table)."""
    impairs_serving: ClassVar[bool] = True
    """Whether the regions it touches may stop answering, or answer worse, while it holds: the
    regions traffic may fail over from (time to fail over, failback). A fault that only stops what
    happens behind the answers (replication, the control plane) does not."""

    def describe(self) -> str:
        """The parameters that differ from their defaults, for tables: ``answer=nodata, new-conns-only``."""
        parts: list[str] = []
        for name, info in type(self).model_fields.items():
            if name == "kind":
                continue
            value = getattr(self, name)
            if value == info.default:
                continue
            shown = format_duration(value) if _is_duration(info) else _short(value)
            parts.append(f"{name}={shown}")
        return ", ".join(parts)


def _is_duration(info: FieldInfo) -> bool:
    return any(getattr(m, "func", None) is parse_duration for m in info.metadata)


def _short(value: object) -> str:
    if isinstance(value, Fault):
        inner = value.describe()
        return f"{value.kind}({inner})" if inner else value.kind
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "/".join(_short(v) for v in value)
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)


FAULT_KINDS: dict[str, type[Fault]] = {}
"""Every registered kind, by its YAML name, in registration order."""

F = TypeVar("F", bound=type[Fault])


def fault_kind(cls: type[Fault]) -> str:
    default = cls.model_fields["kind"].default
    if not isinstance(default, str):
        raise TypeError(f"{cls.__name__} must declare kind: Literal['…'] = '…'")
    return default


def register(cls: F) -> F:
    """Class decorator: make a fault kind available to scenarios under its ``kind``."""
    name = fault_kind(cls)
    if name in FAULT_KINDS:
        raise ValueError(f"fault kind {name!r} is registered twice")
    FAULT_KINDS[name] = cls
    return cls
