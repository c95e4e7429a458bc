"""Running builds on a worker: one TaskRunner thread per build attempt, and the Tasks set the beacon
sees as the worker's `Work`.

A runner, for build B attempt A (container handle `bB.A`):
  1. image: a volume `image-<key>` holding the unpacked image (made once, shared), and a
     copy-on-write child of it as this container's rootfs          → phase image_ready
  2. inputs: one volume per uploaded input, streamed from web; one empty volume per output (or a COW
     child of the input it shares a path with); one cache volume per cache path, kept across runs
                                                                     → phase inputs_ready
  3. the container starts (runtime.prepare/start)                    → phase started
  4. logs go to web in batches with byte offsets (re-sending is harmless); web's answer says whether
     the build was aborted
  5. exit status → outputs streamed to web → finish (succeeded / failed / errored / aborted)
  6. the container and the build's volumes are destroyed (the reaper would too)

A worker restarted on the same disk (same boot epoch) finds its builds in web's assignments and the
containers still running in the runtime: `TaskRunner(reattach=True)` skips to step 4 (logs replay
from the start; web keeps each byte once) and goes on.
"""

from __future__ import annotations

import base64
import hashlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import PurePosixPath

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
from airside.runtime import ContainerSpec, Limits, Mount, Runtime, RuntimeError_
from airside.task import parse_task_config
from airside.task.config import TaskConfig

LOG = log.get("airside.worker.tasks")
LOG_BATCH_SECONDS = 0.25
LOG_BATCH_BYTES = 256 * 1024


class InfraError(Exception):
    """The infrastructure failed this build (image, volumes, runtime): it ends errored with this reason."""


class Lost(Exception):
    """web says this attempt is no longer ours (requeued, aborted elsewhere): stop quietly."""


def container_handle(a: Assignment) -> str:
    return f"b{a.build_id}.{a.attempt}"


def _props(a: Assignment, role: str) -> dict[str, str]:
    return {"role": role, "build": str(a.build_id), "attempt": str(a.attempt)}


class TaskRunner(threading.Thread):
    def __init__(self, tasks: Tasks, a: Assignment, reattach: bool = False) -> None:
        super().__init__(name=f"build-{a.build_id}.{a.attempt}", daemon=True)
        self.tasks, self.a, self.reattach = tasks, a, reattach
        self.handle = container_handle(a)
        self.abort = threading.Event()
        self.interrupt_reason: str | None = None
        self.volumes: list[str] = []
        self.log = LOG.bind(build=a.build_id, attempt=a.attempt)

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
        raise InfraError("web unreachable while reporting the build")

    def phase(self, ph: Phase) -> None:
        self._web(routes.BUILD_PHASE, PhaseReport(attempt=self.a.attempt, phase=ph).model_dump(mode="json"))

    def finish(self, status: BuildStatus, code: int | None = None, reason: str = "", outputs: list[str] = ()) -> None:
        report = FinishReport(attempt=self.a.attempt, status=status, exit_code=code, reason=reason, outputs=list(outputs))
        self._web(routes.BUILD_FINISH, report.model_dump(mode="json"))
        self.log.info("build finished", status=str(status), exit_code=code, reason=reason or None)

    # --- steps ------------------------------------------------------------------------------------------
    def _volume(self, handle: str, props: dict[str, str], parent: str | None = None) -> str:
        repo = self.tasks.repo
        strategy = Strategy(type="cow", parent=parent) if parent else Strategy()
        repo.create(VolumeSpec(handle=handle, strategy=strategy, properties=props))
        self.volumes.append(handle)
        return handle

    def _image(self, cfg: TaskConfig) -> tuple[str, dict[str, str], str]:
        """The container's rootfs volume (a COW child of the shared image volume), plus the image's env and user."""
        from airside.runtime import images  # only workers that isolate need image handling

        try:
            cfg.require_image()
            ir = cfg.image_resource
            if ir is not None:
                source = images.ImageSource.registry(ir.repository, ir.tag, digest=(ir.version or {}).get("digest"))
            else:
                source = images.ImageSource.detect(cfg.rootfs_uri or "")
            key = images.image_key(source)
        except (ValueError, RuntimeError_) as e:
            raise InfraError(f"image unavailable: {e}") from e
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
                    raise InfraError(f"image {source.display()} unavailable: {e}") from e
            repo.set_property(key, "last_used", str(time.time()))
            config = images.load_image_config(repo.data(key))
        rootfs = self._volume(f"{self.handle}-rootfs", _props(self.a, "rootfs"), parent=key)
        return rootfs, config.env, config.user

    def _inputs(self, cfg: TaskConfig) -> list[Mount]:
        repo = self.tasks.repo
        mounts: list[Mount] = []
        paths = cfg.input_paths()
        for name in self.a.inputs:
            vol = self._volume(f"{self.handle}-in-{name}", _props(self.a, "input"))
            with self.web.download(routes.GET_INPUT, build_id=str(self.a.build_id), name=name) as (chunks, enc):
                repo.stream_in(vol, "", chunks, encoding="zstd" if enc == "zstd" else "raw")
            mounts.append(Mount(repo.data(vol), str(paths[name])))
        sharing = cfg.outputs_sharing_inputs()
        for name, path in cfg.output_paths().items():
            parent = f"{self.handle}-in-{sharing[name]}" if sharing.get(name) in self.a.inputs else None
            vol = self._volume(f"{self.handle}-out-{name}", _props(self.a, "output"), parent=parent)
            mounts = [m for m in mounts if m.destination != str(path)]
            mounts.append(Mount(repo.data(vol), str(path)))
        for path in cfg.cache_paths():
            key = hashlib.sha256(f"{self.a.cache_key or self.a.build_id}:{path}".encode()).hexdigest()[:24]
            handle = f"cache-{key}"
            try:
                repo.get(handle)
            except VolumeError:
                repo.create(VolumeSpec(handle=handle, properties={"role": "cache", "cache_key": self.a.cache_key,
                                                                  "last_used": str(time.time())}))
            repo.set_property(handle, "last_used", str(time.time()))
            mounts.append(Mount(repo.data(handle), str(path)))
        return sorted(mounts, key=lambda m: len(PurePosixPath(m.destination).parts))

    def _start(self, cfg: TaskConfig) -> None:
        rootfs, env, user = None, {}, None
        if self.tasks.runtime.isolates:
            vol, env, image_user = self._image(cfg)
            rootfs, user = self.tasks.repo.data(vol) / "rootfs", image_user or None
        self.phase(Phase.image_ready)
        mounts = self._inputs(cfg)
        self.phase(Phase.inputs_ready)
        limits = cfg.container_limits
        spec = ContainerSpec(
            handle=self.handle, rootfs=rootfs, path=cfg.run.path, args=list(cfg.run.args or []),
            env={**env, **cfg.params_env()}, dir=str(cfg.working_dir()), user=cfg.run.user or user, mounts=mounts,
            limits=Limits(cpu_shares=(limits.cpu or None) if limits else None,
                          memory_bytes=(limits.memory or None) if limits else None),
        )
        try:
            self.tasks.runtime.prepare(spec)
            self.tasks.runtime.start(self.handle)
        except RuntimeError_ as e:
            raise InfraError(f"container did not start: {e}") from e
        self.phase(Phase.started)

    def _pump_logs(self) -> None:
        """Sends the container's output to web until it exits; kills the task when web says abort."""
        offsets = {"stdout": 0, "stderr": 0}
        pending: list[LogChunkIn] = []
        size, last = 0, time.monotonic()

        def flush() -> None:
            nonlocal pending, size, last
            if pending:
                ack = self._web(routes.BUILD_LOGS, LogBatch(attempt=self.a.attempt, chunks=pending).model_dump(mode="json"))
                pending, size = [], 0
                if ack and ack.get("abort") and not self.abort.is_set():
                    self.log.info("abort requested")
                    self.abort.set()
                    self.tasks.runtime.signal(self.handle, signal.SIGKILL)
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

    def _logs(self) -> Iterator:
        """Runtime log chunks with a None tick at least every batch interval (so batches flush)."""
        q: list = []
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

        threading.Thread(target=reader, daemon=True, name=f"{self.name}-logs").start()
        while True:
            with cond:
                if not q and not done.is_set():
                    cond.wait(LOG_BATCH_SECONDS)
                items, q[:] = list(q), []
            yield from items
            yield None
            if done.is_set() and not q:
                return

    def _outputs(self, cfg: TaskConfig) -> list[str]:
        names = []
        for name in cfg.output_paths():
            vol = f"{self.handle}-out-{name}"

            def chunks(vol: str = vol) -> Iterator[bytes]:
                comp = zstandard.ZstdCompressor(level=3).compressobj()
                from airside.baggageclaim.streaming import iter_tar

                for c in iter_tar(self.tasks.repo.data(vol)):
                    if out := comp.compress(c):
                        yield out
                yield comp.flush()

            self.web.upload(routes.PUT_OUTPUT, chunks(), encoding="zstd", params={"attempt": self.a.attempt},
                            build_id=str(self.a.build_id), name=name)
            names.append(name)
        return names

    def run(self) -> None:
        cfg = parse_task_config(self.a.config)
        try:
            if not self.reattach:
                self._start(cfg)
            self._pump_logs()
            status = self.tasks.runtime.wait(self.handle)
            if status is None:
                raise InfraError("container vanished without an exit status")
            if self.interrupt_reason:
                self.finish(BuildStatus.errored, status.code, self.interrupt_reason)
            elif self.abort.is_set():
                self.finish(BuildStatus.aborted, status.code, "aborted")
            else:
                outputs = self._outputs(cfg)
                if status.code == 0:
                    self.finish(BuildStatus.succeeded, 0, outputs=outputs)
                else:
                    self.finish(BuildStatus.failed, status.code, status.reason, outputs=outputs)
        except Lost as e:
            self.log.info("build no longer ours; stopping it", why=str(e))
        except (InfraError, VolumeError, RuntimeError_, OSError, WebError) as e:
            reason = self.interrupt_reason or getattr(e, "message", None) or str(e)
            self.log.warning("build errored", reason=reason)
            try:
                self.finish(BuildStatus.errored, None, reason)
            except (Lost, InfraError, WebError) as e2:
                self.log.warning("could not report the error", error=str(e2))
        except Exception as e:  # noqa: BLE001 - a bug must end the build errored, never hang it
            self.log.exception("runner crashed")
            try:
                self.finish(BuildStatus.errored, None, f"worker error: {e.__class__.__name__}: {e}")
            except Exception:  # noqa: BLE001
                pass
        finally:
            self.cleanup()
            self.tasks.done(self)

    def cleanup(self) -> None:
        try:
            self.tasks.runtime.destroy(self.handle)
        except RuntimeError_ as e:
            self.log.warning("container destroy failed; the reaper will retry", error=str(e))
        for vol in reversed(self.volumes):
            try:
                self.tasks.repo.destroy(vol, cascade=True)
            except VolumeError as e:
                self.log.warning("volume destroy failed; the reaper will retry", volume=vol, error=str(e))

    def interrupt(self, reason: str) -> None:
        self.interrupt_reason = reason
        try:
            self.tasks.runtime.signal(self.handle, signal.SIGKILL)
        except RuntimeError_:
            pass


class Tasks:
    """The builds this worker runs (the beacon's `Work`), fed by web's assignments."""

    def __init__(self, web: WebClient, repo: Repository, runtime: Runtime) -> None:
        self.web, self.repo, self.runtime = web, repo, runtime
        self.runners: dict[str, TaskRunner] = {}
        self.lock = threading.Lock()
        self._image_locks: dict[str, threading.Lock] = {}

    def image_lock(self, key: str) -> threading.Lock:
        with self.lock:
            return self._image_locks.setdefault(key, threading.Lock())

    def sync(self, assignments: list[Assignment], accepting: bool) -> None:
        """Starts runners for new assignments (re-attaching to containers that already run)."""
        existing = set(self.runtime.list())
        for a in assignments:
            key = f"{a.build_id}.{a.attempt}"
            with self.lock:
                if key in self.runners:
                    continue
            reattach = container_handle(a) in existing and self.runtime.status(container_handle(a)) != "prepared"
            if not accepting and not reattach:
                continue
            runner = TaskRunner(self, a, reattach=reattach)
            with self.lock:
                self.runners[key] = runner
            LOG.info("re-attaching to build" if reattach else "starting build", build=a.build_id, attempt=a.attempt)
            runner.start()

    def busy_handles(self) -> set[str]:
        with self.lock:
            return {h for r in self.runners.values() for h in (r.handle, *r.volumes)}

    def known(self) -> str:
        with self.lock:
            return ",".join(sorted(self.runners))

    def done(self, runner: TaskRunner) -> None:
        with self.lock:
            self.runners.pop(f"{runner.a.build_id}.{runner.a.attempt}", None)

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
