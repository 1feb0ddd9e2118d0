"""Turning YAML text into validated designs and scenarios, with every error at ``file:line:column``.

``parse_design`` and ``parse_scenario`` are pure (text in, model out); ``read_design``,
``read_scenario`` and ``read_any`` read files. All the problems of a file are reported at once.
Only regular files of at most ``MAX_FILE_BYTES`` are read (a FIFO or ``/dev/zero`` would block or
never end), and they must be UTF-8: bytes that are not are reported at their line and column.
"""

from __future__ import annotations

import os
import re
import stat
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bascule.errors import PathElement, Problem, ScenarioError
from bascule.model.design import Design
from bascule.model.scenario import Scenario
from bascule.model.source import SourceMap, parse_yaml
from bascule.model.suggest import did_you_mean

__all__ = [
    "MAX_FILE_BYTES",
    "DocumentKind",
    "detect_kind",
    "parse_design",
    "parse_scenario",
    "read_any",
    "read_design",
    "read_scenario",
    "scenario_design_path",
    "validate_model",
]

MAX_FILE_BYTES = 1024 * 1024
"""Largest design or scenario file read (1 MiB); real ones are a few kilobytes."""

DocumentKind = Literal["design", "scenario"]
M = TypeVar("M", bound=BaseModel)


def detect_kind(data: Any) -> DocumentKind | None:
    """A scenario has ``phases``, a design ``regions`` or ``components``; failing those (misspelt:
    ``phses``), the keys only one of the two has tell it, so that its own errors are reported."""
    if not isinstance(data, dict):
        return None
    if "phases" in data:
        return "scenario"
    if "regions" in data or "components" in data:
        return "design"
    keys = {str(k) for k in data}
    scenario, design = set(Scenario.model_fields), set(Design.model_fields)
    if keys & (scenario - design) or any(did_you_mean(k, ["phases"]) for k in keys):
        return "scenario"
    if keys & (design - scenario) or any(did_you_mean(k, ["regions", "components"]) for k in keys):
        return "design"
    return None


def parse_design(text: str, file: str = "<design>") -> Design:
    return _design(*parse_yaml(text, file))


def parse_scenario(text: str, file: str = "<scenario>") -> Scenario:
    return _scenario(*parse_yaml(text, file))


def _design(data: Any, source: SourceMap) -> Design:
    design = validate_model(Design, data, source)
    problems = [source.problem(path, message) for path, message in design.check()]
    if problems:
        raise ScenarioError(problems)
    return design.attach_source(source)


def _scenario(data: Any, source: SourceMap) -> Scenario:
    scenario = validate_model(Scenario, data, source)
    problems = [source.problem(path, message) for path, message in scenario.check()]
    if problems:
        raise ScenarioError(problems)
    return scenario.attach_source(source)


def read_design(path: str | Path) -> Design:
    return parse_design(_read_text(path), str(path))


def read_scenario(path: str | Path) -> Scenario:
    return parse_scenario(_read_text(path), str(path))


def read_any(path: str | Path) -> Design | Scenario:
    """A design or a scenario, told apart by their top-level keys."""
    data, source = parse_yaml(_read_text(path), str(path))
    kind = detect_kind(data)
    if kind == "scenario":
        return _scenario(data, source)
    if kind == "design":
        return _design(data, source)
    raise ScenarioError(
        [
            Problem(
                "not a bascule file: a scenario has 'phases' at top level, a design has 'regions'",
                (),
                str(path),
                1,
                1,
            )
        ]
    )


def scenario_design_path(scenario_file: str | Path, scenario: Scenario) -> Path | None:
    """The design a scenario names as its default, relative to the scenario file. Raises
    :class:`ScenarioError` at the scenario's ``design:`` line when that is not a readable file."""
    if scenario.design is None:
        return None
    path = Path(scenario_file).parent / scenario.design
    wrong = _not_a_file(path)
    if wrong is None:
        return path.resolve()
    message = f"design {scenario.design!r} ({path}): {wrong}"
    source = scenario.source_map
    if source is None:
        raise ScenarioError([Problem(message, ("design",), str(scenario_file))])
    raise ScenarioError([source.problem(("design",), message)])


def _not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as an input file, or None when it can be opened."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    except ValueError:
        return "not a valid path (it holds a NUL character)"
    return None if stat.S_ISREG(mode) else _not_regular(mode)


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a regular file"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO), not a regular file"
    return "not a regular file"


def _read_text(path: str | Path) -> str:
    """The file's text: a regular file of at most MAX_FILE_BYTES, in UTF-8."""
    file = str(path)
    try:
        # Non-blocking, so that opening a FIFO returns at once; it is then refused as not regular.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as exc:
        raise ScenarioError([Problem("no such file", (), file)]) from exc
    except OSError as exc:
        raise ScenarioError([Problem(f"cannot read the file: {exc.strerror or exc}", (), file)]) from exc
    except ValueError as exc:
        raise ScenarioError([Problem("not a valid path (it holds a NUL character)", (), file)]) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ScenarioError([Problem(_not_regular(mode), (), file)])
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError([Problem(f"cannot read the file: {exc.strerror or exc}", (), file)]) from exc
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ScenarioError(
            [
                Problem(
                    f"larger than {MAX_FILE_BYTES // 1024 // 1024} MiB, the limit for an input file", (), file
                )
            ]
        )
    return _decode(data, file)


def _decode(data: bytes, file: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
        bad = data[exc.start : exc.end].hex(" ")
        message = f"not UTF-8: byte{'s' if exc.end - exc.start > 1 else ''} {bad} cannot be decoded"
        raise ScenarioError([Problem(message, (), file, line, column)]) from exc
    # Universal newlines, as text-mode reading gave: YAML counts lines the same either way.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def validate_model(model: type[M], data: Any, source: SourceMap) -> M:
    """`data` (parsed YAML) as `model`, or `ScenarioError` with every problem at file:line:column
    (through `source`). For any file bascule reads: designs, scenarios, target files."""
    if not isinstance(data, dict):
        raise ScenarioError([source.problem((), "expected a mapping of keys at the top level")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = _without_echoes(exc.errors())
        problems = [_problem(model, error, source) for error in errors]
        raise ScenarioError(_dedupe(problems)) from exc


def _without_echoes(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    # A list whose items all failed is also reported "too short"; the items' errors say it better.
    locs = [tuple(e["loc"]) for e in errors]
    return [
        e
        for e in errors
        if not (
            e["type"] == "too_short"
            and any(
                len(other) > len(e["loc"]) and other[: len(e["loc"])] == tuple(e["loc"]) for other in locs
            )
        )
    ]


def _dedupe(problems: Sequence[Problem]) -> list[Problem]:
    seen: set[tuple[object, ...]] = set()
    out: list[Problem] = []
    for p in problems:
        key = (p.line, p.column, p.message)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return sorted(out, key=lambda p: (p.line or 0, p.column or 0))


_KIND_NOUNS = {"fault": "fault kind", "probes": "probe kind", "guardrails": "guardrail kind"}


def _problem(root: type[BaseModel], error: ErrorDetails, source: SourceMap) -> Problem:
    loc: tuple[PathElement, ...] = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(loc[-1])
        fields = _fields_at(root, loc[:-1])
        hint = did_you_mean(key, fields)
        expected = f"; expected one of: {', '.join(fields)}" if fields and not hint else ""
        return source.problem(loc, f"unknown key {key!r}{hint}{expected}", key=True)
    if kind == "missing":
        return source.problem(loc, f"missing required field {str(loc[-1])!r}")
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        tag = str(ctx.get("tag"))
        noun = next((n for part, n in _KIND_NOUNS.items() if part in loc), "kind")
        message = f"unknown {noun} {tag!r}{did_you_mean(tag, tags)}; known: {', '.join(tags)}"
        return source.problem((*loc, "kind"), message)
    if kind == "union_tag_not_found":
        return source.problem(loc, "missing 'kind'")
    message = str(error["msg"])
    if message.startswith(("Value error, ", "Assertion failed, ")):
        message = message.split(", ", 1)[1]
    if kind not in ("value_error", "assertion_error") and "input" in error:
        shown = repr(error["input"])
        if len(shown) <= 60 and not isinstance(error["input"], dict | list):
            message = f"{message} (got {shown})"
    if kind in ("enum", "literal_error") and isinstance(error.get("input"), str):
        # `answer: nodta`: the closest of the values the field takes.
        message += did_you_mean(error["input"], re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
    return source.problem(loc, message)


def _fields_at(root: type[BaseModel], loc: Sequence[PathElement]) -> list[str]:
    """Field names (as written in YAML) of the model that sits at ``loc``, for "did you mean"."""
    current: Any = root
    for element in loc:
        current = _step(current, element)
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items() if name != "kind"]
    return []


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return tp


def _step(tp: Any, element: PathElement) -> Any:
    tp = _unwrap(tp)
    origin = get_origin(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, info in tp.model_fields.items():
            if element in (name, info.alias):
                return info.annotation
        return None
    if origin in (Union, types.UnionType):
        for candidate in get_args(tp):
            member = _unwrap(candidate)
            if isinstance(member, type) and issubclass(member, BaseModel):
                field = member.model_fields.get("kind")
                if field is not None and field.default == element:
                    return member
        return None
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return args[0] if args and isinstance(element, int) else None
    if origin is dict:
        return get_args(tp)[1]
    return None
