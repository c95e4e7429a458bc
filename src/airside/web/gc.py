"""Worker-side garbage collection, decided by web from the database.

Each worker's reaper reports everything it holds (containers and volumes, with the properties the
worker gave them) and web answers which to destroy; the worker destroys those and the next report,
without them, clears them from the database. Web never calls into workers, and its load is one
request per worker per reaper interval, not one per object.

Decisions:
- a container or a build-scoped volume (role input / output / rootfs) lives while its build attempt is
  active on this worker; once the build ended, was requeued elsewhere or is unknown, it goes;
- a cache or image volume lives until it has been unused (`last_used`) for `cache_ttl`;
- anything else (no role) is an orphan and goes.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from airside.core.schemas import ACTIVE, ReaperReport, ReportedObject
from airside.web.db import BuildRow, WorkerObjectRow
from airside.web.errors import Conflict
from airside.web.registry import get as get_worker

BUILD_SCOPED = {"container", "input", "output", "rootfs"}
KEPT_BY_USE = {"cache", "image"}


def _keep(obj: ReportedObject, worker: str, live: dict[int, BuildRow], now: float, cache_ttl: float) -> bool:
    props = obj.properties
    role = props.get("role", "container" if obj.kind == "container" else "")
    if role in BUILD_SCOPED:
        try:
            b = live.get(int(props.get("build", "")))
            attempt = int(props.get("attempt", ""))
        except ValueError:
            return False
        return b is not None and b.worker_name == worker and b.attempt == attempt
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
        if not _keep(obj, worker, live, now, cache_ttl):
            o.destroying = True
            destroy.append(obj)
    gone = [k for k in known if k not in reported]
    for kind, handle in gone:  # destroyed since the last report
        s.execute(delete(WorkerObjectRow).where(WorkerObjectRow.worker_name == worker, WorkerObjectRow.kind == kind,
                                                WorkerObjectRow.handle == handle))
    return destroy
