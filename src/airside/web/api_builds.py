"""The builds API: one-off builds (execute), their artifacts and logs, and the worker-side calls that
run them (long-poll for work, phases, logs, finish, reaper reports).

Clients' calls need the operator token. A worker may read a build, its inputs and upload its outputs only
while the build is placed on it (`_worker_may_touch`); its reports carry the attempt they are about, and
`builds` refuses (409) a report for an attempt that no longer runs there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from airside.core import routes
from airside.core.schemas import (
    TERMINAL,
    Assignment,
    Build,
    BuildCreate,
    FinishReport,
    LogAck,
    LogBatch,
    PhaseReport,
    ReaperAnswer,
    ReaperReport,
)
from airside.task import TaskConfigError, load_task_config
from airside.web import builds, gc, pipelines, registry
from airside.web.artifacts import ENCODINGS, TooLarge
from airside.web.auth import Principal, require_operator, require_self
from airside.web.db import BuildRow
from airside.web.deps import Caller, WebDep, endpoint
from airside.web.service import Web

NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")

router = APIRouter()


def _worker_may_touch(p: Principal, b: BuildRow) -> None:
    if p.kind != "operator" and p.worker not in (None, b.worker_name):
        raise HTTPException(403, f"build {b.id} does not run on worker {p.worker!r}")


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise HTTPException(422, f"invalid artifact name {name!r}")


# --- clients ----------------------------------------------------------------------------------------
@endpoint(router, routes.CREATE_BUILD, status_code=201)
def create_build(req: BuildCreate, p: Caller, web: WebDep) -> Build:
    require_operator(p)
    try:
        config = load_task_config(req.config, req.config_filename)
    except TaskConfigError as e:
        raise HTTPException(422, str(e)) from e
    if (web.settings.kubernetes_tag in req.tags or web.settings.runtime == "kubernetes") and web.kubernetes is None:
        raise HTTPException(422, "this web has no kubernetes runtime: set AIRSIDE_RUNTIME=kubernetes or "
                                 "AIRSIDE_KUBERNETES_ARTIFACT_URL (and the other kubernetes_* settings)")
    unknown = sorted(set(req.inputs) - {i.name for i in config.inputs})
    if unknown:
        raise HTTPException(422, f"{req.config_filename}: the task has no inputs named {', '.join(unknown)}")
    with web.tx() as s:
        b = builds.create(s, req, config.model_dump(mode="json"), web.clock(), web.settings.requeue_budget,
                          web.settings.runtime, web.settings.kubernetes_tag)
        if req.inputs_from:
            _inputs_from(s, web, b, req, [i.name for i in config.inputs])
        if not req.inputs and (not config.inputs or req.inputs_from or all(i.optional for i in config.inputs)):
            builds.start(s, b, web.clock())
            web.wake_scheduler()
        return builds.view(b)


def _inputs_from(s: Session, web: Web, b: BuildRow, req: BuildCreate, names: list[str]) -> None:
    """fly execute -j: the task inputs the client does not upload come from the job's latest succeeded build
    (linked in web's artifact store); 422 naming what that build did not make."""
    assert req.inputs_from is not None
    pipeline, job = req.inputs_from.split("/", 1)
    p = pipelines.get(s, req.team or "main", pipeline)
    jb, artifacts = pipelines.latest_artifacts(s, pipelines.get_job(s, p, job))
    if jb is None:
        raise HTTPException(422, f"-j {req.inputs_from}: the job has no succeeded build to take inputs from")
    wanted = [n for n in names if n not in req.inputs]
    missing = [n for n in wanted if n not in artifacts]
    if missing:
        raise HTTPException(422, f"-j {req.inputs_from}: build #{jb.name} made no artifact named {', '.join(missing)} "
                                 f"(it made: {', '.join(sorted(artifacts)) or 'none'}); upload them with -i")
    for name in wanted:
        try:
            web.artifacts.link(artifacts[name], b.id, "inputs", name)
        except OSError as e:
            raise HTTPException(422, f"-j {req.inputs_from}: input {name!r}: {e}") from e
        builds.input_uploaded(s, b, name)


@endpoint(router, routes.LIST_BUILDS)
def list_builds(p: Caller, web: WebDep, limit: int = Query(50, ge=1, le=1000)) -> list[Build]:
    require_operator(p)
    with web.sessions() as s:
        return [builds.view(b) for b in builds.recent(s, limit)]


@endpoint(router, routes.GET_BUILD)
def get_build(build_id: int, p: Caller, web: WebDep) -> Build:
    with web.sessions() as s:
        b = builds.get(s, build_id)
        _worker_may_touch(p, b)
        return builds.view(b)


def _operator_change(build_id: int, p: Principal, web: Web, change: Callable[[Session, BuildRow, float], None]) -> Build:
    """An operator's state change of one build, under its row lock; the build as it is afterwards."""
    require_operator(p)
    with web.tx() as s:
        b = builds.get(s, build_id, lock=True)
        change(s, b, web.clock())
        return builds.view(b)


@endpoint(router, routes.START_BUILD)
def start_build(build_id: int, p: Caller, web: WebDep) -> Build:
    view = _operator_change(build_id, p, web, builds.start)
    web.wake_scheduler()
    return view


@endpoint(router, routes.ABORT_BUILD)
def abort_build(build_id: int, p: Caller, web: WebDep) -> Build:
    view = _operator_change(build_id, p, web, builds.abort)
    web.assignments_changed()
    return view


@endpoint(router, routes.BUILD_EVENTS)
async def build_events(build_id: int, p: Caller, web: WebDep, after: int = Query(-1, ge=-1)) -> StreamingResponse:
    # server-sent events: the build's events after `after`, then (once it has ended) an `end` event
    # (no docstring: it would become the operation's description in /openapi.json)
    require_operator(p)
    await asyncio.to_thread(_exists, web, build_id)
    return StreamingResponse(_event_stream(web, build_id, after), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


async def _event_stream(web: Web, build_id: int, after: int) -> AsyncIterator[bytes]:
    last = after
    while True:
        rows, final = await asyncio.to_thread(_events_since, web, build_id, last)
        for e in rows:
            last = e["seq"]
            yield f"id: {e['seq']}\nevent: {e['kind']}\ndata: {json.dumps(e)}\n\n".encode()
        if not rows:
            if final is not None:  # the outcome rides on the end event: no extra request to learn it
                yield f"event: end\ndata: {json.dumps(final)}\n\n".encode()
                return
            yield b": keep-alive\n\n"
            await asyncio.sleep(0.05)


def _exists(web: Web, build_id: int) -> None:
    with web.sessions() as s:
        builds.get(s, build_id)


def _events_since(web: Web, build_id: int, after: int) -> tuple[list[dict], dict | None]:
    """New events, and the build's outcome once it has ended."""
    with web.sessions() as s:
        rows = builds.events(s, build_id, after)
        b = builds.get(s, build_id)
        final = ({"status": b.status, "exit_code": b.exit_code, "reason": b.reason}
                 if b.status in TERMINAL else None)
        return [{"seq": e.seq, "kind": e.kind, "stream": e.stream, "data": e.data, "at": e.at} for e in rows], final


# --- artifacts ----------------------------------------------------------------------------------------
async def _upload(web: Web, request: Request, build_id: int, kind: str, name: str) -> None:
    encoding = request.headers.get("content-encoding", "identity")
    if encoding not in ENCODINGS:
        raise HTTPException(415, f"unsupported Content-Encoding {encoding!r} (use zstd or none)")
    try:
        await web.artifacts.write(build_id, kind, name, encoding, request.stream(), web.settings.max_upload_bytes)
    except TooLarge as e:
        raise HTTPException(413, str(e)) from e


def _download(web: Web, build_id: int, kind: str, name: str) -> StreamingResponse:
    found = web.artifacts.find(build_id, kind, name)
    if found is None:
        raise HTTPException(404, f"build {build_id} has no {kind[:-1]} named {name!r}")
    path, encoding = found
    headers = {"Content-Encoding": encoding} if encoding != "identity" else {}
    return StreamingResponse(web.artifacts.read(path), media_type="application/x-tar", headers=headers)


@endpoint(router, routes.PUT_INPUT, status_code=204)
async def put_input(build_id: int, name: str, request: Request, p: Caller, web: WebDep) -> Response:
    require_operator(p)
    _check_name(name)
    await asyncio.to_thread(_input_allowed, web, build_id, name)
    await _upload(web, request, build_id, "inputs", name)
    await asyncio.to_thread(_input_done, web, build_id, name)
    return Response(status_code=204)


def _input_allowed(web: Web, build_id: int, name: str) -> None:
    with web.tx() as s:
        b = builds.get(s, build_id)
        builds.input_uploaded(s, b, name)  # validates; rolled back below if the upload fails
        s.rollback()


def _input_done(web: Web, build_id: int, name: str) -> None:
    with web.tx() as s:
        builds.input_uploaded(s, builds.get(s, build_id, lock=True), name)


@endpoint(router, routes.GET_INPUT)
def get_input(build_id: int, name: str, p: Caller, web: WebDep) -> StreamingResponse:
    with web.sessions() as s:
        _worker_may_touch(p, builds.get(s, build_id))
    return _download(web, build_id, "inputs", name)


@endpoint(router, routes.PUT_OUTPUT, status_code=204)
async def put_output(build_id: int, name: str, request: Request, p: Caller, web: WebDep,
                     attempt: int = Query(..., ge=1)) -> Response:
    _check_name(name)
    b = await asyncio.to_thread(_running_build, web, build_id, attempt)
    _worker_may_touch(p, b)
    await _upload(web, request, build_id, "outputs", name)
    return Response(status_code=204)


def _running_build(web: Web, build_id: int, attempt: int) -> BuildRow:
    with web.tx() as s:
        return builds._own(s, build_id, None, attempt)


@endpoint(router, routes.GET_OUTPUT)
def get_output(build_id: int, name: str, p: Caller, web: WebDep) -> StreamingResponse:
    require_operator(p)
    return _download(web, build_id, "outputs", name)


# --- workers running builds ----------------------------------------------------------------------------
@endpoint(router, routes.WORKER_WORK)
async def worker_work(name: str, p: Caller, web: WebDep, boot_epoch: str = Query(...),
                      wait: float = Query(0, ge=0, le=60), known: str = Query("")) -> list[Assignment]:
    """Long-poll: the builds placed on this worker (its boot epoch). Returns at once when the set differs
    from `known` (comma-separated "id.attempt" the worker already runs) or an abort is pending."""
    require_self(p, name)
    known_set = {k for k in known.split(",") if k}
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = await asyncio.to_thread(_assignments, web, name, boot_epoch)
        now_set = {f"{a.build_id}.{a.attempt}" for a in found}
        if now_set != known_set or any(a.abort for a in found) or asyncio.get_running_loop().time() >= deadline:
            return found
        await web.assignment_change(0.25)


def _assignments(web: Web, name: str, epoch: str) -> list[Assignment]:
    with web.sessions() as s:
        registry.get(s, name)
        return builds.assignments(s, name, epoch)


@endpoint(router, routes.BUILD_PHASE, status_code=204)
def build_phase(build_id: int, report: PhaseReport, p: Caller, web: WebDep) -> Response:
    with web.tx() as s:
        builds.phase(s, build_id, p.worker, report.attempt, report.phase, web.clock())
    return Response(status_code=204)


@endpoint(router, routes.BUILD_LOGS)
def build_logs(build_id: int, batch: LogBatch, p: Caller, web: WebDep) -> LogAck:
    try:
        for c in batch.chunks:
            base64.b64decode(c.data, validate=True)
    except ValueError as e:
        raise HTTPException(422, f"log chunk data is not base64: {e}") from e
    with web.tx() as s:
        return LogAck(abort=builds.append_logs(s, build_id, p.worker, batch, web.clock()))


@endpoint(router, routes.BUILD_FINISH)
def build_finish(build_id: int, report: FinishReport, p: Caller, web: WebDep) -> Build:
    with web.tx() as s:
        b = builds.finish(s, build_id, p.worker, report, web.clock())
        web.observe_finished(b)
        view = builds.view(b)
    web.wake_scheduler()
    return view


@endpoint(router, routes.WORKER_REPORT)
def worker_report(name: str, report: ReaperReport, p: Caller, web: WebDep) -> ReaperAnswer:
    require_self(p, name)
    with web.tx() as s:
        return ReaperAnswer(destroy=gc.decide(s, name, report, web.clock(), web.settings.cache_ttl))
