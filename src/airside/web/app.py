"""The web API (FastAPI). `create_app(settings)` builds it; `serve(settings)` runs it under uvicorn."""


import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session

import airside
from airside.config import Settings
from airside.core import log, routes
from airside.core.schemas import Heartbeat, Worker, WorkerObject, WorkerRegistration
from airside.web import api_builds, builds, db, registry
from airside.web.artifacts import ArtifactStore
from airside.web.auth import Authenticator, Principal, require_operator, require_self
from airside.web.db import BuildRow, WorkerRow
from airside.web.errors import DomainError
from airside.web.limits import BodyLimit
from airside.web.metrics import Metrics

LOG = log.get("airside.web")


def worker_view(row: WorkerRow, now: float) -> Worker:
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


class Web:
    """Everything one web process holds: engine, session factory, authenticator, metrics."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.clock = settings, clock
        self.engine = db.make_engine(settings.resolved_database_url)
        self.sessions = db.sessions(self.engine)
        self.auth = Authenticator(settings)
        self.metrics = Metrics(self.sessions)
        self.artifacts = ArtifactStore(settings.data_dir / "artifacts")
        self._wake: asyncio.Event | None = None
        self._placed: asyncio.Event | None = None  # set when this process placed builds: wakes long-polls
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.started_at = clock()
        self.kubernetes = None
        if settings.runtime == "kubernetes" or settings.kubernetes_artifact_url:
            from airside.web.kube_dispatch import KubeDispatcher

            self.kubernetes = KubeDispatcher(self)

    def tx(self) -> contextlib.AbstractContextManager[Session]:
        return db.transaction(self.sessions)

    def sweep_once(self) -> tuple[list[str], list[str]]:
        now = self.clock()
        if now - self.started_at < self.settings.heartbeat_ttl:
            # web itself was away: give every worker one TTL to reach this process before calling it stalled
            # (silent workers still get no new work meanwhile: scheduling checks heartbeat freshness itself)
            return [], []
        with self.tx() as s:
            result = registry.sweep(s, now, self.settings.heartbeat_ttl, self.settings.stalled_prune_after)
        with self.sessions() as s:
            expired = [b.id for b in s.query(BuildRow.id).filter(BuildRow.finished_at < now - self.settings.artifact_ttl)]
        for build_id in expired:
            self.artifacts.delete(build_id)
        return result

    def schedule_once(self) -> list[tuple[int, str]]:
        with self.tx() as s:
            placed = builds.schedule(s, self.clock(), self.settings.heartbeat_ttl, self.settings.scheduler_strategy)
            for build_id, _worker in placed:
                b = s.get(BuildRow, build_id)
                if b is not None and b.queued_at is not None:
                    self.metrics.queue_wait.observe(max(0.0, self.clock() - b.queued_at))
        if placed:
            self.assignments_changed()
        if self.kubernetes is not None:
            self.kubernetes.tick()
        return placed

    def assignments_changed(self) -> None:
        """Wakes the workers' long-polls waiting in this process (callable from any thread)."""
        if self._event_loop is not None:
            self._event_loop.call_soon_threadsafe(self._pulse)

    def _pulse(self) -> None:
        ev, self._placed = self._placed, asyncio.Event()
        if ev is not None:
            ev.set()

    async def assignment_change(self, timeout: float) -> None:
        """Waits until this process changes assignments, or `timeout` passes (other web replicas change them
        too, so callers re-read the database after either)."""
        ev = self._placed
        if ev is None:
            await asyncio.sleep(timeout)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), timeout)

    def wake_scheduler(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def observe_finished(self, b: BuildRow) -> None:
        self.metrics.observe_build(b)

    async def _loop(self, what: str, fn: Callable[[], object], interval: float, wake: asyncio.Event | None = None) -> None:
        while True:
            try:
                await asyncio.to_thread(fn)
            except Exception:  # noqa: BLE001 - a failed round must not kill the loop; log and retry
                LOG.exception(f"{what} failed")
            if wake is None:
                await asyncio.sleep(interval)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()

    def background(self) -> list[asyncio.Task]:
        self._wake, self._placed = asyncio.Event(), asyncio.Event()
        self._event_loop = asyncio.get_running_loop()
        return [asyncio.create_task(self._loop("registry sweep", self.sweep_once, self.settings.sweep_interval)),
                asyncio.create_task(self._loop("scheduler", self.schedule_once, 1.0, self._wake))]


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> FastAPI:
    web = Web(settings, clock)
    db.wait_until_reachable(web.engine, settings.database_wait_timeout, lambda error, delay: LOG.warning(
        "waiting for the database", url=web.engine.url.render_as_string(hide_password=True), error=error,
        retry_in=round(delay, 1)))
    if settings.auto_migrate:
        db.migrate(web.engine)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tasks = web.background()
        LOG.info("web ready", database=web.engine.url.render_as_string(hide_password=True))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        web.engine.dispose()

    app = FastAPI(title="airside", version=airside.__version__, lifespan=lifespan)
    app.state.web = web
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, exempt=routes.ARTIFACT_PATH_RE)
    Caller = Annotated[Principal, Depends(web.auth)]

    @app.exception_handler(DomainError)
    async def _domain_error(_req: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        web.metrics.requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    # --- health -------------------------------------------------------------------------------
    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/readyz", response_class=PlainTextResponse)
    def readyz() -> str:
        try:
            with web.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            current, head = db.current_revision(web.engine), db.head_revision()
        except Exception as e:  # noqa: BLE001 - any DB failure means not ready
            raise HTTPException(503, f"database unavailable: {e.__class__.__name__}") from e
        if current != head:
            raise HTTPException(503, f"database at migration {current}, code expects {head}: run `airside migrate`")
        return "ready"

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(web.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.api_route(routes.INFO.path, methods=[routes.INFO.method])
    def info() -> dict:
        return {"version": airside.__version__, "heartbeat_ttl": settings.heartbeat_ttl}

    # --- workers ------------------------------------------------------------------------------
    @app.api_route(routes.REGISTER_WORKER.path, methods=[routes.REGISTER_WORKER.method], response_model=Worker)
    def register_worker(reg: WorkerRegistration, p: Caller) -> Worker:
        require_self(p, reg.name)
        with web.tx() as s:
            return worker_view(registry.register(s, reg, web.clock()), web.clock())

    @app.api_route(routes.LIST_WORKERS.path, methods=[routes.LIST_WORKERS.method], response_model=list[Worker])
    def list_workers(p: Caller) -> list[Worker]:
        require_operator(p)
        now = web.clock()
        with web.sessions() as s:
            return [worker_view(r, now) for r in registry.all_workers(s)]

    @app.api_route(routes.GET_WORKER.path, methods=[routes.GET_WORKER.method], response_model=Worker)
    def get_worker(name: str, p: Caller) -> Worker:
        require_self(p, name)
        with web.tx() as s:
            return worker_view(registry.get(s, name), web.clock())

    @app.api_route(routes.HEARTBEAT.path, methods=[routes.HEARTBEAT.method], response_model=Worker)
    def heartbeat(name: str, hb: Heartbeat, p: Caller) -> Worker:
        require_self(p, name)
        with web.tx() as s:
            row = registry.heartbeat(s, name, hb, web.clock())
            web.metrics.heartbeats.inc()
            return worker_view(row, web.clock())

    @app.api_route(routes.LAND_WORKER.path, methods=[routes.LAND_WORKER.method], response_model=Worker)
    def land_worker(name: str, p: Caller) -> Worker:
        require_self(p, name)
        with web.tx() as s:
            return worker_view(registry.land(s, name, web.clock()), web.clock())

    @app.api_route(routes.RETIRE_WORKER.path, methods=[routes.RETIRE_WORKER.method], response_model=Worker)
    def retire_worker(name: str, p: Caller) -> Worker:
        require_self(p, name)
        with web.tx() as s:
            return worker_view(registry.retire(s, name, web.clock()), web.clock())

    EpochParam = Annotated[str, Query(pattern=r"^[0-9a-f]{12,20}-[0-9a-f]{8}$")]

    @app.api_route(routes.WORKER_LANDED.path, methods=[routes.WORKER_LANDED.method], response_model=Worker)
    def worker_landed(name: str, boot_epoch: EpochParam, p: Caller) -> Worker:
        require_self(p, name)
        with web.tx() as s:
            return worker_view(registry.landed(s, name, boot_epoch, web.clock()), web.clock())

    @app.api_route(routes.DELETE_WORKER.path, methods=[routes.DELETE_WORKER.method], status_code=204)
    def delete_worker(name: str, boot_epoch: EpochParam, p: Caller) -> Response:
        require_self(p, name)
        with web.tx() as s:
            registry.remove(s, name, boot_epoch, web.clock())
        return Response(status_code=204)

    @app.api_route(routes.PRUNE_WORKER.path, methods=[routes.PRUNE_WORKER.method], status_code=204)
    def prune_worker(name: str, p: Caller) -> Response:
        require_operator(p)
        with web.tx() as s:
            registry.prune(s, name, web.clock())
        return Response(status_code=204)

    @app.api_route(routes.WORKER_OBJECTS.path, methods=[routes.WORKER_OBJECTS.method], response_model=list[WorkerObject])
    def worker_objects(name: str, p: Caller) -> list[WorkerObject]:
        require_operator(p)
        with web.sessions() as s:
            return [WorkerObject.model_validate(
                {"handle": o.handle, "kind": o.kind, "worker_name": o.worker_name, "boot_epoch": o.boot_epoch,
                 "created_at": o.created_at}) for o in registry.objects(s, name)]

    app.include_router(api_builds.router(web))
    return app


class TLSError(Exception):
    """web's certificate or key cannot be used."""


def tls_options(settings: Settings) -> dict[str, str]:
    """uvicorn's ssl_* options, after proving the certificate and key load and belong together (uvicorn
    would fail later with a bare ssl error that names neither file)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    cert, key = settings.tls_cert_file, settings.tls_key_file
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except OSError as e:
        raise TLSError(f"tls_cert_file {cert} / tls_key_file {key}: {e.strerror or e}") from e
    except ssl.SSLError as e:
        raise TLSError(f"tls_cert_file {cert} / tls_key_file {key}: not a PEM certificate chain and its "
                       f"private key ({e.reason or e})") from e
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def serve(settings: Settings) -> None:
    tls = tls_options(settings)
    app = create_app(settings)
    LOG.info("web listening", url=f"{settings.web_scheme}://{settings.bind_host}:{settings.bind_port}",
             tls=bool(tls))
    # keep-alive longer than the heartbeat interval: workers reuse one connection instead of racing the
    # server's close of an idle one (uvicorn's default is 5 s; 75 s is what load balancers commonly expect)
    uvicorn.run(app, host=settings.bind_host, port=settings.bind_port, log_config=None, access_log=False,
                timeout_keep_alive=75, **tls)  # type: ignore[arg-type]
