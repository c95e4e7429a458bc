"""The resources API (issue 18): a pipeline's resources, their versions, checks on request, pins and disabled
versions, and Concourse's check webhook, under `/api/v1/teams/{team}/pipelines/{pipeline}/resources/...`.
The state is `airside.web.resources`; this module checks the caller and the names and shapes the views.

Every call needs the operator token (as the pipelines API), except the webhook: a code host cannot send a
bearer token, so CHECK_RESOURCE_WEBHOOK takes `?webhook_token=` and compares it (in constant time) with the
resource's `webhook_token` as set (static vars applied; a `((var))` left for run time never matches). A wrong
or missing token is a 401 and changes nothing; an unknown team, pipeline or resource is a 404.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy.orm import Session

from airside.core import auth, routes
from airside.core.schemas import CheckStarted, Resource, ResourceCheck, ResourceVersion, Version, VersionUse
from airside.pipeline.vars import var_names
from airside.web import resources
from airside.web.api_pipelines import _pipeline
from airside.web.auth import require_operator
from airside.web.db import BuildRow, PipelineRow, ResourceConfigRow, ResourceRow, ResourceVersionRow
from airside.web.deps import Caller, WebDep, endpoint
from airside.web.service import Web

router = APIRouter()


def _resource(s: Session, team: str, pipeline: str, resource: str, lock: bool = False) -> tuple[PipelineRow, ResourceRow]:
    p = _pipeline(s, team, pipeline)
    return p, resources.get_resource(s, p, resource, lock=lock)


def _webhook_token(r: ResourceRow) -> str:
    """The token the webhook accepts: "" (none) when unset or still a var for run time."""
    token = r.config.get("webhook_token")
    return token if isinstance(token, str) and not var_names(token) else ""


def view(s: Session, p: PipelineRow, r: ResourceRow) -> Resource:
    cfg = s.get(ResourceConfigRow, r.config_id) if r.config_id is not None else None
    pinned = s.get(ResourceVersionRow, r.pinned_version_id) if r.pinned_version_id is not None else None
    if cfg is None:
        try:
            resources.image_of(p.config, r.config["type"])
            error = "the resource cannot be checked"
        except resources.ResourceError as e:
            error = str(e)
    else:
        error = cfg.check_error
    scheduled = cfg is not None and cfg.check_every is not None and cfg.next_check_at < resources.NEVER
    return Resource(id=r.id, pipeline=p.name, name=r.name, type=r.config["type"], check_every=resources.check_every_of(r),
                    config_id=r.config_id, last_checked=cfg.last_checked if cfg else None,
                    next_check_at=cfg.next_check_at if cfg is not None and scheduled else None, check_error=error,
                    check_build_id=cfg.check_build_id if cfg else None,
                    last_check_build_id=cfg.last_check_build_id if cfg else None,
                    pinned_version=pinned.version if pinned else None, pinned_version_id=r.pinned_version_id,
                    webhook=bool(_webhook_token(r)))


def _version_views(s: Session, r: ResourceRow, rows: list[ResourceVersionRow]) -> list[ResourceVersion]:
    used: dict[tuple[int, str], list[VersionUse]] = {}
    for version_id, kind, step, job, jb in resources.uses(s, r, [v.id for v in rows]):
        used.setdefault((version_id, kind), []).append(VersionUse(job=job.name, build=jb.name, job_build_id=jb.id,
                                                                  step=step))
    disabled = set(r.disabled_versions or [])
    return [ResourceVersion(id=v.id, version=v.version, metadata=v.meta or [], enabled=v.id not in disabled,
                            pinned=v.id == r.pinned_version_id, check_order=v.check_order, created_at=v.created_at,
                            input_to=used.get((v.id, "get"), []), output_of=used.get((v.id, "put"), []))
            for v in rows]


def _filters(given: list[str]) -> Version:
    wanted: Version = {}
    for f in given:
        key, colon, value = f.partition(":")
        if not colon or not key:
            raise HTTPException(422, f"filter: expected KEY:VALUE (a version field), got {f!r}")
        wanted[key] = value
    return wanted


# --- resources -------------------------------------------------------------------------------------------
@endpoint(router, routes.LIST_RESOURCES)
def list_resources(team: str, pipeline: str, p: Caller, web: WebDep) -> list[Resource]:
    require_operator(p)
    with web.sessions() as s:
        row = _pipeline(s, team, pipeline)
        return [view(s, row, r) for r in resources.listing(s, row)]


@endpoint(router, routes.GET_RESOURCE)
def get_resource(team: str, pipeline: str, resource: str, p: Caller, web: WebDep) -> Resource:
    require_operator(p)
    with web.sessions() as s:
        return view(s, *_resource(s, team, pipeline, resource))


@endpoint(router, routes.RESOURCE_VERSIONS)
def resource_versions(team: str, pipeline: str, resource: str, p: Caller, web: WebDep,
                      limit: int = Query(100, ge=1, le=1000),
                      filter: list[str] = Query([], max_length=32)) -> list[ResourceVersion]:
    # newest first; each `filter=KEY:VALUE` keeps the versions whose field KEY is VALUE (fly's pin-resource -v)
    require_operator(p)
    wanted = _filters(filter)
    with web.sessions() as s:
        _p, r = _resource(s, team, pipeline, resource)
        rows = resources.versions(s, r, limit, wanted)
        return _version_views(s, r, list(rows))


# --- checks ----------------------------------------------------------------------------------------------
def _check(web: Web, team: str, pipeline: str, resource: str, from_version: Version | None,
           token: str | None = None) -> CheckStarted:
    with web.tx() as s:
        _p, r = _resource(s, team, pipeline, resource)
        if token is not None and not auth.tokens_equal(token, _webhook_token(r)):
            raise HTTPException(401, "missing or wrong webhook_token")
        b: BuildRow = resources.check_now(s, web, r, web.clock(), from_version)
        assert r.config_id is not None
        started = CheckStarted(resource=r.name, build_id=b.id, config_id=r.config_id,
                               version=json.loads(b.stdin or "{}").get("version"))
    web.wake_scheduler()
    return started


@endpoint(router, routes.CHECK_RESOURCE, status_code=201)
def check_resource(team: str, pipeline: str, resource: str, p: Caller, web: WebDep,
                   body: ResourceCheck | None = None) -> CheckStarted:
    # starts a check now, from `from` (default: the latest version); 409 while a check of it runs
    require_operator(p)
    return _check(web, team, pipeline, resource, body.from_ if body else None)


@endpoint(router, routes.CHECK_RESOURCE_WEBHOOK, status_code=201)
def check_resource_webhook(team: str, pipeline: str, resource: str, web: WebDep,
                           webhook_token: str = Query("", max_length=1024)) -> CheckStarted:
    # no bearer token (a code host calls it): the resource's webhook_token instead; 401 and nothing changes
    # when it is wrong or missing (or the resource has none)
    return _check(web, team, pipeline, resource, None, token=webhook_token)


# --- pins and disabled versions ----------------------------------------------------------------------------
def _change(web: Web, team: str, pipeline: str, resource: str, version_id: int | None, how: str) -> Resource:
    with web.tx() as s:
        row, r = _resource(s, team, pipeline, resource, lock=True)
        if version_id is None:
            r.pinned_version_id = None
        else:
            v = resources.get_version(s, r, version_id)
            disabled = list(r.disabled_versions or [])
            if how == "pin":
                if v.id in disabled:
                    raise HTTPException(409, f"version {v.id} of {r.name!r} is disabled: enable it to pin it")
                r.pinned_version_id = v.id
            elif how == "disable":
                if v.id == r.pinned_version_id:
                    raise HTTPException(409, f"version {v.id} of {r.name!r} is pinned: unpin it to disable it")
                r.disabled_versions = sorted({*disabled, v.id})
            else:
                r.disabled_versions = [x for x in disabled if x != v.id]
        result = view(s, row, r)
    web.wake_scheduler()  # triggers look at the versions again
    return result


@endpoint(router, routes.PIN_RESOURCE_VERSION)
def pin_resource_version(team: str, pipeline: str, resource: str, version_id: int, p: Caller,
                         web: WebDep) -> Resource:
    # every get of the resource fetches this version until it is unpinned (a get's own `version:` included)
    require_operator(p)
    return _change(web, team, pipeline, resource, version_id, "pin")


@endpoint(router, routes.UNPIN_RESOURCE)
def unpin_resource(team: str, pipeline: str, resource: str, p: Caller, web: WebDep) -> Resource:
    require_operator(p)
    return _change(web, team, pipeline, resource, None, "unpin")


@endpoint(router, routes.ENABLE_RESOURCE_VERSION)
def enable_resource_version(team: str, pipeline: str, resource: str, version_id: int, p: Caller,
                            web: WebDep) -> Resource:
    require_operator(p)
    return _change(web, team, pipeline, resource, version_id, "enable")


@endpoint(router, routes.DISABLE_RESOURCE_VERSION)
def disable_resource_version(team: str, pipeline: str, resource: str, version_id: int, p: Caller,
                             web: WebDep) -> Resource:
    # a disabled version is never chosen by a get (nor triggers a job) until it is enabled again
    require_operator(p)
    return _change(web, team, pipeline, resource, version_id, "disable")
