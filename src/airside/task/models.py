"""The task config schema as pydantic v2 models: `TaskConfig` and its parts (`ImageResource`,
`TaskInput`, `TaskOutput`, `TaskCache`, `TaskRun`, `ContainerLimits`).

Every model is strict and forbids unknown keys. Field values are checked by the annotated types of
`airside.task.values`; the cross-field rules (unique names, paths that may not coincide, an image
source's repository/tag) raise `SemanticErrors` so that each problem is reported on its own line.
`TaskConfig` also answers the questions the runtimes ask: environment (`params_env`), container paths
under the work dir (`input_paths`, `output_paths`, `cache_paths`, `working_dir`), and whether an image
is supplied (`require_image`). Validate through `airside.task.loader` (`load_task_config`,
`parse_task_config`), which turns pydantic's errors into `TaskConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

from airside.core.layout import DEFAULT_WORK_DIR

from .errors import Loc, SemanticErrors, TaskConfigError, TaskConfigProblem, describe
from .params import param_to_env
from .values import ArtifactPath, CacheTTL, CpuShares, Identifier, MemoryBytes, ParamKey, ParamValue, RunDir

__all__ = [
    "IMAGE_TYPES",
    "ContainerLimits",
    "ImageResource",
    "TaskCache",
    "TaskConfig",
    "TaskInput",
    "TaskOutput",
    "TaskRun",
]

IMAGE_TYPES = ("registry-image", "docker-image")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)


class ImageResource(_Model):
    """``image_resource``: any resource type (Concourse's own examples use ``mock``); ``source`` is checked
    here only for the types airside fetches itself (`IMAGE_TYPES`: ``repository`` required, ``tag`` a
    string). Other types are accepted; the runtimes refuse them when the task runs (`unsupported`)."""

    name: str | None = None  # Concourse 8: a name for the image's check/get in the build plan
    type: Annotated[str, Field(min_length=1)]
    source: dict[str, Any]
    params: dict[str, Any] | None = None
    version: dict[str, str] | None = None
    tags: list[str] | None = None  # Concourse 8: worker tags for fetching the image

    @model_validator(mode="after")
    def _check_source(self, info: ValidationInfo) -> ImageResource:
        if self.type not in IMAGE_TYPES:
            return self
        repo = self.source.get("repository")
        if repo is None:
            raise SemanticErrors([(("source", "repository"), "field required (expected a string)")])
        if not isinstance(repo, str) or not repo:
            raise SemanticErrors(
                [(("source", "repository"), f"expected a non-empty string, got {describe(repo)}")]
            )
        tag = self.source.get("tag")
        if tag is not None and not isinstance(tag, str):
            # quote what the file says (`tag: 3.0` → '3.0'), not the number YAML made of it ('3')
            scalars = (info.context or {}).get("scalars", {})
            written = scalars.get(("image_resource", "source", "tag")) or param_to_env(tag)
            raise SemanticErrors(
                [(("source", "tag"), f"expected a string (quote it: tag: '{written}'), got {describe(tag)}")]
            )
        return self

    def unsupported(self) -> str | None:
        """Why airside cannot fetch this image yet (None when it can): only registry-image and
        docker-image are fetched; other resource types need the resource protocol."""
        if self.type in IMAGE_TYPES:
            return None
        return (f"image_resource type {self.type!r} is not supported yet: airside fetches task images only "
                f"with {' or '.join(IMAGE_TYPES)} (other resource types need resources, which airside "
                "does not run yet); use type: registry-image with source.repository, or rootfs_uri")

    @property
    def repository(self) -> str:
        reason = self.unsupported()
        if reason is not None:
            raise ValueError(reason)
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
    path: ArtifactPath | None = None

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
    path: ArtifactPath
    ttl: CacheTTL | None = None  # Concourse 8.2: how long an unused cache is kept


class TaskRun(_Model):
    # None: the image's ENTRYPOINT/CMD runs (Concourse 8), see `TaskConfig.command`
    path: Annotated[str, Field(min_length=1)] | None = None
    args: list[str] = Field(default_factory=list)
    dir: RunDir | None = None
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
    run: TaskRun = Field(default_factory=lambda: TaskRun())  # Concourse 8: optional (the image's entrypoint runs)
    container_limits: ContainerLimits | None = None

    _filename: str = PrivateAttr(default="task.yml")
    _warnings: list[tuple[Loc, str]] = PrivateAttr(default_factory=list)
    _warning_problems: list[TaskConfigProblem] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[TaskConfigProblem]:
        """What the file gets wrong that Concourse accepts (a duplicate input name), as
        ``file:line: field: message``; set by the loader."""
        return list(self._warning_problems)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        # `params:` / `inputs:` with nothing after them is common in real task files.
        if isinstance(data, dict):
            for key in ("inputs", "outputs", "caches", "params", "run"):
                if key in data and data[key] is None:
                    data = {k: v for k, v in data.items() if k != key}
        return data

    @model_validator(mode="after")
    def _cross_checks(self) -> TaskConfig:
        problems: list[tuple[Loc, str]] = []
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

        # Concourse accepts an input named twice (a copy-pasted line is common in real files): warn, and
        # keep the first entry, since one artifact is mounted once.
        first: dict[str, int] = {}
        kept: list[TaskInput] = []
        for i, inp in enumerate(self.inputs):
            if inp.name in first:
                j = first[inp.name]
                where = "the same path" if inp.path == self.inputs[j].path else f"path {self.inputs[j].path!r}"
                self._warnings.append(
                    (("inputs", i, "name"), f"duplicate input name {inp.name!r} (also inputs[{j}]): "
                     f"this entry is ignored, the input is mounted once, at {where}")
                )
                duplicates.add(("inputs", i))
            else:
                first[inp.name] = i
                kept.append(inp)
        unique_names("outputs", self.outputs)

        # Per kind, the index of the first item at each path.  An output may share an
        # input's path; every other coincidence of paths is an error.
        taken: dict[str, dict[str, int]] = {"inputs": {}, "outputs": {}, "caches": {}}
        clashes = {
            "inputs": ("inputs",),
            "outputs": ("outputs",),
            "caches": ("inputs", "outputs", "caches"),
        }
        groups: tuple[tuple[str, Sequence[TaskInput | TaskOutput | TaskCache]], ...] = (
            ("inputs", self.inputs), ("outputs", self.outputs), ("caches", self.caches),
        )
        for kind, items in groups:
            for i, item in enumerate(items):
                if (kind, i) in duplicates:
                    continue  # already reported; its path clash is a consequence
                # compared where they land: `x` and `/tmp/build/work/x` are one mount
                path = str(PurePosixPath(DEFAULT_WORK_DIR) / str(item.path))
                other = next(((k, taken[k][path]) for k in clashes[kind] if path in taken[k]), None)
                if other is not None:
                    problems.append(
                        ((kind, i, "path"), f"path {item.path!r} is already used by {other[0]}[{other[1]}]")
                    )
                else:
                    taken[kind][path] = i
        if problems:
            raise SemanticErrors(problems)
        self.inputs = kept
        return self

    # -- params

    def params_env(self) -> dict[str, str]:
        """Params as environment strings, in file order (see `airside.task.params`)."""
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

    # -- what runs

    def command(self, entrypoint: Sequence[str] = (), cmd: Sequence[str] = ()) -> tuple[str, list[str]]:
        """The executable and its arguments, given the image's ENTRYPOINT and CMD, as Concourse 8 does:
        ``run.path`` and ``run.args`` when ``run.path`` is set; otherwise the entrypoint's first word (or
        the CMD's, without an entrypoint), followed by the rest of the entrypoint, the CMD and then
        ``run.args``. Raises ValueError when nothing names an executable."""
        if self.run.path:
            return self.run.path, list(self.run.args)
        if entrypoint:
            path, args = entrypoint[0], [*entrypoint[1:], *cmd]
        elif cmd:
            path, args = cmd[0], list(cmd[1:])
        else:
            path, args = "", []
        if not path:
            raise ValueError("no executable for the task: set run.path in the task config, or use an image "
                             "with an ENTRYPOINT or CMD")
        return path, [*args, *self.run.args]

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
