"""Running builds as Kubernetes Jobs: web drives `airside.runtime.kubernetes` itself, no worker involved.

For a build placed on Kubernetes, one thread runs a `KubeAttempt` — web's `AttemptBackend` — through
`airside.runtime.attempt.run_attempt`, the same lifecycle (names, phase order, outcome rules) a worker's
runner goes through. For build B attempt A (handle `bB-aA`):
  1. copies each uploaded input from web's artifact store into the cluster's artifact store
     (`airside baggageclaim`) as volume `bB-aA-in-<name>`                      → image_ready, inputs_ready
  2. creates the Job (init `fetch-inputs`, the task in the user's image, `upload-outputs`) → started
  3. stores the task container's log (pod log API) as build events; an abort deletes the pod
  4. exit status → (when the outcome keeps them: outputs copied back from `bB-aA-output-<name>` into
     web's artifact store) → finish; evictions / node loss requeue the build like a lost worker, other
     Kubernetes failures end it errored with the reason (image pull, unschedulable, deadline, …)
  5. the Job and the build's artifact-store volumes are removed whichever way it ended

The Job's image is pulled by the kubelet when the pod starts, so `image_ready` is recorded together with
`inputs_ready` (both before the Job exists); the pull shows up in the time to `started` and in the run.

A restarted web re-adopts the Kubernetes builds that were running: it follows the same Job's log from the
start (web stores each byte once) and waits for it; a build whose Job is gone is requeued.
"""

from __future__ import annotations

import base64
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.orm import Session

from airside.baggageclaim.client import VolumeClient, VolumeClientError
from airside.config import secret
from airside.core import log
from airside.core.schemas import BuildStatus, FinishReport, LogBatch, LogChunkIn, Phase
from airside.runtime import ExitStatus, RuntimeError_
from airside.runtime.attempt import AttemptNames, Lost, run_attempt
from airside.task import parse_task_config
from airside.task.config import TaskConfig
from airside.web import builds
from airside.web.errors import Conflict

if TYPE_CHECKING:
    from airside.runtime.kubernetes import KubernetesRuntime
    from airside.web.host import WebHost as Web

LOG = log.get("airside.web.kubernetes")


def _describe(e: BaseException) -> str:
    if isinstance(e, VolumeClientError | OSError):
        return f"artifact store: {getattr(e, 'message', None) or e}"
    return str(e)


class KubeDispatcher:
    def __init__(self, web: Web) -> None:
        from airside.runtime.kubernetes import KubernetesRuntime  # the kubernetes client loads only when used

        self.web = web
        settings = web.settings
        self.token = secret(settings.baggageclaim_token) or ""
        self.rt: KubernetesRuntime = KubernetesRuntime.from_settings(settings, artifact_token=self.token or None)
        self.store_url = settings.kubernetes_artifact_web_url or settings.kubernetes_artifact_url
        self.threads: dict[int, threading.Thread] = {}
        self.lock = threading.Lock()

    def store(self) -> VolumeClient:
        return VolumeClient(self.store_url, self.token)

    def tick(self) -> None:
        """Claims pending Kubernetes builds and adopts running ones nobody follows (after a web restart)."""
        now = self.web.clock()
        with self.web.tx() as s:
            claimed = [(b.id, b.attempt) for b in builds.place_on_kubernetes(s, now)]
        with self.web.sessions() as s:
            active = [(b.id, b.attempt, b.status) for b in builds.active_on_kubernetes(s)]
        for build_id, attempt, status in active:
            with self.lock:
                if build_id in self.threads and self.threads[build_id].is_alive():
                    continue
                fresh = (build_id, attempt) in claimed
                t = threading.Thread(target=self.run, args=(build_id, attempt, not fresh, status),
                                     name=f"k8s-build-{build_id}", daemon=True)
                self.threads[build_id] = t
            t.start()

    # --- one build -------------------------------------------------------------------------------------
    def run(self, build_id: int, attempt: int, adopt: bool, status: str) -> None:
        try:
            with self.web.sessions() as s:
                b = builds.get(s, build_id)
                cfg, inputs, tags, privileged = parse_task_config(b.config), list(b.inputs), list(b.tags), b.privileged
            att = KubeAttempt(self, AttemptNames(build_id, attempt), cfg, inputs, tags, privileged)
            if adopt and (status != BuildStatus.running or self.rt.status(att.handle) == "missing"):
                with self.web.tx() as s:
                    builds.interrupt(s, builds.get(s, build_id, lock=True),
                                     f"web restarted while Job {att.handle} was being set up", self.web.clock())
                att.cleanup()
                return
            if adopt:
                att.log.info("adopting a running job")
            run_attempt(att, adopt=adopt, describe=_describe)
        except Conflict as e:
            LOG.info("build no longer ours", build=build_id, why=str(e))
        finally:
            with self.lock:
                self.threads.pop(build_id, None)
            self.web.wake_scheduler()

    def _await_store(self, lg: structlog.stdlib.BoundLogger) -> None:
        """Waits up to `kubernetes_schedule_timeout` for the artifact store to answer (its pod starting or
        restarting: connection refused, 502/503), logging each retry; then raises VolumeClientError naming
        how long it waited. Other answers (a wrong token: 401) raise at once."""
        wait = self.web.settings.kubernetes_schedule_timeout
        deadline, delay = time.monotonic() + wait, 1.0
        with self.store() as store:
            while True:
                try:
                    store.info()
                    return
                except VolumeClientError as e:
                    if e.status not in (0, 502, 503, 504):
                        raise
                    if time.monotonic() + delay > deadline:
                        raise VolumeClientError(e.status, f"{e.message} (waited {wait:.0f}s: "
                                                          "kubernetes_schedule_timeout)") from None
                    lg.warning("artifact store not answering; waiting", error=e.message, retry_in=delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)



class KubeAttempt:
    """One build attempt as a Kubernetes Job (an `airside.runtime.attempt.AttemptBackend`)."""

    origin = "web"
    infra_errors: tuple[type[BaseException], ...] = (RuntimeError_, VolumeClientError, OSError)

    def __init__(self, d: KubeDispatcher, names: AttemptNames, cfg: TaskConfig, inputs: list[str],
                 tags: list[str] | None = None, privileged: bool = False) -> None:
        self.d, self.names, self.cfg, self.inputs = d, names, cfg, inputs
        self.tags, self.privileged = list(tags or []), privileged
        self.handle = names.handle
        self.web, self.rt = d.web, d.rt
        self.log: structlog.stdlib.BoundLogger = LOG.bind(build=names.build_id, attempt=names.attempt,
                                                          job=self.handle)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """A transaction on web's database; a Conflict (the build is no longer this attempt's) is `Lost`."""
        try:
            with self.web.tx() as s:
                yield s
        except Conflict as e:
            raise Lost(str(e)) from e

    # --- the lifecycle's steps ---------------------------------------------------------------------------
    def prepare_image(self) -> None:
        """Nothing: the kubelet pulls the image when the pod starts."""

    def prepare_inputs(self) -> None:
        self.d._await_store(self.log)
        build_id = self.names.build_id
        with self.d.store() as store:
            for name in self.inputs:
                found = self.web.artifacts.find(build_id, "inputs", name)
                if found is None:
                    raise OSError(f"input {name!r} of build {build_id} is not in web's artifact store")
                path, encoding = found
                vol = self.names.input_volume(name)
                store.create(vol, properties=self.names.properties("input"))
                store.stream_in(vol, self.web.artifacts.read(path), encoding="zstd" if encoding == "zstd" else "raw")

    def start_container(self) -> None:
        from airside.runtime.kubernetes import KubeTaskSpec

        n = self.names
        spec = KubeTaskSpec.from_task_config(
            self.cfg, handle=self.handle, inputs={name: n.input_volume(name) for name in self.inputs},
            outputs={o.name: n.output_volume(o.name) for o in self.cfg.outputs},
            build=str(n.build_id), attempt=n.attempt, step="task", tags=self.tags, privileged=self.privileged)
        self.rt.prepare(spec)
        self.rt.start(self.handle)
        self.log.info("job started")

    def phase(self, phase: Phase) -> None:
        with self._tx() as s:
            builds.phase(s, self.names.build_id, None, self.names.attempt, phase, self.web.clock())

    def follow(self) -> None:
        done = threading.Event()

        def abort_watch() -> None:
            while not done.wait(1.0):
                if self.aborted():
                    self.rt.signal(self.handle, signal.SIGKILL)
                    return

        threading.Thread(target=abort_watch, daemon=True, name=f"k8s-abort-{self.names.build_id}").start()
        offsets: dict[str, int] = {}
        try:
            for chunk in self.rt.logs(self.handle, follow=True):
                off = offsets.get(chunk.stream, 0)
                offsets[chunk.stream] = off + len(chunk.data)
                batch = LogBatch(attempt=self.names.attempt, chunks=[
                    LogChunkIn(stream=chunk.stream, offset=off, data=base64.b64encode(chunk.data).decode())])
                with self._tx() as s:
                    builds.append_logs(s, self.names.build_id, None, batch, self.web.clock())
        finally:
            done.set()

    def wait(self) -> ExitStatus | None:
        return self.rt.wait(self.handle)

    def aborted(self) -> bool:
        with self.web.sessions() as s:
            return bool(builds.get(s, self.names.build_id).abort_requested)

    def interrupted(self) -> str | None:
        return None

    def collect_outputs(self) -> list[str]:
        names = []
        with self.d.store() as store:
            for o in self.cfg.outputs:
                self.web.artifacts.write_iter(self.names.build_id, "outputs", o.name, "identity",
                                              store.stream_out(self.names.output_volume(o.name)),
                                              self.web.settings.max_upload_bytes)
                names.append(o.name)
        return names

    def finish(self, report: FinishReport) -> None:
        with self._tx() as s:
            b = builds.finish(s, self.names.build_id, None, report, self.web.clock())
            self.web.observe_finished(b)

    def fail(self, reason: str, requeue: bool) -> None:
        with self._tx() as s:
            b = builds.get(s, self.names.build_id, lock=True)
            if b.attempt != self.names.attempt or b.status not in (BuildStatus.placed, BuildStatus.running):
                return
            if requeue:
                builds.interrupt(s, b, reason, self.web.clock())
            else:
                builds.finish(s, self.names.build_id, None, FinishReport(
                    attempt=self.names.attempt, status=BuildStatus.errored, reason=reason), self.web.clock())

    def cleanup(self) -> None:
        try:
            self.rt.destroy(self.handle)
        except RuntimeError_ as e:
            self.log.warning("job cleanup failed", error=str(e))
        volumes = [*(self.names.input_volume(n) for n in self.inputs),
                   *(self.names.output_volume(o.name) for o in self.cfg.outputs)]
        with self.d.store() as store:
            for vol in volumes:
                try:
                    store.destroy(vol)
                except VolumeClientError as e:
                    self.log.warning("artifact volume cleanup failed", volume=vol, error=e.message)
