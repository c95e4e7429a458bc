"""Pipelines, their jobs and the jobs' builds: what `set-pipeline`, `pause-job`, `trigger-job`, `rerun-build`
and `abort-build` change.

    set-pipeline ──► pipeline vN (jobs upserted by name; `old_name` renames keep history; a job the new
                     config drops stays, inactive, with its builds)
    trigger-job ──► job build #N  pending ──(plans.tick: job and pipeline unpaused, serial / serial_groups /
                     max_in_flight allow)──► started ──(its plan ends)──► succeeded | failed | errored | aborted
       │                                          └── abort: every running step aborted; hooks still run
       └────── abort while pending ──────────────────────────────────────────────────────────► aborted

A build keeps the plan it was created with (a later set-pipeline does not change a running build).
Walking the plan is `airside.web.plans`. Functions take an open Session inside a transaction and the
current time; they raise `NotFound` / `Conflict`, which the API maps to 404 / 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from airside.core import log
from airside.core.schemas import (
    JOB_BUILD_TERMINAL,
    Job,
    JobBuild,
    JobBuildStatus,
    Pipeline,
    StepView,
)
from airside.web.db import BuildRow, JobBuildRow, JobRow, PipelineRow
from airside.web.errors import Conflict, NotFound

LOG = log.get("airside.web.pipelines")
TERMINAL_S = {str(x) for x in JOB_BUILD_TERMINAL}
ConfigData = dict[str, Any]
"""A pipeline config as plain JSON data: `LoadedPipeline.data`, what `PipelineRow.config` stores."""


# --- pipelines ----------------------------------------------------------------------------------------
def get(s: Session, team: str, name: str, lock: bool = False) -> PipelineRow:
    q = select(PipelineRow).where(PipelineRow.team == team, PipelineRow.name == name)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None:
        raise NotFound(f"unknown pipeline {name!r} in team {team!r} (see `airside pipelines`)")
    return row


def listing(s: Session, team: str) -> Sequence[PipelineRow]:
    return s.scalars(select(PipelineRow).where(PipelineRow.team == team).order_by(PipelineRow.name)).all()


def _job_plan(job: dict[str, Any]) -> dict[str, Any]:
    """What a build of `job` runs: its plan and its job-level hooks (a `do` with the hooks as modifiers)."""
    return {"do": list(job.get("plan") or []),
            **{h: job[h] for h in ("on_success", "on_failure", "on_error", "on_abort", "ensure") if job.get(h)}}


def set_config(s: Session, team: str, name: str, data: ConfigData, text: str, now: float,
               expected_version: int | None = None) -> tuple[PipelineRow, bool, bool]:
    """Creates or updates a pipeline from a validated config (`data`, see LoadedPipeline.data).
    Returns (row, created, changed). `expected_version` guards against a concurrent set (409)."""
    row = s.scalar(select(PipelineRow).where(PipelineRow.team == team, PipelineRow.name == name)
                   .with_for_update())
    created = row is None
    if row is None:
        if expected_version not in (None, 0):
            raise Conflict(f"pipeline {name!r} no longer exists (it was at version {expected_version} when diffed)")
        row = PipelineRow(team=team, name=name, config=data, config_text=text, version=1, paused=True,
                          archived=False, created_at=now, updated_at=now)
        s.add(row)
        s.flush()
        changed = True
    else:
        if expected_version is not None and expected_version != row.version:
            raise Conflict(f"pipeline {name!r} was set again since you diffed it (version {expected_version} → "
                           f"{row.version}): run set-pipeline again to see the new diff")
        changed = row.config != data or row.archived
        if changed:
            row.config, row.config_text, row.version, row.updated_at = data, text, row.version + 1, now
            row.archived = False
    _upsert_jobs(s, row, list(data.get("jobs") or []))
    from airside.web import resources  # resources import this module for triggers

    resources.sync(s, row, now)
    LOG.info("pipeline set", team=team, pipeline=name, version=row.version, created=created, changed=changed)
    return row, created, changed


def _upsert_jobs(s: Session, p: PipelineRow, jobs: list[dict[str, Any]]) -> None:
    existing = {j.name: j for j in s.scalars(select(JobRow).where(JobRow.pipeline_id == p.id)).all()}
    keep = set()
    for job in jobs:
        name, old = job["name"], job.get("old_name")
        row = existing.get(name)
        if row is None and old and old in existing and old not in keep:
            row = existing.pop(old)  # a rename: the job keeps its builds and numbering
            LOG.info("job renamed", pipeline=p.name, old=old, new=name)
            row.name = name
            existing[name] = row
        if row is None:
            row = JobRow(pipeline_id=p.id, name=name, config=job, paused=False, active=True, next_build_number=1)
            s.add(row)
            existing[name] = row
        row.config, row.active = job, True
        keep.add(name)
    for name, row in existing.items():
        if name not in keep:
            row.active = False
    s.flush()


def set_paused(s: Session, p: PipelineRow, paused: bool, now: float) -> None:
    if p.paused != paused:
        p.paused, p.updated_at = paused, now
        LOG.info("pipeline paused" if paused else "pipeline unpaused", team=p.team, pipeline=p.name)


def destroy(s: Session, p: PipelineRow, now: float) -> list[int]:
    """Deletes the pipeline with its jobs and builds; aborts what was running first (the step builds' rows
    go with it, so a worker still running one is told to stop). Returns the step builds' ids (their
    artifacts are the caller's to delete)."""
    job_ids = [j.id for j in s.scalars(select(JobRow).where(JobRow.pipeline_id == p.id)).all()]
    step_ids = list(s.scalars(select(BuildRow.id).join(JobBuildRow, BuildRow.job_build_id == JobBuildRow.id)
                              .where(JobBuildRow.job_id.in_(job_ids))).all()) if job_ids else []
    s.delete(p)
    s.flush()
    LOG.info("pipeline destroyed", team=p.team, pipeline=p.name, builds=len(step_ids))
    return step_ids


def view(s: Session, p: PipelineRow) -> Pipeline:
    names = [j.name for j in jobs(s, p)]
    return Pipeline(id=p.id, team=p.team, name=p.name, version=p.version, paused=p.paused, archived=p.archived,
                    created_at=p.created_at, updated_at=p.updated_at, jobs=names)


# --- jobs -----------------------------------------------------------------------------------------------
def jobs(s: Session, p: PipelineRow, include_inactive: bool = False) -> list[JobRow]:
    """The pipeline's jobs in config order (inactive ones, dropped by a later config, last)."""
    rows = s.scalars(select(JobRow).where(JobRow.pipeline_id == p.id)).all()
    order = {j["name"]: i for i, j in enumerate(p.config.get("jobs") or [])}
    return sorted((j for j in rows if j.active or include_inactive), key=lambda j: (order.get(j.name, 1 << 30), j.id))


def get_job(s: Session, p: PipelineRow, name: str, lock: bool = False) -> JobRow:
    q = select(JobRow).where(JobRow.pipeline_id == p.id, JobRow.name == name)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None or not row.active:
        raise NotFound(f"pipeline {p.name!r} has no job {name!r} (see `airside jobs -p {p.name}`)")
    return row


def set_job_paused(s: Session, j: JobRow, paused: bool) -> None:
    if j.paused != paused:
        j.paused = paused
        LOG.info("job paused" if paused else "job unpaused", job=j.name)


def job_view(s: Session, p: PipelineRow, j: JobRow) -> Job:
    latest = s.scalar(select(JobBuildRow).where(JobBuildRow.job_id == j.id).order_by(JobBuildRow.id.desc()).limit(1))
    return Job(id=j.id, pipeline=p.name, name=j.name, paused=j.paused, active=j.active,
               disable_manual_trigger=bool(j.config.get("disable_manual_trigger")),
               serial=bool(j.config.get("serial")), next_build=j.next_build_number,
               latest=build_view(s, p, j, latest) if latest is not None else None)


# --- job builds -------------------------------------------------------------------------------------------
def _new_build(s: Session, p: PipelineRow, j: JobRow, now: float, created_by: str, plan: dict[str, Any],
               name: str, number: int, rerun_of: int | None = None) -> JobBuildRow:
    b = JobBuildRow(job_id=j.id, name=name, number=number, rerun_of=rerun_of, status=str(JobBuildStatus.pending),
                    plan=plan, state={}, pipeline_version=p.version, created_by=created_by, abort_requested=False,
                    reason="", created_at=now)
    s.add(b)
    s.flush()
    LOG.info("job build created", pipeline=p.name, job=j.name, build=name, by=created_by)
    return b


def trigger(s: Session, p: PipelineRow, j: JobRow, now: float, created_by: str = "manual",
            manual: bool = True) -> JobBuildRow:
    """A new build of `j` (`pipeline/job #N`), pending until the scheduler starts it."""
    if manual and j.config.get("disable_manual_trigger"):
        raise Conflict(f"job {p.name}/{j.name} has disable_manual_trigger set: it runs only when its resources trigger it")
    j = s.get(JobRow, j.id, with_for_update=True) or j
    number = j.next_build_number
    j.next_build_number = number + 1
    return _new_build(s, p, j, now, created_by, _job_plan(j.config), str(number), number)


def rerun(s: Session, p: PipelineRow, j: JobRow, of: JobBuildRow, now: float, created_by: str = "manual") -> JobBuildRow:
    """A new build running the same plan as `of`, named `<N>.<k>` (as Concourse names reruns)."""
    if j.config.get("disable_reruns"):
        raise Conflict(f"job {p.name}/{j.name} has disable_reruns set")
    original = of if of.rerun_of is None else s.get(JobBuildRow, of.rerun_of) or of
    reruns = s.scalars(select(JobBuildRow.name).where(JobBuildRow.job_id == j.id,
                                                      JobBuildRow.rerun_of == original.id)).all()
    k = 1 + max((int(n.rsplit(".", 1)[1]) for n in reruns), default=0)
    return _new_build(s, p, j, now, created_by, dict(original.plan), f"{original.number}.{k}", original.number,
                      rerun_of=original.id)


def get_build(s: Session, j: JobRow, name: str, lock: bool = False) -> JobBuildRow:
    q = select(JobBuildRow).where(JobBuildRow.job_id == j.id, JobBuildRow.name == name)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None:
        raise NotFound(f"job {j.name!r} has no build {name!r} (see `airside builds -j PIPELINE/{j.name}`)")
    return row


def job_builds(s: Session, j: JobRow, limit: int = 50) -> Sequence[JobBuildRow]:
    return s.scalars(select(JobBuildRow).where(JobBuildRow.job_id == j.id).order_by(JobBuildRow.id.desc())
                     .limit(limit)).all()


def abort(s: Session, b: JobBuildRow, now: float) -> None:
    """A pending build ends aborted at once; a started one is marked, and the next tick aborts its steps."""
    if b.status in TERMINAL_S:
        return
    if b.status == JobBuildStatus.pending:
        finish(b, JobBuildStatus.aborted, now, "aborted before it started")
    else:
        b.abort_requested = True


def finish(b: JobBuildRow, status: JobBuildStatus, now: float, reason: str = "") -> None:
    b.status, b.finished_at, b.reason = str(status), now, reason
    LOG.info("job build finished", build=b.id, name=b.name, status=str(status), reason=reason or None)


def step_builds(s: Session, b: JobBuildRow) -> Sequence[BuildRow]:
    return s.scalars(select(BuildRow).where(BuildRow.job_build_id == b.id).order_by(BuildRow.id)).all()


SCRIPT_KINDS = {"/opt/resource/in": "get", "/opt/resource/out": "put", "/opt/resource/check": "check"}


def _kind(r: BuildRow) -> str:
    """What a step build runs: a task, or a resource script (get, put, or the check of a task's image)."""
    if r.stdin is None:
        return "task"
    return SCRIPT_KINDS.get(((r.config or {}).get("run") or {}).get("path", ""), "task")


def build_view(s: Session, p: PipelineRow, j: JobRow, b: JobBuildRow) -> JobBuild:
    steps = [StepView(path=r.step_path, name=r.step_name, kind=_kind(r), status=r.status, build_id=r.id,
                      reason=r.reason) for r in step_builds(s, b)]
    for path, st in sorted((b.state or {}).get("steps", {}).items()):
        if st.get("kind") not in (None, "task") and st.get("result") and "build" not in st:  # load_var, …
            steps.append(StepView(path=path, name=st.get("name", ""), kind=st["kind"], status=st["result"],
                                  reason=st.get("reason", "")))
    return JobBuild(id=b.id, team=p.team, pipeline=p.name, job=j.name, name=b.name, number=b.number,
                    rerun_of=b.rerun_of, status=JobBuildStatus(b.status), reason=b.reason, created_by=b.created_by,
                    created_at=b.created_at, started_at=b.started_at, finished_at=b.finished_at, steps=steps)


def latest_artifacts(s: Session, j: JobRow) -> tuple[JobBuildRow | None, dict[str, tuple[int, str, str]]]:
    """The job's latest succeeded build and the artifacts its plan registered at the top level (name →
    (build id, kind, name) in web's artifact store): what `airside execute -j PIPELINE/JOB` takes inputs from."""
    b = s.scalar(select(JobBuildRow).where(JobBuildRow.job_id == j.id, JobBuildRow.status == str(JobBuildStatus.succeeded))
                 .order_by(JobBuildRow.id.desc()).limit(1))
    if b is None:
        return None, {}
    found = (b.state or {}).get("artifacts", {}).get("", {})
    return b, {name: (int(ref[0]), str(ref[1]), str(ref[2])) for name, ref in found.items()}
