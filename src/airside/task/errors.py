"""How a task config problem is reported: `TaskConfigProblem` (file:line[:column]: field: message),
`TaskConfigError` (every problem of one config, one per line), and the two spellings the messages
share: `dotted` (a field's location as ``inputs[1].path``) and `describe` (a value as ``integer 1``).

`SemanticErrors` is the schema's way of reporting several cross-field problems from one validator;
the loader unpacks it into one problem per item. Nothing here knows YAML or pydantic.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["Loc", "SemanticErrors", "TaskConfigError", "TaskConfigProblem", "describe", "dotted"]

Loc = tuple[str | int, ...]
"""A field's location: keys and list indices from the document root (``()`` is the whole document)."""


class TaskConfigProblem:
    """One problem: where (line may be None when the config did not come from YAML), which
    field (dotted path with list indices, "" for the whole document), and what is wrong."""

    __slots__ = ("filename", "line", "column", "field", "message")

    def __init__(
        self, filename: str, line: int | None, field: str, message: str, column: int | None = None
    ) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.field = field
        self.message = message

    def __str__(self) -> str:
        where = self.filename
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def __repr__(self) -> str:
        return f"TaskConfigProblem({str(self)!r})"


class TaskConfigError(ValueError):
    """An invalid task config.  ``problems`` holds every problem; ``str()`` lists them,
    one per line."""

    def __init__(self, filename: str, problems: list[TaskConfigProblem]) -> None:
        self.filename = filename
        self.problems = problems
        n = len(problems)
        header = f"invalid task config {filename} ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([header, *(f"  {p}" for p in problems)]))


class SemanticErrors(ValueError):
    """Raised by a cross-field validator; carries (loc, message) pairs, each loc relative to the
    model that raised it, so that the loader can place each on its own line."""

    def __init__(self, items: list[tuple[Loc, str]]) -> None:
        self.items = items
        super().__init__("; ".join(f"{dotted(loc)}: {msg}" for loc, msg in items))


def dotted(loc: Loc) -> str:
    """``("inputs", 1, "path")`` → ``inputs[1].path``; keys that are not plain words are quoted
    (``params["A=B"]``)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def describe(value: Any) -> str:
    """A value as a message names what was given: ``null``, ``boolean true``, ``integer 1``,
    ``string 'x'`` (cut at 40 characters), ``a list``, ``a mapping``, else its type name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
