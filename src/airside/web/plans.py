"""Running job builds: starting pending ones within their limits, and walking each started build's plan.

`tick(s, now, web)` is one scheduling round (web's scheduler loop calls it before placing builds):
  1. pending job builds start, oldest first, while their pipeline and job are unpaused and `serial`,
     `max_in_flight` and `serial_groups` allow (a serial job is max_in_flight 1; jobs sharing a serial
     group share one limit: the group's jobs' max_in_flight, else 1);
  2. every started build's plan is walked once (`Walk`) from its stored state; the walk is idempotent:
     it starts what may start now, notices what ended, and records every result in the build's state, so a
     restarted web resumes the plan where it was (finished steps are never rerun).

A `task` step runs as an ordinary build row (`airside.web.builds`) with `job_build_id` and `step_path`
set: the same placement, requeue-on-lost-worker, logs, abort and outcome rules as a one-off build, on a
worker or as a Kubernetes Job. Its inputs are the artifacts earlier steps produced, linked into the step
build's inputs in web's artifact store, and the build records where each came from (`input_sources`: the
producing build, attempt and output), so placement prefers the worker that ran them and that worker mounts
its own output volume instead of downloading (`airside.web.builds`); its outputs, once it succeeded, are
registered under their names (after `output_mapping`) for the steps after it.

Modifiers nest as Concourse's step precedence says (outermost first): ensure, on_error, on_abort,
on_failure, on_success, across, attempts, timeout, then the step itself. Results: succeeded, failed
(a task's non-zero exit, a timeout), errored (the infrastructure or the config: a missing input, an
undefined var, a step kind this web does not run), aborted. `try` turns anything but aborted into
succeeded; `in_parallel` is errored if any child errored, else failed if any failed, else aborted if any
aborted; `do` stops at the first step that did not succeed. An abort (or a timeout, inside its step)
aborts what is running and starts nothing new, except the `ensure` and `on_abort` hooks, which still run.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified

from airside.core import log
from airside.core.schemas import JobBuildStatus
from airside.pipeline.values import parse_duration
from airside.web import builds, pipelines, resources
from airside.web.db import (
    JobBuildRow,
    JobRow,
    PipelineRow,
)
from airside.web.errors import NotFound
from airside.web.host import WebHost
from airside.web.plan_steps import (
    ABORTED,
    ERRORED,
    FAILED,
    SUCCEEDED,
    Env,
    Result,
    StepData,
    StepError,
    Steps,
)

LOG = log.get("airside.web.plans")
LAYERS = ("ensure", "on_error", "on_abort", "on_failure", "on_success", "across", "attempts", "timeout", "step")
HOOK_KEYS = ("ensure", "on_error", "on_abort", "on_failure", "on_success")


# --- starting job builds --------------------------------------------------------------------------------
def _limits(job: JobRow) -> int | None:
    n = job.config.get("max_in_flight")
    if job.config.get("serial") or job.config.get("serial_groups"):
        return n or 1
    return n or None


def _start_pending(s: Session, now: float) -> list[JobBuildRow]:
    rows = s.execute(select(JobBuildRow, JobRow, PipelineRow).join(JobRow, JobBuildRow.job_id == JobRow.id)
                     .join(PipelineRow, JobRow.pipeline_id == PipelineRow.id)
                     .where(JobBuildRow.status.in_([str(JobBuildStatus.pending), str(JobBuildStatus.started)]))
                     .order_by(JobBuildRow.id)).all()
    running_job: dict[int, int] = {}
    running_group: dict[tuple[int, str], int] = {}
    for jb, job, p in rows:
        if jb.status == JobBuildStatus.started:
            running_job[job.id] = running_job.get(job.id, 0) + 1
            for g in job.config.get("serial_groups") or []:
                running_group[(p.id, g)] = running_group.get((p.id, g), 0) + 1
    started = []
    blocked: set[tuple[int, str]] = set()  # a group whose oldest pending build waits: later ones wait too
    for jb, job, p in rows:
        if jb.status != JobBuildStatus.pending or p.paused or job.paused or p.archived:
            continue
        limit = _limits(job)
        if limit is not None and running_job.get(job.id, 0) >= limit:
            continue
        groups = [(p.id, g) for g in job.config.get("serial_groups") or []]
        if any(g in blocked or running_group.get(g, 0) >= (limit or 1) for g in groups):
            blocked.update(groups)
            continue
        jb.status, jb.started_at = str(JobBuildStatus.started), now
        running_job[job.id] = running_job.get(job.id, 0) + 1
        for g in groups:
            running_group[g] = running_group.get(g, 0) + 1
        LOG.info("job build started", pipeline=p.name, job=job.name, build=jb.name)
        started.append(jb)
    return started


def tick(s: Session, now: float, web: WebHost) -> int:
    """One round: resource checks and triggers (airside.web.resources), then starts what may start, walks every
    started build (and, when builds ended, starts and walks what they made room for). Returns how many builds
    were walked."""
    resources.tick_checks(s, web, now)
    tick_triggers(s, now)
    walked = 0
    for _ in range(2):
        _start_pending(s, now)
        n, ended = _walk_started(s, now, web)
        walked += n
        if not ended:
            break
    return walked


def _walk_started(s: Session, now: float, web: WebHost) -> tuple[int, int]:
    ended = 0
    active = s.execute(select(JobBuildRow, JobRow, PipelineRow).join(JobRow, JobBuildRow.job_id == JobRow.id)
                       .join(PipelineRow, JobRow.pipeline_id == PipelineRow.id)
                       .where(JobBuildRow.status == str(JobBuildStatus.started)).order_by(JobBuildRow.id)
                       .with_for_update(skip_locked=True, of=JobBuildRow)).all()
    for jb, job, p in active:
        try:
            with s.begin_nested():
                Walk(s, jb, job, p, now, web).run()
        except Exception as e:  # noqa: BLE001 - one build's bug must not stop every other build's plan
            LOG.exception("walking the plan failed", pipeline=p.name, job=job.name, build=jb.name)
            s.refresh(jb)
            pipelines.finish(jb, JobBuildStatus.errored, now, f"internal error walking the plan: {type(e).__name__}: {e}")
            for b in pipelines.step_builds(s, jb):
                builds.abort(s, b, now)
        ended += jb.status in pipelines.TERMINAL_S
    return len(active), ended


def tick_triggers(s: Session, now: float) -> list[JobBuildRow]:
    """New builds for jobs whose triggering gets have a version no build of the job fetched yet."""
    created = []
    rows = s.execute(select(JobRow, PipelineRow).join(PipelineRow, JobRow.pipeline_id == PipelineRow.id)
                     .where(JobRow.active.is_(True), JobRow.paused.is_(False), PipelineRow.paused.is_(False))
                     .with_for_update(skip_locked=True, of=JobRow)).all()  # web replicas: one triggers a job
    for job, p in rows:
        triggers = [g for g in resources.gets(list(job.config.get("plan") or [])) if g.get("trigger")]
        if not triggers:
            continue
        pending = s.scalar(select(func.count()).select_from(JobBuildRow).where(
            JobBuildRow.job_id == job.id, JobBuildRow.status == str(JobBuildStatus.pending))) or 0
        if pending:
            continue  # a pending build takes the newest versions when it starts
        for g in triggers:
            try:
                r = resources.get_resource(s, p, g.get("resource") or g["get"])
                v = resources.choose(s, p, job, g, r)
            except (NotFound, resources.ResourceError):
                continue
            if v is not None and v.id not in resources.fetched_by(s, job.id, r.id, g["get"], ("get", "trigger")):
                jb = pipelines.trigger(s, p, job, now, created_by=f"resource {r.name}", manual=False)
                resources.record(s, jb, r, v, g["get"], "trigger")
                LOG.info("job triggered", pipeline=p.name, job=job.name, build=jb.name, resource=r.name,
                         version=v.version)
                created.append(jb)
                break
    return created


# --- walking one build's plan ---------------------------------------------------------------------------
class Walk(Steps):
    """One pass over a started build's plan (state in `jb.state`: steps by path, artifacts and vars by scope)."""

    def __init__(self, s: Session, jb: JobBuildRow, job: JobRow, p: PipelineRow, now: float, web: WebHost) -> None:
        self.s, self.jb, self.job, self.p, self.now, self.web = s, jb, job, p, now, web
        state = json.loads(json.dumps(jb.state or {}))
        self.steps: dict[str, dict[str, Any]] = state.setdefault("steps", {})
        self.artifacts: dict[str, dict[str, list[Any]]] = state.setdefault("artifacts", {})
        self.vars: dict[str, dict[str, Any]] = state.setdefault("vars", {})
        self.state = state
        self.log = LOG.bind(pipeline=p.name, job=job.name, build=jb.name)

    def run(self) -> Result:
        r = self.step(self.jb.plan, "plan", Env(cancelled=self.jb.abort_requested))
        if self.state != self.jb.state:
            self.jb.state = self.state
            flag_modified(self.jb, "state")
        if r is not None:
            pipelines.finish(self.jb, JobBuildStatus(r), self.now, self._first_reason(r))
        return r

    def _first_reason(self, r: str) -> str:
        if r == SUCCEEDED:
            return ""
        for path, st in self.steps.items():
            if st.get("result") == r and st.get("reason"):
                return f"{st.get('name') or path.split('#')[0]}: {st['reason']}"
        return ""

    # modifiers -----------------------------------------------------------------------------------------
    def step(self, step: StepData, path: str, env: Env) -> Result:
        return self._layer(step, path, env, 0)

    def _layer(self, step: dict[str, Any], path: str, env: Env, i: int) -> Result:
        layer = LAYERS[i]
        if layer == "step":
            return self._core(step, path, env)
        if layer in HOOK_KEYS:
            hook = step.get(layer)
            if not hook:
                return self._layer(step, path, env, i + 1)
            r = self._layer(step, path, env, i + 1)
            if r is None:
                return None
            return self._hook(layer, hook, r, f"{path}/{layer}", env)
        if layer == "across":
            return self._across(step, path, env, i) if step.get("across") else self._layer(step, path, env, i + 1)
        if layer == "attempts":
            n = step.get("attempts") or 1
            return self._attempts(step, path, env, i, int(n)) if n != 1 else self._layer(step, path, env, i + 1)
        assert layer == "timeout"
        return self._timeout(step, path, env, i) if step.get("timeout") else self._layer(step, path, env, i + 1)

    def _hook(self, kind: str, hook: dict[str, Any], r: str, path: str, env: Env) -> Result:
        runs = {"on_success": r == SUCCEEDED, "on_failure": r == FAILED, "on_error": r == ERRORED,
                "on_abort": r == ABORTED, "ensure": True}[kind]
        if not runs:
            return r
        hook_env = replace(env, cancelled=False) if kind in ("ensure", "on_abort") else env
        hr = self.step(hook, path, hook_env)
        if hr is None:
            return None
        if kind == "on_success":
            return hr  # the hook's failure is the step's (and a failing on_success hook triggers on_failure)
        if kind == "ensure":
            return hr if r == SUCCEEDED and hr != SUCCEEDED else r
        return ERRORED if hr == ERRORED and r != ABORTED else r

    def _memo(self, key: str) -> dict[str, Any]:
        return self.steps.setdefault(key, {})

    def _attempts(self, step: dict[str, Any], path: str, env: Env, i: int, n: int) -> Result:
        st = self._memo(f"{path}#attempts")
        while True:
            k = st.setdefault("attempt", 1)
            r = self._layer(step, f"{path}/attempt/{k}", env, i + 1)
            if r in (FAILED, ERRORED) and k < n and not env.cancelled:
                st["attempt"] = k + 1
                self.log.info("retrying step", path=path, attempt=k + 1, of=n, previous=r)
                continue
            return r

    def _timeout(self, step: dict[str, Any], path: str, env: Env, i: int) -> Result:
        st = self._memo(f"{path}#timeout")
        since = st.setdefault("since", self.now)
        try:
            limit = parse_duration(str(step["timeout"]))
        except ValueError as e:
            return self._set(self._memo(path), ERRORED, f"timeout: {e}")
        if not st.get("timed_out") and self.now - since >= limit:
            st["timed_out"] = True
            self.log.info("step timed out", path=path, timeout=step["timeout"])
        r = self._layer(step, path, replace(env, cancelled=True) if st.get("timed_out") else env, i + 1)
        if r is not None and st.get("timed_out") and r != SUCCEEDED and not self.jb.abort_requested:
            st["reason"], st["result"] = f"timeout exceeded ({step['timeout']})", FAILED
            return FAILED
        return r

    def _across(self, step: dict[str, Any], path: str, env: Env, i: int) -> Result:
        st = self._memo(f"{path}#across")
        specs = step["across"]
        try:
            values = [self._resolve(v.get("values"), env) for v in specs]
        except StepError as e:
            return self._set(st, ERRORED, str(e))
        bad = [spec["var"] for spec, v in zip(specs, values, strict=True) if not isinstance(v, list)]
        if bad:
            return self._set(st, ERRORED, f"across: values of {', '.join(bad)} must be a list")
        combos = list(itertools.product(*values))
        limits = [spec.get("max_in_flight", 1) for spec in specs]
        limit = None if "all" in limits else max(int(x) for x in limits)
        fail_fast = bool(step.get("fail_fast"))
        results: list[Result] = []
        running = 0
        stop = env.cancelled
        for n, combo in enumerate(combos):
            child = f"{path}/across/{n}"
            started = child in st.setdefault("started", [])
            if not started:
                if stop or (limit is not None and running >= limit):
                    results.append("not-started")
                    continue
                st["started"].append(child)
                self.vars.setdefault(child, {}).update({spec["var"]: v for spec, v in zip(specs, combo, strict=True)})
            r = self._layer(step, child, env.child(child), i + 1)
            results.append(r)
            if r is None:
                running += 1
            elif r in (FAILED, ERRORED) and fail_fast:
                stop = True
                env = replace(env, cancelled=True)
        if any(r is None for r in results) or ("not-started" in results and not stop):
            return None
        return _aggregate([ABORTED if r == "not-started" and env.cancelled else r for r in results
                           if r != "not-started" or env.cancelled])

    # the steps themselves ------------------------------------------------------------------------------
    def _core(self, step: dict[str, Any], path: str, env: Env) -> Result:
        st = self.steps.get(path)
        if st is not None and st.get("result"):
            return str(st["result"])
        if "do" in step:
            return self._sequence(step["do"], path, env)
        if "in_parallel" in step:
            return self._parallel(step, path, env)
        if "try" in step:
            r = self.step(step["try"], f"{path}/try", env)
            return None if r is None else (ABORTED if r == ABORTED else SUCCEEDED)
        kind = next((k for k in ("task", "get", "put", "load_var", "set_pipeline") if k in step), "unknown")
        st = self.steps.setdefault(path, {"kind": kind, "name": str(step.get(kind, ""))})
        if kind == "task":
            return self._task(step, path, st, env)
        if kind in ("get", "put") and ("build" in st or st.get("waiting")):
            return self._resource_step(kind, step, path, st, env)
        if env.cancelled:
            return self._set(st, ABORTED, "aborted before it started")
        try:
            if kind == "load_var":
                return self._load_var(step, st, env)
            if kind == "set_pipeline":
                return self._set_pipeline(step, st, env)
        except StepError as e:
            return self._set(st, ERRORED, str(e))
        if kind in ("get", "put"):
            return self._resource_step(kind, step, path, st, env)
        return self._set(st, ERRORED, f"unknown step (keys: {', '.join(sorted(step))})")

    def _sequence(self, children: Sequence[dict[str, Any]], path: str, env: Env) -> Result:
        for n, child in enumerate(children):
            r = self.step(child, f"{path}/{n}", env)
            if r != SUCCEEDED:
                return r
        return SUCCEEDED

    def _parallel(self, step: dict[str, Any], path: str, env: Env) -> Result:
        spec = step["in_parallel"]
        children = spec if isinstance(spec, list) else list(spec.get("steps") or [])
        limit = None if isinstance(spec, list) else spec.get("limit")
        fail_fast = False if isinstance(spec, list) else bool(spec.get("fail_fast"))
        st = self._memo(f"{path}#in_parallel")
        started: list[int] = st.setdefault("started", [])
        results: list[Result] = []
        running, stop = 0, bool(st.get("stopped"))
        child_env = replace(env, cancelled=True) if stop else env
        for n, child in enumerate(children):
            if n not in started:
                if stop or env.cancelled or (limit and running >= limit):
                    results.append("not-started")
                    continue
                started.append(n)
            r = self.step(child, f"{path}/{n}", child_env)
            results.append(r)
            if r is None:
                running += 1
            elif r in (FAILED, ERRORED) and fail_fast and not stop:
                stop = st["stopped"] = True
                child_env = replace(env, cancelled=True)
        if any(r is None for r in results):
            return None
        if "not-started" in results and not (stop or env.cancelled):
            return None
        return _aggregate([ABORTED if r == "not-started" and env.cancelled else r for r in results
                           if r != "not-started" or env.cancelled])

    # task --------------------------------------------------------------------------------------------------
def _aggregate(results: Sequence[Result]) -> str:
    if ERRORED in results:
        return ERRORED
    if FAILED in results:
        return FAILED
    if ABORTED in results:
        return ABORTED
    return SUCCEEDED
