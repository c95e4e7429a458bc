"""The Concourse task config schema (issue 6).  See :mod:`airside.task.config`."""

from airside.task.config import (
    DEFAULT_WORK_DIR,
    ContainerLimits,
    ImageResource,
    TaskCache,
    TaskConfig,
    TaskConfigError,
    TaskConfigProblem,
    TaskInput,
    TaskOutput,
    TaskRun,
    load_task_config,
    param_to_env,
    parse_memory,
    parse_task_config,
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
