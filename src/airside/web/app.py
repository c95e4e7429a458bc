"""The web API's composition root: `create_app(settings)` builds the `Web` service, includes the routers and
installs the middleware and error mapping; `serve(settings)` runs the app under uvicorn.

Layout of `airside.web`: `service.Web` holds the process's state and loops; `deps` hands it (and the
caller's `Principal`) to handlers; the routers `api_ops`, `api_workers` and `api_builds` hold the route
handlers. Nothing in `airside.web` imports this module; `Web` and `worker_view` are re-exported here for
the callers that import them from `airside.web.app`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

import airside
from airside.config import Settings
from airside.core import log, routes
from airside.web import api_builds, api_ops, api_pipelines, api_resources, api_workers, db
from airside.web.api_workers import worker_view
from airside.web.errors import DomainError
from airside.web.limits import BodyLimit
from airside.web.service import Web

__all__ = ["TLSError", "Web", "create_app", "serve", "tls_options", "worker_view"]

LOG = log.get("airside.web")


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> FastAPI:
    """The app over a new `Web`: waits for the database (up to database_wait_timeout), migrates it when
    auto_migrate is set; the Web's background loops run while the app's lifespan lasts."""
    web = Web(settings, clock)
    db.wait_until_reachable(web.engine, settings.database_wait_timeout, lambda error, delay: LOG.warning(
        "waiting for the database", url=web.engine.url.render_as_string(hide_password=True), error=error,
        retry_in=round(delay, 1)))
    if settings.auto_migrate:
        db.migrate(web.engine)

    app = FastAPI(title="airside", version=airside.__version__, lifespan=_lifespan(web))
    app.state.web = web
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes, exempt=routes.ARTIFACT_PATH_RE)
    app.exception_handler(DomainError)(_domain_error)
    app.middleware("http")(_counter(web))
    for r in (api_ops.router, api_workers.router, api_builds.router, api_pipelines.router,
              api_resources.router):
        app.include_router(r)
    return app


def _lifespan(web: Web) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
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

    return lifespan


async def _domain_error(_req: Request, exc: DomainError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


def _counter(web: Web) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Middleware: counts each response by route template (not the raw path) and status."""

    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        route = request.scope.get("route")
        web.metrics.requests.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    return count


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
