"""The `kubernetes` runtime: each task runs as a `batch/v1` Job (issue 7).

Web drives this runtime directly (no airside worker is involved). Importing this package loads only
its pure parts; the `kubernetes` client library loads with `KubernetesRuntime` (or `load_api_client`,
`start_job`, `stop_job`), from `client`, the one module of airside that imports it (import-linter
enforces it).

Modules
-------

    names     the names of Jobs, Secrets and containers, labels and annotations, `output_handle` (pure)
    spec      `KubeTaskSpec` / `KubeVolume` / `KubeCache`: the task as Kubernetes sees it, from a task config or a
              `ContainerSpec`; `TaskConfigLike`, what is read of a task config (pure)
    job       `build_job`, `build_secret`, `needs_secret`, `build_pull_secret`: the manifests (pure)
    verdict   `Verdict` (the watchdog's reading of a Job) and `InfraFailure` (the error `wait` raises)
    watchdog  `classify`: Job, pods and events → `Verdict` (pure)
    client    the Kubernetes API: `load_api_client`, `start_job`, `stop_job`, `Cluster` (reads, watch,
              deletes, log streams), `ApiError`
    runtime   `KubernetesRuntime`, the `Runtime` tying them together

How web calls it
----------------

    from airside.runtime.kubernetes import KubernetesRuntime, KubeTaskSpec, InfraFailure

    rt = KubernetesRuntime.from_settings(settings, artifact_token=token)   # kubeconfig or in-cluster
    spec = KubeTaskSpec.from_task_config(config, handle="b42-a1-unit", build="42", attempt=1,
                                         step="unit", inputs={"src": "vol-src-42"})
    rt.prepare(spec)            # validates and builds the manifest; creates nothing
    rt.start(spec.handle)       # creates the Secrets (artifact-store token, image pull credentials, if any)
                                # and the Job, which then owns them
    for chunk in rt.logs(spec.handle): ...           # the task container's output (pod log API)
    try:
        status = rt.wait(spec.handle)                # ExitStatus(code, reason): the task's own result
    except InfraFailure as e:                        # the infrastructure failed the task
        e.kind, e.reason, e.requeue                  # requeue=True: evicted / node lost → queue again
    finally:
        rt.destroy(spec.handle)                      # Job + pods + Secrets; idempotent

`prepare` also accepts a plain `ContainerSpec` (see `KubeTaskSpec.from_container_spec`): `image` is the
image reference, and each `Mount.source` is read as an artifact-store volume *handle* (only its name
part), read-only mounts being inputs and writable ones outputs.

Pod shape
---------
Containers in a pod run concurrently, init containers in order, so a task with inputs and outputs is:

    initContainers:  fetch-inputs  (airside image: `airside fetch-inputs --volume HANDLE=PATH ...`)
                     task          (the user's image: run.path/args, workingDir, params as env)
    containers:      upload-outputs (airside image: `airside upload-outputs --volume HANDLE=PATH ...`)

with one `emptyDir` per input, output and cache, mounted at `<work dir>/<path>` in every container that
needs it (an output at the same path as an input shares that input's emptyDir). Steps that are not
needed are left out: without inputs (or fetched caches) there is no `fetch-inputs`; without outputs (or
saved caches) `task` is the pod's only (main) container, so a trivial task is a one-container pod.

* Exit code: `state.terminated.exitCode` of the container named `task`, in `initContainerStatuses` or
  `containerStatuses`. **A task that exits non-zero fails the pod at its init step, so its outputs are
  not uploaded** (as in Concourse, a failed task's outputs are not passed on).
* Output volumes are created in the artifact store by `upload-outputs` with the handles given in
  `KubeTaskSpec.outputs` (default `<handle>-output-<name>`, see `output_handle`), the properties
  `build` and `step` and `KubeTaskSpec.output_ttl`, so later steps and `airside execute -o` read them by
  handle. Input volumes must exist in the artifact store before `start` (web puts them there).
* Caches (`KubeCache`) persist in the artifact store: a cache with a `fetch` volume is streamed into its
  emptyDir by `fetch-inputs` (after the inputs), one with an `upload` volume is created from it by
  `upload-outputs` (after the outputs), so only a task that succeeded saves its caches, as with outputs.
  Which volumes those are is the caller's business: web (`airside.web.kube_dispatch`) keys them by the
  build's cache key and path like worker caches, fetches the newest saved one through a copy-on-write
  child of its own, saves each attempt's under a name of its own (concurrent builds never write one
  volume; the last to succeed wins), logs "cache PATH: hit (N bytes)" / "miss" on the build's `airside`
  log stream, and removes caches unused for `cache_ttl`. A cache without volumes starts empty and is
  not kept.
* The airside steps run as the task's numeric `run.user` when one is given, else as root, so fetched
  inputs keep the owners recorded in the artifact store and every output file can be read for upload.
* The artifact-store token lives in a Secret `<job>-artifacts`, created before the Job (so the pod never
  references a missing Secret) and then given the Job as owner, so Kubernetes deletes it with the Job.
* Logs: Kubernetes merges stdout and stderr, so every `LogChunk` says "stdout".
* `automountServiceAccountToken: false` and `enableServiceLinks: false`: tasks get no API credentials
  and no service env vars.

Timeouts: `activeDeadlineSeconds` = the task timeout (counted by Kubernetes from the Job's start,
scheduling included); the schedule timeout (a setting of its own) is how long the pod may stay
unscheduled, or scheduled with no container ever started, before `wait` gives up.
`ttlSecondsAfterFinished` removes finished Jobs that nobody destroyed (web crash).

Errors and the watchdog
-----------------------
`wait()` watches the pod (a watch on the pod list, re-read at least every few seconds) and classifies
Job, pod and events with the pure function `classify(job, pods, events, ...) -> Verdict`:

* the task container terminated → `ExitStatus(code, reason)` (reason "OOMKilled" etc.); not an error;
* otherwise `InfraFailure(reason, kind=..., requeue=...)` (a `RuntimeError_`) is raised, after the Job has
  been stopped so that nothing keeps pulling or waiting. Kinds:
  `ImagePull` (image and kubelet message), `CreateContainer` (bad container config), `StartError`
  (run.path cannot be executed), `Unschedulable` (the scheduler's message), `PVCNotBound`,
  `ScheduleTimeout`, `PodStuck` (scheduled but a mount/sandbox keeps failing), `FetchInputs` /
  `UploadOutputs` (the step's exit code and last log lines), `DeadlineExceeded` (task timeout),
  `PodDeleted`, `JobDeleted`, `JobFailed`, `FailedCreate` (the Job controller could not create the pod,
  e.g. quota or PodSecurity), and with `requeue=True`: `Evicted`, `Disrupted` (preemption, node
  drain/shutdown, taint eviction), `NodeLost`. Web requeues `requeue=True` failures like a lost worker.
* `signal(h, SIGTERM|SIGKILL)` deletes the pod (grace period default / 1 s) and records why; `wait` then
  returns `ExitStatus(128+sig, "killed by SIGTERM")` like the other runtimes (or the task's own code if it
  had already exited). Other signals cannot be delivered through the Kubernetes API → `RuntimeError_`.

Phases, concurrency, idempotency: as in `base.Runtime`. `prepare` keeps the manifest in memory, so a
restarted web cannot `start` what an earlier process prepared (prepare again); `wait`, `logs`, `status`,
`destroy` and `list` work from the cluster alone and so survive a restart. `destroy` deletes the Job
(propagationPolicy Background), its pods and the Secret; a missing object is success.

RBAC (namespaced Role; also in docs/kubernetes-runtime.md)
---------------------------------------------------------

    apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: airside-kubernetes-runtime, namespace: airside-tasks}
    rules:
    - {apiGroups: [batch], resources: [jobs], verbs: [create, get, list, watch, delete]}
    - {apiGroups: [""], resources: [pods], verbs: [get, list, watch, delete]}
    - {apiGroups: [""], resources: [pods/log], verbs: [get]}
    - {apiGroups: [""], resources: [secrets], verbs: [create, patch, delete]}
    - {apiGroups: [""], resources: [events], verbs: [list]}

(`patch` on secrets sets the Secret's ownerReference to the Job once the Job exists.)

Client configuration: `kubernetes_kubeconfig` names a kubeconfig file; empty means the in-cluster
service account when running in a pod, else the default kubeconfig (`$KUBECONFIG`, `~/.kube/config`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .job import build_job, build_pull_secret, build_secret, needs_secret
from .names import FETCH, TASK, UPLOAD, job_name, output_handle, pull_secret_name, secret_name
from .spec import KubeCache, KubeTaskSpec, KubeVolume, PullCredentials, TaskConfigLike
from .verdict import InfraFailure, Verdict
from .watchdog import classify

if TYPE_CHECKING:
    from .client import load_api_client, start_job, stop_job
    from .runtime import KubernetesRuntime

__all__ = [
    "FETCH", "TASK", "UPLOAD", "InfraFailure", "KubeCache", "KubeTaskSpec", "KubeVolume", "KubernetesRuntime", "PullCredentials",
    "TaskConfigLike", "Verdict", "build_job", "build_pull_secret", "build_secret", "classify", "job_name",
    "load_api_client", "needs_secret", "output_handle", "pull_secret_name", "secret_name", "start_job", "stop_job",
]  # fmt: skip

# The names whose modules import the `kubernetes` client: loaded on first use, not with this package.
_LAZY = {"KubernetesRuntime": "runtime", "load_api_client": "client", "start_job": "client", "stop_job": "client"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
