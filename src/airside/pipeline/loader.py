"""Validating a pipeline config and reporting every problem at once.

`load_pipeline_config(text, filename, static_vars)`: YAML (with airside.task's line-keeping loader)
→ ``((var))`` interpolation (`airside.pipeline.vars`) → the schema (`airside.pipeline.models`) →
each inline task ``config:`` through airside.task's own `parse_task_config` → the cross checks
(`airside.pipeline.semantics`). It returns a `LoadedPipeline` (the config, its warnings, the vars
left for run time) or raises one `PipelineConfigError` naming ``file:line: field: message`` for each
problem, at the line of the original file.

Top-level keys Concourse does not know (``meta:``, ``anchors:``, where people keep YAML anchors) are
dropped with a warning, as Concourse's ATC drops them; an unknown key anywhere else is an error.
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from airside.task import TaskConfigError, parse_task_config
from airside.task.errors import Loc, SemanticErrors, describe, dotted
from airside.task.lines import LineMap, compose

from .errors import PipelineConfigError, Problem, sort_problems
from .models import MODIFIERS, STEP_TYPES, InParallelConfig, PipelineConfig, TaskStep, step_kind
from .semantics import check, walk_steps
from .vars import Interpolated, StaticVars, interpolate

__all__ = ["LoadedPipeline", "load_pipeline_config", "parse_pipeline_config"]

TOP_LEVEL = ("groups", "var_sources", "resources", "resource_types", "jobs", "display", "user_data")


@dataclass
class LoadedPipeline:
    """A valid pipeline config: `config`, the `warnings` found, and the vars it still needs:
    `unset` (static vars not given: name → lines) and `later` (sourced and local vars)."""

    config: PipelineConfig
    filename: str
    warnings: list[Problem] = field(default_factory=list)
    unset: dict[str, list[int]] = field(default_factory=dict)
    later: dict[str, list[int]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    """The config as plain data with the static vars applied (run-time ((vars)) left as written) and only
    Concourse's top-level keys: what web stores and runs."""


# -- pydantic errors → problems -----------------------------------------------------------------

_TYPE_EXPECTED = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_REQUIRED_EXPECTED = {
    "name": "a name",
    "type": "a resource type such as git",
    "plan": "a list of steps",
    "file": "a file path",
    "var": "a var name",
    "values": "a list of values or a ((var))",
    "do": "a list of steps",
    "try": "a step",
}


def _unwrap(ann: Any, node: Any) -> Any:
    while True:
        origin = get_origin(ann)
        if origin is Annotated:
            ann = get_args(ann)[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(ann) if a is not type(None)]
            if len(args) == 1:
                ann = args[0]
                continue
            kind = step_kind(node)
            for a in args:
                inner = get_args(a)[0] if get_origin(a) is Annotated else a
                if isinstance(inner, type) and getattr(inner, "kind", None) == kind and kind:
                    ann = inner
                    break
            else:
                return None
            continue
        return ann


def _model_at(data: Any, loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` of `data` (for the allowed keys)."""
    ann: Any = PipelineConfig
    node = data
    for part in loc:
        ann = _unwrap(ann, node)
        if ann is InParallelConfig and isinstance(node, list):
            ann = list[Any]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            fields = {f.alias or n: f for n, f in ann.model_fields.items()}
            if part not in fields:
                return None
            ann = fields[part].annotation
        elif get_origin(ann) is list and isinstance(part, int):
            ann = get_args(ann)[0]
            if ann is Any:
                from .models import Step

                ann = Step
        elif get_origin(ann) is dict:
            ann = get_args(ann)[1]
        else:
            return None
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    ann = _unwrap(ann, node)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _real_loc(data: Any, loc: Loc) -> Loc:
    """`loc` as written in the file: ``in_parallel: [steps]`` has no ``steps`` level."""
    out: list[str | int] = []
    node = data
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if part == "in_parallel" and isinstance(node, list) and i + 1 < len(parts) and parts[i + 1] == "steps":
            i += 1
        i += 1
    return tuple(out)


def _step_message(value: Any) -> str:
    wanted = ", ".join(STEP_TYPES)
    if not isinstance(value, dict):
        return f"expected a step (a mapping with one of {wanted}), got {describe(value)}"
    kinds = [k for k in STEP_TYPES if k in value]
    keys = ", ".join(str(k) for k in value) or "none"
    if len(kinds) > 1:
        return f"ambiguous step: it has {len(kinds)} step types ({', '.join(kinds)}); a step has exactly one"
    if "run" in value:
        return "run steps (prototypes) are not supported"
    if value and all(k in MODIFIERS for k in value):
        return f"no step type: {keys} modify a step, but there is none (expected one of {wanted})"
    return f"unknown step: no step type among its keys ({keys}); expected one of {wanted}"


def _problems_from(exc: ValidationError, data: Any, filename: str, lines: LineMap | None,
                   prefix: Loc = ()) -> list[Problem]:
    problems: list[Problem] = []

    def add(loc: Loc, message: str, key: bool = False) -> None:
        full = (*prefix, *loc)
        problems.append(Problem(filename, lines.line_for(full, key=key) if lines else None, dotted(full), message))

    for err in exc.errors(include_url=False):
        loc = _real_loc(data, tuple(p for p in err["loc"]
                                    if p != "[key]" and not (isinstance(p, str) and p.startswith("step:"))))
        etype = err["type"]
        ctx = err.get("ctx") or {}
        original = ctx.get("error")
        if isinstance(original, SemanticErrors):
            for sub, msg in original.items:
                add((*loc, *sub), msg)
            continue
        if etype in ("union_tag_not_found", "union_tag_invalid"):
            add(loc, _step_message(err["input"]))
        elif etype == "missing":
            expected = _REQUIRED_EXPECTED.get(str(loc[-1])) if loc else None
            add(loc, "field required" + (f" (expected {expected})" if expected else ""))
        elif etype == "extra_forbidden":
            model = _model_at(data, loc[:-1])
            allowed = [f.alias or n for n, f in model.model_fields.items()] if model else []
            kind = getattr(model, "kind", "")
            what = f" for a {kind} step" if kind else ""
            add(loc, f"unknown key {loc[-1]!r}{what}"
                + (f" (expected one of: {', '.join(allowed)})" if allowed else ""), key=True)
        elif etype in ("value_error", "assertion_error"):
            add(loc, str(original) if original is not None else err["msg"])
        elif etype == "literal_error":
            add(loc, f"expected {ctx.get('expected')}, got {describe(err['input'])}")
        elif etype == "string_too_short":
            add(loc, "expected a non-empty string")
        elif "[key]" in err["loc"]:
            add(loc, f"expected a string key, got {describe(err['input'])}", key=True)
        else:
            add(loc, f"expected {_TYPE_EXPECTED.get(etype, err['msg'])}, got {describe(err['input'])}")
    return problems


# -- the inline task config ---------------------------------------------------------------------

_DOTTED_PART = re.compile(r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _undotted(field_name: str) -> Loc:
    """airside.task's ``inputs[1].path`` / ``params["A=B"]`` back into a location."""
    import json

    out: list[str | int] = []
    for m in _DOTTED_PART.finditer(field_name):
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(json.loads(m.group(3)))
    return tuple(out)


def _task_config_problems(config: PipelineConfig, filename: str, lines: LineMap | None) -> list[Problem]:
    problems: list[Problem] = []
    for step, loc in walk_steps(config):
        if not isinstance(step, TaskStep) or step.config is None:
            continue
        try:
            parse_task_config(step.config, filename)
        except TaskConfigError as e:
            for p in e.problems:
                full = (*loc, "config", *_undotted(p.field))
                problems.append(Problem(filename, lines.line_for(full) if lines else None, dotted(full), p.message))
    return problems


# -- the whole --------------------------------------------------------------------------------


def _validate(data: Any, filename: str, lines: LineMap | None, interpolated: Interpolated,
              problems: list[Problem], warnings: list[Problem],
              known_types: frozenset[str] | None = None) -> LoadedPipeline:
    def at(loc: Loc, key: bool = False) -> int | None:
        return lines.line_for(loc, key=key) if lines else None

    config: PipelineConfig | None = None
    kept: dict[str, Any] = {}
    if not isinstance(data, dict):
        problems.append(Problem(filename, at(()), "",
                                f"expected a mapping with jobs and resources at the top level, got {describe(data)}"))
    else:
        for k, v in data.items():
            if k in TOP_LEVEL:
                kept[k] = v
            elif k == "prototypes":
                problems.append(Problem(filename, at((k,), True), k, "prototypes are not supported"))
            else:
                warnings.append(Problem(filename, at((k,), True), str(k),
                                        f"unknown top-level key {k!r} is ignored (as Concourse does; "
                                        f"expected one of: {', '.join(TOP_LEVEL)})"))
        try:
            config = PipelineConfig.model_validate(kept)
        except ValidationError as exc:
            problems.extend(_problems_from(exc, kept, filename, lines))
    if config is not None:
        config._filename = filename
        problems.extend(_task_config_problems(config, filename, lines))
        errors, warned = check(config, filename, at, interpolated.later, known_types)
        problems.extend(errors)
        warnings.extend(warned)
    warnings = sort_problems(warnings)
    if problems:
        raise PipelineConfigError(filename, sort_problems(problems), warnings)
    assert config is not None

    def first_lines(used: dict[str, list[Loc]]) -> dict[str, list[int]]:
        return {name: sorted({line for loc in locs if (line := at(loc)) is not None})
                for name, locs in sorted(used.items())}

    return LoadedPipeline(config, filename, warnings, first_lines(interpolated.unset),
                          first_lines(interpolated.later), kept)


def _ytt_warning(text: str, filename: str) -> Problem | None:
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#@"):
            return Problem(filename, n, "", "this file looks like a ytt template ('#@' annotations are "
                                            "YAML comments here): render it with ytt first")
    return None


def load_pipeline_config(text: str, filename: str = "pipeline.yml",
                         static_vars: StaticVars | None = None,
                         known_types: frozenset[str] | None = None) -> LoadedPipeline:
    """Parse a pipeline file, apply `static_vars`, validate it; raise `PipelineConfigError`
    listing every problem with file, line and dotted field."""
    warnings: list[Problem] = []
    if (ytt := _ytt_warning(text, filename)) is not None:
        warnings.append(ytt)
    if not text.strip() or all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines()):
        raise PipelineConfigError(filename, [Problem(filename, 1, "", "empty pipeline config (expected jobs)")],
                                  warnings)
    try:
        node = compose(text, filename)
        lines = LineMap(filename)
        data = lines.to_python(node)
    except TaskConfigError as e:
        for p in e.problems:
            p.message = p.message.replace("task config", "pipeline config")
        raise PipelineConfigError(filename, e.problems, warnings) from None
    interpolated = interpolate(data, lines, static_vars)
    problems = [*lines.problems, *interpolated.problems]
    return _validate(interpolated.data, filename, lines, interpolated, problems, warnings, known_types)


def parse_pipeline_config(data: Any, filename: str = "pipeline.yml",
                          static_vars: StaticVars | None = None) -> LoadedPipeline:
    """Validate already-parsed data (e.g. JSON from the API); problems carry no lines."""
    lines = LineMap(filename)
    interpolated = interpolate(data, lines, static_vars)
    for p in interpolated.problems:
        p.line = None
    return _validate(interpolated.data, filename, None, interpolated, list(interpolated.problems), [])
