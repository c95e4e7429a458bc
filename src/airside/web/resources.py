"""Resources: the Concourse resource protocol's check/in/out as builds, versions, and the inputs of job builds.

A resource script runs as an ordinary build (`airside.web.builds`: the same placement, lifecycle, logs and
outcomes as a task) whose JSON request is the build's stdin and whose response is its stdout; stderr is the
log a user reads. A build of a type workers offer (`resource_types` in their registration) runs only on
such workers, in that type's rootfs; a pipeline's own `resource_types` entry runs in its image
(`image_resource`). `script_config` writes that build's task config; `response` reads and checks the
answer, so a script that prints something else errors the step with its stderr's tail.

    set-pipeline ──► resources synced: each (team, type, source) is one ResourceConfigRow, shared by every
                     resource with the same pair, so one check serves them all (as Concourse dedupes checks)
    tick_checks ──► a due config starts a check build ──(it ended)──► new versions stored in order; an error is
             kept on the config and the next check backs off (check_every × 2^failures, at most an hour)
    (airside.web.plans.tick_triggers: a job with `get: … trigger: true` whose newest acceptable version no build
     of it has fetched gets a new build, created_by "resource NAME")

`passed: [jobs]` offers a version only if a succeeded build of each of those jobs fetched or produced it;
`version: every` takes the oldest version after the newest this job fetched, `latest` (default) the newest,
a mapping or a pin that version. Concourse's full algorithm also keeps several `passed` inputs consistent
with each other (the same upstream build); airside picks each input on its own (docs/pipelines.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from airside.core import log
from airside.core.schemas import TERMINAL, BuildCreate, BuildStatus, JobBuildStatus
from airside.pipeline.values import parse_duration
from airside.web import builds
from airside.web.db import (
    BuildEventRow,
    BuildRow,
    JobBuildResourceRow,
    JobBuildRow,
    JobRow,
    PipelineRow,
    ResourceConfigRow,
    ResourceRow,
    ResourceVersionRow,
)
from airside.web.errors import Conflict, NotFound
from airside.web.host import WebHost

LOG = log.get("airside.web.resources")
DEFAULT_CHECK_EVERY = 60.0
MAX_BACKOFF = 3600.0
NEVER = 1e18  # next_check_at of a config checked only on request (check_every: never)
GET_DIR, PUT_DIR = "/tmp/build/get", "/tmp/build/put"
TERMINAL_S = {str(x) for x in TERMINAL}
Data = dict[str, Any]


class ResourceError(Exception):
    """A resource that cannot be checked, fetched or pushed as configured (the step errors with this)."""


def worker_types(s: Session) -> frozenset[str]:
    """The resource types registered workers offer (what a pipeline may use beyond the core types)."""
    from airside.web.db import WorkerRow

    return frozenset(t.get("type", "") for types in s.scalars(select(WorkerRow.resource_types)).all()
                     for t in types or [] if t.get("type"))


def digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- the protocol --------------------------------------------------------------------------------------
def image_of(pipeline: Data, type_name: str) -> tuple[str, Data]:
    """(worker resource type, image_resource) a resource of `type_name` runs in: one of the pipeline's own
    `resource_types` runs in its image (`{type: registry-image, source: …}`); any other type is one workers
    offer. A custom type built on another custom type is refused (not supported yet)."""
    for rt in pipeline.get("resource_types") or []:
        if rt.get("name") == type_name:
            if rt.get("type") not in ("registry-image", "docker-image"):
                raise ResourceError(f"resource type {type_name!r} is of type {rt.get('type')!r}: only types whose "
                                    "image is a registry-image (or docker-image) are supported")
            return "", {"type": "registry-image", "source": dict(rt.get("source") or {})}
    return type_name, {}


def script_config(script: str, image: Data, params: Data | None = None, inputs: Sequence[str] = (),
                  output: str | None = None) -> Data:
    """The task config that runs /opt/resource/<script>: `in` writes into GET_DIR (the output `output`),
    `out` reads each input under PUT_DIR."""
    cfg: Data = {"platform": "linux", "params": {k: str(v) for k, v in (params or {}).items()},
                 "run": {"path": f"/opt/resource/{script}", "args": []}}
    if image:
        cfg["image_resource"] = image
    if script == "in":
        assert output is not None
        cfg["outputs"] = [{"name": output, "path": GET_DIR}]
        cfg["run"]["args"] = [GET_DIR]
    elif script == "out":
        cfg["inputs"] = [{"name": n, "path": f"{PUT_DIR}/{n}"} for n in inputs]
        cfg["run"] = {"path": "/opt/resource/out", "args": [PUT_DIR], "dir": PUT_DIR}
    return cfg


def start_script(s: Session, web: WebHost, now: float, *, team: str, script: str, worker_type: str, config: Data,
                 request: Data, tags: Sequence[str] = (), name: str = "") -> BuildRow:
    """Creates the build that runs one resource script, pending (inputs, if any, are the caller's to link)."""
    from airside.task import parse_task_config

    cfg = parse_task_config(config, f"{script} of {name or worker_type}").model_dump(mode="json")
    req = BuildCreate(config=json.dumps(cfg), config_filename=f"{name or worker_type}/{script}",
                      inputs=[i["name"] for i in cfg.get("inputs") or []], tags=list(tags), team=team)
    settings = web.settings
    b = builds.create(s, req, cfg, now, settings.requeue_budget, settings.runtime, settings.kubernetes_tag)
    b.stdin, b.resource_type = json.dumps(request), worker_type
    return b


def _stream(s: Session, build_id: int, stream: str) -> str:
    rows = s.scalars(select(BuildEventRow.data).where(BuildEventRow.build_id == build_id,
                                                      BuildEventRow.kind == "log", BuildEventRow.stream == stream)
                     .order_by(BuildEventRow.seq)).all()
    return "".join(rows)


def stderr_tail(s: Session, build_id: int, lines: int = 10) -> str:
    return "\n".join(_stream(s, build_id, "stderr").strip().splitlines()[-lines:])


def check_response(s: Session, b: BuildRow) -> list[Data]:
    """The versions a check script printed (see `response`)."""
    found = _response(s, b, "check")
    assert isinstance(found, list)
    return found


def response(s: Session, b: BuildRow, script: str) -> Data:
    """The answer of an in/out script: {version, metadata} (see `_response`)."""
    found = _response(s, b, script)
    assert isinstance(found, dict)
    return found


def _response(s: Session, b: BuildRow, script: str) -> object:
    """The script's answer (stdout as JSON, checked for the protocol's shape); ResourceError with the stderr
    tail for a failure, a non-JSON answer or a wrong shape."""
    tail = stderr_tail(s, b.id)
    if b.status != BuildStatus.succeeded:
        why = f"exit code {b.exit_code}" if b.status == BuildStatus.failed else (b.reason or b.status)
        raise ResourceError(f"{script} failed ({why})" + (f": {tail}" if tail else ""))
    out = _stream(s, b.id, "stdout")
    try:
        data = json.loads(out)
    except ValueError:
        raise ResourceError(f"{script} printed something that is not JSON on stdout ({out[:200]!r})"
                            + (f"; stderr: {tail}" if tail else "")) from None
    if script == "check":
        if not isinstance(data, list) or not all(_is_version(v) for v in data):
            raise ResourceError(f"check must print a JSON list of versions (objects of strings), got {out[:200]!r}")
        return data
    if not isinstance(data, dict) or not _is_version(data.get("version")):
        raise ResourceError(f"{script} must print {{\"version\": {{…}}, \"metadata\": […]}}, got {out[:200]!r}")
    meta = data.get("metadata") or []
    if not isinstance(meta, list) or not all(isinstance(m, dict) and "name" in m for m in meta):
        raise ResourceError(f"{script}'s metadata must be a list of {{name, value}}, got {json.dumps(meta)[:200]}")
    return data


def _is_version(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())


# --- pipelines' resources --------------------------------------------------------------------------------
def _check_every(value: Any) -> float | None:
    if value in (None, ""):
        return DEFAULT_CHECK_EVERY
    if value == "never":
        return None
    return max(1.0, parse_duration(str(value)))


def sync(s: Session, p: PipelineRow, now: float) -> None:
    """Upserts the pipeline's resources from its config (by name; `old_name` renames keep their history)."""
    existing = {r.name: r for r in s.scalars(select(ResourceRow).where(ResourceRow.pipeline_id == p.id)).all()}
    keep = set()
    for rc in p.config.get("resources") or []:
        name, old = rc["name"], rc.get("old_name")
        row = existing.get(name)
        if row is None and old and old in existing and old not in keep:
            row = existing.pop(old)
            row.name = name
            existing[name] = row
        if row is None:
            row = ResourceRow(pipeline_id=p.id, name=name, config=rc, active=True, disabled_versions=[])
            s.add(row)
            existing[name] = row
        row.config, row.active = rc, True
        try:
            worker_type, image = image_of(p.config, rc["type"])
            row.config_id = config_for(s, p.team, worker_type or rc["type"], image, rc.get("source") or {},
                                       _check_every(rc.get("check_every")), now).id
        except (ResourceError, ValueError) as e:
            LOG.warning("resource cannot be checked", pipeline=p.name, resource=name, error=str(e))
            row.config_id = None
        keep.add(name)
    for name, row in existing.items():
        if name not in keep:
            row.active = False
    s.flush()


def config_for(s: Session, team: str, type_: str, image: Data, source: Data, check_every: float | None,
               now: float) -> ResourceConfigRow:
    h = digest({"source": source, "image": image})
    row = s.scalar(select(ResourceConfigRow).where(ResourceConfigRow.team == team, ResourceConfigRow.type == type_,
                                                   ResourceConfigRow.source_hash == h))
    if row is None:
        row = ResourceConfigRow(team=team, type=type_, image=image, source_hash=h, source=source,
                                check_every=check_every, next_check_at=now, check_error="", failures=0, next_order=1)
        s.add(row)
        s.flush()
    elif check_every is not None and (row.check_every is None or check_every < row.check_every):
        row.check_every = check_every
    return row


def get_resource(s: Session, p: PipelineRow, name: str, lock: bool = False) -> ResourceRow:
    q = select(ResourceRow).where(ResourceRow.pipeline_id == p.id, ResourceRow.name == name)
    row = s.scalar(q.with_for_update() if lock else q)
    if row is None or not row.active:
        raise NotFound(f"pipeline {p.name!r} has no resource {name!r}")
    return row


def check_every_of(r: ResourceRow) -> float | None:
    """The resource's own check interval in seconds (None: `never`)."""
    return _check_every(r.config.get("check_every"))


def get_version(s: Session, r: ResourceRow, version_id: int) -> ResourceVersionRow:
    """One of the resource's versions by id (a version of another resource's config is not one of them)."""
    v = s.get(ResourceVersionRow, version_id)
    if v is None or r.config_id is None or v.config_id != r.config_id:
        raise NotFound(f"resource {r.name!r} has no version {version_id}")
    return v


def uses(s: Session, r: ResourceRow, version_ids: Sequence[int]) -> Iterator[tuple[int, str, str, JobRow, JobBuildRow]]:
    """(version id, kind get|put, step name, job, job build) for each time a build of this resource's pipeline
    fetched or produced one of `version_ids`, oldest build first."""
    rows = s.execute(select(JobBuildResourceRow, JobBuildRow, JobRow)
                     .join(JobBuildRow, JobBuildResourceRow.job_build_id == JobBuildRow.id)
                     .join(JobRow, JobBuildRow.job_id == JobRow.id)
                     .where(JobBuildResourceRow.resource_id == r.id,
                            JobBuildResourceRow.version_id.in_(list(version_ids)),
                            JobBuildResourceRow.kind.in_(("get", "put")))
                     .order_by(JobBuildRow.id, JobBuildResourceRow.id)).all()
    for use, jb, job in rows:
        yield use.version_id, use.kind, use.name, job, jb


def listing(s: Session, p: PipelineRow) -> Sequence[ResourceRow]:
    """The pipeline's resources (those its config still has), in the config's order."""
    order = {rc.get("name"): i for i, rc in enumerate(p.config.get("resources") or [])}
    rows = s.scalars(select(ResourceRow).where(ResourceRow.pipeline_id == p.id, ResourceRow.active.is_(True))).all()
    return sorted(rows, key=lambda r: (order.get(r.name, len(order)), r.name))


def versions(s: Session, r: ResourceRow, limit: int = 100, match: Data | None = None) -> Sequence[ResourceVersionRow]:
    """The resource's versions, newest first; with `match`, only those whose fields include all of it."""
    if r.config_id is None:
        return []
    q = select(ResourceVersionRow).where(ResourceVersionRow.config_id == r.config_id) \
        .order_by(ResourceVersionRow.check_order.desc())
    if not match:
        return s.scalars(q.limit(limit)).all()
    found: list[ResourceVersionRow] = []
    for v in s.scalars(q.execution_options(yield_per=500)):
        if all(v.version.get(k) == x for k, x in match.items()):
            found.append(v)
            if len(found) == limit:
                break
    return found


def save_version(s: Session, cfg: ResourceConfigRow, version: Data, meta: list[Data], now: float) -> ResourceVersionRow:
    h = digest(version)
    row = s.scalar(select(ResourceVersionRow).where(ResourceVersionRow.config_id == cfg.id,
                                                    ResourceVersionRow.version_hash == h))
    if row is None:
        row = ResourceVersionRow(config_id=cfg.id, version=version, version_hash=h, meta=meta,
                                 check_order=cfg.next_order, created_at=now)
        cfg.next_order += 1
        s.add(row)
        s.flush()
    elif meta:
        row.meta = meta
    return row


# --- checks ----------------------------------------------------------------------------------------------
def _active_configs(s: Session) -> Iterator[tuple[ResourceConfigRow, PipelineRow, ResourceRow]]:
    rows = s.execute(select(ResourceConfigRow, PipelineRow, ResourceRow)
                     .join(ResourceRow, ResourceRow.config_id == ResourceConfigRow.id)
                     .join(PipelineRow, ResourceRow.pipeline_id == PipelineRow.id)
                     .where(ResourceRow.active.is_(True), PipelineRow.paused.is_(False),
                            PipelineRow.archived.is_(False))
                     .with_for_update(skip_locked=True, of=ResourceConfigRow)).all()  # web replicas: one checks
    seen = set()
    for cfg, p, r in rows:
        if cfg.id not in seen:
            seen.add(cfg.id)
            yield cfg, p, r


def start_check(s: Session, web: WebHost, cfg: ResourceConfigRow, r: ResourceRow, now: float,
                from_version: Data | None = None) -> BuildRow:
    latest = s.scalar(select(ResourceVersionRow).where(ResourceVersionRow.config_id == cfg.id)
                      .order_by(ResourceVersionRow.check_order.desc()).limit(1))
    version = from_version if from_version is not None else (latest.version if latest else None)
    b = start_script(s, web, now, team=cfg.team, script="check", worker_type=cfg.type if not cfg.image else "",
                     config=script_config("check", cfg.image, {"ATC_EXTERNAL_URL": web.settings.web_url}),
                     request={"source": cfg.source, "version": version}, tags=r.config.get("tags") or [],
                     name=f"check {r.name}")
    builds.start(s, b, now)
    cfg.check_build_id = b.id
    return b


def check_now(s: Session, web: WebHost, r: ResourceRow, now: float, from_version: Data | None = None) -> BuildRow:
    """A check of the resource's config started at once (check-resource, the webhook), from `from_version` or the
    latest version. A check that ended but is not stored yet is stored first; Conflict while one runs, or when
    the resource cannot be checked or its pipeline is paused (the scheduler would never store the result)."""
    if r.config_id is None:
        raise Conflict(f"resource {r.name!r} cannot be checked (see its check error)")
    p = s.get(PipelineRow, r.pipeline_id)
    if p is not None and p.paused:
        raise Conflict(f"pipeline {p.name!r} is paused: its resources are not checked (unpause-pipeline first)")
    cfg = s.get(ResourceConfigRow, r.config_id, with_for_update=True)
    assert cfg is not None
    if cfg.check_build_id is not None:
        running = s.get(BuildRow, cfg.check_build_id)
        if running is not None and running.status not in TERMINAL_S:
            raise Conflict(f"a check of {r.name!r} is running (build {running.id}): wait for it to end")
        if running is not None:
            for gone in finish_check(s, cfg, running, now):
                web.artifacts.delete(gone)
        else:
            cfg.check_build_id = None
    return start_check(s, web, cfg, r, now, from_version)


def finish_check(s: Session, cfg: ResourceConfigRow, b: BuildRow, now: float) -> list[int]:
    """Stores what check build `b` found (or its error). Only the last check build of a config is kept (its log
    shows the last check); the one before it is deleted, so rows grow with versions, not with checks. Returns the
    deleted build ids (their artifacts are the caller's to delete)."""
    cfg.check_build_id, cfg.last_checked = None, now
    gone = []
    if cfg.last_check_build_id is not None and cfg.last_check_build_id != b.id:
        old = s.get(BuildRow, cfg.last_check_build_id)
        if old is not None and old.status in TERMINAL_S:
            s.delete(old)
            gone.append(old.id)
    cfg.last_check_build_id = b.id
    _store_check(s, cfg, b, now)
    return gone


def _store_check(s: Session, cfg: ResourceConfigRow, b: BuildRow, now: float) -> None:
    try:
        found = check_response(s, b)
    except ResourceError as e:
        cfg.failures += 1
        cfg.check_error = str(e)
        backoff = min((cfg.check_every or DEFAULT_CHECK_EVERY) * 2 ** cfg.failures, MAX_BACKOFF)
        cfg.next_check_at = now + backoff
        LOG.info("check failed", type=cfg.type, config=cfg.id, error=str(e), retry_in=backoff)
        return
    for v in found:
        save_version(s, cfg, v, [], now)
    cfg.failures, cfg.check_error = 0, ""
    cfg.next_check_at = now + cfg.check_every if cfg.check_every is not None else NEVER


def tick_checks(s: Session, web: WebHost, now: float) -> int:
    """Finishes ended checks and starts due ones. Returns how many checks started."""
    started = 0
    for cfg, _p, r in list(_active_configs(s)):
        if cfg.check_build_id is not None:
            b = s.get(BuildRow, cfg.check_build_id)
            if b is None or b.status in TERMINAL_S:
                if b is not None:
                    for gone in finish_check(s, cfg, b, now):
                        web.artifacts.delete(gone)
                else:
                    cfg.check_build_id = None
            continue
        if cfg.check_every is None or cfg.next_check_at > now:
            continue
        try:
            due = cfg.next_check_at
            start_check(s, web, cfg, r, now)
            web.observe_check_lag(now - due)
            started += 1
        except Exception as e:  # noqa: BLE001 - a config that cannot be checked keeps the error and backs off
            cfg.failures += 1
            cfg.check_error = f"check could not start: {e}"
            cfg.next_check_at = now + min((cfg.check_every or DEFAULT_CHECK_EVERY) * 2 ** cfg.failures, MAX_BACKOFF)
    return started


# --- the inputs of job builds ------------------------------------------------------------------------------
def _succeeded_with(s: Session, job_names: Sequence[str], p: PipelineRow, resource_id: int) -> set[int] | None:
    """Version ids that a succeeded build of every job in `job_names` fetched or produced."""
    result: set[int] | None = None
    for name in job_names:
        ids = set(s.scalars(select(JobBuildResourceRow.version_id)
                            .join(JobBuildRow, JobBuildResourceRow.job_build_id == JobBuildRow.id)
                            .join(JobRow, JobBuildRow.job_id == JobRow.id)
                            .where(JobRow.pipeline_id == p.id, JobRow.name == name,
                                   JobBuildRow.status == str(JobBuildStatus.succeeded),
                                   JobBuildResourceRow.resource_id == resource_id)).all())
        result = ids if result is None else result & ids
    return result


def fetched_by(s: Session, job_id: int, resource_id: int, name: str, kinds: Sequence[str] = ("get",)) -> set[int]:
    """Versions builds of the job fetched with the get step `name` (kinds ("get", "trigger"): or were
    triggered by, before they fetched it)."""
    return set(s.scalars(select(JobBuildResourceRow.version_id)
                         .join(JobBuildRow, JobBuildResourceRow.job_build_id == JobBuildRow.id)
                         .where(JobBuildRow.job_id == job_id, JobBuildResourceRow.resource_id == resource_id,
                                JobBuildResourceRow.name == name, JobBuildResourceRow.kind.in_(kinds))).all())


def triggered_version(s: Session, jb: JobBuildRow, name: str) -> ResourceVersionRow | None:
    """The version that triggered this build through its get step `name`, if one did."""
    vid = s.scalar(select(JobBuildResourceRow.version_id).where(JobBuildResourceRow.job_build_id == jb.id,
                                                                JobBuildResourceRow.name == name,
                                                                JobBuildResourceRow.kind == "trigger"))
    return s.get(ResourceVersionRow, vid) if vid is not None else None


def choose(s: Session, p: PipelineRow, job: JobRow, step: Data, r: ResourceRow) -> ResourceVersionRow | None:
    """The version a get step fetches now (None: no acceptable version yet)."""
    if r.config_id is None:
        raise ResourceError(f"resource {r.name!r} cannot be checked (see its check error)")
    q = select(ResourceVersionRow).where(ResourceVersionRow.config_id == r.config_id)
    if r.disabled_versions:
        q = q.where(ResourceVersionRow.id.not_in(r.disabled_versions))
    passed = step.get("passed") or []
    if passed:
        ok = _succeeded_with(s, passed, p, r.id) or set()
        q = q.where(ResourceVersionRow.id.in_(ok))
    want = step.get("version")
    pinned_in_config = r.config.get("version")  # `version:` on the resource pins it for every get
    if r.pinned_version_id is None and isinstance(pinned_in_config, dict):
        want = pinned_in_config
    if r.pinned_version_id is not None:
        q = q.where(ResourceVersionRow.id == r.pinned_version_id)
    elif isinstance(want, dict):
        q = q.where(ResourceVersionRow.version_hash == digest({k: str(v) for k, v in want.items()}))
    elif want == "every":
        used = fetched_by(s, job.id, r.id, step["get"], ("get", "trigger"))  # a build in flight has its version
        if used:
            newest_used = s.scalar(select(func.max(ResourceVersionRow.check_order))
                                   .where(ResourceVersionRow.id.in_(used))) or 0
            q = q.where(ResourceVersionRow.check_order > newest_used)
        return s.scalar(q.order_by(ResourceVersionRow.check_order).limit(1)) or (
            s.get(ResourceVersionRow, max(used)) if used else None)
    return s.scalar(q.order_by(ResourceVersionRow.check_order.desc()).limit(1))


def record(s: Session, jb: JobBuildRow, r: ResourceRow, v: ResourceVersionRow, name: str, kind: str) -> None:
    s.add(JobBuildResourceRow(job_build_id=jb.id, resource_id=r.id, version_id=v.id, name=name, kind=kind))


def gets(steps: Sequence[Data]) -> Iterator[Data]:
    """Every get step of a plan (nested in do, in_parallel and try included)."""
    for step in steps:
        if "get" in step:
            yield step
        for key in ("do", "in_parallel"):
            sub = step.get(key)
            if isinstance(sub, dict):
                sub = sub.get("steps")
            if isinstance(sub, list):
                yield from gets(sub)
        if isinstance(step.get("try"), dict):
            yield from gets([step["try"]])
