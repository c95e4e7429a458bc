"""``((var))`` interpolation, as fly and Concourse's ``vars`` package do it.

- A var is ``((path.field...))``, optionally with a source: ``((source:path.field))``; ``((.:name))``
  is a local var (set by ``load_var`` or ``across`` while a build runs). The charset is Concourse's
  (`VAR`): letters, digits, ``_ - / . : @ "``; segments may be quoted (``(("a.b".c))``).
- Static vars (`StaticVars`) come from ``-v k=string``, ``-y k=yaml`` and ``-l vars.yml``, with
  fly's precedence: every ``-v`` then every ``-y`` pair is applied in order (a later pair wins, so a
  ``-y`` beats a ``-v`` of the same name); the flags beat the files; a later file beats an earlier
  one. A key may name a field: ``-v repo.uri=...`` sets ``repo: {uri: ...}``.
- `interpolate` walks the parsed document (values and mapping keys): a string that is exactly one
  var takes the var's value with its type; a var inside a longer string is replaced by its text
  (strings and numbers only). A var that is not given is left as written, for run time, and
  reported in `Interpolated.unset` with where it is used; sourced and local vars are left too.
- A bad var is a problem naming its line: a reference Concourse cannot parse (``((a..b))``: an empty
  field; ``(("s":x))``: a quoted source), ``((...))`` holding characters no var may have
  (``((a b!))`` is not, ``$((i+1))`` — shell arithmetic — is left alone), a field of a var that is
  missing, or a list/map interpolated into a string.

Lines: the walk keeps the document's locations, so `airside.task.lines.LineMap` still answers the
original line of anything validated afterwards; a key renamed by a var has its lines moved with it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airside.task.errors import Loc, TaskConfigError, describe
from airside.task.lines import LineMap, compose

from .errors import Problem

__all__ = [
    "VAR",
    "Interpolated",
    "Reference",
    "StaticVars",
    "UnresolvedVars",
    "VarFlagError",
    "interpolate",
    "resolve",
    "is_var",
    "lookup_in",
    "parse_reference",
    "var_names",
]

# Concourse's interpolationRegex (vars/template.go); Go's \w is ASCII, \pL any letter.
_NAME = r'(?:[-/.\w]+:)?[-/.:@"\w]+'
VAR = re.compile(r"\(\((" + _NAME + r")\)\)")
_ANCHORED = re.compile(r"\A\(\((" + _NAME + r")\)\)\Z")
_NAME_ONLY = re.compile(r"\A" + _NAME + r"\Z")
# Something written as a var that is not one: ((...)) without spaces or parens, not shell `$((...))`.
_SUSPECT = re.compile(r"(?<!\$)\(\(([^()\s]*)\)\)")


class VarFlagError(ValueError):
    """A ``-v``/``-y``/``-l`` value that cannot be used (the message says which and why)."""


@dataclass(frozen=True)
class Reference:
    """A parsed var name: ``source:path.field1.field2`` (source ``"."`` is a local var)."""

    source: str
    path: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        def seg(s: str) -> str:
            return f'"{s}"' if any(c in s for c in ",.:/ ") else s

        out = f"{self.source}:" if self.source else ""
        return out + ".".join(seg(s) for s in (self.path, *self.fields))

    @property
    def local(self) -> bool:
        return self.source == "."


def _find_unquoted(s: str, char: str) -> int:
    quoted = False
    for i, c in enumerate(s):
        if c == char and not quoted:
            return i
        if c == '"':
            quoted = not quoted
    return -1


def parse_reference(name: str) -> Reference:
    """``name`` (what is between the parens) as a `Reference`; ValueError as Concourse's
    ParseReference refuses it (an empty field, a quoted source)."""
    source = ""
    rest = name
    i = _find_unquoted(rest, ":")
    if i >= 0:
        source = rest[:i]
        if '"' in source:
            raise ValueError(f"invalid var '{name}': source must not be quoted")
        rest = rest[i + 1:]
    fields: list[str] = []
    while True:
        j = _find_unquoted(rest, ".")
        segment, rest, more = (rest[:j], rest[j + 1:], True) if j >= 0 else (rest, "", False)
        segment = segment.strip().replace('"', "")
        if not segment:
            raise ValueError(f"invalid var '{name}': empty field")
        fields.append(segment)
        if not more:
            break
    return Reference(source, fields[0], tuple(fields[1:]))


def is_var(value: Any) -> bool:
    """Whether `value` is a string that is exactly one ``((var))``."""
    return isinstance(value, str) and _ANCHORED.match(value) is not None


def var_names(text: str) -> list[str]:
    """The var names written in ``text``, in order (as Concourse's extractVarNames)."""
    return [m.group(1) for m in VAR.finditer(text)]


class _FieldError(ValueError):
    pass


def _traverse(value: Any, ref: Reference) -> Any:
    for seg in ref.fields:
        if not isinstance(value, dict):
            raise _FieldError(f"cannot access field '{seg}' of {describe(value)} from var: {ref}")
        if seg not in value:
            raise _FieldError(f"missing field '{seg}' in var: {ref}")
        value = value[seg]
    return value


def _upsert(out: dict[str, Any], path: str, fields: tuple[str, ...], value: Any) -> None:
    node = out.get(path)
    if not fields:
        out[path] = value
        return
    if not isinstance(node, dict):
        for f in reversed(fields[1:]):
            value = {f: value}
        out[path] = {fields[0]: value}
        return
    _upsert(node, fields[0], fields[1:], value)


def _pair(flag: str, text: str) -> tuple[Reference, str]:
    key, eq, value = text.partition("=")
    if not eq:
        raise VarFlagError(f"{flag} {text!r}: invalid variable pair (must be name=value)")
    try:
        ref = parse_reference(key)
    except ValueError as e:
        raise VarFlagError(f"{flag} {text!r}: {e}") from None
    if ref.source:
        raise VarFlagError(f"{flag} {text!r}: a var with a source ({ref.source}:) cannot be set here")
    return ref, value


def _yaml_value(text: str, filename: str) -> Any:
    if not text.strip():
        return None
    node = compose(text, filename)
    return LineMap(filename).to_python(node)


@dataclass
class StaticVars:
    """Vars given when the pipeline is set or validated: `flags` (``-v``/``-y``, already expanded)
    and `files` (``-l``, in the order given; a later one wins)."""

    flags: dict[str, Any] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_flags(
        cls,
        var: Iterable[str] = (),
        yaml_var: Iterable[str] = (),
        load_vars_from: Iterable[tuple[str, str]] = (),
    ) -> StaticVars:
        """From fly's flags: ``-v NAME=STRING``, ``-y NAME=YAML`` and ``-l`` files given as
        (filename, text). `VarFlagError` for a bad pair; `PipelineConfigError`-shaped problems
        of a vars file come as `TaskConfigError` (file:line)."""
        flags: dict[str, Any] = {}
        pairs: list[tuple[Reference, Any]] = [(r, v) for r, v in (_pair("-v", t) for t in var)]
        for text in yaml_var:
            ref, raw = _pair("-y", text)
            try:
                pairs.append((ref, _yaml_value(raw, f"-y {ref}")))
            except TaskConfigError as e:
                raise VarFlagError(f"-y {text!r}: {e.problems[0].message}") from None
        for ref, value in pairs:
            _upsert(flags, ref.path, ref.fields, value)
        files: list[dict[str, Any]] = []
        for filename, text in load_vars_from:
            data = _yaml_value(text, filename)
            if data is None:
                data = {}
            if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
                raise VarFlagError(f"-l {filename}: expected a mapping of var names to values, got {describe(data)}")
            files.append(data)
        return cls(flags, files)

    def get(self, ref: Reference) -> tuple[bool, Any]:
        """(found, value); ValueError for a missing or unreachable field of a var that is set."""
        if ref.source:
            return False, None
        for source in (self.flags, *reversed(self.files)):
            if ref.path in source:
                return True, copy.deepcopy(_traverse(source[ref.path], ref))
        return False, None


@dataclass
class Interpolated:
    """The document with static vars applied; `unset`: var name → where it is used (static vars
    not given); `later`: sourced and local vars (resolved while a build runs), likewise; `problems`:
    bad vars, each with its line."""

    data: Any
    unset: dict[str, list[Loc]] = field(default_factory=dict)
    later: dict[str, list[Loc]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def _relocate(lines: LineMap, old: Loc, new: Loc) -> None:
    n = len(old)
    for table in (lines.value_lines, lines.key_lines):
        for loc in [loc for loc in table if loc[:n] == old]:
            table[new + loc[n:]] = table[loc]


def interpolate(data: Any, lines: LineMap, static: StaticVars | None = None) -> Interpolated:
    """Apply `static` to `data` (as parsed by `lines`, which it keeps answering for)."""
    from airside.task.errors import dotted

    static = static or StaticVars()
    out = Interpolated(data=None)

    def problem(loc: Loc, message: str, key: bool = False) -> None:
        out.problems.append(Problem(lines.filename, lines.line_for(loc, key=key), dotted(loc), message))

    def string(value: str, loc: Loc, key: bool) -> Any:
        for m in _SUSPECT.finditer(value):
            if not _NAME_ONLY.match(m.group(1)):
                bad = sorted({c for c in m.group(1) if not re.match(r'[-/.:@"\w]', c)})
                why = f"character {', '.join(repr(c) for c in bad)}" if bad else "an empty name"
                problem(loc, f"bad ((var)) syntax {m.group(0)!r}: {why} (a var is ((name)), "
                             "((name.field)) or ((source:name)))", key)
        result: Any = value
        for name in var_names(value):
            try:
                ref = parse_reference(name)
            except ValueError as e:
                problem(loc, f"bad ((var)) syntax: {e}", key)
                continue
            if ref.source:
                out.later.setdefault(str(ref), []).append(loc)
                continue
            try:
                found, got = static.get(ref)
            except ValueError as e:
                problem(loc, str(e), key)
                continue
            if not found:
                out.unset.setdefault(name, []).append(loc)
                continue
            if _ANCHORED.match(value) and not key:
                return got
            if isinstance(got, bool) or not isinstance(got, (str, int, float)):
                problem(loc, f"cannot interpolate {describe(got)} into a string: (({name}))", key)
                continue
            assert isinstance(result, str)
            result = result.replace(f"(({name}))", str(got))
        return result

    def walk(node: Any, loc: Loc) -> Any:
        if isinstance(node, dict):
            new: dict[Any, Any] = {}
            for k, v in node.items():
                value = walk(v, (*loc, k))
                key = string(k, (*loc, k), True) if isinstance(k, str) else k
                if key != k:
                    _relocate(lines, (*loc, k), (*loc, key))
                new[key] = value
            return new
        if isinstance(node, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return string(node, loc, False)
        return node

    out.data = walk(data, ())
    return out


class UnresolvedVars(ValueError):
    """Vars a build needed that nothing provides (`names`, as written)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__(", ".join(f"(({n}))" for n in names))


def resolve(data: Any, lookup: Callable[[Reference], tuple[bool, Any]]) -> Any:
    """Run-time interpolation: every ``((var))`` in `data`'s strings (values and keys) replaced through
    `lookup` (found, value) — a string that is exactly one var takes the value with its type, as `interpolate`.
    Raises `UnresolvedVars` naming every var `lookup` does not find (and ValueError for a bad field)."""
    missing: list[str] = []

    def string(value: str) -> Any:
        result: Any = value
        for name in var_names(value):
            ref = parse_reference(name)
            found, got = lookup(ref)
            if not found:
                if name not in missing:
                    missing.append(name)
                continue
            if _ANCHORED.match(value):
                return got
            if isinstance(got, bool) or not isinstance(got, (str, int, float)):
                raise ValueError(f"cannot interpolate {describe(got)} into a string: (({name}))")
            assert isinstance(result, str)
            result = result.replace(f"(({name}))", str(got))
        return result

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {(string(k) if isinstance(k, str) else k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            return string(node)
        return node

    out = walk(data)
    if missing:
        raise UnresolvedVars(missing)
    return out


def lookup_in(values: dict[str, Any], ref: Reference) -> tuple[bool, Any]:
    """(found, value) of `ref` (its path, then its fields) in a plain mapping of var values."""
    if ref.path not in values:
        return False, None
    try:
        return True, copy.deepcopy(_traverse(values[ref.path], ref))
    except _FieldError as e:
        raise ValueError(str(e)) from None
