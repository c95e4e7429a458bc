"""Worker-side garbage collection, decided by web from the database.

Each worker's reaper reports everything it holds (containers and volumes, with the properties the
worker gave them) and web answers which to destroy; the worker destroys those and the next report,
without them, clears them from the database. Web never calls into workers, and its load is one
request per worker per reaper interval, not one per object.

Decisions:
- a container or a build-scoped volume (role input / output / rootfs) lives while its build attempt is
  active on this worker; once the build ended, was requeued elsewhere or is unknown, it goes — except
  that a pipeline step's output volumes (and the input volumes those outputs are copy-on-write children
  of) live on after the step succeeded, while its job build is still `started`: the next steps, placed
  on this worker by preference, mount them instead of downloading (`airside.web.builds`). They go on the
  first report after the job build ended. One-off builds' outputs are not kept;
- a cache or image volume lives until it has been unused (`last_used`) for `cache_ttl`;
- anything else (no role) is an orphan and goes.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from airside.core.schemas import ACTIVE, BuildStatus, JobBuildStatus, ReaperReport, ReportedObject
from airside.runtime.attempt import AttemptNames
from airside.task import TaskConfigError, parse_task_config
from airside.web.db import BuildRow, JobBuildRow, WorkerObjectRow
from airside.web.errors import Conflict
from airside.web.registry import get as get_worker

BUILD_SCOPED = {"container", "input", "output", "rootfs"}
KEPT_BY_USE = {"cache", "image"}


Held = dict[tuple[int, int], set[str]]
"""(build, attempt) of a succeeded pipeline step whose job build runs -> the handles of its volumes that stay."""


def _held_for_steps(s: Session, worker: str, epoch: str) -> Held:
    """The volumes of the succeeded pipeline steps on `worker` whose job build is still started: their output
    volumes and the input volumes an output is a copy-on-write child of (destroying those would take it too)."""
    rows = s.execute(select(BuildRow.id, BuildRow.attempt, BuildRow.config)
                     .join(JobBuildRow, BuildRow.job_build_id == JobBuildRow.id)
                     .where(BuildRow.worker_name == worker, BuildRow.worker_epoch == epoch,
                            BuildRow.status == str(BuildStatus.succeeded),
                            JobBuildRow.status == str(JobBuildStatus.started))).all()
    held: Held = {}
    for bid, attempt, config in rows:
        n = AttemptNames(bid, attempt)
        try:
            cfg = parse_task_config(config)
        except TaskConfigError:
            continue  # not a config a worker ran: nothing of it to keep
        shared = set(cfg.outputs_sharing_inputs().values())
        held[(bid, attempt)] = {n.output_volume(o.name) for o in cfg.outputs} | {n.input_volume(i) for i in shared}
    return held


def _keep(obj: ReportedObject, worker: str, live: dict[int, BuildRow], held: Held, now: float, cache_ttl: float
          ) -> bool:
    props = obj.properties
    role = props.get("role", "container" if obj.kind == "container" else "")
    if role in BUILD_SCOPED:
        try:
            bid, attempt = int(props.get("build", "")), int(props.get("attempt", ""))
        except ValueError:
            return False
        b = live.get(bid)
        if b is not None and b.worker_name == worker and b.attempt == attempt:
            return True
        return obj.kind == "volume" and obj.handle in held.get((bid, attempt), ())
    if role in KEPT_BY_USE:
        try:
            return now - float(props.get("last_used", "0")) < cache_ttl
        except ValueError:
            return False
    return False


def decide(s: Session, worker: str, report: ReaperReport, now: float, cache_ttl: float) -> list[ReportedObject]:
    row = get_worker(s, worker)
    if row.boot_epoch != report.boot_epoch:
        raise Conflict(f"worker {worker!r} is registered with boot epoch {row.boot_epoch}, the report carries "
                       f"{report.boot_epoch}")
    live = {b.id: b for b in s.scalars(select(BuildRow).where(BuildRow.status.in_([str(x) for x in ACTIVE]),
                                                               BuildRow.worker_name == worker)).all()}
    held = _held_for_steps(s, worker, report.boot_epoch)
    known = {(o.kind, o.handle): o for o in s.scalars(select(WorkerObjectRow)
                                                      .where(WorkerObjectRow.worker_name == worker)).all()}
    reported = set()
    destroy = []
    for obj in report.objects:
        key = (obj.kind, obj.handle)
        reported.add(key)
        o = known.get(key)
        if o is None:
            o = WorkerObjectRow(worker_name=worker, handle=obj.handle, kind=obj.kind, boot_epoch=report.boot_epoch,
                                created_at=now)
            s.add(o)
        o.properties, o.last_reported = dict(obj.properties), now
        if not _keep(obj, worker, live, held, now, cache_ttl):
            o.destroying = True
            destroy.append(obj)
    gone = [k for k in known if k not in reported]
    for kind, handle in gone:  # destroyed since the last report
        s.execute(delete(WorkerObjectRow).where(WorkerObjectRow.worker_name == worker, WorkerObjectRow.kind == kind,
                                                WorkerObjectRow.handle == handle))
    return destroy
