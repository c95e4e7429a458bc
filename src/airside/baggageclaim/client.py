"""`VolumeClient`: the Python client of the volume server (worker, web, the Kubernetes fetch-inputs step,
`airside volumes`). Requests are built from the same route table the server serves (`routes.py`).

    from airside.baggageclaim.client import VolumeClient, client_for

    with VolumeClient("http://127.0.0.1:7788", token) as vc:      # or client_for(settings)
        root = vc.create(handle="in-1", properties={"build": "42"}, ttl=600)
        child = vc.create(strategy="cow", parent="in-1")
        vc.stream_in(child.handle, tar_bytes_or_chunks, path="src", encoding="zstd")
        for chunk in vc.stream_out(child.handle, path="src"): ...
        vc.stream_from(other.handle, url=peer_url, source="in-1")  # pull worker-to-worker
        vc.put_dir(handle, Path("dir")); vc.get_dir(handle, Path("out"))  # local dirs via tar
        vc.destroy("in-1", cascade=True)

Errors raise `VolumeClientError` (status, message from the server naming the entry/field);
an unreachable server gives status 0.
"""

from __future__ import annotations

import builtins
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from airside.baggageclaim import routes
from airside.baggageclaim.schemas import Volume
from airside.config import Settings, secret
from airside.core import auth
from airside.core.client import problem_detail
from airside.core.routes import Route

CHUNK = 1 << 20


class VolumeClientError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class VolumeClient:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.base_url, self.token = base_url.rstrip("/"), token
        self.http = httpx.Client(base_url=self.base_url, auth=auth.BearerAuth(token),
                                 timeout=httpx.Timeout(timeout, read=None, write=None))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> VolumeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            resp.read()
            raise VolumeClientError(resp.status_code, f"volume server said {resp.status_code}: {problem_detail(resp)}")
        return resp

    def call(self, route: Route, *, json: Any = None, params: Any = None, content: Any = None, **path: str) -> Any:
        try:
            resp = self.http.request(route.method, route.url(**path), json=json, params=params, content=content)
        except httpx.TransportError as e:
            raise VolumeClientError(0, f"cannot reach the volume server at {self.base_url}: "
                                       f"{e.__class__.__name__}: {e}") from e
        self._check(resp)
        return resp.json() if resp.content else None

    # --- volumes --------------------------------------------------------------------------------------
    def create(self, handle: str | None = None, *, strategy: str = "empty", parent: str | None = None,
               properties: dict[str, str] | None = None, privileged: bool = False, ttl: float = 0.0) -> Volume:
        spec = {"handle": handle, "strategy": {"type": strategy, "parent": parent},
                "properties": properties or {}, "privileged": privileged, "ttl": ttl}
        return Volume.model_validate(self.call(routes.CREATE_VOLUME, json=spec))

    def import_tar(self, body: bytes | Iterable[bytes], handle: str | None = None, *, encoding: str = "raw",
                   properties: dict[str, str] | None = None, privileged: bool = False, ttl: float = 0.0) -> Volume:
        params: list[tuple[str, Any]] = [("encoding", encoding), ("privileged", privileged), ("ttl", ttl)]
        if handle:
            params.append(("handle", handle))
        params += [("property", f"{k}={v}") for k, v in (properties or {}).items()]
        return Volume.model_validate(self.call(routes.IMPORT_VOLUME, params=params, content=body))

    def list(self, **properties: str) -> list[Volume]:
        return [Volume.model_validate(v) for v in self.call(routes.LIST_VOLUMES, params=properties)]

    def get(self, handle: str) -> Volume:
        return Volume.model_validate(self.call(routes.GET_VOLUME, handle=handle))

    def set_property(self, handle: str, name: str, value: str) -> Volume:
        return Volume.model_validate(self.call(routes.SET_PROPERTY, json={"value": value}, handle=handle, name=name))

    def set_ttl(self, handle: str, ttl: float) -> Volume:
        return Volume.model_validate(self.call(routes.SET_TTL, json={"ttl": ttl}, handle=handle))

    def destroy(self, handle: str, *, cascade: bool = False) -> builtins.list[str]:
        return self.call(routes.DESTROY_VOLUME, params={"cascade": cascade}, handle=handle)["destroyed"]

    def size(self, handle: str) -> int:
        return self.call(routes.VOLUME_SIZE, handle=handle)["bytes"]

    def info(self) -> dict:
        return self.call(routes.INFO)

    # --- streams --------------------------------------------------------------------------------------
    def stream_in(self, handle: str, body: bytes | Iterable[bytes], *, path: str = "", encoding: str = "raw") -> int:
        return self.call(routes.STREAM_IN, params={"path": path, "encoding": encoding}, content=body,
                         handle=handle)["entries"]

    def stream_out(self, handle: str, *, path: str = "", encoding: str = "raw") -> Iterator[bytes]:
        """The tar stream of a volume's sub-path, in chunks (a generator: iterate it to the end)."""
        try:
            with self.http.stream(routes.STREAM_OUT.method, routes.STREAM_OUT.url(handle=handle),
                                  params={"path": path, "encoding": encoding}) as resp:
                self._check(resp)
                yield from resp.iter_raw(CHUNK)
        except httpx.TransportError as e:
            raise VolumeClientError(0, f"stream-out of {handle!r} from {self.base_url} failed: "
                                       f"{e.__class__.__name__}: {e}") from e

    def stream_from(self, handle: str, *, url: str, source: str, path: str = "", dest_path: str = "",
                    encoding: str = "raw", token: str | None = None) -> int:
        """Makes this server pull `path` of volume `source` from the server at `url` into `handle`."""
        body = {"url": url, "handle": source, "path": path, "dest_path": dest_path, "encoding": encoding,
                "token": token}
        return self.call(routes.STREAM_FROM, json=body, handle=handle)["entries"]

    def put_dir(self, handle: str, src: Path, *, path: str = "") -> int:
        """Streams a local directory into a volume (GNU tar on this side)."""
        proc = subprocess.Popen(["tar", "--numeric-owner", "-C", str(src), "-cf", "-", "."], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        out = proc.stdout
        try:
            return self.stream_in(handle, iter(lambda: out.read(CHUNK), b""), path=path)
        finally:
            out.close()
            proc.wait()

    def get_dir(self, handle: str, dest: Path, *, path: str = "") -> None:
        """Streams a volume's sub-path into a local directory (GNU tar on this side)."""
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(["tar", "--numeric-owner", "-C", str(dest), "-xf", "-"], stdin=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            for chunk in self.stream_out(handle, path=path):
                proc.stdin.write(chunk)
        finally:
            proc.stdin.close()
            if proc.wait() != 0:
                raise VolumeClientError(0, f"extracting volume {handle!r} into {dest} failed")


def token_for(settings: Settings) -> str | None:
    token = secret(settings.baggageclaim_token)
    path = settings.data_dir / "baggageclaim-token"
    if token is None and path.exists():
        token = path.read_text().strip()
    return token


def client_for(settings: Settings) -> VolumeClient:
    token = token_for(settings)
    if not token:
        raise VolumeClientError(0, "no volume server token: set AIRSIDE_BAGGAGECLAIM_TOKEN or --baggageclaim-token "
                                   f"(a server without one writes {settings.data_dir / 'baggageclaim-token'})")
    return VolumeClient(settings.resolved_baggageclaim_url, token)
