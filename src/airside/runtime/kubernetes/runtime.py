"""`KubernetesRuntime`: the `Runtime` that runs each task as a Job (see the package docstring for the
contract). It builds manifests with `job`, judges Jobs with `watchdog`, and talks to the cluster only
through `client` (so importing this module loads the `kubernetes` client library)."""

from __future__ import annotations

import signal as _signal
import threading
import time
from collections.abc import Iterator

from airside.config import Settings
from airside.core import log as logging
from airside.runtime.base import ContainerSpec, ExitStatus, LogChunk, Runtime, RuntimeError_

from .client import ApiClient, ApiError, Cluster, LogStream, load_api_client
from .job import build_job, build_pull_secret, build_secret, needs_secret, reads_stdin
from .names import ANNOTATION_HANDLE, MANAGED_BY, TASK, Manifest, job_name, pull_secret_name, secret_name
from .spec import KubeTaskSpec
from .verdict import InfraFailure, Verdict
from .watchdog import classify, container_state, event_sources, is_true, wants_events

__all__ = ["LOG_RETRY_SECONDS", "STATUS_SETTLE_SECONDS", "KubernetesRuntime"]

log = logging.get("airside.runtime.kubernetes")

LOG_RETRY_SECONDS = 60  # how long `logs` retries a failing log request before giving up
STATUS_SETTLE_SECONDS = 3.0  # how long a pod's status may lag its container's exit (the kubelet's relist)


class KubernetesRuntime(Runtime):
    """Tasks as Jobs in one namespace (`settings.kubernetes_namespace`, or `namespace`). `api_client` is
    the cluster (default: `load_api_client(settings.kubernetes_kubeconfig)`); `artifact_token` is the
    artifact-store token a task with inputs or outputs needs; `poll_interval` is the longest `wait` goes
    without reading the Job and its pods again."""

    name = "kubernetes"
    isolates = True

    def __init__(self, namespace: str | None = None, *, settings: Settings | None = None,
                 artifact_token: str | None = None, api_client: ApiClient | None = None,
                 poll_interval: float = 5.0) -> None:
        settings = settings or Settings()
        if namespace:
            settings = settings.model_copy(update={"kubernetes_namespace": namespace})
        self.settings, self.namespace = settings, settings.kubernetes_namespace
        self.artifact_token = artifact_token
        self.api = api_client if api_client is not None else load_api_client(str(settings.kubernetes_kubeconfig or ""))
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._prepared: dict[str, tuple[KubeTaskSpec, Manifest]] = {}
        self._stopped: dict[str, int] = {}
        self.cluster = Cluster(self.api, self.namespace)
        self.core, self.batch = self.cluster.core, self.cluster.batch

    @classmethod
    def from_settings(cls, settings: Settings, *, artifact_token: str | None = None,
                      api_client: ApiClient | None = None) -> KubernetesRuntime:
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

    def manifest(self, handle: str) -> Manifest:
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
        secrets = ([build_secret(spec, self.settings, self.artifact_token or "")]
                   if needs_secret(manifest) or reads_stdin(manifest) else [])
        pull = build_pull_secret(spec, self.settings)
        if pull is not None:
            secrets.append(pull)
        self.cluster.start(manifest, secrets)
        log.info("job created", handle=handle, job=manifest["metadata"]["name"], namespace=self.namespace)
        with self._lock:
            self._prepared.pop(handle, None)

    # --- reading the cluster ----------------------------------------------------------------------------
    def _read_job(self, name: str) -> Manifest | None:
        return self.cluster.read_job(name)

    def _pods(self, name: str) -> tuple[list[Manifest], str]:
        return self.cluster.job_pods(name)

    def _events(self, names: set[str]) -> list[Manifest]:
        return self.cluster.events(names)

    def observe(self, handle: str) -> tuple[Verdict, str]:
        """Reads the Job, its pods (and, when something looks wrong, the events) and classifies them.
        Returns the verdict and the pod list's resourceVersion (to watch from)."""
        name = job_name(handle)
        job = self._read_job(name)
        pods, rv = self._pods(name)
        verdict = classify(job, pods, (), schedule_timeout=self.settings.kubernetes_schedule_timeout)
        if wants_events(verdict):
            verdict = classify(job, pods, self._events(event_sources(name, pods)),
                               schedule_timeout=self.settings.kubernetes_schedule_timeout)
        return verdict, rv

    def _await_change(self, handle: str, rv: str, seconds: float) -> None:
        """Blocks until a pod of the Job changes or `seconds` pass (a pod watch from `rv`)."""
        if seconds <= 0:
            return
        t0 = time.monotonic()
        error = self.cluster.watch_pods(job_name(handle), rv, seconds)
        if error is not None:  # 410 Gone, a dropped connection: poll instead
            log.debug("pod watch ended", handle=handle, error=error)
            time.sleep(max(0.0, min(1.0, seconds - (time.monotonic() - t0))))

    # --- waiting ----------------------------------------------------------------------------------------
    def wait(self, handle: str, timeout: float | None = None) -> ExitStatus | None:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            verdict, rv = self.observe(handle)
            status = self._outcome(handle, verdict)
            if status is not None:
                return status
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._await_change(handle, rv, self.poll_interval if left is None else min(self.poll_interval, left))

    def _outcome(self, handle: str, verdict: Verdict) -> ExitStatus | None:
        """What `wait` returns for a verdict, None meaning keep waiting. An infrastructure failure of a task
        nobody stopped stops the Job and raises `InfraFailure`."""
        with self._lock:
            sig = self._stopped.get(handle)
        if verdict.state == "exited" and verdict.code is not None:
            return ExitStatus(verdict.code, verdict.reason)
        if sig is not None:  # stopped by signal(): the pod going away is what we asked for
            return ExitStatus(128 + sig, f"killed by {_signal.Signals(sig).name}") if verdict.done else None
        if verdict.state == "infra":
            log.warning("task failed by the infrastructure", handle=handle, kind=verdict.kind,
                        reason=verdict.reason, requeue=verdict.requeue)
            try:
                self._stop(handle)
            except RuntimeError_ as e:
                log.warning("could not stop the Job", handle=handle, error=str(e))
            raise InfraFailure(verdict.reason, kind=verdict.kind, requeue=verdict.requeue)
        return None

    # --- logs -------------------------------------------------------------------------------------------
    def logs(self, handle: str, follow: bool = True) -> Iterator[LogChunk]:
        pod = self._started_pod(handle, follow)
        if pod is not None:
            yield from self._task_log(handle, job_name(handle), pod["metadata"]["name"], follow)

    def _started_pod(self, handle: str, follow: bool) -> Manifest | None:
        """The pod whose task container has started, waiting for it when `follow`; None when it never
        will (the Job is done) or has not yet (not `follow`)."""
        name = job_name(handle)
        while True:
            pods, rv = self._pods(name)
            pod = pods[-1] if pods else None
            state = container_state(pod, TASK) if pod else {}
            if pod is not None and ("running" in state or "terminated" in state):
                return pod
            verdict, rv = self.observe(handle)
            if verdict.done or not follow:
                return None
            self._await_change(handle, rv, self.poll_interval)

    def _task_log(self, handle: str, name: str, pod_name: str, follow: bool) -> Iterator[LogChunk]:
        """The task container's log, whole: a stream that ends while the task runs (a kubelet restart, a
        dropped API connection) is read again from its start, skipping what was delivered (approximate
        only if the kubelet rotated the file meanwhile, past 10 MiB by default)."""
        delivered = 0  # bytes of the container's log already given to the caller
        deadline = time.monotonic() + LOG_RETRY_SECONDS
        while True:
            stream = self._open_log(handle, name, pod_name, follow, deadline)
            if stream is None:
                return
            skip = delivered
            with stream:
                for data in stream:
                    if skip:  # a reconnection starts the log again: skip what the caller has
                        cut = min(skip, len(data))
                        data, skip = data[cut:], skip - cut
                    if data:
                        delivered += len(data)
                        yield LogChunk("stdout", data)
            dropped = stream.error is not None
            if dropped:
                log.debug("log stream ended", handle=handle, error=stream.error)
            # A clean end is the container exiting, usually; the pod's status says so a moment later (the
            # kubelet reports it after its next relist), so give it that moment before calling it a cut.
            if not follow or not self._runs_on(name, pod_name, 0.0 if dropped else STATUS_SETTLE_SECONDS):
                return  # ended with the container (or the pod was deleted): the log is complete
            log.warning("the task's log stream ended while the task runs; reconnecting", handle=handle,
                        delivered=delivered, dropped=dropped)
            deadline = time.monotonic() + LOG_RETRY_SECONDS

    def _open_log(self, handle: str, name: str, pod_name: str, follow: bool, deadline: float) -> LogStream | None:
        """The task container's log stream, retrying (until `deadline`) failures that may pass; None when
        the pod went away."""
        while True:
            try:
                return self.cluster.open_log(pod_name, TASK, follow=follow, what=f"reading the logs of {name}")
            except ApiError as e:
                if e.status in (400, 404):  # the pod went away meanwhile, or its kubelet is restarting
                    if time.monotonic() > deadline or self._live_pod(name, pod_name) is None:
                        return None
                elif not e.transient or time.monotonic() > deadline:
                    raise
                log.warning("reading the task's log failed; retrying", handle=handle, error=e.detail)
            time.sleep(1)

    def _live_pod(self, name: str, pod_name: str) -> Manifest | None:
        pods, _ = self._pods(name)
        pod = next((p for p in pods if p["metadata"]["name"] == pod_name), None)
        return None if pod is None or pod["metadata"].get("deletionTimestamp") else pod

    def _runs_on(self, name: str, pod_name: str, settle: float) -> bool:
        """Whether the task container still runs: True only if it does now and did for `settle` seconds of
        checks (0.5 s apart)."""
        end = time.monotonic() + settle
        while True:
            pod = self._live_pod(name, pod_name)
            if pod is None or "running" not in container_state(pod, TASK):
                return False
            if time.monotonic() >= end:
                return True
            time.sleep(0.5)

    # --- stopping ---------------------------------------------------------------------------------------
    def _stop(self, handle: str, grace_seconds: int | None = None) -> None:
        self.cluster.stop(job_name(handle), [secret_name(handle), pull_secret_name(handle)], grace_seconds)

    def signal(self, handle: str, sig: int) -> None:
        if sig not in (_signal.SIGTERM, _signal.SIGKILL):
            raise RuntimeError_(f"the kubernetes runtime can only stop a task (SIGTERM or SIGKILL), not deliver "
                                f"{_signal.Signals(sig).name}")
        with self._lock:
            self._stopped[handle] = int(sig)
        grace = 1 if sig == _signal.SIGKILL else None
        log.info("stopping task", handle=handle, signal=_signal.Signals(sig).name)
        pods, _ = self._pods(job_name(handle))
        for p in pods:
            self.cluster.delete_pod(p["metadata"]["name"], grace)
        if not pods:
            self._stop(handle, grace)

    def destroy(self, handle: str) -> None:
        self._stop(handle, None)
        with self._lock:
            self._prepared.pop(handle, None)
            self._stopped.pop(handle, None)

    # --- state ------------------------------------------------------------------------------------------
    def status(self, handle: str) -> str:
        with self._lock:
            if handle in self._prepared:
                return "prepared"
        job = self._read_job(job_name(handle))
        if job is None:
            return "missing"
        if is_true(job, "Complete") or is_true(job, "Failed"):
            return "exited"
        pods, _ = self._pods(job_name(handle))
        if pods and container_state(pods[-1], TASK).get("terminated"):
            return "exited"
        return "running"

    def list(self) -> list[str]:
        jobs = self.cluster.list_jobs(f"{MANAGED_BY}=airside")
        with self._lock:
            prepared = list(self._prepared)
        handles = [(j["metadata"].get("annotations") or {}).get(ANNOTATION_HANDLE) or j["metadata"]["name"]
                   for j in jobs]
        return sorted({*handles, *prepared})
