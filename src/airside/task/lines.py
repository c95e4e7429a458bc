"""YAML with line numbers: `compose` parses a task file into one node tree (syntax errors become
`TaskConfigError` with file:line:column), and `LineMap.convert` turns that tree into plain Python
while recording the line of every value and mapping key by its location (`Loc`), so that a problem
found later can be reported as ``task.yml:12: run.path: ...``.

Typing follows Go's YAML more closely than PyYAML's SafeLoader: no timestamps (``2024-01-01`` stays a
string) and no base-60 numbers (``1:20`` stays a string). Duplicate keys and non-scalar keys are
collected as problems (`LineMap.problems`); ``<<`` merge keys are honoured, and a mapping's own keys
may override merged ones.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from .errors import Loc, TaskConfigError, TaskConfigProblem, dotted

__all__ = ["LineMap", "compose"]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose implicit typing follows Go's YAML more closely: no timestamps
    (``2024-01-01`` stays a string) and no base-60 numbers (``1:20`` stays a string)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (
        "tag:yaml.org,2002:timestamp",
    )]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in list(_Loader.yaml_implicit_resolvers):
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in _Loader.yaml_implicit_resolvers[_first]
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(
        r"""^(?:[-+]?0b[0-1_]+
        |[-+]?0[0-7_]+
        |[-+]?(?:0|[1-9][0-9_]*)
        |[-+]?0x[0-9a-fA-F_]+)$""",
        re.X,
    ),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
        |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def compose(text: str, filename: str) -> yaml.Node:
    """The single YAML document in `text`, as a node tree; `TaskConfigError` for a syntax error,
    an empty text, or more than one document."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context}" + (
                f" at line {exc.context_mark.line + 1})" if exc.context_mark is not None else ")"
            )
        raise TaskConfigError(
            filename,
            [TaskConfigProblem(
                filename,
                mark.line + 1 if mark is not None else None,
                "",
                f"YAML syntax error: {problem}",
                column=mark.column + 1 if mark is not None else None,
            )],
        ) from None
    except yaml.YAMLError as exc:
        raise TaskConfigError(filename, [TaskConfigProblem(filename, None, "", f"YAML error: {exc}")]) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise TaskConfigError(
            filename, [TaskConfigProblem(filename, 1, "", "empty document (expected a mapping with platform and run)")]
        )
    if len(nodes) > 1:
        raise TaskConfigError(
            filename,
            [TaskConfigProblem(filename, nodes[1].start_mark.line + 1, "",
                               "more than one YAML document (expected exactly one task config)")],
        )
    return nodes[0]


class LineMap:
    """Node tree → plain Python, recording each value's line (1-based) and each mapping
    key's line under the same path.  `problems` collects what the tree itself gets wrong
    (duplicate keys, non-scalar keys); `line_for` answers where a location is (or, for a missing
    field, where its parent is)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.value_lines: dict[Loc, int] = {}
        self.key_lines: dict[Loc, int] = {}
        self.scalars: dict[Loc, str] = {}  # each scalar as written in the file (`3.0`, not the number 3)
        self.problems: list[TaskConfigProblem] = []
        self._loader = _Loader("")
        self._merged: dict[int, int] = {}
        self._from_merge: set[Loc] = set()

    def to_python(self, node: yaml.Node) -> Any:
        """The document `node` as plain Python; `TaskConfigError` when a value cannot be
        constructed (e.g. a bad ``!!tag`` or a bad merge key)."""
        try:
            return self.convert(node, ())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise TaskConfigError(
                self.filename,
                [TaskConfigProblem(self.filename, mark.line + 1 if mark else None, "", f"YAML error: {exc}")],
            ) from None

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        """`node` (found at `loc`) as plain Python, recording its lines; may raise yaml.YAMLError."""
        self.value_lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            # `<<` merge keys: flatten_mapping puts the merged pairs first; those may be
            # overridden by the mapping's own keys, which must not repeat among themselves.
            # (An aliased node is flattened once; remember how many pairs were merged.)
            if id(node) not in self._merged:
                own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
                self._loader.flatten_mapping(node)
                self._merged[id(node)] = len(node.value) - own
            merged = self._merged[id(node)]
            out: dict[Any, Any] = {}
            for index, (key_node, value_node) in enumerate(node.value):
                key = self._loader.construct_object(key_node, deep=True)
                if isinstance(key, (list, dict)):
                    self.problems.append(
                        TaskConfigProblem(self.filename, key_node.start_mark.line + 1, dotted(loc),
                                          "expected a scalar mapping key")
                    )
                    continue
                sub = (*loc, key)
                if index < merged or (key in out and sub in self._from_merge):
                    if index < merged:
                        self._from_merge.add(sub)
                    else:
                        self._from_merge.discard(sub)
                    self.key_lines[sub] = key_node.start_mark.line + 1
                    out[key] = self.convert(value_node, sub)
                    continue
                if key in out:
                    self.problems.append(
                        TaskConfigProblem(
                            self.filename, key_node.start_mark.line + 1, dotted(sub),
                            f"duplicate key {key!r} (first at line {self.key_lines.get(sub, '?')})",
                        )
                    )
                    continue
                self.key_lines[sub] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode):
            self.scalars[loc] = node.value
        return self._loader.construct_object(node, deep=True)

    def line_for(self, loc: Loc, *, key: bool = False) -> int | None:
        """The line of the value at `loc` (of its key, if `key` and the key was seen); for a
        location not in the file, the line of its nearest present parent (the document's first
        line at worst)."""
        if key and loc in self.key_lines:
            return self.key_lines[loc]
        if loc in self.value_lines:
            return self.value_lines[loc]
        # A missing field: point at its parent's key (`run:`), else the parent value.
        while loc:
            loc = loc[:-1]
            if loc in self.key_lines:
                return self.key_lines[loc]
            if loc in self.value_lines:
                return self.value_lines[loc]
        return self.value_lines.get((), 1)
