"""Safe YAML parsing that remembers where every key and value stands in the file.

Validation errors name ``file:line:column``; pydantic reports a path such as
``("phases", 2, "fault", "kind")``, and the :class:`SourceMap` built here turns that path back
into a position. Only YAML's safe constructors run: no tag can build a Python object.

Parsing is bounded, so that no input can hang bascule or exhaust its stack: at most
``MAX_DEPTH`` levels of nesting, ``MAX_NODES`` values in the file and again once aliases and
merge keys are expanded (a "billion laughs" stops there), no alias that contains itself, and no
string over ``MAX_STRING`` characters. Each limit is reported at the line where it is crossed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from bascule.errors import PathElement, Problem, ScenarioError

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_STRING", "Position", "SourceMap", "parse_yaml"]

MAX_DEPTH = 64
"""Levels of nesting (a mapping in a list in a mapping…); real files use under 10."""
MAX_NODES = 10_000
"""Values (keys, scalars, lists, mappings) in a document, counted again after alias expansion."""
MAX_STRING = 65_536
"""Characters in one string."""


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


_MERGE = "tag:yaml.org,2002:merge"


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting depth and values while it composes, and refusing merge keys
    that merge a mapping into itself or expand beyond ``MAX_NODES``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._composed = 0
        self._inside_checked_merge = False

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self._mark()
            )
        self._composed += 1
        if self._composed > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"more than {MAX_NODES} values in the file", self._mark()
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:  # noqa: N803
        # Also bounded in the scanner: it keeps one pending key per open bracket and walks them
        # all at every token, which over thousands of '[' takes seconds before composing starts.
        if self.flow_level >= MAX_DEPTH:
            raise yaml.scanner.ScannerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", self.get_mark()
            )
        super().fetch_flow_collection_start(TokenClass)

    def _mark(self) -> yaml.error.Mark | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        return event.start_mark if isinstance(event.start_mark, yaml.error.Mark) else None

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        if self._inside_checked_merge:
            super().flatten_mapping(node)
            return
        _merged_size(node, 0, set(), {})
        self._inside_checked_merge = True
        try:
            super().flatten_mapping(node)
        finally:
            self._inside_checked_merge = False


def _merged_size(node: yaml.MappingNode, depth: int, stack: set[int], sizes: dict[int, int]) -> int:
    """Keys of `node` once its merge keys (``<<: *x``) are expanded; raises on a merge cycle, a
    merge chain deeper than ``MAX_DEPTH`` or an expansion beyond ``MAX_NODES``."""
    if id(node) in sizes:
        return sizes[id(node)]

    def fail(problem: str) -> yaml.constructor.ConstructorError:
        return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)

    if id(node) in stack:
        raise fail("a mapping merges itself ('<<' names an alias of a mapping that contains it)")
    if depth > MAX_DEPTH:
        raise fail(f"merge keys ('<<') chained deeper than {MAX_DEPTH} levels")
    stack.add(id(node))
    total = 0
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE:
            total += 1
            continue
        members = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for member in members:
            if isinstance(member, yaml.MappingNode):
                total += _merged_size(member, depth + 1, stack, sizes)
        if total > MAX_NODES:
            raise fail(f"merge keys ('<<') expand to more than {MAX_NODES} keys")
    stack.discard(id(node))
    sizes[id(node)] = total
    return total


class _Builder:
    """Python values from composed nodes, recording each one's position; aliases are expanded
    here, so this is where their expansion is bounded."""

    def __init__(self, loader: yaml.SafeLoader, source: SourceMap) -> None:
        self.loader = loader
        self.source = source
        self.problems: list[Problem] = []
        self.visited = 0
        self.open: set[int] = set()

    def build(self, node: yaml.Node, path: tuple[PathElement, ...]) -> Any:
        self.source.values[path] = _position(node)
        self.visited += 1
        if self.visited > MAX_NODES:
            self.stop(node, path, f"more than {MAX_NODES} values once aliases are expanded")
        if len(path) > MAX_DEPTH:
            self.stop(node, path, f"nested deeper than {MAX_DEPTH} levels once aliases are expanded")
        if id(node) in self.open:
            self.stop(node, path, "an alias refers to a list or mapping that contains it")
        if isinstance(node, yaml.MappingNode):
            self.open.add(id(node))
            result = self.mapping(node, path)
            self.open.discard(id(node))
            return result
        if isinstance(node, yaml.SequenceNode):
            self.open.add(id(node))
            items = [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            self.open.discard(id(node))
            return items
        return self.scalar(node, path)

    def mapping(self, node: yaml.MappingNode, path: tuple[PathElement, ...]) -> dict[Any, Any]:
        self.loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
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

    def scalar(self, node: yaml.Node, path: tuple[PathElement, ...]) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:
            # Out-of-range dates (2025-13-45) and integers too long to convert pass YAML's
            # patterns and fail in Python's constructors.
            self.problems.append(
                Problem(f"cannot read this value: {exc}", path, self.source.file, *_lc(node))
            )
            return None
        if isinstance(value, str | bytes) and len(value) > MAX_STRING:
            self.problems.append(
                Problem(
                    f"a string of {len(value)} characters; the limit is {MAX_STRING}",
                    path,
                    self.source.file,
                    *_lc(node),
                )
            )
            return None
        return value

    def stop(self, node: yaml.Node, path: tuple[PathElement, ...], message: str) -> NoReturn:
        raise ScenarioError([*self.problems, Problem(message, path, self.source.file, *_lc(node))])


def _lc(node: yaml.Node) -> tuple[int, int]:
    position = _position(node)
    return position.line, position.column


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document safely, within the limits above. Raises :class:`ScenarioError` on
    syntax errors, characters YAML forbids, duplicate keys and crossed limits."""
    source = SourceMap(file=file)
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
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
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        message = f"invalid YAML: character {chr(exc.character)!r} (U+{exc.character:04X}) is not allowed"
        raise ScenarioError([Problem(message, (), file, line, column)]) from exc
    finally:
        if loader is not None:
            loader.dispose()
    if builder.problems:
        raise ScenarioError(builder.problems)
    return data, source


def _line_column(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of the character at `offset` in `text`."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1
