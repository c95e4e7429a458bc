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

CREATE_BUILD = Route("POST", f"{API}/builds")
LIST_BUILDS = Route("GET", f"{API}/builds")
GET_BUILD = Route("GET", f"{API}/builds/{{build_id}}")
START_BUILD = Route("PUT", f"{API}/builds/{{build_id}}/start")
ABORT_BUILD = Route("PUT", f"{API}/builds/{{build_id}}/abort")
BUILD_EVENTS = Route("GET", f"{API}/builds/{{build_id}}/events")  # server-sent events
PUT_INPUT = Route("PUT", f"{API}/builds/{{build_id}}/inputs/{{name}}")  # tar body (Content-Encoding: zstd optional)
GET_INPUT = Route("GET", f"{API}/builds/{{build_id}}/inputs/{{name}}")
PUT_OUTPUT = Route("PUT", f"{API}/builds/{{build_id}}/outputs/{{name}}")
GET_OUTPUT = Route("GET", f"{API}/builds/{{build_id}}/outputs/{{name}}")
ARTIFACT_PATH_RE = rf"^{API}/builds/\d+/(inputs|outputs)/"

# worker-side build calls
WORKER_WORK = Route("GET", f"{API}/workers/{{name}}/work")  # long-poll for assignments
BUILD_PHASE = Route("PUT", f"{API}/builds/{{build_id}}/phase")
BUILD_LOGS = Route("POST", f"{API}/builds/{{build_id}}/logs")
BUILD_FINISH = Route("PUT", f"{API}/builds/{{build_id}}/finish")
WORKER_REPORT = Route("POST", f"{API}/workers/{{name}}/report")  # reaper: what I have → what to destroy

# pipelines (team-scoped, as Concourse's API; `build` is a job build's name: "7", or "7.1" for a rerun)
TEAM = f"{API}/teams/{{team}}"
PIPELINE = f"{TEAM}/pipelines/{{pipeline}}"
JOB = f"{PIPELINE}/jobs/{{job}}"
JOB_BUILD = f"{JOB}/builds/{{build}}"
LIST_PIPELINES = Route("GET", f"{TEAM}/pipelines")
GET_PIPELINE = Route("GET", PIPELINE)
GET_PIPELINE_CONFIG = Route("GET", f"{PIPELINE}/config")
SET_PIPELINE = Route("PUT", f"{PIPELINE}/config")
DESTROY_PIPELINE = Route("DELETE", PIPELINE)
PAUSE_PIPELINE = Route("PUT", f"{PIPELINE}/pause")
UNPAUSE_PIPELINE = Route("PUT", f"{PIPELINE}/unpause")
LIST_JOBS = Route("GET", f"{PIPELINE}/jobs")
GET_JOB = Route("GET", JOB)
PAUSE_JOB = Route("PUT", f"{JOB}/pause")
UNPAUSE_JOB = Route("PUT", f"{JOB}/unpause")
LIST_JOB_BUILDS = Route("GET", f"{JOB}/builds")
TRIGGER_JOB = Route("POST", f"{JOB}/builds")
GET_JOB_BUILD = Route("GET", JOB_BUILD)
RERUN_JOB_BUILD = Route("POST", JOB_BUILD)
ABORT_JOB_BUILD = Route("PUT", f"{JOB_BUILD}/abort")
JOB_BUILD_EVENTS = Route("GET", f"{JOB_BUILD}/events")  # server-sent events of every step

# resources (`version_id` is a ResourceVersion's id, as the versions listing gives it)
RESOURCE = f"{PIPELINE}/resources/{{resource}}"
RESOURCE_VERSION = f"{RESOURCE}/versions/{{version_id}}"
LIST_RESOURCES = Route("GET", f"{PIPELINE}/resources")
GET_RESOURCE = Route("GET", RESOURCE)
RESOURCE_VERSIONS = Route("GET", f"{RESOURCE}/versions")  # newest first; ?filter=k:v (repeated) narrows
CHECK_RESOURCE = Route("POST", f"{RESOURCE}/check")
CHECK_RESOURCE_WEBHOOK = Route("POST", f"{RESOURCE}/check/webhook")  # ?webhook_token=…; no bearer token
PIN_RESOURCE_VERSION = Route("PUT", f"{RESOURCE_VERSION}/pin")
UNPIN_RESOURCE = Route("PUT", f"{RESOURCE}/unpin")
ENABLE_RESOURCE_VERSION = Route("PUT", f"{RESOURCE_VERSION}/enable")
DISABLE_RESOURCE_VERSION = Route("PUT", f"{RESOURCE_VERSION}/disable")
