"""The Concourse task config schema, validated with pydantic v2.

``load_task_config(text, filename)`` parses a task file (YAML) and returns a
:class:`TaskConfig`; every problem found is reported in one :class:`TaskConfigError`,
one line per problem, as ``task.yml:12: run.path: field required (expected a string)``.

Compatibility notes (what airside does, and where it differs from Concourse)
---------------------------------------------------------------------------

*Params → environment.*  ``params`` values may be strings, numbers, booleans, null,
maps or lists, as in Concourse.  :meth:`TaskConfig.params_env` turns them into env
strings the way Concourse's ``TaskEnv``/``CoercedString`` does: ``null`` → ``""``;
strings unchanged; numbers in Go's JSON spelling (``1``, ``1.5``, ``1e+21``; an integral
float such as ``2.0`` becomes ``2``); booleans ``true``/``false`` (YAML 1.1 ``yes``/``on``
are booleans too); maps and lists compact JSON with sorted keys and Go's HTML escaping
of ``<``, ``>`` and ``&``.  Unquoted dates stay strings (as with Go's YAML), NaN/Inf are
rejected, and a key must be non-empty and free of ``=`` and NUL.

*Path layout.*  Concourse runs a task in ``/tmp/build/<random>``; inputs, outputs and
caches are directories relative to that working directory.  Airside uses the fixed
work dir :data:`DEFAULT_WORK_DIR` (``/tmp/build/work``), overridable per call.  Each
input/output is placed at ``<work dir>/<path>`` where ``path`` defaults to the name;
caches at ``<work dir>/<path>``.  ``run.dir`` (relative) is resolved against the work
dir and is the process's cwd; ``run.path`` is then looked up as Concourse does (an
executable relative to that cwd if it contains a slash, else via ``$PATH``; the runtime
does that).  Artifact and cache paths must be relative and must not contain ``..``
(Concourse silently strips ``../`` and allows absolute input/output paths; airside
rejects both so that every artifact stays under the work dir).  ``./a/`` is normalised
to ``a``; ``.`` (the work dir itself) is rejected.

*Overlaps.*  Like Concourse ≥ 5, paths may nest (a cache ``src/node_modules`` inside
input ``src``), and an output may share its exact path with an input: the output then
starts as a copy-on-write of that input (:meth:`TaskConfig.outputs_sharing_inputs`).
Two inputs, two outputs, or a cache and an artifact at the same path are errors, as are
duplicate input names and duplicate output names.

*Names* follow Concourse's identifier charset: letters (any case — Concourse only warns
about upper case), digits, ``-``, ``_`` and ``.``, starting with a letter or digit.

*Image.*  ``image_resource.type`` is ``registry-image`` or ``docker-image``; its source
needs ``repository`` (a string) and may give ``tag`` (a string, default ``latest``).
A config may have neither ``image_resource`` nor ``rootfs_uri`` (the step may supply
``image:``); the runner calls :meth:`TaskConfig.require_image` to get a clear error when
nothing supplies one.  If both are present, ``image_resource`` wins (as in Concourse).

*container_limits.memory* is bytes: an integer, or a string ``<digits>[K|M|G][i][B]``
(case-insensitive, binary units: ``1GB`` = ``1G`` = ``1GiB`` = 2**30; ``512`` and
``512B`` are bytes), the union of what Concourse's releases accept.  ``cpu`` is an
integer number of shares.  ``0`` means unlimited for both.

Unknown keys are errors at every level, as are duplicate YAML keys.  ``run.path`` is
required (Concourse 8's image-entrypoint fallback is not supported).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

__all__ = [
    "DEFAULT_WORK_DIR",
    "ContainerLimits",
    "ImageResource",
    "TaskCache",
    "TaskConfig",
    "TaskConfigError",
    "TaskConfigProblem",
    "TaskInput",
    "TaskOutput",
    "TaskRun",
    "load_task_config",
    "param_to_env",
    "parse_memory",
    "parse_task_config",
]

DEFAULT_WORK_DIR = PurePosixPath("/tmp/build/work")
IMAGE_TYPES = ("registry-image", "docker-image")


# --------------------------------------------------------------------------- errors


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


class _SemanticErrors(ValueError):
    """Raised by the cross-field validator; carries (loc, message) pairs so that the
    loader can place each on its own line."""

    def __init__(self, items: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.items = items
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in items))


# --------------------------------------------------------------------------- field helpers

_IDENTIFIER = re.compile(r"^[^\W_][\w.-]*\Z")


def _check_identifier(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty name")
    if not _IDENTIFIER.match(value):
        raise ValueError(
            f"invalid name {value!r} (expected letters, digits, '-', '_' or '.', "
            "starting with a letter or digit)"
        )
    return value


def _normalise_rel_path(value: str) -> str:
    if not value:
        raise ValueError("expected a non-empty relative path")
    if value.startswith("/"):
        raise ValueError(f"absolute path {value!r} (expected a path relative to the working directory)")
    if "\0" in value:
        raise ValueError("path contains a NUL byte")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"path {value!r} contains '..' (expected a path inside the working directory)")
    if not parts:
        raise ValueError(f"path {value!r} is the working directory itself (expected a subdirectory)")
    return "/".join(parts)


def _check_run_dir(value: str) -> str:
    if value.startswith("/"):
        return str(PurePosixPath(value))
    return _normalise_rel_path(value)


_MEMORY = re.compile(r"^([0-9]+)(?:([KMG])I?B?|B)?\Z", re.IGNORECASE)
_MEMORY_POWER = {"K": 10, "M": 20, "G": 30}


def parse_memory(value: int | str) -> int:
    """Memory limit in bytes from an int or ``<digits>[K|M|G][i][B]`` (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected bytes as an integer or a string like '512MB', got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a non-negative number of bytes, got {value}")
        return value
    if isinstance(value, str):
        m = _MEMORY.match(value.strip())
        if not m:
            raise ValueError(
                f"cannot parse memory limit {value!r} (expected bytes, or a number with a "
                "unit KB, MB or GB such as '512MB' or '1GB')"
            )
        return int(m.group(1)) << _MEMORY_POWER.get((m.group(2) or "").upper(), 0)
    raise ValueError(
        f"expected bytes as an integer or a string like '512MB', got {_describe(value)}"
    )


def _check_cpu(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer number of CPU shares, got {_describe(value)}")
    if value < 0:
        raise ValueError(f"expected a non-negative number of CPU shares, got {value}")
    return value


def _check_param_key(key: str) -> str:
    if not key:
        raise ValueError("expected a non-empty environment variable name")
    if "=" in key or "\0" in key:
        raise ValueError(f"invalid environment variable name {key!r} (contains '=' or NUL)")
    return key


def _check_param_value(value: Any) -> Any:
    _check_jsonable(value)
    return value


def _check_jsonable(value: Any) -> None:
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{value!r} cannot be passed as a param (expected a finite number)")
        return
    if isinstance(value, list):
        for item in value:
            _check_jsonable(item)
        return
    if isinstance(value, dict):
        for item in value.values():
            _check_jsonable(item)
        return
    raise ValueError(f"expected a string, number, boolean, null, map or list, got {_describe(value)}")


Identifier = Annotated[str, AfterValidator(_check_identifier)]
RelPath = Annotated[str, AfterValidator(_normalise_rel_path)]
ParamKey = Annotated[str, AfterValidator(_check_param_key)]
ParamValue = Annotated[Any, AfterValidator(_check_param_value)]
MemoryBytes = Annotated[int, BeforeValidator(parse_memory)]
CpuShares = Annotated[int, BeforeValidator(_check_cpu)]


# --------------------------------------------------------------------------- params → env


def _go_float(f: float) -> str:
    """A float spelt as Go's encoding/json spells a float64."""
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        s = repr(f)
        if "e" not in s:  # pragma: no cover - repr always uses an exponent in this range
            s = f"{f:e}"
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", s)
    s = format(Decimal(repr(f)), "f")
    return s.rstrip("0").rstrip(".") if "." in s else s


def _go_json(value: Any) -> str:
    """Compact JSON as Go's json.Marshal writes it (sorted keys, HTML-safe escapes)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        s = json.dumps(value, ensure_ascii=False)
        return (
            s.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    if isinstance(value, list):
        return "[" + ",".join(_go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((_scalar_key(k), v) for k, v in value.items())
        return "{" + ",".join(f"{_go_json(k)}:{_go_json(v)}" for k, v in items) + "}"
    raise TypeError(f"cannot encode {type(value).__name__}")


def _scalar_key(key: Any) -> str:
    return key if isinstance(key, str) else param_to_env(key)


def param_to_env(value: Any) -> str:
    """One param value as its environment string (Concourse's CoercedString rule)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    return _go_json(value)


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)


class ImageResource(_Model):
    type: Literal["registry-image", "docker-image"]
    source: dict[str, Any]
    params: dict[str, Any] | None = None
    version: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check_source(self) -> ImageResource:
        repo = self.source.get("repository")
        if repo is None:
            raise _SemanticErrors([(("source", "repository"), "field required (expected a string)")])
        if not isinstance(repo, str) or not repo:
            raise _SemanticErrors(
                [(("source", "repository"), f"expected a non-empty string, got {_describe(repo)}")]
            )
        tag = self.source.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise _SemanticErrors(
                [(("source", "tag"), f"expected a string (quote it: tag: '{param_to_env(tag)}'), "
                  f"got {_describe(tag)}")]
            )
        return self

    @property
    def repository(self) -> str:
        return self.source["repository"]

    @property
    def tag(self) -> str:
        return self.source.get("tag") or "latest"

    @property
    def reference(self) -> str:
        """``repository:tag``, or ``repository@digest`` when ``version.digest`` pins it."""
        digest = (self.version or {}).get("digest")
        return f"{self.repository}@{digest}" if digest else f"{self.repository}:{self.tag}"


class _Artifact(_Model):
    """An input or output: a name, and a path that defaults to the name."""

    name: Identifier
    path: RelPath | None = None

    @model_validator(mode="after")
    def _default_path(self) -> _Artifact:
        if self.path is None:
            self.path = self.name
        return self


class TaskInput(_Artifact):
    optional: bool = False


class TaskOutput(_Artifact):
    pass


class TaskCache(_Model):
    path: RelPath


class TaskRun(_Model):
    path: Annotated[str, Field(min_length=1)]
    args: list[str] = Field(default_factory=list)
    dir: Annotated[str, AfterValidator(_check_run_dir)] | None = None
    user: str | None = None


class ContainerLimits(_Model):
    cpu: CpuShares | None = None
    memory: MemoryBytes | None = None


class TaskConfig(_Model):
    platform: Annotated[str, Field(min_length=1)]
    image_resource: ImageResource | None = None
    rootfs_uri: str | None = None
    inputs: list[TaskInput] = Field(default_factory=list)
    outputs: list[TaskOutput] = Field(default_factory=list)
    caches: list[TaskCache] = Field(default_factory=list)
    params: dict[ParamKey, ParamValue] = Field(default_factory=dict)
    run: TaskRun
    container_limits: ContainerLimits | None = None

    _filename: str = PrivateAttr(default="task.yml")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        # `params:` / `inputs:` with nothing after them is common in real task files.
        if isinstance(data, dict):
            for key in ("inputs", "outputs", "caches", "params"):
                if key in data and data[key] is None:
                    data = {k: v for k, v in data.items() if k != key}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> TaskConfig:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        duplicates: set[tuple[str, int]] = set()

        def unique_names(kind: str, items: list[TaskInput] | list[TaskOutput]) -> None:
            seen: dict[str, int] = {}
            for i, item in enumerate(items):
                if item.name in seen:
                    problems.append(
                        ((kind, i, "name"), f"duplicate {kind[:-1]} name {item.name!r} "
                         f"(also {kind}[{seen[item.name]}])")
                    )
                    duplicates.add((kind, i))
                else:
                    seen[item.name] = i

        unique_names("inputs", self.inputs)
        unique_names("outputs", self.outputs)

        # Per kind, the index of the first item at each path.  An output may share an
        # input's path; every other coincidence of paths is an error.
        taken: dict[str, dict[str, int]] = {"inputs": {}, "outputs": {}, "caches": {}}
        clashes = {
            "inputs": ("inputs",),
            "outputs": ("outputs",),
            "caches": ("inputs", "outputs", "caches"),
        }
        for kind, items in (("inputs", self.inputs), ("outputs", self.outputs), ("caches", self.caches)):
            for i, item in enumerate(items):
                if (kind, i) in duplicates:
                    continue  # already reported; its path clash is a consequence
                path = str(item.path)
                other = next(((k, taken[k][path]) for k in clashes[kind] if path in taken[k]), None)
                if other is not None:
                    problems.append(
                        ((kind, i, "path"), f"path {path!r} is already used by {other[0]}[{other[1]}]")
                    )
                else:
                    taken[kind][path] = i
        if problems:
            raise _SemanticErrors(problems)
        return self

    # -- params

    def params_env(self) -> dict[str, str]:
        """Params as environment strings, in file order (see the module docstring)."""
        return {k: param_to_env(v) for k, v in self.params.items()}

    def env_list(self) -> list[str]:
        """Params as ``KEY=value`` strings, for an OCI process spec."""
        return [f"{k}={v}" for k, v in self.params_env().items()]

    # -- path layout

    def input_paths(self, work_dir: str | PurePosixPath = DEFAULT_WORK_DIR) -> dict[str, PurePosixPath]:
        """Input name → absolute container path."""
        base = PurePosixPath(work_dir)
        return {i.name: base / str(i.path) for i in self.inputs}

    def output_paths(self, work_dir: str | PurePosixPath = DEFAULT_WORK_DIR) -> dict[str, PurePosixPath]:
        """Output name → absolute container path."""
        base = PurePosixPath(work_dir)
        return {o.name: base / str(o.path) for o in self.outputs}

    def cache_paths(self, work_dir: str | PurePosixPath = DEFAULT_WORK_DIR) -> list[PurePosixPath]:
        base = PurePosixPath(work_dir)
        return [base / c.path for c in self.caches]

    def outputs_sharing_inputs(self) -> dict[str, str]:
        """Output name → input name, for outputs placed at an input's path (the output starts
        as a copy-on-write of that input)."""
        by_path = {i.path: i.name for i in self.inputs}
        return {o.name: by_path[o.path] for o in self.outputs if o.path in by_path}

    def working_dir(self, work_dir: str | PurePosixPath = DEFAULT_WORK_DIR) -> PurePosixPath:
        """The process's cwd: the work dir, or ``run.dir`` resolved against it."""
        base = PurePosixPath(work_dir)
        return base / self.run.dir if self.run.dir else base

    # -- image

    def require_image(self, step_image: bool = False) -> None:
        """Raise :class:`TaskConfigError` unless something supplies an image: the config's
        ``image_resource`` or ``rootfs_uri``, or the step's ``image:`` (``step_image``)."""
        if step_image or self.image_resource is not None or self.rootfs_uri:
            return
        raise TaskConfigError(
            self._filename,
            [
                TaskConfigProblem(
                    self._filename, None, "image_resource",
                    "the task has no image: set image_resource (type registry-image with "
                    "source.repository) or rootfs_uri in the task config, or image: on the task step",
                )
            ],
        )


# --------------------------------------------------------------------------- YAML with lines


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


Loc = tuple[str | int, ...]


class _Converter:
    """Node tree → plain Python, recording each value's line (1-based) and each mapping
    key's line under the same path."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.value_lines: dict[Loc, int] = {}
        self.key_lines: dict[Loc, int] = {}
        self.problems: list[TaskConfigProblem] = []
        self._loader = _Loader("")
        self._merged: dict[int, int] = {}
        self._from_merge: set[Loc] = set()

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
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
                        TaskConfigProblem(self.filename, key_node.start_mark.line + 1, _dotted(loc),
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
                            self.filename, key_node.start_mark.line + 1, _dotted(sub),
                            f"duplicate key {key!r} (first at line {self.key_lines.get(sub, '?')})",
                        )
                    )
                    continue
                self.key_lines[sub] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, sub)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self._loader.construct_object(node, deep=True)

    def line_for(self, loc: Loc, *, key: bool = False) -> int | None:
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


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _describe(value: Any) -> str:
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


# What each field expects, keyed by its path with list indices dropped.
_EXPECTED: dict[str, str] = {
    "": "a mapping with platform and run",
    "platform": "a string such as linux",
    "image_resource": "a mapping with type and source",
    "image_resource.type": "one of registry-image, docker-image",
    "image_resource.source": "a mapping with repository",
    "image_resource.params": "a mapping",
    "image_resource.version": "a mapping of strings to strings",
    "image_resource.version.*": "a string",
    "rootfs_uri": "a string",
    "inputs": "a list of inputs",
    "inputs[]": "a mapping with name, path, optional",
    "inputs[].name": "a name such as my-repo",
    "inputs[].path": "a relative path",
    "inputs[].optional": "true or false",
    "outputs": "a list of outputs",
    "outputs[]": "a mapping with name, path",
    "outputs[].name": "a name such as built-project",
    "outputs[].path": "a relative path",
    "caches": "a list of caches",
    "caches[]": "a mapping with path",
    "caches[].path": "a relative path",
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


def _problems_from(exc: ValidationError, filename: str, conv: _Converter | None) -> list[TaskConfigProblem]:
    problems: list[TaskConfigProblem] = []

    def line(loc: Loc, key: bool = False) -> int | None:
        return conv.line_for(loc, key=key) if conv is not None else None

    for err in exc.errors(include_url=False):
        loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
        is_key = "[key]" in err["loc"]
        etype = err["type"]
        ctx = err.get("ctx") or {}
        original = ctx.get("error")
        if isinstance(original, _SemanticErrors):
            for sub, msg in original.items:
                full = (*loc, *sub)
                problems.append(TaskConfigProblem(filename, line(full), _dotted(full), msg))
            continue
        expected = _EXPECTED.get(_shape(loc))
        if etype == "missing":
            msg = "field required" + (f" (expected {expected})" if expected else "")
        elif etype == "extra_forbidden":
            allowed = _ALLOWED_KEYS.get(_shape(loc[:-1]))
            msg = f"unknown key {loc[-1]!r}" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
            problems.append(TaskConfigProblem(filename, line(loc, key=True), _dotted(loc), msg))
            continue
        elif etype in ("value_error", "assertion_error"):
            msg = str(original) if original is not None else err["msg"]
        elif etype == "literal_error":
            msg = f"expected {expected or ctx.get('expected')}, got {_describe(err['input'])}"
        elif etype == "string_too_short":
            msg = f"expected {expected or 'a string'}, got an empty string"
        else:
            msg = f"expected {expected or err['msg']}, got {_describe(err['input'])}"
        if is_key and etype != "value_error":
            msg = f"expected a string key, got {_describe(err['input'])}"
        problems.append(TaskConfigProblem(filename, line(loc, key=is_key), _dotted(loc), msg))
    problems.sort(key=lambda p: (p.line or 0))
    return problems


def _validate(data: Any, filename: str, conv: _Converter | None) -> TaskConfig:
    if not isinstance(data, dict):
        line = conv.line_for(()) if conv is not None else None
        raise TaskConfigError(
            filename,
            [TaskConfigProblem(filename, line, "",
                               f"expected a mapping with platform and run at the top level, got {_describe(data)}")],
        )
    problems = list(conv.problems) if conv is not None else []
    config: TaskConfig | None = None
    try:
        config = TaskConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, filename, conv))
    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise TaskConfigError(filename, problems)
    assert config is not None
    config._filename = filename
    return config


def parse_task_config(data: Mapping[str, Any], filename: str = "task.yml") -> TaskConfig:
    """Validate an already-parsed config (e.g. JSON from the API); errors carry no lines."""
    return _validate(dict(data) if isinstance(data, Mapping) else data, filename, None)


def load_task_config(text: str, filename: str = "task.yml") -> TaskConfig:
    """Parse a task file and validate it; raise :class:`TaskConfigError` listing every
    problem with file, line and dotted field path."""
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
    conv = _Converter(filename)
    try:
        data = conv.convert(nodes[0], ())
    except yaml.YAMLError as exc:  # e.g. a bad !!tag or a bad merge key
        mark = getattr(exc, "problem_mark", None)
        raise TaskConfigError(
            filename,
            [TaskConfigProblem(filename, mark.line + 1 if mark else None, "", f"YAML error: {exc}")],
        ) from None
    return _validate(data, filename, conv)
