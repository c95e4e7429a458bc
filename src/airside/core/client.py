"""The web API client, used by the worker beacon and the operator CLI."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from airside.config import env_name
from airside.core import routes
from airside.core.schemas import (
    Build,
    BuildCreate,
    CheckStarted,
    Heartbeat,
    Job,
    JobBuild,
    Pipeline,
    PipelineConfigView,
    PipelineSet,
    PipelineSetResult,
    Resource,
    ResourceCheck,
    ResourceVersion,
    Version,
    Worker,
    WorkerObject,
    WorkerRegistration,
)


class WebError(Exception):
    """web answered with an error the caller can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WebUnreachable(WebError):
    def __init__(self, url: str, cause: Exception) -> None:
        message = f"cannot reach web at {url}: {cause.__class__.__name__}: {cause or ''}".rstrip(": ")
        if "CERTIFICATE_VERIFY_FAILED" in str(cause):
            message += (f" (is {env_name('tls_ca_file')} / --tls-ca-file the CA that signed web's certificate, "
                        "and does the certificate name the host of web_url?)")
        super().__init__(0, message)


def problem_detail(resp: httpx.Response) -> str:
    """The message of an error response (FastAPI `detail`, validation errors joined by field; a list of
    problems, as set-pipeline's 422 has, one per line)."""
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text
    if isinstance(detail, list) and all(isinstance(d, str) for d in detail):
        detail = "\n".join(detail)
    elif isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail)


def tls_verify(url: str, ca_file: Path | None) -> ssl.SSLContext | bool:
    """How a client verifies web: https URLs against `ca_file` (tls_ca_file) or the system's CAs. Plain
    http never uses TLS, so it skips building an SSL context (~80 ms of every CLI start)."""
    if url.startswith("http://"):
        return False
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as e:
        raise WebError(0, f"tls_ca_file {ca_file}: cannot load CA certificates: {e}") from e


class WebClient:
    def __init__(self, base_url: str, auth: httpx.Auth | None = None, timeout: float = 10.0,
                 ca_file: Path | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, auth=auth, timeout=timeout,
                                 verify=tls_verify(self.base_url, ca_file))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, route: routes.Route, *, json: Any = None, params: dict | None = None, **path: str) -> Any:
        try:
            resp = self.http.request(route.method, route.url(**path), json=json, params=params)
        except httpx.TransportError as e:
            raise WebUnreachable(self.base_url, e) from e
        if resp.status_code >= 400:
            raise WebError(resp.status_code, f"web said {resp.status_code}: {problem_detail(resp)}")
        return resp.json() if resp.content else None

    # workers ---------------------------------------------------------------------------------
    def register(self, reg: WorkerRegistration) -> Worker:
        return Worker.model_validate(self.call(routes.REGISTER_WORKER, json=reg.model_dump(mode="json")))

    def heartbeat(self, name: str, hb: Heartbeat) -> Worker:
        return Worker.model_validate(self.call(routes.HEARTBEAT, json=hb.model_dump(mode="json"), name=name))

    def workers(self) -> list[Worker]:
        return [Worker.model_validate(w) for w in self.call(routes.LIST_WORKERS)]

    def worker(self, name: str) -> Worker:
        return Worker.model_validate(self.call(routes.GET_WORKER, name=name))

    def land(self, name: str) -> Worker:
        return Worker.model_validate(self.call(routes.LAND_WORKER, name=name))

    def retire(self, name: str) -> Worker:
        return Worker.model_validate(self.call(routes.RETIRE_WORKER, name=name))

    def landed(self, name: str, boot_epoch: str) -> Worker:
        return Worker.model_validate(self.call(routes.WORKER_LANDED, params={"boot_epoch": boot_epoch}, name=name))

    def delete(self, name: str, boot_epoch: str) -> None:
        self.call(routes.DELETE_WORKER, params={"boot_epoch": boot_epoch}, name=name)

    def prune(self, name: str) -> None:
        self.call(routes.PRUNE_WORKER, name=name)

    def objects(self, name: str) -> list[WorkerObject]:
        return [WorkerObject.model_validate(o) for o in self.call(routes.WORKER_OBJECTS, name=name)]

    # builds -------------------------------------------------------------------------------------------
    def create_build(self, req: BuildCreate) -> Build:
        return Build.model_validate(self.call(routes.CREATE_BUILD, json=req.model_dump(mode="json")))

    def build(self, build_id: int) -> Build:
        return Build.model_validate(self.call(routes.GET_BUILD, build_id=str(build_id)))

    def builds(self, limit: int = 50) -> list[Build]:
        return [Build.model_validate(b) for b in self.call(routes.LIST_BUILDS, params={"limit": limit})]

    def start_build(self, build_id: int) -> Build:
        return Build.model_validate(self.call(routes.START_BUILD, build_id=str(build_id)))

    def abort_build(self, build_id: int) -> Build:
        return Build.model_validate(self.call(routes.ABORT_BUILD, build_id=str(build_id)))

    def upload(self, route: routes.Route, body: Iterable[bytes], encoding: str = "zstd",
               params: dict | None = None, **path: str) -> None:
        headers = {"Content-Encoding": encoding} if encoding != "identity" else {}
        try:
            resp = self.http.request(route.method, route.url(**path), content=body, headers=headers, params=params,
                                     timeout=httpx.Timeout(30.0, read=None, write=None))
        except httpx.TransportError as e:
            raise WebUnreachable(self.base_url, e) from e
        if resp.status_code >= 400:
            raise WebError(resp.status_code, f"web said {resp.status_code}: {problem_detail(resp)}")

    @contextlib.contextmanager
    def download(self, route: routes.Route, **path: str) -> Iterator[tuple[Iterator[bytes], str]]:
        """Yields (raw byte chunks as stored, content encoding)."""
        try:
            with self.http.stream(route.method, route.url(**path), timeout=httpx.Timeout(30.0, read=None)) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise WebError(resp.status_code, f"web said {resp.status_code}: {problem_detail(resp)}")
                yield resp.iter_raw(), resp.headers.get("content-encoding", "identity")
        except httpx.TransportError as e:
            raise WebUnreachable(self.base_url, e) from e

    def events(self, build_id: int, after: int = -1) -> Iterator[dict]:
        """Follows a build's server-sent events until the build ends (reconnecting where it left off)."""
        cursor = {"after": after}
        for kind, data in self._follow(routes.BUILD_EVENTS.url(build_id=str(build_id)), cursor):
            if kind == "end":
                yield {"kind": "end", **data}
                return
            cursor["after"] = data["seq"]
            yield data

    def _follow(self, url: str, params: dict) -> Iterator[tuple[str, dict]]:
        """(event, data) of a server-sent event stream; on a lost connection it follows again with `params`
        as the caller has updated them by then (the caller returns at its end event)."""
        while True:
            try:
                with self.http.stream("GET", url, params=params, timeout=httpx.Timeout(30.0, read=60.0)) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise WebError(resp.status_code, f"web said {resp.status_code}: {problem_detail(resp)}")
                    kind = "message"
                    for line in resp.iter_lines():
                        if line.startswith("event: "):
                            kind = line[7:]
                        elif line.startswith("data: "):
                            yield kind, json.loads(line[6:])
            except (httpx.TransportError, httpx.StreamError):
                time.sleep(1.0)  # web restarting: follow again from the last event seen

    # pipelines ------------------------------------------------------------------------------------------
    def pipelines(self, team: str) -> list[Pipeline]:
        return [Pipeline.model_validate(p) for p in self.call(routes.LIST_PIPELINES, team=team)]

    def pipeline(self, team: str, name: str) -> Pipeline:
        return Pipeline.model_validate(self.call(routes.GET_PIPELINE, team=team, pipeline=name))

    def pipeline_config(self, team: str, name: str) -> PipelineConfigView:
        return PipelineConfigView.model_validate(self.call(routes.GET_PIPELINE_CONFIG, team=team, pipeline=name))

    def set_pipeline(self, team: str, name: str, req: PipelineSet) -> PipelineSetResult:
        return PipelineSetResult.model_validate(self.call(routes.SET_PIPELINE, json=req.model_dump(mode="json"),
                                                          team=team, pipeline=name))

    def destroy_pipeline(self, team: str, name: str) -> None:
        self.call(routes.DESTROY_PIPELINE, team=team, pipeline=name)

    def pause_pipeline(self, team: str, name: str) -> Pipeline:
        return Pipeline.model_validate(self.call(routes.PAUSE_PIPELINE, team=team, pipeline=name))

    def unpause_pipeline(self, team: str, name: str) -> Pipeline:
        return Pipeline.model_validate(self.call(routes.UNPAUSE_PIPELINE, team=team, pipeline=name))

    def jobs(self, team: str, pipeline: str) -> list[Job]:
        return [Job.model_validate(j) for j in self.call(routes.LIST_JOBS, team=team, pipeline=pipeline)]

    def job(self, team: str, pipeline: str, job: str) -> Job:
        return Job.model_validate(self.call(routes.GET_JOB, team=team, pipeline=pipeline, job=job))

    def pause_job(self, team: str, pipeline: str, job: str) -> Job:
        return Job.model_validate(self.call(routes.PAUSE_JOB, team=team, pipeline=pipeline, job=job))

    def unpause_job(self, team: str, pipeline: str, job: str) -> Job:
        return Job.model_validate(self.call(routes.UNPAUSE_JOB, team=team, pipeline=pipeline, job=job))

    def job_builds(self, team: str, pipeline: str, job: str, limit: int = 50) -> list[JobBuild]:
        return [JobBuild.model_validate(b) for b in self.call(routes.LIST_JOB_BUILDS, params={"limit": limit},
                                                              team=team, pipeline=pipeline, job=job)]

    def trigger_job(self, team: str, pipeline: str, job: str) -> JobBuild:
        return JobBuild.model_validate(self.call(routes.TRIGGER_JOB, team=team, pipeline=pipeline, job=job))

    def job_build(self, team: str, pipeline: str, job: str, build: str) -> JobBuild:
        return JobBuild.model_validate(self.call(routes.GET_JOB_BUILD, team=team, pipeline=pipeline, job=job,
                                                 build=build))

    def rerun_build(self, team: str, pipeline: str, job: str, build: str) -> JobBuild:
        return JobBuild.model_validate(self.call(routes.RERUN_JOB_BUILD, team=team, pipeline=pipeline, job=job,
                                                 build=build))

    def abort_job_build(self, team: str, pipeline: str, job: str, build: str) -> JobBuild:
        return JobBuild.model_validate(self.call(routes.ABORT_JOB_BUILD, team=team, pipeline=pipeline, job=job,
                                                 build=build))

    def job_build_events(self, team: str, pipeline: str, job: str, build: str) -> Iterator[dict]:
        """Follows every step of a job build: `{"kind": "step", ...}` as a step build appears, its events
        (with `step` and `build_id`), and `{"kind": "end", "status": ...}` (reconnecting where it left off)."""
        url = routes.JOB_BUILD_EVENTS.url(team=team, pipeline=pipeline, job=job, build=build)
        last: dict[int, int] = {}
        cursor = {"after": ""}
        for kind, data in self._follow(url, cursor):
            if kind == "end":
                yield {"kind": "end", **data}
                return
            if kind == "step":
                last.setdefault(data["build_id"], -1)
                yield {"kind": "step", **data}
            else:
                last[data["build_id"]] = max(last.get(data["build_id"], -1), data["seq"])
                yield data
            cursor["after"] = ",".join(f"{b}:{seq}" for b, seq in sorted(last.items()))

    # resources ------------------------------------------------------------------------------------------
    def resources(self, team: str, pipeline: str) -> list[Resource]:
        return [Resource.model_validate(r) for r in self.call(routes.LIST_RESOURCES, team=team, pipeline=pipeline)]

    def resource(self, team: str, pipeline: str, resource: str) -> Resource:
        return Resource.model_validate(self.call(routes.GET_RESOURCE, team=team, pipeline=pipeline, resource=resource))

    def resource_versions(self, team: str, pipeline: str, resource: str, limit: int = 100,
                          match: Version | None = None) -> list[ResourceVersion]:
        """Newest first; with `match`, only the versions whose fields include all of it."""
        params = {"limit": limit, "filter": [f"{k}:{v}" for k, v in (match or {}).items()]}
        return [ResourceVersion.model_validate(v) for v in self.call(routes.RESOURCE_VERSIONS, params=params, team=team,
                                                                     pipeline=pipeline, resource=resource)]

    def check_resource(self, team: str, pipeline: str, resource: str, from_version: Version | None = None) -> CheckStarted:
        body = ResourceCheck.model_validate({"from": from_version}).model_dump(mode="json", by_alias=True)
        return CheckStarted.model_validate(self.call(routes.CHECK_RESOURCE, json=body, team=team, pipeline=pipeline,
                                                     resource=resource))

    def _resource_change(self, route: routes.Route, team: str, pipeline: str, resource: str,
                         version_id: int | None = None) -> Resource:
        if version_id is None:
            return Resource.model_validate(self.call(route, team=team, pipeline=pipeline, resource=resource))
        return Resource.model_validate(self.call(route, team=team, pipeline=pipeline, resource=resource,
                                                 version_id=str(version_id)))

    def pin_resource_version(self, team: str, pipeline: str, resource: str, version_id: int) -> Resource:
        return self._resource_change(routes.PIN_RESOURCE_VERSION, team, pipeline, resource, version_id)

    def unpin_resource(self, team: str, pipeline: str, resource: str) -> Resource:
        return self._resource_change(routes.UNPIN_RESOURCE, team, pipeline, resource)

    def enable_resource_version(self, team: str, pipeline: str, resource: str, version_id: int) -> Resource:
        return self._resource_change(routes.ENABLE_RESOURCE_VERSION, team, pipeline, resource, version_id)

    def disable_resource_version(self, team: str, pipeline: str, resource: str, version_id: int) -> Resource:
        return self._resource_change(routes.DISABLE_RESOURCE_VERSION, team, pipeline, resource, version_id)
