"""The volume server's HTTP layer (FastAPI): each handler parses the request, calls the repository (or the
stream services beside it: `peer.stream_from`, `Repository.stream_out`) and returns what it answered.
Errors are mapped here and only here: a `VolumeError` (`errors`) becomes ``{"detail": message}`` with its
status (404/409/413/422/400/502), an OSError a 500; FastAPI's own 422 covers malformed requests.

Every route but ``/healthz`` needs ``Authorization: Bearer <token>``. The app is built by
`server.create_app` (which opens the repository and resolves the token); uvicorn should run it wrapped in
`splice.with_transport`, or raw stream-out takes the copying path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

import airside
from airside.baggageclaim import peer, routes, splice
from airside.baggageclaim.errors import VolumeError
from airside.baggageclaim.repository import Repository
from airside.baggageclaim.schemas import (
    TTL,
    Encoding,
    Handle,
    Info,
    PropertyValue,
    PropName,
    Size,
    StreamFrom,
    StreamResult,
    Volume,
    VolumeSpec,
)
from airside.baggageclaim.threads import feed_thread
from airside.core import auth, log
from airside.core.routes import Route

LOG = log.get("airside.baggageclaim")


def create_api(repo: Repository, token: str, *, sweep_interval: float) -> FastAPI:
    """The API over `repo`, guarded by `token`; while it runs, expired volumes are swept every
    `sweep_interval` seconds. ``app.state.repository`` is `repo`."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                await asyncio.sleep(sweep_interval)
                try:
                    await asyncio.to_thread(repo.expire)
                except Exception:  # noqa: BLE001 - a failed sweep must not stop the loop
                    LOG.exception("volume expiry sweep failed")

        task = asyncio.create_task(sweeper())
        LOG.info("volume server ready", driver=repo.driver.name, root=str(repo.fs.root), volumes=len(repo.volumes))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        given = authorization[7:] if authorization and authorization.startswith("Bearer ") else None
        if not auth.tokens_equal(given, token):
            raise HTTPException(401, "missing or wrong bearer token for the volume server (baggageclaim_token)",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="airside baggageclaim", version=airside.__version__, lifespan=lifespan)
    app.state.repository = repo
    api = APIRouter(dependencies=[Depends(require_token)])

    @app.exception_handler(VolumeError)
    async def _volume_error(_req: Request, exc: VolumeError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(OSError)
    async def _os_error(_req: Request, exc: OSError) -> JSONResponse:
        LOG.error("volume operation failed", error=str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=500)

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    def route(r: Route, **kw: Any) -> Callable:
        return api.api_route(r.path, methods=[r.method], **kw)

    @route(routes.INFO, response_model=Info)
    def info() -> Info:
        return Info(version=airside.__version__, driver=repo.driver.name, volumes=len(repo.volumes))

    @route(routes.CREATE_VOLUME, response_model=Volume, status_code=201)
    def create_volume(spec: VolumeSpec) -> Volume:
        return repo.create(spec)

    @route(routes.IMPORT_VOLUME, response_model=Volume, status_code=201)
    async def import_volume(
        request: Request,
        handle: Annotated[Handle | None, Query()] = None,
        privileged: bool = False,
        ttl: Annotated[float, Query(ge=0)] = 0.0,
        encoding: Encoding = "raw",
        property: Annotated[list[str] | None, Query(description="name=value, repeatable")] = None,
    ) -> Volume:
        props = {}
        for p in property or []:
            name, sep, value = p.partition("=")
            if not sep:
                raise HTTPException(422, f"property {p!r}: expected name=value")
            props[name] = value
        spec = VolumeSpec(handle=handle, privileged=privileged, ttl=ttl, properties=props)
        return await feed_thread(request.stream(), lambda chunks: repo.import_(spec, chunks, encoding))

    @route(routes.LIST_VOLUMES, response_model=list[Volume])
    def list_volumes(request: Request) -> list[Volume]:
        return repo.list(dict(request.query_params))

    @route(routes.GET_VOLUME, response_model=Volume)
    def get_volume(handle: str) -> Volume:
        return repo.get(handle)

    @route(routes.SET_PROPERTY, response_model=Volume)
    def set_property(handle: str, name: PropName, body: PropertyValue) -> Volume:
        return repo.set_property(handle, name, body.value)

    @route(routes.SET_TTL, response_model=Volume)
    def set_ttl(handle: str, body: TTL) -> Volume:
        return repo.set_ttl(handle, body.ttl)

    @route(routes.DESTROY_VOLUME)
    def destroy_volume(handle: str, cascade: bool = False) -> dict:
        return {"destroyed": repo.destroy(handle, cascade=cascade)}

    @route(routes.VOLUME_SIZE, response_model=Size)
    def volume_size(handle: str) -> Size:
        return Size(bytes=repo.size(handle))

    @route(routes.STREAM_IN, response_model=StreamResult)
    async def stream_in(request: Request, handle: str, path: str = "", encoding: Encoding = "raw") -> StreamResult:
        repo.readable(handle)  # 404/409 before reading the body
        entries = await feed_thread(request.stream(), lambda chunks: repo.stream_in(handle, path, chunks, encoding))
        return StreamResult(entries=entries)

    @route(routes.STREAM_FROM, response_model=StreamResult)
    async def stream_from(handle: str, body: StreamFrom) -> StreamResult:
        repo.readable(handle)
        return StreamResult(entries=await asyncio.to_thread(peer.stream_from, repo, handle, body, token))

    @route(routes.STREAM_OUT)
    async def stream_out(request: Request, handle: str, path: str = "", encoding: Encoding = "raw") -> Response:
        tar = repo.stream_out(handle, path, encoding)
        spliced = splice.spliced_tar(request.scope, tar)
        if spliced is not None:
            return spliced
        return StreamingResponse(tar.chunks(), media_type=tar.media_type)

    app.include_router(api)
    return app
