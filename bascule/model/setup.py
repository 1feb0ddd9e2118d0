"""Setup requests: calls made once the stack is ready and before any probe, whose answers fill
``{setup.NAME}`` placeholders in the probes and load (an id the service creates at start, a
token). Pure: the model, where placeholders are used, and filling them in.

    setup:
      - {name: notebook, url: /api/notebooks, json: {title: bascule}, save: {notebook: id}}
    steady_state:
      probes: [{kind: http, url: "/api/notebooks/{setup.notebook}"}]

In a header value a placeholder becomes ``${BASCULE_SETUP_NAME}``, read from the environment when a
request is made like any header variable, so a token saved by setup is never written to a file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bascule.errors import PathElement
from bascule.model.durations import Timeout
from bascule.model.headers import Headers

__all__ = ["PLACEHOLDER", "SetupStep", "env_name", "fill_setup", "setup_problems", "used_placeholders"]

PLACEHOLDER: Final = re.compile(r"\{setup\.([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class SetupStep(BaseModel):
    """One request, made once before the run's probes and load start."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    name: Annotated[str, Field(pattern=_NAME)]
    url: str
    """A path (``/api/notebooks``), asked at the design's entry points through the edge in routing
    order; or a full URL, asked directly."""
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    json_body: dict[str, object] | None = Field(default=None, alias="json")
    """The JSON object sent as the body (none when absent)."""
    headers: Headers = {}
    data_class: str | None = None
    """Through the edge: the class whose allowed regions it may go to (default: the design's least
    demanding class)."""
    expect_status: tuple[Annotated[int, Field(ge=100, le=599)], ...] = (200, 201)
    save: dict[str, str] = {}
    """``{placeholder: dotted path in the JSON answer}``: ``{notebook: id}`` fills
    ``{setup.notebook}``; an empty path saves the whole answer (a string or number)."""
    timeout: Timeout = 10.0

    @field_validator("save")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"{name!r} is not a placeholder name (letters, digits, _)")
        return value


def env_name(name: str) -> str:
    """The environment variable a saved value is given for header values."""
    return f"BASCULE_SETUP_{name.upper()}"


def _strings(value: object, path: tuple[PathElement, ...]) -> Iterator[tuple[tuple[PathElement, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for field in type(value).model_fields:
            yield from _strings(getattr(value, field), (*path, field))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _strings(key, (*path, key))
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def used_placeholders(
    value: object, path: tuple[PathElement, ...] = ()
) -> Iterator[tuple[tuple[PathElement, ...], str]]:
    """Every ``{setup.NAME}`` in the strings of ``value``, with where it is."""
    for where, text in _strings(value, path):
        for found in PLACEHOLDER.finditer(text):
            yield where, found.group(1)


def setup_problems(
    steps: tuple[SetupStep, ...], users: Mapping[str, object]
) -> list[tuple[tuple[PathElement, ...], str]]:
    """Placeholders that no earlier step saves, and names saved twice, as ``(path, message)``.
    ``users`` are the scenario's parts that may use them (``steady_state``, ``load``)."""
    problems: list[tuple[tuple[PathElement, ...], str]] = []
    saved: set[str] = set()
    names: set[str] = set()
    for index, step in enumerate(steps):
        if step.name in names:
            problems.append((("setup", index, "name"), f"two setup steps are named {step.name!r}"))
        names.add(step.name)
        for where, name in used_placeholders(step, ("setup", index)):
            if name not in saved:
                problems.append((where, f"{{setup.{name}}} is not saved by an earlier setup step"))
        for name in step.save:
            if name in saved:
                problems.append((("setup", index, "save", name), f"{{setup.{name}}} is saved twice"))
            saved.add(name)
    for part, value in users.items():
        for where, name in used_placeholders(value, (part,)):
            if name not in saved:
                known = ", ".join(sorted(saved)) or "none"
                problems.append((where, f"{{setup.{name}}} is not saved by any setup step (saved: {known})"))
    return problems


Model = TypeVar("Model")


def fill_setup(value: Model, values: Mapping[str, str], *, in_header: bool = False) -> Model:
    """``value`` with every ``{setup.NAME}`` replaced by its saved value — by
    ``${BASCULE_SETUP_NAME}`` in header values. Unknown names are left as they are."""

    def text(string: str, header: bool) -> str:
        def one(found: re.Match[str]) -> str:
            name = found.group(1)
            if name not in values:
                return found.group(0)
            return f"${{{env_name(name)}}}" if header else values[name]

        return PLACEHOLDER.sub(one, string)

    def walk(item: object, header: bool) -> object:
        if isinstance(item, str):
            return text(item, header)
        if isinstance(item, BaseModel):
            update = {
                field: walk(getattr(item, field), header or field == "headers")
                for field in type(item).model_fields
            }
            return item.model_copy(update=update)
        if isinstance(item, Mapping):
            return {walk(k, False) if isinstance(k, str) else k: walk(v, header) for k, v in item.items()}
        if isinstance(item, tuple):
            return tuple(walk(i, header) for i in item)
        if isinstance(item, list):
            return [walk(i, header) for i in item]
        return item

    return walk(value, in_header)  # type: ignore[return-value]
