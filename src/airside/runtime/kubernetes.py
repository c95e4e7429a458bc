"""The `kubernetes` runtime: each task runs as a `batch/v1` Job (issue 7).

Web drives this runtime directly (no airside worker is involved). It is the only module that imports
the `kubernetes` client (import-linter enforces it).

How web calls it
----------------

    from airside.runtime.kubernetes import KubernetesRuntime, KubeTaskSpec, InfraFailure

    rt = KubernetesRuntime.from_settings(settings, artifact_token=token)   # kubeconfig or in-cluster
    spec = KubeTaskSpec.from_task_config(config, handle="b42-a1-unit", build="42", attempt=1,
                                         step="unit", inputs={"src": "vol-src-42"})
    rt.prepare(spec)            # validates and builds the manifest; creates nothing
    rt.start(spec.handle)       # creates the Secret (artifact-store token, if any) and the Job
    for chunk in rt.logs(spec.handle): ...           # the task container's output (pod log API)
    try:
        status = rt.wait(spec.handle)                # ExitStatus(code, reason): the task's own result
    except InfraFailure as e:                        # the infrastructure failed the task
        e.kind, e.reason, e.requeue                  # requeue=True: evicted / node lost → queue again
    finally:
        rt.destroy(spec.handle)                      # Job + pods + Secret; idempotent

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
needed are left out: without inputs there is no `fetch-inputs`; without outputs `task` is the pod's
only (main) container, so a trivial task is a one-container pod.

* Exit code: `state.terminated.exitCode` of the container named `task`, in `initContainerStatuses` or
  `containerStatuses`. **A task that exits non-zero fails the pod at its init step, so its outputs are
  not uploaded** (as in Concourse, a failed task's outputs are not passed on).
* Output volumes are created in the artifact store by `upload-outputs` with the handles given in
  `KubeTaskSpec.outputs` (default `<handle>-output-<name>`, see `output_handle`), the properties
  `build` and `step` and `KubeTaskSpec.output_ttl`, so later steps and `airside execute -o` read them by
  handle. Input volumes must exist in the artifact store before `start` (web puts them there).
* Caches are `emptyDir`s: they start empty on every run (no cache persists between Job runs).
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

import hashlib
import json
import re
import signal as _signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from airside.config import Settings
from airside.core import log as logging

from .base import ContainerSpec, ExitStatus, Limits, LogChunk, Runtime, RuntimeError_

log = logging.get("airside.runtime.kubernetes")

__all__ = [
    "FETCH", "TASK", "UPLOAD", "InfraFailure", "KubeTaskSpec", "KubeVolume", "KubernetesRuntime", "Verdict",
    "build_job", "build_secret", "classify", "job_name", "output_handle", "start_job", "stop_job",
]  # fmt: skip

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_BUILD, LABEL_ATTEMPT, LABEL_STEP = "airside.dev/build", "airside.dev/attempt", "airside.dev/step"
ANNOTATION_HANDLE, ANNOTATION_STEP = "airside.dev/handle", "airside.dev/step"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
FETCH, TASK, UPLOAD = "fetch-inputs", "task", "upload-outputs"
TOKEN_ENV = "AIRSIDE_BAGGAGECLAIM_TOKEN"
DEFAULT_WORK_DIR = PurePosixPath("/tmp/build/work")  # the same layout as airside.task.DEFAULT_WORK_DIR

IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
REQUEUE_POD_REASONS = ("Evicted", "Preempting", "Shutdown", "NodeShutdown", "Terminated", "NodeLost",
                       "UnexpectedAdmissionError", "OutOfcpu", "OutOfmemory", "OutOfpods")
STUCK_EVENT_REASONS = ("FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox", "FailedSync")


# --------------------------------------------------------------------------- errors and verdicts


class InfraFailure(RuntimeError_):
    """The infrastructure, not the task, ended the run. `kind` is a short machine-readable word (see the
    module docstring); `requeue` is True when running it again elsewhere may well succeed."""

    def __init__(self, reason: str, *, kind: str = "Infrastructure", requeue: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.kind, self.requeue = reason, kind, requeue


@dataclass(frozen=True)
class Verdict:
    """What `classify` makes of a Job: `pending` / `running` (keep waiting), `exited` (`code`, `reason`:
    the task's own result) or `infra` (`kind`, `reason`, `requeue`)."""

    state: str
    code: int | None = None
    reason: str = ""
    kind: str = ""
    requeue: bool = False

    @property
    def done(self) -> bool:
        return self.state in ("exited", "infra")


# --------------------------------------------------------------------------- the task, as Kubernetes sees it


@dataclass(frozen=True)
class KubeVolume:
    name: str  # the task's input/output name
    path: str  # absolute mount path in the containers
    handle: str  # the artifact-store volume handle (read for inputs, created for outputs)


@dataclass(frozen=True)
class KubeTaskSpec:
    handle: str
    image: str  # image reference, e.g. "busybox:1.36" or "repo@sha256:…"
    path: str  # run.path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # params (and anything web adds)
    dir: str = str(DEFAULT_WORK_DIR)  # absolute working directory
    user: str | None = None  # run.user: must be numeric "uid" or "uid:gid" here
    inputs: list[KubeVolume] = field(default_factory=list)
    outputs: list[KubeVolume] = field(default_factory=list)
    caches: list[str] = field(default_factory=list)  # absolute paths
    limits: Limits = field(default_factory=Limits)
    build: str = ""
    attempt: int = 1
    step: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # overrides settings.kubernetes_task_timeout
    output_ttl: float = 0.0  # TTL of the output volumes in the artifact store (0: none)

    @classmethod
    def from_task_config(
        cls, config: Any, *, handle: str, inputs: Mapping[str, str], outputs: Mapping[str, str] | None = None,
        build: str = "", attempt: int = 1, step: str = "", image: str | None = None, env: Mapping[str, str] | None = None,
        work_dir: str | PurePosixPath = DEFAULT_WORK_DIR, timeout: float | None = None, output_ttl: float = 0.0,
        annotations: Mapping[str, str] | None = None,
    ) -> KubeTaskSpec:
        """From an `airside.task.TaskConfig` (duck-typed: the runtime layer may not import airside.task).

        `inputs` maps input name → artifact-store volume handle (an optional input left out is not
        mounted); `outputs` maps output name → the handle to create (default `output_handle(handle, name)`);
        `image` overrides `image_resource.reference` (a step's `image:`); `env` is added to the params."""
        if image is None:
            if config.image_resource is None:
                raise RuntimeError_(f"task {step or handle!r}: no image_resource; the kubernetes runtime needs an "
                                    "image reference (give image_resource in the task config or the step's image)")
            image = config.image_resource.reference
        in_paths, out_paths = config.input_paths(work_dir), config.output_paths(work_dir)
        kin = []
        for item in config.inputs:
            if item.name not in inputs:
                if item.optional:
                    continue
                raise RuntimeError_(f"task {step or handle!r}: input {item.name!r} has no artifact volume")
            kin.append(KubeVolume(item.name, str(in_paths[item.name]), inputs[item.name]))
        outputs = outputs or {}
        kout = [KubeVolume(o.name, str(out_paths[o.name]), outputs.get(o.name) or output_handle(handle, o.name))
                for o in config.outputs]
        lim = config.container_limits
        limits = Limits(cpu_shares=lim.cpu or None, memory_bytes=lim.memory or None) if lim else Limits()
        return cls(
            handle=handle, image=image, path=config.run.path, args=list(config.run.args),
            env={**config.params_env(), **(env or {})}, dir=str(config.working_dir(work_dir)), user=config.run.user,
            inputs=kin, outputs=kout, caches=[str(p) for p in config.cache_paths(work_dir)], limits=limits,
            build=build, attempt=attempt, step=step, timeout=timeout, output_ttl=output_ttl,
            annotations=dict(annotations or {}),
        )

    @classmethod
    def from_container_spec(cls, spec: ContainerSpec, **extra: Any) -> KubeTaskSpec:
        """From the generic `ContainerSpec`: `image` is the reference; each mount's `source.name` is an
        artifact-store handle, read-only mounts are inputs, writable ones outputs."""
        ins = [KubeVolume(m.source.name, m.destination, m.source.name) for m in spec.mounts if m.read_only]
        outs = [KubeVolume(m.source.name, m.destination, m.source.name) for m in spec.mounts if not m.read_only]
        if spec.privileged:
            raise RuntimeError_(f"container {spec.handle!r}: privileged tasks are not supported by the kubernetes runtime")
        return cls(handle=spec.handle, image=spec.image, path=spec.path, args=list(spec.args), env=dict(spec.env),
                   dir=spec.dir or "/", user=spec.user, inputs=ins, outputs=outs, limits=spec.limits, **extra)


def output_handle(handle: str, output: str) -> str:
    """The default artifact-store handle of a task's output volume."""
    return f"{handle}-output-{output}"


# --------------------------------------------------------------------------- names


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _digest(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def job_name(handle: str) -> str:
    """The Job's name for a handle: the handle itself when it is a DNS label of at most 52 characters
    (pods add a suffix), else a sanitised prefix plus a hash of the handle."""
    if _DNS_LABEL.match(handle) and len(handle) <= 52:
        return handle
    s = re.sub(r"[^a-z0-9]+", "-", handle.lower()).strip("-")[:43].strip("-") or "task"
    return f"{s}-{_digest(handle)}"


def secret_name(handle: str) -> str:
    return f"{job_name(handle)}-artifacts"


def _label_value(value: str) -> str:
    if value == "" or (_LABEL_VALUE.match(value) and len(value) <= 63):
        return value
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")[:54].strip("-_.")
    return f"{s}-{_digest(value)}" if s else _digest(value)


# --------------------------------------------------------------------------- pure builders


def _check(spec: KubeTaskSpec) -> None:
    def bad(msg: str) -> RuntimeError_:
        return RuntimeError_(f"task {spec.step or spec.handle!r}: {msg}")

    if not spec.handle:
        raise bad("empty handle")
    if not spec.image:
        raise bad("no image reference (image_resource.source.repository)")
    if not spec.path:
        raise bad("run.path is empty")
    if not spec.dir.startswith("/"):
        raise bad(f"working directory {spec.dir!r} must be absolute")
    if spec.user is not None and not re.fullmatch(r"\d+(:\d+)?", spec.user):
        raise bad(f"run.user {spec.user!r} is a name; the kubernetes runtime needs a numeric uid or uid:gid "
                  "(Kubernetes' runAsUser cannot look names up in the image)")
    for v in [*spec.inputs, *spec.outputs]:
        if not v.path.startswith("/"):
            raise bad(f"path {v.path!r} of {v.name!r} must be absolute")
        if "=" in v.handle or not v.handle:
            raise bad(f"invalid artifact volume handle {v.handle!r} for {v.name!r}")
    for c in spec.caches:
        if not c.startswith("/"):
            raise bad(f"cache path {c!r} must be absolute")


def _cpu(shares: int) -> str:
    return f"{max(1, shares * 1000 // 1024)}m"


def _user(user: str | None) -> dict[str, int]:
    if not user:
        return {}
    uid, _, gid = user.partition(":")
    return {"runAsUser": int(uid), **({"runAsGroup": int(gid)} if gid else {})}


def build_job(spec: KubeTaskSpec, settings: Settings) -> dict[str, Any]:
    """The `batch/v1` Job manifest for a task (pure: no I/O). Raises `RuntimeError_` on a spec that cannot
    run on Kubernetes (e.g. a named run.user)."""
    _check(spec)
    name = job_name(spec.handle)
    labels = {MANAGED_BY: "airside", LABEL_BUILD: _label_value(spec.build), LABEL_ATTEMPT: str(spec.attempt),
              LABEL_STEP: _label_value(spec.step)}
    annotations = {ANNOTATION_HANDLE: spec.handle, ANNOTATION_STEP: spec.step, **spec.annotations}

    # one emptyDir per distinct path; an output at an input's path shares the input's volume
    volumes: list[dict[str, Any]] = []
    by_path: dict[str, str] = {}

    def volume(kind: str, index: int, path: str) -> str:
        if path not in by_path:
            by_path[path] = f"{kind}-{index}"
            volumes.append({"name": by_path[path], "emptyDir": {}})
        return by_path[path]

    in_mounts = [{"name": volume("input", i, v.path), "mountPath": v.path} for i, v in enumerate(spec.inputs)]
    out_mounts = [{"name": volume("output", i, v.path), "mountPath": v.path} for i, v in enumerate(spec.outputs)]
    cache_mounts = [{"name": volume("cache", i, p), "mountPath": p} for i, p in enumerate(spec.caches)]
    task_mounts = list({m["mountPath"]: m for m in [*in_mounts, *out_mounts, *cache_mounts]}.values())

    resources: dict[str, dict[str, str]] = {}
    if spec.limits.cpu_shares:
        resources["requests"] = {"cpu": _cpu(spec.limits.cpu_shares)}
    if spec.limits.memory_bytes:
        resources["limits"] = {"memory": _quantity(spec.limits.memory_bytes)}

    task: dict[str, Any] = {"name": TASK, "image": spec.image, "command": [spec.path], "args": list(spec.args),
                            "workingDir": spec.dir}
    if not spec.args:
        del task["args"]
    if spec.env:
        task["env"] = [{"name": k, "value": v} for k, v in spec.env.items()]
    if resources:
        task["resources"] = resources
    if task_mounts:
        task["volumeMounts"] = task_mounts
    if spec.user:
        task["securityContext"] = _user(spec.user)

    needs_token = bool(spec.inputs or spec.outputs)
    def step(name: str, command: list[str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": name, "image": settings.kubernetes_airside_image, "imagePullPolicy": "IfNotPresent",
            "command": command,
            "env": [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name(spec.handle),
                                                                        "key": "token"}}}],
            "volumeMounts": mounts,
            "securityContext": _user(spec.user) or {"runAsUser": 0, "runAsGroup": 0},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }

    url = settings.kubernetes_artifact_url
    if needs_token and not url:
        raise RuntimeError_("the kubernetes runtime needs the artifact store's in-cluster URL for a task with inputs "
                            "or outputs: set kubernetes_artifact_url (AIRSIDE_KUBERNETES_ARTIFACT_URL)")
    init: list[dict[str, Any]] = []
    if spec.inputs:
        cmd = ["airside", FETCH, "--artifact-url", url]
        for v in spec.inputs:
            cmd += ["--volume", f"{v.handle}={v.path}"]
        init.append(step(FETCH, cmd, in_mounts))
    containers = [task]
    if spec.outputs:
        cmd = ["airside", UPLOAD, "--artifact-url", url]
        for key, value in (("build", spec.build), ("step", spec.step)):
            if value:
                cmd += ["--property", f"{key}={value}"]
        if spec.output_ttl:
            cmd += ["--ttl", f"{spec.output_ttl:g}"]
        for v in spec.outputs:
            cmd += ["--volume", f"{v.handle}={v.path}"]
        init.append(task)
        containers = [step(UPLOAD, cmd, out_mounts)]

    pod: dict[str, Any] = {"restartPolicy": "Never", "automountServiceAccountToken": False,
                           "enableServiceLinks": False}
    if settings.kubernetes_service_account:
        pod["serviceAccountName"] = settings.kubernetes_service_account
    if settings.kubernetes_node_selector:
        pod["nodeSelector"] = dict(settings.kubernetes_node_selector)
    if settings.kubernetes_tolerations:
        pod["tolerations"] = [dict(t) for t in settings.kubernetes_tolerations]
    if settings.kubernetes_image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.kubernetes_image_pull_secrets]
    if init:
        pod["initContainers"] = init
    pod["containers"] = containers
    if volumes:
        pod["volumes"] = volumes

    timeout = spec.timeout if spec.timeout is not None else settings.kubernetes_task_timeout
    job_spec: dict[str, Any] = {"backoffLimit": 0}
    if timeout:
        job_spec["activeDeadlineSeconds"] = max(1, int(timeout))
    job_spec["ttlSecondsAfterFinished"] = int(settings.kubernetes_ttl_after_finished)
    job_spec["template"] = {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": pod}
    return _plain({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": settings.kubernetes_namespace, "labels": labels,
                     "annotations": annotations},
        "spec": job_spec,
    })


def _plain(obj: Any) -> Any:
    """A deep copy that shares no sub-object (no YAML anchors, no aliasing between containers)."""
    return json.loads(json.dumps(obj))


def _quantity(n: int) -> str:
    for suffix, power in (("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n % (1 << power) == 0:
            return f"{n >> power}{suffix}"
    return str(n)


def build_secret(spec: KubeTaskSpec, settings: Settings, token: str) -> dict[str, Any]:
    """The Secret holding the artifact-store token for a task's airside steps (pure)."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name(spec.handle), "namespace": settings.kubernetes_namespace,
                     "labels": {MANAGED_BY: "airside", LABEL_BUILD: _label_value(spec.build)},
                     "annotations": {ANNOTATION_HANDLE: spec.handle}},
        "stringData": {"token": token},
    }


def needs_secret(job: Mapping[str, Any]) -> bool:
    pod = job["spec"]["template"]["spec"]
    return any(c["name"] in (FETCH, UPLOAD) for c in [*pod.get("initContainers", []), *pod["containers"]])


# --------------------------------------------------------------------------- the watchdog (pure)


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _statuses(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    st = pod.get("status") or {}
    return [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]


def _status(pod: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    return next((s for s in _statuses(pod) if s.get("name") == name), None)


def _container_names(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    return [c["name"] for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]


def _condition(obj: Mapping[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in ((obj.get("status") or {}).get("conditions") or []) if c.get("type") == ctype), None)


def _tail(message: str, n: int = 800) -> str:
    message = (message or "").strip()
    return message if len(message) <= n else "…" + message[-n:]


def _newest_event(events: Sequence[Mapping[str, Any]], names: set[str], reasons: tuple[str, ...] | None = None,
                  warning: bool = True) -> Mapping[str, Any] | None:
    found = [e for e in events
             if (e.get("involvedObject") or {}).get("name") in names
             and (not warning or e.get("type") == "Warning")
             and (reasons is None or e.get("reason") in reasons)]
    key = lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or "")  # noqa: E731
    return max(found, key=key) if found else None


def classify(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]],
             events: Sequence[Mapping[str, Any]] = (), *, now: datetime | None = None,
             schedule_timeout: float | None = None) -> Verdict:
    """What has become of a task's Job. Arguments are API objects as plain dicts (camelCase keys, as the
    API server sends them); `events` are those whose involvedObject is the Job, its pod or the pod's PVCs."""
    now = now or datetime.now(UTC)
    if job is None:
        return Verdict("infra", kind="JobDeleted",
                       reason="the Job was deleted outside airside before the task finished (by a person, a "
                              "namespace deletion or ttlSecondsAfterFinished)")
    jname = (job.get("metadata") or {}).get("name", "")
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    deadline_verdict = Verdict("infra", kind="DeadlineExceeded",
                               reason=f"the task ran longer than its timeout ({deadline}s, activeDeadlineSeconds; "
                                      "setting kubernetes_task_timeout) and Kubernetes stopped it (DeadlineExceeded)")
    for ctype in ("FailureTarget", "Failed"):
        c = _condition(job, ctype)
        if c and c.get("status") == "True" and c.get("reason") == "DeadlineExceeded":
            return deadline_verdict
    pod = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""), default=None)
    if pod is None:
        return _classify_without_pod(job, jname, events, now, schedule_timeout)
    pname = (pod.get("metadata") or {}).get("name", "")
    pst = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName") or "?"

    # 1. the node or a controller took the pod away: infrastructure, worth running again
    if pst.get("reason") in REQUEUE_POD_REASONS and pst.get("phase") == "Failed":
        kind = "Evicted" if pst.get("reason") == "Evicted" else "NodeLost"
        return Verdict("infra", kind=kind, requeue=True,
                       reason=f"pod {pname} on node {node} failed with {pst.get('reason')}: {pst.get('message', '')}".rstrip(": "))
    dt = _condition(pod, "DisruptionTarget")
    if dt and dt.get("status") == "True":
        return Verdict("infra", kind="Disrupted", requeue=True,
                       reason=f"pod {pname} on node {node} was disrupted ({dt.get('reason')}): {dt.get('message', '')}")

    # 2. the task's own result
    names = _container_names(pod)
    task = _status(pod, TASK)
    term = ((task or {}).get("state") or {}).get("terminated")
    if term:
        if term.get("reason") in ("StartError", "ContainerCannotRun"):
            return Verdict("infra", kind="StartError",
                           reason=f"the task container could not start: {_tail(term.get('message', ''))}")
        code = int(term.get("exitCode", 0))
        reason = term.get("reason") or ""
        reason = "" if reason in ("Error", "Completed") else reason
        if code != 0 or UPLOAD not in names:
            return Verdict("exited", code=code, reason=reason)
        up = ((_status(pod, UPLOAD) or {}).get("state") or {}).get("terminated")
        if up:
            if int(up.get("exitCode", 0)) == 0:
                return Verdict("exited", code=0, reason=reason)
            return Verdict("infra", kind="UploadOutputs",
                           reason=f"uploading outputs to the artifact store failed (exit {up.get('exitCode')}): "
                                  f"{_tail(up.get('message', ''))}")
    fetch = ((_status(pod, FETCH) or {}).get("state") or {}).get("terminated")
    if fetch and int(fetch.get("exitCode", 0)) != 0:
        return Verdict("infra", kind="FetchInputs",
                       reason=f"fetching inputs from the artifact store failed (exit {fetch.get('exitCode')}): "
                              f"{_tail(fetch.get('message', ''))}")

    # 3. containers that cannot start
    images = {c["name"]: c.get("image", "") for c in
              [*((pod.get("spec") or {}).get("initContainers") or []), *((pod.get("spec") or {}).get("containers") or [])]}
    for s in _statuses(pod):
        waiting = (s.get("state") or {}).get("waiting") or {}
        why = waiting.get("reason")
        if why in IMAGE_PULL_REASONS:
            image = s.get("image") or images.get(s.get("name", ""), "?")
            return Verdict("infra", kind="ImagePull",
                           reason=f"cannot pull image {image!r} for container {s.get('name')} ({why}): "
                                  f"{waiting.get('message', '').strip()}".rstrip(": "))
        if why in CONFIG_REASONS:
            return Verdict("infra", kind="CreateContainer",
                           reason=f"container {s.get('name')} cannot be created ({why}): {waiting.get('message', '')}")

    if pod.get("metadata", {}).get("deletionTimestamp") and not term:
        started = _ts((job.get("status") or {}).get("startTime"))
        if deadline and started and (now - started).total_seconds() >= float(deadline):
            # the Job controller deletes the pod of a Job past its deadline before it sets the condition
            return deadline_verdict
        return Verdict("infra", kind="PodDeleted",
                       reason=f"pod {pname} was deleted before the task finished (not by airside)")
    if pst.get("phase") == "Failed":
        return Verdict("infra", kind="PodFailed",
                       reason=f"pod {pname} failed ({pst.get('reason', '?')}): {pst.get('message', '')}".rstrip(": "))

    # 4. scheduling
    created = _ts((job.get("metadata") or {}).get("creationTimestamp")) or now
    age = (now - created).total_seconds()
    sched = _condition(pod, "PodScheduled")
    if not sched or sched.get("status") != "True":
        msg = (sched or {}).get("message") or ""
        ev = _newest_event(events, {pname}, ("FailedScheduling",))
        msg = msg or (ev or {}).get("message", "")
        claims = [v["persistentVolumeClaim"]["claimName"] for v in ((pod.get("spec") or {}).get("volumes") or [])
                  if v.get("persistentVolumeClaim")]
        if "PersistentVolumeClaim" in msg or "unbound" in msg:
            pvc_ev = _newest_event(events, set(claims))
            extra = f"; {pvc_ev.get('reason')}: {pvc_ev.get('message')}" if pvc_ev else ""
            return Verdict("infra", kind="PVCNotBound",
                           reason=f"pod {pname} cannot be scheduled: PersistentVolumeClaim "
                                  f"{', '.join(claims) or '?'} is not bound ({msg}{extra})")
        if (sched or {}).get("reason") == "Unschedulable":
            scale_up = _newest_event(events, {pname}, ("TriggeredScaleUp",), warning=False)
            if not scale_up or (schedule_timeout is not None and age > schedule_timeout):
                return Verdict("infra", kind="Unschedulable",
                               reason=f"no node can run pod {pname}: {msg or 'Unschedulable'} (check the task's "
                                      "container_limits and the settings kubernetes_node_selector / "
                                      "kubernetes_tolerations)")
        if schedule_timeout is not None and age > schedule_timeout:
            return Verdict("infra", kind="ScheduleTimeout",
                           reason=f"pod {pname} was not scheduled within {schedule_timeout:g}s "
                                  f"(kubernetes_schedule_timeout){': ' + msg if msg else ''}")
        return Verdict("pending")

    started = any(("running" in (s.get("state") or {})) or ("terminated" in (s.get("state") or {}))
                  for s in _statuses(pod))
    if not started:
        since = (now - (_ts(sched.get("lastTransitionTime")) or created)).total_seconds()
        if schedule_timeout is not None and since > schedule_timeout:
            ev = _newest_event(events, {pname}, STUCK_EVENT_REASONS)
            if ev:
                return Verdict("infra", kind="PodStuck",
                               reason=f"pod {pname} on node {node} has not started any container within "
                                      f"{schedule_timeout:g}s of being scheduled: {ev.get('reason')}: {ev.get('message')}")
        return Verdict("pending")
    return Verdict("running")


def _classify_without_pod(job: Mapping[str, Any], jname: str, events: Sequence[Mapping[str, Any]], now: datetime,
                          schedule_timeout: float | None) -> Verdict:
    complete = _condition(job, "Complete")
    if complete and complete.get("status") == "True":
        return Verdict("exited", code=0)
    failed = _condition(job, "Failed")
    if failed and failed.get("status") == "True":
        if failed.get("reason") == "BackoffLimitExceeded":
            return Verdict("infra", kind="PodDeleted",
                           reason=f"the pod of Job {jname} was deleted before the task finished (not by airside)")
        return Verdict("infra", kind="JobFailed",
                       reason=f"Job {jname} failed ({failed.get('reason')}): {failed.get('message', '')}")
    ev = _newest_event(events, {jname}, ("FailedCreate",))
    if ev:
        return Verdict("infra", kind="FailedCreate",
                       reason=f"Kubernetes could not create the pod of Job {jname}: {ev.get('message')}")
    created = _ts((job.get("metadata") or {}).get("creationTimestamp")) or now
    if (job.get("status") or {}).get("failed") or (job.get("status") or {}).get("succeeded"):
        # the pod ran and is gone (deleted or garbage-collected) before the Job's condition was written
        return Verdict("pending")
    if schedule_timeout is not None and (now - created).total_seconds() > schedule_timeout:
        return Verdict("infra", kind="ScheduleTimeout",
                       reason=f"Job {jname} has had no pod for {schedule_timeout:g}s (kubernetes_schedule_timeout)")
    return Verdict("pending")


# --------------------------------------------------------------------------- I/O: the client


def load_api_client(kubeconfig: str | None = None) -> Any:
    """A `kubernetes.client.ApiClient`: from `kubeconfig` if given, else in-cluster config inside a pod, else
    the default kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    import os

    from kubernetes import client, config

    try:
        if kubeconfig:
            return config.new_client_from_config(config_file=str(kubeconfig))
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        return config.new_client_from_config()
    except (config.ConfigException, OSError) as e:
        where = kubeconfig or "the in-cluster service account or the default kubeconfig"
        raise RuntimeError_(f"cannot load a Kubernetes client configuration from {where}: {e} "
                            "(set kubernetes_kubeconfig / AIRSIDE_KUBERNETES_KUBECONFIG)") from e


LOG_RETRY_SECONDS = 60  # how long `logs` retries a failing log request before giving up
STATUS_SETTLE_SECONDS = 3.0  # how long a pod's status may lag its container's exit (the kubelet's relist)


def _log_transient(e: Exception) -> bool:
    """A log request failing on the way to the kubelet (it restarted, the connection dropped), or the API
    server busy: worth a retry."""
    status = getattr(e, "status", None) or 0
    return status == 0 or status in (429, 502, 503, 504) or (
        status == 500 and bool(re.search(r"connection reset|connection refused|EOF|i/o timeout|dial|broken pipe",
                                         str(getattr(e, "body", "") or e), re.IGNORECASE)))


def _api_error(e: Exception, what: str) -> RuntimeError_:
    status = getattr(e, "status", None)
    body = getattr(e, "body", None) or str(e)
    try:
        body = json.loads(body).get("message", body)
    except (ValueError, TypeError, AttributeError):
        pass
    hint = ""
    if status == 403:
        hint = " (the service account lacks RBAC permissions: see docs/kubernetes-runtime.md for the Role)"
    elif status is None or status == 0:
        hint = " (is the API server reachable?)"
    return RuntimeError_(f"{what} failed: {status or ''} {body}{hint}".replace("  ", " "))


def _is_404(e: Exception) -> bool:
    return getattr(e, "status", None) == 404


def start_job(api_client: Any, job: dict[str, Any], secret: dict[str, Any] | None = None) -> dict[str, Any]:
    """Creates the Secret (if any), the Job, then makes the Job the Secret's owner. Returns the created Job
    as a dict. On failure nothing is left behind."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
    if secret is not None:
        try:
            core.create_namespaced_secret(ns, secret)
        except ApiException as e:
            if e.status != 409:
                raise _api_error(e, f"creating Secret {ns}/{secret['metadata']['name']}") from None
            core.replace_namespaced_secret(secret["metadata"]["name"], ns, secret)
    try:
        created = batch.create_namespaced_job(ns, job)
    except ApiException as e:
        if secret is not None:
            _delete(lambda: core.delete_namespaced_secret(secret["metadata"]["name"], ns))
        if e.status == 409:
            raise RuntimeError_(f"Job {ns}/{name} already exists (handle used twice? destroy it first)") from None
        raise _api_error(e, f"creating Job {ns}/{name}") from None
    if secret is not None:
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": created.metadata.uid}
        try:
            core.patch_namespaced_secret(secret["metadata"]["name"], ns, {"metadata": {"ownerReferences": [owner]}})
        except ApiException as e:
            stop_job(api_client, ns, name, secret["metadata"]["name"])
            raise _api_error(e, f"setting the owner of Secret {ns}/{secret['metadata']['name']}") from None
    return api_client.sanitize_for_serialization(created)


def _delete(call: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as e:
        if e.status != 404:
            raise


def stop_job(api_client: Any, namespace: str, name: str, secret: str | None = None,
             grace_seconds: int | None = None) -> None:
    """Deletes the Job (propagationPolicy Background), its pods and the Secret. A missing object is
    success; safe to call any number of times."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    try:
        _delete(lambda: batch.delete_namespaced_job(name, namespace, propagation_policy="Background",
                                                    grace_period_seconds=grace_seconds))
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items
        for p in pods:
            _delete(lambda p=p: core.delete_namespaced_pod(p.metadata.name, namespace,
                                                           grace_period_seconds=grace_seconds))
        if secret:
            _delete(lambda: core.delete_namespaced_secret(secret, namespace))
    except ApiException as e:
        raise _api_error(e, f"deleting Job {namespace}/{name}") from None


# --------------------------------------------------------------------------- the Runtime


class KubernetesRuntime(Runtime):
    name = "kubernetes"
    isolates = True

    def __init__(self, namespace: str | None = None, *, settings: Settings | None = None,
                 artifact_token: str | None = None, api_client: Any = None, poll_interval: float = 5.0) -> None:
        settings = settings or Settings()
        if namespace:
            settings = settings.model_copy(update={"kubernetes_namespace": namespace})
        self.settings, self.namespace = settings, settings.kubernetes_namespace
        self.artifact_token = artifact_token
        self.api = api_client if api_client is not None else load_api_client(str(settings.kubernetes_kubeconfig or ""))
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._prepared: dict[str, tuple[KubeTaskSpec, dict[str, Any]]] = {}
        self._stopped: dict[str, int] = {}
        from kubernetes import client

        self.core, self.batch = client.CoreV1Api(self.api), client.BatchV1Api(self.api)

    @classmethod
    def from_settings(cls, settings: Settings, *, artifact_token: str | None = None, api_client: Any = None
                      ) -> KubernetesRuntime:
        return cls(settings=settings, artifact_token=artifact_token, api_client=api_client)

    # --- phases -----------------------------------------------------------------------------------------
    def prepare(self, spec: ContainerSpec | KubeTaskSpec) -> None:
        kspec = spec if isinstance(spec, KubeTaskSpec) else KubeTaskSpec.from_container_spec(spec)
        manifest = build_job(kspec, self.settings)
        if needs_secret(manifest) and not self.artifact_token:
            raise RuntimeError_(f"task {kspec.handle!r} has inputs or outputs but the kubernetes runtime has no "
                                "artifact-store token (pass artifact_token; it is the baggageclaim token)")
        with self._lock:
            self._prepared[kspec.handle] = (kspec, manifest)

    def manifest(self, handle: str) -> dict[str, Any]:
        """The Job manifest `prepare` built for a handle."""
        with self._lock:
            if handle not in self._prepared:
                raise RuntimeError_(f"task {handle!r} was not prepared (by this process)")
            return self._prepared[handle][1]

    def start(self, handle: str) -> None:
        with self._lock:
            if handle not in self._prepared:
                raise RuntimeError_(f"task {handle!r} was not prepared by this process: call prepare() first")
            spec, manifest = self._prepared[handle]
        secret = build_secret(spec, self.settings, self.artifact_token or "") if needs_secret(manifest) else None
        start_job(self.api, manifest, secret)
        log.info("job created", handle=handle, job=manifest["metadata"]["name"], namespace=self.namespace)
        with self._lock:
            self._prepared.pop(handle, None)

    def _read_job(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.sanitize_for_serialization(self.batch.read_namespaced_job(name, self.namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise _api_error(e, f"reading Job {self.namespace}/{name}") from None

    def _pods(self, name: str) -> tuple[list[dict[str, Any]], str]:
        from kubernetes.client.exceptions import ApiException

        try:
            res = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={name}")
        except ApiException as e:
            raise _api_error(e, f"listing the pods of Job {self.namespace}/{name}") from None
        return [self.api.sanitize_for_serialization(p) for p in res.items], res.metadata.resource_version

    def _events(self, names: set[str]) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        out: list[dict[str, Any]] = []
        for n in sorted(names):
            try:
                res = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={n}")
            except ApiException as e:
                if e.status == 403:  # events are only used for better messages
                    return out
                raise _api_error(e, "listing events") from None
            out += [self.api.sanitize_for_serialization(x) for x in res.items]
        return out

    def observe(self, handle: str) -> tuple[Verdict, str]:
        """Reads the Job, its pods (and, when something looks wrong, the events) and classifies them.
        Returns the verdict and the pod list's resourceVersion (to watch from)."""
        name = job_name(handle)
        job = self._read_job(name)
        pods, rv = self._pods(name)
        verdict = classify(job, pods, (), schedule_timeout=self.settings.kubernetes_schedule_timeout)
        if verdict.state == "pending" or verdict.kind in ("Unschedulable", "ScheduleTimeout", "PodStuck"):
            names = {name} | {p["metadata"]["name"] for p in pods}
            for p in pods:
                names |= {v["persistentVolumeClaim"]["claimName"] for v in p["spec"].get("volumes") or []
                          if v.get("persistentVolumeClaim")}
            verdict = classify(job, pods, self._events(names), schedule_timeout=self.settings.kubernetes_schedule_timeout)
        return verdict, rv

    def _await_change(self, handle: str, rv: str, seconds: float) -> None:
        """Blocks until a pod of the Job changes or `seconds` pass (a pod watch from `rv`)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        if seconds <= 0:
            return
        w = watch.Watch()
        t0 = time.monotonic()
        try:
            for _ in w.stream(self.core.list_namespaced_pod, self.namespace,
                              label_selector=f"{JOB_NAME_LABEL}={job_name(handle)}", resource_version=rv,
                              timeout_seconds=max(1, int(seconds)), _request_timeout=seconds + 10):
                break
        except (ApiException, OSError, ValueError) as e:  # 410 Gone, a dropped connection: poll instead
            log.debug("pod watch ended", handle=handle, error=str(e))
            time.sleep(max(0.0, min(1.0, seconds - (time.monotonic() - t0))))
        finally:
            w.stop()

    def wait(self, handle: str, timeout: float | None = None) -> ExitStatus | None:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            verdict, rv = self.observe(handle)
            with self._lock:
                sig = self._stopped.get(handle)
            if verdict.state == "exited" and verdict.code is not None:
                return ExitStatus(verdict.code, verdict.reason)
            if sig is not None:  # stopped by signal(): the pod going away is what we asked for
                if verdict.done:
                    return ExitStatus(128 + sig, f"killed by {_signal.Signals(sig).name}")
            elif verdict.state == "infra":
                log.warning("task failed by the infrastructure", handle=handle, kind=verdict.kind,
                            reason=verdict.reason, requeue=verdict.requeue)
                try:
                    self._stop(handle)
                except RuntimeError_ as e:
                    log.warning("could not stop the Job", handle=handle, error=str(e))
                raise InfraFailure(verdict.reason, kind=verdict.kind, requeue=verdict.requeue)
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._await_change(handle, rv, self.poll_interval if left is None else min(self.poll_interval, left))

    def logs(self, handle: str, follow: bool = True) -> Iterator[LogChunk]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        name = job_name(handle)
        while True:  # until the task container has started (or it never will)
            pods, rv = self._pods(name)
            pod = pods[-1] if pods else None
            state = ((_status(pod, TASK) or {}).get("state") or {}) if pod else {}
            if "running" in state or "terminated" in state:
                break
            verdict, rv = self.observe(handle)
            if verdict.done or not follow:
                return
            self._await_change(handle, rv, self.poll_interval)
        pod_name = pod["metadata"]["name"]
        delivered = 0  # bytes of the container's log already given to the caller
        deadline = time.monotonic() + LOG_RETRY_SECONDS
        while True:
            try:
                resp = self.core.read_namespaced_pod_log(pod_name, self.namespace, container=TASK, follow=follow,
                                                         _preload_content=False)
            except ApiException as e:
                if e.status in (400, 404):  # the pod went away meanwhile, or its kubelet is restarting
                    if time.monotonic() > deadline or self._live_pod(name, pod_name) is None:
                        return
                elif not _log_transient(e) or time.monotonic() > deadline:
                    raise _api_error(e, f"reading the logs of {name}") from None
                log.warning("reading the task's log failed; retrying", handle=handle, error=_api_error(e, "").args[0])
                time.sleep(1)
                continue
            skip, dropped = delivered, False
            try:
                for data in resp.stream(65536, decode_content=False):
                    if skip:  # a reconnection starts the log again: skip what the caller has
                        cut = min(skip, len(data))
                        data, skip = data[cut:], skip - cut
                    if data:
                        delivered += len(data)
                        yield LogChunk("stdout", data)
            except (OSError, HTTPError) as e:  # the connection to the API server or the kubelet dropped
                dropped = True
                log.debug("log stream ended", handle=handle, error=str(e))
            finally:
                resp.release_conn()
            # A clean end is the container exiting, usually; the pod's status says so a moment later (the
            # kubelet reports it after its next relist), so give it that moment before calling it a cut.
            if not follow or not self._runs_on(name, pod_name, 0.0 if dropped else STATUS_SETTLE_SECONDS):
                return  # ended with the container (or the pod was deleted): the log is complete
            # The stream ended while the task runs: a kubelet restart or a dropped API connection. Reading the
            # log again from its start and skipping what was delivered keeps it whole (unless the kubelet
            # rotated the file meanwhile, past 10 MiB by default: then the skip is approximate).
            log.warning("the task's log stream ended while the task runs; reconnecting", handle=handle,
                        delivered=delivered, dropped=dropped)
            deadline = time.monotonic() + LOG_RETRY_SECONDS

    def _live_pod(self, name: str, pod_name: str) -> dict[str, Any] | None:
        pods, _ = self._pods(name)
        pod = next((p for p in pods if p["metadata"]["name"] == pod_name), None)
        return None if pod is None or pod["metadata"].get("deletionTimestamp") else pod

    def _runs_on(self, name: str, pod_name: str, settle: float) -> bool:
        """Whether the task container still runs: True only if it does now and did for `settle` seconds of
        checks (0.5 s apart)."""
        end = time.monotonic() + settle
        while True:
            pod = self._live_pod(name, pod_name)
            if pod is None or "running" not in ((_status(pod, TASK) or {}).get("state") or {}):
                return False
            if time.monotonic() >= end:
                return True
            time.sleep(0.5)

    def _stop(self, handle: str, grace_seconds: int | None = None) -> None:
        stop_job(self.api, self.namespace, job_name(handle), secret_name(handle), grace_seconds)

    def signal(self, handle: str, sig: int) -> None:
        if sig not in (_signal.SIGTERM, _signal.SIGKILL):
            raise RuntimeError_(f"the kubernetes runtime can only stop a task (SIGTERM or SIGKILL), not deliver "
                                f"{_signal.Signals(sig).name}")
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            self._stopped[handle] = int(sig)
        grace = 1 if sig == _signal.SIGKILL else None
        name = job_name(handle)
        log.info("stopping task", handle=handle, signal=_signal.Signals(sig).name)
        pods, _ = self._pods(name)
        for p in pods:
            try:
                _delete(lambda p=p: self.core.delete_namespaced_pod(p["metadata"]["name"], self.namespace,
                                                                    grace_period_seconds=grace))
            except ApiException as e:
                raise _api_error(e, f"deleting pod {p['metadata']['name']}") from None
        if not pods:
            self._stop(handle, grace)

    def destroy(self, handle: str) -> None:
        self._stop(handle, None)
        with self._lock:
            self._prepared.pop(handle, None)
            self._stopped.pop(handle, None)

    def status(self, handle: str) -> str:
        with self._lock:
            if handle in self._prepared:
                return "prepared"
        job = self._read_job(job_name(handle))
        if job is None:
            return "missing"
        for ctype in ("Complete", "Failed"):
            c = _condition(job, ctype)
            if c and c.get("status") == "True":
                return "exited"
        pods, _ = self._pods(job_name(handle))
        if pods and (((_status(pods[-1], TASK) or {}).get("state") or {}).get("terminated")):
            return "exited"
        return "running"

    def list(self) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        try:
            jobs = self.batch.list_namespaced_job(self.namespace, label_selector=f"{MANAGED_BY}=airside").items
        except ApiException as e:
            raise _api_error(e, f"listing Jobs in {self.namespace}") from None
        with self._lock:
            prepared = list(self._prepared)
        handles = [(j.metadata.annotations or {}).get(ANNOTATION_HANDLE) or j.metadata.name for j in jobs]
        return sorted({*handles, *prepared})
