"""Validating a task config and reporting every problem at once: `load_task_config` (YAML text, with
file:line for each problem) and `parse_task_config` (already-parsed data such as JSON from the API,
without lines) both return a `TaskConfig` or raise one `TaskConfigError`.

Pydantic's errors are rewritten here into the messages users see: ``field required (expected …)``,
``unknown key 'x' (expected one of: …)``, ``expected …, got …`` (what each field expects is the
`_EXPECTED` table, keyed by the field's shape with list indices dropped), and the validators' own
messages (`airside.task.values`, `SemanticErrors` from the models), sorted by line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .errors import Loc, SemanticErrors, TaskConfigError, TaskConfigProblem, describe, dotted
from .lines import LineMap, compose
from .models import ContainerLimits, ImageResource, TaskCache, TaskConfig, TaskInput, TaskOutput, TaskRun

__all__ = ["load_task_config", "parse_task_config"]


# What each field expects, keyed by its path with list indices dropped.
_EXPECTED: dict[str, str] = {
    "": "a mapping with platform and run",
    "platform": "a string such as linux",
    "image_resource": "a mapping with type and source",
    "image_resource.name": "a string",
    "image_resource.type": "a resource type such as registry-image",
    "image_resource.tags": "a list of worker tags",
    "image_resource.tags[]": "a string",
    "image_resource.source": "a mapping with repository",
    "image_resource.params": "a mapping",
    "image_resource.version": "a mapping of strings to strings",
    "image_resource.version.*": "a string",
    "rootfs_uri": "a string",
    "inputs": "a list of inputs",
    "inputs[]": "a mapping with name, path, optional",
    "inputs[].name": "a name such as my-repo",
    "inputs[].path": "a path (relative to the working directory, or absolute)",
    "inputs[].optional": "true or false",
    "outputs": "a list of outputs",
    "outputs[]": "a mapping with name, path",
    "outputs[].name": "a name such as built-project",
    "outputs[].path": "a path (relative to the working directory, or absolute)",
    "caches": "a list of caches",
    "caches[]": "a mapping with path, ttl",
    "caches[].path": "a path (relative to the working directory, or absolute)",
    "caches[].ttl": "a duration such as '24h'",
    "params": "a mapping of environment variable names to values",
    "run": "a mapping with path, args, dir, user",
    "run.path": "a string",
    "run.args": "a list of strings",
    "run.args[]": "a string",
    "run.dir": "a string",
    "run.user": "a string",
    "container_limits": "a mapping with cpu, memory",
    "container_limits.cpu": "an integer number of CPU shares",
    "container_limits.memory": "bytes as an integer or a string like '512MB'",
}

_ALLOWED_KEYS: dict[str, tuple[str, ...]] = {
    "": tuple(TaskConfig.model_fields),
    "image_resource": tuple(ImageResource.model_fields),
    "inputs[]": tuple(TaskInput.model_fields),
    "outputs[]": tuple(TaskOutput.model_fields),
    "caches[]": tuple(TaskCache.model_fields),
    "run": tuple(TaskRun.model_fields),
    "container_limits": tuple(ContainerLimits.model_fields),
}


def _shape(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += "[]"
        else:
            out += f".{part}" if out else str(part)
    if out.startswith("image_resource.version.") and out.count(".") == 2:
        return "image_resource.version.*"
    return out


def _problems_from(exc: ValidationError, filename: str, conv: LineMap | None) -> list[TaskConfigProblem]:
    problems: list[TaskConfigProblem] = []

    def line(loc: Loc, key: bool = False) -> int | None:
        return conv.line_for(loc, key=key) if conv is not None else None

    for err in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
        is_key = "[key]" in err["loc"]
        etype = err["type"]
        ctx = err.get("ctx") or {}
        original = ctx.get("error")
        if isinstance(original, SemanticErrors):
            for sub, msg in original.items:
                full = (*loc, *sub)
                problems.append(TaskConfigProblem(filename, line(full), dotted(full), msg))
            continue
        expected = _EXPECTED.get(_shape(loc))
        if etype == "missing":
            msg = "field required" + (f" (expected {expected})" if expected else "")
        elif etype == "extra_forbidden":
            allowed = _ALLOWED_KEYS.get(_shape(loc[:-1]))
            msg = f"unknown key {loc[-1]!r}" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
            problems.append(TaskConfigProblem(filename, line(loc, key=True), dotted(loc), msg))
            continue
        elif etype in ("value_error", "assertion_error"):
            msg = str(original) if original is not None else err["msg"]
        elif etype == "literal_error":
            msg = f"expected {expected or ctx.get('expected')}, got {describe(err['input'])}"
        elif etype == "string_too_short":
            msg = f"expected {expected or 'a string'}, got an empty string"
        else:
            msg = f"expected {expected or err['msg']}, got {describe(err['input'])}"
        if is_key and etype != "value_error":
            msg = f"expected a string key, got {describe(err['input'])}"
        problems.append(TaskConfigProblem(filename, line(loc, key=is_key), dotted(loc), msg))
    problems.sort(key=lambda p: (p.line or 0))
    return problems


def _validate(data: Any, filename: str, conv: LineMap | None) -> TaskConfig:
    if not isinstance(data, dict):
        line = conv.line_for(()) if conv is not None else None
        raise TaskConfigError(
            filename,
            [TaskConfigProblem(filename, line, "",
                               f"expected a mapping with platform and run at the top level, got {describe(data)}")],
        )
    problems = list(conv.problems) if conv is not None else []
    config: TaskConfig | None = None
    try:
        config = TaskConfig.model_validate(data, context={"scalars": conv.scalars if conv is not None else {}})
    except ValidationError as exc:
        problems.extend(_problems_from(exc, filename, conv))
    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise TaskConfigError(filename, problems)
    assert config is not None
    config._filename = filename
    config._warning_problems = [
        TaskConfigProblem(filename, conv.line_for(loc) if conv is not None else None, dotted(loc), msg)
        for loc, msg in config._warnings
    ]
    return config


def parse_task_config(data: Mapping[str, Any], filename: str = "task.yml") -> TaskConfig:
    """Validate an already-parsed config (e.g. JSON from the API); errors carry no lines."""
    return _validate(dict(data) if isinstance(data, Mapping) else data, filename, None)


def load_task_config(text: str, filename: str = "task.yml") -> TaskConfig:
    """Parse a task file and validate it; raise :class:`TaskConfigError` listing every
    problem with file, line and dotted field path."""
    node = compose(text, filename)
    lines = LineMap(filename)
    return _validate(lines.to_python(node), filename, lines)
