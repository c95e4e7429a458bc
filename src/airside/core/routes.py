"""The web API as one table of (name, method, path): server and clients both import it."""

from __future__ import annotations

from typing import NamedTuple


class Route(NamedTuple):
    method: str
    path: str

    def url(self, **params: str) -> str:
        return self.path.format(**params)


API = "/api/v1"

REGISTER_WORKER = Route("POST", f"{API}/workers")
LIST_WORKERS = Route("GET", f"{API}/workers")
GET_WORKER = Route("GET", f"{API}/workers/{{name}}")
HEARTBEAT = Route("PUT", f"{API}/workers/{{name}}/heartbeat")
LAND_WORKER = Route("PUT", f"{API}/workers/{{name}}/land")
RETIRE_WORKER = Route("PUT", f"{API}/workers/{{name}}/retire")
WORKER_LANDED = Route("PUT", f"{API}/workers/{{name}}/landed")
DELETE_WORKER = Route("DELETE", f"{API}/workers/{{name}}")
PRUNE_WORKER = Route("PUT", f"{API}/workers/{{name}}/prune")
WORKER_OBJECTS = Route("GET", f"{API}/workers/{{name}}/objects")
INFO = Route("GET", f"{API}/info")
