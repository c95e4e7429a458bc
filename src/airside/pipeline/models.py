"""The Concourse pipeline config schema as pydantic v2 models: `PipelineConfig` and its parts.

Every model forbids unknown keys; a YAML ``null`` is taken as absent (Go decodes it as the zero
value). A step is one mapping with exactly one step-type key (`STEP_TYPES`: ``get``, ``put``,
``task``, ``set_pipeline``, ``load_var``, ``in_parallel``, ``do``, ``try``); every step may also carry
the modifiers ``timeout``, ``attempts``, ``across`` (+ ``fail_fast``) and the hooks ``on_success``,
``on_failure``, ``on_error``, ``on_abort``, ``ensure`` (`MODIFIERS`), as Concourse's StepPrecedence
allows. `step_kind` answers which step a mapping is; the loader names the keys of one that has none
or several. The checks that look across the config (names, references, ``passed``) are
`airside.pipeline.semantics`; the inline task ``config:`` is checked by airside.task's own schema.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    model_validator,
)
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

from airside.task import ContainerLimits
from airside.task.errors import Loc, SemanticErrors

from .values import (
    AcrossMaxInFlight,
    Bool,
    CheckEvery,
    Duration,
    GetVersion,
    NonNegativeInt,
    PositiveInt,
    PutInputs,
)
from .vars import is_var

__all__ = [
    "MODIFIERS",
    "STEP_TYPES",
    "AcrossVar",
    "BuildLogRetention",
    "DisplayConfig",
    "DoStep",
    "GetStep",
    "GroupConfig",
    "InParallelConfig",
    "InParallelStep",
    "JobConfig",
    "LoadVarStep",
    "PipelineConfig",
    "PutStep",
    "ResourceConfig",
    "ResourceType",
    "SetPipelineStep",
    "Step",
    "TaskStep",
    "TryStep",
    "VarSourceConfig",
    "step_kind",
]

STEP_TYPES = ("task", "put", "get", "set_pipeline", "load_var", "try", "do", "in_parallel")
"""The step-type keys, in Concourse's precedence order."""
MODIFIERS = ("ensure", "on_error", "on_abort", "on_failure", "on_success", "across", "fail_fast",
             "attempts", "timeout")
HOOKS = ("on_success", "on_failure", "on_error", "on_abort", "ensure")
VAR_SOURCE_TYPES = ("vault", "dummy", "ssm", "secretsmanager", "idtoken")
"""The credential managers Concourse accepts in ``var_sources``."""


def _takes_structure(annotation: Any) -> bool:
    """Whether a field's type is a mapping, list or model (a ``((var))`` string is not one)."""
    ann = annotation
    while get_origin(ann) in (Annotated, Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if get_origin(ann) is Annotated:
            args = args[:1]
        if len(args) != 1:
            return False
        ann = args[0]
    return get_origin(ann) in (dict, list) or (isinstance(ann, type) and issubclass(ann, BaseModel))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    _deferred: dict[str, str] = PrivateAttr(default_factory=dict)
    """Optional mapping/list fields given as one ``((var))`` not set yet: field → the var text,
    checked when the var is resolved (run time)."""

    @model_validator(mode="wrap")
    @classmethod
    def _nulls_and_vars(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        deferred: dict[str, str] = {}
        if isinstance(data, dict):
            structured = _structured_fields(cls)
            deferred = {k: v for k, v in data.items() if k in structured and is_var(v)}
            if deferred or any(v is None for v in data.values()):
                data = {k: v for k, v in data.items() if v is not None and k not in deferred}
        model = handler(data)
        if deferred:
            model._deferred = deferred
        return model


_STRUCTURED: dict[type, frozenset[str]] = {}


def _structured_fields(cls: type[BaseModel]) -> frozenset[str]:
    if cls not in _STRUCTURED:
        _STRUCTURED[cls] = frozenset(
            f.alias or n for n, f in cls.model_fields.items()
            if not f.is_required() and _takes_structure(f.annotation)
        )
    return _STRUCTURED[cls]


Params = dict[str, Any]
Tags = list[str]


def step_kind(data: Any) -> str | None:
    """The step-type key of a step mapping, or None when it has none or more than one."""
    if isinstance(data, _StepBase):
        return data.kind
    if not isinstance(data, dict):
        return None
    kinds = [k for k in STEP_TYPES if k in data]
    return kinds[0] if len(kinds) == 1 else None


def _step_tag(data: Any) -> str | None:
    kind = step_kind(data)
    return f"step:{kind}" if kind else None


class AcrossVar(_Model):
    var: Annotated[str, Field(min_length=1)]
    values: Any
    max_in_flight: AcrossMaxInFlight | None = None


class _StepBase(_Model):
    """What every step may carry besides its type: modifiers and hooks."""

    kind: ClassVar[str] = ""
    timeout: Duration | None = None
    attempts: PositiveInt | None = None
    across: list[AcrossVar] | None = None
    fail_fast: Bool | None = None
    on_success: Step | None = None
    on_failure: Step | None = None
    on_error: Step | None = None
    on_abort: Step | None = None
    ensure: Step | None = None

    @model_validator(mode="after")
    def _modifiers(self) -> _StepBase:
        problems: list[tuple[Loc, str]] = []
        if self.fail_fast is not None and self.across is None:
            problems.append((("fail_fast",), "fail_fast on a step goes with across "
                             "(for in_parallel, write it under in_parallel:)"))
        if self.across is not None:
            if not self.across:
                problems.append((("across",), "no vars specified"))
            seen: set[str] = set()
            for i, v in enumerate(self.across):
                if v.var in seen:
                    problems.append((("across", i, "var"), f"repeated var name {v.var!r}"))
                seen.add(v.var)
        if problems:
            raise SemanticErrors(problems)
        return self

    def hooks(self) -> list[tuple[str, Step]]:
        return [(h, s) for h in HOOKS if (s := getattr(self, h)) is not None]


class GetStep(_StepBase):
    kind: ClassVar[str] = "get"
    get: Annotated[str, Field(min_length=1)]
    resource: str | None = None
    version: GetVersion | None = None
    params: Params | None = None
    passed: list[str] | None = None
    trigger: Bool = False
    tags: Tags | None = None

    @property
    def resource_name(self) -> str:
        return self.resource or self.get


class PutStep(_StepBase):
    kind: ClassVar[str] = "put"
    put: Annotated[str, Field(min_length=1)]
    resource: str | None = None
    params: Params | None = None
    inputs: PutInputs | None = None
    tags: Tags | None = None
    get_params: Params | None = None
    no_get: Bool = False

    @property
    def resource_name(self) -> str:
        return self.resource or self.put


class TaskStep(_StepBase):
    kind: ClassVar[str] = "task"
    task: Annotated[str, Field(min_length=1)]
    file: str | None = None
    config: dict[str, Any] | None = None  # checked by airside.task's schema (the loader)
    image: str | None = None
    params: Params | None = None
    vars: Params | None = None
    input_mapping: dict[str, str] | None = None
    output_mapping: dict[str, str] | None = None
    privileged: Bool = False
    hermetic: Bool = False
    tags: Tags | None = None
    container_limits: ContainerLimits | None = None

    @model_validator(mode="after")
    def _file_or_config(self) -> TaskStep:
        if self.file is None and self.config is None and "config" not in self._deferred:
            raise SemanticErrors([(("task",), "must specify either `file:` or `config:`")])
        if self.file is not None and self.config is not None:
            raise SemanticErrors([(("file",), "must specify one of `file:` or `config:`, not both")])
        return self


class SetPipelineStep(_StepBase):
    kind: ClassVar[str] = "set_pipeline"
    set_pipeline: Annotated[str, Field(min_length=1)]
    file: Annotated[str, Field(min_length=1)]
    team: str | None = None
    vars: Params | None = None
    var_files: list[str] | None = None
    instance_vars: Params | None = None


class LoadVarStep(_StepBase):
    kind: ClassVar[str] = "load_var"
    load_var: Annotated[str, Field(min_length=1)]
    file: Annotated[str, Field(min_length=1)]
    format: Literal["json", "yaml", "yml", "trim", "raw"] | None = None
    reveal: Bool = False


class TryStep(_StepBase):
    kind: ClassVar[str] = "try"
    try_: Step = Field(alias="try")


class DoStep(_StepBase):
    kind: ClassVar[str] = "do"
    do: list[Step]
    tags: Tags | None = None


class InParallelConfig(_Model):
    steps: list[Step] = Field(default_factory=list)
    limit: NonNegativeInt | None = None
    fail_fast: Bool = False


class InParallelStep(_StepBase):
    kind: ClassVar[str] = "in_parallel"
    in_parallel: InParallelConfig
    tags: Tags | None = None

    _short_form: bool = PrivateAttr(default=False)
    """Written as a plain list of steps (``in_parallel: [...]``), not ``{steps: [...]}``."""

    @model_validator(mode="wrap")
    @classmethod
    def _list_form(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        short = isinstance(data, dict) and isinstance(data.get("in_parallel"), list)
        if short:
            data = {**data, "in_parallel": {"steps": data["in_parallel"]}}
        step = handler(data)
        step._short_form = short
        return step

    @property
    def steps_loc(self) -> Loc:
        return ("in_parallel",) if self._short_form else ("in_parallel", "steps")


Step = Annotated[
    Annotated[TaskStep, Tag("step:task")]
    | Annotated[PutStep, Tag("step:put")]
    | Annotated[GetStep, Tag("step:get")]
    | Annotated[SetPipelineStep, Tag("step:set_pipeline")]
    | Annotated[LoadVarStep, Tag("step:load_var")]
    | Annotated[TryStep, Tag("step:try")]
    | Annotated[DoStep, Tag("step:do")]
    | Annotated[InParallelStep, Tag("step:in_parallel")],
    Discriminator(_step_tag),
]
AnyStep = TaskStep | PutStep | GetStep | SetPipelineStep | LoadVarStep | TryStep | DoStep | InParallelStep


class ResourceConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    old_name: str | None = None
    type: Annotated[str, Field(min_length=1)]
    source: Params = Field(default_factory=dict)
    check_every: CheckEvery | None = None
    check_timeout: Duration | None = None
    tags: Tags | None = None
    icon: str | None = None
    version: dict[str, str] | None = None
    webhook_token: str | None = None
    public: Bool = False
    expose_build_created_by: Bool = False


class ResourceType(_Model):
    name: Annotated[str, Field(min_length=1)]
    type: Annotated[str, Field(min_length=1)]
    source: Params = Field(default_factory=dict)
    defaults: Params | None = None
    privileged: Bool = False
    check_every: CheckEvery | None = None
    tags: Tags | None = None
    params: Params | None = None


class BuildLogRetention(_Model):
    builds: NonNegativeInt | None = None
    minimum_succeeded_builds: NonNegativeInt | None = None
    days: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _minimum_within_builds(self) -> BuildLogRetention:
        b, m = self.builds, self.minimum_succeeded_builds
        if isinstance(b, int) and isinstance(m, int) and b > 0 and m > b:
            raise SemanticErrors([(("minimum_succeeded_builds",),
                                   f"{m} is greater than builds ({b})")])
        return self


class JobConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    old_name: str | None = None
    public: Bool = False
    disable_manual_trigger: Bool = False
    disable_reruns: Bool = False
    serial: Bool = False
    interruptible: Bool = False
    serial_groups: list[str] | None = None
    max_in_flight: NonNegativeInt | None = None
    tags: Tags | None = None
    build_logs_to_retain: NonNegativeInt | None = None
    build_log_retention: BuildLogRetention | None = None
    on_success: Step | None = None
    on_failure: Step | None = None
    on_error: Step | None = None
    on_abort: Step | None = None
    ensure: Step | None = None
    plan: list[Step]

    @model_validator(mode="after")
    def _retention(self) -> JobConfig:
        if self.build_logs_to_retain is not None and self.build_log_retention is not None:
            raise SemanticErrors([(("build_logs_to_retain",),
                                   "can't use both build_log_retention and build_logs_to_retain")])
        return self

    def hooks(self) -> list[tuple[str, Step]]:
        return [(h, s) for h in HOOKS if (s := getattr(self, h)) is not None]


class GroupConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    jobs: list[str] | None = None
    resources: list[str] | None = None


class DisplayConfig(_Model):
    background_image: str | None = None
    background_filter: str | None = None

    @model_validator(mode="after")
    def _image_url(self) -> DisplayConfig:
        url = self.background_image or ""
        scheme, sep, _ = url.partition("://")
        if sep and scheme.lower() not in ("http", "https"):
            raise SemanticErrors([(("background_image",),
                                   "background_image scheme must be either http, https or relative")])
        return self


class VarSourceConfig(_Model):
    name: Annotated[str, Field(min_length=1)]
    type: Literal["vault", "dummy", "ssm", "secretsmanager", "idtoken"]
    config: Params = Field(default_factory=dict)


class PipelineConfig(_Model):
    groups: list[GroupConfig] | None = None
    var_sources: list[VarSourceConfig] | None = None
    resources: list[ResourceConfig] | None = None
    resource_types: list[ResourceType] | None = None
    jobs: list[JobConfig] | None = None
    display: DisplayConfig | None = None
    user_data: Any = None

    _filename: str = PrivateAttr(default="pipeline.yml")
