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
    volume_driver: Annotated[str, StringConstraints(max_length=32)] = ""  # naive | overlay | btrfs
    runtime: Annotated[str, StringConstraints(max_length=32)] = ""  # oci | process
    resource_types: list[ResourceType] = Field(default_factory=list, max_length=256)
    boot_epoch: Epoch
    ephemeral: bool = False
    active_containers: int = Field(0, ge=0)
    active_volumes: int = Field(0, ge=0)
    active_tasks: int = Field(0, ge=0)
    max_tasks: int = Field(8, ge=1, le=10_000)


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


# --- builds ------------------------------------------------------------------------------------------
class BuildStatus(StrEnum):
    created = "created"  # waiting for its inputs to be uploaded
    pending = "pending"  # queued for a worker
    placed = "placed"  # a worker was chosen; it is preparing image/inputs
    running = "running"  # the task process runs
    succeeded = "succeeded"
    failed = "failed"  # the task exited non-zero: the user's failure
    errored = "errored"  # the infrastructure failed (worker lost, drain timeout, image unavailable)
    aborted = "aborted"


TERMINAL = frozenset({BuildStatus.succeeded, BuildStatus.failed, BuildStatus.errored, BuildStatus.aborted})
ACTIVE = frozenset({BuildStatus.placed, BuildStatus.running})
ArtifactName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]


class BuildCreate(Strict):
    config: Annotated[str, StringConstraints(max_length=256 * 1024)]  # the task config YAML, as written
    config_filename: Annotated[str, StringConstraints(max_length=512)] = "task.yml"
    inputs: list[ArtifactName] = Field(default_factory=list, max_length=256)  # names the client will upload
    tags: list[Tag] = Field(default_factory=list, max_length=64)
    team: Name | None = None
    cache_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{0,128}$")] = ""
    privileged: bool = False  # run the task privileged (fly execute -p); the runtime's operator must allow it
    # fly execute -j PIPELINE/JOB: task inputs not uploaded are the artifacts of that name the job's latest
    # succeeded build made
    inputs_from: Annotated[str, StringConstraints(pattern=r"^[^/\s]{1,128}/[^/\s]{1,128}$")] | None = None


class Build(Strict):
    id: int
    status: BuildStatus
    tags: list[str]
    team: str | None
    worker_name: str | None
    attempt: int
    requeues: int
    exit_code: int | None
    reason: str
    inputs: list[str]
    outputs: list[str]
    config: dict
    created_at: float
    queued_at: float | None
    placed_at: float | None
    image_ready_at: float | None
    inputs_ready_at: float | None
    started_at: float | None
    finished_at: float | None


class Assignment(Strict):
    """A build placed on a worker, as the worker sees it."""

    build_id: int
    attempt: int
    status: BuildStatus
    config: dict
    inputs: list[str]
    cache_key: str
    abort: bool = False
    privileged: bool = False
    stdin: str | None = None  # a resource script's JSON request (check/in/out); tasks read nothing
    resource_type: str = ""  # run in the rootfs of this resource type the worker offers (its registration)
    image_input: str = ""  # the task's image is this input (a pipeline step's `image:` artifact), fetched first
    #: input name -> the handle of this worker's output volume holding it (an earlier pipeline step that ran
    #: here, in this boot epoch): mount a copy-on-write child of it while it exists, else download the input
    local_inputs: dict[str, str] = Field(default_factory=dict)
    #: a pipeline step: once it succeeded, its output volumes stay (the next steps may mount them); web's GC
    #: destroys them when the job build has ended
    keep_outputs: bool = False


class Phase(StrEnum):
    image_ready = "image_ready"
    inputs_ready = "inputs_ready"
    started = "started"


class PhaseReport(Strict):
    attempt: int
    phase: Phase


class LogChunkIn(Strict):
    stream: Annotated[str, StringConstraints(pattern=r"^(stdout|stderr|airside)$")]
    offset: int = Field(ge=0)  # byte offset of this chunk in its stream (makes re-sending idempotent)
    data: str  # base64


class LogBatch(Strict):
    attempt: int
    chunks: list[LogChunkIn] = Field(max_length=10_000)


class LogAck(Strict):
    abort: bool  # the build was aborted: stop the task


class FinishReport(Strict):
    attempt: int
    status: BuildStatus
    exit_code: int | None = None
    reason: Annotated[str, StringConstraints(max_length=4000)] = ""
    outputs: list[ArtifactName] = Field(default_factory=list)


class ReportedObject(Strict):
    handle: Annotated[str, StringConstraints(max_length=128)]
    kind: Annotated[str, StringConstraints(pattern=r"^(container|volume)$")]
    properties: dict[str, str] = Field(default_factory=dict)


class ReaperReport(Strict):
    boot_epoch: Epoch
    objects: list[ReportedObject] = Field(max_length=100_000)


class ReaperAnswer(Strict):
    destroy: list[ReportedObject]


# --- pipelines -----------------------------------------------------------------------------------------
class JobBuildStatus(StrEnum):
    pending = "pending"  # created (triggered); waiting for serial/max_in_flight or an unpaused job
    started = "started"  # its plan is running
    succeeded = "succeeded"
    failed = "failed"
    errored = "errored"
    aborted = "aborted"


JOB_BUILD_TERMINAL = frozenset({JobBuildStatus.succeeded, JobBuildStatus.failed, JobBuildStatus.errored,
                                JobBuildStatus.aborted})


class PipelineSet(Strict):
    """set-pipeline's body: the config as written and the static vars (fly's -v/-y and -l), applied by web."""

    config: Annotated[str, StringConstraints(max_length=4 * 1024 * 1024)]
    filename: Annotated[str, StringConstraints(max_length=512)] = "pipeline.yml"
    vars: dict[str, object] = Field(default_factory=dict)  # -v/-y, already expanded (name → value)
    var_files: list[tuple[str, str]] = Field(default_factory=list, max_length=64)  # -l: (filename, text)
    version: int | None = None  # the config version the client diffed against: 409 if another set came first


class Pipeline(Strict):
    id: int
    team: str
    name: str
    version: int
    paused: bool
    archived: bool
    created_at: float
    updated_at: float
    jobs: list[str] = Field(default_factory=list)


class PipelineSetResult(Strict):
    pipeline: Pipeline
    created: bool
    changed: bool
    warnings: list[str] = Field(default_factory=list)


class PipelineConfigView(Strict):
    version: int
    config: dict
    config_text: str


class StepView(Strict):
    """One step of a job build that has (or had) something running: a task's build and its status."""

    path: str
    name: str
    kind: str
    status: str
    build_id: int | None = None
    reason: str = ""


class JobBuild(Strict):
    id: int
    team: str
    pipeline: str
    job: str
    name: str
    number: int
    rerun_of: int | None
    status: JobBuildStatus
    reason: str
    created_by: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    steps: list[StepView] = Field(default_factory=list)


class Job(Strict):
    id: int
    pipeline: str
    name: str
    paused: bool
    active: bool
    disable_manual_trigger: bool
    serial: bool
    next_build: int
    latest: JobBuild | None = None


# --- resources -----------------------------------------------------------------------------------------
Version = dict[str, str]  # a resource version: the fields its check printed (Concourse's versions are strings)


class Resource(Strict):
    id: int
    pipeline: str
    name: str
    type: str
    check_every: float | None  # seconds between checks; None: `never` (checked only on request)
    config_id: int | None  # its type and source's config: shared with every resource of the same pair
    last_checked: float | None
    next_check_at: float | None  # None: no periodic check (never, or not checkable)
    check_error: str  # the last check's error, or why it cannot be checked; "" when it succeeded
    check_build_id: int | None  # the check running now
    last_check_build_id: int | None  # the last check that ended (its log)
    pinned_version: Version | None = None
    pinned_version_id: int | None = None
    webhook: bool = False  # a webhook_token is set (so CHECK_RESOURCE_WEBHOOK can start checks)


class VersionUse(Strict):
    """A job build that fetched (get) or produced (put) a version."""

    job: str
    build: str  # the job build's name ("7", "7.1")
    job_build_id: int
    step: str


class ResourceVersion(Strict):
    id: int
    version: Version
    metadata: list[dict] = Field(default_factory=list)
    enabled: bool
    pinned: bool
    check_order: int  # higher is newer
    created_at: float
    input_to: list[VersionUse] = Field(default_factory=list)
    output_of: list[VersionUse] = Field(default_factory=list)


class ResourceCheck(Strict):
    """CHECK_RESOURCE's body: check from this version (default: from the latest one found)."""

    from_: Version | None = Field(default=None, alias="from")


class CheckStarted(Strict):
    resource: str
    build_id: int  # the check's build (its log: `airside builds`, GET_BUILD, BUILD_EVENTS)
    config_id: int
    version: Version | None  # the version the check starts from
