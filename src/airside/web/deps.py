"""How a route handler reaches its web process: FastAPI dependencies over `request.app.state.web`.

`WebDep` gives a handler the app's `Web` (set by `airside.web.app.create_app`); `Caller` gives it the
authenticated `Principal` (401 without valid credentials, before the handler runs). `endpoint(router,
route)` registers a handler for one row of `airside.core.routes`; the response model is the handler's
return annotation. Routers import this module and `airside.web.service`, never the app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.types import DecoratedCallable

from airside.core.routes import Route
from airside.web.auth import Principal
from airside.web.service import Web


def get_web(request: Request) -> Web:
    """The Web of the app serving this request."""
    web: Web = request.app.state.web
    return web


WebDep = Annotated[Web, Depends(get_web)]


async def caller(request: Request, web: WebDep) -> Principal:
    """Who sent this request (the Web's authenticator: operator token, worker token or signed worker key)."""
    return await web.auth(request)


Caller = Annotated[Principal, Depends(caller)]


def endpoint(router: APIRouter, route: Route, *, status_code: int | None = None) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """Decorator: the handler serves `route` (its method and path) on `router`."""
    return router.api_route(route.path, methods=[route.method], status_code=status_code)
