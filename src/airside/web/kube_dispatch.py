"""Running builds as Kubernetes Jobs: web drives `airside.runtime.kubernetes` itself, no worker involved.

For a build placed on Kubernetes (attempt A, handle `b<id>-a<A>`), one thread:
  1. copies each uploaded input from web's artifact store into the cluster's artifact store
     (`airside baggageclaim`) as volume `<handle>-in-<name>`                      → image_ready, inputs_ready
  2. creates the Job (init `fetch-inputs`, the task in the user's image, `upload-outputs`) → started
  3. stores the task container's log (pod log API) as build events; an abort deletes the pod
  4. exit status → outputs copied back from `<handle>-output-<name>` into web's artifact store → finish;
     evictions / node loss requeue the build like a lost worker, other Kubernetes failures end it errored
     with the reason (image pull, unschedulable, deadline, …)
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
from typing import TYPE_CHECKING, Any

from airside.baggageclaim.client import VolumeClient, VolumeClientError
from airside.config import secret
from airside.core import log
from airside.core.schemas import BuildStatus, FinishReport, LogBatch, LogChunkIn, Phase
from airside.runtime import RuntimeError_
from airside.task import parse_task_config
from airside.web import builds
from airside.web.errors import Conflict

if TYPE_CHECKING:
    from airside.runtime.kubernetes import KubernetesRuntime
    from airside.web.app import Web

LOG = log.get("airside.web.kubernetes")


def job_handle(build_id: int, attempt: int) -> str:
    return f"b{build_id}-a{attempt}"


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
        handle = job_handle(build_id, attempt)
        lg = LOG.bind(build=build_id, attempt=attempt, job=handle)
        volumes: list[str] = []
        outputs: list[str] = []
        try:
            with self.web.sessions() as s:
                b = builds.get(s, build_id)
                cfg, inputs = parse_task_config(b.config), list(b.inputs)
            outputs = [f"{handle}-output-{o.name}" for o in cfg.outputs]
            if adopt and (status != BuildStatus.running or self.rt.status(handle) == "missing"):
                with self.web.tx() as s:
                    builds.interrupt(s, builds.get(s, build_id, lock=True),
                                     f"web restarted while Job {handle} was being set up", self.web.clock())
                return
            if not adopt:
                self._await_store(lg)
                volumes = self._put_inputs(build_id, handle, inputs)
                for ph in (Phase.image_ready, Phase.inputs_ready):
                    self._phase(build_id, attempt, ph)
                from airside.runtime.kubernetes import KubeTaskSpec

                spec = KubeTaskSpec.from_task_config(cfg, handle=handle, inputs=dict(zip(inputs, volumes, strict=True)),
                                                     build=str(build_id), attempt=attempt, step="task")
                self.rt.prepare(spec)
                self.rt.start(handle)
                self._phase(build_id, attempt, Phase.started)
                lg.info("job started")
            else:
                volumes = [f"{handle}-in-{n}" for n in inputs]
                lg.info("adopting a running job")
            self._follow(build_id, attempt, handle)
            self._finish(build_id, attempt, handle, cfg)
        except Conflict as e:
            lg.info("build no longer ours", why=str(e))
        except RuntimeError_ as e:
            requeue = getattr(e, "requeue", False)
            lg.warning("kubernetes task failed", reason=str(e), requeue=requeue)
            self._fail(build_id, attempt, str(e), requeue)
        except (VolumeClientError, OSError) as e:
            self._fail(build_id, attempt, f"artifact store: {getattr(e, 'message', e)}", False)
        except Exception as e:  # noqa: BLE001 - a bug must end the build errored, never hang it
            lg.exception("dispatcher crashed")
            self._fail(build_id, attempt, f"web error: {e.__class__.__name__}: {e}", False)
        finally:
            try:
                self.rt.destroy(handle)
            except RuntimeError_ as e:
                lg.warning("job cleanup failed", error=str(e))
            with self.store() as store:
                for vol in [*volumes, *outputs]:
                    try:
                        store.destroy(vol)
                    except VolumeClientError as e:
                        lg.warning("artifact volume cleanup failed", volume=vol, error=e.message)
            with self.lock:
                self.threads.pop(build_id, None)
            self.web.wake_scheduler()

    def _await_store(self, lg: Any) -> None:  # noqa: ANN401
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

    def _phase(self, build_id: int, attempt: int, ph: Phase) -> None:
        with self.web.tx() as s:
            builds.phase(s, build_id, None, attempt, ph, self.web.clock())

    def _put_inputs(self, build_id: int, handle: str, inputs: list[str]) -> list[str]:
        out = []
        with self.store() as store:
            for name in inputs:
                found = self.web.artifacts.find(build_id, "inputs", name)
                if found is None:
                    raise OSError(f"input {name!r} of build {build_id} is not in web's artifact store")
                path, encoding = found
                vol = f"{handle}-in-{name}"
                store.create(vol, properties={"build": str(build_id), "role": "input"})
                out.append(vol)
                store.stream_in(vol, self.web.artifacts.read(path), encoding="zstd" if encoding == "zstd" else "raw")
        return out

    def _follow(self, build_id: int, attempt: int, handle: str) -> None:
        done = threading.Event()

        def abort_watch() -> None:
            while not done.wait(1.0):
                with self.web.sessions() as s:
                    if builds.get(s, build_id).abort_requested:
                        self.rt.signal(handle, signal.SIGKILL)
                        return

        threading.Thread(target=abort_watch, daemon=True, name=f"k8s-abort-{build_id}").start()
        offsets: dict[str, int] = {}
        try:
            for chunk in self.rt.logs(handle, follow=True):
                off = offsets.get(chunk.stream, 0)
                offsets[chunk.stream] = off + len(chunk.data)
                batch = LogBatch(attempt=attempt, chunks=[LogChunkIn(stream=chunk.stream, offset=off,
                                                                     data=base64.b64encode(chunk.data).decode())])
                with self.web.tx() as s:
                    builds.append_logs(s, build_id, None, batch, self.web.clock())
        finally:
            done.set()

    def _finish(self, build_id: int, attempt: int, handle: str, cfg) -> None:  # noqa: ANN001
        st = self.rt.wait(handle)
        with self.web.sessions() as s:
            aborted = builds.get(s, build_id).abort_requested
        if aborted:
            report = FinishReport(attempt=attempt, status=BuildStatus.aborted, exit_code=st.code, reason="aborted")
        else:
            outputs = self._get_outputs(build_id, handle, cfg) if st.code == 0 else []
            status = BuildStatus.succeeded if st.code == 0 else BuildStatus.failed
            report = FinishReport(attempt=attempt, status=status, exit_code=st.code, reason=st.reason, outputs=outputs)
        with self.web.tx() as s:
            b = builds.finish(s, build_id, None, report, self.web.clock())
            self.web.observe_finished(b)

    def _get_outputs(self, build_id: int, handle: str, cfg) -> list[str]:  # noqa: ANN001
        from airside.runtime.kubernetes import output_handle

        names = []
        with self.store() as store:
            for o in cfg.outputs:
                self.web.artifacts.write_iter(build_id, "outputs", o.name, "identity",
                                              store.stream_out(output_handle(handle, o.name)),
                                              self.web.settings.max_upload_bytes)
                names.append(o.name)
        return names

    def _fail(self, build_id: int, attempt: int, reason: str, requeue: bool) -> None:
        try:
            with self.web.tx() as s:
                b = builds.get(s, build_id, lock=True)
                if b.attempt != attempt or b.status not in (BuildStatus.placed, BuildStatus.running):
                    return
                if requeue:
                    builds.interrupt(s, b, reason, self.web.clock())
                else:
                    builds.finish(s, build_id, None, FinishReport(attempt=attempt, status=BuildStatus.errored,
                                                                  reason=reason), self.web.clock())
        except Conflict:
            pass

