"""Wire types of the volume server API (requests and responses)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

HANDLE_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
Handle = Annotated[str, StringConstraints(pattern=HANDLE_RE)]
PropName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
PropValue = Annotated[str, StringConstraints(max_length=4096)]
Encoding = Literal["raw", "gzip", "zstd"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Strategy(Strict):
    """How a volume starts: empty, a copy-on-write child of `parent`. (Import has its own route.)"""

    type: Literal["empty", "cow"] = "empty"
    parent: Handle | None = None


class VolumeSpec(Strict):
    handle: Handle | None = None  # empty: the server makes one
    strategy: Strategy = Field(default_factory=Strategy)
    properties: dict[PropName, PropValue] = Field(default_factory=dict, max_length=256)
    privileged: bool = False
    ttl: float = Field(0.0, ge=0, description="seconds until the volume expires; 0 = never")


class Volume(Strict):
    handle: str
    path: str
    parent: str | None = None
    strategy: str
    privileged: bool
    properties: dict[str, str]
    ttl: float
    expires_at: float | None
    created_at: float
    state: Literal["ready", "failed"] = "ready"
    failure: str | None = None


class PropertyValue(Strict):
    value: PropValue


class TTL(Strict):
    ttl: float = Field(ge=0, description="seconds from now; 0 = never expires")


class StreamFrom(Strict):
    """Pull a tar of `path` in volume `handle` on another volume server into this volume."""

    url: Annotated[str, StringConstraints(pattern=r"^https?://\S{1,2000}$")]
    handle: Handle
    path: str = ""
    dest_path: str = ""
    encoding: Encoding = "raw"
    token: str | None = None  # the other server's token; empty: this server's own


class StreamResult(Strict):
    entries: int


class Size(Strict):
    bytes: int


class Info(Strict):
    version: str
    driver: str
    volumes: int
