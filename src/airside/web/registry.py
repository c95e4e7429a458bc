"""The worker registry: Concourse's worker states and every transition between them.

    register ──► running ──(no heartbeat for heartbeat_ttl)──► stalled ──(stalled_prune_after)──► gone
                  │  ▲                                          │  heartbeat again → running
                  │  └──────────── register (worker back) ◄──── landed
                  ├─ land ──► landing ──(worker drained: landed)──► landed
                  └─ retire ─► retiring ──(worker drained: delete)──► gone

Boot epochs order registrations of one name: a registration with a newer epoch is the same worker
back with an empty disk (a StatefulSet pod recreated), so the containers and volumes web recorded
for older epochs are dropped at once. A registration or heartbeat with an *older* epoch than the
record comes from a stale or duplicate process and is refused (409), leaving the registry as it was.

All functions take an open Session inside a transaction and the current time; they raise
RegistryError subclasses that the API maps to HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import Session

from airside.core import log
from airside.core.schemas import Heartbeat, WorkerRegistration, WorkerState, epoch_order
from airside.web import builds
from airside.web.db import WorkerObjectRow, WorkerRow
from airside.web.errors import Conflict, DomainError, NotFound

LOG = log.get("airside.web.registry")
DRAINING = (WorkerState.landing, WorkerState.retiring)
ALIVE = (WorkerState.running, *DRAINING)


RegistryError = DomainError  # the API maps every DomainError to its status


def get(s: Session, name: str) -> WorkerRow:
    row = s.get(WorkerRow, name, with_for_update=True)
    if row is None:
        raise NotFound(f"unknown worker {name!r} (see `airside workers`)")
    return row


def _set_state(row: WorkerRow, state: WorkerState, now: float, why: str) -> None:
    if row.state != state:
        LOG.info("worker state", worker=row.name, old=row.state, new=str(state), why=why)
        row.state, row.state_changed_at = str(state), now


def _check_epoch(row: WorkerRow, epoch: str, action: str) -> None:
    if epoch != row.boot_epoch:
        raise Conflict(
            f"worker {row.name!r} is registered with boot epoch {row.boot_epoch}, but this {action} carries "
            f"{epoch}: another process registered under this name since; this one is stale or a duplicate"
        )


def drop_objects(s: Session, name: str, keep_epoch: str | None = None) -> int:
    q = delete(WorkerObjectRow).where(WorkerObjectRow.worker_name == name)
    if keep_epoch is not None:
        q = q.where(WorkerObjectRow.boot_epoch != keep_epoch)
    # Session.execute is typed Result for any statement; a DELETE's result is a CursorResult (it has rowcount)
    return cast("CursorResult[Any]", s.execute(q)).rowcount or 0


def register(s: Session, reg: WorkerRegistration, now: float) -> WorkerRow:
    row = s.get(WorkerRow, reg.name, with_for_update=True)
    fields = reg.model_dump()
    if row is None:
        row = WorkerRow(**fields, state=str(WorkerState.running), start_time=now, last_heartbeat=now, state_changed_at=now)
        s.add(row)
        LOG.info("worker registered", worker=reg.name, boot_epoch=reg.boot_epoch)
        return row
    if reg.boot_epoch != row.boot_epoch:
        if epoch_order(reg.boot_epoch) < epoch_order(row.boot_epoch):
            raise Conflict(
                f"worker name {reg.name!r} is taken by a newer process (boot epoch {row.boot_epoch}); this "
                f"registration carries the older epoch {reg.boot_epoch}: stop the duplicate or give it another name"
            )
        dropped = drop_objects(s, reg.name, keep_epoch=reg.boot_epoch)
        builds.interrupt_worker(s, reg.name, f"worker {reg.name} came back with a new boot epoch (an empty disk): "
                                f"the containers of its earlier epoch are gone", now, keep_epoch=reg.boot_epoch)
        LOG.info("worker is back with a new boot epoch", worker=reg.name, old_epoch=row.boot_epoch,
                 new_epoch=reg.boot_epoch, dropped_objects=dropped)
        row.start_time = now
        _set_state(row, WorkerState.running, now, "new boot epoch")
    elif row.state in (WorkerState.stalled, WorkerState.landed):
        _set_state(row, WorkerState.running, now, "re-registered")
    # same epoch while running/landing/retiring: a reconnect (e.g. after a web restart) keeps the state.
    for key, value in fields.items():
        setattr(row, key, value)
    row.last_heartbeat = now
    return row


def heartbeat(s: Session, name: str, hb: Heartbeat, now: float) -> WorkerRow:
    row = get(s, name)
    _check_epoch(row, hb.boot_epoch, "heartbeat")
    row.active_containers, row.active_volumes, row.active_tasks = hb.active_containers, hb.active_volumes, hb.active_tasks
    row.last_heartbeat = now
    if row.state == WorkerState.stalled:
        _set_state(row, WorkerState.running, now, "heartbeat after stall")
    return row


def land(s: Session, name: str, now: float) -> WorkerRow:
    row = get(s, name)
    if row.state in (WorkerState.landing, WorkerState.landed):
        return row
    if row.state != WorkerState.running:
        raise Conflict(f"cannot land worker {name!r}: it is {row.state}")
    _set_state(row, WorkerState.landing, now, "land requested")
    return row


def retire(s: Session, name: str, now: float) -> WorkerRow:
    row = get(s, name)
    if row.state == WorkerState.retiring:
        return row
    if row.state not in (WorkerState.running, WorkerState.landing):
        raise Conflict(f"cannot retire worker {name!r}: it is {row.state}; use `airside prune-worker {name}`")
    _set_state(row, WorkerState.retiring, now, "retire requested")
    return row


def landed(s: Session, name: str, epoch: str, now: float) -> WorkerRow:
    row = get(s, name)
    _check_epoch(row, epoch, "landed report")
    if row.state == WorkerState.landed:
        return row
    if row.state != WorkerState.landing:
        raise Conflict(f"worker {name!r} cannot finish landing: it is {row.state}, not landing")
    _set_state(row, WorkerState.landed, now, "drained")
    return row


def remove(s: Session, name: str, epoch: str, now: float) -> None:
    """A retiring worker finished draining and leaves."""
    row = get(s, name)
    _check_epoch(row, epoch, "retirement")
    if row.state != WorkerState.retiring:
        raise Conflict(f"worker {name!r} cannot leave: it is {row.state}, not retiring")
    _delete(s, row, "retired", now)


def prune(s: Session, name: str, now: float) -> None:
    row = get(s, name)
    if row.state not in (WorkerState.stalled, WorkerState.landed):
        raise Conflict(
            f"cannot prune worker {name!r}: it is {row.state}; only stalled or landed workers can be pruned "
            f"(land or retire it first, or wait until it stalls)"
        )
    _delete(s, row, "pruned", now)


def _delete(s: Session, row: WorkerRow, why: str, now: float) -> None:
    builds.interrupt_worker(s, row.name, f"worker {row.name} left the registry ({why})", now)
    drop_objects(s, row.name)
    s.delete(row)
    LOG.info("worker removed", worker=row.name, why=why)


def sweep(s: Session, now: float, ttl: float, prune_after: float) -> tuple[list[str], list[str]]:
    """Marks silent workers stalled and prunes long-stalled ones. Returns (stalled, pruned) names."""
    stalled, pruned = [], []
    silent = s.scalars(
        select(WorkerRow).where(WorkerRow.state.in_([str(x) for x in ALIVE]), WorkerRow.last_heartbeat < now - ttl)
    ).all()
    for row in silent:
        _set_state(row, WorkerState.stalled, now, f"no heartbeat for {now - row.last_heartbeat:.1f}s")
        builds.interrupt_worker(s, row.name, f"worker {row.name} stalled (no heartbeat for "
                                f"{now - row.last_heartbeat:.0f}s)", now)
        stalled.append(row.name)
    if prune_after > 0:
        old = s.scalars(
            select(WorkerRow).where(WorkerRow.state == str(WorkerState.stalled), WorkerRow.state_changed_at < now - prune_after)
        ).all()
        for row in old:
            _delete(s, row, f"stalled for more than {prune_after:.0f}s", now)
            pruned.append(row.name)
    return stalled, pruned


def schedulable(s: Session, now: float, ttl: float) -> Sequence[WorkerRow]:
    """Workers that may get new work: running and heard from within the TTL (a silent worker is
    excluded at once, before the sweep marks it stalled)."""
    return s.scalars(
        select(WorkerRow).where(WorkerRow.state == str(WorkerState.running), WorkerRow.last_heartbeat >= now - ttl)
    ).all()


def all_workers(s: Session) -> Sequence[WorkerRow]:
    return s.scalars(select(WorkerRow).order_by(WorkerRow.name)).all()


def objects(s: Session, name: str) -> Sequence[WorkerObjectRow]:
    get(s, name)
    return s.scalars(select(WorkerObjectRow).where(WorkerObjectRow.worker_name == name)).all()
