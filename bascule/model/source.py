"""Safe YAML parsing that remembers where every key and value stands in the file.

Validation errors name ``file:line:column``; pydantic reports a path such as
``("phases", 2, "fault", "kind")``, and the :class:`SourceMap` built here turns that path back
into a position. Only YAML's safe constructors run: no tag can build a Python object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from bascule.errors import PathElement, Problem, ScenarioError

__all__ = ["Position", "SourceMap", "parse_yaml"]


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass
class SourceMap:
    """Positions of the keys and values of one YAML document, by path."""

    file: str
    values: dict[tuple[PathElement, ...], Position] = field(default_factory=dict)
    keys: dict[tuple[PathElement, ...], Position] = field(default_factory=dict)

    def locate(
        self, path: Sequence[PathElement], *, key: bool = False
    ) -> tuple[Position | None, tuple[PathElement, ...]]:
        """The position of the longest prefix of ``path`` that exists in the document.

        Elements that do not exist in the document (pydantic adds union tags and validator names
        to its paths) are skipped rather than ending the walk. Returns the position and the path
        as it stands in the document."""
        walked: tuple[PathElement, ...] = ()
        best: Position | None = self.values.get(())
        for element in path:
            candidate = (*walked, element)
            if candidate in self.values:
                walked = candidate
                best = self.values[candidate]
        if key and walked in self.keys and path and walked and walked[-1] == path[-1]:
            best = self.keys[walked]
        return best, walked

    def problem(self, path: Sequence[PathElement], message: str, *, key: bool = False) -> Problem:
        position, walked = self.locate(path, key=key)
        return Problem(
            message=message,
            path=_clean_path(tuple(path), walked),
            file=self.file,
            line=position.line if position else None,
            column=position.column if position else None,
        )


def _clean_path(path: tuple[PathElement, ...], walked: tuple[PathElement, ...]) -> tuple[PathElement, ...]:
    # Keep the document's own path, plus a trailing element it does not have (a missing field or
    # an unknown key), but never pydantic's internal tags in the middle.
    if len(path) > len(walked) and path[: len(walked)] == walked:
        return (*walked, path[-1])
    return walked


def _position(node: yaml.Node) -> Position:
    mark = node.start_mark
    return Position(line=mark.line + 1, column=mark.column + 1)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, source: SourceMap) -> None:
        self.loader = loader
        self.source = source
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: tuple[PathElement, ...]) -> Any:
        self.source.values[path] = _position(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool):
                    self.problems.append(
                        Problem("a key must be a plain scalar", path, self.source.file, *_lc(key_node))
                    )
                    continue
                child = (*path, key if isinstance(key, str | int) else str(key))
                if key in result:
                    self.problems.append(
                        Problem(f"duplicate key {key!r}", child, self.source.file, *_lc(key_node))
                    )
                    continue
                self.source.keys[child] = _position(key_node)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _lc(node: yaml.Node) -> tuple[int, int]:
    position = _position(node)
    return position.line, position.column


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document safely. Raises :class:`ScenarioError` on syntax errors and duplicate keys."""
    source = SourceMap(file=file)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ScenarioError([Problem("the file is empty", (), file, 1, 1)])
        builder = _Builder(loader, source)
        data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context}"
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise ScenarioError([Problem(message, (), file, line, column)]) from exc
    finally:
        loader.dispose()
    if builder.problems:
        raise ScenarioError(builder.problems)
    return data, source
