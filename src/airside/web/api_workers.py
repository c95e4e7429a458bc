"""The workers API: the registry's calls (register, heartbeat, land, retire, landed, delete, prune) and the
operator's views of workers and the objects web records on them.

A worker may act only for its own name (`require_self`: a worker key proves the name, the shared worker
token acts for any); listing workers, their objects and pruning need the operator token.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from airside.core import routes
from airside.core.schemas import Heartbeat, Worker, WorkerObject, WorkerRegistration
from airside.web import registry
from airside.web.auth import require_operator, require_self
from airside.web.db import WorkerObjectRow, WorkerRow
from airside.web.deps import Caller, WebDep, endpoint

router = APIRouter()

EpochParam = Annotated[str, Query(pattern=r"^[0-9a-f]{12,20}-[0-9a-f]{8}$")]


def worker_view(row: WorkerRow, now: float) -> Worker:
    """The API's view of a registry row at time `now` (`heartbeat_age` is derived from it)."""
    return Worker.model_validate(
        {
            **{k: getattr(row, k) for k in WorkerRegistration.model_fields},
            "state": row.state,
            "start_time": row.start_time,
            "last_heartbeat": row.last_heartbeat,
            "state_changed_at": row.state_changed_at,
            "heartbeat_age": round(max(0.0, now - row.last_heartbeat), 3),
        }
    )


def object_view(o: WorkerObjectRow) -> WorkerObject:
    return WorkerObject.model_validate(
        {"handle": o.handle, "kind": o.kind, "worker_name": o.worker_name, "boot_epoch": o.boot_epoch,
         "created_at": o.created_at})


@endpoint(router, routes.REGISTER_WORKER)
def register_worker(reg: WorkerRegistration, p: Caller, web: WebDep) -> Worker:
    require_self(p, reg.name)
    with web.tx() as s:
        return worker_view(registry.register(s, reg, web.clock()), web.clock())


@endpoint(router, routes.LIST_WORKERS)
def list_workers(p: Caller, web: WebDep) -> list[Worker]:
    require_operator(p)
    now = web.clock()
    with web.sessions() as s:
        return [worker_view(r, now) for r in registry.all_workers(s)]


@endpoint(router, routes.GET_WORKER)
def get_worker(name: str, p: Caller, web: WebDep) -> Worker:
    require_self(p, name)
    with web.tx() as s:
        return worker_view(registry.get(s, name), web.clock())


@endpoint(router, routes.HEARTBEAT)
def heartbeat(name: str, hb: Heartbeat, p: Caller, web: WebDep) -> Worker:
    require_self(p, name)
    with web.tx() as s:
        row = registry.heartbeat(s, name, hb, web.clock())
        web.metrics.heartbeats.inc()
        return worker_view(row, web.clock())


@endpoint(router, routes.LAND_WORKER)
def land_worker(name: str, p: Caller, web: WebDep) -> Worker:
    require_self(p, name)
    with web.tx() as s:
        return worker_view(registry.land(s, name, web.clock()), web.clock())


@endpoint(router, routes.RETIRE_WORKER)
def retire_worker(name: str, p: Caller, web: WebDep) -> Worker:
    require_self(p, name)
    with web.tx() as s:
        return worker_view(registry.retire(s, name, web.clock()), web.clock())


@endpoint(router, routes.WORKER_LANDED)
def worker_landed(name: str, boot_epoch: EpochParam, p: Caller, web: WebDep) -> Worker:
    require_self(p, name)
    with web.tx() as s:
        return worker_view(registry.landed(s, name, boot_epoch, web.clock()), web.clock())


@endpoint(router, routes.DELETE_WORKER, status_code=204)
def delete_worker(name: str, boot_epoch: EpochParam, p: Caller, web: WebDep) -> Response:
    require_self(p, name)
    with web.tx() as s:
        registry.remove(s, name, boot_epoch, web.clock())
    return Response(status_code=204)


@endpoint(router, routes.PRUNE_WORKER, status_code=204)
def prune_worker(name: str, p: Caller, web: WebDep) -> Response:
    require_operator(p)
    with web.tx() as s:
        registry.prune(s, name, web.clock())
    return Response(status_code=204)


@endpoint(router, routes.WORKER_OBJECTS)
def worker_objects(name: str, p: Caller, web: WebDep) -> list[WorkerObject]:
    require_operator(p)
    with web.sessions() as s:
        return [object_view(o) for o in registry.objects(s, name)]
