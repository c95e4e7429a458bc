"""Who is calling: an operator (bearer token) or a worker (worker token or signed key)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request

from airside.config import Settings, secret
from airside.core import auth, log

LOG = log.get("airside.web.auth")


@dataclass(frozen=True)
class Principal:
    kind: str  # "operator" | "worker"
    worker: str | None = None  # set when a key proves a worker name

    def may_act_for(self, name: str) -> bool:
        return self.kind == "operator" or self.worker in (None, name)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.token = secret(settings.token) or auth.ensure_secret_file(settings.data_dir / "token")
        self.worker_token = secret(settings.worker_token) or auth.ensure_secret_file(settings.data_dir / "worker-token")
        self.worker_keys = (
            auth.load_authorized_keys(settings.authorized_worker_keys) if settings.authorized_worker_keys else []
        )

    async def __call__(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            given = header.removeprefix("Bearer ").strip()
            if auth.tokens_equal(given, self.token):
                return Principal("operator")
            if auth.tokens_equal(given, self.worker_token):
                return Principal("worker")
        elif header.startswith(auth.WORKER_SCHEME + " ") and self.worker_keys:
            body = await request.body()
            name = auth.verify(header, self.worker_keys, request.method, request.url.path, body)
            if name:
                return Principal("worker", name)
        raise HTTPException(401, "missing or wrong credentials", headers={"WWW-Authenticate": "Bearer"})


def require_operator(p: Principal) -> None:
    if p.kind != "operator":
        raise HTTPException(403, "this call needs the operator token")


def require_self(p: Principal, name: str) -> None:
    if not p.may_act_for(name):
        raise HTTPException(403, f"a worker key for {p.worker!r} cannot act for worker {name!r}")
