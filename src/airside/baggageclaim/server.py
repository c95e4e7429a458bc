"""The volume server: how to open it and run it (uvicorn), alone or embedded.

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
`DriverUnavailable` (message names the fix) is raised when the volume dir cannot work. The API itself,
its auth and its error mapping are `api`'s.

A raw stream-from between two of these servers over plain http does not copy the data through Python
(`zerocopy`): the sending side splices tar's output into its socket (`splice`: uvicorn's transport,
which `splice.with_transport` puts in the request scope: both runners here wrap the app in it), the
receiving side splices member data from its socket into tar x (`peer`). Everything else (compression,
TLS, proxies, other ASGI servers) takes the copying path.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI

from airside.baggageclaim import detect
from airside.baggageclaim.api import create_api
from airside.baggageclaim.filesystem import Filesystem
from airside.baggageclaim.repository import Repository
from airside.baggageclaim.splice import with_transport
from airside.config import Settings, secret
from airside.core import auth, log

LOG = log.get("airside.baggageclaim")


def resolve_token(settings: Settings) -> str:
    """The API token: baggageclaim_token, else one generated once in data_dir/baggageclaim-token."""
    return secret(settings.baggageclaim_token) or auth.ensure_secret_file(settings.data_dir / "baggageclaim-token")


def open_repository(settings: Settings) -> Repository:
    """The repository of settings' volume dir, with its driver chosen and its volumes recovered."""
    volumes_dir = settings.resolved_volumes_dir
    driver, root = detect.choose(settings.baggageclaim_driver, volumes_dir, settings.baggageclaim_btrfs_image_mib)
    repo = Repository(Filesystem(root, driver), driver, stream_max_bytes=settings.baggageclaim_stream_max_bytes)
    repo.recover()
    return repo


def create_app(settings: Settings, repository: Repository | None = None) -> FastAPI:
    """The FastAPI app (`api.create_api`) over `repository`, or over the volume dir of settings (opened)."""
    repo = repository or open_repository(settings)
    return create_api(repo, resolve_token(settings), sweep_interval=settings.baggageclaim_sweep_interval)


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

    def start(self, timeout: float = 30.0) -> BackgroundServer:
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

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(settings: Settings) -> None:
    app = create_app(settings)
    LOG.info("volume server listening", url=f"http://{settings.baggageclaim_bind_host}:{settings.baggageclaim_bind_port}",
             volumes_dir=str(settings.resolved_volumes_dir))
    uvicorn.run(with_transport(app), host=settings.baggageclaim_bind_host,
                port=settings.baggageclaim_bind_port, log_level="warning", access_log=False)
