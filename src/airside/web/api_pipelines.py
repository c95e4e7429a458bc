"""The pipelines API (issue 17): a team's pipelines, their jobs and the jobs' builds, as Concourse's API names
them (`/api/v1/teams/{team}/pipelines/...`). The state changes are `airside.web.pipelines`; this module
checks the caller, the team and the names, validates a config the way `airside validate-pipeline` does, and
follows a job build's events.

Every call needs the operator token for now (teams and roles come with issue 20). A team exists when it is
`main` or a pipeline belongs to it; a path naming another team is a 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from airside.core import routes
from airside.core.schemas import (
    TERMINAL,
    Job,
    JobBuild,
    Pipeline,
    PipelineConfigView,
    PipelineSet,
    PipelineSetResult,
)
from airside.pipeline import PipelineConfigError, StaticVars, VarFlagError, load_pipeline_config
from airside.pipeline.values import identifier_warning
from airside.pipeline.vars import is_var
from airside.task import TaskConfigError
from airside.web import builds, pipelines, resources
from airside.web.auth import Principal, require_operator
from airside.web.db import JobBuildRow, JobRow, PipelineRow
from airside.web.deps import Caller, WebDep, endpoint
from airside.web.errors import NotFound
from airside.web.service import Web

router = APIRouter()
DEFAULT_TEAM = "main"
END_GRACE = 10.0  # seconds a finished job build's events wait for a step build that has not ended yet


# --- lookups ---------------------------------------------------------------------------------------------
def _team(s: Session, team: str) -> None:
    if team != DEFAULT_TEAM and s.scalar(select(PipelineRow.id).where(PipelineRow.team == team).limit(1)) is None:
        raise NotFound(f"unknown team {team!r}")


def _pipeline(s: Session, team: str, pipeline: str, lock: bool = False) -> PipelineRow:
    _team(s, team)
    return pipelines.get(s, team, pipeline, lock=lock)


def _job(s: Session, team: str, pipeline: str, job: str, lock: bool = False) -> tuple[PipelineRow, JobRow]:
    p = _pipeline(s, team, pipeline)
    return p, pipelines.get_job(s, p, job, lock=lock)


def _job_build(s: Session, team: str, pipeline: str, job: str, build: str,
               lock: bool = False) -> tuple[PipelineRow, JobRow, JobBuildRow]:
    p, j = _job(s, team, pipeline, job)
    return p, j, pipelines.get_build(s, j, build, lock=lock)


def _check_pipeline_name(name: str) -> None:
    why = "a var cannot name a pipeline" if is_var(name) else identifier_warning(name)
    if why is None and len(name) > 128:
        why = "at most 128 characters"
    if why is not None:
        raise HTTPException(422, f"pipeline name {name!r}: {why}")


# --- pipelines -------------------------------------------------------------------------------------------
@endpoint(router, routes.LIST_PIPELINES)
def list_pipelines(team: str, p: Caller, web: WebDep) -> list[Pipeline]:
    require_operator(p)
    with web.sessions() as s:
        _team(s, team)
        return [pipelines.view(s, row) for row in pipelines.listing(s, team)]


@endpoint(router, routes.GET_PIPELINE)
def get_pipeline(team: str, pipeline: str, p: Caller, web: WebDep) -> Pipeline:
    require_operator(p)
    with web.sessions() as s:
        return pipelines.view(s, _pipeline(s, team, pipeline))


@endpoint(router, routes.GET_PIPELINE_CONFIG)
def get_pipeline_config(team: str, pipeline: str, p: Caller, web: WebDep) -> PipelineConfigView:
    require_operator(p)
    with web.sessions() as s:
        row = _pipeline(s, team, pipeline)
        return PipelineConfigView(version=row.version, config=row.config, config_text=row.config_text)


def _static_vars(body: PipelineSet) -> StaticVars:
    try:
        files = StaticVars.from_flags((), (), body.var_files).files
    except VarFlagError as e:
        raise HTTPException(422, [str(e)]) from e
    except TaskConfigError as e:
        raise HTTPException(422, [str(x) for x in e.problems]) from e
    return StaticVars(flags=dict(body.vars), files=files)


@endpoint(router, routes.SET_PIPELINE)
def set_pipeline(team: str, pipeline: str, body: PipelineSet, p: Caller, web: WebDep) -> PipelineSetResult:
    # validates the config as `airside validate-pipeline` does; 422 lists every problem ("file:line: field:
    # message") and changes nothing; 409 when `version` is not the stored one
    require_operator(p)
    _check_pipeline_name(pipeline)
    with web.sessions() as s:
        _team(s, team)
        offered = resources.worker_types(s)
    try:
        loaded = load_pipeline_config(body.config, body.filename, _static_vars(body), known_types=offered)
    except PipelineConfigError as e:
        raise HTTPException(422, [str(x) for x in e.problems]) from e
    with web.tx() as s:
        row, created, changed = pipelines.set_config(s, team, pipeline, loaded.data, body.config, web.clock(),
                                                     expected_version=body.version)
        result = PipelineSetResult(pipeline=pipelines.view(s, row), created=created, changed=changed,
                                   warnings=[str(w) for w in loaded.warnings])
    web.wake_scheduler()
    return result


@endpoint(router, routes.DESTROY_PIPELINE, status_code=204)
def destroy_pipeline(team: str, pipeline: str, p: Caller, web: WebDep) -> Response:
    require_operator(p)
    with web.tx() as s:
        step_ids = pipelines.destroy(s, _pipeline(s, team, pipeline, lock=True), web.clock())
    for build_id in step_ids:
        web.artifacts.delete(build_id)
    web.assignments_changed()  # a worker running a step of it learns the build is gone
    web.wake_scheduler()
    return Response(status_code=204)


def _pause_pipeline(team: str, pipeline: str, p: Principal, web: Web, paused: bool) -> Pipeline:
    require_operator(p)
    with web.tx() as s:
        row = _pipeline(s, team, pipeline, lock=True)
        pipelines.set_paused(s, row, paused, web.clock())
        view = pipelines.view(s, row)
    web.wake_scheduler()
    return view


@endpoint(router, routes.PAUSE_PIPELINE)
def pause_pipeline(team: str, pipeline: str, p: Caller, web: WebDep) -> Pipeline:
    return _pause_pipeline(team, pipeline, p, web, True)


@endpoint(router, routes.UNPAUSE_PIPELINE)
def unpause_pipeline(team: str, pipeline: str, p: Caller, web: WebDep) -> Pipeline:
    return _pause_pipeline(team, pipeline, p, web, False)


# --- jobs --------------------------------------------------------------------------------------------------
@endpoint(router, routes.LIST_JOBS)
def list_jobs(team: str, pipeline: str, p: Caller, web: WebDep) -> list[Job]:
    require_operator(p)
    with web.sessions() as s:
        row = _pipeline(s, team, pipeline)
        return [pipelines.job_view(s, row, j) for j in pipelines.jobs(s, row)]


@endpoint(router, routes.GET_JOB)
def get_job(team: str, pipeline: str, job: str, p: Caller, web: WebDep) -> Job:
    require_operator(p)
    with web.sessions() as s:
        return pipelines.job_view(s, *_job(s, team, pipeline, job))


def _pause_job(team: str, pipeline: str, job: str, p: Principal, web: Web, paused: bool) -> Job:
    require_operator(p)
    with web.tx() as s:
        row, j = _job(s, team, pipeline, job, lock=True)
        pipelines.set_job_paused(s, j, paused)
        view = pipelines.job_view(s, row, j)
    web.wake_scheduler()
    return view


@endpoint(router, routes.PAUSE_JOB)
def pause_job(team: str, pipeline: str, job: str, p: Caller, web: WebDep) -> Job:
    return _pause_job(team, pipeline, job, p, web, True)


@endpoint(router, routes.UNPAUSE_JOB)
def unpause_job(team: str, pipeline: str, job: str, p: Caller, web: WebDep) -> Job:
    return _pause_job(team, pipeline, job, p, web, False)


# --- job builds ------------------------------------------------------------------------------------------
@endpoint(router, routes.LIST_JOB_BUILDS)
def list_job_builds(team: str, pipeline: str, job: str, p: Caller, web: WebDep,
                    limit: int = Query(50, ge=1, le=1000)) -> list[JobBuild]:
    require_operator(p)
    with web.sessions() as s:
        row, j = _job(s, team, pipeline, job)
        return [pipelines.build_view(s, row, j, b) for b in pipelines.job_builds(s, j, limit)]


@endpoint(router, routes.TRIGGER_JOB, status_code=201)
def trigger_job(team: str, pipeline: str, job: str, p: Caller, web: WebDep) -> JobBuild:
    require_operator(p)
    with web.tx() as s:
        row, j = _job(s, team, pipeline, job)
        view = pipelines.build_view(s, row, j, pipelines.trigger(s, row, j, web.clock()))
    web.wake_scheduler()
    return view


@endpoint(router, routes.GET_JOB_BUILD)
def get_job_build(team: str, pipeline: str, job: str, build: str, p: Caller, web: WebDep) -> JobBuild:
    require_operator(p)
    with web.sessions() as s:
        return pipelines.build_view(s, *_job_build(s, team, pipeline, job, build))


@endpoint(router, routes.RERUN_JOB_BUILD, status_code=201)
def rerun_job_build(team: str, pipeline: str, job: str, build: str, p: Caller, web: WebDep) -> JobBuild:
    require_operator(p)
    with web.tx() as s:
        row, j, b = _job_build(s, team, pipeline, job, build)
        view = pipelines.build_view(s, row, j, pipelines.rerun(s, row, j, b, web.clock()))
    web.wake_scheduler()
    return view


@endpoint(router, routes.ABORT_JOB_BUILD)
def abort_job_build(team: str, pipeline: str, job: str, build: str, p: Caller, web: WebDep) -> JobBuild:
    require_operator(p)
    with web.tx() as s:
        row, j, b = _job_build(s, team, pipeline, job, build, lock=True)
        pipelines.abort(s, b, web.clock())
        view = pipelines.build_view(s, row, j, b)
    web.wake_scheduler()
    return view


@endpoint(router, routes.JOB_BUILD_EVENTS)
async def job_build_events(team: str, pipeline: str, job: str, build: str, p: Caller, web: WebDep,
                           after: str = Query("", max_length=16384)) -> StreamingResponse:
    # server-sent events of every step build: `step` when one first appears, then its events (as a build's
    # events, with `step` and `build_id` added), and `end` with the job build's outcome once it has ended and
    # every step's events were sent. `after` ("build_id:seq,...", each event's `id`) resumes a stream.
    # (no docstring: it would become the operation's description in /openapi.json)
    require_operator(p)
    cursor = _parse_cursor(after)
    job_build_id = await asyncio.to_thread(_job_build_id, web, team, pipeline, job, build)
    return StreamingResponse(_job_event_stream(web, job_build_id, cursor), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _parse_cursor(after: str) -> dict[int, int]:
    cursor: dict[int, int] = {}
    for part in filter(None, after.split(",")):
        build_id, _, seq = part.partition(":")
        try:
            cursor[int(build_id)] = int(seq)
        except ValueError:
            raise HTTPException(422, f"after: expected build_id:seq,… (an event's id), got {part!r}") from None
    return cursor


def _job_build_id(web: Web, team: str, pipeline: str, job: str, build: str) -> int:
    with web.sessions() as s:
        return _job_build(s, team, pipeline, job, build)[2].id


def _sse(kind: str, data: dict, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


async def _job_event_stream(web: Web, job_build_id: int, cursor: dict[int, int]) -> AsyncIterator[bytes]:
    last = dict(cursor)  # step build id → the last event seq sent (-1: announced, nothing sent yet)
    while True:
        new_steps, rows, final = await asyncio.to_thread(_job_events_since, web, job_build_id, last)
        for step in new_steps:
            last[step["build_id"]] = -1
            yield _sse("step", step, _cursor_id(last))
        for e in rows:
            last[e["build_id"]] = max(last.get(e["build_id"], -1), e["seq"])
            yield _sse(e["kind"], e, _cursor_id(last))
        if not rows and not new_steps:
            if final is not None:
                yield _sse("end", final)
                return
            yield b": keep-alive\n\n"
            await asyncio.sleep(0.05)


def _cursor_id(last: dict[int, int]) -> str:
    return ",".join(f"{b}:{seq}" for b, seq in sorted(last.items()))


def _job_events_since(web: Web, job_build_id: int, last: dict[int, int]) -> tuple[list[dict], list[dict], dict | None]:
    """Step builds not announced yet, new events of every step build (merged by time), and the job build's
    outcome once it has ended and no step build can add events (all ended, or END_GRACE passed)."""
    with web.sessions() as s:
        jb = s.get(JobBuildRow, job_build_id)
        if jb is None:  # destroyed while followed
            return [], [], {"status": "errored", "reason": "the pipeline was destroyed"}
        # the statuses are read before the events: once they say "ended", no event can come after the read
        ended = jb.status in pipelines.TERMINAL_S
        steps = pipelines.step_builds(s, jb)
        new_steps = [{"build_id": b.id, "path": b.step_path, "step": b.step_name} for b in steps if b.id not in last]
        rows: list[dict] = []
        for b in steps:
            rows += [{"seq": e.seq, "kind": e.kind, "stream": e.stream, "data": e.data, "at": e.at, "build_id": b.id,
                      "step": b.step_name} for e in builds.events(s, b.id, last.get(b.id, -1))]
        rows.sort(key=lambda e: (e["at"], e["build_id"], e["seq"]))
        final = None
        settled = all(b.status in TERMINAL for b in steps) or (
            jb.finished_at is not None and web.clock() - jb.finished_at > END_GRACE)
        if ended and settled:
            final = {"status": jb.status, "reason": jb.reason, "name": jb.name,
                     "steps": [{"build_id": b.id, "step": b.step_name, "status": b.status} for b in steps]}
        return new_steps, rows, final
