"""The task as Kubernetes sees it: `KubeTaskSpec`, built from a task config or a generic `ContainerSpec`.

A spec names everything the Job builder needs and nothing it must look up: the image reference, the
command, env, working directory and numeric user, the input and output volumes (`KubeVolume`: name,
absolute mount path, artifact-store handle), the caches (`KubeCache`: path, and the artifact-store volumes
it is fetched from and saved to), limits, and the labels' build/attempt/step.

`from_task_config` reads an `airside.task.TaskConfig` through `TaskConfigLike`, the part of it this module
uses (the runtime layer may not import airside.task, which sits beside it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Protocol

from airside.core.layout import DEFAULT_WORK_DIR
from airside.runtime.base import ContainerSpec, Limits, RuntimeError_
from airside.runtime.images import registry_host

from .names import output_handle

__all__ = ["KubeCache", "KubeTaskSpec", "KubeVolume", "PullCredentials", "TaskConfigLike"]


# --------------------------------------------------------------------------- what is read of a task config


class _Image(Protocol):
    @property
    def reference(self) -> str: ...  # "repository:tag" or "repository@digest"
    @property
    def source(self) -> Mapping[str, object]: ...  # image_resource.source (username/password: pull credentials)
    def unsupported(self) -> str | None: ...  # why the image cannot be had (a resource type not fetched)


class _Output(Protocol):
    @property
    def name(self) -> str: ...


class _Input(_Output, Protocol):
    @property
    def optional(self) -> bool: ...


class _Run(Protocol):
    @property
    def path(self) -> str | None: ...  # None: the image's ENTRYPOINT/CMD
    @property
    def args(self) -> Sequence[str]: ...
    @property
    def user(self) -> str | None: ...


class _ContainerLimits(Protocol):
    @property
    def cpu(self) -> int | None: ...  # relative CPU shares
    @property
    def memory(self) -> int | None: ...  # bytes


class TaskConfigLike(Protocol):
    """What `KubeTaskSpec.from_task_config` reads of a task config (`airside.task.TaskConfig` is one):
    the image, the declared inputs and outputs, `run`, the limits, the params as env, and the container
    paths of inputs, outputs, caches and the working directory under a given work dir."""

    @property
    def image_resource(self) -> _Image | None: ...
    @property
    def rootfs_uri(self) -> str | None: ...
    @property
    def inputs(self) -> Sequence[_Input]: ...
    @property
    def outputs(self) -> Sequence[_Output]: ...
    @property
    def run(self) -> _Run: ...
    @property
    def container_limits(self) -> _ContainerLimits | None: ...
    def params_env(self) -> Mapping[str, str]: ...
    def input_paths(self, work_dir: str | PurePosixPath) -> Mapping[str, PurePosixPath]: ...
    def output_paths(self, work_dir: str | PurePosixPath) -> Mapping[str, PurePosixPath]: ...
    def cache_paths(self, work_dir: str | PurePosixPath) -> Sequence[PurePosixPath]: ...
    def working_dir(self, work_dir: str | PurePosixPath) -> PurePosixPath: ...


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class KubeVolume:
    name: str  # the task's input/output name
    path: str  # absolute mount path in the containers
    handle: str  # the artifact-store volume handle (read for inputs, created for outputs)


@dataclass(frozen=True)
class KubeCache:
    """A task cache: its absolute mount path in the containers (a pod-local emptyDir), the artifact-store
    volume `fetch-inputs` streams into it before the task (`fetch`; "" starts it empty) and the one
    `upload-outputs` creates from it after a successful task (`upload`; "" keeps nothing)."""

    path: str
    fetch: str = ""
    upload: str = ""


@dataclass(frozen=True)
class PullCredentials:
    """Registry credentials of a task's image (image_resource.source.username/password): the Job's image
    pull Secret is made of them. Never printed: the password is left out of `repr`."""

    registry: str  # the registry host the image is pulled from ("docker.io" for Docker Hub)
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class KubeTaskSpec:
    handle: str
    image: str  # image reference, e.g. "busybox:1.36" or "repo@sha256:…"
    path: str  # run.path; "" runs the image's ENTRYPOINT/CMD (the Job's container has no command)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # params (and anything web adds)
    dir: str = str(DEFAULT_WORK_DIR)  # absolute working directory
    user: str | None = None  # run.user: must be numeric "uid" or "uid:gid" here
    inputs: list[KubeVolume] = field(default_factory=list)
    outputs: list[KubeVolume] = field(default_factory=list)
    caches: list[KubeCache] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    build: str = ""
    attempt: int = 1
    step: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # overrides settings.kubernetes_task_timeout
    output_ttl: float = 0.0  # TTL of the output volumes in the artifact store (0: none)
    tags: list[str] = field(default_factory=list)  # the build's tags: placement by settings.kubernetes_tag_placement
    privileged: bool = False  # securityContext.privileged, if settings.allow_privileged_tasks permits it
    pull_credentials: PullCredentials | None = None  # a per-Job image pull Secret is made of them
    stdin: str | None = field(default=None, repr=False)  # what the task reads on stdin (a resource request)

    @classmethod
    def from_task_config(
        cls, config: TaskConfigLike, *, handle: str, inputs: Mapping[str, str],
        outputs: Mapping[str, str] | None = None, build: str = "", attempt: int = 1, step: str = "",
        image: str | None = None, env: Mapping[str, str] | None = None,
        work_dir: str | PurePosixPath = DEFAULT_WORK_DIR, timeout: float | None = None, output_ttl: float = 0.0,
        annotations: Mapping[str, str] | None = None, tags: Sequence[str] = (), privileged: bool = False,
        caches: Mapping[str, KubeCache] | None = None, stdin: str | None = None,
    ) -> KubeTaskSpec:
        """From a task config (an `airside.task.TaskConfig`, read through `TaskConfigLike`).

        `inputs` maps input name → artifact-store volume handle (an optional input left out is not
        mounted); `outputs` maps output name → the handle to create (default `output_handle(handle, name)`);
        `image` overrides `image_resource.reference` (a step's `image:`); `env` is added to the params;
        `image_resource.source.username`/`password` become `pull_credentials` (not with `image`); `caches`
        maps a cache's container path (as `config.cache_paths(work_dir)` gives it) to the `KubeCache` whose
        `fetch`/`upload` volumes it uses; a cache without an entry starts empty and is not kept.
        Raises `RuntimeError_` when there is no image (a rootfs_uri is refused: Jobs need image_resource), its
        resource type is not fetched, a required input has no volume, or run.args is given without run.path
        (which Kubernetes cannot express)."""
        task = step or handle
        if not config.run.path and config.run.args:
            # Concourse appends run.args to the image's ENTRYPOINT and CMD; a container's `args` replace the CMD
            raise RuntimeError_(f"task {task!r}: run.args without run.path is not supported by the kubernetes "
                                "runtime (Concourse appends them to the image's CMD, which Kubernetes cannot "
                                "do without reading the image); set run.path")
        return cls(
            handle=handle, image=image if image is not None else _image(config, task), path=config.run.path or "",
            args=list(config.run.args), env={**config.params_env(), **(env or {})},
            dir=str(config.working_dir(work_dir)), user=config.run.user,
            inputs=_inputs(config, inputs, work_dir, task), outputs=_outputs(config, handle, outputs or {}, work_dir),
            caches=_caches(config, caches or {}, work_dir), limits=_limits(config.container_limits),
            build=build, attempt=attempt, step=step, timeout=timeout, output_ttl=output_ttl,
            annotations=dict(annotations or {}), tags=list(tags), privileged=privileged,
            pull_credentials=_credentials(config, task) if image is None else None, stdin=stdin,
        )

    @classmethod
    def from_container_spec(
        cls, spec: ContainerSpec, *, caches: Sequence[str] = (), build: str = "", attempt: int = 1, step: str = "",
        annotations: Mapping[str, str] | None = None, timeout: float | None = None, output_ttl: float = 0.0,
    ) -> KubeTaskSpec:
        """From the generic `ContainerSpec`: `image` is the reference; each mount's `source.name` is an
        artifact-store handle, read-only mounts are inputs, writable ones outputs; the keywords set the
        fields a `ContainerSpec` does not have. A privileged container is refused by `build_job` unless
        settings.allow_privileged_tasks."""
        ins = [KubeVolume(m.source.name, m.destination, m.source.name) for m in spec.mounts if m.read_only]
        outs = [KubeVolume(m.source.name, m.destination, m.source.name) for m in spec.mounts if not m.read_only]
        return cls(privileged=spec.privileged, handle=spec.handle, image=spec.image, path=spec.path, args=list(spec.args), env=dict(spec.env),
                   dir=spec.dir or "/", user=spec.user, inputs=ins, outputs=outs, limits=spec.limits,
                   caches=[KubeCache(p) for p in caches], build=build, attempt=attempt, step=step, annotations=dict(annotations or {}),
                   timeout=timeout, output_ttl=output_ttl)


def _image(config: TaskConfigLike, task: str) -> str:
    if config.image_resource is None and config.rootfs_uri:
        raise RuntimeError_(f"task {task!r}: rootfs_uri is not supported by the kubernetes runtime (a pod's "
                            "image must be a registry reference the kubelet pulls); use image_resource "
                            "(type: registry-image, source.repository) instead, or run the task on a worker")
    if config.image_resource is None:
        raise RuntimeError_(f"task {task!r}: no image_resource; the kubernetes runtime needs an "
                            "image reference (give image_resource in the task config or the step's image)")
    reason = config.image_resource.unsupported()
    if reason is not None:
        raise RuntimeError_(f"task {task!r}: image unavailable: {reason}")
    return config.image_resource.reference


def _credentials(config: TaskConfigLike, task: str) -> PullCredentials | None:
    """`image_resource.source.username`/`password` as the image's pull credentials (None without them)."""
    ir = config.image_resource
    if ir is None:
        return None
    username, password = ir.source.get("username"), ir.source.get("password")
    if username is None and password is None:
        return None
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        raise RuntimeError_(f"task {task!r}: image_resource.source needs both username and password as strings "
                            "to pull with credentials")
    return PullCredentials(registry_host(ir.reference), username, password)


def _inputs(config: TaskConfigLike, handles: Mapping[str, str], work_dir: str | PurePosixPath,
            task: str) -> list[KubeVolume]:
    paths = config.input_paths(work_dir)
    volumes = []
    for item in config.inputs:
        if item.name in handles:
            volumes.append(KubeVolume(item.name, str(paths[item.name]), handles[item.name]))
        elif not item.optional:
            raise RuntimeError_(f"task {task!r}: input {item.name!r} has no artifact volume")
    return volumes


def _outputs(config: TaskConfigLike, handle: str, handles: Mapping[str, str],
             work_dir: str | PurePosixPath) -> list[KubeVolume]:
    paths = config.output_paths(work_dir)
    return [KubeVolume(o.name, str(paths[o.name]), handles.get(o.name) or output_handle(handle, o.name))
            for o in config.outputs]


def _caches(config: TaskConfigLike, given: Mapping[str, KubeCache], work_dir: str | PurePosixPath) -> list[KubeCache]:
    out = []
    for p in map(str, config.cache_paths(work_dir)):
        c = given.get(p)
        out.append(KubeCache(p, c.fetch, c.upload) if c else KubeCache(p))
    return out


def _limits(limits: _ContainerLimits | None) -> Limits:
    if not limits:
        return Limits()
    return Limits(cpu_shares=limits.cpu or None, memory_bytes=limits.memory or None)
