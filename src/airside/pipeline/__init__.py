"""The Concourse pipeline config schema (issue 17): pure data, like airside.task.

`load_pipeline_config(text, filename, static_vars)` validates a pipeline file and returns a
`LoadedPipeline`, or raises one `PipelineConfigError` naming ``file:line: field: message`` for
every problem. `StaticVars.from_flags` builds the vars of fly's ``-v``/``-y``/``-l``. See
docs/pipelines.md for what is supported and how it differs from Concourse.

- :mod:`airside.pipeline.errors` — `PipelineConfigError`, `Problem` (airside.task's problem);
- :mod:`airside.pipeline.vars` — ``((var))`` references, static vars, interpolation;
- :mod:`airside.pipeline.values` — durations, var-or-value scalars, identifiers;
- :mod:`airside.pipeline.models` — the pydantic schema: `PipelineConfig`, jobs, resources, steps;
- :mod:`airside.pipeline.semantics` — the checks across the config (names, references, passed);
- :mod:`airside.pipeline.loader` — `load_pipeline_config`: YAML → vars → schema → checks.
"""

from airside.pipeline.errors import PipelineConfigError, Problem
from airside.pipeline.loader import LoadedPipeline, load_pipeline_config, parse_pipeline_config
from airside.pipeline.models import STEP_TYPES, PipelineConfig, step_kind
from airside.pipeline.semantics import CORE_TYPES
from airside.pipeline.vars import StaticVars, VarFlagError

__all__ = [
    "CORE_TYPES",
    "STEP_TYPES",
    "LoadedPipeline",
    "PipelineConfig",
    "PipelineConfigError",
    "Problem",
    "StaticVars",
    "VarFlagError",
    "load_pipeline_config",
    "parse_pipeline_config",
    "step_kind",
]
