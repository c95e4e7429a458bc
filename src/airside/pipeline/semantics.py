"""The checks that look across a pipeline config, all reported at once, each at its line. As
Concourse's configvalidate and StepValidator (atc/configvalidate, atc/step_validator.go):

- names: no two jobs, resources, resource types, groups or var sources share a name; an invalid
  identifier (upper case, leading symbol, only digits) is a warning, as in Concourse;
- at least one job; every get/put names a defined resource; a get's name is not repeated in a job;
  every resource is used by some get or put (Concourse refuses unused resources);
- ``passed``: each entry (a glob) matches a job, and every job it matches gets or puts that
  resource; jobs may not form a cycle through ``passed``;
- groups: each job glob matches a job, each resource exists, and when there are groups every job
  is in one;
- resource types (airside's addition: Concourse leaves this to the workers): a resource's type, and
  a resource type's type, is a core type (`CORE_TYPES`) or one of ``resource_types`` — a type may
  not be its own base (Concourse looks a type's own type up without itself);
- warnings: ``max_in_flight`` next to ``serial``/``serial_groups`` (those win: one build at a time),
  the deprecated ``build_logs_to_retain``, a step ``image:`` next to an image in ``config:``, a
  ``((source:var))`` whose source is not in ``var_sources``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fnmatch import fnmatchcase
from typing import Any

from airside.task.errors import Loc, dotted

from .errors import Problem
from .models import (
    DoStep,
    GetStep,
    InParallelStep,
    JobConfig,
    LoadVarStep,
    PipelineConfig,
    PutStep,
    SetPipelineStep,
    TaskStep,
    TryStep,
)
from .values import identifier_warning
from .vars import is_var

__all__ = ["CORE_TYPES", "check", "job_steps", "walk_steps"]

CORE_TYPES = frozenset({
    "bosh-io-release", "bosh-io-stemcell", "cf", "docker-image", "git", "github-release", "hg",
    "mock", "pool", "registry-image", "s3", "semver", "time", "tracker",
})
"""The resource types a Concourse release ships on its workers."""

Step = TaskStep | PutStep | GetStep | SetPipelineStep | LoadVarStep | TryStep | DoStep | InParallelStep
LineOf = Callable[..., int | None]


def job_steps(job: JobConfig, loc: Loc) -> Iterator[tuple[Any, Loc, bool]]:
    """Every step of a job (plan and hooks, nested ones included): (step, location, in_across)."""

    def walk(step: Any, at: Loc, across: bool) -> Iterator[tuple[Any, Loc, bool]]:
        across = across or step.across is not None
        yield step, at, across
        if isinstance(step, DoStep):
            for i, sub in enumerate(step.do):
                yield from walk(sub, (*at, "do", i), across)
        elif isinstance(step, InParallelStep):
            for i, sub in enumerate(step.in_parallel.steps):
                yield from walk(sub, (*at, *step.steps_loc, i), across)
        elif isinstance(step, TryStep):
            yield from walk(step.try_, (*at, "try"), across)
        for hook, sub in step.hooks():
            yield from walk(sub, (*at, hook), across)

    for i, step in enumerate(job.plan):
        yield from walk(step, (*loc, "plan", i), False)
    for hook, step in job.hooks():
        yield from walk(step, (*loc, hook), False)


def walk_steps(config: PipelineConfig) -> Iterator[tuple[Any, Loc]]:
    """Every step of every job, with its location."""
    for j, job in enumerate(config.jobs or []):
        for step, loc, _ in job_steps(job, ("jobs", j)):
            yield step, loc


def _touches(job: JobConfig, resource: str) -> bool:
    return any(isinstance(s, (GetStep, PutStep)) and s.resource_name == resource
               for s, _, _ in job_steps(job, ()))


def check(config: PipelineConfig, filename: str, line_of: LineOf,
          later_vars: dict[str, list[Loc]] | None = None,
          known_types: frozenset[str] | None = None) -> tuple[list[Problem], list[Problem]]:
    """(errors, warnings) of `config`; `line_of(loc, key=False)` answers a location's line. A resource type that
    is neither a core type nor declared in resource_types is an error unless `known_types` (the types web's
    workers offer) has it; without `known_types` (no web to ask: validate-pipeline) it is a warning."""
    errors: list[Problem] = []
    warnings: list[Problem] = []

    def error(loc: Loc, message: str) -> None:
        errors.append(Problem(filename, line_of(loc), dotted(loc), message))

    def warn(loc: Loc, message: str) -> None:
        warnings.append(Problem(filename, line_of(loc), dotted(loc), message))

    def names(section: str, items: list[Any], what: str) -> dict[str, int]:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            loc = (section, i, "name")
            if item.name in seen:
                first = (section, seen[item.name], "name")
                error(loc, f"duplicate {what} name {item.name!r} (also {dotted(first[:2])} "
                           f"at line {line_of(first)})")
                continue
            seen[item.name] = i
            if (why := identifier_warning(item.name)) is not None:
                warn(loc, why)
        return seen

    jobs = config.jobs or []
    resources = config.resources or []
    types = config.resource_types or []
    job_names = names("jobs", jobs, "job")
    resource_names = names("resources", resources, "resource")
    names("resource_types", types, "resource type")
    names("groups", config.groups or [], "group")
    source_names = names("var_sources", config.var_sources or [], "var source")

    if not jobs:
        error(("jobs",), "a pipeline must contain at least one job")

    # resource types: a known base at the end of each chain
    by_type = {t.name: t for t in types}

    def base_known(type_name: str, without: frozenset[str]) -> bool:
        if type_name in by_type and type_name not in without:
            return base_known(by_type[type_name].type, without | {type_name})
        return type_name in CORE_TYPES or type_name in (known_types or ())

    known = ", ".join(sorted(CORE_TYPES | set(by_type) | set(known_types or ())))

    def unknown(loc: Loc, message: str) -> None:
        if known_types is None:
            warn(loc, message + "; web accepts it only if a worker offers it")
        else:
            error(loc, message + " (no worker offers it either)")
    for i, rt in enumerate(types):
        if not is_var(rt.type) and not base_known(rt.type, frozenset({rt.name})):
            unknown(("resource_types", i, "type"), f"unknown resource type {rt.type!r} (expected one of: {known}; "
                    "a type cannot be its own base)" if rt.type in by_type else
                    f"unknown resource type {rt.type!r} (expected one of: {known})")
    for i, r in enumerate(resources):
        if not is_var(r.type) and not base_known(r.type, frozenset()):
            unknown(("resources", i, "type"), f"unknown resource type {r.type!r} (expected one of: {known})")

    # jobs and their steps
    used: set[str] = set()
    for j, job in enumerate(jobs):
        jloc: Loc = ("jobs", j)
        serial = job.serial is True or bool(job.serial_groups)
        if job.max_in_flight not in (None, 0) and serial:
            warn((*jloc, "max_in_flight"), "max_in_flight is ignored: serial/serial_groups run one build "
                 "of this job at a time")
        if job.build_logs_to_retain is not None:
            warn((*jloc, "build_logs_to_retain"), "build_logs_to_retain is deprecated; use build_log_retention")
        seen_gets: dict[str, Loc] = {}
        for step, loc, in_across in job_steps(job, jloc):
            name_key = step.kind if step.kind != "try" else None
            name = getattr(step, name_key, None) if name_key else None
            if isinstance(name, str) and not (in_across and step.kind in ("task", "set_pipeline")):
                if (why := identifier_warning(name)) is not None:
                    warn((*loc, step.kind), why)
            if isinstance(step, TaskStep) and step.image and step.config and (
                    step.config.get("image_resource") or step.config.get("rootfs_uri")):
                warn((*loc, "image"), "image: on the step takes precedence over the image in config:")
            if not isinstance(step, (GetStep, PutStep)):
                continue
            resource = step.resource_name
            used.add(resource)
            rloc = (*loc, "resource") if step.resource else (*loc, step.kind)
            if resource not in resource_names and not is_var(resource):
                error(rloc, f"unknown resource {resource!r}"
                      + (f" (defined: {', '.join(resource_names)})" if resource_names else " (no resources are defined)"))
            if isinstance(step, GetStep):
                if step.get in seen_gets:
                    error((*loc, "get"), f"repeated name {step.get!r} (a get at line "
                          f"{line_of(seen_gets[step.get])} has it; use a different name with resource:)")
                else:
                    seen_gets[step.get] = (*loc, "get")
                for p, glob in enumerate(step.passed or []):
                    ploc = (*loc, "passed", p)
                    matched = [other for other in jobs if fnmatchcase(other.name, glob)]
                    if not matched:
                        error(ploc, f"no job matches {glob!r}")
                    for other in matched:
                        if not _touches(other, resource):
                            error(ploc, f"job {other.name!r} does not get or put resource {resource!r}")

    for i, r in enumerate(resources):
        if r.name not in used:
            error(("resources", i, "name"), f"resource {r.name!r} is not used by any job (Concourse refuses "
                  "unused resources)")

    # a cycle through passed
    upstream: dict[str, set[str]] = {}
    for job in jobs:
        ups: set[str] = set()
        for step, _, _ in job_steps(job, ()):
            if isinstance(step, GetStep):
                for glob in step.passed or []:
                    ups.update(o.name for o in jobs if fnmatchcase(o.name, glob))
        upstream[job.name] = ups
    state: dict[str, int] = {}
    reported: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name):] + [name]
            if name not in reported:
                reported.update(cycle)
                error(("jobs", job_names[name], "name"),
                      f"the pipeline has a cycle through passed: {' <- '.join(cycle)}")
            return
        state[name] = 1
        for up in sorted(upstream.get(name, ())):
            visit(up, [*path, name])
        state[name] = 2

    for job in jobs:
        visit(job.name, [])

    # groups
    grouped: set[str] = set()
    for g, group in enumerate(config.groups or []):
        for k, glob in enumerate(group.jobs or []):
            matching = [job.name for job in jobs if fnmatchcase(job.name, glob)]
            grouped.update(matching)
            if not matching:
                error(("groups", g, "jobs", k), f"no job matches {glob!r} (group {group.name!r})")
        for k, res in enumerate(group.resources or []):
            if res not in resource_names:
                error(("groups", g, "resources", k), f"group {group.name!r} has unknown resource {res!r}")
    if config.groups:
        for job in jobs:
            if job.name not in grouped:
                error(("jobs", job_names[job.name], "name"), f"job {job.name!r} belongs to no group")

    # var sources named by ((source:var))
    for ref, locs in (later_vars or {}).items():
        source = ref.split(":", 1)[0]
        if source != "." and source not in source_names:
            warn(locs[0], f"((%s)) names var source {source!r}, which var_sources does not declare" % ref)

    return errors, warnings
