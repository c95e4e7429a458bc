"""API payloads shared by web and its clients (worker beacon, CLI)."""

from __future__ import annotations

import re
import secrets
import time
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
Name = Annotated[str, StringConstraints(pattern=NAME_RE)]
Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,62}$")]
Url = Annotated[str, StringConstraints(pattern=r"^(https?://\S{1,2000})?$")]
EPOCH_RE = re.compile(r"^([0-9a-f]{12,20})-([0-9a-f]{8})$")
Epoch = Annotated[str, StringConstraints(pattern=EPOCH_RE.pattern)]


def new_boot_epoch() -> str:
    """A time-ordered boot epoch: hex nanoseconds since 1970, then 4 random bytes."""
    return f"{time.time_ns():016x}-{secrets.token_hex(4)}"


def epoch_order(epoch: str) -> int:
    m = EPOCH_RE.match(epoch)
    return int(m.group(1), 16) if m else 0


class WorkerState(StrEnum):
    running = "running"
    stalled = "stalled"
    landing = "landing"
    landed = "landed"
    retiring = "retiring"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceType(Strict):
    type: Name
    image: Annotated[str, StringConstraints(max_length=1000)]


class WorkerRegistration(Strict):
    name: Name
    platform: Name = "linux"
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    team: Name | None = None
    version: Annotated[str, StringConstraints(max_length=64)] = ""
    baggageclaim_url: Url = ""
    runtime_url: Url = ""
    resource_types: list[ResourceType] = Field(default_factory=list, max_length=256)
    boot_epoch: Epoch
    ephemeral: bool = False
    active_containers: int = Field(0, ge=0)
    active_volumes: int = Field(0, ge=0)
    active_tasks: int = Field(0, ge=0)


class Heartbeat(Strict):
    boot_epoch: Epoch
    active_containers: int = Field(0, ge=0)
    active_volumes: int = Field(0, ge=0)
    active_tasks: int = Field(0, ge=0)


class Worker(WorkerRegistration):
    model_config = ConfigDict(extra="forbid", from_attributes=True)

    state: WorkerState
    start_time: datetime
    last_heartbeat: datetime
    state_changed_at: datetime
    heartbeat_age: float = 0.0


class WorkerObject(Strict):
    """A container or volume web knows a worker holds."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    handle: str
    kind: str
    worker_name: str
    boot_epoch: str
    created_at: datetime


class Problem(BaseModel):
    """Every 4xx/5xx body: what was wrong and where."""

    detail: str | list
