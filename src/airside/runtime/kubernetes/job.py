"""The Kubernetes objects of a task, built from a `KubeTaskSpec` and the settings (pure: no I/O).

`build_job` gives the `batch/v1` Job (see the package docstring for the pod's shape), `build_secret` the
Secret holding the artifact-store token of its airside steps, `needs_secret` tells from a Job whether
it has such steps, and `build_pull_secret` the image pull Secret made of the image's registry credentials.

Resources (`_resources`): CPU shares (container_limits.cpu, else settings.kubernetes_default_cpu_shares)
request shares/1024 cores, and a CPU limit of kubernetes_cpu_limit_ratio × that request when the ratio is
set; memory (container_limits.memory, else kubernetes_default_memory_mib) is both request and limit.
Placement (`_placement`): kubernetes_node_selector and kubernetes_tolerations for every task, plus each build
tag's entry in kubernetes_tag_placement (a tag without one, two tags giving one node label different values,
or two tags with an affinity each are refused).
Caches (`KubeCache`): each is an emptyDir like the rest; one with a `fetch` volume is filled by `fetch-inputs`
(after the inputs), one with an `upload` volume is written by `upload-outputs` (after the outputs), so a cache
is only ever saved by a task that succeeded, as outputs are. Each part of the Job has a builder of its own below: the metadata, the volumes and
mounts, the task container, the airside step containers, the pod spec and the Job spec.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from airside.config import Settings
from airside.runtime.base import RuntimeError_
from airside.runtime.images import auth_file

from .names import (
    ANNOTATION_HANDLE,
    ANNOTATION_STEP,
    FETCH,
    LABEL_ATTEMPT,
    LABEL_BUILD,
    LABEL_STEP,
    MANAGED_BY,
    STDIN_ENV,
    TASK,
    TOKEN_ENV,
    UPLOAD,
    Manifest,
    job_name,
    label_value,
    pull_secret_name,
    secret_name,
)
from .spec import KubeTaskSpec

__all__ = ["build_job", "build_pull_secret", "build_secret", "needs_secret"]

def build_job(spec: KubeTaskSpec, settings: Settings) -> Manifest:
    """The `batch/v1` Job manifest for a task (pure: no I/O). Raises `RuntimeError_` on a spec that cannot
    run on Kubernetes (e.g. a named run.user) or settings that cannot serve it (no artifact URL for a task
    with inputs or outputs). The result shares no sub-object between its parts."""
    _check(spec, settings)
    url = _artifact_url(spec, settings)
    mounts = _mounts(spec)
    init, containers = _containers(spec, settings, url, mounts)
    return _plain({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job_name(spec.handle), "namespace": settings.kubernetes_namespace,
                     "labels": _labels(spec), "annotations": _annotations(spec)},
        "spec": _job_spec(spec, settings, _pod_spec(spec, settings, init, containers, mounts.volumes)),
    })


def build_pull_secret(spec: KubeTaskSpec, settings: Settings) -> Manifest | None:
    """The `kubernetes.io/dockerconfigjson` Secret of the task image's registry credentials (None without
    credentials); the Job lists it in imagePullSecrets and, once created, owns it."""
    creds = spec.pull_credentials
    if creds is None:
        return None
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": pull_secret_name(spec.handle), "namespace": settings.kubernetes_namespace,
                     "labels": {MANAGED_BY: "airside", LABEL_BUILD: label_value(spec.build)},
                     "annotations": {ANNOTATION_HANDLE: spec.handle}},
        "stringData": {".dockerconfigjson": auth_file(creds.registry, creds.username, creds.password)},
    }


def build_secret(spec: KubeTaskSpec, settings: Settings, token: str) -> Manifest:
    """The Secret holding the artifact-store token for a task's airside steps and the task's stdin (a resource
    script's request, which may hold credentials: never in the pod spec) (pure)."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name(spec.handle), "namespace": settings.kubernetes_namespace,
                     "labels": {MANAGED_BY: "airside", LABEL_BUILD: label_value(spec.build)},
                     "annotations": {ANNOTATION_HANDLE: spec.handle}},
        "stringData": {"token": token, **({"stdin": spec.stdin} if spec.stdin is not None else {})},
    }


def needs_secret(job: Manifest) -> bool:
    """Whether a Job built by `build_job` has airside steps, which read the artifact-store token Secret."""
    pod = job["spec"]["template"]["spec"]
    return any(c["name"] in (FETCH, UPLOAD) for c in [*pod.get("initContainers", []), *pod["containers"]])


def reads_stdin(job: Manifest) -> bool:
    """Whether the Job's task reads its stdin from the Job's Secret (`STDIN_ENV`)."""
    pod = job["spec"]["template"]["spec"]
    return any(e.get("name") == STDIN_ENV for c in pod["containers"] for e in c.get("env", []))


# --------------------------------------------------------------------------- checks


def _check(spec: KubeTaskSpec, settings: Settings) -> None:
    def bad(msg: str) -> RuntimeError_:
        return RuntimeError_(f"task {spec.step or spec.handle!r}: {msg}")

    if spec.privileged and not settings.allow_privileged_tasks:
        raise bad("privileged tasks are not allowed by this deployment: its operator can permit them with "
                  "allow_privileged_tasks (AIRSIDE_ALLOW_PRIVILEGED_TASKS=true; the pod runs with "
                  "securityContext.privileged)")
    if not spec.handle:
        raise bad("empty handle")
    if not spec.image:
        raise bad("no image reference (image_resource.source.repository)")
    if not spec.path and spec.args:
        raise bad("args without run.path (the image's CMD would be replaced)")
    if not spec.dir.startswith("/"):
        raise bad(f"working directory {spec.dir!r} must be absolute")
    if spec.user is not None and not re.fullmatch(r"\d+(:\d+)?", spec.user):
        raise bad(f"run.user {spec.user!r} is a name; the kubernetes runtime needs a numeric uid or uid:gid "
                  "(Kubernetes' runAsUser cannot look names up in the image)")
    _check_paths(spec, bad)


def _check_paths(spec: KubeTaskSpec, bad: Callable[[str], RuntimeError_]) -> None:
    for v in [*spec.inputs, *spec.outputs]:
        if not v.path.startswith("/"):
            raise bad(f"path {v.path!r} of {v.name!r} must be absolute")
        if "=" in v.handle or not v.handle:
            raise bad(f"invalid artifact volume handle {v.handle!r} for {v.name!r}")
    for c in spec.caches:
        if not c.path.startswith("/"):
            raise bad(f"cache path {c.path!r} must be absolute")
        if "=" in c.fetch + c.upload:
            raise bad(f"invalid artifact volume handle for the cache at {c.path!r}")


def _artifact_url(spec: KubeTaskSpec, settings: Settings) -> str:
    """The artifact store's in-cluster URL, which a task with inputs, outputs or kept caches needs."""
    url = settings.kubernetes_artifact_url
    if (_fetched(spec) or _uploaded(spec)) and not url:
        raise RuntimeError_("the kubernetes runtime needs the artifact store's in-cluster URL for a task with inputs, "
                            "outputs or kept caches: set kubernetes_artifact_url (AIRSIDE_KUBERNETES_ARTIFACT_URL)")
    return url


# --------------------------------------------------------------------------- metadata


def _labels(spec: KubeTaskSpec) -> dict[str, str]:
    return {MANAGED_BY: "airside", LABEL_BUILD: label_value(spec.build), LABEL_ATTEMPT: str(spec.attempt),
            LABEL_STEP: label_value(spec.step)}


def _annotations(spec: KubeTaskSpec) -> dict[str, str]:
    return {ANNOTATION_HANDLE: spec.handle, ANNOTATION_STEP: spec.step, **spec.annotations}


# --------------------------------------------------------------------------- volumes and mounts


def _fetched(spec: KubeTaskSpec) -> list[tuple[str, str]]:
    """(handle, path) of what `fetch-inputs` streams in: the inputs, then the caches with a `fetch` volume."""
    return [*((v.handle, v.path) for v in spec.inputs), *((c.fetch, c.path) for c in spec.caches if c.fetch)]


def _uploaded(spec: KubeTaskSpec) -> list[tuple[str, str]]:
    """(handle, path) of what `upload-outputs` creates: the outputs, then the caches with an `upload` volume."""
    return [*((v.handle, v.path) for v in spec.outputs), *((c.upload, c.path) for c in spec.caches if c.upload)]


@dataclass
class _Mounts:
    """The pod's volumes (one emptyDir per distinct path) and each kind's mounts of them."""

    volumes: list[Manifest] = field(default_factory=list)
    inputs: list[Manifest] = field(default_factory=list)
    outputs: list[Manifest] = field(default_factory=list)
    caches: list[Manifest] = field(default_factory=list)
    fetched: list[Manifest] = field(default_factory=list)  # fetch-inputs' mounts: inputs and fetched caches
    uploaded: list[Manifest] = field(default_factory=list)  # upload-outputs' mounts: outputs and saved caches
    _by_path: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def mount(self, kind: str, index: int, path: str) -> Manifest:
        """A mount at `path` of its volume, `<kind>-<index>` if `path` has none yet (so an output at an
        input's path shares the input's volume)."""
        if path not in self._by_path:
            self._by_path[path] = f"{kind}-{index}"
            self.volumes.append({"name": self._by_path[path], "emptyDir": {}})
        return {"name": self._by_path[path], "mountPath": path}

    @property
    def task(self) -> list[Manifest]:
        """The task container's mounts: every path once (the first mount of it)."""
        return list({m["mountPath"]: m for m in [*self.inputs, *self.outputs, *self.caches]}.values())


def _mounts(spec: KubeTaskSpec) -> _Mounts:
    m = _Mounts()
    m.inputs = [m.mount("input", i, v.path) for i, v in enumerate(spec.inputs)]
    m.outputs = [m.mount("output", i, v.path) for i, v in enumerate(spec.outputs)]
    m.caches = [m.mount("cache", i, c.path) for i, c in enumerate(spec.caches)]
    m.fetched = m.inputs + [mount for c, mount in zip(spec.caches, m.caches, strict=True) if c.fetch]
    m.uploaded = m.outputs + [mount for c, mount in zip(spec.caches, m.caches, strict=True) if c.upload]
    return m


# --------------------------------------------------------------------------- containers


def _containers(spec: KubeTaskSpec, settings: Settings, url: str, mounts: _Mounts
                ) -> tuple[list[Manifest], list[Manifest]]:
    """The pod's init containers and containers: [fetch-inputs], task, [upload-outputs] in this order,
    the last of them being the one (main) container."""
    task = _task_container(spec, settings, mounts.task)
    init: list[Manifest] = []
    if _fetched(spec):
        init.append(_step_container(FETCH, _fetch_command(spec, url), mounts.fetched, spec, settings))
    if not _uploaded(spec):
        return init, [task]
    return [*init, task], [_step_container(UPLOAD, _upload_command(spec, url), mounts.uploaded, spec, settings)]


def _task_container(spec: KubeTaskSpec, settings: Settings, mounts: list[Manifest]) -> Manifest:
    task: Manifest = {"name": TASK, "image": spec.image}
    if spec.stdin is not None:
        # a pod's container has no stdin to give: the image's sh pipes the request (from the Job's Secret, so a
        # source's credentials never show in the pod spec) into the script, whose exit status is the task's
        task["command"] = ["/bin/sh", "-c", f'printf "%s" "${STDIN_ENV}" | "$0" "$@"', spec.path]
    elif spec.path:  # else the image's ENTRYPOINT/CMD runs (Concourse 8, run.path omitted)
        task["command"] = [spec.path]
    if spec.args:
        task["args"] = list(spec.args)
    task["workingDir"] = spec.dir
    env: list[Manifest] = [{"name": k, "value": v} for k, v in spec.env.items()]
    if spec.stdin is not None:
        env.append({"name": STDIN_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name(spec.handle),
                                                                      "key": "stdin"}}})
    if env:
        task["env"] = env
    resources = _resources(spec, settings)
    if resources:
        task["resources"] = resources
    if mounts:
        task["volumeMounts"] = mounts
    security: Manifest = {**_user(spec.user), **({"privileged": True} if spec.privileged else {})}
    if security:
        task["securityContext"] = security
    return task


def _resources(spec: KubeTaskSpec, settings: Settings) -> dict[str, dict[str, str]]:
    """The task container's requests and limits by the module's rule (see the docstring)."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    shares = spec.limits.cpu_shares or settings.kubernetes_default_cpu_shares
    if shares:
        millicores = _millicores(shares)
        requests["cpu"] = f"{millicores}m"
        if settings.kubernetes_cpu_limit_ratio:
            limits["cpu"] = f"{max(1, round(millicores * settings.kubernetes_cpu_limit_ratio))}m"
    memory = spec.limits.memory_bytes or settings.kubernetes_default_memory_mib << 20
    if memory:
        requests["memory"] = limits["memory"] = _quantity(memory)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _step_container(name: str, command: list[str], mounts: list[Manifest], spec: KubeTaskSpec,
                    settings: Settings) -> Manifest:
    """An airside step (`airside fetch-inputs` / `upload-outputs` in the airside image): it reads the
    artifact-store token from the task's Secret and runs as the task's user, else as root."""
    return {
        "name": name, "image": settings.kubernetes_airside_image, "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [{"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name(spec.handle),
                                                                    "key": "token"}}}],
        "volumeMounts": mounts,
        "securityContext": _user(spec.user) or {"runAsUser": 0, "runAsGroup": 0},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _fetch_command(spec: KubeTaskSpec, url: str) -> list[str]:
    cmd = ["airside", FETCH, "--artifact-url", url]
    for handle, path in _fetched(spec):
        cmd += ["--volume", f"{handle}={path}"]
    return cmd


def _upload_command(spec: KubeTaskSpec, url: str) -> list[str]:
    cmd = ["airside", UPLOAD, "--artifact-url", url]
    for key, value in (("build", spec.build), ("step", spec.step)):
        if value:
            cmd += ["--property", f"{key}={value}"]
    if spec.output_ttl:
        cmd += ["--ttl", f"{spec.output_ttl:g}"]
    for handle, path in _uploaded(spec):
        cmd += ["--volume", f"{handle}={path}"]
    return cmd


# --------------------------------------------------------------------------- pod and Job specs


def _pod_spec(spec: KubeTaskSpec, settings: Settings, init: list[Manifest], containers: list[Manifest],
              volumes: list[Manifest]) -> Manifest:
    pod: Manifest = {"restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False}
    if settings.kubernetes_service_account:
        pod["serviceAccountName"] = settings.kubernetes_service_account
    pod.update(_placement(spec, settings))
    if settings.kubernetes_priority_class_name:
        pod["priorityClassName"] = settings.kubernetes_priority_class_name
    if settings.kubernetes_runtime_class_name:
        pod["runtimeClassName"] = settings.kubernetes_runtime_class_name
    pulls = list(settings.kubernetes_image_pull_secrets)
    if spec.pull_credentials is not None:
        pulls.append(pull_secret_name(spec.handle))
    if pulls:
        pod["imagePullSecrets"] = [{"name": s} for s in pulls]
    if init:
        pod["initContainers"] = init
    pod["containers"] = containers
    if volumes:
        pod["volumes"] = volumes
    return pod


def _placement(spec: KubeTaskSpec, settings: Settings) -> Manifest:
    """nodeSelector, tolerations and affinity of the pod: the settings' defaults plus each build tag's
    entry in kubernetes_tag_placement. Raises `RuntimeError_` for a tag without an entry, a node label two
    sources set differently, or more than one affinity."""
    selector: dict[str, str] = dict(settings.kubernetes_node_selector)
    origin = dict.fromkeys(selector, "kubernetes_node_selector")
    tolerations = [dict(t) for t in settings.kubernetes_tolerations]
    affinity: tuple[str, Manifest] | None = None
    for tag in spec.tags:
        entry = settings.kubernetes_tag_placement.get(tag)
        if entry is None:
            known = ", ".join(sorted(settings.kubernetes_tag_placement)) or "none"
            raise RuntimeError_(f"build tag {tag!r} has no placement on Kubernetes: add it to "
                                f"kubernetes_tag_placement (AIRSIDE_KUBERNETES_TAG_PLACEMENT; tags there: {known})")
        for key, value in (entry.get("nodeSelector") or {}).items():
            if key in selector and selector[key] != str(value):
                raise RuntimeError_(f"build tag {tag!r} sets node label {key}={value} but {origin[key]} sets "
                                    f"{key}={selector[key]}: a pod cannot have both")
            selector[key], origin[key] = str(value), f"tag {tag!r}"
        tolerations += [dict(t) for t in entry.get("tolerations") or []]
        if entry.get("affinity"):
            if affinity is not None:
                raise RuntimeError_(f"build tags {affinity[0]!r} and {tag!r} both set an affinity in "
                                    "kubernetes_tag_placement; give one tag the combined affinity")
            affinity = (tag, dict(entry["affinity"]))
    out: Manifest = {}
    if selector:
        out["nodeSelector"] = selector
    if tolerations:
        out["tolerations"] = tolerations
    if affinity is not None:
        out["affinity"] = affinity[1]
    return out


def _job_spec(spec: KubeTaskSpec, settings: Settings, pod: Manifest) -> Manifest:
    timeout = spec.timeout if spec.timeout is not None else settings.kubernetes_task_timeout
    job_spec: Manifest = {"backoffLimit": 0}
    if timeout:
        job_spec["activeDeadlineSeconds"] = max(1, int(timeout))
    job_spec["ttlSecondsAfterFinished"] = int(settings.kubernetes_ttl_after_finished)
    job_spec["template"] = {"metadata": {"labels": _labels(spec), "annotations": _annotations(spec)}, "spec": pod}
    return job_spec


# --------------------------------------------------------------------------- values


def _millicores(shares: int) -> int:
    """CPU shares as a request: 1024 shares are one core (1000m), never less than 1m."""
    return max(1, shares * 1000 // 1024)


def _quantity(n: int) -> str:
    for suffix, power in (("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if n % (1 << power) == 0:
            return f"{n >> power}{suffix}"
    return str(n)


def _user(user: str | None) -> dict[str, int]:
    if not user:
        return {}
    uid, _, gid = user.partition(":")
    return {"runAsUser": int(uid), **({"runAsGroup": int(gid)} if gid else {})}


def _plain(obj: Manifest) -> Manifest:
    """A deep copy that shares no sub-object (no YAML anchors, no aliasing between containers)."""
    result: Manifest = json.loads(json.dumps(obj))
    return result
