"""Builds: one-off task runs, their placement on workers, phases, logs and outcomes.

    created ──(inputs uploaded, start)──► pending ──(scheduler)──► placed ──(container started)──► running
       │                                    ▲                        │                              │
       │                                    └── requeue (worker lost, budget left) ◄────────────────┤
       └──────────────── abort ──────────────────────────────────────────────────────► aborted     │
                                                     succeeded | failed (exit ≠ 0) | errored ◄──────┘

Outcomes keep the user's failures apart from the infrastructure's: `failed` is only ever the task's
own non-zero exit; a lost worker, a drain timeout or an unavailable image is `errored` with the reason.
Infrastructure interruptions are requeued up to the build's budget and do not count as failures.

Placement (`schedule`) keeps to the platform, tags, team and each worker's capacity; among the workers
left, a pipeline step's build goes first to the one that ran the most of its inputs' source steps (their
final attempt, in the worker's current boot epoch: `BuildRow.input_sources`), as Concourse prefers the
worker holding a step's inputs; the strategy (fewest build containers, volume locality of caches, random)
orders the rest and breaks ties. That worker is told, per input, the output volume it still holds
(`Assignment.local_inputs`) and mounts a copy-on-write child of it instead of downloading the artifact
from web; a step's succeeded output volumes stay on its worker while its job build is started
(`Assignment.keep_outputs`, `airside.web.gc`).

Functions take an open Session inside a transaction and the current time.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from airside.core import log
from airside.core.schemas import (
    ACTIVE,
    TERMINAL,
    Assignment,
    Build,
    BuildCreate,
    BuildStatus,
    FinishReport,
    LogBatch,
    Phase,
    WorkerState,
)
from airside.runtime.attempt import AttemptNames
from airside.web.db import BuildEventRow, BuildRow, WorkerObjectRow, WorkerRow
from airside.web.errors import Conflict, NotFound

LOG = log.get("airside.web.builds")
ACTIVE_S = [str(x) for x in ACTIVE]


def view(b: BuildRow) -> Build:
    return Build.model_validate({k: getattr(b, k) for k in Build.model_fields})


def get(s: Session, build_id: int, lock: bool = False) -> BuildRow:
    b = s.get(BuildRow, build_id, with_for_update=lock)
    if b is None:
        raise NotFound(f"unknown build {build_id} (see `airside builds`)")
    return b


def event(s: Session, b: BuildRow, kind: str, data: str, now: float, stream: str = "") -> None:
    s.add(BuildEventRow(build_id=b.id, seq=b.next_seq, kind=kind, stream=stream, data=data, at=now))
    b.next_seq += 1


def _status(s: Session, b: BuildRow, status: BuildStatus, now: float, why: str = "") -> None:
    b.status = str(status)
    if status in TERMINAL:
        b.finished_at = now
    event(s, b, "status", f"{status}{': ' + why if why else ''}", now)
    LOG.info("build status", build=b.id, status=str(status), why=why or None, worker=b.worker_name)


def create(s: Session, req: BuildCreate, config: dict, now: float, requeue_budget: int,
           runtime: str = "workers", kubernetes_tag: str = "kubernetes") -> BuildRow:
    """`runtime` is the deployment's; a build tagged `kubernetes_tag` runs as a Kubernetes Job anyway (the tag
    chooses the runtime and is not matched against worker tags)."""
    tags = list(req.tags)
    if kubernetes_tag in tags:
        runtime = "kubernetes"
        tags.remove(kubernetes_tag)
    b = BuildRow(status=str(BuildStatus.created), config=config, config_text=req.config, tags=tags,
                 team=req.team, cache_key=req.cache_key, privileged=req.privileged, requeue_budget=requeue_budget, created_at=now,
                 inputs=[], outputs=[], log_offsets={}, next_seq=0, runtime=runtime)
    s.add(b)
    s.flush()
    event(s, b, "status", "created", now)
    return b


def expected_inputs(b: BuildRow) -> list[str]:
    return [i["name"] for i in b.config.get("inputs") or []]


def input_uploaded(s: Session, b: BuildRow, name: str) -> None:
    if b.status != BuildStatus.created:
        raise Conflict(f"build {b.id} is {b.status}: inputs can only be uploaded before it starts")
    if name not in expected_inputs(b):
        raise NotFound(f"build {b.id}'s task has no input named {name!r} (it has: {', '.join(expected_inputs(b)) or 'none'})")
    if name not in b.inputs:
        b.inputs = [*b.inputs, name]


def start(s: Session, b: BuildRow, now: float) -> None:
    if b.status != BuildStatus.created:
        raise Conflict(f"build {b.id} is already {b.status}")
    optional = {i["name"] for i in b.config.get("inputs") or [] if i.get("optional")}
    missing = [n for n in expected_inputs(b) if n not in b.inputs and n not in optional]
    if missing:
        raise Conflict(f"build {b.id} cannot start: required inputs not uploaded: {', '.join(missing)}")
    b.queued_at = now
    _status(s, b, BuildStatus.pending, now)


def abort(s: Session, b: BuildRow, now: float) -> None:
    if b.status in TERMINAL:
        return
    if b.status in (BuildStatus.created, BuildStatus.pending):
        _status(s, b, BuildStatus.aborted, now, "aborted before it was placed")
    else:
        b.abort_requested = True
        event(s, b, "status", "abort requested", now)


# --- placement ------------------------------------------------------------------------------------
def _eligible(w: WorkerRow, b: BuildRow) -> bool:
    platform = b.config.get("platform")
    if platform and w.platform != platform:
        return False
    if b.tags:
        if not set(b.tags) <= set(w.tags):
            return False
    elif w.tags:  # as in Concourse: tagged workers only take tagged steps
        return False
    if b.resource_type and b.resource_type not in {t.get("type") for t in w.resource_types or []}:
        return False  # a resource script of a type this worker does not offer
    return w.team is None or w.team == b.team


def _running_counts(s: Session) -> dict[str, int]:
    """Active builds per worker name (Kubernetes builds, on no worker, are not counted)."""
    rows = s.execute(select(BuildRow.worker_name, func.count()).where(BuildRow.status.in_(ACTIVE_S))
                     .group_by(BuildRow.worker_name)).all()
    return {name: n for name, n in rows if name is not None}


def _locality(s: Session, b: BuildRow) -> dict[str, int]:
    """Per worker: how many of this build's cache/image volumes it already holds."""
    if not b.cache_key:
        return {}
    rows = s.execute(select(WorkerObjectRow.worker_name, WorkerObjectRow.properties)
                     .where(WorkerObjectRow.kind == "volume", WorkerObjectRow.destroying.is_(False))).all()
    out: dict[str, int] = {}
    for name, props in rows:
        if (props or {}).get("cache_key") == b.cache_key:
            out[name] = out.get(name, 0) + 1
    return out


Where = tuple[str, str]
"""A worker in one boot epoch: (name, boot epoch)."""


def _source_places(s: Session, bs: Sequence[BuildRow]) -> dict[int, Where]:
    """Where each source build of these builds' inputs ran (its last attempt): source build id -> (worker,
    epoch). Sources that ran on no worker (Kubernetes) or are gone are left out."""
    ids = {int(src["build"]) for b in bs for src in (b.input_sources or {}).values()}
    if not ids:
        return {}
    rows = s.execute(select(BuildRow.id, BuildRow.worker_name, BuildRow.worker_epoch).where(BuildRow.id.in_(ids))).all()
    return {bid: (name, epoch) for bid, name, epoch in rows if name and epoch}


def _sources_on(b: BuildRow, places: dict[int, Where]) -> dict[Where, int]:
    """Per worker (in a boot epoch): how many of this build's inputs a build it ran produced."""
    out: dict[Where, int] = {}
    for src in (b.input_sources or {}).values():
        where = places.get(int(src["build"]))
        if where is not None:
            out[where] = out.get(where, 0) + 1
    return out


def _nearest(candidates: list[WorkerRow], near: dict[Where, int]) -> list[WorkerRow]:
    """The candidates that ran the most of the build's sources (all of them when none ran any)."""
    best = max((near.get((w.name, w.boot_epoch), 0) for w in candidates), default=0)
    return [w for w in candidates if near.get((w.name, w.boot_epoch), 0) == best] if best else candidates


def schedule(s: Session, now: float, ttl: float, strategy: str, rng: random.Random | None = None) -> list[tuple[int, str]]:
    """Places pending builds on schedulable workers (the module docstring says in what order of preference).
    Returns [(build id, worker name)]."""
    pending = s.scalars(select(BuildRow).where(BuildRow.status == str(BuildStatus.pending),
                                               BuildRow.runtime == "workers").order_by(BuildRow.id)
                        .with_for_update(skip_locked=True)).all()
    if not pending:
        return []
    workers = s.scalars(select(WorkerRow).where(WorkerRow.state == str(WorkerState.running),
                                                WorkerRow.last_heartbeat >= now - ttl)).all()
    load = _running_counts(s)
    places = _source_places(s, pending)
    rng = rng or random.Random()
    placed = []
    for b in pending:
        candidates = [w for w in workers if _eligible(w, b) and load.get(w.name, 0) < w.max_tasks]
        if not candidates:
            continue
        candidates = _nearest(candidates, _sources_on(b, places))
        if strategy == "random":
            w = rng.choice(candidates)
        elif strategy == "volume-locality":
            local = _locality(s, b)
            w = min(candidates, key=lambda w: (-local.get(w.name, 0), load.get(w.name, 0), w.name))
        else:
            w = min(candidates, key=lambda w: (load.get(w.name, 0), w.name))
        _place(s, b, w.name, w.boot_epoch, now)
        load[w.name] = load.get(w.name, 0) + 1
        placed.append((b.id, w.name))
    return placed


def _place(s: Session, b: BuildRow, worker: str | None, epoch: str | None, now: float) -> None:
    b.worker_name, b.worker_epoch = worker, epoch
    b.attempt += 1
    b.placed_at = now
    b.image_ready_at = b.inputs_ready_at = b.started_at = None
    where = f"worker {worker}" if worker else "kubernetes"
    _status(s, b, BuildStatus.placed, now, f"{where}, attempt {b.attempt}")


def place_on_kubernetes(s: Session, now: float) -> list[BuildRow]:
    """Claims the pending Kubernetes builds (web runs them itself: no worker)."""
    pending = s.scalars(select(BuildRow).where(BuildRow.status == str(BuildStatus.pending),
                                               BuildRow.runtime == "kubernetes").order_by(BuildRow.id)
                        .with_for_update(skip_locked=True)).all()
    for b in pending:
        _place(s, b, None, None, now)
    return list(pending)


def active_on_kubernetes(s: Session) -> Sequence[BuildRow]:
    return s.scalars(select(BuildRow).where(BuildRow.runtime == "kubernetes", BuildRow.status.in_(ACTIVE_S))).all()


def pending_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(BuildRow).where(BuildRow.status == str(BuildStatus.pending))) or 0


def assignments(s: Session, worker: str, epoch: str) -> list[Assignment]:
    rows = s.scalars(select(BuildRow).where(BuildRow.worker_name == worker, BuildRow.worker_epoch == epoch,
                                            BuildRow.status.in_(ACTIVE_S)).order_by(BuildRow.id)).all()
    places = _source_places(s, rows)
    return [Assignment(build_id=b.id, attempt=b.attempt, status=b.status, config=b.config, inputs=b.inputs,
                       cache_key=b.cache_key, abort=b.abort_requested, privileged=b.privileged, stdin=b.stdin,
                       resource_type=b.resource_type, image_input=b.image_input,
                       local_inputs=_local_inputs(b, places, (worker, epoch)), keep_outputs=b.job_build_id is not None)
            for b in rows]


def _local_inputs(b: BuildRow, places: dict[int, Where], here: Where) -> dict[str, str]:
    """Input name -> the output volume holding it on `here`, for the inputs whose source build ran there."""
    return {name: AttemptNames(int(src["build"]), int(src["attempt"])).output_volume(str(src["output"]))
            for name, src in (b.input_sources or {}).items()
            if name in b.inputs and places.get(int(src["build"])) == here}


# --- reports from the worker running a build --------------------------------------------------------
def _own(s: Session, build_id: int, worker: str | None, attempt: int) -> BuildRow:
    b = get(s, build_id, lock=True)
    if b.status in TERMINAL or b.status not in ACTIVE_S or b.attempt != attempt or (worker and b.worker_name != worker):
        raise Conflict(f"build {build_id} attempt {attempt} is no longer running here "
                       f"(build is {b.status}, attempt {b.attempt} on {b.worker_name}): stop it")
    return b


def phase(s: Session, build_id: int, worker: str | None, attempt: int, ph: Phase, now: float) -> BuildRow:
    b = _own(s, build_id, worker, attempt)
    setattr(b, f"{ph}_at", now)
    if ph == Phase.started:
        _status(s, b, BuildStatus.running, now)
    return b


def append_logs(s: Session, build_id: int, worker: str | None, batch: LogBatch, now: float) -> bool:
    """Stores log chunks once each (by stream offset). Returns whether the build should abort."""
    b = _own(s, build_id, worker, batch.attempt)
    offsets = dict(b.log_offsets or {})
    for c in batch.chunks:
        key = f"{batch.attempt}:{c.stream}"
        data = base64.b64decode(c.data)
        have = offsets.get(key, 0)
        if c.offset + len(data) <= have:
            continue  # already stored (a re-send after a worker restart)
        data = data[max(0, have - c.offset):]
        offsets[key] = max(have, c.offset) + len(data)
        event(s, b, "log", data.decode("utf-8", "replace"), now, stream=c.stream)
    b.log_offsets = offsets
    return b.abort_requested


def finish(s: Session, build_id: int, worker: str | None, report: FinishReport, now: float) -> BuildRow:
    b = _own(s, build_id, worker, report.attempt)
    if report.status not in TERMINAL:
        raise Conflict(f"{report.status} is not a final build status")
    if report.status == BuildStatus.failed and report.exit_code in (None, 0):
        raise Conflict("a failed build needs the task's non-zero exit code")
    b.exit_code, b.reason, b.outputs = report.exit_code, report.reason, report.outputs
    why = report.reason or (f"exit code {report.exit_code}" if report.exit_code is not None else "")
    _status(s, b, report.status, now, why)
    return b


def interrupt_worker(s: Session, worker: str, reason: str, now: float, keep_epoch: str | None = None) -> list[int]:
    """The infrastructure lost the builds on `worker` (except those of `keep_epoch`): requeue each while
    its budget lasts, else end it errored with the reason."""
    q = select(BuildRow).where(BuildRow.worker_name == worker, BuildRow.status.in_(ACTIVE_S))
    if keep_epoch is not None:
        q = q.where(BuildRow.worker_epoch != keep_epoch)
    hit = []
    for b in s.scalars(q.with_for_update()).all():
        hit.append(b.id)
        interrupt(s, b, reason, now)
    return hit


def interrupt(s: Session, b: BuildRow, reason: str, now: float) -> None:
    """The infrastructure interrupted this build: requeue it while its budget lasts, else it errored."""
    if b.abort_requested:
        _status(s, b, BuildStatus.aborted, now, reason)
    elif b.requeues < b.requeue_budget:
        b.requeues += 1
        b.queued_at = now
        _status(s, b, BuildStatus.pending, now, f"requeued ({b.requeues}/{b.requeue_budget}): {reason}")
    else:
        b.reason = reason
        _status(s, b, BuildStatus.errored, now, reason)


def events(s: Session, build_id: int, after: int) -> Sequence[BuildEventRow]:
    return s.scalars(select(BuildEventRow).where(BuildEventRow.build_id == build_id, BuildEventRow.seq > after)
                     .order_by(BuildEventRow.seq).limit(1000)).all()


def recent(s: Session, limit: int) -> Sequence[BuildRow]:
    return s.scalars(select(BuildRow).order_by(BuildRow.id.desc()).limit(limit)).all()
