"""The operations API: liveness (`/healthz`), readiness (`/readyz`: the database answers and is at the
code's migration), Prometheus metrics (`/metrics`) and the server's info (version, heartbeat TTL).

None of these needs credentials (a probe or a scraper holds none; info is what a client checks first).
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

import airside
from airside.core import routes
from airside.web import db
from airside.web.deps import WebDep, endpoint

router = APIRouter()


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> str:
    return "ok"


@router.get("/readyz", response_class=PlainTextResponse)
def readyz(web: WebDep) -> str:
    try:
        with web.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current, head = db.current_revision(web.engine), db.head_revision()
    except Exception as e:  # noqa: BLE001 - any DB failure means not ready
        raise HTTPException(503, f"database unavailable: {e.__class__.__name__}") from e
    if current != head:
        raise HTTPException(503, f"database at migration {current}, code expects {head}: run `airside migrate`")
    return "ready"


@router.get("/metrics")
def metrics(web: WebDep) -> Response:
    return Response(generate_latest(web.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@endpoint(router, routes.INFO)
def info(web: WebDep) -> dict:
    return {"version": airside.__version__, "heartbeat_ttl": web.settings.heartbeat_ttl}
