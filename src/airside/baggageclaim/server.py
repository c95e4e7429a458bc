"""The volume server API (FastAPI) and the ways to run it.

Embedding (the worker does this; `airside baggageclaim` runs it alone)::

    from airside.baggageclaim.server import BackgroundServer, create_app, open_repository, serve

    bc = BackgroundServer(settings).start()   # uvicorn in a daemon thread; start-up errors raise here
    bc.url                                    # "http://127.0.0.1:7788" (the real port if bind port is 0)
    bc.repository                             # the Repository, for in-process calls
    ...
    bc.stop()                                 # or use it as a context manager

    app = create_app(settings)                # just the FastAPI app (opens the volume dir, recovers volumes)
    serve(settings)                           # blocking, for the CLI

Start-up chooses the driver (`detect`), sweeps ``init/`` and ``dead/`` and recovers live volumes;
`DriverUnavailable` (message names the fix) is raised when the volume dir cannot work. Every route
but ``/healthz`` needs ``Authorization: Bearer <baggageclaim token>``. Errors are
``{"detail": "<what was wrong, naming the volume/entry/field>"}`` with 404/409/413/422/400/502.

A raw stream-from between two of these servers over plain http does not copy the data through Python
(`zerocopy`): the sending side splices tar's output into its socket (uvicorn's transport, which
`with_transport` puts in the request scope), the receiving side splices member data from its socket into
tar x. Everything else (compression, TLS, proxies, other ASGI servers) takes the copying path.
"""

import asyncio
import contextlib
import fcntl
import http.client
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import uvicorn
import zstandard
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

import airside
from airside.baggageclaim import detect, routes, tarpipe, zerocopy
from airside.baggageclaim.errors import PeerError, VolumeError
from airside.baggageclaim.filesystem import Filesystem
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
from airside.config import Settings, secret
from airside.core import auth, log

LOG = log.get("airside.baggageclaim")
CHUNK = 1 << 20
MIN_SEND = 256 << 10  # stream-out sends chunks of at least this much (but the last)
F_SETPIPE_SZ = 1031
DRAIN_AFTER_ERROR = 64 << 20  # bytes of an unwanted body read and dropped so the client sees the answer
TRANSPORT = "airside.transport"  # scope key: the connection's asyncio/uvloop transport (`with_transport`)


def resolve_token(settings: Settings) -> str:
    """The API token: baggageclaim_token, else one generated once in data_dir/baggageclaim-token."""
    return secret(settings.baggageclaim_token) or auth.ensure_secret_file(settings.data_dir / "baggageclaim-token")


def open_repository(settings: Settings) -> Repository:
    volumes_dir = settings.resolved_volumes_dir
    driver, root = detect.choose(settings.baggageclaim_driver, volumes_dir, settings.baggageclaim_btrfs_image_mib)
    repo = Repository(Filesystem(root, driver), driver, stream_max_bytes=settings.baggageclaim_stream_max_bytes)
    repo.recover()
    return repo


async def _feed_thread(request: Request, work: Callable[[Iterator[bytes]], Any]) -> Any:
    """Runs work(chunks) in a thread while the request body is fed to it as chunks."""
    q: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
    finished = threading.Event()

    def chunks() -> Iterator[bytes]:
        while (item := q.get()) is not None:
            yield item

    def run() -> Any:
        try:
            return work(chunks())
        finally:
            finished.set()

    def put_blocking(item: bytes | None) -> None:
        while not finished.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    fut = asyncio.get_running_loop().run_in_executor(None, run)
    dropped = 0
    async for chunk in request.stream():
        if finished.is_set():
            dropped += len(chunk)
            if dropped > DRAIN_AFTER_ERROR:
                break
            continue
        if not chunk:
            continue
        try:
            q.put_nowait(chunk)
        except queue.Full:
            await asyncio.to_thread(put_blocking, chunk)
    if not finished.is_set():
        try:
            q.put_nowait(None)
        except queue.Full:
            await asyncio.to_thread(put_blocking, None)
    return await fut


def _compressor(encoding: str) -> Any:
    if encoding == "zstd":
        return zstandard.ZstdCompressor(level=3).compressobj()
    if encoding == "gzip":
        return zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return None


def prefetch(chunks: Iterator[bytes], depth: int = 16) -> Iterator[bytes]:
    """Iterates `chunks` in a thread of its own, `depth` chunks ahead (the network read overlaps the
    extraction); its errors are raised here. Stopping early stops the thread at its next chunk."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(("chunk", chunk), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(("error", e))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=run, name="stream-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "chunk":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()


def _peer_detail(status: int, body: bytes, src: StreamFrom) -> PeerError:
    text = body.decode(errors="replace")
    try:
        detail = json.loads(text).get("detail", text)
    except (ValueError, AttributeError):
        detail = text
    return PeerError(f"volume server {src.url} answered {status} for volume {src.handle!r}: {detail}")


def _peer_what(src: StreamFrom) -> str:
    return f"streaming volume {src.handle!r} from {src.url} failed"


def _peer_failed(src: StreamFrom, e: BaseException) -> PeerError:
    return PeerError(f"{_peer_what(src)}: {e.__class__.__name__}: {e}")


def _peer_url(src: StreamFrom) -> str:
    """The peer's stream-out URL of the source volume (without its query)."""
    return src.url.rstrip("/") + routes.STREAM_OUT.url(handle=src.handle)


def _peer_query(src: StreamFrom) -> dict[str, str]:
    return {"path": src.path, "encoding": src.encoding}


def _peer_auth(src: StreamFrom, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {src.token or token}"}


def _peer_target(url: httpx.URL, src: StreamFrom) -> str:
    """The request target (path and query) for the direct paths, which speak HTTP themselves."""
    return f"{url.raw_path.decode()}?{urllib.parse.urlencode(_peer_query(src))}"


def _direct(url: httpx.URL) -> bool:
    """Plain http with no proxy configured for the host: http.client can read it (a third of httpx's CPU)."""
    if url.scheme != "http":
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get("http") or proxies.get("all")) or bool(urllib.request.proxy_bypass(url.host))


def _peer_chunks_direct(url: httpx.URL, src: StreamFrom, token: str) -> Iterator[bytes]:
    conn = http.client.HTTPConnection(url.host, url.port or 80, timeout=30.0)
    try:
        conn.connect()
        conn.sock.settimeout(None)  # like httpx's read=None: a slow peer is not an error
        conn.request("GET", _peer_target(url, src), headers=_peer_auth(src, token))
        resp = conn.getresponse()
        if resp.status >= 400:
            raise _peer_detail(resp.status, resp.read(), src)
        while True:
            buf = bytearray(CHUNK)  # a fresh buffer each time: the consumer keeps views of it
            n = resp.readinto(buf)
            if not n:
                return
            yield buf if n == CHUNK else buf[:n]
    except (OSError, http.client.HTTPException) as e:
        raise _peer_failed(src, e) from e
    finally:
        conn.close()


def peer_body(src: StreamFrom, token: str) -> zerocopy.PeerBody | None:
    """The raw tar stream of a volume on another volume server as a `zerocopy.PeerBody` (its data is spliced
    into tar x), or None when that path does not apply (compression, no GNU tar, https or a proxy)."""
    if src.encoding != "raw" or not zerocopy.AVAILABLE or not tarpipe.gnu_tar():
        return None
    try:
        url = httpx.URL(_peer_url(src))
    except httpx.InvalidURL:
        return None  # peer_chunks says what is wrong with it
    if not _direct(url):
        return None
    return zerocopy.PeerBody(
        url.host, url.port or 80, _peer_target(url, src), {"Host": url.netloc.decode(), **_peer_auth(src, token)},
        what=_peer_what(src), fail=lambda status, body: _peer_detail(status, body, src))


def peer_chunks(src: StreamFrom, token: str) -> Iterator[bytes]:
    """The tar stream of a volume on another volume server."""
    url = _peer_url(src)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as e:
        raise _peer_failed(src, e) from e
    if _direct(parsed):
        yield from _peer_chunks_direct(parsed, src, token)
        return
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=None)) as client, client.stream(
            "GET", url, params=_peer_query(src), headers=_peer_auth(src, token),
        ) as resp:
            if resp.status_code >= 400:
                raise _peer_detail(resp.status_code, resp.read(), src)
            yield from resp.iter_raw(CHUNK)
    except httpx.HTTPError as e:
        raise _peer_failed(src, e) from e


async def _own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a thread of its own: a whole stream-out must not hold one of the default executor's few
    threads (stream-ins, and the other server of a pair streaming both ways, need them)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            result, error = None, e
        loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="stream-out", daemon=True).start()
    return await done


class SplicedTar(Response):
    """Raw stream-out on a plain connection: tar's stdout spliced into the socket as HTTP/1.1 chunks
    (`zerocopy.send_chunks`); uvicorn writes the head and the last chunk. A client that goes away kills
    tar; a tar that fails ends the connection without the last chunk (the client sees a broken body)."""

    media_type = "application/x-tar"

    def __init__(self, transport: Any, sock: Any, out: int, reap: Callable[[bool], tuple[int, str]],
                 what: str) -> None:
        self.status_code, self.background = 200, None
        self.init_headers({"transfer-encoding": "chunked"})
        self.transport, self.out, self.reap, self.what = transport, out, reap, what
        self.sock = os.dup(sock.fileno())  # ours: the transport closing its socket cannot hand the fd on

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        sent = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while self.transport.get_write_buffer_size() and not self.transport.is_closing():
                await asyncio.sleep(0.001)  # the head goes first
            if not self.transport.is_closing():
                await _own_thread(zerocopy.send_chunks, self.out, self.sock)
                sent = True
        except OSError as e:  # the client went away (or stopped reading after the end of the archive)
            LOG.info("stream-out client went away", what=self.what, error=str(e))
            self.transport.abort()
            await asyncio.sleep(0)  # uvicorn sees the disconnect before this returns
        finally:
            os.close(self.sock)
            code, err = await asyncio.to_thread(self.reap, not sent)
        if not sent:
            return
        if code != 0:
            LOG.error("stream-out failed", what=self.what, error=err)
            raise RuntimeError(f"tar of {self.what} failed: {err}")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def with_transport(app: Any) -> Any:
    """The ASGI app as uvicorn should run it: each http scope carries the connection's transport (uvicorn
    hands the app its cycle's bound ``send``), so stream-out can splice into the socket."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is not None:
                scope[TRANSPORT] = transport
        await app(scope, receive, send)

    return asgi


def create_app(settings: Settings, repository: Repository | None = None) -> FastAPI:
    repo = repository or open_repository(settings)
    token = resolve_token(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                await asyncio.sleep(settings.baggageclaim_sweep_interval)
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

    def route(r: Any, **kw: Any) -> Callable:
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
        return await _feed_thread(request, lambda chunks: repo.import_(spec, chunks, encoding))

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
        entries = await _feed_thread(request, lambda chunks: repo.stream_in(handle, path, chunks, encoding))
        return StreamResult(entries=entries)

    @route(routes.STREAM_FROM, response_model=StreamResult)
    async def stream_from(handle: str, body: StreamFrom) -> StreamResult:
        repo.readable(handle)

        def pull() -> int:
            peer = peer_body(body, token)
            if peer is None:
                chunks = prefetch(peer_chunks(body, token))
                return repo.stream_in(handle, body.dest_path, chunks, body.encoding)
            with peer:  # connects on first read, inside stream_in
                return repo.stream_in(handle, body.dest_path, peer, body.encoding)

        return StreamResult(entries=await asyncio.to_thread(pull))

    @route(routes.STREAM_OUT)
    async def stream_out(request: Request, handle: str, path: str = "",
                         encoding: Encoding = "raw") -> Response:
        cmd = repo.tar_command(handle, path)
        err_file = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        with contextlib.suppress(OSError):  # a bigger pipe: fewer, larger reads and HTTP chunks
            fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)
        comp = _compressor(encoding)

        def read_block() -> bytes:
            """At least MIN_SEND bytes of tar's output (less only at its end), read in this thread."""
            parts, size = [], 0
            while size < MIN_SEND and (got := os.read(fd, CHUNK - size)):
                parts.append(got)
                size += len(got)
            return parts[0] if len(parts) == 1 else b"".join(parts)

        def reap(kill: bool) -> tuple[int, str]:
            if kill and proc.poll() is None:
                proc.kill()
            code = proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            err_file.seek(0)
            err = err_file.read().decode(errors="replace").strip()
            err_file.close()
            return code, err

        sock = None
        if encoding == "raw" and request.scope.get("http_version") == "1.1":
            sock = zerocopy.transport_socket(request.scope.get(TRANSPORT))
        if sock is not None:
            what = f"volume {handle!r} path {path or '.'!r}"
            return SplicedTar(request.scope[TRANSPORT], sock, fd, reap, what)

        async def body() -> AsyncIterator[bytes]:
            done = False
            try:
                while chunk := await asyncio.to_thread(read_block):
                    yield comp.compress(chunk) if comp else chunk
                if comp:
                    yield comp.flush()
                done = True
                code, err = await asyncio.to_thread(reap, False)
                if code != 0:
                    LOG.error("stream-out failed", handle=handle, path=path or ".", error=err)
                    raise RuntimeError(f"tar of volume {handle!r} path {path or '.'!r} failed: {err}")
            finally:
                if not done:
                    await asyncio.to_thread(reap, True)

        media = {"raw": "application/x-tar", "gzip": "application/gzip", "zstd": "application/zstd"}[encoding]
        return StreamingResponse(body(), media_type=media)

    app.include_router(api)
    return app


class BackgroundServer:
    """The volume server in a daemon thread (uvicorn), for the worker and tests."""

    def __init__(self, settings: Settings, app: FastAPI | None = None) -> None:
        self.settings = settings
        self.app = app or create_app(settings)
        self.repository: Repository = self.app.state.repository
        config = uvicorn.Config(with_transport(self.app), host=settings.baggageclaim_bind_host,
                                port=settings.baggageclaim_bind_port, log_level="warning", access_log=False,
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="baggageclaim", daemon=True)

    def start(self, timeout: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"volume server did not start on {self.settings.baggageclaim_bind_host}:"
                    f"{self.settings.baggageclaim_bind_port} (port in use?)")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(settings: Settings) -> None:
    app = create_app(settings)
    LOG.info("volume server listening", url=f"http://{settings.baggageclaim_bind_host}:{settings.baggageclaim_bind_port}",
             volumes_dir=str(settings.resolved_volumes_dir))
    uvicorn.run(with_transport(app), host=settings.baggageclaim_bind_host,
                port=settings.baggageclaim_bind_port, log_level="warning", access_log=False)

