"""Running builds on a worker: one TaskRunner thread per build attempt, and the Tasks set the beacon
sees as the worker's `Work`.

A runner is the worker's `AttemptBackend`: `airside.runtime.attempt.run_attempt` drives it through the
one build-attempt lifecycle (names, phase order and outcome rules live there). For build B attempt A:
  1. image: a volume `image-<key>` holding the unpacked image (made once, shared), and a
     copy-on-write child of it as this container's rootfs (`bB-aA-rootfs`)  → phase image_ready
  2. inputs: one volume per input: a COW child of this worker's own output volume of the pipeline step
     that produced it when web names one (`Assignment.local_inputs`) and it is still here, else streamed
     from web (the build's `airside` log stream says which were which); one empty volume per output (or a
     COW child of the input it shares a path with); one cache volume per cache path, kept across runs
                                                                     → phase inputs_ready
  3. the container starts (runtime.prepare/start)                    → phase started
  4. logs go to web in batches with byte offsets (re-sending is harmless); web's answer says whether
     the build was aborted
  5. exit status → (outputs streamed to web when the outcome keeps them) → finish
  6. the container and the build's volumes are destroyed (the reaper would too) — but a pipeline step that
     succeeded keeps its output volumes (and the inputs they are COW children of) for the steps after it;
     web's GC says when they go (once the job build ended)

A worker restarted on the same disk (same boot epoch) finds its builds in web's assignments and the
containers still running in the runtime: `TaskRunner(reattach=True)` skips to step 4 (logs replay
from the start; web keeps each byte once) and goes on.
"""

from __future__ import annotations

import base64
import functools
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import zstandard

from airside.baggageclaim.errors import VolumeError
from airside.baggageclaim.repository import Repository
from airside.baggageclaim.schemas import Strategy, VolumeSpec
from airside.core import log, routes
from airside.core.client import WebClient, WebError
from airside.core.schemas import (
    Assignment,
    BuildStatus,
    FinishReport,
    LogBatch,
    LogChunkIn,
    Phase,
    PhaseReport,
)
from airside.runtime import ContainerSpec, ExitStatus, Limits, LogChunk, Mount, Runtime, RuntimeError_
from airside.runtime.attempt import AttemptError, AttemptNames, Lost, run_attempt
from airside.task import parse_task_config
from airside.task.config import TaskConfig

if TYPE_CHECKING:
    from airside.runtime.images import ImageConfig

LOG = log.get("airside.worker.tasks")
LOG_BATCH_SECONDS = 0.25
LOG_BATCH_BYTES = 256 * 1024


def names(a: Assignment) -> AttemptNames:
    return AttemptNames(a.build_id, a.attempt)


class TaskRunner:
    """One attempt on this worker (an `airside.runtime.attempt.AttemptBackend`)."""

    origin = "worker"
    infra_errors: tuple[type[BaseException], ...] = (VolumeError, RuntimeError_, OSError, WebError)

    def __init__(self, tasks: Tasks, a: Assignment, reattach: bool = False) -> None:
        self.tasks, self.a, self.reattach = tasks, a, reattach
        self.names = names(a)
        self.handle = self.names.handle
        self.abort = threading.Event()
        self.interrupt_reason: str | None = None
        self.volumes: list[str] = []
        self.outputs_collected = False  # the attempt succeeded and its outputs went to web: a pipeline step keeps them
        self.airside_offset = 0  # bytes sent on the build's `airside` log stream
        self.rootfs: Path | None = None
        self.image_env: dict[str, str] = {}
        self.image_user: str | None = None
        self.image_command: tuple[list[str], list[str]] = ([], [])  # the image's ENTRYPOINT and CMD
        self.mounts: list[Mount] = []
        self.thread = threading.Thread(target=self.run, name=f"build-{self.names.key}", daemon=True)
        self.log = LOG.bind(build=a.build_id, attempt=a.attempt)

    @functools.cached_property
    def cfg(self) -> TaskConfig:
        return parse_task_config(self.a.config)

    # --- web calls -------------------------------------------------------------------------------
    @property
    def web(self) -> WebClient:
        return self.tasks.web

    def _web(self, route: routes.Route, json: dict | None = None) -> dict | None:
        for delay in (0.5, 1, 2, 4, 8, 8, 8, 8):
            try:
                return self.web.call(route, json=json, build_id=str(self.a.build_id))
            except WebError as e:
                if e.status == 409:
                    raise Lost(e.message) from e
                if e.status and e.status < 500:
                    raise
                self.log.warning("web call failed, retrying", route=route.path, error=e.message)
                time.sleep(delay)
        raise AttemptError("web unreachable while reporting the build")

    def phase(self, phase: Phase) -> None:
        self._web(routes.BUILD_PHASE, PhaseReport(attempt=self.a.attempt, phase=phase).model_dump(mode="json"))

    def finish(self, report: FinishReport) -> None:
        self._web(routes.BUILD_FINISH, report.model_dump(mode="json"))

    def fail(self, reason: str, requeue: bool) -> None:
        # a worker never requeues by itself: web requeues the builds of a worker that stalls
        self.finish(FinishReport(attempt=self.a.attempt, status=BuildStatus.errored, reason=reason))

    # --- steps ------------------------------------------------------------------------------------------
    def _volume(self, handle: str, props: dict[str, str], parent: str | None = None) -> str:
        repo = self.tasks.repo
        strategy = Strategy(type="cow", parent=parent) if parent else Strategy()
        repo.create(VolumeSpec(handle=handle, strategy=strategy, properties=props))
        self.volumes.append(handle)
        return handle

    def _image(self, cfg: TaskConfig) -> tuple[str, ImageConfig]:
        """The container's rootfs volume (a COW child of the shared image volume), plus the image's config."""
        from airside.runtime import images  # only workers that isolate need image handling

        try:
            if self.a.image_input:  # a pipeline step's `image:` artifact: a Concourse image dir (rootfs/ + metadata.json)
                vol = self._volume(self.names.input_volume(self.a.image_input), self.names.properties("input"))
                with self.web.download(routes.GET_INPUT, build_id=str(self.a.build_id),
                                       name=self.a.image_input) as (chunks, enc):
                    self.tasks.repo.stream_in(vol, "", chunks, encoding="zstd" if enc == "zstd" else "raw")
                cfg = cfg.model_copy(update={"rootfs_uri": str(self.tasks.repo.data(vol)), "image_resource": None})
            if self.a.resource_type:  # a resource script in the rootfs of a type this worker offers
                type_rootfs = self.tasks.resource_types.get(self.a.resource_type)
                if type_rootfs is None:
                    raise ValueError(f"this worker offers no resource type {self.a.resource_type!r} "
                                     f"(it has: {', '.join(sorted(self.tasks.resource_types)) or 'none'})")
                cfg = cfg.model_copy(update={"rootfs_uri": str(type_rootfs), "image_resource": None})
            cfg.require_image()
            ir = cfg.image_resource
            if ir is not None:
                creds = {k: ir.source[k] for k in ("username", "password") if ir.source.get(k) is not None}
                if not all(isinstance(v, str) for v in creds.values()):
                    raise ValueError("image_resource.source.username and password must be strings")
                source = images.ImageSource.registry(ir.repository, ir.tag, digest=(ir.version or {}).get("digest"),
                                                     insecure=ir.source.get("insecure") is True, **creds)
            else:
                source = images.ImageSource.detect(cfg.rootfs_uri or "")
            key = images.image_key(source)
        except (ValueError, RuntimeError_) as e:
            raise AttemptError(f"image unavailable: {e}") from e
        repo = self.tasks.repo
        with self.tasks.image_lock(key):
            try:
                repo.get(key)
            except VolumeError:
                repo.create(VolumeSpec(handle=key, properties={"role": "image", "key": key,
                                                               "last_used": str(time.time())}))
                try:
                    images.prepare_image(source, repo.data(key))
                except (RuntimeError_, OSError) as e:
                    repo.destroy(key)
                    raise AttemptError(f"image {source.display()} unavailable: {e}") from e
            repo.set_property(key, "last_used", str(time.time()))
            config = images.load_image_config(repo.data(key))
        rootfs = self._volume(self.names.rootfs_volume, self.names.properties("rootfs"), parent=key)
        return rootfs, config

    def prepare_image(self) -> None:
        if self.tasks.runtime.isolates:
            vol, config = self._image(self.cfg)
            self.image_env, self.image_command = config.env, (config.entrypoint, config.cmd)
            self.rootfs, self.image_user = self.tasks.repo.data(vol) / "rootfs", config.user or None

    def _local_input(self, handle: str, source: str) -> bool:
        """The input as a COW child of `source` (an earlier step's output volume on this worker); False when
        that volume is gone (destroyed, failed) and the input must be downloaded."""
        try:
            self._volume(handle, self.names.properties("input"), parent=source)
            return True
        except VolumeError as e:
            self.log.info("local input volume unavailable, downloading", volume=source, error=e.message)
            return False

    def say(self, text: str) -> None:
        """A line on the build's `airside` log stream (what airside did for the build, beside the task's output)."""
        data = (text + "\n").encode()
        chunk = LogChunkIn(stream="airside", offset=self.airside_offset, data=base64.b64encode(data).decode())
        ack = self._web(routes.BUILD_LOGS, LogBatch(attempt=self.a.attempt, chunks=[chunk]).model_dump(mode="json"))
        self.airside_offset += len(data)
        if ack and ack.get("abort"):
            self.request_abort()

    def prepare_inputs(self) -> None:
        cfg, repo, n = self.cfg, self.tasks.repo, self.names
        mounts: list[Mount] = []
        paths = cfg.input_paths()
        local, downloaded = [], []
        for name in self.a.inputs:
            vol, source = n.input_volume(name), self.a.local_inputs.get(name)
            if source and self._local_input(vol, source):
                local.append(name)
            else:
                self._volume(vol, n.properties("input"))
                with self.web.download(routes.GET_INPUT, build_id=str(self.a.build_id), name=name) as (chunks, enc):
                    repo.stream_in(vol, "", chunks, encoding="zstd" if enc == "zstd" else "raw")
                downloaded.append(name)
            mounts.append(Mount(repo.data(vol), str(paths[name])))
        if self.a.inputs:
            self.log.info("inputs ready", local=local, downloaded=downloaded)
        if self.a.keep_outputs and self.a.inputs:  # a pipeline step: say where its inputs came from
            parts = ([f"inputs on this worker already (copy-on-write): {', '.join(local)}"] if local else []) + \
                ([f"inputs downloaded from web: {', '.join(downloaded)}"] if downloaded else [])
            self.say("; ".join(parts))
        sharing = cfg.outputs_sharing_inputs()
        for name, path in cfg.output_paths().items():
            shared = sharing.get(name)
            parent = n.input_volume(shared) if shared in self.a.inputs else None
            vol = self._volume(n.output_volume(name), n.properties("output"), parent=parent)
            mounts = [m for m in mounts if m.destination != str(path)]
            mounts.append(Mount(repo.data(vol), str(path)))
        for path in cfg.cache_paths():
            handle = n.cache_volume(self.a.cache_key, str(path))
            try:
                repo.get(handle)
            except VolumeError:
                repo.create(VolumeSpec(handle=handle, properties={"role": "cache", "cache_key": self.a.cache_key,
                                                                  "last_used": str(time.time())}))
            repo.set_property(handle, "last_used", str(time.time()))
            mounts.append(Mount(repo.data(handle), str(path)))
        self.mounts = sorted(mounts, key=lambda m: len(PurePosixPath(m.destination).parts))

    def start_container(self) -> None:
        cfg, limits = self.cfg, self.cfg.container_limits
        if self.a.privileged and not self.tasks.allow_privileged:
            raise AttemptError("privileged tasks are not allowed on this worker: its operator can permit them "
                               "with allow_privileged_tasks (AIRSIDE_ALLOW_PRIVILEGED_TASKS=true)")
        try:  # without run.path the image's ENTRYPOINT/CMD runs (Concourse 8)
            path, args = cfg.command(*self.image_command)
        except ValueError as e:
            raise AttemptError(str(e) + ("" if self.tasks.runtime.isolates else
                                         " (the process runtime has no image to take one from)")) from e
        if self.a.resource_type and not self.tasks.runtime.isolates:
            # the process runtime has no root filesystem to enter: run the type's script from its rootfs directory
            type_rootfs = self.tasks.resource_types.get(self.a.resource_type)
            if type_rootfs is None:
                raise AttemptError(f"this worker offers no resource type {self.a.resource_type!r}")
            path = str(type_rootfs / path.lstrip("/"))
            # nor are container paths host paths: the script's directory arguments (/tmp/build/get, …) become
            # relative to its working directory, which the process runtime does make under its own root
            work = str(cfg.working_dir())
            args = [os.path.relpath(a, work) if a.startswith("/tmp/build/") else a for a in args]
        spec = ContainerSpec(
            handle=self.handle, rootfs=self.rootfs, path=path, args=args,
            env={**self.image_env, **cfg.params_env()}, dir=str(cfg.working_dir()),
            user=cfg.run.user or self.image_user, mounts=self.mounts, privileged=self.a.privileged,
            limits=Limits(cpu_shares=(limits.cpu or None) if limits else None,
                          memory_bytes=(limits.memory or None) if limits else None),
            network=self.tasks.network, stdin=self.a.stdin,
        )
        try:
            self.tasks.runtime.prepare(spec)
            self.tasks.runtime.start(self.handle)
        except RuntimeError_ as e:
            raise AttemptError(f"container did not start: {e}") from e
        if self.abort.is_set():  # asked while the container was being set up
            self._kill()

    def request_abort(self) -> None:
        """web asked to abort (a log batch's answer, or the work long-poll's): kill the task once."""
        if not self.abort.is_set():
            self.log.info("abort requested")
            self.abort.set()
            self._kill()

    def _kill(self) -> None:
        try:
            self.tasks.runtime.signal(self.handle, signal.SIGKILL)
        except RuntimeError_:
            pass  # not started yet: start_container kills it when it does

    def follow(self) -> None:
        """Sends the container's output to web until it exits; kills the task when web says abort."""
        offsets = {"stdout": 0, "stderr": 0}
        pending: list[LogChunkIn] = []
        size, last = 0, time.monotonic()

        def flush() -> None:
            nonlocal pending, size, last
            if pending:
                ack = self._web(routes.BUILD_LOGS, LogBatch(attempt=self.a.attempt, chunks=pending).model_dump(mode="json"))
                pending, size = [], 0
                if ack and ack.get("abort"):
                    self.request_abort()
            last = time.monotonic()

        for chunk in self._logs():
            if chunk is not None:
                pending.append(LogChunkIn(stream=chunk.stream, offset=offsets[chunk.stream],
                                          data=base64.b64encode(chunk.data).decode()))
                offsets[chunk.stream] += len(chunk.data)
                size += len(chunk.data)
            if size >= LOG_BATCH_BYTES or time.monotonic() - last >= LOG_BATCH_SECONDS:
                flush()
        flush()

    def _logs(self) -> Iterator[LogChunk | None]:
        """Runtime log chunks with a None tick at least every batch interval (so batches flush)."""
        q: list[LogChunk] = []
        done = threading.Event()
        cond = threading.Condition()

        def reader() -> None:
            try:
                for c in self.tasks.runtime.logs(self.handle, follow=True):
                    with cond:
                        q.append(c)
                        cond.notify()
            finally:
                done.set()
                with cond:
                    cond.notify()

        threading.Thread(target=reader, daemon=True, name=f"{self.thread.name}-logs").start()
        while True:
            with cond:
                if not q and not done.is_set():
                    cond.wait(LOG_BATCH_SECONDS)
                items, q[:] = list(q), []
            yield from items
            yield None
            if done.is_set() and not q:
                return

    def wait(self) -> ExitStatus | None:
        return self.tasks.runtime.wait(self.handle)

    def aborted(self) -> bool:
        return self.abort.is_set()

    def interrupted(self) -> str | None:
        return self.interrupt_reason

    def collect_outputs(self) -> list[str]:
        from airside.baggageclaim.streaming import iter_tar

        names = []
        for name in self.cfg.output_paths():
            vol = self.names.output_volume(name)

            def chunks(vol: str = vol) -> Iterator[bytes]:
                comp = zstandard.ZstdCompressor(level=3).compressobj()
                for c in iter_tar(self.tasks.repo.data(vol)):
                    if out := comp.compress(c):
                        yield out
                yield comp.flush()

            self.web.upload(routes.PUT_OUTPUT, chunks(), encoding="zstd", params={"attempt": self.a.attempt},
                            build_id=str(self.a.build_id), name=name)
            names.append(name)
        self.outputs_collected = True
        return names

    def kept_volumes(self) -> set[str]:
        """What `cleanup` leaves: a succeeded pipeline step's output volumes and the inputs they are COW
        children of (web's GC destroys them once the job build has ended)."""
        if not (self.a.keep_outputs and self.outputs_collected):
            return set()
        n, shared = self.names, self.cfg.outputs_sharing_inputs().values()
        return {n.output_volume(o) for o in self.cfg.output_paths()} | {n.input_volume(i) for i in shared}

    # --- the thread -----------------------------------------------------------------------------------
    def launch(self) -> None:
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def run(self) -> None:
        try:
            run_attempt(self, adopt=self.reattach)
        finally:
            self.tasks.done(self)

    def cleanup(self) -> None:
        try:
            self.tasks.runtime.destroy(self.handle)
        except RuntimeError_ as e:
            self.log.warning("container destroy failed; the reaper will retry", error=str(e))
        kept = self.kept_volumes()
        if kept:
            self.log.info("keeping the step's output volumes for the steps after it", volumes=sorted(kept))
        for vol in reversed(self.volumes):
            if vol in kept:
                continue
            try:
                self.tasks.repo.destroy(vol, cascade=True)
            except VolumeError as e:
                self.log.warning("volume destroy failed; the reaper will retry", volume=vol, error=str(e))

    def interrupt(self, reason: str) -> None:
        self.interrupt_reason = reason
        self._kill()


class Tasks:
    """The builds this worker runs (the beacon's `Work`), fed by web's assignments."""

    def __init__(
        self, web: WebClient, repo: Repository, runtime: Runtime, network: str = "loopback",
        allow_privileged: bool = False, resource_types: dict[str, Path] | None = None,
    ) -> None:
        self.web, self.repo, self.runtime = web, repo, runtime
        self.resource_types = dict(resource_types or {})  # type → rootfs directory (the worker's registration)
        self.network = network  # ContainerSpec.network of every task container (the container_network setting)
        self.allow_privileged = allow_privileged  # settings.allow_privileged_tasks
        self.runners: dict[str, TaskRunner] = {}
        self.lock = threading.Lock()
        self._image_locks: dict[str, threading.Lock] = {}

    def image_lock(self, key: str) -> threading.Lock:
        with self.lock:
            return self._image_locks.setdefault(key, threading.Lock())

    def sync(self, assignments: list[Assignment], accepting: bool) -> None:
        """Starts runners for new assignments (re-attaching to containers that already run) and passes
        aborts on to the runners of the others."""
        existing = set(self.runtime.list())
        for a in assignments:
            key = names(a).key
            with self.lock:
                running = self.runners.get(key)
            if running is not None:
                if a.abort:  # a task that prints nothing sends no log batch to hear the abort in
                    running.request_abort()
                continue
            handle = names(a).handle
            reattach = handle in existing and self.runtime.status(handle) != "prepared"
            if not accepting and not reattach:
                continue
            runner = TaskRunner(self, a, reattach=reattach)
            with self.lock:
                self.runners[key] = runner
            LOG.info("re-attaching to build" if reattach else "starting build", build=a.build_id, attempt=a.attempt)
            runner.launch()

    def busy_handles(self) -> set[str]:
        with self.lock:
            return {h for r in self.runners.values() for h in (r.handle, *r.volumes)}

    def known(self) -> str:
        with self.lock:
            return ",".join(sorted(self.runners))

    def done(self, runner: TaskRunner) -> None:
        with self.lock:
            self.runners.pop(runner.names.key, None)

    # --- Work (for the beacon) ----------------------------------------------------------------------------
    def active(self) -> int:
        with self.lock:
            return len(self.runners)

    def counts(self) -> tuple[int, int]:
        return len(self.runtime.list()), len(self.repo.list())

    def interrupt(self, reason: str) -> None:
        with self.lock:
            runners = list(self.runners.values())
        for r in runners:
            r.interrupt(reason)
        for r in runners:
            r.join(30)
