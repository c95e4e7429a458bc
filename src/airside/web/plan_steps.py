"""The leaf steps of a job build's plan, for `airside.web.plans.Walk`: task, get, put, load_var, set_pipeline,
and what they share — artifact and var lookups, run-time ``((var))`` resolution, reading a file from an
artifact, and a resource script as a build.

`Steps` holds a walk's state (the job build, its stored step states, artifacts and local vars by scope) and
the step implementations; `Walk` adds the control flow (modifiers, do, in_parallel, try) on top. Each step
keeps its state in `self.steps[path]` and returns None while it runs, else its result, recording it with
`_set` so a later walk (or a restarted web) never runs it again. See `airside.web.plans` for the semantics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy.orm import Session

from airside.core import log
from airside.core.schemas import TERMINAL, BuildCreate, BuildStatus
from airside.pipeline.errors import PipelineConfigError
from airside.pipeline.vars import Reference, UnresolvedVars, lookup_in, resolve
from airside.task import TaskConfigError, load_task_config, parse_task_config
from airside.task.config import TaskConfig
from airside.web import builds, pipelines, resources
from airside.web.db import (
    BuildRow,
    JobBuildRow,
    JobRow,
    PipelineRow,
    ResourceConfigRow,
    ResourceRow,
    ResourceVersionRow,
)
from airside.web.errors import NotFound
from airside.web.host import WebHost

LOG = log.get("airside.web.plans")

SUCCEEDED, FAILED, ERRORED, ABORTED = "succeeded", "failed", "errored", "aborted"
Result = str | None  # one of the four, or None while the step still runs
StepData = dict[str, Any]
"""A step as stored in the pipeline config (plain data, already validated by airside.pipeline's schema)."""
TERMINAL_S = {str(x) for x in TERMINAL}
IMAGE_INPUT = "_image"  # the input name a step's `image:` artifact is linked as (not a task input: no path)


class StepError(Exception):
    """A step that cannot run as configured: it ends errored with this message."""


@dataclass(frozen=True)
class Env:
    """Where a step runs: its artifact/var scopes (innermost first) and whether it is being cancelled."""

    scopes: tuple[str, ...] = ("",)
    cancelled: bool = False

    def child(self, scope: str) -> Env:
        return replace(self, scopes=(scope, *self.scopes))

class Steps:
    """A walk's state and the leaf steps (see the module docstring). `Walk` sets the attributes."""

    s: Session
    jb: JobBuildRow
    job: JobRow
    p: PipelineRow
    now: float
    web: WebHost
    steps: dict[str, dict[str, Any]]
    artifacts: dict[str, dict[str, list[Any]]]
    vars: dict[str, dict[str, Any]]
    log: Any

    def _set(self, st: dict[str, Any], result: str, reason: str = "") -> str:
        st["result"] = result
        if reason:
            st["reason"] = reason
        self.log.info("step finished", step=st.get("name"), kind=st.get("kind"), result=result, reason=reason or None)
        return result

    def _task(self, step: dict[str, Any], path: str, st: dict[str, Any], env: Env) -> Result:
        if "build" not in st:
            if env.cancelled:
                return self._set(st, ABORTED, "aborted before it started")
            try:
                started = self._start_task(step, path, st, env)
            except (StepError, resources.ResourceError) as e:
                return self._set(st, ERRORED, str(e))
            if started is not None:
                st["build"] = started
            return None
        b = self.s.get(BuildRow, st["build"])
        if b is None:
            return self._set(st, ERRORED, f"its build {st['build']} is gone")
        if env.cancelled and b.status not in TERMINAL_S and not st.get("abort_sent"):
            builds.abort(self.s, b, self.now)
            st["abort_sent"] = True
        if b.status not in TERMINAL_S:
            return None
        if b.status == BuildStatus.succeeded:
            mapping = step.get("output_mapping") or {}
            scope = self.artifacts.setdefault(env.scopes[0], {})
            for out in b.outputs:
                scope[mapping.get(out, out)] = [b.id, "outputs", out]
        reason = b.reason or (f"exit code {b.exit_code}" if b.status == BuildStatus.failed else "")
        return self._set(st, b.status, reason)

    def _lookup_artifact(self, name: str, env: Env) -> list[Any] | None:
        for scope in env.scopes:
            if name in self.artifacts.get(scope, {}):
                return self.artifacts[scope][name]
        return None

    def _lookup_var(self, ref: Reference, env: Env, extra: dict[str, Any] | None = None) -> tuple[bool, Any]:
        if not ref.source and extra is not None:
            found, value = lookup_in(extra, ref)
            if found:
                return found, value
        if ref.local or not ref.source:
            for scope in env.scopes:
                found, value = lookup_in(self.vars.get(scope, {}), ref)
                if found:
                    return found, value
        return False, None

    def _resolve(self, data: Any, env: Env, extra: dict[str, Any] | None = None) -> Any:
        try:
            return resolve(data, lambda ref: self._lookup_var(ref, env, extra))
        except UnresolvedVars as e:
            raise StepError(f"undefined vars {e}: not set when the pipeline was set (-v/-y/-l) nor by a "
                            "load_var or across step, and this web has no credential manager") from None
        except ValueError as e:
            raise StepError(str(e)) from None

    def _read(self, file: str, env: Env, what: str) -> tuple[str, bytes]:
        """A file `ARTIFACT/path` from an earlier step's artifact: (the path as written, its bytes)."""
        name, _, member = file.partition("/")
        ref = self._lookup_artifact(name, env)
        if ref is None or not member:
            raise StepError(f"{what} {file!r}: no earlier step produced an artifact named {name!r}"
                            if ref is None else f"{what} {file!r}: expected ARTIFACT/path")
        try:
            return file, self.web.artifacts.read_file((ref[0], ref[1], ref[2]), member)
        except (OSError, ValueError) as e:
            raise StepError(f"{what} {file!r}: {e}") from None

    def _task_config(self, step: dict[str, Any], env: Env) -> TaskConfig:
        step_vars = self._resolve(step.get("vars") or {}, env)
        if step.get("file"):
            filename, raw = self._read(self._resolve(step["file"], env), env, "file")
            text = raw.decode("utf-8", "replace")
            try:
                if "((" not in text:
                    return load_task_config(text, filename)
                data = yaml.safe_load(text)
            except TaskConfigError as e:
                raise StepError(str(e)) from None
            except yaml.YAMLError as e:
                raise StepError(f"{filename}: {e}") from None
            if not isinstance(data, dict):
                raise StepError(f"{filename}: a task config is a mapping")
            config, filename = self._resolve(data, env, step_vars), filename
        else:
            config, filename = self._resolve(step.get("config") or {}, env, step_vars), f"task {step['task']}"
        try:
            return parse_task_config(config, filename)
        except TaskConfigError as e:
            raise StepError(str(e)) from None

    def _start_task(self, step: dict[str, Any], path: str, st: dict[str, Any], env: Env) -> int | None:
        """Starts the task's build (None: first its image_resource of a non-registry type is being fetched)."""
        image = None
        if step.get("image"):
            image = self._lookup_artifact(str(step["image"]), env)
            if image is None:
                raise StepError(f"image: {step['image']!r}: no earlier step produced an artifact of that name "
                                "(a get of a registry-image resource, say)")
        cfg = self._task_config(step, env)
        overrides: dict[str, Any] = {}
        if step.get("params"):
            overrides["params"] = {**cfg.params, **self._resolve(step["params"], env)}
        if step.get("container_limits"):
            overrides["container_limits"] = self._resolve(step["container_limits"], env)
        if overrides:
            try:
                cfg = parse_task_config({**cfg.model_dump(mode="json", exclude_none=True), **overrides},
                                        f"task {step['task']}")
            except TaskConfigError as e:
                raise StepError(str(e)) from None
        ir = cfg.image_resource
        if image is None and ir is not None and ir.type not in ("registry-image", "docker-image"):
            image = self._image_via_resource(ir.type, ir.source, ir.version, ir.params, step, path, st)
            if image is None:
                return None
        mapping = step.get("input_mapping") or {}
        inputs, missing = {}, []
        for i in cfg.inputs:
            art = mapping.get(i.name, i.name)
            ref = self._lookup_artifact(art, env)
            if ref is not None:
                inputs[i.name] = ref
            elif not i.optional:
                missing.append(art if art == i.name else f"{art} (as {i.name})")
        if missing:
            raise StepError(f"missing inputs: {', '.join(missing)} (no earlier step produced them)")
        tags = list(self._resolve(step.get("tags") or [], env))
        config = cfg.model_dump(mode="json")
        try:
            req = BuildCreate(config=yaml.safe_dump(config, sort_keys=False),
                              config_filename=f"{self.job.name}/{step['task']}"[:512], inputs=list(inputs), tags=tags,
                              team=self.p.team, privileged=bool(step.get("privileged")),
                              cache_key=re.sub(r"[^A-Za-z0-9._:-]", "_", f"job-{self.job.id}-{step['task']}")[:128])
        except ValidationError as e:
            raise StepError("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())) from None
        settings = self.web.settings
        b = builds.create(self.s, req, config, self.now, settings.requeue_budget, settings.runtime,
                          settings.kubernetes_tag)
        b.job_build_id, b.step_path, b.step_name = self.jb.id, path, str(step["task"])
        for name, ref in inputs.items():
            try:
                self.web.artifacts.link((ref[0], ref[1], ref[2]), b.id, "inputs", name)
            except OSError as e:
                raise StepError(f"input {name!r}: {e}") from None
        if image is not None:
            try:
                self.web.artifacts.link((image[0], image[1], image[2]), b.id, "inputs", IMAGE_INPUT)
            except OSError as e:
                raise StepError(f"image {step['image']!r}: {e}") from None
            b.image_input = IMAGE_INPUT
        b.inputs = list(inputs)
        b.input_sources = {name: self._source(ref) for name, ref in inputs.items() if ref[1] == "outputs"}
        builds.start(self.s, b, self.now)
        self.log.info("task step started", step=step["task"], path=path, build_id=b.id)
        return b.id

    def _source(self, ref: list[Any]) -> dict[str, Any]:
        """Where an input comes from: the build that produced it, its attempt that succeeded, the output's name."""
        src = self.s.get(BuildRow, ref[0])
        return {"build": ref[0], "attempt": src.attempt if src is not None else 0, "output": ref[2]}

    def _image_via_resource(self, type_name: str, source: dict[str, Any], version: dict[str, str] | None,
                            params: dict[str, Any] | None, step: StepData, path: str,
                            st: dict[str, Any]) -> list[Any] | None:
        """A task's image_resource of any other type, as Concourse fetches it: a check (unless it names a
        version), then a get of the newest version; its artifact is the image. None while that runs."""
        worker_type, image = resources.image_of(self.p.config, type_name)
        ist = st.setdefault("image_resource", {})
        what = f"image_resource of type {type_name!r}"

        def script(kind: str, request: dict[str, Any]) -> int:
            config = resources.script_config(kind, image, self._metadata_env(), output="image" if kind == "in" else None)
            b = resources.start_script(self.s, self.web, self.now, team=self.p.team, script=kind,
                                       worker_type=worker_type, config=config, request=request, name=f"{type_name}")
            b.job_build_id, b.step_path, b.step_name = self.jb.id, f"{path}/image", f"{step['task']} image"
            builds.start(self.s, b, self.now)
            return b.id

        def ended(key: str) -> BuildRow | None:
            b = self.s.get(BuildRow, ist[key])
            if b is None:
                raise StepError(f"{what}: its {key} build is gone")
            return b if b.status in TERMINAL_S else None

        if "get" in ist:
            b = ended("get")
            if b is None:
                return None
            resources.response(self.s, b, "in")
            return [b.id, "outputs", "image"]
        if version is None and "check" not in ist:
            ist["check"] = script("check", {"source": source, "version": None})
            return None
        if version is None:
            b = ended("check")
            if b is None:
                return None
            found = resources.check_response(self.s, b)
            if not found:
                raise StepError(f"{what}: its check found no version")
            version = found[-1]
        ist["get"] = script("in", {"source": source, "version": version, "params": params or {}})
        return None

    # get, put ---------------------------------------------------------------------------------------------
    def _resource_step(self, kind: str, step: StepData, path: str, st: dict[str, Any], env: Env) -> Result:
        try:
            return self._get(step, st, env, path) if kind == "get" else self._put(step, path, st, env)
        except (resources.ResourceError, StepError, NotFound) as e:
            return self._set(st, ERRORED, str(e))

    def _metadata_env(self) -> dict[str, str]:
        return {"BUILD_ID": str(self.jb.id), "BUILD_NAME": self.jb.name, "BUILD_JOB_NAME": self.job.name,
                "BUILD_PIPELINE_NAME": self.p.name, "BUILD_TEAM_NAME": self.p.team,
                "ATC_EXTERNAL_URL": self.web.settings.web_url}

    def _script(self, script: str, r: ResourceRow, request: dict[str, Any], path: str, name: str,
                inputs: dict[str, list[Any]] | None = None) -> BuildRow:
        worker_type, image = resources.image_of(self.p.config, r.config["type"])
        config = resources.script_config(script, image, self._metadata_env(), inputs=list(inputs or {}),
                                         output=name if script == "in" else None)
        b = resources.start_script(self.s, self.web, self.now, team=self.p.team, script=script,
                                   worker_type=worker_type, config=config, request=request,
                                   tags=self._resolve(r.config.get("tags") or [], Env()), name=f"{r.name}")
        b.job_build_id, b.step_path, b.step_name = self.jb.id, path, name
        for art, ref in (inputs or {}).items():
            try:
                self.web.artifacts.link((ref[0], ref[1], ref[2]), b.id, "inputs", art)
            except OSError as e:
                raise StepError(f"input {art!r}: {e}") from None
        b.inputs = list(inputs or {})
        builds.start(self.s, b, self.now)
        return b

    def _ended(self, st: dict[str, Any], env: Env) -> BuildRow | Result:
        """A resource step's build once it ended well enough to read its answer; else the step's result so far
        (None while it runs, errored when it is gone, aborted), aborting it when the step is being cancelled."""
        b = self.s.get(BuildRow, st["build"])
        if b is None:
            return self._set(st, ERRORED, f"its build {st['build']} is gone")
        if env.cancelled and b.status not in TERMINAL_S and not st.get("abort_sent"):
            builds.abort(self.s, b, self.now)
            st["abort_sent"] = True
        if b.status not in TERMINAL_S:
            return None
        if b.status == BuildStatus.aborted:
            return self._set(st, ABORTED, b.reason)
        return b

    def _get(self, step: StepData, st: dict[str, Any], env: Env, path: str | None = None) -> Result:
        name = str(step["get"])
        r = resources.get_resource(self.s, self.p, step.get("resource") or name)
        if "build" not in st:
            if env.cancelled:
                return self._set(st, ABORTED, "aborted before it started")
            # `every`: each triggered build fetches the version that triggered it (two builds in flight must not
            # both take the oldest unfetched one); otherwise, as Concourse, the newest acceptable one when it runs
            v = ((resources.triggered_version(self.s, self.jb, name) if step.get("version") == "every" else None)
                 or resources.choose(self.s, self.p, self.job, step, r))
            if v is None:
                st["waiting"] = f"no version of {r.name} yet" + (f" that passed {', '.join(step['passed'])}"
                                                                 if step.get("passed") else "")
                return None
            cfg = self.s.get(ResourceConfigRow, r.config_id)
            assert cfg is not None
            request = {"source": self._resolve(cfg.source, env), "version": v.version,
                       "params": self._resolve(step.get("params") or {}, env)}
            started = self._script("in", r, request, path or "", name)
            st.pop("waiting", None)
            st["build"], st["version_id"] = started.id, v.id
            return None
        b = self._ended(st, env)
        if not isinstance(b, BuildRow):
            return b
        answer = resources.response(self.s, b, "in")
        v = self.s.get(ResourceVersionRow, st["version_id"])
        assert v is not None
        if answer.get("metadata"):
            v.meta = answer["metadata"]
        resources.record(self.s, self.jb, r, v, name, "get")
        self.artifacts.setdefault(env.scopes[0], {})[name] = [b.id, "outputs", name]
        st["version"], st["metadata"] = v.version, answer.get("metadata") or []
        return self._set(st, SUCCEEDED)

    def _put(self, step: StepData, path: str, st: dict[str, Any], env: Env) -> Result:
        name = str(step["put"])
        r = resources.get_resource(self.s, self.p, step.get("resource") or name)
        if "version_id" in st:  # pushed: the implicit get of what it pushed (unless no_get)
            got = self.steps.setdefault(f"{path}/get", {"kind": "get", "name": name})
            if got.get("result"):
                return str(got["result"])
            v = self.s.get(ResourceVersionRow, st["version_id"])
            assert v is not None
            get = {"get": name, "resource": r.name, "version": v.version, "params": step.get("get_params") or {}}
            return self._get(get, got, env, path=f"{path}/get")
        if "build" not in st:
            if env.cancelled:
                return self._set(st, ABORTED, "aborted before it started")
            wanted = step.get("inputs")
            visible: dict[str, list[Any]] = {}
            for scope in reversed(env.scopes):
                visible.update(self.artifacts.get(scope, {}))
            if isinstance(wanted, list):
                missing = [n for n in wanted if n not in visible]
                if missing:
                    raise StepError(f"put {name}: missing inputs: {', '.join(missing)}")
                visible = {n: visible[n] for n in wanted}
            cfg = self.s.get(ResourceConfigRow, r.config_id) if r.config_id is not None else None
            if cfg is None:
                raise StepError(f"resource {r.name!r} cannot be used (see its check error)")
            request = {"source": self._resolve(cfg.source, env), "params": self._resolve(step.get("params") or {}, env)}
            st["build"] = self._script("out", r, request, path, name, inputs=visible).id
            return None
        b = self._ended(st, env)
        if not isinstance(b, BuildRow):
            return b
        answer = resources.response(self.s, b, "out")
        cfg = self.s.get(ResourceConfigRow, r.config_id)
        assert cfg is not None
        v = resources.save_version(self.s, cfg, answer["version"], answer.get("metadata") or [], self.now)
        resources.record(self.s, self.jb, r, v, name, "put")
        st["version"], st["version_id"] = v.version, v.id
        if step.get("no_get"):
            return self._set(st, SUCCEEDED)
        return self._put(step, path, st, env)

    # load_var, set_pipeline ------------------------------------------------------------------------------
    def _load_var(self, step: dict[str, Any], st: dict[str, Any], env: Env) -> str:
        file = self._resolve(step["file"], env)
        _, raw = self._read(file, env, "load_var file")
        fmt = step.get("format") or ("json" if file.endswith(".json") else
                                     "yaml" if file.endswith((".yml", ".yaml")) else "trim")
        text = raw.decode("utf-8", "replace")
        try:
            value: Any = (json.loads(text) if fmt == "json" else yaml.safe_load(text) if fmt in ("yaml", "yml")
                          else text.strip() if fmt == "trim" else text)
        except (ValueError, yaml.YAMLError) as e:
            raise StepError(f"load_var {step['load_var']}: {file} is not {fmt}: {e}") from None
        self.vars.setdefault(env.scopes[0], {})[step["load_var"]] = value
        return self._set(st, SUCCEEDED)

    def _set_pipeline(self, step: dict[str, Any], st: dict[str, Any], env: Env) -> str:
        from airside.pipeline import StaticVars, VarFlagError, load_pipeline_config

        name = self._resolve(step["set_pipeline"], env)
        name = self.p.name if name == "self" else name
        team = step.get("team")
        if team and team != self.p.team:
            raise StepError(f"set_pipeline: setting team {team!r}'s pipelines from team {self.p.team!r} is not supported")
        if step.get("instance_vars"):
            raise StepError("set_pipeline: instance_vars (instanced pipelines) are not supported")
        filename, raw = self._read(self._resolve(step["file"], env), env, "set_pipeline file")
        files = [(f, self._read(f, env, "var_files")[1].decode()) for f in self._resolve(step.get("var_files") or [], env)]
        try:
            static = StaticVars.from_flags(load_vars_from=files)
        except (VarFlagError, TaskConfigError) as e:
            raise StepError(f"set_pipeline {name}: {e}") from None
        static.flags = self._resolve(step.get("vars") or {}, env)
        text = raw.decode("utf-8", "replace")
        try:
            loaded = load_pipeline_config(text, filename, static, known_types=resources.worker_types(self.s))
        except PipelineConfigError as e:
            raise StepError(f"set_pipeline {name}: " + "; ".join(str(p) for p in e.problems)) from None
        row, created, changed = pipelines.set_config(self.s, self.p.team, name, loaded.data, text, self.now)
        if created:
            row.paused = False  # as Concourse: a pipeline set by a build runs at once
        st["reason"] = f"{'created' if created else 'updated' if changed else 'unchanged'} {name} v{row.version}"
        return self._set(st, SUCCEEDED)
