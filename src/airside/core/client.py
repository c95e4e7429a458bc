"""The web API client, used by the worker beacon and the operator CLI."""

from __future__ import annotations

from typing import Any

import httpx

from airside.core import routes
from airside.core.schemas import Heartbeat, Worker, WorkerObject, WorkerRegistration


class WebError(Exception):
    """web answered with an error the caller can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class WebUnreachable(WebError):
    def __init__(self, url: str, cause: Exception) -> None:
        super().__init__(0, f"cannot reach web at {url}: {cause.__class__.__name__}: {cause or ''}".rstrip(": "))


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(f"{'.'.join(str(x) for x in d.get('loc', []))}: {d.get('msg')}" for d in detail)
    return str(detail)


class WebClient:
    def __init__(self, base_url: str, auth: httpx.Auth | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, auth=auth, timeout=timeout)

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
            raise WebError(resp.status_code, f"web said {resp.status_code}: {_detail(resp)}")
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
