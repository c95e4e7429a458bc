"""The volume server API as one table of (name, method, path): `api.py` and `client.py` both import it."""

from __future__ import annotations

from airside.core.routes import Route

API = "/api/v1"

CREATE_VOLUME = Route("POST", f"{API}/volumes")
IMPORT_VOLUME = Route("POST", f"{API}/volumes-import")
LIST_VOLUMES = Route("GET", f"{API}/volumes")
GET_VOLUME = Route("GET", f"{API}/volumes/{{handle}}")
SET_PROPERTY = Route("PUT", f"{API}/volumes/{{handle}}/properties/{{name}}")
SET_TTL = Route("PUT", f"{API}/volumes/{{handle}}/ttl")
DESTROY_VOLUME = Route("DELETE", f"{API}/volumes/{{handle}}")
STREAM_IN = Route("PUT", f"{API}/volumes/{{handle}}/stream-in")
STREAM_OUT = Route("GET", f"{API}/volumes/{{handle}}/stream-out")
STREAM_FROM = Route("PUT", f"{API}/volumes/{{handle}}/stream-from")
VOLUME_SIZE = Route("GET", f"{API}/volumes/{{handle}}/size")
INFO = Route("GET", f"{API}/info")

ROUTES = {
    name: value for name, value in globals().items() if isinstance(value, Route) and name.isupper()
}
